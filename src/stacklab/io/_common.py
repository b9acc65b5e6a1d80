"""Helpers shared by the stacklab readers and writers (private)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import backend
from ..errors import FileFormatError

__all__ = ["FrameWindow", "LazyArray"]

#: Bytes per block when a lazy array is copied into a file frame block by frame block.
COPY_BLOCK_BYTES = 64 * 2**20
#: Target size of one storage chunk (HDF5/Zarr) when the caller does not choose one.
CHUNK_BYTES = 2**20


def as_path(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path` with ``~`` expanded."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
    return Path(path).expanduser()


def require_exists(path: Path, what: str = "file") -> None:
    """Raise :class:`FileFormatError` if ``path`` does not exist."""
    if not path.exists():
        raise FileFormatError(f"{what} not found: {str(path)!r}")


def is_lazy(data: Any) -> bool:
    """True for array-likes read on demand (h5py/zarr datasets, H5Stack, TiffStack, Dask...).

    Writers copy such arrays block by block along axis 0 instead of loading them whole.
    """
    return (
        not isinstance(data, np.ndarray)
        and not backend.is_cupy(data)
        and hasattr(data, "shape")
        and hasattr(data, "dtype")
        and hasattr(data, "__getitem__")
    )


def host_array(data: Any) -> np.ndarray:
    """A NumPy array holding ``data`` (CuPy and Dask arrays are copied to host memory)."""
    if backend.is_cupy(data):
        return backend.to_numpy(data)
    if backend.is_dask(data):
        return np.asarray(data.compute())
    return np.asarray(data)


def frames_per_block(shape: tuple[int, ...], dtype: Any, nbytes: int = COPY_BLOCK_BYTES) -> int:
    """Frames (entries of axis 0) that fit in ``nbytes``; at least 1."""
    per_frame = math.prod(shape[1:]) * np.dtype(dtype).itemsize
    return max(1, nbytes // max(per_frame, 1))


def iter_frame_blocks(data: Any) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` along axis 0 of ``data`` with bounded memory per block.

    Parameters
    ----------
    data : array-like
        NumPy, CuPy, Dask or lazily sliceable array of at least 1 dimension.

    Yields
    ------
    start : int
        Index of ``block[0]`` along axis 0.
    block : ndarray
        Host copy of ``data[start:start + k]``.
    """
    shape = tuple(int(s) for s in data.shape)
    step = frames_per_block(shape, data.dtype)
    for start in range(0, shape[0], step):
        yield start, host_array(data[start : start + step])


def default_chunks(shape: tuple[int, ...], dtype: Any, nbytes: int = CHUNK_BYTES) -> tuple:
    """Frames-first storage chunks of about ``nbytes``: ``(k, *shape[1:])``.

    A frame larger than ``nbytes`` is still kept whole (one frame per chunk), so reading one
    frame touches one chunk.
    """
    if len(shape) == 0:
        return ()
    k = frames_per_block(shape, dtype, nbytes)
    return (max(1, min(k, int(shape[0]))), *(max(1, int(s)) for s in shape[1:]))


def normalize_index(index: Any, ndim: int) -> tuple:
    """``index`` as a tuple with any ``Ellipsis`` expanded into full slices.

    Raises
    ------
    IndexError
        For ``None``/``np.newaxis`` (not supported on lazy stacks), more than one ellipsis or
        more indices than dimensions.
    """
    if not isinstance(index, tuple):
        index = (index,)
    if any(i is None for i in index):
        raise IndexError("np.newaxis is not supported when indexing a lazy stack")
    n_ell = sum(i is Ellipsis for i in index)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if n_ell:
        pos = next(k for k, i in enumerate(index) if i is Ellipsis)
        fill = ndim - (len(index) - 1)
        index = (*index[:pos], *([slice(None)] * max(fill, 0)), *index[pos + 1 :])
    if len(index) > ndim:
        raise IndexError(f"too many indices: {len(index)} for a {ndim}-D stack")
    return index


def is_full_slice(item: Any, length: int) -> bool:
    """True if ``item`` selects the whole axis of ``length`` in order."""
    return isinstance(item, slice) and item.indices(length) == (0, length, 1)


