"""Click pieces shared by the domain command groups (``stacklab beads``, ``smlm``, ...).

* :class:`QuantityType` / :func:`parse_quantity`: lengths and angles with a unit (``100nm``,
  ``0.4mm``, ``5um``/``5µm``, ``0.4A``, ``25mrad``), returned in the unit a command works in, or
  ``y,x`` pairs of them; :class:`LengthType` / :func:`parse_length` for lengths;
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
    "QuantityType",
    "check_suffix",
    "chunk_option",
    "device_option",
    "key_option",
    "open_4dstem",
    "opened_stack",
    "output_option",
    "parse_length",
    "parse_quantity",
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

#: Picometres per length unit and microradians per angle unit: exact integers, so the ratio of
#: two units (e.g. mm to m) is correctly rounded. ``a`` is the angstrom.
_UNITS = {
    "length": {"pm": 1.0, "a": 100.0, "nm": 1e3, "um": 1e6, "mm": 1e9, "m": 1e12},
    "angle": {"urad": 1.0, "mrad": 1e3, "rad": 1e6},
}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Zµμ\u00c5]*)\s*$")


def _unit_table(kind: str, unit: str, name: str = "unit") -> dict[str, float]:
    table = _UNITS.get(kind)
    if table is None:
        raise ValueError(f"kind must be one of {tuple(_UNITS)}, got {kind!r}")
    if unit not in table:
        raise ValueError(f"{name} must be one of {tuple(table)}, got {unit!r}")
    return table


def parse_quantity(
    text: str | float,
    name: str = "value",
    *,
    kind: str = "length",
    unit: str,
    bare: str | None = None,
    examples: str,
) -> float:
    """Parse a value with an optional unit, such as ``"0.4mm"``, ``"40pm"`` or ``"25mrad"``.

    Parameters
    ----------
    text : str or float
        Number with an optional unit (any case; ``µm``/``μm`` for um, ``A``/``Å`` for the
        angstrom). A float is already in ``unit``.
    name : str
        Option name for the error message.
    kind : {"length", "angle"}
        Lengths: pm, a, nm, um, mm, m. Angles: urad, mrad, rad.
    unit : str
        Unit of the result.
    bare : str, optional
        Unit of a number written without one (default ``unit``).
    examples : str
        Examples of valid values, shown in the error message.

    Returns
    -------
    float
        The value in ``unit``.

    Raises
    ------
    click.BadParameter
        For an unreadable value or an unknown unit.
    """
    table = _unit_table(kind, unit)
    bare = unit if bare is None else bare
    _unit_table(kind, bare, "bare")
    if isinstance(text, int | float):
        return float(text)
    match = _QUANTITY.match(str(text))
    given = None
    if match is not None:
        given = match.group(2).lower().replace("\u00e5", "a").replace("μ", "u").replace("µ", "u")
        given = given or bare
    if given not in table:
        raise click.BadParameter(
            f"{text!r} is not a {kind}: not a value with a unit ({', '.join(table)}); "
            f"write e.g. {examples}",
            param_hint=name,
        )
    return float(match.group(1)) * (table[given] / table[unit])


def parse_length(
    text: str | float,
    name: str = "length",
    *,
    unit: str = "nm",
    examples: str = "100nm, 0.1um or 1e-7m",
) -> float:
    """Parse a length such as ``"100nm"``, ``"0.1um"`` or ``"1e-7 m"`` into ``unit``.

    :func:`parse_quantity` for lengths, bare numbers in ``unit``.
    """
    return parse_quantity(text, name, kind="length", unit=unit, examples=examples)


class QuantityType(click.ParamType):
    """A click option type for values with units (see :func:`parse_quantity`).

    Parameters
    ----------
    kind : {"length", "angle"}
        What the option holds.
    unit : str
        Unit the command receives.
    examples : str
        Examples of valid values, shown in the error message.
    bare : str, optional
        Unit of numbers written without one (default ``unit``).
    pair : bool
        Also accept ``"y,x"``: the value is then a ``(y, x)`` tuple (a single value is used for
        both).
    """

    def __init__(
        self, kind: str, unit: str, examples: str, *, bare: str | None = None, pair: bool = False
    ) -> None:
        _unit_table(kind, unit)
        if bare is not None:
            _unit_table(kind, bare, "bare")
        self.kind, self.unit, self.examples, self.bare, self.pair = kind, unit, examples, bare, pair
        self.name = kind.upper()

    def parse(self, text: str | float, name: str = "value") -> float:
        """Parse ``text`` into this type's unit; raise :class:`click.BadParameter` if invalid."""
        return parse_quantity(
            text, name, kind=self.kind, unit=self.unit, bare=self.bare, examples=self.examples
        )

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, float | tuple):
            return value
        name = param.opts[0] if param else self.kind
        parts = str(value).split(",") if self.pair else [str(value)]
        if len(parts) > 2:
            self.fail(f"{value!r}: give one value or 'y,x'", param, ctx)
        try:
            values = [self.parse(part, name) for part in parts]
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)
        return (values[0], values[-1]) if self.pair else values[0]


class LengthType(QuantityType):
    """A click option type for lengths with units, in ``unit`` (see :func:`parse_length`)."""

    def __init__(self, unit: str, examples: str) -> None:
        super().__init__("length", unit, examples)


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
