"""Dectris (ARINA, EIGER, QUADRO) master files: ``*_master.h5`` with external data files.

The master file links ``/entry/data/data_000001``, ``data_000002``... to datasets
``/entry/data/data`` of shape ``(n_i, rows, cols)`` in separate files, usually compressed with
bitshuffle/LZ4. Those filters need the ``hdf5plugin`` package (``stacklab[io]``), imported here
when available. The data files are concatenated lazily in link order; the scan shape comes from
``scan_shape=`` or, for a square number of frames, is inferred. The detector's pixel mask
(``detectorSpecific/pixel_mask``, non-zero = bad) is returned in ``metadata["pixel_mask"]``.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ...errors import FileFormatError, ShapeError
from ...io import H5Stack
from ..datacube import Calibration, DataCube, set_scan_shape
from ._lazy import ConcatFrames

__all__ = ["read_arina"]

logger = logging.getLogger(__name__)

try:  # registers the bitshuffle/LZ4 (and other) HDF5 filters with h5py
    import hdf5plugin  # noqa: F401

    HAVE_HDF5PLUGIN = True
except ImportError:  # pragma: no cover - hdf5plugin is in the io extra
    HAVE_HDF5PLUGIN = False


def _scalar(group: h5py.Group, key: str) -> Any:
    obj = group.get(key)
    if isinstance(obj, h5py.Dataset) and obj.shape == ():
        return obj[()]
    return None


def read_arina(
    path: str | os.PathLike,
    *,
    scan_shape: tuple[int, int] | None = None,
) -> DataCube:
    """Open a Dectris master file lazily as a DataCube.

    Parameters
    ----------
    path : str or path-like
        The ``*_master.h5`` file (its data files must sit where its links point, normally the
        same folder).
    scan_shape : (int, int), optional
        ``(scan_row, scan_col)``; default: square if the frame count is a square, else
        ``(1, n)``.

    Returns
    -------
    DataCube
        Lazy data; the calibration holds the detector pixel size (m) when the master file has
        it; ``metadata`` has the pixel mask, count cutoff and frame counts.

    Raises
    ------
    FileFormatError
        If the file, a linked data file or ``/entry/data`` is missing, or a compression filter
        is unavailable (install ``hdf5plugin``).
    ShapeError
        If ``scan_shape`` does not hold the frames.
    """
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"master file not found: {str(path)!r}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"{str(path)!r} is not a readable HDF5 file: {exc}") from exc
    meta: dict[str, Any] = {"format": "dectris", "source": str(path)}
    pixel_size = None
    with f:
        data_group = f.get("entry/data")
        if not isinstance(data_group, h5py.Group):
            raise FileFormatError(
                f"{str(path)!r} has no /entry/data group: not a Dectris master file"
            )
        keys = sorted(k for k in data_group.keys() if re.fullmatch(r"data_\d+", k))
        if not keys:
            raise FileFormatError(f"{str(path)!r}: /entry/data holds no data_NNNNNN links")
        for k in keys:
            link = data_group.get(k, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                target = path.parent / link.filename
                if not target.exists():
                    raise FileFormatError(
                        f"{str(path)!r}: data file {link.filename!r} of {k} is missing"
                    )
        det = f.get("entry/instrument/detector")
        if isinstance(det, h5py.Group):
            xs, ys = _scalar(det, "x_pixel_size"), _scalar(det, "y_pixel_size")
            if xs is not None and ys is not None and float(xs) > 0 and float(ys) > 0:
                pixel_size = (float(ys), float(xs))
            spec = det.get("detectorSpecific")
            if isinstance(spec, h5py.Group):
                for name in ("nimages", "ntrigger", "count_cutoff"):
                    v = _scalar(spec, name)
                    if v is not None:
                        meta[name] = v.item() if hasattr(v, "item") else v
                mask = spec.get("pixel_mask")
                if isinstance(mask, h5py.Dataset) and mask.ndim == 2:
                    meta["pixel_mask"] = mask[()] != 0
    parts = []
    for k in keys:
        try:
            parts.append(H5Stack(path, f"entry/data/{k}"))
        except FileFormatError as exc:
            raise FileFormatError(f"{str(path)!r}: cannot open {k}: {exc}") from exc
    frames = ConcatFrames(parts)
    try:
        frames[0]
    except (OSError, FileFormatError) as exc:
        hint = (
            ""
            if HAVE_HDF5PLUGIN
            else " (install hdf5plugin for bitshuffle/LZ4: pip install 'stacklab[io]')"
        )
        raise FileFormatError(f"cannot read the frames of {str(path)!r}{hint}: {exc}") from exc
    n = frames.shape[0]
    if scan_shape is None:
        scan = (math.isqrt(n),) * 2 if math.isqrt(n) ** 2 == n else (1, n)
        logger.info("read_arina: scan shape %s (pass scan_shape= to override)", scan)
    else:
        scan = tuple(int(s) for s in scan_shape)
        if len(scan) != 2 or min(scan) < 1 or math.prod(scan) != n:
            raise ShapeError(
                f"scan_shape {tuple(scan_shape)} does not match the {n} frames of {str(path)!r}"
            )
    cal = Calibration(q_pixel_size=pixel_size, q_units="m") if pixel_size else Calibration()
    meta["n_frames"] = n
    if "pixel_mask" in meta:
        meta["pixel_mask"] = np.asarray(meta["pixel_mask"], dtype=bool)
    return DataCube(
        set_scan_shape(frames, scan), cal, name=path.stem.replace("_master", ""), metadata=meta
    )
