"""numba kernels (CPU) of speckle tracking; the vectorized ``xp`` twins live in the public modules.

Imported lazily: numba is optional (``stacklab[fast]``). The interpolation convention is the one of
:mod:`stacklab.speckle._interp` (bilinear, coordinates valid within half a pixel of the object
grid, NaN object pixels invalidate the points that touch them). Tests check that each kernel
agrees with its ``xp`` twin.

Point layout: the good pixels of the detector are flattened to P points with whitefield ``w``
(P,), pixel map ``uy, ux`` (P,) and data ``(P, N)`` (pixel-major, for the pixel search) or
``(N, P)`` (frame-major, for splatting and the translation search).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["search_frames", "search_pixels", "splat_points"]


@njit(cache=True, inline="always")
def _corners(n_u, n_v, y, x):
    """Bilinear cell of (y, x) on a (n_u, n_v) grid: ``(ok, i0, j0, i1, j1, fy, fx)``.

    ``ok`` is False outside the half-pixel border; edge points are clamped onto the last cell.
    """
    if y < -0.5 or y > n_u - 0.5 or x < -0.5 or x > n_v - 0.5:
        return False, 0, 0, 0, 0, 0.0, 0.0
    yc = min(max(y, 0.0), n_u - 1.0)
    xc = min(max(x, 0.0), n_v - 1.0)
    i0 = min(int(yc), max(n_u - 2, 0))
    j0 = min(int(xc), max(n_v - 2, 0))
    return True, i0, j0, min(i0 + 1, n_u - 1), min(j0 + 1, n_v - 1), yc - i0, xc - j0


@njit(cache=True, inline="always")
def _read(obj, n_u, n_v, y, x):
    """Bilinear value of obj at (y, x); NaN when invalid."""
    ok, i0, j0, i1, j1, fy, fx = _corners(n_u, n_v, y, x)
    if not ok:
        return math.nan
    v = 0.0
    w = (1.0 - fy) * (1.0 - fx)
    if w > 0.0:
        v += w * obj[i0, j0]
    w = (1.0 - fy) * fx
    if w > 0.0:
        v += w * obj[i0, j1]
    w = fy * (1.0 - fx)
    if w > 0.0:
        v += w * obj[i1, j0]
    w = fy * fx
    if w > 0.0:
        v += w * obj[i1, j1]
    return v


@njit(cache=True, parallel=True)
def search_pixels(data_pn, w, uy, ux, dy, dx, n0, m0, obj, offsets, min_count):
    """Mean squared residual ``sum_n (d - w O)**2 / (count * w)`` for every pixel and offset.

    Returns ``err`` of shape (P, K); NaN where fewer than ``min_count`` frames are valid.
    """
    n_p, n_f = data_pn.shape
    n_k = offsets.shape[0]
    n_u, n_v = obj.shape
    err = np.empty((n_p, n_k), dtype=np.float64)
    for p in prange(n_p):
        wp = w[p]
        for k in range(n_k):
            yb = uy[p] + offsets[k, 0] + n0
            xb = ux[p] + offsets[k, 1] + m0
            s = 0.0
            c = 0
            for n in range(n_f):
                v = _read(obj, n_u, n_v, yb - dy[n], xb - dx[n])
                if v == v:
                    r = data_pn[p, n] - wp * v
                    s += r * r
                    c += 1
            if c >= min_count and c > 0:
                err[p, k] = s / (c * wp)
            else:
                err[p, k] = math.nan
    return err


@njit(cache=True, parallel=True)
def search_frames(data_np, w, uy, ux, dy, dx, n0, m0, obj, offsets):
    """Summed ``(d - w O)**2 / w`` and valid-pixel counts per frame and translation offset.

    Returns ``(err, count)`` of shape (N, K) each.
    """
    n_f, n_p = data_np.shape
    n_k = offsets.shape[0]
    n_u, n_v = obj.shape
    err = np.zeros((n_f, n_k), dtype=np.float64)
    count = np.zeros((n_f, n_k), dtype=np.float64)
    for n in prange(n_f):
        for k in range(n_k):
            ty = n0 - dy[n] - offsets[k, 0]
            tx = m0 - dx[n] - offsets[k, 1]
            s = 0.0
            c = 0
            for p in range(n_p):
                v = _read(obj, n_u, n_v, uy[p] + ty, ux[p] + tx)
                if v == v:
                    r = data_np[n, p] - w[p] * v
                    s += r * r / w[p]
                    c += 1
            err[n, k] = s
            count[n, k] = c
    return err, count


@njit(cache=True)
def splat_points(data_np, w, uy, ux, dy, dx, n0, m0, n_u, n_v):
    """Splat ``w * d``, ``w**2`` and 1 of every (frame, pixel) onto the object grid (bilinear).

    Returns ``(num, den, count)`` of shape (U, V), float64.
    """
    n_f, n_p = data_np.shape
    num = np.zeros((n_u, n_v), dtype=np.float64)
    den = np.zeros((n_u, n_v), dtype=np.float64)
    cnt = np.zeros((n_u, n_v), dtype=np.float64)
    for n in range(n_f):
        for p in range(n_p):
            y = uy[p] - dy[n] + n0
            x = ux[p] - dx[n] + m0
            ok, i0, j0, i1, j1, fy, fx = _corners(n_u, n_v, y, x)
            if not ok:
                continue
            a = w[p] * data_np[n, p]
            b = w[p] * w[p]
            q = (1.0 - fy) * (1.0 - fx)
            num[i0, j0] += q * a
            den[i0, j0] += q * b
            cnt[i0, j0] += q
            q = (1.0 - fy) * fx
            num[i0, j1] += q * a
            den[i0, j1] += q * b
            cnt[i0, j1] += q
            q = fy * (1.0 - fx)
            num[i1, j0] += q * a
            den[i1, j0] += q * b
            cnt[i1, j0] += q
            q = fy * fx
            num[i1, j1] += q * a
            den[i1, j1] += q * b
            cnt[i1, j1] += q
    return num, den, cnt


@njit(cache=True)
def refine_points(data_np, w, uy, ux, dy, dx, n0, m0, obj, den):
    """One least-squares sweep of the reference: ``obj + splat(w**2 (d / w - O)) / den``.

    ``den`` is the ``sum(b * w**2)`` of :func:`splat_points`; object pixels with ``den == 0``
    are left unchanged. Returns the new object (U, V), float64.
    """
    n_f, n_p = data_np.shape
    n_u, n_v = obj.shape
    num = np.zeros((n_u, n_v), dtype=np.float64)
    for n in range(n_f):
        for p in range(n_p):
            y = uy[p] - dy[n] + n0
            x = ux[p] - dx[n] + m0
            ok, i0, j0, i1, j1, fy, fx = _corners(n_u, n_v, y, x)
            if not ok:
                continue
            q00 = (1.0 - fy) * (1.0 - fx)
            q01 = (1.0 - fy) * fx
            q10 = fy * (1.0 - fx)
            q11 = fy * fx
            v = q00 * obj[i0, j0] + q01 * obj[i0, j1] + q10 * obj[i1, j0] + q11 * obj[i1, j1]
            if v != v:
                continue
            r = w[p] * (data_np[n, p] - w[p] * v)
            num[i0, j0] += q00 * r
            num[i0, j1] += q01 * r
            num[i1, j0] += q10 * r
            num[i1, j1] += q11 * r
    out = obj.copy()
    for i in range(n_u):
        for j in range(n_v):
            if den[i, j] > 0.0:
                out[i, j] += num[i, j] / den[i, j]
    return out


@njit(cache=True, parallel=True)
def mean_read(uy, ux, dy, dx, n0, m0, obj):
    """Mean over frames of the bilinear object value read by each pixel (NaN if none valid).

    Returns ``(P,)`` float64: ``mean_n O(u_p - dij_n + (n0, m0))`` over the valid frames.
    """
    n_p = uy.shape[0]
    n_f = dy.shape[0]
    n_u, n_v = obj.shape
    out = np.empty(n_p, dtype=np.float64)
    for p in prange(n_p):
        s = 0.0
        c = 0
        for n in range(n_f):
            v = _read(obj, n_u, n_v, uy[p] - dy[n] + n0, ux[p] - dx[n] + m0)
            if v == v:
                s += v
                c += 1
        out[p] = s / c if c > 0 else math.nan
    return out


@njit(cache=True, parallel=True)
def read_points(uy, ux, dy, dx, n0, m0, obj):
    """Bilinear object values at every (frame, pixel): ``O(u_p - dij_n + (n0, m0))``.

    Returns ``(N, P)`` float64 with NaN where invalid.
    """
    n_p = uy.shape[0]
    n_f = dy.shape[0]
    n_u, n_v = obj.shape
    out = np.empty((n_f, n_p), dtype=np.float64)
    for n in prange(n_f):
        for p in range(n_p):
            out[n, p] = _read(obj, n_u, n_v, uy[p] - dy[n] + n0, ux[p] - dx[n] + m0)
    return out
