"""Quantum Detectors Merlin ``.mib`` files (with the optional ``.hdr`` acquisition header).

Every frame of a ``.mib`` file is an ASCII header followed by big-endian pixels. The header is a
comma-separated list starting with ``MQ1``: frame number, header size in bytes (the data offset),
number of chips, width (columns), height (rows), pixel type (``U08``, ``U16``, ``U32``),
sensor layout, ... The reader parses the first header, checks that the last frame's header is
where it should be, and maps the file lazily (``numpy.memmap`` with a structured dtype of header
bytes + frame); frames come back as **native-endian** arrays.

The scan shape is taken, in order, from ``scan_shape=``, from the ``.hdr`` file next to the data
(``Frames per Trigger`` = scan columns), from a square number of frames, or else ``(1, n)``.
A file whose size is not a whole number of frames (or holds fewer frames than the ``.hdr``
announces) is *truncated*: :func:`read_mib` raises :class:`~stacklab.errors.FileFormatError`
saying how many complete frames there are, unless ``allow_truncated=True``, which reads those
complete frames with a warning (the scan shape must then fit them).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import FileFormatError, ShapeError
from ..datacube import Calibration, DataCube, set_scan_shape
from ._lazy import MemmapFrames

__all__ = ["MibHeader", "parse_hdr", "read_mib", "read_mib_header"]

logger = logging.getLogger(__name__)

_DTYPES = {"U01": ">u1", "U08": ">u1", "U16": ">u2", "U32": ">u4", "U64": ">u8"}


@dataclass(frozen=True)
class MibHeader:
    """Fields of a ``.mib`` frame header.

    Attributes
    ----------
    header_bytes : int
        Size of each frame's header (the data offset).
    n_chips : int
        Number of Medipix chips.
    frame_shape : (int, int)
        ``(rows, cols)`` of a frame.
    dtype : numpy.dtype
        Stored pixel type (big-endian).
    layout : str
        Sensor layout, e.g. ``"1x1"`` or ``"2x2"``.
    fields : tuple of str
        All header fields.
    """

    header_bytes: int
    n_chips: int
    frame_shape: tuple[int, int]
    dtype: np.dtype
    layout: str
    fields: tuple[str, ...]

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame, header included."""
        return self.header_bytes + math.prod(self.frame_shape) * self.dtype.itemsize


def _parse_header(text: str, path: Path) -> MibHeader:
    fields = tuple(f.strip() for f in text.split(","))
    if len(fields) < 7 or fields[0] != "MQ1":
        raise FileFormatError(f"{str(path)!r} is not a Merlin .mib file (no 'MQ1' frame header)")
    try:
        header_bytes = int(fields[2])
        n_chips = int(fields[3])
        cols, rows = int(fields[4]), int(fields[5])
    except ValueError as exc:
        raise FileFormatError(f"{str(path)!r}: unreadable .mib header fields {fields[:7]}") from exc
    kind = fields[6]
    if kind not in _DTYPES:
        raise FileFormatError(
            f"{str(path)!r}: pixel type {kind!r} is not supported (raw 'R64' files must be "
            "converted first); supported: " + ", ".join(_DTYPES)
        )
    if header_bytes <= 0 or rows <= 0 or cols <= 0:
        raise FileFormatError(f"{str(path)!r}: bad .mib header {fields[:7]}")
    return MibHeader(
        header_bytes=header_bytes,
        n_chips=n_chips,
        frame_shape=(rows, cols),
        dtype=np.dtype(_DTYPES[kind]),
        layout=fields[7] if len(fields) > 7 else "",
        fields=fields,
    )


def read_mib_header(path: str | os.PathLike) -> MibHeader:
    """Parse the header of the first frame of a ``.mib`` file.

    Raises
    ------
    FileFormatError
        If the file is missing, empty or not a Merlin file.
    """
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f".mib file not found: {str(path)!r}")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head.startswith(b"MQ1,"):
        raise FileFormatError(f"{str(path)!r} is not a Merlin .mib file (no 'MQ1' frame header)")
    # the data offset is the 3rd field; read exactly that many bytes as the header
    try:
        size = int(head.split(b",")[2])
    except (IndexError, ValueError) as exc:
        raise FileFormatError(f"{str(path)!r}: cannot read the header size") from exc
    text = head[:size].rstrip(b"\x00 ").decode("ascii", "replace")
    return _parse_header(text, path)


