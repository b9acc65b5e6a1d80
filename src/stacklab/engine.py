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
        slicing along its first axis. Not for Dask arrays (those are mapped by Dask itself).
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

    def read(self, start: int, stop: int) -> Any:
        """Return frames ``start:stop`` as an in-memory array of shape ``(n, *frame_shape)``."""
        stop = min(stop, self.n_frames)
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
    if not isinstance(chunk, int | np.integer) or chunk < 1:
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
    progress: bool | None = None,
    **params: Any,
) -> Any:
    """Apply ``kernel`` to blocks of frames and stack the per-frame results.

    Parameters
    ----------
    kernel : callable
        ``kernel(block, **params)`` with ``block`` of shape ``(n, *frame_shape)`` returns an array
        of shape ``(n, *result_shape)``. It must not modify ``block``.
    stack : array-like
        NumPy, CuPy, Dask array, or a lazily sliceable dataset (h5py, zarr, memmap). Leading axes
        beyond one frame are flattened into frames and restored in the output.
    chunk : int
        Frames per block (bounds temporary memory). For Dask input, the frame chunks of the array
        are used when it has more than one.
    frame_ndim : int
        Trailing axes that form one frame.
    out : array-like, optional
        A writable sink of shape ``(*scan_shape, *result_shape)`` (NumPy array, h5py or zarr
        dataset): each block's result is written as soon as it is computed and ``out`` is returned.
        Not used for Dask input.
    progress : bool or None
        Progress bar (None: only when interactive).
    **params
        Passed to ``kernel``.

    Returns
    -------
    array
        Shape ``(*scan_shape, *result_shape)``. NumPy for NumPy/file input, CuPy for CuPy input, a
        lazy Dask array for Dask input (call ``.compute()``).
    """
    chunk = _check_chunk(chunk)
    if backend.is_dask(stack):
        return _map_dask(kernel, stack, chunk, frame_ndim, params)
    source = FrameSource(stack, frame_ndim)
    result = None
    blocks = iter_blocks(stack, chunk=chunk, frame_ndim=frame_ndim, progress=progress, desc="map")
    for start, block in blocks:
        part = kernel(block, **params)
        part_shape = tuple(getattr(part, "shape", ()))
        if not part_shape or part_shape[0] != block.shape[0]:
            raise ShapeError(
                f"kernel returned shape {getattr(part, 'shape', None)} for a block of "
                f"{block.shape[0]} frames; its first axis must be the frame axis"
            )
        if result is None:
            if out is None:
                xp = backend.get_xp(part)
                result = xp.empty((source.n_frames, *part.shape[1:]), dtype=part.dtype)
            else:
                result = _flat_view(out, source, part)
        if out is not None and not backend.is_cupy(out):
            part = backend.to_numpy(part)
        result[start : start + part.shape[0]] = part
    if out is not None:
        return out
    return result.reshape((*source.scan_shape, *result.shape[1:]))


def _flat_view(out: Any, source: FrameSource, part: Any) -> Any:
    expected = (*source.scan_shape, *part.shape[1:])
    if tuple(out.shape) != expected:
        raise ShapeError(f"out must have shape {expected}, got {tuple(out.shape)}")
    if len(source.scan_shape) == 1:
        return out
    if isinstance(out, np.ndarray) or backend.is_cupy(out):
        return out.reshape((source.n_frames, *part.shape[1:]))
    raise ShapeError("out must be 1 scan axis (frames first) for file sinks; reshape the sink")


def _map_dask(kernel: Kernel, stack: Any, chunk: int, frame_ndim: int, params: dict) -> Any:
    import dask.array as da

    frames, scan_shape = _dask_frames(stack, frame_ndim, chunk)
    probe = kernel(frames[:1].compute(), **params)
    result_shape = tuple(probe.shape[1:])
    meta = backend.get_xp(probe).empty((0,) * probe.ndim, dtype=probe.dtype)
    mapped = da.map_blocks(
        _apply_kernel,
        frames,
        kernel=kernel,
        params=params,
        dtype=probe.dtype,
        meta=meta,
        chunks=(frames.chunks[0], *((s,) for s in result_shape)),
        drop_axis=list(range(1 + len(result_shape), frames.ndim))
        if frames.ndim > probe.ndim
        else None,
        new_axis=list(range(frames.ndim, probe.ndim)) if probe.ndim > frames.ndim else None,
    )
    return mapped.reshape((*scan_shape, *result_shape))


def _apply_kernel(block: Any, *, kernel: Kernel, params: dict) -> Any:
    return kernel(block, **params)


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
