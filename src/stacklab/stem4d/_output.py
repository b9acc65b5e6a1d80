"""Where per-frame results of a 4D cube go: returned arrays, writable targets, or HDF5 files.

:func:`map_cube` is :func:`stacklab.engine.map_frames` plus one more kind of ``out``: a path,
written as an HDF5 file atomically, block of scan rows by block of scan rows (bounded memory, so
a cube larger than memory can be processed file to file, also from a Dask array computed on a
``dask.distributed`` cluster: the workers compute, this process writes).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import backend, engine

__all__ = ["LazyMapped", "map_cube"]

logger = logging.getLogger(__name__)


def _result_layout(
    kernel: Callable[..., Any], data: Any, per_frame: dict[str, Any], params: dict[str, Any]
) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the whole result, from the kernel run on the first frame."""
    first = data[(0,) * (data.ndim - 2)][None]
    if backend.is_dask(first):
        first = first.compute()
    elif not backend.is_cupy(first):
        first = np.asarray(first)
    extra = {k: v[:1] for k, v in per_frame.items()}
    probe = kernel(first, **extra, **params)
    return (*data.shape[:-2], *probe.shape[1:]), np.dtype(probe.dtype)


def map_cube(
    kernel: Callable[..., Any],
    data: Any,
    *,
    out: Any = None,
    key: str = "data",
    compression: Any = None,
    chunk: int = 256,
    progress: bool | None = None,
    per_frame: dict[str, Any] | None = None,
    **params: Any,
) -> Any:
    """Apply a per-frame-block kernel to a cube and deliver the result to ``out``.

    Parameters
    ----------
    kernel : callable
        ``kernel(block (n, H, W), **per_frame_slices, **params) -> (n, ...)``.
    data : array-like of shape (..., H, W)
        NumPy, CuPy, Dask or file-backed frames.
    out : None, str, path or array-like
        None: return the result (lazy Dask array for Dask input). A path: write an HDF5 file
        (dataset ``key``) atomically and return its path. An array or dataset: fill it and
        return it.
    key : str
        Dataset name for a path ``out``.
    compression : optional
        h5py compression for a path ``out``.
    chunk : int
        Frames per block.
    progress : bool or None
        Progress bar.
    per_frame : dict of str to array of shape (n_frames, ...), optional
        Per-frame parameters (flat raster order); the kernel receives the slice of each that
        belongs to its block.
    **params
        Passed to ``kernel``.
    """
    per_frame = per_frame or {}
    run = {"chunk": chunk, "progress": progress, "per_frame": per_frame, **params}
    if not isinstance(out, str | os.PathLike):
        return engine.map_frames(kernel, data, out=out, **run)
    import h5py

    from ..io import atomic_path
    from ..io._common import default_chunks

    shape, dtype = _result_layout(kernel, data, per_frame, params)
    chunks = default_chunks(shape, dtype) if all(shape) else None
    if chunks is not None and len(shape) == 4:
        chunks = (1, max(1, min(shape[1], chunks[0])), *shape[2:])
    path = Path(out)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        kw = {"compression": compression} if compression else {}
        target = f.create_dataset(key, shape=shape, dtype=dtype, chunks=chunks, **kw)
        engine.map_frames(kernel, data, out=target, **run)
    return path


class LazyMapped:
    """A read-only lazy view of ``kernel`` applied to a cube, computed when sliced.

    Reading ``view[a:b]`` reads scan rows ``a:b`` of ``base``, runs ``kernel`` on their frames
    and returns the result, so writers that copy block by block (e.g.
    :func:`~stacklab.stem4d.write_emd`) process a file larger than memory with bounded memory.

    Parameters
    ----------
    base : array-like of shape (scan_row, ..., H, W)
        NumPy or lazily read cube.
    kernel : callable
        ``kernel(frames (n, H, W), **params) -> (n, ...)``.
    **params
        Passed to ``kernel``.
    """

    def __init__(self, base: Any, kernel: Callable[..., Any], **params: Any) -> None:
        self.base = base
        self.kernel = kernel
        self.params = params
        shape = tuple(int(s) for s in base.shape)
        first = np.asarray(base[(0,) * (len(shape) - 2)])[None]
        probe = backend.to_numpy(kernel(first, **params))
        self.shape = (*shape[:-2], *probe.shape[1:])
        self.dtype = np.dtype(probe.dtype)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        from ..io._common import normalize_index

        index = normalize_index(index, self.ndim)
        first = index[0] if index else slice(None)
        if isinstance(first, int | np.integer):
            rows = np.asarray(self.base[int(first) : int(first) + 1])
            squeeze = True
        elif isinstance(first, slice) and first.indices(self.shape[0])[2] == 1:
            a, b, _ = first.indices(self.shape[0])
            rows = np.asarray(self.base[a:b])
            squeeze = False
        else:
            rows = np.asarray(self.base[first])
            squeeze = False
        lead = rows.shape[:-2]
        flat = rows.reshape(-1, *rows.shape[-2:])
        out = (
            backend.to_numpy(self.kernel(flat, **self.params))
            if flat.shape[0]
            else np.empty((0, *self.shape[len(lead) :]), self.dtype)
        )
        out = out.reshape(*lead, *out.shape[1:])
        if squeeze:
            out = out[0]
        rest = tuple(index[1:])
        return out[(slice(None), *rest)] if (rest and not squeeze) else (out[rest] if rest else out)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype, copy=False)
