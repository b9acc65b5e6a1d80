"""Lazy, picklable frames-first arrays backed by raw files (memory maps) or several datasets.

They behave like read-only arrays of shape ``(n_frames, rows, cols)`` for
:mod:`stacklab.engine` and :func:`dask.array.from_array`: ``shape``, ``dtype``, ``ndim``,
``size``, ``__len__``, ``__getitem__`` (basic indexing; integer arrays along axis 0) and
``__array__``. Frames are returned as native-endian NumPy arrays. Pickling keeps only the file
names, so they work on ``dask.distributed`` workers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FileFormatError
from ...io._common import LazyArray, normalize_index

__all__ = ["ConcatFrames", "LazyFrames", "MemmapFrames"]


class LazyFrames(LazyArray):
    """Base class: subclasses set ``shape``/``dtype`` and implement ``_read(start, stop)``."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def _read(self, start: int, stop: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: Any) -> np.ndarray:
        index = normalize_index(index, self.ndim)
        first = index[0] if index else slice(None)
        rest = tuple(index[1:])
        n = self.shape[0]
        if isinstance(first, int | np.integer):
            i = int(first)
            if not -n <= i < n:
                raise IndexError(f"frame {i} is out of range for {n} frames")
            i %= n
            return self._read(i, i + 1)[0][rest] if rest else self._read(i, i + 1)[0]
        if isinstance(first, slice):
            a, b, step = first.indices(n)
            if step > 0:
                block = (
                    self._read(a, max(a, b))
                    if b > a
                    else np.empty((0, *self.shape[1:]), self.dtype)
                )
                block = block[::step]
            else:
                idx = np.arange(a, b, step)
                block = self._take(idx)
        else:
            idx = np.asarray(first)
            if idx.dtype == bool:
                idx = np.flatnonzero(idx)
            block = self._take(idx.astype(np.int64) % n if idx.size else idx.astype(np.int64))
        return block[(slice(None), *rest)] if rest else block

    def _take(self, idx: np.ndarray) -> np.ndarray:
        if idx.size == 0:
            return np.empty((0, *self.shape[1:]), self.dtype)
        uniq, inverse = np.unique(idx, return_inverse=True)
        lo, hi = int(uniq[0]), int(uniq[-1]) + 1
        if hi - lo <= 4 * uniq.size:
            return self._read(lo, hi)[uniq - lo][inverse]
        return np.stack([self._read(int(i), int(i) + 1)[0] for i in uniq])[inverse]

    def _read_all(self) -> np.ndarray:
        return self._read(0, self.shape[0])


class MemmapFrames(LazyFrames):
    """Frames stored back to back in a raw file, each optionally preceded by a header.

    Parameters
    ----------
    path : str or path-like
        The file.
    n_frames : int
        Number of (complete) frames to expose.
    frame_shape : (int, int)
        ``(rows, cols)`` of a stored frame.
    dtype : dtype
        Stored pixel type, including byte order (e.g. ``">u2"``).
    offset : int
        Bytes before the first frame.
    header_bytes : int
        Bytes of header before every frame.
    crop : (slice, slice), optional
        Part of each stored frame to return (e.g. EMPAD drops 2 metadata rows).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_frames: int,
        frame_shape: tuple[int, int],
        dtype: Any,
        *,
        offset: int = 0,
        header_bytes: int = 0,
        crop: tuple[slice, slice] | None = None,
    ) -> None:
        self.path = Path(path)
        self.n_frames = int(n_frames)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.file_dtype = np.dtype(dtype)
        self.offset = int(offset)
        self.header_bytes = int(header_bytes)
        self.crop = crop or (slice(None), slice(None))
        rows = len(range(*self.crop[0].indices(self.frame_shape[0])))
        cols = len(range(*self.crop[1].indices(self.frame_shape[1])))
        self.shape = (self.n_frames, rows, cols)
        self.dtype = self.file_dtype.newbyteorder("=")
        self._mm: np.ndarray | None = None

    @property
    def frame_bytes(self) -> int:
        """Bytes per stored frame, header included."""
        return self.header_bytes + math.prod(self.frame_shape) * self.file_dtype.itemsize

    def _memmap(self) -> np.ndarray:
        if self._mm is None:
            if self.header_bytes:
                rec = np.dtype(
                    [("h", f"V{self.header_bytes}"), ("d", self.file_dtype, self.frame_shape)]
                )
            else:
                rec = np.dtype((self.file_dtype, self.frame_shape))
            try:
                mm = np.memmap(
                    self.path, dtype=rec, mode="r", offset=self.offset, shape=(self.n_frames,)
                )
            except (OSError, ValueError) as exc:
                raise FileFormatError(f"cannot map {str(self.path)!r}: {exc}") from exc
            self._mm = mm["d"] if self.header_bytes else mm
        return self._mm

    def _read(self, start: int, stop: int) -> np.ndarray:
        raw = self._memmap()[start:stop][(slice(None), *self.crop)]
        return np.array(raw, dtype=self.dtype)  # copy, native byte order

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mm"] = None
        return state

    def __repr__(self) -> str:
        return f"<MemmapFrames {str(self.path)!r} shape={self.shape} dtype={self.file_dtype.str}>"


class ConcatFrames(LazyFrames):
    """Several frames-first arrays (e.g. the data files of a Dectris master file) as one."""

    def __init__(self, parts: list[Any]) -> None:
        if not parts:
            raise ValueError("parts must not be empty")
        frame = tuple(int(s) for s in parts[0].shape[1:])
        for p in parts:
            if tuple(int(s) for s in p.shape[1:]) != frame:
                raise FileFormatError(
                    f"data parts have different frame shapes: {p.shape[1:]} vs {frame}"
                )
        self.parts = list(parts)
        self._bounds = np.concatenate([[0], np.cumsum([int(p.shape[0]) for p in parts])])
        self.shape = (int(self._bounds[-1]), *frame)
        self.dtype = np.dtype(parts[0].dtype).newbyteorder("=")

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = []
        for k, p in enumerate(self.parts):
            lo, hi = int(self._bounds[k]), int(self._bounds[k + 1])
            a, b = max(start, lo), min(stop, hi)
            if a < b:
                out.append(np.asarray(p[a - lo : b - lo]))
        if not out:
            return np.empty((0, *self.shape[1:]), self.dtype)
        return np.concatenate(out).astype(self.dtype, copy=False)

    def __repr__(self) -> str:
        return f"<ConcatFrames of {len(self.parts)} parts, shape={self.shape}>"
