"""Bilinear reading and splatting of the reference image, vectorized with ``xp``.

One interpolation convention is used everywhere (reference update, pixel-map search, translation
search, error): object pixel ``(k, l)`` is centred on the integer coordinate ``(k, l)``; a point
``(y, x)`` is valid when it lies within half a pixel of the grid, ``-0.5 <= y <= U - 0.5`` (and the
same for x); its value is the bilinear interpolation of the four surrounding object pixels with
the coordinates clamped to ``[0, U - 1]`` (edge pixels extend half a pixel outward). Splatting
(:func:`splat`) is the exact transpose of reading (:func:`sample`), so the reference built from
the data is the least-squares-consistent normalised adjoint of the forward model. NaN object
pixels (no data) make every point that touches them invalid.

The numba twins of these loops live in :mod:`stacklab.speckle._numba_kernels`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def _corners(xp: ModuleType, shape: tuple[int, int], y: Any, x: Any):
    """Flat indices of the 4 corners, their bilinear weights and the validity of each point."""
    n_u, n_v = shape
    valid = (y >= -0.5) & (y <= n_u - 0.5) & (x >= -0.5) & (x <= n_v - 0.5)
    yc = xp.clip(y, 0.0, n_u - 1.0)
    xc = xp.clip(x, 0.0, n_v - 1.0)
    i0 = xp.minimum(xp.floor(yc).astype(xp.int64), max(n_u - 2, 0))
    j0 = xp.minimum(xp.floor(xc).astype(xp.int64), max(n_v - 2, 0))
    fy = yc - i0
    fx = xc - j0
    i1 = xp.minimum(i0 + 1, n_u - 1)
    j1 = xp.minimum(j0 + 1, n_v - 1)
    idx = (i0 * n_v + j0, i0 * n_v + j1, i1 * n_v + j0, i1 * n_v + j1)
    w = ((1.0 - fy) * (1.0 - fx), (1.0 - fy) * fx, fy * (1.0 - fx), fy * fx)
    return idx, w, valid


def sample(xp: ModuleType, image: Any, y: Any, x: Any) -> Any:
    """Bilinear values of ``image`` (U, V) at points ``(y, x)`` (any equal shapes).

    Returns float64 values of the points' shape; NaN for invalid points (outside the grid by more
    than half a pixel, or touching a NaN object pixel with a non-zero weight).
    """
    idx, w, valid = _corners(xp, image.shape, y, x)
    flat = image.ravel()
    out = xp.zeros(y.shape, dtype=xp.float64)
    for k in range(4):
        v = xp.take(flat, idx[k])
        out = out + w[k] * xp.where(w[k] > 0, v, 0.0)
        valid = valid & ~((w[k] > 0) & xp.isnan(v))
    return xp.where(valid, out, xp.nan)


def splat(
    xp: ModuleType, shape: tuple[int, int], y: Any, x: Any, values: Any, weights: Any
) -> tuple[Any, Any]:
    """Accumulate ``values * weights`` and ``weights`` at points ``(y, x)`` with bilinear weights.

    Parameters
    ----------
    xp : module
        Array module.
    shape : (int, int)
        Object grid ``(U, V)``.
    y, x : ndarray
        Object coordinates of the points (any equal shapes).
    values, weights : ndarray
        Per-point value and weight (broadcast to the points' shape).

    Returns
    -------
    num, den : ndarray of float64, shape (U, V)
        ``sum(b * weights * values)`` and ``sum(b * weights)`` over points, ``b`` the bilinear
        weight of the point on each object pixel; invalid points are left out.
    """
    n = shape[0] * shape[1]
    idx, w, valid = _corners(xp, shape, y, x)
    weights = xp.broadcast_to(xp.asarray(weights, dtype=xp.float64), y.shape)
    values = xp.broadcast_to(xp.asarray(values, dtype=xp.float64), y.shape)
    wv = xp.where(valid, weights, 0.0)
    all_idx = xp.concatenate([i.ravel() for i in idx])
    all_w = xp.concatenate([(b * wv).ravel() for b in w])
    all_v = xp.concatenate([values.ravel()] * 4)
    all_v = xp.where(all_w > 0, all_v, 0.0)
    num = xp.bincount(all_idx, weights=all_w * all_v, minlength=n)[:n]
    den = xp.bincount(all_idx, weights=all_w, minlength=n)[:n]
    return num.reshape(shape), den.reshape(shape)
