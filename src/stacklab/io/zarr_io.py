"""Zarr stores (folders): lazy reading and atomic writing. Needs the ``stacklab[io]`` extra."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FileFormatError
from . import atomic
from ._common import as_path, default_chunks, host_array, is_lazy, iter_frame_blocks, require_exists

__all__ = ["ZARR_SUFFIXES", "is_zarr_store", "read_zarr", "write_zarr"]

logger = logging.getLogger(__name__)

#: Folder name endings read and written as Zarr.
ZARR_SUFFIXES = (".zarr",)

_MARKERS = ("zarr.json", ".zarray", ".zgroup")


def _zarr():
    try:
        import zarr
    except ImportError as exc:
        raise ImportError(
            "reading and writing Zarr stores needs the io extra: pip install 'stacklab[io]'"
        ) from exc
    return zarr


def is_zarr_store(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder holding Zarr (v2 or v3) metadata at its top."""
    path = as_path(path)
    return path.is_dir() and any((path / m).exists() for m in _MARKERS)


def _arrays(group: Any, prefix: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, arr in group.arrays():
        found[prefix + name] = arr
    for name, sub in group.groups():
        found.update(_arrays(sub, f"{prefix}{name}/"))
    return found


def _describe(found: Mapping[str, Any]) -> str:
    if not found:
        return "(no arrays)"
    return ", ".join(f"{k!r} {tuple(a.shape)} {a.dtype}" for k, a in found.items())


def read_zarr(path: str | os.PathLike, key: str | None = None) -> Any:
    """Open an array of a Zarr store lazily.

    Parameters
    ----------
    path : str or path-like
        Zarr store folder (``*.zarr``), holding an array or a group.
    key : str, optional
        Path of the array inside a group (``"entry/data"``). None: the store's root array, or
        the only array with >= 3 dimensions of a group.

    Returns
    -------
    zarr.Array
        Lazy array (chunks are read when sliced) with ``shape``, ``dtype`` and slicing.

    Raises
    ------
    FileFormatError
        If the store is missing or unreadable, ``key`` is missing (the message lists the
        arrays), or ``key`` is None and the choice is ambiguous.
    ImportError
        If zarr is not installed (``pip install 'stacklab[io]'``).
    """
    zarr = _zarr()
    path = as_path(path)
    require_exists(path, "Zarr store")
    try:
        node = zarr.open(str(path), mode="r")
    except FileNotFoundError as exc:
        raise FileFormatError(f"{str(path)!r} is not a Zarr store: {exc}") from exc
    except Exception as exc:
        raise FileFormatError(f"cannot open the Zarr store {str(path)!r}: {exc}") from exc
    if hasattr(node, "arrays"):  # a group
        found = dict(sorted(_arrays(node).items()))
        if key is None:
            candidates = [k for k, a in found.items() if a.ndim >= 3]
            if len(candidates) != 1:
                raise FileFormatError(
                    f"{str(path)!r} is a Zarr group with {len(candidates)} arrays of >= 3 "
                    f"dimensions; pass key= one of: {_describe(found)}"
                )
            key = candidates[0]
        name = key.strip("/")
        if name not in found:
            raise FileFormatError(
                f"{str(path)!r} has no array {key!r}; available: {_describe(found)}"
            )
        return found[name]
    if key is not None and key.strip("/"):
        raise FileFormatError(
            f"{str(path)!r} is a single Zarr array {tuple(node.shape)}, it has no key {key!r}"
        )
    return node


def _create(zarr: Any, store: str, name: str | None, data: Any, chunks: Any, attrs: Any) -> Any:
    shape = tuple(int(s) for s in data.shape)
    dtype = np.dtype(data.dtype)
    if chunks is None:
        chunks = default_chunks(shape, dtype) if shape and all(shape) else "auto"
    kwargs: dict[str, Any] = {"shape": shape, "dtype": dtype, "chunks": chunks}
    if attrs:
        kwargs["attributes"] = dict(attrs)
    if hasattr(zarr, "create_array"):  # zarr >= 3
        arr = zarr.create_array(store=store, name=name, **kwargs)
    else:  # zarr 2
        kwargs.pop("attributes", None)
        group_path = {"path": name} if name else {}
        arr = zarr.open_array(store, mode="w", **group_path, **kwargs)
        if attrs:
            arr.attrs.update(dict(attrs))
    if len(shape) == 0:
        arr[()] = host_array(data[()] if is_lazy(data) else data)
    elif all(shape):
        for start, block in iter_frame_blocks(data):
            arr[start : start + block.shape[0]] = block
    return arr


def write_zarr(
    path: str | os.PathLike,
    data: Any,
    *,
    key: str | None = None,
    chunks: tuple[int, ...] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write one array, or several as a group, to a new Zarr store atomically.

    The store is written to a temporary folder next to ``path`` and renamed over it when
    complete; an existing store at ``path`` is replaced only then.

    Parameters
    ----------
    path : str or path-like
        Destination folder (``*.zarr``).
    data : array-like or mapping of str to array-like
        One array (NumPy, CuPy, Dask or lazy; copied in blocks of frames) or ``{key: array}``.
    key : str, optional
        With a single array: store it at this path inside a group instead of as the root array.
    chunks : tuple of int, optional
        Chunk shape (default: whole frames, about 1 MiB per chunk).
    attrs : mapping, optional
        Attributes of the single array (or of the root group for a mapping).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ImportError
        If zarr is not installed (``pip install 'stacklab[io]'``).
    """
    zarr = _zarr()
    path = as_path(path)
    if isinstance(data, Mapping):
        if key is not None:
            raise ValueError("key is only used with a single array, not a mapping of arrays")
        if not data:
            raise ValueError("data must be an array or a non-empty mapping {key: array}")
        items = {str(k).strip("/"): v for k, v in data.items()}
    else:
        items = {key.strip("/") if key else "": data}
    with atomic.atomic_path(path) as tmp:
        store = str(tmp)
        if list(items) == [""]:
            _create(zarr, store, None, _as_source(items[""]), chunks, attrs)
        else:
            group = zarr.open_group(store, mode="w")
            if attrs and isinstance(data, Mapping):
                group.attrs.update(dict(attrs))
            for name, value in items.items():
                single_attrs = attrs if not isinstance(data, Mapping) else None
                _create(zarr, store, name, _as_source(value), chunks, single_attrs)
    return path


def _as_source(value: Any) -> Any:
    return value if is_lazy(value) else host_array(value)
