"""Sub-pixel refinement of extrema in 1-D profiles and 2-D images.

All functions are vectorized over any number of leading batch axes (frames, beads, scan
positions) and run unchanged on NumPy or CuPy arrays: the array module is taken from the inputs
(:func:`stacklab.backend.get_xp`) and results stay on the input's device.

Positions are in sample (pixel) index units: the centre of sample ``i`` is at ``i``.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np

from ..backend import get_xp
from ..errors import ShapeError

__all__ = ["argmax_parabolic", "parabolic_vertex", "quadratic_peak_2d"]

logger = logging.getLogger(__name__)

# Curvature below this fraction of the data range (over the fit window) counts as degenerate.
_CURVATURE_RTOL = 1e3 * np.finfo(np.float64).eps


def _check_mode(mode: str) -> None:
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")


def _check_n_local(n_local: Any) -> int:
    if isinstance(n_local, bool) or not isinstance(n_local, int | np.integer):
        raise TypeError(f"n_local must be an odd integer >= 3, got {n_local!r}")
    n_local = int(n_local)
    if n_local < 3 or n_local % 2 == 0:
        raise ValueError(f"n_local must be an odd integer >= 3, got {n_local}")
    return n_local


def _rounded_index(xp, index, name: str, shape: tuple[int, ...], size: int):
    """Return ``index`` broadcast to ``shape`` as int64 plus a mask of rows whose index was NaN.

    Floating-point indices are rounded half-to-even; NaN indices are allowed (flagged), other
    non-finite values and indices outside ``[0, size)`` raise ``ValueError``.
    """
    index = xp.asarray(index)
    if index.dtype.kind == "b" or index.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold integers, got dtype {index.dtype}")
    try:
        index = xp.broadcast_to(index, shape)
    except ValueError:
        raise ShapeError(
            f"{name} has shape {tuple(index.shape)}, which does not broadcast to the batch "
            f"shape {shape}"
        ) from None
    if index.dtype.kind == "f":
        missing = xp.isnan(index)
        if bool(xp.any(xp.isinf(index))):
            raise ValueError(f"{name} must be finite (NaN marks a missing estimate), got inf")
        index = xp.where(missing, 0, xp.rint(index)).astype(xp.int64)
    else:
        missing = xp.zeros(shape, dtype=bool)
        index = index.astype(xp.int64)
    if index.size and bool(xp.any((index < 0) | (index >= size))):
        raise ValueError(f"{name} must lie in [0, {size - 1}] (the sample axis), got out-of-range")
    return index, missing


def parabolic_vertex(
    values: Any,
    index: Any,
    *,
    n_local: int = 3,
    weights: Any = None,
    window_weights: Any = None,
    edge: Literal["shift", "nan"] = "shift",
) -> Any:
    """Refine the position of an extremum by a least-squares parabola through nearby samples.

    For every 1-D profile along the last axis, the ``n_local`` samples centred on ``index`` are
    fitted with ``y = a + b t + c t**2`` (``t`` the sample offset from the window centre) and the
    vertex ``-b / (2 c)`` is returned in sample index units. The fit is exact for samples of a
    parabola. Maxima and minima are treated alike (the sign of ``c`` is not checked).

    Parameters
    ----------
    values : ndarray of shape (..., n)
        Profiles, one per leading index (e.g. ``(n_frames, n)``). Integer data are converted to
        float64.
    index : int array of shape (...) or broadcastable to it
        Integer estimates of the extremum, in ``[0, n)``. Floating-point estimates are rounded
        half-to-even (``rint``); a NaN estimate gives a NaN result for that profile.
    n_local : int, optional
        Number of samples in the fit window, odd and at least 3 (default 3), and at most ``n``.
    weights : ndarray of shape (..., n) or (n,), optional
        Non-negative statistical weights multiplying the **squared** residuals (``1 / sigma**2``).
        NumPy's ``polyfit(w=...)`` multiplies the unsquared residuals, so its ``w`` corresponds
        to ``weights = w**2`` here. None (default) is an unweighted fit.
    window_weights : array of shape (n_local,), optional
        Weights attached to the positions *within the fit window* (first to last sample of the
        window), the same for every profile; they multiply ``weights`` when both are given.
        magtrack's ``weighted=True`` fit is ``window_weights=(h + 1 - abs(t))**2`` with
        ``t = -h..h`` and ``h = n_local // 2`` (e.g. ``[1, 4, 9, 4, 1]`` for ``n_local=5``).
    edge : {"shift", "nan"}, optional
        What to do near the ends of the profile. ``"shift"`` (default) moves the window inward so
        that it stays inside ``[0, n)``; ``"nan"`` returns NaN whenever the window would touch or
        cross an end, i.e. when ``index <= n_local // 2`` or ``index >= n - 1 - n_local // 2``
        (the convention of magtrack's ``parabolic_vertex``).

    Returns
    -------
    ndarray of float64, shape (...)
        Vertex positions in sample index units, on the input's device. NaN where the estimate was
        NaN, where fewer than three samples carry weight, or where the fitted curvature is zero
        relative to the data range in the window (a flat or straight profile).

    Raises
    ------
    ShapeError
        If ``values`` is not at least 1-D, is empty or shorter than ``n_local``, or ``index`` /
        ``weights`` do not match it.
    ValueError
        For a bad ``n_local``, ``edge``, out-of-range ``index``, or negative or non-finite
        ``weights``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(10.0)
    >>> float(parabolic_vertex(-(t - 4.3) ** 2, 4))
    4.3
    """
    n_local = _check_n_local(n_local)
    if edge not in ("shift", "nan"):
        raise ValueError(f"edge must be 'shift' or 'nan', got {edge!r}")
    xp = get_xp(values, index, weights, window_weights)
    values = xp.asarray(values)
    if values.ndim < 1 or values.size == 0:
        raise ShapeError(f"values must be a non-empty array of shape (..., n), got {values.shape}")
    n = values.shape[-1]
    if n < n_local:
        raise ShapeError(
            f"values has {n} samples along the last axis, fewer than n_local={n_local}"
        )
    if values.dtype.kind not in "fiu":
        raise TypeError(f"values must be a real numeric array, got dtype {values.dtype}")
    batch = values.shape[:-1]
    idx, missing = _rounded_index(xp, index, "index", batch, n)
    h = n_local // 2
    centre = xp.clip(idx, h, n - 1 - h)
    t = xp.arange(-h, h + 1, dtype=xp.int64)
    take = centre[..., None] + t  # (..., n_local)
    y = xp.take_along_axis(values, take, axis=-1).astype(xp.float64)

    if weights is None:
        w = None
    else:
        weights = xp.asarray(weights)
        if weights.shape[-1:] != (n,) or weights.ndim > values.ndim:
            raise ShapeError(
                f"weights must have shape (..., {n}) or ({n},) like values {values.shape}, "
                f"got {weights.shape}"
            )
        if not bool(xp.all(xp.isfinite(weights))) or bool(xp.any(weights < 0)):
            raise ValueError("weights must be finite and >= 0")
        try:
            weights = xp.broadcast_to(weights, values.shape)
        except ValueError:
            raise ShapeError(
                f"weights of shape {weights.shape} does not broadcast to values {values.shape}"
            ) from None
        w = xp.take_along_axis(weights, take, axis=-1).astype(xp.float64)
    if window_weights is not None:
        ww = xp.asarray(window_weights, dtype=xp.float64)
        if ww.shape != (n_local,):
            raise ShapeError(f"window_weights must have shape ({n_local},), got {ww.shape}")
        if not bool(xp.all(xp.isfinite(ww))) or bool(xp.any(ww < 0)):
            raise ValueError("window_weights must be finite and >= 0")
        w = ww if w is None else w * ww

    # Subtract a window sample so large offsets do not cancel in the moment sums.
    y = y - y[..., h : h + 1]
    tf = t.astype(xp.float64)
    if w is None:
        s = [xp.full(batch, float(xp.sum(tf**k)), dtype=xp.float64) for k in range(5)]
        r = [xp.sum(y * tf**k, axis=-1) for k in range(3)]
    else:
        w = xp.broadcast_to(w, y.shape)
        s = [xp.sum(w * tf**k, axis=-1) for k in range(5)]
        r = [xp.sum(w * y * tf**k, axis=-1) for k in range(3)]
    s0, s1, s2, s3, s4 = s
    r0, r1, r2 = r
    # Cramer's rule for the normal equations of (a, b, c); the common determinant cancels in
    # b / c but decides whether the fit is determined at all.
    det = s0 * (s2 * s4 - s3 * s3) - s1 * (s1 * s4 - s3 * s2) + s2 * (s1 * s3 - s2 * s2)
    det_b = s0 * (r1 * s4 - s3 * r2) - r0 * (s1 * s4 - s3 * s2) + s2 * (s1 * r2 - r1 * s2)
    det_c = s0 * (s2 * r2 - r1 * s3) - s1 * (s1 * r2 - r1 * s2) + r0 * (s1 * s3 - s2 * s2)

    scale = xp.max(xp.abs(y), axis=-1)
    det_ok = det > 1e-12 * xp.maximum(s0, 1e-300) ** 3
    safe_det = xp.where(det_ok, det, 1.0)
    curvature = det_c / safe_det
    bad = ~det_ok | (xp.abs(curvature) * h * h <= _CURVATURE_RTOL * scale) | missing
    safe_c = xp.where(bad, 1.0, det_c)
    vertex = centre.astype(xp.float64) - det_b / (2.0 * safe_c)
    if edge == "nan":
        bad = bad | (idx <= h) | (idx >= n - 1 - h)
    return xp.where(bad, xp.nan, vertex)


def _nan_safe_arg(xp, values, mode: str, axis: int = -1):
    """argmax/argmin along ``axis`` ignoring NaN; also return a mask of all-NaN rows."""
    isnan = xp.isnan(values) if values.dtype.kind == "f" else None
    if isnan is None:
        filled = values
        all_nan = xp.zeros(values.shape[:axis] if axis == -1 else (), dtype=bool)
    else:
        fill = -xp.inf if mode == "max" else xp.inf
        filled = xp.where(isnan, fill, values)
        all_nan = xp.all(isnan, axis=axis)
    arg = xp.argmax(filled, axis=axis) if mode == "max" else xp.argmin(filled, axis=axis)
    return arg, all_nan


def argmax_parabolic(
    values: Any,
    *,
    n_local: int = 3,
    weights: Any = None,
    window_weights: Any = None,
    mode: Literal["max", "min"] = "max",
    edge: Literal["shift", "nan"] = "shift",
) -> Any:
    """Sub-sample position of the maximum (or minimum) of each profile.

    The extreme sample (NaN ignored) is refined with :func:`parabolic_vertex`.

    Parameters
    ----------
    values : ndarray of shape (..., n)
        Profiles along the last axis.
    n_local, weights, window_weights, edge
        As for :func:`parabolic_vertex`.
    mode : {"max", "min"}, optional
        Refine the largest (default) or smallest sample.

    Returns
    -------
    ndarray of float64, shape (...)
        Positions in sample index units; NaN for all-NaN profiles and degenerate fits.
    """
    _check_mode(mode)
    xp = get_xp(values, weights, window_weights)
    values = xp.asarray(values)
    if values.ndim < 1 or values.size == 0:
        raise ShapeError(f"values must be a non-empty array of shape (..., n), got {values.shape}")
    if values.dtype.kind not in "fiu":
        raise TypeError(f"values must be a real numeric array, got dtype {values.dtype}")
    arg, all_nan = _nan_safe_arg(xp, values, mode)
    out = parabolic_vertex(
        values, arg, n_local=n_local, weights=weights, window_weights=window_weights, edge=edge
    )
    return xp.where(all_nan, xp.nan, out)


def _quadratic_design_pinv() -> np.ndarray:
    """Pseudo-inverse (6, 9) mapping a raveled 3x3 patch to [1, y, x, y^2, xy, x^2] coefficients."""
    dy, dx = np.meshgrid([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], indexing="ij")
    dy, dx = dy.ravel(), dx.ravel()
    design = np.stack([np.ones(9), dy, dx, dy * dy, dx * dy, dx * dx], axis=1)
    return np.linalg.pinv(design)


_PINV_3X3 = _quadratic_design_pinv()


def quadratic_peak_2d(
    images: Any,
    index: Any = None,
    *,
    mode: Literal["max", "min"] = "max",
    relative: bool = False,
) -> tuple[Any, Any]:
    """Sub-pixel position of a 2-D extremum from a quadratic fitted to its 3x3 neighbourhood.

    The 9 samples around the integer extremum are fitted by least squares with the full
    quadratic ``f = a + b y + c x + d y**2 + e x y + g x**2`` (6 coefficients), and its stationary
    point is returned. The fit is exact for sampled quadratics. At the image border the 3x3
    window is shifted inward so that it stays inside the image.

    Parameters
    ----------
    images : ndarray of shape (..., H, W)
        Images with any leading batch axes; ``H, W >= 3``. Integer data are converted to float64.
    index : int array of shape (..., 2), optional
        Integer ``(row, col)`` of the extremum in each image. Default: the position of the
        largest (``mode="max"``) or smallest (``mode="min"``) pixel, NaN ignored.
    mode : {"max", "min"}, optional
        Whether a maximum (default) or a minimum is refined; decides the validity test.
    relative : bool, optional
        Return offsets from ``index`` instead of absolute positions (default False).

    Returns
    -------
    positions : ndarray of float64, shape (..., 2)
        ``(row, col)`` of the stationary point in pixel index units (or its offset from
        ``index`` when ``relative=True``). **Invalid entries fall back to the integer index**
        (offset 0).
    valid : ndarray of bool, shape (...)
        True where the Hessian of the fit is negative-definite (``mode="max"``) or
        positive-definite (``mode="min"``) and the stationary point lies within 1 px of
        ``index`` along both axes (``max(|d_row|, |d_col|) <= 1``). False for saddles, flat
        patches, NaN in the patch, and points that would jump more than a pixel.

    Raises
    ------
    ShapeError
        If ``images`` is not at least 2-D with ``H, W >= 3``, or ``index`` has the wrong shape.
    ValueError
        For a bad ``mode`` or an ``index`` outside the image.
    """
    _check_mode(mode)
    xp = get_xp(images, index)
    images = xp.asarray(images)
    if images.ndim < 2 or images.shape[-2] < 3 or images.shape[-1] < 3:
        raise ShapeError(f"images must have shape (..., H, W) with H, W >= 3, got {images.shape}")
    if images.dtype.kind not in "fiu":
        raise TypeError(f"images must be a real numeric array, got dtype {images.dtype}")
    batch = images.shape[:-2]
    n_rows, n_cols = images.shape[-2:]
    flat = images.reshape(*batch, n_rows * n_cols)
    if index is None:
        arg, _ = _nan_safe_arg(xp, flat, mode)
        row, col = arg // n_cols, arg % n_cols
    else:
        index = xp.asarray(index)
        if index.shape[-1:] != (2,):
            raise ShapeError(f"index must have shape (..., 2) = (row, col), got {index.shape}")
        row, _ = _rounded_index(xp, index[..., 0], "index[..., 0] (row)", batch, n_rows)
        col, _ = _rounded_index(xp, index[..., 1], "index[..., 1] (col)", batch, n_cols)
        if index.dtype.kind == "f" and bool(xp.any(xp.isnan(index))):
            raise ValueError("index must not contain NaN")
    row = row.astype(xp.int64)
    col = col.astype(xp.int64)
    r0 = xp.clip(row, 1, n_rows - 2)
    c0 = xp.clip(col, 1, n_cols - 2)
    d = xp.asarray([-1, 0, 1], dtype=xp.int64)
    take = (
        (r0[..., None, None] + d[:, None]) * n_cols + (c0[..., None, None] + d[None, :])
    ).reshape(*batch, 9)
    patch = xp.take_along_axis(flat, take, axis=-1).astype(xp.float64)
    # Subtract the centre sample: the constant term absorbs it and precision improves.
    patch = patch - patch[..., 4:5]
    pinv = xp.asarray(_PINV_3X3)
    coef = patch @ pinv.T  # (..., 6): 1, y, x, y^2, xy, x^2
    cy, cx, cyy, cxy, cxx = (coef[..., k] for k in range(1, 6))
    det = 4.0 * cyy * cxx - cxy * cxy
    definite = (det > 0) & ((cyy < 0) if mode == "max" else (cyy > 0))
    safe = xp.where(definite, det, 1.0)
    dy = -(2.0 * cxx * cy - cxy * cx) / safe
    dx = -(2.0 * cyy * cx - cxy * cy) / safe
    pos_r = r0.astype(xp.float64) + dy
    pos_c = c0.astype(xp.float64) + dx
    off_r = pos_r - row
    off_c = pos_c - col
    valid = definite & (xp.abs(off_r) <= 1.0) & (xp.abs(off_c) <= 1.0)
    valid = valid & xp.isfinite(off_r) & xp.isfinite(off_c)
    off = xp.stack([xp.where(valid, off_r, 0.0), xp.where(valid, off_c, 0.0)], axis=-1)
    if relative:
        return off, valid
    base = xp.stack([row, col], axis=-1).astype(xp.float64)
    return base + off, valid
