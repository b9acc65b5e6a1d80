"""Click pieces shared by the domain command groups (``stacklab beads``, ``smlm``, ...).

* :class:`LengthType` / :func:`parse_length`: lengths with a unit (``100nm``, ``0.4mm``,
  ``5um``/``5µm``, ``1e-7m``), returned in the unit a command works in;
* :func:`parse_shape`: ``ROWSxCOLS`` option values;
* path types and option decorators used by several commands (:func:`output_option`,
  :func:`progress_option`, :func:`key_option`, :func:`chunk_option`, :func:`seed_option`,
  :func:`device_option`), and :func:`check_suffix` for output files;
* :func:`opened_stack`: a stack file opened for the length of a ``with`` block;
* :func:`open_4dstem`: a 4D-STEM file (``.mib``, EMPAD ``.raw``, EMD, Dectris...) opened as a
  lazy 4-D array for the length of a ``with`` block;
* :func:`write_csv`: an atomic CSV table.

This is the application layer: a domain package depends only on ``core``, ``backend``,
``engine`` and ``io``, never on another domain, so where a command of one domain needs what
another domain provides (e.g. ``stacklab ptycho reconstruct-4dstem`` reading files with the 4D-STEM
readers of :mod:`stacklab.stem4d`), the composition happens here, in the CLI layer, which may use
any domain. Domains are imported inside the functions that need them.

Importing this module is cheap (click and the standard library only).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

__all__ = [
    "EXISTING_FILE",
    "EXISTING_PATH",
    "NEW_FILE",
    "LengthType",
    "check_suffix",
    "chunk_option",
    "device_option",
    "key_option",
    "open_4dstem",
    "opened_stack",
    "output_option",
    "parse_length",
    "parse_shape",
    "progress_option",
    "seed_option",
    "write_csv",
]

#: An existing file (not a folder), as a :class:`pathlib.Path`.
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
#: An existing file or folder (e.g. a Zarr store), as a :class:`pathlib.Path`.
EXISTING_PATH = click.Path(exists=True, dir_okay=True, path_type=Path)
#: A file to write (need not exist), as a :class:`pathlib.Path`.
NEW_FILE = click.Path(dir_okay=False, path_type=Path)

#: Nanometres per length unit (exact integers, so ratios are correctly rounded).
_NM_PER_UNIT = {"nm": 1.0, "um": 1e3, "mm": 1e6, "m": 1e9}
_LENGTH = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Zµμ]*)\s*$")


def parse_length(
    text: str | float,
    name: str = "length",
    *,
    unit: str = "nm",
    examples: str = "100nm, 0.1um or 1e-7m",
) -> float:
    """Parse a length such as ``"100nm"``, ``"0.1um"`` or ``"1e-7 m"`` into ``unit``.

    Parameters
    ----------
    text : str or float
        Number with an optional unit (nm, um/µm, mm, m; any case); a bare number (or a float)
        is already in ``unit``.
    name : str
        Option name for the error message.
    unit : {"nm", "um", "mm", "m"}
        Unit of the result.
    examples : str
        Examples of valid values, shown in the error message.

    Returns
    -------
    float
        The length in ``unit``.

    Raises
    ------
    click.BadParameter
        For an unreadable value or unknown unit.
    """
    if isinstance(text, int | float):
        return float(text)
    match = _LENGTH.match(str(text))
    given = match.group(2).lower().replace("μ", "µ").replace("µ", "u") if match else None
    if given == "":
        given = unit
    if match is None or given not in _NM_PER_UNIT:
        raise click.BadParameter(
            f"{text!r} is not a length; write e.g. {examples}", param_hint=name
        )
    return float(match.group(1)) * (_NM_PER_UNIT[given] / _NM_PER_UNIT[unit])


class LengthType(click.ParamType):
    """A click option type for lengths with units (see :func:`parse_length`).

    Parameters
    ----------
    unit : {"nm", "um", "mm", "m"}
        Unit the command receives (and of bare numbers).
    examples : str
        Examples of valid values, shown in the error message.
    """

    name = "LENGTH"

    def __init__(self, unit: str, examples: str) -> None:
        if unit not in _NM_PER_UNIT:
            raise ValueError(f"unit must be one of {tuple(_NM_PER_UNIT)}, got {unit!r}")
        self.unit = unit
        self.examples = examples

    def parse(self, text: str | float, name: str = "length") -> float:
        """Parse ``text`` into this type's unit; raise :class:`click.BadParameter` if invalid."""
        return parse_length(text, name, unit=self.unit, examples=self.examples)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, float):
            return value
        try:
            return self.parse(value, param.opts[0] if param else "length")
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


def parse_shape(text: str, name: str = "--shape") -> tuple[int, int]:
    """Parse ``"ROWSxCOLS"`` (e.g. ``"128x256"``) into ``(rows, cols)``.

    Raises
    ------
    click.BadParameter
        If ``text`` is not two integers joined by ``x``.
    """
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not ROWSxCOLS", param_hint=name) from None
    return rows, cols