def axis0_indices(item: Any, length: int) -> np.ndarray | int:
    """Frame numbers selected by ``item`` on an axis of ``length`` (int stays int).

    Raises
    ------
    IndexError
        If an integer is out of range.
    TypeError
        If ``item`` is not an int, slice, or 1-D integer/boolean array.
    """
    if isinstance(item, int | np.integer):
        i = int(item)
        if not -length <= i < length:
            raise IndexError(f"frame index {i} is out of range for {length} frames")
        return i % length
    if isinstance(item, slice):
        return np.arange(*item.indices(length))
    arr = np.asarray(item)
    if arr.dtype == bool:
        if arr.shape != (length,):
            raise IndexError(f"boolean frame mask has shape {arr.shape}, expected ({length},)")
        return np.flatnonzero(arr)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"unsupported frame index {item!r}: use an int, a slice or 1-D int array")
    if arr.size and (arr.min() < -length or arr.max() >= length):
        raise IndexError(f"frame indices out of range for {length} frames")
    return arr % length if arr.size else arr.astype(np.intp)


class LazyArray:
    """Mixin: the array protocol of a lazily read (or written) stack, from ``shape`` and ``dtype``.

    A subclass provides ``shape`` (tuple of int, frames first) and ``dtype`` (attributes or
    properties) and ``__getitem__``; the mixin adds ``ndim``, ``size``, ``nbytes``, ``len()`` and
    ``numpy.asarray`` (which reads everything through :meth:`_read_all`, ``self[...]`` unless a
    subclass knows a faster way).
    """

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Size in bytes once read."""
        return self.size * np.dtype(self.dtype).itemsize

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def _read_all(self) -> Any:
        """All the data (NumPy array); ``self[...]`` by default."""
        return self[...]  # type: ignore[index]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        arr = np.asarray(self._read_all())
        return arr if dtype is None else arr.astype(dtype, copy=False)


class FrameWindow(LazyArray):
    """A lazy view of frames ``start:stop`` (axis 0) of another stack; reads and writes go through.

    Used to resume a chunked write:
    ``map_frames(kernel, FrameWindow(stack, k), out=sink.window(k))`` processes only frames
    ``k:`` without loading or re-writing the first ``k``.

    Parameters
    ----------
    base : array-like
        Any object with ``shape``, ``dtype`` and slicing along axis 0 (NumPy, h5py/zarr dataset,
        :class:`~stacklab.io.H5Stack`, :class:`~stacklab.io.HDF5Sink`...).
    start : int
        First frame of the window (0 <= start <= n_frames).
    stop : int, optional
        One past the last frame (default: all remaining frames).
    """

    def __init__(self, base: Any, start: int, stop: int | None = None) -> None:
        n = int(base.shape[0])
        stop = n if stop is None else int(stop)
        if not 0 <= int(start) <= stop <= n:
            raise ValueError(
                f"window start={start}, stop={stop} must satisfy 0 <= start <= stop <= {n}"
            )
        self.base = base
        self.start = int(start)
        self.stop = stop

    @property
    def shape(self) -> tuple[int, ...]:
        """``(stop - start, *base.shape[1:])``."""
        return (self.stop - self.start, *(int(s) for s in self.base.shape[1:]))

    @property
    def dtype(self) -> np.dtype:
        """Data type of the base stack."""
        return np.dtype(self.base.dtype)

    def _translate(self, index: Any) -> tuple:
        index = normalize_index(index, self.ndim)
        if not index:
            return (slice(self.start, self.stop),)
        first, rest = index[0], index[1:]
        n = self.shape[0]
        if isinstance(first, slice):
            a, b, step = first.indices(n)
            if step > 0:
                return (slice(self.start + a, self.start + max(a, b), step), *rest)
            return (np.arange(a, b, step) + self.start, *rest)
        sel = axis0_indices(first, n)
        return (sel + self.start, *rest)

    def __getitem__(self, index: Any) -> Any:
        return self.base[self._translate(index)]

    def __setitem__(self, index: Any, value: Any) -> None:
        self.base[self._translate(index)] = value

    def _read_all(self) -> Any:
        return self.base[self.start : self.stop]

    def __repr__(self) -> str:
        return f"FrameWindow({self.base!r}, start={self.start}, stop={self.stop})"
