"""Map per-frame-block kernels over stacks of any storage.

A *kernel* is written once, for a block of frames held in memory (NumPy or CuPy). The engine
feeds it blocks from wherever the stack lives and combines what it returns:

* :func:`map_frames` — the kernel returns one result per frame; results are stacked.
* :func:`reduce_frames` — the kernel returns a partial result (a sum, a histogram, counts);
  partials are combined with ``merge``.
* :func:`collect_frames` — the kernel returns table rows for its block (DataFrame, dict of
  1-D arrays or list); rows are concatenated in frame order.

Supported stacks: NumPy and CuPy arrays (looped chunk by chunk, bounded temporaries, progress bar),
h5py / zarr datasets and other lazily sliceable arrays (read chunk by chunk), and Dask arrays (a
task graph that runs on whatever scheduler is active, including a :func:`cluster`).
A stack with more than ``frame_ndim`` dimensions is seen as frames by flattening the leading
(scan) axes: a 4D scan ``(scan_row, scan_col, det_row, det_col)`` is ``scan_row*scan_col`` frames.
"""

from __future__ import annotations

import contextlib
import logging
import math
import operator
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import backend
from .errors import ShapeError

__all__ = [
    "FrameSource",
    "cluster",
    "collect_frames",
    "iter_blocks",
    "map_frames",
    "reduce_frames",
]

logger = logging.getLogger(__name__)

Kernel = Callable[..., Any]


class FrameSource:
    """A read-only, frames-first view of a stack held anywhere.

    Parameters
    ----------
    stack : array-like
        NumPy/CuPy array, h5py/zarr dataset or any object with ``shape``, ``dtype`` and basic
        slicing along its first axis. A Dask array is read block by block in frame order, each
        block computed when read (for work that must run in order; :func:`map_frames` and the
        other mappers hand Dask arrays to Dask itself instead).
    frame_ndim : int
        Number of trailing axes that make up one frame (2 for images).

    Attributes
    ----------
    scan_shape : tuple of int
        The leading axes that are flattened into frames.
    frame_shape : tuple of int
        Shape of one frame.
    n_frames : int
        ``prod(scan_shape)``.
    """

    def __init__(self, stack: Any, frame_ndim: int = 2) -> None:
        shape = getattr(stack, "shape", None)
        if shape is None or not hasattr(stack, "dtype"):
            raise TypeError(
                f"stack must be an array or dataset with shape and dtype, got {type(stack)!r}"
            )
        if frame_ndim < 0 or len(shape) < frame_ndim + 1:
            raise ShapeError(
                f"stack must have at least {frame_ndim + 1} dimensions "
                f"(frames + {frame_ndim}-D frame), got shape {tuple(shape)}"
            )
        self.stack = stack
        self.frame_ndim = frame_ndim
        split = len(shape) - frame_ndim
        self.scan_shape: tuple[int, ...] = tuple(int(s) for s in shape[:split])
        self.frame_shape: tuple[int, ...] = tuple(int(s) for s in shape[split:])
        self.n_frames = math.prod(self.scan_shape)
        self.dtype = np.dtype(stack.dtype)
        self._in_memory = isinstance(stack, np.ndarray) or backend.is_cupy(stack)
        self._dask = backend.is_dask(stack)

    def read(self, start: int, stop: int) -> Any:
        """Return frames ``start:stop`` as an in-memory array of shape ``(n, *frame_shape)``."""
        stop = min(stop, self.n_frames)
        if self._dask:  # computed here; stays on the device of the Dask array's blocks
            return self.stack.reshape((self.n_frames, *self.frame_shape))[start:stop].compute()
        if len(self.scan_shape) == 1:
            block = self.stack[start:stop]
        elif self._in_memory:
            block = self.stack.reshape((self.n_frames, *self.frame_shape))[start:stop]
        else:
            block = self._read_nd(start, stop)
        if not self._in_memory:
            block = np.asarray(block)
        return block

    def _read_nd(self, start: int, stop: int) -> np.ndarray:
        # Lazily sliceable N-D scan: read whole leading-axis rows covering [start, stop).
        row = math.prod(self.scan_shape[1:])
        r0, r1 = start // row, -(-stop // row)
        rows = np.asarray(self.stack[r0:r1])
        flat = rows.reshape((-1, *self.frame_shape))
        return flat[start - r0 * row : stop - r0 * row]


