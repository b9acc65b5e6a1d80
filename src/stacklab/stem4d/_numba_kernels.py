"""Compiled CPU kernels of :mod:`stacklab.stem4d` (numba, ``cache=True``, ``nogil=True``).

Imported lazily by :mod:`.counting` and :mod:`.hotpix` (``ImportError`` without numba). Every
kernel that loops over frames is written for one contiguous range of frames (``_*_range``) and
runs either once over all frames, or over several ranges shared by this thread and a few pool
threads (:func:`run_ranges`): each thread takes the next untaken range until none is left, so a
helper thread that the operating system does not schedule in time (another process holding its
core) costs nothing: the calling thread does its share. :func:`parallel_ok` decides: threads
only for enough work, and only from the main thread (a Dask worker thread already runs blocks in
parallel).

The vectorized NumPy/CuPy twins live next to their callers; tests check that both agree.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np

__all__ = [
    "LITTLE_ENDIAN",
    "copy_reduce",
    "count_events",
    "frame_ranges",
    "local_stats",
    "parallel_ok",
    "patch_frames",
    "run_ranges",
]

logger = logging.getLogger(__name__)

#: The candidate scan of :func:`count_events` reads flag bytes 8 at a time as uint64 words and
#: needs the little-endian byte order to visit them in raster order.
LITTLE_ENDIAN = sys.byteorder == "little"

#: Set to False to force the serial path (e.g. when timing one core).
PARALLEL = True

#: Fewer elements of work than this run on the calling thread alone (handing ranges to other
#: threads costs tens of microseconds).
PARALLEL_MIN_WORK = 1 << 21

_POOL: list[Any] = [None, None]  # (executor, pid of the process that made it)
_POOL_LOCK = threading.Lock()


def _n_threads() -> int:
    # NUMBA_NUM_THREADS (default: the CPU count); numba.get_num_threads() would start numba's
    # own thread pool, which these kernels do not use
    return max(1, int(numba.config.NUMBA_NUM_THREADS))


def parallel_ok(work: int) -> bool:
    """True when ``work`` elements should be shared between threads (see the module
    docstring)."""
    return (
        PARALLEL
        and work >= PARALLEL_MIN_WORK
        and _n_threads() > 1
        and threading.current_thread() is threading.main_thread()
    )


def _pool() -> ThreadPoolExecutor:
    """The helper threads of this process (made again after a fork)."""
    with _POOL_LOCK:
        if _POOL[0] is None or _POOL[1] != os.getpid():
            _POOL[0] = ThreadPoolExecutor(
                max_workers=_n_threads() - 1, thread_name_prefix="stacklab-stem4d"
            )
            _POOL[1] = os.getpid()
        return _POOL[0]


def run_ranges(func: Callable[[int], Any], n_ranges: int) -> None:
    """Call ``func(r)`` for every ``r < n_ranges`` on this thread and the pool's threads.

    ``func`` should spend its time in a ``nogil`` kernel. Ranges are taken one at a time from a
    shared counter; a helper that has not started when this thread runs out of ranges is
    cancelled rather than waited for. Exceptions propagate.
    """
    counter = itertools.count()

    def work() -> None:
        while True:
            r = next(counter)  # atomic under the GIL
            if r >= n_ranges:
                return
            func(r)

    helpers = [_pool().submit(work) for _ in range(min(_n_threads(), n_ranges) - 1)]
    try:
        work()
    finally:
        for h in helpers:
            if not h.cancel():
                h.result()


def frame_ranges(n: int, parallel: bool) -> np.ndarray:
    """Bounds ``(n_ranges + 1,)`` of contiguous frame ranges: about 8 per thread, or one."""
    n_ranges = min(n, 8 * _n_threads()) if parallel else 1
    return np.linspace(0, n, max(n_ranges, 1) + 1).astype(np.int64)


# ------------------------------------------------------------------------------------------------
# electron counting
# ------------------------------------------------------------------------------------------------

# de Bruijn table: index of the lowest set bit of a power of two ``b`` is
# ``_DEBRUIJN[(b * _DEBRUIJN_MUL) >> 58]`` (64-bit wrap-around multiplication)
_DEBRUIJN_MUL = 0x03F79D71B4CB0A89
_DEBRUIJN = np.zeros(64, dtype=np.int64)
for _bit in range(64):
    _DEBRUIJN[((1 << _bit) * _DEBRUIJN_MUL & (2**64 - 1)) >> 58] = _bit
del _bit


@numba.njit(cache=True, nogil=True, inline="always")
def _value(frame, deff, i, j):
    return np.float32(frame[i, j]) - deff[i, j]


@numba.njit(cache=True, nogil=True)
def _count_range(
    block, deff, lim, background, xray, subpixel, f0, f1, out_f, out_r, out_c, out_s, k0, k1
):
    """Events of frames ``f0 <= f < f1`` written to ``out_*[k0:k1]``; their number, or -1 when
    ``k1 - k0`` is too small.

    ``deff``: the dark reference (float32) with +inf at bad pixels, whose values are then -inf
    (never an event, never blocking a neighbour). ``lim``: raw values ``<= lim`` cannot exceed
    the background threshold (the maximum of the dtype at bad pixels). Each row is first turned
    into candidate flags ``raw > lim`` (a vectorized loop); only the few candidates are then
    tested, visiting the set flag bytes of each 8-byte word lowest first (raster order).
    """
    h, w = block.shape[1:]
    table = _DEBRUIJN
    mul = np.uint64(_DEBRUIJN_MUL)
    one = np.uint64(1)
    shift = np.uint64(58)
    n_words = (w + 7) // 8
    flags = np.zeros(n_words * 8, dtype=np.uint8)
    words = flags.view(np.uint64)
    k = k0
    for f in range(f0, f1):
        fr = block[f]
        for i in range(h):
            for j in range(w):
                flags[j] = fr[i, j] > lim[i, j]
            for q in range(n_words):
                word = words[q]
                while word != 0:
                    low = word & (~word + one)
                    word ^= low
                    j = q * 8 + (table[(low * mul) >> shift] >> 3)
                    v = np.float32(fr[i, j]) - deff[i, j]
                    if not (v > background) or v > xray:
                        continue
                    # strictly above the neighbours before it in raster order, at least equal
                    # to those after it
                    if i > 0 and i < h - 1 and j > 0 and j < w - 1:
                        is_max = (
                            (v > _value(fr, deff, i - 1, j - 1))
                            & (v > _value(fr, deff, i - 1, j))
                            & (v > _value(fr, deff, i - 1, j + 1))
                            & (v > _value(fr, deff, i, j - 1))
                            & (v >= _value(fr, deff, i, j + 1))
                            & (v >= _value(fr, deff, i + 1, j - 1))
                            & (v >= _value(fr, deff, i + 1, j))
                            & (v >= _value(fr, deff, i + 1, j + 1))
                        )
                    else:
                        is_max = True
                        for di in range(-1, 2):
                            ii = i + di
                            if ii < 0 or ii >= h:
                                continue
                            for dj in range(-1, 2):
                                jj = j + dj
                                if (di == 0 and dj == 0) or jj < 0 or jj >= w:
                                    continue
                                u = _value(fr, deff, ii, jj)
                                if di < 0 or (di == 0 and dj < 0):
                                    is_max &= v > u
                                else:
                                    is_max &= v >= u
                    if not is_max:
                        continue
                    if k >= k1:
                        return -1
                    out_f[k] = f
                    out_r[k] = i
                    out_c[k] = j
                    if subpixel:
                        tot = 0.0
                        sr = 0.0
                        sc = 0.0
                        for di in range(-1, 2):
                            ii = i + di
                            if ii < 0 or ii >= h:
                                continue
                            for dj in range(-1, 2):
                                jj = j + dj
                                if jj < 0 or jj >= w:
                                    continue
                                u = _value(fr, deff, ii, jj)
                                if u > 0:
                                    tot += u
                                    sr += u * di
                                    sc += u * dj
                        if tot > 0:
                            out_s[k, 0] = i + sr / tot
                            out_s[k, 1] = j + sc / tot
                        else:
                            out_s[k, 0] = i
                            out_s[k, 1] = j
                    k += 1
    return k - k0


def _count_attempt(
    block: np.ndarray, args: tuple, bounds: np.ndarray, per_frame: int, subpixel: bool
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """One try of :func:`count_events` with room for ``per_frame`` events per frame: the
    output slots of each range, the events found per range (-1: out of room) and the outputs."""
    caps = np.concatenate([[0], np.cumsum(np.diff(bounds) * per_frame)]).astype(np.int64)
    total = int(caps[-1])
    outs = (
        np.empty(total, np.int64),
        np.empty(total, np.int32),
        np.empty(total, np.int32),
        np.empty((total if subpixel else 1, 2), np.float32),
    )
    counts = np.zeros(bounds.size - 1, np.int64)

    def one(r: int) -> None:
        f0, f1, k0, k1 = bounds[r], bounds[r + 1], caps[r], caps[r + 1]
        counts[r] = _count_range(block, *args, f0, f1, *outs, k0, k1)

    run_ranges(one, counts.size)
    return caps, counts, outs


def count_events(
    block: np.ndarray,
    deff: np.ndarray,
    lim: np.ndarray,
    background: float,
    xray: float,
    subpixel: bool,
) -> dict[str, np.ndarray]:
    """Events of a C-contiguous block ``(n, H, W)`` (see :func:`_count_range`).

    Returns ``{"frame", "row", "col"[, "subpixel"]}`` in frame, then raster order.
    """
    n, h, w = block.shape
    bounds = frame_ranges(n, parallel_ok(block.size) and n > 1)
    args = (deff, lim, np.float32(background), np.float32(xray), bool(subpixel))
    caps, counts, outs = _count_attempt(block, args, bounds, h * w // 32 + 64, subpixel)
    if np.any(counts < 0):
        # local maxima with this tie-break rule are never denser than one in two pixels
        caps, counts, outs = _count_attempt(block, args, bounds, h * w // 2 + 1, subpixel)
    parts = [slice(int(caps[r]), int(caps[r] + counts[r])) for r in range(counts.size)]
    names = ("frame", "row", "col", "subpixel") if subpixel else ("frame", "row", "col")
    return {name: np.concatenate([a[p] for p in parts]) for name, a in zip(names, outs)}


# ------------------------------------------------------------------------------------------------
# hot pixels: neighbourhood statistics
# ------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _isort(buf, n):
    # insertion sort of buf[:n] in place (n <= 25: faster than np.sort's allocation)
    for a in range(1, n):
        v = buf[a]
        b = a - 1
        while b >= 0 and buf[b] > v:
            buf[b + 1] = buf[b]
            b -= 1
        buf[b + 1] = v


@numba.njit(cache=True, nogil=True, inline="always")
def _cx(a, b):
    return min(a, b), max(a, b)


@numba.njit(cache=True, nogil=True, inline="always")
def _middle8(a0, a1, a2, a3, a4, a5, a6, a7):
    """The 4th and 5th smallest of 8 NaN-free values (19-comparator sorting network, branch-free,
    in registers)."""
    a0, a2 = _cx(a0, a2)
    a1, a3 = _cx(a1, a3)
    a4, a6 = _cx(a4, a6)
    a5, a7 = _cx(a5, a7)
    a0, a4 = _cx(a0, a4)
    a1, a5 = _cx(a1, a5)
    a2, a6 = _cx(a2, a6)
    a3, a7 = _cx(a3, a7)
    a0, a1 = _cx(a0, a1)
    a2, a3 = _cx(a2, a3)
    a4, a5 = _cx(a4, a5)
    a6, a7 = _cx(a6, a7)
    a2, a4 = _cx(a2, a4)
    a3, a5 = _cx(a3, a5)
    a1, a4 = _cx(a1, a4)
    a3, a6 = _cx(a3, a6)
    a1, a2 = _cx(a1, a2)
    a3, a4 = _cx(a3, a4)
    a5, a6 = _cx(a5, a6)
    return a3, a4


@numba.njit(cache=True, nogil=True)
def local_stats(img, dys, dxs, with_mad):
    """Median of the in-image, non-NaN neighbours ``img[i + dys, j + dxs]`` of every pixel and
    (``with_mad``) the median absolute deviation from it; NaN where no neighbour is usable.

    The medians are ``(s[(n - 1) // 2] + s[n // 2]) / 2`` of the sorted ``n`` usable values,
    whichever way they are sorted, so every path gives the same numbers.
    """
    h, w = img.shape
    k = dys.size
    r = 0
    for t in range(k):
        r = max(r, abs(dys[t]), abs(dxs[t]))
    finite = True
    for i in range(h):
        for j in range(w):
            if img[i, j] != img[i, j]:
                finite = False
    ring8 = k == 8 and r == 1
    med = np.empty((h, w))
    mad = np.empty((h, w) if with_mad else (1, 1))
    buf = np.empty(k)
    dev = np.empty(k)
    for i in range(h):
        for j in range(w):
            interior = finite and i >= r and i < h - r and j >= r and j < w - r
            if interior and ring8:
                # the 8 surrounding pixels of a NaN-free image, sorted in registers
                b0 = img[i + dys[0], j + dxs[0]]
                b1 = img[i + dys[1], j + dxs[1]]
                b2 = img[i + dys[2], j + dxs[2]]
                b3 = img[i + dys[3], j + dxs[3]]
                b4 = img[i + dys[4], j + dxs[4]]
                b5 = img[i + dys[5], j + dxs[5]]
                b6 = img[i + dys[6], j + dxs[6]]
                b7 = img[i + dys[7], j + dxs[7]]
                lo, hi = _middle8(b0, b1, b2, b3, b4, b5, b6, b7)
                m = (lo + hi) / 2
                med[i, j] = m
                if with_mad:
                    lo, hi = _middle8(
                        abs(b0 - m),
                        abs(b1 - m),
                        abs(b2 - m),
                        abs(b3 - m),
                        abs(b4 - m),
                        abs(b5 - m),
                        abs(b6 - m),
                        abs(b7 - m),
                    )
                    mad[i, j] = (lo + hi) / 2
                continue
            n = 0
            if interior:
                for t in range(k):  # interior of a NaN-free image: no checks needed
                    buf[t] = img[i + dys[t], j + dxs[t]]
                n = k
            else:
                for t in range(k):
                    ii = i + dys[t]
                    jj = j + dxs[t]
                    if ii >= 0 and ii < h and jj >= 0 and jj < w:
                        v = img[ii, jj]
                        if v == v:
                            buf[n] = v
                            n += 1
            if n == 0:
                med[i, j] = np.nan
                if with_mad:
                    mad[i, j] = np.nan
                continue
            _isort(buf, n)
            m = (buf[(n - 1) // 2] + buf[n // 2]) / 2
            med[i, j] = m
            if with_mad:
                for t in range(n):
                    dev[t] = abs(buf[t] - m)
                _isort(dev, n)
                mad[i, j] = (dev[(n - 1) // 2] + dev[n // 2]) / 2
    return med, mad


# ------------------------------------------------------------------------------------------------
# hot pixels: repair and the fused copy + summary pass
# ------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _patch_range(src, dst, f0, f1, targets, idx, n_valid, is_int, single, copy):
    # dst[f, targets[t]] = median of src[f, idx[t, :n_valid[t]]] for f0 <= f < f1; with
    # ``copy`` the frame is first copied from src (while it is in cache)
    k, m = idx.shape
    vals = np.empty((k, m))
    buf = np.empty(m)
    for f in range(f0, f1):
        s = src[f]
        if copy:
            d = dst[f]
            for p in range(s.size):  # an explicit loop: faster than slice assignment here
                d[p] = s[p]
        # gather every neighbour of the frame first: independent loads, so the cache misses
        # of a frame whose pixels are not in cache overlap
        for t in range(k):
            for q in range(n_valid[t]):
                vals[t, q] = s[idx[t, q]]
        for t in range(k):
            c = 0
            for q in range(n_valid[t]):
                v = vals[t, q]
                if v == v:
                    buf[c] = v
                    c += 1
            if c == 0:
                if not is_int:
                    dst[f, targets[t]] = np.nan
                continue
            if c == 8:  # the usual case: all 8 neighbours usable; branch-free network
                lo, hi = _middle8(buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7])
            else:
                _isort(buf, c)
                lo = buf[(c - 1) // 2]
                hi = buf[c // 2]
            if single:
                # float32 arithmetic step by step, as NumPy does for float32 data
                lo32 = np.float32(lo)
                half = np.float32(np.float32(np.float32(hi) - lo32) * np.float32(0.5))
                val32 = np.float32(lo32 + half)
                dst[f, targets[t]] = lo32 if lo == hi else val32
            else:
                val = lo + (hi - lo) / 2
                if lo == hi:
                    val = lo
                if is_int:
                    val = np.rint(val)
                dst[f, targets[t]] = val


def patch_frames(
    src: np.ndarray,
    dst: np.ndarray,
    targets: np.ndarray,
    nbrs: np.ndarray,
    valid: np.ndarray,
    *,
    copy: bool,
) -> None:
    """Median repair of flat frames ``(n, H * W)``, in parallel over frames where allowed.

    ``dst[f, targets[t]]`` becomes the median of ``src[f, nbrs[t][valid[t]]]`` (non-NaN values;
    integers rounded half to even, float32 in float32 steps as NumPy); ``copy=True`` first copies
    every frame of ``src`` into ``dst``. ``src`` may be ``dst`` itself (``copy=False``) as long
    as no target is a valid neighbour of another, which holds for masked pixels.
    """
    n = src.shape[0]
    valid = np.asarray(valid, dtype=bool)
    order = np.argsort(~valid, axis=1, kind="stable")  # the valid neighbours first, in order
    idx = np.ascontiguousarray(np.take_along_axis(np.asarray(nbrs), order, axis=1), np.int64)
    n_valid = valid.sum(axis=1).astype(np.int64)
    targets = np.ascontiguousarray(targets, np.int64)
    flags = (src.dtype.kind in "iu", src.dtype == np.float32, bool(copy))
    # an in-place repair touches a few cache lines per frame, each probably a cache miss
    work = src.size if copy else n * idx.size * 64
    bounds = frame_ranges(n, parallel_ok(work) and n > 1)

    def one(r: int) -> None:
        _patch_range(src, dst, bounds[r], bounds[r + 1], targets, idx, n_valid, *flags)

    run_ranges(one, bounds.size - 1)


@numba.njit(cache=True, nogil=True)
def _copy_reduce_range(src, dst, acc, f0, f1, use_max):
    # dst[f0:f1] = src[f0:f1] frame by frame; acc = sum (or max) over these frames
    for f in range(f0, f1):
        s = src[f]
        d = dst[f]
        if use_max:
            for p in range(s.size):
                v = s[p]
                d[p] = v
                acc[p] = max(acc[p], v)
        else:
            for p in range(s.size):
                v = s[p]
                d[p] = v
                acc[p] += acc.dtype.type(v)


def copy_reduce(src: np.ndarray, dst: np.ndarray, statistic: str) -> np.ndarray:
    """Copy integer frames ``src`` (n, P) into ``dst`` and return their pixel-wise sum (int64,
    exact: 32-bit partial sums only where they cannot overflow) or maximum (``src.dtype``),
    shape (P,), in one pass over the data."""
    n = src.shape[0]
    parallel = parallel_ok(src.size) and n > 1
    bounds = frame_ranges(n, parallel)
    n_ranges = bounds.size - 1
    use_max = statistic == "max"
    info = np.iinfo(src.dtype)
    if use_max:
        acc = np.full((n_ranges, src.shape[1]), info.min, dtype=src.dtype)
    else:
        # 32-bit sums where no range can overflow them (half the accumulator traffic)
        top = max(abs(int(info.min)), int(info.max))
        per = int(np.diff(bounds).max()) if n else 0
        if src.dtype.kind == "u" and per * top < 2**32:
            acc_dtype = np.uint32
        elif per * top < 2**31:
            acc_dtype = np.int32
        else:
            acc_dtype = np.int64
        acc = np.zeros((n_ranges, src.shape[1]), dtype=acc_dtype)

    def one(r: int) -> None:
        _copy_reduce_range(src, dst, acc[r], bounds[r], bounds[r + 1], use_max)

    run_ranges(one, n_ranges)
    return acc.max(axis=0) if use_max else acc.sum(axis=0, dtype=np.int64)
