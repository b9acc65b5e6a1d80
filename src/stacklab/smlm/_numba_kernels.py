"""numba kernels (CPU) of the SMLM fitter; the vectorized ``xp`` twin lives in :mod:`.fitting`.

Imported lazily: numba is optional (``stacklab[fast]``). :func:`lm_fit` loops over spots with
``prange``; every spot runs the same damped Fisher-scoring (Levenberg–Marquardt) iteration as
:func:`stacklab.smlm.fitting._lm_fit_xp`, step for step, so the two agree to rounding (a test
checks it). Work is in float64 whatever the crop dtype.

Model of one crop (``h x w`` pixels, pixel ``(i, j)`` covering ``[i - 1/2, i + 1/2] x
[j - 1/2, j + 1/2]``)::

    mu[i, j] = b + N * Ey[i] * Ex[j]
    Ex[j] = (erf((j + 1/2 - x) / (sqrt(2) s)) - erf((j - 1/2 - x) / (sqrt(2) s))) / 2

with parameters ``theta = (x, y, N, b, s)`` (column, row in crop pixels; photons; photons per
pixel; PSF sigma in pixels). With an sCMOS variance map ``v`` (photons^2 per pixel) the data and
the model are both shifted by ``v`` (Huang et al., Nat. Methods 10, 653 (2013)).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["lm_fit"]

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)

#: Damping schedule shared with the vectorized twin (see fitting.py).
LAM0 = 1e-3
LAM_DOWN = 0.1
LAM_UP = 10.0
LAM_MIN = 1e-7
LAM_MAX = 1e7


@njit(cache=True, inline="always")
def _axis(n, c, s, val, dc, ds, fit_sigma):
    """Pixel-integrated 1-D Gaussian on ``n`` pixels and its derivatives wrt centre and sigma."""
    inv = 1.0 / (_SQRT2 * s)
    prev_e = 0.0
    prev_g = 0.0
    prev_t = 0.0
    for k in range(n + 1):
        t = k - 0.5 - c
        e = math.erf(t * inv)
        g = math.exp(-t * t * inv * inv)
        if k > 0:
            val[k - 1] = 0.5 * (e - prev_e)
            dc[k - 1] = -(g - prev_g) / (_SQRT2PI * s)
            if fit_sigma:
                ds[k - 1] = -(t * g - prev_t * prev_g) / (_SQRT2PI * s * s)
        prev_e = e
        prev_g = g
        prev_t = t


@njit(cache=True, inline="always")
def _lgamma1(x):
    """ln(Gamma(x + 1)) for x >= 0; Stirling series above 10 (error below 1e-10)."""
    if x < 10.0:
        return math.lgamma(x + 1.0)
    z = x + 1.0
    iz = 1.0 / z
    return (
        (z - 0.5) * math.log(z)
        - z
        + 0.9189385332046728
        + iz * (1.0 / 12.0 - iz * iz * (1.0 / 360.0 - iz * iz / 1260.0))
    )


@njit(cache=True)
def _evaluate(d, v, th, npar, lsq, ex, dex, dsx, ey, dey, dsy, g, hmat):
    """Objective, gradient ``g`` and curvature ``hmat`` at ``th``.

    MLE: objective sum(d' ln mu' - mu') with d' = max(d, 0) + v, mu' = mu + v; curvature is the
    Fisher information sum(J J^T / mu'). LSQ: objective -sum((d - mu)^2) / 2, curvature J^T J.
    Accumulates into scalars (the 5 x 5 lower triangle); a fixed sigma has a zero column.
    """
    h, w = d.shape
    fit_sigma = npar == 5
    _axis(w, th[0], th[4], ex, dex, dsx, fit_sigma)
    _axis(h, th[1], th[4], ey, dey, dsy, fit_sigma)
    n_ph = th[2]
    b = th[3]
    g0 = g1 = g2 = g3 = g4 = 0.0
    h00 = h10 = h11 = h20 = h21 = h22 = h30 = h31 = h32 = h33 = 0.0
    h40 = h41 = h42 = h43 = h44 = 0.0
    obj = 0.0
    for i in range(h):
        eyi = ey[i]
        nyi = n_ph * eyi
        ndyi = n_ph * dey[i]
        ndsyi = n_ph * dsy[i]
        for j in range(w):
            exj = ex[j]
            psf = eyi * exj
            mu = b + n_ph * psf
            j0 = nyi * dex[j]
            j1 = ndyi * exj
            j2 = psf
            j4 = ndsyi * exj + nyi * dsx[j]
            dv = d[i, j]
            if lsq:
                r = dv - mu
                obj -= 0.5 * r * r
                wg = r
                wh = 1.0
            else:
                vv = v[i, j]
                m = mu + vv
                if m < 1e-12:
                    m = 1e-12
                dd = (dv if dv > 0.0 else 0.0) + vv
                obj += dd * math.log(m) - m
                wh = 1.0 / m
                wg = dd * wh - 1.0
            g0 += wg * j0
            g1 += wg * j1
            g2 += wg * j2
            g3 += wg
            g4 += wg * j4
            a0 = wh * j0
            a1 = wh * j1
            a2 = wh * j2
            a4 = wh * j4
            h00 += a0 * j0
            h10 += a1 * j0
            h11 += a1 * j1
            h20 += a2 * j0
            h21 += a2 * j1
            h22 += a2 * j2
            h30 += a0
            h31 += a1
            h32 += a2
            h33 += wh
            h40 += a4 * j0
            h41 += a4 * j1
            h42 += a4 * j2
            h43 += a4
            h44 += a4 * j4
    g[0] = g0
    g[1] = g1
    g[2] = g2
    g[3] = g3
    g[4] = g4
    hmat[0, 0] = h00
    hmat[1, 0] = hmat[0, 1] = h10
    hmat[1, 1] = h11
    hmat[2, 0] = hmat[0, 2] = h20
    hmat[2, 1] = hmat[1, 2] = h21
    hmat[2, 2] = h22
    hmat[3, 0] = hmat[0, 3] = h30
    hmat[3, 1] = hmat[1, 3] = h31
    hmat[3, 2] = hmat[2, 3] = h32
    hmat[3, 3] = h33
    hmat[4, 0] = hmat[0, 4] = h40
    hmat[4, 1] = hmat[1, 4] = h41
    hmat[4, 2] = hmat[2, 4] = h42
    hmat[4, 3] = hmat[3, 4] = h43
    hmat[4, 4] = h44
    return obj


@njit(cache=True)
def _log_factorials(d, v):
    """sum over pixels of ln(Gamma(d' + 1)) with d' = max(d, 0) + v."""
    h, w = d.shape
    s = 0.0
    for i in range(h):
        for j in range(w):
            dv = d[i, j]
            s += _lgamma1((dv if dv > 0.0 else 0.0) + v[i, j])
    return s


@njit(cache=True)
def _guess(d, th):
    """Centroid starting values, the same formula as ``fitting.initial_guess``."""
    h, w = d.shape
    top = 0.0
    bottom = 0.0
    for j in range(w):
        top += d[0, j]
        bottom += d[h - 1, j]
    left = 0.0
    right = 0.0
    for i in range(h):
        left += d[i, 0]
        right += d[i, w - 1]
    bg = min(top / w, bottom / w, left / h, right / h)
    if bg < 1e-3:
        bg = 1e-3
    total = 0.0
    wsum = 0.0
    sx = 0.0
    sy = 0.0
    for i in range(h):
        row = 0.0
        for j in range(w):
            sub = d[i, j] - bg
            total += sub
            if sub > 0.0:
                row += sub
                sx += sub * j
        wsum += row
        sy += row * i
    th[0] = sx / wsum if wsum > 0.0 else (w - 1) / 2.0
    th[1] = sy / wsum if wsum > 0.0 else (h - 1) / 2.0
    th[2] = total if total > 1.0 else 1.0
    th[3] = bg


@njit(cache=True)
def _cholesky_solve(a, rhs, n, low, out):
    """Solve ``a x = rhs`` (``n x n`` symmetric positive definite); False if not PD."""
    for i in range(n):
        for j in range(i + 1):
            s = a[i, j]
            for k in range(j):
                s -= low[i, k] * low[j, k]
            if i == j:
                if not s > 0.0:
                    return False
                low[i, i] = math.sqrt(s)
            else:
                low[i, j] = s / low[j, j]
    for i in range(n):
        s = rhs[i]
        for k in range(i):
            s -= low[i, k] * out[k]
        out[i] = s / low[i, i]
    for i in range(n - 1, -1, -1):
        s = out[i]
        for k in range(i + 1, n):
            s -= low[k, i] * out[k]
        out[i] = s / low[i, i]
    return True


@njit(cache=True, inline="always")
def _clamp(th, lo, hi, npar):
    for p in range(npar):
        if th[p] < lo[p]:
            th[p] = lo[p]
        elif th[p] > hi[p]:
            th[p] = hi[p]


@njit(cache=True, inline="always")
def _small(delta, th, npar, tol):
    if abs(delta[0]) >= tol or abs(delta[1]) >= tol:
        return False
    if abs(delta[2]) >= tol * max(abs(th[2]), 1.0):
        return False
    if abs(delta[3]) >= tol * max(abs(th[3]), 1.0):
        return False
    if npar == 5 and abs(delta[4]) >= tol:
        return False
    return True


@njit(cache=True, parallel=True)
def lm_fit(crops, var, theta0, guess, npar, lsq, max_iter, tol, lo, hi, n_chunks):
    """Fit every crop; see the module docstring for the model.

    Parameters
    ----------
    crops : float32 or float64 array (n, h, w)
        Photon counts.
    var : float32 or float64 array (nv, h, w)
        sCMOS variance in photons^2; ``nv`` is ``n`` (one map per crop) or 1 (shared; zeros
        when there is no read noise to model).
    theta0 : float64 array (n, 5)
        Starting values ``(x, y, N, b, s)``; ``s`` is held fixed when ``npar == 4``.
    guess : bool
        Replace ``x, y, N, b`` of ``theta0`` by the centroid guess of
        :func:`stacklab.smlm.fitting.initial_guess` (computed here, in parallel).
    npar : int
        4 (fixed sigma) or 5 (free sigma).
    lsq : bool
        Least squares instead of Poisson maximum likelihood.
    max_iter : int
        Largest number of trial steps (model evaluations after the first).
    tol : float
        Step below which the fit has converged (px for x, y, s; relative for N, b).
    lo, hi : float64 arrays (5,)
        Box bounds of the parameters.
    n_chunks : int
        Spots are split in this many chunks (scratch arrays are allocated once per chunk);
        a few times the number of threads.

    Returns
    -------
    theta : float64 (n, 5)
    crlb : float64 (n, 5)
        Square roots of the diagonal of the inverse Poisson Fisher information (NaN for a fixed
        sigma or a singular matrix).
    loglik : float64 (n,)
        Poisson log-likelihood at ``theta`` including ``-ln(d!)`` (``d`` clipped at 0).
    iters : int32 (n,)
    converged : bool (n,)
    """
    n, h, w = crops.shape
    theta = np.empty((n, 5))
    crlb = np.full((n, 5), np.nan)
    loglik = np.empty(n)
    iters = np.zeros(n, dtype=np.int32)
    conv = np.zeros(n, dtype=np.bool_)
    n_chunks = max(1, min(n, n_chunks))
    for c in prange(n_chunks):
        ex = np.empty(w)
        dex = np.empty(w)
        dsx = np.zeros(w)
        ey = np.empty(h)
        dey = np.empty(h)
        dsy = np.zeros(h)
        th = np.empty(5)
        trial = np.empty(5)
        g = np.zeros(5)
        hm = np.zeros((5, 5))
        g2 = np.zeros(5)
        hm2 = np.zeros((5, 5))
        a = np.zeros((5, 5))
        low = np.zeros((5, 5))
        delta = np.zeros(5)
        for s in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            _fit_one(
                crops, var, theta0, guess, npar, lsq, max_iter, tol, lo, hi, s,
                ex, dex, dsx, ey, dey, dsy, th, trial, g, hm, g2, hm2, a, low, delta,
                theta, crlb, loglik, iters, conv,
            )  # fmt: skip
    return theta, crlb, loglik, iters, conv


@njit(cache=True)
def _fit_one(
    crops, var, theta0, guess, npar, lsq, max_iter, tol, lo, hi, s,
    ex, dex, dsx, ey, dey, dsy, th, trial, g, hm, g2, hm2, a, low, delta,
    theta, crlb, loglik, iters, conv,
):  # fmt: skip
    """Fit spot ``s`` with the scratch arrays given; write its results into the outputs."""
    d = crops[s]
    v = var[s] if var.shape[0] == crops.shape[0] else var[0]
    for p in range(5):
        th[p] = theta0[s, p]
    if guess:
        _guess(d, th)
    _clamp(th, lo, hi, npar)
    trial[4] = th[4]
    obj = _evaluate(d, v, th, npar, lsq, ex, dex, dsx, ey, dey, dsy, g, hm)
    lam = LAM0
    it = 0
    ok = False
    while True:
        for p in range(npar):
            for q in range(npar):
                a[p, q] = hm[p, q]
            a[p, p] = hm[p, p] * (1.0 + lam) + 1e-12 * hm[p, p] + 1e-30
        solved = _cholesky_solve(a, g, npar, low, delta)
        if solved and _small(delta, th, npar, tol):
            ok = True
            break
        if it >= max_iter:
            break
        if not solved:
            lam *= LAM_UP
            it += 1
            if lam > LAM_MAX:
                break
            continue
        for p in range(npar):
            trial[p] = th[p] + delta[p]
        _clamp(trial, lo, hi, npar)
        obj2 = _evaluate(d, v, trial, npar, lsq, ex, dex, dsx, ey, dey, dsy, g2, hm2)
        it += 1
        if obj2 >= obj:
            for p in range(5):
                th[p] = trial[p]
                g[p] = g2[p]
                for q in range(5):
                    hm[p, q] = hm2[p, q]
            obj = obj2
            lam = max(lam * LAM_DOWN, LAM_MIN)
        else:
            lam *= LAM_UP
            if lam > LAM_MAX:
                break
    if lsq:  # the curvature is J^T J: evaluate the Poisson Fisher information at the fit
        obj = _evaluate(d, v, th, npar, False, ex, dex, dsx, ey, dey, dsy, g2, hm)
    # For MLE, hm already holds the Fisher information at th (last accepted evaluation).
    loglik[s] = obj - _log_factorials(d, v)
    for p in range(npar):
        for q in range(npar):
            delta[q] = 1.0 if p == q else 0.0
        if _cholesky_solve(hm, delta, npar, low, g):
            crlb[s, p] = math.sqrt(g[p]) if g[p] > 0.0 else np.nan
    for p in range(5):
        theta[s, p] = th[p]
    iters[s] = it
    conv[s] = ok