def _progress(total: int, progress: bool | None, desc: str):
    show = sys.stderr.isatty() if progress is None else bool(progress)
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not show, desc=desc, unit="frame", leave=False)


def _check_chunk(chunk: int) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer number of frames, got {chunk!r}")
    return int(chunk)


def iter_blocks(
    stack: Any,
    *,
    chunk: int = 256,
    frame_ndim: int = 2,
    progress: bool | None = None,
    desc: str = "",
) -> Iterator[tuple[int, Any]]:
    """Yield ``(first_frame, block)`` pairs over an in-memory or lazily sliceable stack.

    Parameters
    ----------
    stack : array-like
        See :class:`FrameSource`.
    chunk : int
        Frames per block.
    frame_ndim : int
        Trailing axes that form one frame.
    progress : bool or None
        Show a tqdm bar; None shows it only when stderr is a terminal.
    desc : str
        Label of the progress bar.
    """
    chunk = _check_chunk(chunk)
    source = FrameSource(stack, frame_ndim)
    with _progress(source.n_frames, progress, desc) as bar:
        for start in range(0, source.n_frames, chunk):
            block = source.read(start, start + chunk)
            yield start, block
            bar.update(block.shape[0])


def _dask_frames(stack: Any, frame_ndim: int, chunk: int):
    """Reshape a Dask stack to (n_frames, *frame) with whole frames per chunk."""
    split = stack.ndim - frame_ndim
    if split < 1:
        raise ShapeError(
            f"stack must have at least {frame_ndim + 1} dimensions, got shape {tuple(stack.shape)}"
        )
    scan_shape = tuple(stack.shape[:split])
    frames = stack.rechunk({i: -1 for i in range(split, stack.ndim)})
    if split > 1:
        frames = frames.reshape((math.prod(scan_shape), *stack.shape[split:]))
    if frames.numblocks[0] == 1 and frames.shape[0] > chunk:
        frames = frames.rechunk({0: chunk})
    return frames, scan_shape


def map_frames(
    kernel: Kernel,
    stack: Any,
    *,
    chunk: int = 256,
    frame_ndim: int = 2,
    out: Any = None,
    per_frame: dict[str, Any] | None = None,
    progress: bool | None = None,
    **params: Any,
) -> Any:
    """Apply ``kernel`` to blocks of frames and stack the per-frame results.

    Parameters
    ----------
    kernel : callable
        ``kernel(block, **per_frame_slices, **params)`` with ``block`` of shape
        ``(n, *frame_shape)`` returns an array of shape ``(n, *result_shape)``. It must not
        modify ``block``.
    stack : array-like
        NumPy, CuPy, Dask array, or a lazily sliceable dataset (h5py, zarr, memmap). Leading axes
        beyond one frame are flattened into frames and restored in the output.
    chunk : int
        Frames per block (bounds temporary memory). For Dask input, the frame chunks of the array
        are used when it has more than one. When results go to a sink (``out``) that is not an
        in-memory array and the scan has several axes, blocks hold whole rows of the first scan
        axis (at least one row).
    frame_ndim : int
        Trailing axes that form one frame.
    out : array-like, optional
        A writable sink of shape ``(*scan_shape, *result_shape)`` (NumPy or CuPy array, h5py or
        zarr dataset, anything with slice assignment): each block's result is written as soon as
        it is computed and ``out`` is returned. Dask input is computed block by block on the
        active scheduler (on a ``dask.distributed`` cluster the workers compute and this process
        writes, a bounded number of blocks in flight).
    per_frame : dict of str to array of shape (n_frames, ...), optional
        Per-frame parameters in flat scan order; the kernel receives, under each key, the rows
        that belong to its block.
    progress : bool or None
        Progress bar (None: only when interactive).
    **params
        Passed to ``kernel``.

    Returns
    -------
    array
        Shape ``(*scan_shape, *result_shape)``: ``out`` when given; otherwise NumPy for
        NumPy/file input, CuPy for CuPy input, a lazy Dask array for Dask input (call
        ``.compute()``).

    Raises
    ------
    ShapeError
        If the kernel does not return one result per frame, ``out`` has the wrong shape, a
        ``per_frame`` array does not have one row per frame, or the stack has no frames.
    """
    chunk = _check_chunk(chunk)
    per_frame = dict(per_frame or {})
    if backend.is_dask(stack):
        lazy = _map_dask(kernel, stack, chunk, frame_ndim, params, per_frame)
        if out is None:
            return lazy
        _check_out(out, tuple(lazy.shape))
        for index, block in _iter_dask_blocks(lazy):
            out[index] = block
        return out
    source = FrameSource(stack, frame_ndim)
    _check_per_frame(per_frame, source.n_frames)
    by_rows = out is not None and len(source.scan_shape) > 1 and not _in_memory(out)
    result = None
    for first, block, n_rows in _frame_blocks(stack, source, chunk, by_rows, progress):
        extra = {k: v[first : first + block.shape[0]] for k, v in per_frame.items()}
        part = kernel(block, **extra, **params)
        part_shape = tuple(getattr(part, "shape", ()))
        if not part_shape or part_shape[0] != block.shape[0]:
            raise ShapeError(
                f"kernel returned shape {getattr(part, 'shape', None)} for a block of "
                f"{block.shape[0]} frames; its first axis must be the frame axis"
            )
        if result is None:
            full = (*source.scan_shape, *part.shape[1:])
            if out is None:
                result = backend.get_xp(part).empty(full, dtype=part.dtype)
            else:
                result = _check_out(out, full)
            flat = result
            if not by_rows and len(source.scan_shape) > 1:
                flat = result.reshape((source.n_frames, *part.shape[1:]))
        if out is not None and not backend.is_cupy(out):
            part = backend.to_numpy(part)
        if by_rows:
            row = first // math.prod(source.scan_shape[1:])
            flat[row : row + n_rows] = part.reshape(
                (n_rows, *source.scan_shape[1:], *part_shape[1:])
            )
        else:
            flat[first : first + part.shape[0]] = part
    if result is None:
        raise ShapeError(f"stack has no frames (shape {tuple(stack.shape)})")
    return result


