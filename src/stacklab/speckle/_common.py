"""Argument checks and helpers shared by the speckle-tracking modules.

Layouts (those of speckle_tracking): a stack is ``(N, M, L)`` = (frames, slow-scan rows ``ss``,
fast-scan columns ``fs``); a mask and a whitefield are ``(M, L)``; a pixel map is ``(2, M, L)`` with
``[0]`` the ss and ``[1]`` the fs object coordinate; translations ``dij`` are ``(N, 2)`` = [ss, fs]
in object pixels; a region of interest is ``[ss0, ss1, fs0, fs1]`` (a slice of the frame).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from ..backend import get_xp, is_cupy, load_kernels, to_numpy
from ..errors import ShapeError

logger = logging.getLogger(__name__)


def numba_kernels() -> ModuleType | None:
    """Return :mod:`._numba_kernels`, or None when numba is not installed."""
    return load_kernels(f"{__package__}._numba_kernels")


def as_array(xp: ModuleType, a: Any) -> Any:
    """Return ``a`` as an array of module ``xp`` (lazy datasets are read)."""
    if is_cupy(a) or isinstance(a, np.ndarray):
        return a if get_xp(a) is xp else xp.asarray(a)
    return xp.asarray(np.asarray(a))


def check_stack(data: Any, name: str = "data") -> tuple[ModuleType, Any]:
    """Validate a ``(N, M, L)`` stack; return ``(xp, stack)`` as float32 or float64.

    Integers and booleans are widened to float32 (exact for detector counts up to 2**24) and
    float16 to float32; float32 and float64 are kept. The input is never modified.

    Raises
    ------
    ShapeError
        If ``data`` is not 3-D or is empty.
    TypeError
        For complex or non-numeric data.
    """
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    if not (isinstance(data, np.ndarray) or is_cupy(data)):
        data = np.asarray(data)
    xp = get_xp(data)
    if data.ndim != 3:
        raise ShapeError(
            f"{name} must be a 3-D array of shape (N, M, L) = (frames, ss, fs), got shape "
            f"{tuple(data.shape)}"
        )
    if data.size == 0:
        raise ShapeError(f"{name} is empty (shape {tuple(data.shape)})")
    kind = data.dtype.kind
    if kind == "c" or kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {data.dtype}")
    if kind != "f" or data.dtype.itemsize < 4:
        data = data.astype(xp.float32)
    return xp, data


def check_frame_array(xp: ModuleType, a: Any, name: str, shape: tuple[int, int]) -> Any:
    """Return ``a`` as an ``xp`` array of shape ``shape`` (M, L) or raise ShapeError."""
    a = as_array(xp, a)
    if tuple(a.shape) != tuple(shape):
        raise ShapeError(f"{name} must have shape {tuple(shape)} (M, L), got {tuple(a.shape)}")
    return a


def check_mask(xp: ModuleType, mask: Any, shape: tuple[int, int], name: str = "mask") -> Any:
    """Return a bool mask of shape (M, L) (True = good pixel); None means all good."""
    if mask is None:
        return xp.ones(shape, dtype=bool)
    mask = check_frame_array(xp, mask, name, shape)
    if mask.dtype != bool:
        if mask.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be boolean (True = good pixel), got dtype {mask.dtype}")
        mask = mask != 0
    return mask


def check_whitefield(xp: ModuleType, W: Any, shape: tuple[int, int], good: Any) -> Any:
    """Return the whitefield as float64 (M, L); raise if it is <= 0 or not finite where good."""
    W = check_frame_array(xp, W, "W", shape).astype(xp.float64)
    bad = good & ~(xp.isfinite(W) & (W > 0))
    n_bad = int(xp.count_nonzero(bad))
    if n_bad:
        raise ValueError(
            f"W (whitefield) must be finite and > 0 on every good pixel; {n_bad} good pixel(s) "
            "have W <= 0 or NaN (mask them, or fill them with make_whitefield)"
        )
    return W


def check_scan(data: Any, mask: Any, W: Any, roi: Any) -> tuple[ModuleType, Any, Any, Any]:
    """Validate the frames, mask, region of interest and whitefield of a scan together.

    Parameters
    ----------
    data : array of shape (N, M, L)
        Frames (see :func:`check_stack`).
    mask : bool array of shape (M, L) or None
        True for good pixels (None: all good).
    W : array of shape (M, L)
        Whitefield, > 0 and finite on every good pixel.
    roi : sequence of 4 int or None
        ``[ss0, ss1, fs0, fs1]`` (None: the whole frame).

    Returns
    -------
    xp : module
        Array module of ``data``.
    data : array of shape (N, M, L)
        float32 or float64.
    good : bool array of shape (M, L)
        Good pixels inside the region of interest.
    W : float64 array of shape (M, L)

    Raises
    ------
    ShapeError
        For mismatched shapes.
    ValueError
        If no good pixel is left, or ``W`` <= 0 or NaN on a good pixel.
    """
    xp, data = check_stack(data)
    shape = tuple(data.shape[1:])
    good = check_mask(xp, mask, shape) & roi_mask(xp, shape, roi)
    if not bool(xp.any(good)):
        raise ValueError("mask has no good pixel: the whole detector (or roi) is masked")
    return xp, data, good, check_whitefield(xp, W, shape, good)


def gather_points(data: Any, idx: Any, W: Any, u: Any) -> tuple[Any, Any, Any, Any]:
    """The pixels ``idx`` (flat indices into (M, L)) of the frames, whitefield and pixel map.

    Returns
    -------
    values : array of shape (N, P)
    w : array of shape (P,)
    u_ss, u_fs : arrays of shape (P,)
    """
    n_frames = data.shape[0]
    return data.reshape(n_frames, -1)[:, idx], W.ravel()[idx], u[0].ravel()[idx], u[1].ravel()[idx]


def kernel_points(values: Any, w: Any, uy: Any, ux: Any, dij: Any, n0: float, m0: float) -> tuple:
    """The leading arguments of the point kernels of :mod:`._numba_kernels`, C-contiguous.

    ``(values, w, uy, ux, dij[:, 0], dij[:, 1], n0, m0)`` with NumPy arrays and float offsets.
    """
    c = np.ascontiguousarray
    return c(values), c(w), c(uy), c(ux), c(dij[:, 0]), c(dij[:, 1]), float(n0), float(m0)


def check_pixel_map(xp: ModuleType, pixel_map: Any, shape: tuple[int, int]) -> Any:
    """Return the pixel map as float64 (2, M, L) or raise."""
    u = as_array(xp, pixel_map)
    if tuple(u.shape) != (2, *shape):
        raise ShapeError(
            f"pixel_map must have shape (2, M, L) = {(2, *shape)} ([0] = ss, [1] = fs), got "
            f"{tuple(u.shape)}"
        )
    u = u.astype(xp.float64)
    if not bool(xp.all(xp.isfinite(u))):
        raise ValueError("pixel_map must be finite (fill bad pixels before passing it)")
    return u


def check_translations(xp: ModuleType, dij: Any, n_frames: int, name: str = "dij_n") -> Any:
    """Return the translations as float64 (N, 2) or raise (mismatched frame count, NaN)."""
    d = as_array(xp, dij).astype(xp.float64)
    if d.ndim != 2 or d.shape[1] != 2:
        raise ShapeError(f"{name} must have shape (N, 2) = [ss, fs] per frame, got {d.shape}")
    if d.shape[0] != n_frames:
        raise ShapeError(
            f"{name} has {d.shape[0]} translations but data has {n_frames} frames; they must match"
        )
    if not bool(xp.all(xp.isfinite(d))):
        raise ValueError(f"{name} must be finite")
    return d


def parse_roi(roi: Any, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Return ``(ss0, ss1, fs0, fs1)`` from ``roi`` (None = whole frame), checked against shape."""
    m, n = shape
    if roi is None:
        return 0, m, 0, n
    vals = [int(v) for v in to_numpy(np.asarray(roi)).ravel()]
    if len(vals) != 4:
        raise ShapeError(f"roi must be [ss0, ss1, fs0, fs1], got {roi!r}")
    s0, s1, f0, f1 = vals
    if not (0 <= s0 < s1 <= m and 0 <= f0 < f1 <= n):
        raise ValueError(f"roi {vals} must satisfy 0 <= ss0 < ss1 <= {m} and 0 <= fs0 < fs1 <= {n}")
    return s0, s1, f0, f1