def parse_hdr(path: str | os.PathLike) -> dict[str, str]:
    """Key/value pairs of a Merlin ``.hdr`` acquisition header (``"Key (unit):\\tvalue"``)."""
    out: dict[str, str] = {}
    with open(path, encoding="ascii", errors="replace") as fh:
        for line in fh:
            if ":" not in line:
                continue
            key, _, value = line.partition(":")
            key = re.sub(r"\s*\(.*\)\s*$", "", key.strip())
            out[key] = value.strip()
    return out


def _int_field(hdr: dict[str, str], key: str) -> int | None:
    try:
        return int(float(hdr[key]))
    except (KeyError, ValueError):
        return None


def read_mib(
    path: str | os.PathLike,
    *,
    scan_shape: tuple[int, int] | None = None,
    hdr: str | os.PathLike | None = None,
    allow_truncated: bool = False,
) -> DataCube:
    """Open a Merlin ``.mib`` file lazily as a DataCube.

    Parameters
    ----------
    path : str or path-like
        The ``.mib`` file.
    scan_shape : (int, int), optional
        ``(scan_row, scan_col)``; see the module docstring for the default.
    hdr : str or path-like, optional
        The ``.hdr`` file (default: the same name with ``.hdr``, if present).
    allow_truncated : bool
        Read the complete frames of a truncated file (with a warning) instead of raising.

    Returns
    -------
    DataCube
        Lazy data (native-endian ``uint8/16/32``); ``metadata`` holds the header fields.

    Raises
    ------
    FileFormatError
        Missing, non-Merlin, unsupported or truncated file.
    ShapeError
        If ``scan_shape`` does not hold the number of frames.
    """
    path = Path(path)
    head = read_mib_header(path)
    size = path.stat().st_size
    n_complete, remainder = divmod(size, head.frame_bytes)
    hdr_path = Path(hdr) if hdr is not None else path.with_suffix(".hdr")
    info = parse_hdr(hdr_path) if hdr_path.exists() else {}
    if hdr is not None and not hdr_path.exists():
        raise FileFormatError(f".hdr file not found: {str(hdr_path)!r}")
    expected = _int_field(info, "Frames in Acquisition")
    if scan_shape is not None:
        expected = math.prod(int(s) for s in scan_shape)
    truncated = remainder != 0 or (expected is not None and n_complete < expected)
    if n_complete == 0:
        raise FileFormatError(
            f"{str(path)!r} is truncated: {size} bytes hold no complete frame of "
            f"{head.frame_bytes} bytes"
        )
    if truncated:
        what = (
            f"{str(path)!r} is truncated: it holds {n_complete} complete frame(s) of "
            f"{head.frame_bytes} bytes"
            + (f" and {remainder} extra bytes" if remainder else "")
            + (f", {expected} expected" if expected is not None else "")
        )
        if not allow_truncated:
            raise FileFormatError(what + " (allow_truncated=True reads the complete frames)")
        logger.warning("%s; reading the complete frames only", what)
    # the header of the last complete frame must be where the first header says
    with open(path, "rb") as fh:
        fh.seek((n_complete - 1) * head.frame_bytes)
        if fh.read(4) != b"MQ1,":
            raise FileFormatError(
                f"{str(path)!r}: frame {n_complete - 1} has no 'MQ1' header at the expected "
                "offset (frames of different sizes?)"
            )
    frames = MemmapFrames(
        path, n_complete, head.frame_shape, head.dtype, header_bytes=head.header_bytes
    )
    n = n_complete
    if scan_shape is not None:
        scan = tuple(int(s) for s in scan_shape)
        if len(scan) != 2 or min(scan) < 1:
            raise ShapeError(f"scan_shape must be two positive ints, got {scan_shape!r}")
        if math.prod(scan) != n:
            raise ShapeError(
                f"scan_shape {scan} needs {math.prod(scan)} frames but {str(path)!r} holds {n}"
            )
    else:
        per_trigger = _int_field(info, "Frames per Trigger")
        if per_trigger and per_trigger > 1 and n % per_trigger == 0:
            scan = (n // per_trigger, per_trigger)
        elif math.isqrt(n) ** 2 == n:
            scan = (math.isqrt(n), math.isqrt(n))
        else:
            scan = (1, n)
        logger.info("read_mib: scan shape %s (pass scan_shape= to override)", scan)
    data = set_scan_shape(frames, scan)
    meta = {
        "format": "mib",
        "source": str(path),
        "header_fields": list(head.fields),
        "hdr": info,
        "truncated": bool(truncated),
    }
    return DataCube(data, Calibration(), name=path.stem, metadata=meta)
