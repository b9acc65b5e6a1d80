"""Open or save a stack of frames whatever its file format, chosen from the file name."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import FileFormatError
from ._common import as_path, require_exists
from .hdf5 import HDF5_SUFFIXES, read_hdf5, write_hdf5
from .npy import read_npy, read_npz, write_npy, write_npz
from .tiff import TIFF_SUFFIXES, read_tiff, write_tiff
from .zarr_io import ZARR_SUFFIXES, is_zarr_store, read_zarr, write_zarr

__all__ = ["SUFFIXES", "file_kind", "open_stack", "save_stack"]

logger = logging.getLogger(__name__)

#: Every supported file name ending, by format.
SUFFIXES = {
    "hdf5": HDF5_SUFFIXES,
    "tiff": TIFF_SUFFIXES,
    "npy": (".npy",),
    "npz": (".npz",),
    "zarr": ZARR_SUFFIXES,
}


def file_kind(path: str | os.PathLike) -> str:
    """Return the format of ``path`` from its suffix.

    Parameters
    ----------
    path : str or path-like
        File or folder (it need not exist).

    Returns
    -------
    str
        ``"hdf5"``, ``"tiff"``, ``"npy"``, ``"npz"`` or ``"zarr"``. A folder holding Zarr
        metadata is ``"zarr"`` whatever its name.

    Raises
    ------
    FileFormatError
        For a suffix stacklab cannot read or write (the message lists the supported ones).
    """
    path = as_path(path)
    suffix = path.suffix.lower()
    for kind, suffixes in SUFFIXES.items():
        if suffix in suffixes:
            return kind
    if is_zarr_store(path):
        return "zarr"
    known = ", ".join(s for group in SUFFIXES.values() for s in group)
    raise FileFormatError(
        f"cannot tell the format of {str(path)!r} from its suffix {suffix or '(none)'!r}; "
        f"supported: {known}"
    )


def open_stack(path: str | os.PathLike, key: str | None = None) -> Any:
    """Open a stack of frames lazily, choosing the reader from the file name.

    Parameters
    ----------
    path : str or path-like
        ``.h5 .hdf5 .hdf .cxi .emd .nxs`` (HDF5), ``.tif .tiff``, ``.npy``, ``.npz`` or a
        ``.zarr`` folder.
    key : str, optional
        Dataset inside the file (HDF5, ``.npz``, Zarr group). None picks the only dataset with
        >= 3 dimensions (HDF5, Zarr) or the only array (``.npz``). Not used for TIFF/``.npy``.

    Returns
    -------
    array-like
        A lazy array with ``shape``, ``dtype``, ``ndim``, ``size``, slicing along axis 0 and
        ``np.asarray`` support, frames first (``(n_frames, rows, cols)``): :class:`H5Stack`,
        :class:`numpy.memmap`, :class:`TiffStack` or ``zarr.Array``; ``.npz`` arrays are loaded
        into memory. Close H5Stack/TiffStack (``with`` block) when done.

    Raises
    ------
    FileFormatError
        If the file is missing, truncated or corrupt, has an unknown suffix, lacks ``key`` (the
        message lists what is available) or the dataset to use is ambiguous.
    """
    path = as_path(path)
    kind = file_kind(path)
    require_exists(path)
    if kind in ("tiff", "npy") and key is not None:
        raise FileFormatError(
            f"{str(path)!r} is a {kind} file with a single stack; got key={key!r}"
        )
    if kind == "hdf5":
        return read_hdf5(path, key)
    if kind == "tiff":
        return read_tiff(path)
    if kind == "npy":
        return read_npy(path)
    if kind == "npz":
        return read_npz(path, key)
    return read_zarr(path, key)


def save_stack(path: str | os.PathLike, array: Any, key: str | None = None, **kwargs: Any) -> Path:
    """Save a stack atomically, choosing the writer from the file name.

    Parameters
    ----------
    path : str or path-like
        Destination; the suffix selects the format as in :func:`open_stack`.
    array : array-like
        Stack ``(n_frames, rows, cols)`` (or any array): NumPy, CuPy, Dask or lazy (lazy
        arrays are copied in blocks of frames).
    key : str, optional
        Dataset name for HDF5 (default ``"data"``), ``.npz`` (default ``"data"``) and Zarr
        (default: the store's root array). Not allowed for TIFF/``.npy``.
    **kwargs
        Passed to the writer (e.g. ``compression=`` for HDF5/TIFF, ``chunks=`` for Zarr).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FileFormatError
        For an unknown suffix, or a ``key`` for a format without keys.
    """
    path = as_path(path)
    kind = file_kind(path)
    if kind in ("tiff", "npy") and key is not None:
        raise FileFormatError(
            f"{str(path)!r} is a {kind} file with a single stack; got key={key!r}"
        )
    if kind == "hdf5":
        return write_hdf5(path, {key or "data": array}, **kwargs)
    if kind == "tiff":
        return write_tiff(path, array, **kwargs)
    if kind == "npy":
        return write_npy(path, array, **kwargs)
    if kind == "npz":
        return write_npz(path, array, key=key or "data", **kwargs)
    return write_zarr(path, array, key=key, **kwargs)
