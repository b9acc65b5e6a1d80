"""numba kernels (CPU) of the bead tracker; the vectorized ``xp`` twins live in the public modules.

Imported lazily: numba is optional (``stacklab[fast]``). Every kernel loops over frames with
``prange`` and works in float64 internally whatever the image dtype (float32 or float64, C
contiguous). Tests check that each kernel agrees with its ``xp`` twin.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["com_kernel", "polar_kernel", "qi_kernel", "track_kernel"]


@njit(cache=True, inline="always")
def _bilinear(img, yy, xx, n_rows, n_cols):
    # Clamp to the frame (edge values are replicated outside it).
    if yy < 0.0:
        yy = 0.0
    elif yy > n_rows - 1.0:
        yy = n_rows - 1.0
    if xx < 0.0:
        xx = 0.0
    elif xx > n_cols - 1.0:
        xx = n_cols - 1.0
    i = min(int(yy), n_rows - 2)
    j = min(int(xx), n_cols - 2)
    fy = yy - i
    fx = xx - j
    a = img[i, j] + (img[i, j + 1] - img[i, j]) * fx
    b = img[i + 1, j] + (img[i + 1, j + 1] - img[i + 1, j]) * fx
    return a + (b - a) * fy


@njit(cache=True, inline="always")
def _bilinear_inside(img, yy, xx):
    # Caller guarantees 0 <= yy < rows - 1 and 0 <= xx < cols - 1.
    i = int(yy)
    j = int(xx)
    fy = yy - i
    fx = xx - j
    a = img[i, j] + (img[i, j + 1] - img[i, j]) * fx
    b = img[i + 1, j] + (img[i + 1, j + 1] - img[i + 1, j]) * fx
    return a + (b - a) * fy


@njit(cache=True, inline="always")
def _circle_inside(cx, cy, r, n_rows, n_cols):
    return cx - r >= 0.0 and cy - r >= 0.0 and cx + r < n_cols - 1.0 and cy + r < n_rows - 1.0


@njit(cache=True, fastmath=True)
def _com_frame(img):
    """Centre of mass (x, y) of ``|I - mean|`` of one frame; NaN for zero total weight."""
    n_rows, n_cols = img.shape
    m = 0.0
    for i in range(n_rows):
        for j in range(n_cols):
            m += img[i, j]
    m /= n_rows * n_cols
    s = 0.0
    sx = 0.0
    sy = 0.0
    for i in range(n_rows):
        row = 0.0
        rx = 0.0
        for j in range(n_cols):
            w = abs(img[i, j] - m)
            row += w
            rx += w * j
        s += row
        sx += rx
        sy += row * i
    if s > 0.0 and math.isfinite(s):
        return sx / s, sy / s
    return np.nan, np.nan


@njit(cache=True, parallel=True)
def com_kernel(stack):
    """Centre of mass of ``|I - frame mean|`` per frame; returns (x, y)."""
    n = stack.shape[0]
    xo = np.empty(n)
    yo = np.empty(n)
    for f in prange(n):
        xo[f], yo[f] = _com_frame(stack[f])
    return xo, yo


@njit(cache=True)
def _mirror_lag(f, max_lag):
    """Sub-sample lag of the peak of the correlation of ``f`` with its mirror image."""
    n = f.shape[0]
    m = 2 * max_lag + 1
    c = np.empty(m)
    best = -np.inf
    bi = 0
    for k in range(m):
        t = k - max_lag
        s = 0.0
        lo = max(0, t)
        hi = min(n, n + t)
        for i in range(lo, hi):
            s += f[i] * f[n - 1 - i + t]
        c[k] = s
        if s > best:
            best = s
            bi = k
    if bi == 0 or bi == m - 1:
        return float(bi - max_lag)
    a = c[bi - 1]
    b = c[bi]
    d = c[bi + 1]
    den = a - 2.0 * b + d
    if not den < 0.0:
        return float(bi - max_lag)
    return bi - max_lag + 0.5 * (a - d) / den


@njit(cache=True, fastmath=True)
def _sample_quadrants(img, cx, cy, radii, cos4, sin4, q):
    """q[k, i] = mean bilinear sample of quadrant k on the circle of radius radii[i]."""
    n_rows, n_cols = img.shape
    n_r = radii.shape[0]
    n_ang = cos4.shape[0] // 4
    inside = _circle_inside(cx, cy, radii[n_r - 1], n_rows, n_cols)
    for ir in range(n_r):
        r = radii[ir]
        for k in range(4):
            s = 0.0
            if inside:
                for j in range(k * n_ang, (k + 1) * n_ang):
                    s += _bilinear_inside(img, cy + r * sin4[j], cx + r * cos4[j])
            else:
                for j in range(k * n_ang, (k + 1) * n_ang):
                    s += _bilinear(img, cy + r * sin4[j], cx + r * cos4[j], n_rows, n_cols)
            q[k, ir] = s / n_ang


@njit(cache=True)
def _corr_step(q, dr, max_lag):
    """Correlation (mirror) step of QI: returns the (dx, dy) move, px."""
    n_r = q.shape[1]
    fx = np.empty(2 * n_r)
    fy = np.empty(2 * n_r)
    mx = 0.0
    my = 0.0
    for ir in range(n_r):
        right = q[0, ir] + q[3, ir]
        left = q[1, ir] + q[2, ir]
        low = q[0, ir] + q[1, ir]
        high = q[2, ir] + q[3, ir]
        fx[n_r - 1 - ir] = left
        fx[n_r + ir] = right
        fy[n_r - 1 - ir] = high
        fy[n_r + ir] = low
        mx += right + left
        my += low + high
    mx /= 2 * n_r
    my /= 2 * n_r
    for i in range(2 * n_r):
        fx[i] -= mx
        fy[i] -= my
    gain = np.pi / 4.0
    return _mirror_lag(fx, max_lag) * dr * gain, _mirror_lag(fy, max_lag) * dr * gain


@njit(cache=True)
def _ls_step(q, dr, max_step, first):
    """Gauss-Newton step of QI from the linearised quadrant model: (dx, dy), px.

    Radii from index ``first`` on (at least 1) enter the sums; derivatives are central
    differences, so the radius before ``first`` is still used.
    """
    n_r = q.shape[1]
    num_x = 0.0
    num_y = 0.0
    den = 0.0
    for ir in range(max(first, 1), n_r - 1):
        dp = (
            q[0, ir + 1]
            + q[1, ir + 1]
            + q[2, ir + 1]
            + q[3, ir + 1]
            - q[0, ir - 1]
            - q[1, ir - 1]
            - q[2, ir - 1]
            - q[3, ir - 1]
        ) / (8.0 * dr)
        num_x += 0.5 * (q[0, ir] + q[3, ir] - q[1, ir] - q[2, ir]) * dp
        num_y += 0.5 * (q[0, ir] + q[1, ir] - q[2, ir] - q[3, ir]) * dp
        den += dp * dp
    if not den > 0.0:
        return 0.0, 0.0
    gain = np.pi / 4.0
    sx = min(max(-gain * num_x / den, -max_step), max_step)
    sy = min(max(-gain * num_y / den, -max_step), max_step)
    return sx, sy


@njit(cache=True, inline="always")
def _in_frame(cx, cy, n_rows, n_cols):
    return (
        math.isfinite(cx)
        and math.isfinite(cy)
        and cx >= 0.0
        and cy >= 0.0
        and cx <= n_cols - 1.0
        and cy <= n_rows - 1.0
    )


@njit(cache=True)
def _qi_frame(img, cx, cy, radii, cos4, sin4, n_iter, n_corr, max_lag, max_step, first, q):
    n_rows, n_cols = img.shape
    dr = radii[1] - radii[0]
    ok = math.isfinite(cx) and math.isfinite(cy)
    for it in range(n_iter):
        if not ok:
            break
        _sample_quadrants(img, cx, cy, radii, cos4, sin4, q)
        if it < n_corr:
            sx, sy = _corr_step(q, dr, max_lag)
        else:
            sx, sy = _ls_step(q, dr, max_step, first)
        cx += sx
        cy += sy
        ok = _in_frame(cx, cy, n_rows, n_cols)
    return cx, cy, ok


@njit(cache=True, parallel=True)
def qi_kernel(stack, x0, y0, radii, cos4, sin4, n_iter, n_corr, max_lag, max_step, first):
    """Quadrant-interpolation refinement; see :func:`stacklab.beads.centers.qi`."""
    n = stack.shape[0]
    n_r = radii.shape[0]
    xo = np.empty(n)
    yo = np.empty(n)
    for f in prange(n):
        q = np.empty((4, n_r))
        cx, cy, ok = _qi_frame(
            stack[f], x0[f], y0[f], radii, cos4, sin4, n_iter, n_corr, max_lag, max_step, first, q
        )
        xo[f] = cx if ok else np.nan
        yo[f] = cy if ok else np.nan
    return xo, yo


@njit(cache=True)
def _profile_from_quadrants(q, weights, prof):
    """prof = mean of the quadrant profiles; returns the four-quadrant symmetry score."""
    n_r = q.shape[1]
    wsum = 0.0
    pm = 0.0
    for ir in range(n_r):
        prof[ir] = 0.25 * (q[0, ir] + q[1, ir] + q[2, ir] + q[3, ir])
        wsum += weights[ir]
        pm += weights[ir] * prof[ir]
    pm /= wsum
    res = 0.0
    tot = 0.0
    for ir in range(n_r):
        for k in range(4):
            d = q[k, ir] - prof[ir]
            e = q[k, ir] - pm
            res += weights[ir] * d * d
            tot += weights[ir] * e * e
    return 1.0 - res / tot if tot > 0.0 else np.nan


@njit(cache=True, parallel=True)
def polar_kernel(stack, x, y, radii, cos_a, sin_a, weights):
    """Angular means on circles about (x, y) and the four-quadrant symmetry score."""
    n = stack.shape[0]
    n_r = radii.shape[0]
    prof = np.empty((n, n_r))
    sym = np.empty(n)
    for f in prange(n):
        if not (math.isfinite(x[f]) and math.isfinite(y[f])):
            prof[f, :] = np.nan
            sym[f] = np.nan
            continue
        q = np.empty((4, n_r))
        _sample_quadrants(stack[f], x[f], y[f], radii, cos_a, sin_a, q)
        sym[f] = _profile_from_quadrants(q, weights, prof[f])
    return prof, sym


@njit(cache=True, parallel=True)
def track_kernel(
    stack,
    radii,
    cos4,
    sin4,
    n_pre,
    n_corr,
    max_lag,
    max_step,
    first,
    prof_radii,
    prof_cos,
    prof_sin,
    weights,
    prof_first,
):
    """Centre of mass, QI (``n_pre`` iterations), then one pass on the profile circles giving the
    profile, the symmetry score and the last QI step."""
    n, n_rows, n_cols = stack.shape
    n_r = radii.shape[0]
    n_p = prof_radii.shape[0]
    dr = prof_radii[1] - prof_radii[0]
    xo = np.empty(n)
    yo = np.empty(n)
    prof = np.empty((n, n_p))
    sym = np.empty(n)
    for f in prange(n):
        img = stack[f]
        q = np.empty((4, n_r))
        x0, y0 = _com_frame(img)
        cx, cy, ok = _qi_frame(
            img, x0, y0, radii, cos4, sin4, n_pre, n_corr, max_lag, max_step, first, q
        )
        if not ok:
            xo[f] = np.nan
            yo[f] = np.nan
            prof[f, :] = np.nan
            sym[f] = np.nan
            continue
        qp = np.empty((4, n_p))
        _sample_quadrants(img, cx, cy, prof_radii, prof_cos, prof_sin, qp)
        sym[f] = _profile_from_quadrants(qp, weights, prof[f])
        sx, sy = _ls_step(qp, dr, max_step, prof_first)
        cx += sx
        cy += sy
        if _in_frame(cx, cy, n_rows, n_cols):
            xo[f] = cx
            yo[f] = cy
        else:
            xo[f] = np.nan
            yo[f] = np.nan
            prof[f, :] = np.nan
            sym[f] = np.nan
    return xo, yo, prof, sym