def _in_memory(array: Any) -> bool:
    return isinstance(array, np.ndarray) or backend.is_cupy(array)


def _check_out(out: Any, expected: tuple[int, ...]) -> Any:
    if tuple(out.shape) != expected:
        raise ShapeError(f"out must have shape {expected}, got {tuple(out.shape)}")
    return out


def _check_per_frame(per_frame: dict[str, Any], n_frames: int) -> None:
    for key, values in per_frame.items():
        shape = tuple(getattr(values, "shape", ()))
        if not shape or shape[0] != n_frames:
            raise ShapeError(
                f"per_frame[{key!r}] must have one row per frame ({n_frames}), got shape {shape}"
            )


def _frame_blocks(
    stack: Any, source: FrameSource, chunk: int, by_rows: bool, progress: bool | None
) -> Iterator[tuple[int, Any, int]]:
    """Yield ``(first_frame, frames (n, *frame_shape), scan_rows)`` blocks of the stack.

    ``by_rows``: blocks of whole rows of the first scan axis (``scan_rows`` of them), else
    ``chunk`` frames in flat order (``scan_rows`` is 0).
    """
    if not by_rows:
        for first, block in iter_blocks(
            stack, chunk=chunk, frame_ndim=source.frame_ndim, progress=progress, desc="map"
        ):
            yield first, block, 0
        return
    per_row = math.prod(source.scan_shape[1:])
    row_ndim = len(source.scan_shape) - 1 + source.frame_ndim
    for row, rows in iter_blocks(
        stack, chunk=max(1, chunk // per_row), frame_ndim=row_ndim, progress=progress, desc="map"
    ):
        yield row * per_row, rows.reshape((-1, *source.frame_shape)), rows.shape[0]


def _map_dask(
    kernel: Kernel,
    stack: Any,
    chunk: int,
    frame_ndim: int,
    params: dict,
    per_frame: dict[str, Any],
) -> Any:
    import dask.array as da

    frames, scan_shape = _dask_frames(stack, frame_ndim, chunk)
    _check_per_frame(per_frame, frames.shape[0])
    names = list(per_frame)
    first = {k: backend.to_numpy(per_frame[k][:1]) for k in names}
    probe = kernel(frames[:1].compute(), **first, **params)
    result_shape = tuple(probe.shape[1:])
    meta = backend.get_xp(probe).empty((0,) * probe.ndim, dtype=probe.dtype)
    frame_index = ("f", *(f"d{i}" for i in range(frame_ndim)))
    args: list[Any] = [frames, frame_index]
    for j, key in enumerate(names):
        values = per_frame[key]
        arr = values if backend.is_dask(values) else da.from_array(backend.to_numpy(values))
        arr = arr.rechunk((frames.chunks[0], *((-1,) * (arr.ndim - 1))))
        args += [arr, ("f", *(f"e{j}_{i}" for i in range(arr.ndim - 1)))]
    mapped = da.blockwise(
        _apply_kernel,
        ("f", *(f"r{i}" for i in range(len(result_shape)))),
        *args,
        new_axes={f"r{i}": n for i, n in enumerate(result_shape)},
        concatenate=True,
        dtype=probe.dtype,
        meta=meta,
        kernel=kernel,
        names=tuple(names),
        params=params,
    )
    return mapped.reshape((*scan_shape, *result_shape))


def _apply_kernel(block: Any, *values: Any, kernel: Kernel, params: dict, names=()) -> Any:
    return kernel(block, **dict(zip(names, values, strict=True)), **params)


def _iter_dask_blocks(arr: Any, in_flight: int | None = None) -> Iterator[tuple[tuple, Any]]:
    """Compute a Dask array block by block, yielding ``(slices, numpy_block)``.

    With an active ``dask.distributed`` client the blocks are computed on the cluster, at most
    ``in_flight`` at a time (default: twice the number of workers), and yielded as they finish;
    otherwise they are computed two at a time on the local scheduler.
    """
    import dask
    from dask.array.core import slices_from_chunks

    blocks = list(arr.to_delayed().ravel())
    slices = slices_from_chunks(arr.chunks)
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        client = None
    if client is None:
        batch = max(1, in_flight or 2)
        for b0 in range(0, len(blocks), batch):
            for k, res in enumerate(dask.compute(*blocks[b0 : b0 + batch])):
                yield slices[b0 + k], np.asarray(backend.to_numpy(res))
        return
    from distributed import as_completed

    limit = in_flight or 2 * max(1, len(client.scheduler_info().get("workers", {})))
    pending = list(range(len(blocks)))
    index_of = {}
    queue = as_completed()

    def submit() -> None:
        i = pending.pop(0)
        future = client.compute(blocks[i])
        index_of[future.key] = i
        queue.add(future)

    while pending and len(index_of) < limit:
        submit()
    for future in queue:
        i = index_of.pop(future.key)
        block = np.asarray(backend.to_numpy(future.result()))
        future.release()
        if pending:
            submit()
        yield slices[i], block


def reduce_frames(
    kernel: Kernel,
    stack: Any,
    *,
    merge: Callable[[Any, Any], Any] = operator.add,
    chunk: int = 256,
    frame_ndim: int = 2,
    progress: bool | None = None,
    **params: Any,
) -> Any:
    """Reduce a stack by combining per-block partial results.

    Parameters
    ----------
    kernel : callable
        ``kernel(block, **params)`` returns a partial result for a block of frames (an array
        sum, a histogram, a tuple of counts...).
    stack : array-like
        As in :func:`map_frames`.
    merge : callable
        ``merge(a, b)`` combines two partials; must be associative (default ``operator.add``).
    chunk, frame_ndim, progress, **params
        As in :func:`map_frames`.

    Returns
    -------
    object
        The merged partial. Dask input is computed (on the active scheduler) and returned in memory.
    """
    chunk = _check_chunk(chunk)
    if backend.is_dask(stack):
        return _reduce_dask(kernel, stack, merge, chunk, frame_ndim, params)
    total = None
    for _, block in iter_blocks(
        stack, chunk=chunk, frame_ndim=frame_ndim, progress=progress, desc="reduce"
    ):
        part = kernel(block, **params)
        total = part if total is None else merge(total, part)
    return total


def _tree_merge(parts: list, merge: Callable[[Any, Any], Any], delayed) -> Any:
    while len(parts) > 1:
        nxt = [delayed(merge)(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    return parts[0]


def _block_delayed(stack: Any, chunk: int, frame_ndim: int) -> list:
    frames, _ = _dask_frames(stack, frame_ndim, chunk)
    return list(frames.to_delayed().ravel())


def _reduce_dask(kernel, stack, merge, chunk, frame_ndim, params):
    import dask

    blocks = _block_delayed(stack, chunk, frame_ndim)
    parts = [dask.delayed(_apply_kernel)(b, kernel=kernel, params=params) for b in blocks]
    return dask.compute(_tree_merge(parts, merge, dask.delayed))[0]


def collect_frames(
    kernel: Kernel,
    stack: Any,
    *,
    chunk: int = 256,
    frame_ndim: int = 2,
    progress: bool | None = None,
    **params: Any,
) -> Any:
    """Gather table rows produced per block, in frame order.

    Parameters
    ----------
    kernel : callable
        ``kernel(block, first_frame, **params)`` returns rows for the block: a pandas DataFrame,
        a dict of equal-length 1-D arrays, a list, or an array whose first axis is rows.
        ``first_frame`` is the global index of ``block[0]`` so rows can carry a frame number.
    stack : array-like
        As in :func:`map_frames`.
    chunk, frame_ndim, progress, **params
        As in :func:`map_frames`.

    Returns
    -------
    DataFrame, dict, list or array
        The concatenation of all blocks' rows (same type as the kernel returns).
    """
    chunk = _check_chunk(chunk)
    if backend.is_dask(stack):
        import dask

        frames, _ = _dask_frames(stack, frame_ndim, chunk)
        starts = np.concatenate([[0], np.cumsum(frames.chunks[0])[:-1]])
        blocks = frames.to_delayed().ravel()
        parts = [
            dask.delayed(_apply_collect)(b, int(s), kernel=kernel, params=params)
            for b, s in zip(blocks, starts, strict=True)
        ]
        return concat_rows(list(dask.compute(*parts)))
    parts = [
        kernel(block, start, **params)
        for start, block in iter_blocks(
            stack, chunk=chunk, frame_ndim=frame_ndim, progress=progress, desc="collect"
        )
    ]
    return concat_rows(parts)


def _apply_collect(block: Any, first: int, *, kernel: Kernel, params: dict) -> Any:
    return kernel(block, first, **params)


def concat_rows(parts: list) -> Any:
    """Concatenate per-block rows (DataFrames, dicts of arrays, lists or arrays) in order."""
    if not parts:
        return []
    first = parts[0]
    if hasattr(first, "iloc"):
        import pandas as pd

        return pd.concat(parts, ignore_index=True)
    if isinstance(first, dict):
        return {k: _concat_arrays([p[k] for p in parts]) for k in first}
    if isinstance(first, list):
        return [row for p in parts for row in p]
    return _concat_arrays(parts)


def _concat_arrays(arrays: list) -> Any:
    xp = backend.get_xp(*arrays)
    return xp.concatenate([xp.asarray(a) for a in arrays])


@contextlib.contextmanager
def cluster(
    n_workers: int = 2,
    *,
    threads_per_worker: int = 1,
    memory_limit: str | int = "2GiB",
    address: str | None = None,
    processes: bool = True,
    dashboard: bool = False,
) -> Iterator[Any]:
    """Run Dask work inside this block on a ``dask.distributed`` cluster.

    Starts a :class:`distributed.LocalCluster` (or connects to ``address``), makes its client the
    default scheduler, and shuts it down on exit. Worker threads are limited so NumPy's own thread
    pools do not oversubscribe the cores.

    Parameters
    ----------
    n_workers : int
        Local worker processes (ignored with ``address``).
    threads_per_worker : int
        Threads per worker; BLAS/OpenMP threads in the workers are set to the same number.
    memory_limit : str or int
        Memory a worker may use before it spills and is restarted (e.g. ``"2GiB"``).
    address : str, optional
        Scheduler address of an existing cluster (``"tcp://host:8786"``) to connect to instead.
    processes : bool
        Workers as processes (True) or threads in this process.
    dashboard : bool
        Serve the Dask dashboard on the usual port 8787 (else on a free port nobody is told of).

    Yields
    ------
    distributed.Client
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "engine.cluster needs the dask extra: pip install 'stacklab[dask]'"
        ) from exc
    if address is not None:
        with Client(address) as client:
            yield client
        return
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    env = {
        k: str(threads_per_worker)
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
    }
    import dask

    # The nanny applies pre-spawn-environ to os.environ of *this* process before spawning
    # workers; put the caller's values back afterwards (numba refuses a changed thread count).
    saved = {k: os.environ.get(k) for k in env}
    with (
        _restored_environ(saved),
        dask.config.set({"distributed.nanny.pre-spawn-environ": env}),
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            memory_limit=memory_limit,
            processes=processes,
            dashboard_address=":8787" if dashboard else ":0",
        ) as local,
        Client(local) as client,
    ):
        logger.info(
            "dask.distributed cluster with %d workers at %s", n_workers, local.scheduler_address
        )
        yield client


@contextlib.contextmanager
def _restored_environ(saved: dict[str, str | None]):
    """Restore the environment variables in ``saved`` (None: unset) when the block ends."""
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