def check_suffix(path: Path, suffixes: Sequence[str], message: str, hint: str = "--output") -> None:
    """Raise :class:`click.BadParameter` (``message``) unless ``path`` ends in one of ``suffixes``.

    The comparison ignores case; ``suffixes`` are lower case with the dot (``".csv"``).
    """
    if path.suffix.lower() not in suffixes:
        raise click.BadParameter(message, param_hint=hint)


def output_option(help: str, *, required: bool = True) -> Callable:
    """The ``-o/--output`` option: a file to write, as a :class:`pathlib.Path`.

    With ``required=False`` it defaults to None (the command picks a path).
    """
    extra = {"required": True} if required else {"default": None}
    return click.option("-o", "--output", type=NEW_FILE, help=help, **extra)


def progress_option(default: bool | None = True, help: str = "Progress bar.") -> Callable:
    """The ``--progress/--no-progress`` flag (None: decided by the library, e.g. a TTY test)."""
    return click.option(
        "--progress/--no-progress", default=default, show_default=default is not None, help=help
    )


def key_option() -> Callable:
    """The ``--key`` option: dataset inside an HDF5/NPZ/Zarr file (default: the only one)."""
    return click.option("--key", default=None, help="Dataset inside an HDF5/NPZ/Zarr file.")


def chunk_option(default: int = 256) -> Callable:
    """The ``--chunk`` option: frames per block of chunked work."""
    return click.option(
        "--chunk", type=int, default=default, show_default=True, help="Frames per block."
    )


def seed_option() -> Callable:
    """The ``--seed`` option (int, default 0) for simulations and random splits."""
    return click.option("--seed", type=int, default=0, show_default=True)


def device_option(
    choices: Sequence[str] = ("auto", "cpu", "gpu"), default: str = "cpu"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--device`` option (see :func:`stacklab.backend.resolve_device`)."""
    return click.option(
        "--device", type=click.Choice(list(choices)), default=default, show_default=True
    )


@contextlib.contextmanager
def opened_stack(path: str | os.PathLike, key: str | None = None) -> Iterator[Any]:
    """Open a stack file with :func:`stacklab.io.open_stack`; close it when the block ends.

    Parameters
    ----------
    path : str or path-like
        TIFF, HDF5, NPY/NPZ or Zarr stack.
    key : str, optional
        Dataset inside the file.

    Yields
    ------
    array-like
        The (lazily read) stack, frames first.
    """
    from ..io import open_stack

    stack = open_stack(path, key)
    try:
        yield stack
    finally:
        close = getattr(stack, "close", None)
        if callable(close):
            close()


def _close_lazy(array: Any) -> None:
    """Close the files behind a lazily read array (and behind the views that wrap it).

    Follows ``.base`` through wrappers (e.g. a scan-reshaped view) down to the first NumPy or
    CuPy array, calling ``close()`` on every object that has one (e.g.
    :class:`~stacklab.io.H5Stack`). Memory maps and in-memory arrays are left alone.
    """
    seen: set[int] = set()
    while array is not None and id(array) not in seen:
        if type(array).__module__.split(".")[0] in ("numpy", "cupy"):
            return
        seen.add(id(array))
        close = getattr(array, "close", None)
        if callable(close):
            close()
        array = getattr(array, "base", None)


@contextlib.contextmanager
def open_4dstem(
    path: str | os.PathLike,
    *,
    key: str | None = None,
    scan_shape: tuple[int, int] | None = None,
) -> Iterator[Any]:
    """Open a 4D-STEM file as a lazy 4-D array; close its files when the block ends.

    The file is read by :func:`stacklab.stem4d.open_datacube` (Merlin ``.mib``, EMPAD ``.raw``,
    EMD 1.0, Dectris master files, HDF5, TIFF, Zarr, ``.npy``/``.npz``); nothing is read until
    the array is sliced. Files the reader keeps open (HDF5) are closed on exit, so use the array
    (or compute what is needed from it) inside the block.

    Parameters
    ----------
    path : str or path-like
        The file (or Zarr folder).
    key : str, optional
        Dataset inside an HDF5/Zarr/NPZ file, or the array name in an EMD file.
    scan_shape : (int, int), optional
        ``(scan_row, scan_col)`` of a 3-D stack of frames (a square scan is assumed when the
        frame count is a square).

    Yields
    ------
    array-like of shape (scan_row, scan_col, det_row, det_col)
        The lazily read cube (the ``data`` of the DataCube: a NumPy memory map, a lazy reader
        or an HDF5 dataset view).

    Raises
    ------
    stacklab.errors.FileFormatError
        Missing or unreadable files, unknown formats.
    stacklab.errors.ShapeError
        A scan shape that does not hold the frames.
    """
    from ..stem4d.readers import open_datacube

    scan = None if scan_shape is None else (int(scan_shape[0]), int(scan_shape[1]))
    data = open_datacube(path, scan_shape=scan, key=key).data
    try:
        yield data
    finally:
        _close_lazy(data)


def write_csv(table: Any, path: str | os.PathLike) -> None:
    """Write a pandas DataFrame as CSV (header line, no index), atomically.

    Parameters
    ----------
    table : pandas.DataFrame
        The table.
    path : str or path-like
        Destination; written under a temporary name and renamed.
    """
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