def roi_mask(xp: ModuleType, shape: tuple[int, int], roi: Any) -> Any:
    """Bool (M, L): True inside the region of interest."""
    s0, s1, f0, f1 = parse_roi(roi, shape)
    out = xp.zeros(shape, dtype=bool)
    out[s0:s1, f0:f1] = True
    return out


def window_offsets(search_window: Any, one_d: bool) -> tuple[int, int]:
    """Half widths ``(h_ss, h_fs)`` of a search window given as int or (ss, fs) full widths."""
    if isinstance(search_window, int | np.integer):
        sw = (int(search_window), int(search_window))
    else:
        vals = list(np.asarray(search_window).ravel())
        if len(vals) != 2:
            raise ValueError(f"search_window must be an int or (ss, fs), got {search_window!r}")
        sw = (int(vals[0]), int(vals[1]))
    if min(sw) < 1:
        raise ValueError(f"search_window must be >= 1, got {search_window!r}")
    h_ss, h_fs = sw[0] // 2, sw[1] // 2
    if one_d:
        h_ss = 0
    return h_ss, h_fs


def as_pair(value: Any, name: str) -> tuple[float, float]:
    """Broadcast a scalar or pair to ``(ss, fs)`` floats."""
    arr = np.broadcast_to(np.asarray(to_numpy(np.asarray(value)), dtype=float), (2,))
    return float(arr[0]), float(arr[1])


def as_sequence(value: Any) -> Sequence[Any]:
    """A tuple from a scalar or an iterable."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return (value,)
    return tuple(value)
