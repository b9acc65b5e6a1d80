"""Where per-frame results go: returned arrays, NumPy/HDF5 targets, or HDF5 files on disk.

:func:`map_cube` is :func:`stacklab.engine.map_frames` plus output handling for 4D scans:

* ``out=None``: the engine's result (NumPy/CuPy in memory, a lazy Dask array for Dask input);
* ``out=<path>``: an HDF5 file written atomically, block of scan rows by block of scan rows
  (bounded memory, so a cube larger than memory can be processed file to file). Dask input is
  computed block by block on the active scheduler (threads, or a ``dask.distributed`` cluster:
  the workers compute, this process writes, so no HDF5 handle has to cross processes);
* ``out=<array>``: any writable array of the output shape (NumPy, h5py dataset...).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import backend, engine
from ..errors import ShapeError

__all__ = ["LazyMapped", "iter_dask_blocks", "map_cube", "store_dask"]

logger = logging.getLogger(__name__)


def _scan_rows_per_block(shape: tuple[int, ...], chunk: int) -> tuple[int, int]:
    """(frame_ndim, rows per block) so that blocks hold whole scan rows."""
    if len(shape) == 3:
        return 2, chunk
    per_row = math.prod(shape[1:-2])
    return len(shape) - 1, max(1, chunk // max(per_row, 1))


def _write_blocks(
    kernel: Callable[..., Any],
    data: Any,
    make_target: Callable[[tuple[int, ...], np.dtype, Any], Any],
    chunk: int,
    progress: bool | None,
    params: dict[str, Any],
    per_frame: dict[str, Any] | None = None,
) -> Any:
    """Run ``kernel`` over blocks of whole scan rows and write each result into a target.

    ``make_target(shape, dtype, first_part)`` creates the target once the first result is known.
    """
    shape = tuple(int(s) for s in data.shape)
    frame_ndim, rows = _scan_rows_per_block(shape, chunk)
    per_row = math.prod(shape[1:-2]) if len(shape) > 3 else 1
    target = None
    for start, block in engine.iter_blocks(
        data, chunk=rows, frame_ndim=frame_ndim, progress=progress, desc="map"
    ):
        lead = block.shape[: block.ndim - 2]
        flat = block.reshape(-1, *block.shape[-2:])
        extra = {}
        if per_frame:
            f0 = start * per_row
            extra = {k: v[f0 : f0 + flat.shape[0]] for k, v in per_frame.items()}
        part = kernel(flat, **extra, **params)
        if part.shape[0] != flat.shape[0]:
            raise ShapeError("kernel must return one result per frame")
        part = part.reshape(*lead, *part.shape[1:])
        if target is None:
            target = make_target((*shape[:-2], *part.shape[len(lead) :]), part.dtype, part)
        if not backend.is_cupy(target):
            part = backend.to_numpy(part)
        target[start : start + part.shape[0]] = part
    return target


def _map_dask_per_frame(
    kernel: Callable[..., Any], data: Any, chunk: int, per_frame: dict[str, Any], params: dict
) -> Any:
    """Dask version of a kernel that also receives per-frame parameter arrays."""
    import dask.array as da

    shape = tuple(int(s) for s in data.shape)
    scan, det = shape[:-2], shape[-2:]
    n = math.prod(scan)
    frames = data.rechunk({data.ndim - 2: -1, data.ndim - 1: -1})
    if len(scan) > 1:
        frames = frames.reshape((n, *det))
    if frames.numblocks[0] == 1 and n > chunk:
        frames = frames.rechunk({0: chunk})
    names = list(per_frame)
    extras = []
    for k in names:
        v = per_frame[k]
        arr = da.from_array(backend.to_numpy(v)) if not backend.is_dask(v) else v
        extras.append(arr.rechunk((frames.chunks[0], *((-1,) * (arr.ndim - 1)))))
    probe = kernel(
        frames[:1].compute(), **{k: backend.to_numpy(per_frame[k][:1]) for k in names}, **params
    )
    result_shape = tuple(probe.shape[1:])

    def apply(block: Any, *vals: Any) -> Any:
        return kernel(block, **dict(zip(names, vals)), **params)

    meta = backend.get_xp(probe).empty((0,) * probe.ndim, dtype=probe.dtype)
    args: list[Any] = [frames, ("a", "d0", "d1")]
    for j, arr in enumerate(extras):
        args += [arr, ("a", *(f"e{j}_{i}" for i in range(arr.ndim - 1)))]
    mapped = da.blockwise(
        apply,
        ("a", *(f"r{i}" for i in range(len(result_shape)))),
        *args,
        new_axes={f"r{i}": s for i, s in enumerate(result_shape)},
        concatenate=True,
        dtype=probe.dtype,
        meta=meta,
    )
    return mapped.reshape((*scan, *result_shape))


def iter_dask_blocks(
    arr: Any, *, in_flight: int | None = None
) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    """Compute a Dask array block by block, yielding ``(slices, numpy_block)``.

    With an active ``dask.distributed`` client the blocks are computed on the cluster, at most
    ``in_flight`` at a time (default: twice the number of workers), and yielded as they finish;
    otherwise they are computed in small batches on the local scheduler.
    """
    import dask
    from dask.array.core import slices_from_chunks

    blocks = list(arr.to_delayed().ravel())
    slices = slices_from_chunks(arr.chunks)
    client = None
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        client = None
    if client is not None:
        from distributed import as_completed

        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        limit = in_flight or 2 * n_workers
        pending = list(range(len(blocks)))
        futures = {}
        queue = as_completed()
        while pending and len(futures) < limit:
            i = pending.pop(0)
            fut = client.compute(blocks[i])
            futures[fut.key] = i
            queue.add(fut)
        for fut in queue:
            i = futures.pop(fut.key)
            block = np.asarray(backend.to_numpy(fut.result()))
            fut.release()
            if pending:
                j = pending.pop(0)
                nxt = client.compute(blocks[j])
                futures[nxt.key] = j
                queue.add(nxt)
            yield slices[i], block
        return
    batch = max(1, in_flight or 2)
    for b0 in range(0, len(blocks), batch):
        results = dask.compute(*blocks[b0 : b0 + batch])
        for k, res in enumerate(results):
            yield slices[b0 + k], np.asarray(backend.to_numpy(res))


def store_dask(arr: Any, target: Any) -> Any:
    """Write a Dask array into ``target`` (anything with ``__setitem__``) block by block."""
    for sl, block in iter_dask_blocks(arr):
        target[sl] = block
    return target


def _open_h5_target(tmp: Path, key: str, compression: Any):
    import h5py

    from ..io._common import default_chunks

    f = h5py.File(tmp, "w")

    def make(shape: tuple[int, ...], dtype: np.dtype, part: Any = None) -> Any:
        chunks = default_chunks(shape, dtype) if all(shape) else None
        if chunks is not None and len(shape) == 4:
            chunks = (1, max(1, min(shape[1], chunks[0])), *shape[2:])
        kw = {"compression": compression} if compression else {}
        return f.create_dataset(key, shape=shape, dtype=dtype, chunks=chunks, **kw)

    return f, make


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
        (dataset ``key``) atomically and return its path. An array: fill it and return it.
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
    if backend.is_dask(data):
        if per_frame:
            lazy = _map_dask_per_frame(kernel, data, chunk, per_frame, params)
        else:
            lazy = engine.map_frames(kernel, data, chunk=chunk, **params)
        if out is None:
            return lazy
        if isinstance(out, str | os.PathLike):
            from ..io import atomic_path

            path = Path(out)
            with atomic_path(path) as tmp:
                f, make = _open_h5_target(tmp, key, compression)
                with f:
                    store_dask(lazy, make(tuple(lazy.shape), np.dtype(lazy.dtype), None))
            return path
        if tuple(out.shape) != tuple(lazy.shape):
            raise ShapeError(f"out must have shape {tuple(lazy.shape)}, got {tuple(out.shape)}")
        return store_dask(lazy, out)
    if out is None and not per_frame:
        return engine.map_frames(kernel, data, chunk=chunk, progress=progress, **params)
    if out is None:

        def alloc(shape: tuple[int, ...], dtype: np.dtype, part: Any) -> Any:
            return backend.get_xp(part).empty(shape, dtype=dtype)

        return _write_blocks(kernel, data, alloc, chunk, progress, params, per_frame)
    if isinstance(out, str | os.PathLike):
        from ..io import atomic_path

        path = Path(out)
        with atomic_path(path) as tmp:
            f, make = _open_h5_target(tmp, key, compression)
            with f:
                _write_blocks(kernel, data, make, chunk, progress, params, per_frame)
        return path

    def check(shape: tuple[int, ...], dtype: np.dtype, part: Any) -> Any:
        if tuple(out.shape) != shape:
            raise ShapeError(f"out must have shape {shape}, got {tuple(out.shape)}")
        return out

    _write_blocks(kernel, data, check, chunk, progress, params, per_frame)
    return out


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
