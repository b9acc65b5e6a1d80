"""NumPy ``.npy`` (memory-mapped) and ``.npz`` files; atomic writers."""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FileFormatError
from . import atomic
from ._common import as_path, host_array, is_lazy, iter_frame_blocks, require_exists

__all__ = ["read_npy", "read_npz", "write_npy", "write_npz"]

logger = logging.getLogger(__name__)


def read_npy(path: str | os.PathLike, *, mmap: bool = True) -> np.ndarray:
    """Open a ``.npy`` file, memory-mapped read-only by default.

    Parameters
    ----------
    path : str or path-like
        ``.npy`` file.
    mmap : bool
        Memory-map (lazy: only the slices used are read from disk). False loads a copy.

    Returns
    -------
    numpy.memmap or ndarray
        The array with its stored shape and dtype (a stack is ``(n_frames, rows, cols)``).

    Raises
    ------
    FileFormatError
        If the file is missing, truncated or not a ``.npy`` file.
    """
    path = as_path(path)
    require_exists(path, ".npy file")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FileFormatError(
            f"{str(path)!r} is not a readable .npy file (truncated or corrupt?): {exc}"
        ) from exc


def read_npz(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Load one array of a ``.npz`` archive (archives cannot be memory-mapped).

    Parameters
    ----------
    path : str or path-like
        ``.npz`` file.
    key : str, optional
        Name of the array; may be omitted when the archive holds exactly one.

    Returns
    -------
    ndarray
        The array.

    Raises
    ------
    FileFormatError
        If the file is missing, truncated or not an archive, if ``key`` is missing (the message
        lists the available keys) or if ``key`` is None and there are several arrays.
    """
    path = as_path(path)
    require_exists(path, ".npz file")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as archive:
            keys = list(archive.files)
            if key is None:
                if len(keys) != 1:
                    raise FileFormatError(
                        f"{str(path)!r} holds {len(keys)} arrays; pass key= one of "
                        + ", ".join(repr(k) for k in keys)
                    )
                key = keys[0]
            if key not in keys:
                raise FileFormatError(
                    f"{str(path)!r} has no array {key!r}; available: "
                    + (", ".join(repr(k) for k in keys) or "(none)")
                )
            return archive[key]
    except FileFormatError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise FileFormatError(
            f"{str(path)!r} is not a readable .npz archive (truncated or corrupt?): {exc}"
        ) from exc


def write_npy(path: str | os.PathLike, array: Any) -> Path:
    """Write an array to a ``.npy`` file atomically.

    Parameters
    ----------
    path : str or path-like
        Destination (written exactly as named; no ``.npy`` is appended).
    array : array-like
        NumPy, CuPy, Dask or lazy array; lazy arrays are copied in blocks of frames (axis 0),
        so a stack larger than memory can be converted.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = as_path(path)
    with atomic.atomic_path(path) as tmp:
        if is_lazy(array) and len(array.shape) > 0:
            shape = tuple(int(s) for s in array.shape)
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=array.dtype, shape=shape)
            for start, block in iter_frame_blocks(array):
                out[start : start + block.shape[0]] = block
            out.flush()
            del out
        else:
            data = host_array(array)
            with open(tmp, "wb") as fh:
                np.save(fh, data, allow_pickle=False)
    return path


def write_npz(
    path: str | os.PathLike,
    arrays: Mapping[str, Any] | Any,
    *,
    key: str | None = None,
    compress: bool = False,
) -> Path:
    """Write arrays to a ``.npz`` archive atomically.

    Parameters
    ----------
    path : str or path-like
        Destination (written exactly as named).
    arrays : mapping of str to array-like, or array-like
        ``{name: array}``, or a single array stored under ``key``.
    key : str, optional
        Name of a single array (default ``"data"``).
    compress : bool
        Use :func:`numpy.savez_compressed`.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = as_path(path)
    if not isinstance(arrays, Mapping):
        arrays = {key or "data": arrays}
    elif key is not None:
        raise ValueError("key is only used with a single array, not a mapping of arrays")
    data = {str(k): host_array(v) for k, v in arrays.items()}
    save = np.savez_compressed if compress else np.savez
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        save(fh, **data)
    return path
