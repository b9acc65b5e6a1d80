"""Repair of masked (bad, hot, dead) pixels from their unmasked neighbours."""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np

from ..backend import get_xp
from ..errors import ShapeError

__all__ = ["fill_masked"]

logger = logging.getLogger(__name__)


def _median_last_axis(xp, values, valid):
    """Median of ``values[valid]`` along the last axis; NaN where nothing is valid."""
    work = xp.where(valid, values, xp.inf)  # invalid entries sort to the end
    work = xp.sort(work, axis=-1)
    n = xp.sum(valid, axis=-1)
    lo = xp.clip((n - 1) // 2, 0, None)[..., None]
    hi = xp.clip(n // 2, 0, None)[..., None]
    ok = n > 0
    lo_v = xp.where(ok, xp.take_along_axis(work, lo, axis=-1)[..., 0], 0)
    hi_v = xp.where(ok, xp.take_along_axis(work, hi, axis=-1)[..., 0], 0)
    med = 0.5 * lo_v + 0.5 * hi_v  # cannot overflow
    return xp.where(ok, med, xp.nan), n


def fill_masked(
    stack: Any,
    mask: Any,
    *,
    method: Literal["median", "gaussian"] = "median",
    size: int = 3,
    sigma: float = 1.0,
) -> Any:
    """Replace masked pixels by a robust estimate from their unmasked neighbours.

    Only the masked pixels are computed: for each one the ``size x size`` window centred on it is
    gathered (for every frame at once) and its unmasked, in-image, non-NaN neighbours are combined.
    Neighbouring masked pixels never contribute, so adjacent bad pixels (pairs, columns) are
    repaired from good data only.

    Parameters
    ----------
    stack : ndarray of shape (..., H, W)
        Frames (any leading axes). NumPy or CuPy.
    mask : bool array of shape (H, W) or broadcastable to (..., H, W)
        True marks the pixels to replace. A 2-D mask is shared by all frames.
    method : {"median", "gaussian"}, optional
        ``"median"`` (default): the median of the unmasked neighbours (mean of the two middle
        values for an even count). ``"gaussian"``: normalized convolution, i.e. the mean of the
        unmasked neighbours weighted by ``exp(-(dy**2 + dx**2) / (2 sigma**2))``.
    size : int, optional
        Window width in pixels, odd and >= 3 (default 3). The window is centred on the pixel
        (unlike py4DSTEM's even kernels, which are off-centre).
    sigma : float, optional
        Gaussian width in pixels for ``method="gaussian"`` (default 1.0); choose ``size`` of at
        least ``2 * ceil(2 * sigma) + 1`` to cover the kernel.

    Returns
    -------
    ndarray of shape (..., H, W)
        A new array; the input is unchanged. ``"median"`` keeps the input dtype: for integer
        data the median is rounded half-to-even (``rint``). ``"gaussian"`` returns float
        (float32 for float32 input, float64 otherwise). A masked pixel with **no** usable
        neighbour in its window becomes NaN in float output and keeps its original value in
        integer output (a warning is logged).

    Raises
    ------
    ShapeError
        If ``stack`` is not at least 2-D or empty, or ``mask`` does not match it.
    ValueError
        For an even or too small ``size``, a non-positive ``sigma`` or an unknown ``method``.
    TypeError
        If ``mask`` is not boolean or ``stack`` is not real numeric.
    """
    if method not in ("median", "gaussian"):
        raise ValueError(f"method must be 'median' or 'gaussian', got {method!r}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise TypeError(f"size must be an odd integer >= 3, got {size!r}")
    size = int(size)
    if size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= 3 (centred window), got {size}")
    if method == "gaussian" and not (
        isinstance(sigma, int | float | np.integer | np.floating)
        and math.isfinite(sigma)
        and sigma > 0
    ):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")

    xp = get_xp(stack, mask)
    stack = xp.asarray(stack)
    if stack.ndim < 2 or stack.size == 0:
        raise ShapeError(
            f"stack must be a non-empty array of shape (..., H, W), got {tuple(stack.shape)}"
        )
    if stack.dtype.kind not in "biuf":
        raise TypeError(f"stack must be a real numeric array, got dtype {stack.dtype}")
    mask = xp.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"mask must be a boolean array (True = replace), got dtype {mask.dtype}")
    n_rows, n_cols = stack.shape[-2:]
    if mask.ndim < 2 or mask.shape[-2:] != (n_rows, n_cols):
        raise ShapeError(
            f"mask must have shape ({n_rows}, {n_cols}) or (..., {n_rows}, {n_cols}) "
            f"like stack {tuple(stack.shape)}, got {tuple(mask.shape)}"
        )
    try:
        full_shape = np.broadcast_shapes(stack.shape, mask.shape)
    except ValueError:
        full_shape = None
    if full_shape != tuple(stack.shape):
        raise ShapeError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to stack {tuple(stack.shape)}"
        )

    kind = stack.dtype.kind
    if method == "median":
        out_dtype = stack.dtype
        work_dtype = xp.float32 if stack.dtype == xp.float32 else xp.float64
    else:
        out_dtype = xp.float32 if stack.dtype == xp.float32 else xp.float64
        work_dtype = out_dtype
    out = stack.astype(out_dtype, copy=True)
    if not bool(xp.any(mask)):
        return out

    n_frames = int(np.prod(stack.shape[:-2], dtype=np.int64)) if stack.ndim > 2 else 1
    data = stack.reshape(n_frames, n_rows, n_cols)
    result_view = out.reshape(n_frames, n_rows, n_cols)  # a view of the new array

    h = size // 2
    d = xp.arange(-h, h + 1, dtype=xp.int64)
    off_r = xp.repeat(d, size)  # (size*size,)
    off_c = xp.tile(d, size)

    def neighbours(rr, cc):
        nr = rr[:, None] + off_r[None, :]
        nc = cc[:, None] + off_c[None, :]
        inside = (nr >= 0) & (nr < n_rows) & (nc >= 0) & (nc < n_cols)
        return xp.clip(nr, 0, n_rows - 1), xp.clip(nc, 0, n_cols - 1), inside

    if mask.ndim == 2:
        rr, cc = xp.nonzero(mask)
        nr, nc, valid = neighbours(rr, cc)  # (k, s2)
        valid = valid & ~mask[nr, nc]
        values = data[:, nr, nc]  # (N, k, s2)
        original = data[:, rr, cc]  # (N, k)
        target = (slice(None), rr, cc)
    else:
        mask3 = xp.broadcast_to(mask, stack.shape).reshape(n_frames, n_rows, n_cols)
        ff, rr, cc = xp.nonzero(mask3)
        nr, nc, valid = neighbours(rr, cc)
        valid = valid & ~mask3[ff[:, None], nr, nc]
        values = data[ff[:, None], nr, nc]  # (k, s2)
        original = data[ff, rr, cc]
        target = (ff, rr, cc)
    values = values.astype(work_dtype)
    if kind == "f":
        valid = valid & ~xp.isnan(values)
    else:
        valid = xp.broadcast_to(valid, values.shape)

    if method == "median":
        fill, n_used = _median_last_axis(xp, values, valid)
    else:
        g = xp.exp(-(off_r**2 + off_c**2).astype(work_dtype) / (2.0 * float(sigma) ** 2))
        wts = xp.where(valid, g, 0).astype(work_dtype)
        total = xp.sum(wts, axis=-1)
        n_used = xp.sum(valid, axis=-1)
        acc = xp.sum(wts * xp.where(valid, values, 0), axis=-1)
        fill = xp.where(total > 0, acc / xp.where(total > 0, total, 1), xp.nan)

    n_empty = int(xp.sum(n_used == 0))
    if n_empty:
        logger.warning(
            "fill_masked: %d masked pixel(s) have no unmasked neighbour in a %dx%d window; left %s",
            n_empty,
            size,
            size,
            "unchanged (integer data)" if np.dtype(out_dtype).kind in "biu" else "NaN",
        )
    if np.dtype(out_dtype).kind in "biu":
        fill = xp.where(n_used > 0, xp.rint(fill), original.astype(work_dtype))
    result_view[target] = fill.astype(out_dtype)
    return result_view.reshape(stack.shape)
