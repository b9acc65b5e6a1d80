"""Argument checks and helpers shared by the bead-tracking modules."""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

import numpy as np

from ..backend import get_xp, is_cupy, load_kernels
from ..errors import ShapeError

logger = logging.getLogger(__name__)


def numba_kernels() -> ModuleType | None:
    """Return :mod:`._numba_kernels`, or None when numba is not installed."""
    return load_kernels(f"{__package__}._numba_kernels")


def as_frames(stack: Any, name: str = "stack") -> tuple[ModuleType, Any]:
    """Validate a frames-first stack and return ``(xp, stack)`` with a float dtype.

    Accepts ``(n, rows, cols)`` (or a single ``(rows, cols)`` frame, made 3-D). Integers and
    booleans are widened to float32 (exact for 8/16-bit data, no wrap-around), float16 to float32;
    float32 and float64 are kept. The input is never modified (a new array is made only when the
    dtype or layout must change).

    Raises
    ------
    ShapeError
        If the stack is not 2-D/3-D, is empty, or frames are smaller than 4 x 4 pixels.
    TypeError
        For complex or non-numeric data.
    """
    if not hasattr(stack, "shape") or not hasattr(stack, "dtype"):
        stack = np.asarray(stack)
    xp = get_xp(stack)
    if not (isinstance(stack, np.ndarray) or is_cupy(stack)):
        stack = np.asarray(stack)
        xp = np
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise ShapeError(
            f"{name} must be a 3-D array of shape (n_frames, rows, cols), got shape "
            f"{tuple(stack.shape)}"
        )
    if stack.shape[0] == 0 or stack.size == 0:
        raise ShapeError(f"{name} is empty (shape {tuple(stack.shape)}); it needs at least 1 frame")
    if min(stack.shape[1:]) < 4:
        raise ShapeError(f"{name} frames must be at least 4 x 4 pixels, got {tuple(stack.shape)}")
    kind = stack.dtype.kind
    if kind == "c" or kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {stack.dtype}")
    if kind == "f" and stack.dtype.itemsize >= 4 and stack.dtype.itemsize <= 8:
        out = stack
    else:
        out = stack.astype(xp.float32)
    return xp, xp.ascontiguousarray(out)


def finite_frames(xp: ModuleType, stack: Any) -> tuple[Any, Any]:
    """Return ``(clean, bad)``: frames holding NaN or inf are replaced by zeros in a copy.

    ``bad`` is a bool array of shape (n_frames,). ``stack`` itself is never modified.
    """
    bad = ~xp.all(xp.isfinite(stack), axis=(1, 2))
    if bool(xp.any(bad)):
        clean = stack.copy()
        clean[bad] = 0
        return clean, bad
    return stack, bad


def as_positions(xp: ModuleType, v: Any, name: str, n: int) -> Any:
    """Broadcast a per-frame coordinate to float64 shape (n,)."""
    a = xp.asarray(v, dtype=xp.float64)
    if a.ndim > 1:
        raise ShapeError(f"{name} must be a scalar or 1-D array of {n} values, got {a.shape}")
    if a.ndim == 1 and a.shape[0] not in (1, n):
        raise ShapeError(f"{name} has {a.shape[0]} values but the stack has {n} frames")
    return xp.ascontiguousarray(xp.broadcast_to(a, (n,)).astype(xp.float64))


def default_max_radius(shape: tuple[int, ...]) -> float:
    """Largest sampling radius kept inside a frame for beads up to 2 px off its centre."""
    return max(2.0, min(shape[-2:]) / 2.0 - 3.0)
