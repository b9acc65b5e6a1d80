"""numba kernels (CPU) of the multi-emitter fitter :mod:`stacklab.smlm.multi`.

Imported lazily: numba is optional (``stacklab[fast]``). :func:`grow_fit` loops over crops with
``prange``. Model of one crop with ``k`` emitters (``h x w`` pixels, pixel ``(i, j)`` covering
``[i - 1/2, i + 1/2] x [j - 1/2, j + 1/2]``)::

    mu[i, j] = b + sum_e N_e * Ey_e[i] * Ex_e[j]

with the pixel-integrated 1-D Gaussians ``Ex_e, Ey_e`` of :mod:`stacklab.smlm._numba_kernels`
(whose ``_axis``, ``_cholesky_solve`` and ``_log_factorials`` are reused), a common background
``b`` (photons per pixel) and a common PSF sigma ``s`` (px). Parameter vector of ``k`` emitters,
length ``3 k + 2``::

    (x_0, y_0, N_0, x_1, y_1, N_1, ..., b, s)

The first ``3 k + 1`` entries are free; ``s`` is free too when ``fit_sigma``. The optimizer is the
damped Fisher-scoring (Levenberg–Marquardt) iteration of the single-emitter kernel, step for step
(same damping schedule, same acceptance rule, same convergence test), on the Poisson
log-likelihood; an sCMOS variance map ``v`` (photons^2) shifts data and model as there.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._numba_kernels import (
    LAM0,
    LAM_DOWN,
    LAM_MAX,
    LAM_MIN,
    LAM_UP,
    _axis,
    _cholesky_solve,
    _log_factorials,
)

__all__ = ["BACKGROUND_FLOOR", "PHOTON_FLOOR", "SIGMA_MIN", "grow_fit"]

#: Box bounds shared with :func:`stacklab.smlm.fitting._bounds`.
PHOTON_FLOOR = 1e-3
BACKGROUND_FLOOR = 1e-6
SIGMA_MIN = 0.3


@njit(cache=True)
def _evaluate_k(d, v, th, k, npar, fit_sigma, ex, dex, dsx, ey, dey, dsy, jrow, g, hm):
    """Objective ``sum(d' ln mu' - mu')``, gradient ``g`` and Fisher information ``hm``."""
    h, w = d.shape
    s = th[3 * k + 1]
    for e in range(k):
        _axis(w, th[3 * e], s, ex[e], dex[e], dsx[e], fit_sigma)
        _axis(h, th[3 * e + 1], s, ey[e], dey[e], dsy[e], fit_sigma)
    for p in range(npar):
        g[p] = 0.0
        for q in range(npar):
            hm[p, q] = 0.0
    b = th[3 * k]
    jrow[3 * k] = 1.0
    obj = 0.0
    for i in range(h):
        for j in range(w):
            mu = b
            dsig = 0.0
            for e in range(k):
                ne = th[3 * e + 2]
                eyi = ey[e, i]
                exj = ex[e, j]
                psf = eyi * exj
                mu += ne * psf
                jrow[3 * e] = ne * eyi * dex[e, j]
                jrow[3 * e + 1] = ne * dey[e, i] * exj
                jrow[3 * e + 2] = psf
                if fit_sigma:
                    dsig += ne * (dsy[e, i] * exj + eyi * dsx[e, j])
            if fit_sigma:
                jrow[3 * k + 1] = dsig
            m = mu + v[i, j]
            if m < 1e-12:
                m = 1e-12
            dv = d[i, j]
            dd = (dv if dv > 0.0 else 0.0) + v[i, j]
            obj += dd * math.log(m) - m
            wh = 1.0 / m
            wg = dd * wh - 1.0
            for p in range(npar):
                jp = jrow[p]
                g[p] += wg * jp
                a = wh * jp
                for q in range(p + 1):
                    hm[p, q] += a * jrow[q]
    for p in range(npar):
        for q in range(p):
            hm[q, p] = hm[p, q]
    return obj


@njit(cache=True, inline="always")
def _clamp_k(th, lo, hi, npar):
    for p in range(npar):
        if th[p] < lo[p]:
            th[p] = lo[p]
        elif th[p] > hi[p]:
            th[p] = hi[p]


@njit(cache=True)
def _small_k(delta, th, k, npar, tol):
    """Every step component below ``tol`` (px for positions and sigma, relative otherwise)."""
    for e in range(k):
        if abs(delta[3 * e]) >= tol or abs(delta[3 * e + 1]) >= tol:
            return False
        if abs(delta[3 * e + 2]) >= tol * max(abs(th[3 * e + 2]), 1.0):
            return False
    if abs(delta[3 * k]) >= tol * max(abs(th[3 * k]), 1.0):
        return False
    if npar == 3 * k + 2 and abs(delta[3 * k + 1]) >= tol:
        return False
    return True


@njit(cache=True)
def _lm_k(d, v, th, k, npar, fit_sigma, lo, hi, max_iter, tol, ll_tol, sc):
    """Damped Fisher scoring from ``th`` (updated in place); returns (objective, steps, converged).

    ``sc`` holds the scratch arrays (see :func:`_scratch`). On return ``sc[7]`` (``hm``) holds the
    Fisher information at ``th``.
    """
    ex, dex, dsx, ey, dey, dsy, jrow, hm, g, hm2, g2, a, low, delta, trial = sc
    _clamp_k(th, lo, hi, npar)
    n_all = 3 * k + 2
    for p in range(n_all):
        trial[p] = th[p]
    obj = _evaluate_k(d, v, th, k, npar, fit_sigma, ex, dex, dsx, ey, dey, dsy, jrow, g, hm)
    lam = LAM0
    it = 0
    ok = False
    while True:
        for p in range(npar):
            for q in range(npar):
                a[p, q] = hm[p, q]
            a[p, p] = hm[p, p] * (1.0 + lam) + 1e-12 * hm[p, p] + 1e-30
        solved = _cholesky_solve(a, g, npar, low, delta)
        if solved and _small_k(delta, th, k, npar, tol):
            ok = True
            break
        if solved and lam <= LAM0:
            # Predicted gain of the (lightly damped) step below ll_tol: the likelihood is at
            # its maximum even where positions are not identified (a spare emitter's photons
            # near 0, two emitters on top of each other), so stop.
            gain = 0.0
            for p in range(npar):
                gain += delta[p] * g[p]
            if gain < ll_tol:
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
        _clamp_k(trial, lo, hi, npar)
        obj2 = _evaluate_k(
            d, v, trial, k, npar, fit_sigma, ex, dex, dsx, ey, dey, dsy, jrow, g2, hm2
        )
        it += 1
        if obj2 >= obj:
            for p in range(npar):
                th[p] = trial[p]
                g[p] = g2[p]
                for q in range(npar):
                    hm[p, q] = hm2[p, q]
            obj = obj2
            lam = max(lam * LAM_DOWN, LAM_MIN)
        else:
            lam *= LAM_UP
            if lam > LAM_MAX:
                break
    return obj, it, ok


@njit(cache=True)
def _scratch(kmax, h, w):
    pmax = 3 * kmax + 2
    return (
        np.empty((kmax, w)),
        np.empty((kmax, w)),
        np.zeros((kmax, w)),
        np.empty((kmax, h)),
        np.empty((kmax, h)),
        np.zeros((kmax, h)),
        np.zeros(pmax),
        np.zeros((pmax, pmax)),
        np.zeros(pmax),
        np.zeros((pmax, pmax)),
        np.zeros(pmax),
        np.zeros((pmax, pmax)),
        np.zeros((pmax, pmax)),
        np.zeros(pmax),
        np.zeros(pmax),
    )


@njit(cache=True)
def _residual(d, th, k, ex, dex, dsx, ey, dey, dsy, skip, out):
    """``out = d - b - sum_{e != skip} N_e psf_e`` (``skip = -1``: every emitter)."""
    h, w = d.shape
    s = th[3 * k + 1]
    for e in range(k):
        _axis(w, th[3 * e], s, ex[e], dex[e], dsx[e], False)
        _axis(h, th[3 * e + 1], s, ey[e], dey[e], dsy[e], False)
    b = th[3 * k]
    for i in range(h):
        for j in range(w):
            mu = b
            for e in range(k):
                if e != skip:
                    mu += th[3 * e + 2] * ey[e, i] * ex[e, j]
            out[i, j] = d[i, j] - mu


@njit(cache=True)
def _starts(d, th, k, s0, sc, resid, starts):
    """Starting points of ``k + 1`` emitters from the ``k``-emitter fit ``th``.

    Row 0: the ``k`` emitters plus one at the peak of the 3 x 3-summed residual, with the
    residual's photons there. Row ``1 + e``: emitter ``e`` split in two along the principal axis
    of its own image (data minus background and the other emitters), half its photons each,
    ``+-a`` from its centre with ``a^2`` the principal second moment minus ``s^2 + 1/12`` (at
    least ``s / 2``). Every row has the common background of ``th`` and sigma ``s0``.
    """
    h, w = d.shape
    ex, dex, dsx, ey, dey, dsy = sc[0], sc[1], sc[2], sc[3], sc[4], sc[5]
    k1 = k + 1
    for r in range(k1):
        for p in range(3 * k):
            starts[r, p] = th[p]
        starts[r, 3 * k1] = th[3 * k]
        starts[r, 3 * k1 + 1] = s0
    # Row 0: residual peak.
    _residual(d, th, k, ex, dex, dsx, ey, dey, dsy, -1, resid)
    best = -np.inf
    bi = h // 2
    bj = w // 2
    for i in range(h):
        for j in range(w):
            acc = 0.0
            for ii in range(max(i - 1, 0), min(i + 2, h)):
                for jj in range(max(j - 1, 0), min(j + 2, w)):
                    acc += resid[ii, jj]
            if acc > best:
                best = acc
                bi = i
                bj = j
    frac = math.erf(1.5 / (math.sqrt(2.0) * s0)) ** 2
    starts[0, 3 * k] = float(bj)
    starts[0, 3 * k + 1] = float(bi)
    starts[0, 3 * k + 2] = max(best / frac, 1.0)
    # Rows 1..k: split emitter e along its principal axis.
    for e in range(k):
        _residual(d, th, k, ex, dex, dsx, ey, dey, dsy, e, resid)
        xe = th[3 * e]
        ye = th[3 * e + 1]
        sw = 0.0
        sxx = 0.0
        syy = 0.0
        sxy = 0.0
        for i in range(h):
            dy = i - ye
            for j in range(w):
                dx = j - xe
                o = resid[i, j]
                sw += o
                sxx += o * dx * dx
                syy += o * dy * dy
                sxy += o * dx * dy
        if sw <= 0.0:
            sw = max(th[3 * e + 2], 1.0)
        sxx /= sw
        syy /= sw
        sxy /= sw
        half = 0.5 * (sxx - syy)
        root = math.sqrt(half * half + sxy * sxy)
        lam1 = 0.5 * (sxx + syy) + root
        if root > 1e-12:
            ux = half + root
            uy = sxy
            norm = math.sqrt(ux * ux + uy * uy)
            if norm > 1e-12:
                ux /= norm
                uy /= norm
            else:  # sxx < syy, sxy = 0: the axis is y
                ux = 0.0
                uy = 1.0
        else:
            ux = 1.0
            uy = 0.0
        a2 = lam1 - s0 * s0 - 1.0 / 12.0
        a = math.sqrt(a2) if a2 > 0.25 * s0 * s0 else 0.5 * s0
        ne = 0.5 * th[3 * e + 2]
        r = 1 + e
        starts[r, 3 * e] = xe + a * ux
        starts[r, 3 * e + 1] = ye + a * uy
        starts[r, 3 * e + 2] = ne
        starts[r, 3 * k] = xe - a * ux
        starts[r, 3 * k + 1] = ye - a * uy
        starts[r, 3 * k + 2] = ne


@njit(cache=True, parallel=True)
def grow_fit(crops, var, theta, k, fit_sigma, sigma0, max_iter, tol, ll_tol, n_chunks):
    """Fit ``k + 1`` emitters to every crop, starting from its ``k``-emitter fit.

    Parameters
    ----------
    crops : float64 array (n, h, w)
        Photon counts.
    var : float64 array (nv, h, w)
        sCMOS variance in photons^2; ``nv`` is ``n`` or 1 (zeros for no read noise).
    theta : float64 array (n, 3 k + 2)
        The ``k``-emitter fits ``(x_0, y_0, N_0, ..., b, s)``.
    k : int
        Emitters in ``theta`` (>= 1).
    fit_sigma : bool
        Fit the common sigma too.
    sigma0 : float64 array (n,)
        Starting sigma of the ``k + 1`` fits (the fixed sigma when not ``fit_sigma``).
    max_iter : int
        Largest number of trial steps per start.
    tol : float
        Convergence threshold (px for positions and sigma, relative for photons, background).
    n_chunks : int
        Crops are split in this many chunks (scratch arrays allocated once per chunk).

    Returns
    -------
    theta1 : float64 (n, 3 k + 5)
        Best ``k + 1``-emitter fit over the ``k + 1`` starts of :func:`_starts`.
    crlb : float64 (n, 3 k + 5)
        Square roots of the diagonal of the inverse Fisher information at ``theta1`` (NaN for a
        fixed sigma or a singular matrix).
    loglik : float64 (n,)
        Poisson log-likelihood at ``theta1`` including ``-ln(d!)``.
    iters : int32 (n,)
        Trial steps of the best start.
    converged : bool (n,)
        The best start converged.
    """
    n, h, w = crops.shape
    k1 = k + 1
    n_all = 3 * k1 + 2
    npar = n_all if fit_sigma else n_all - 1
    lo = np.empty(n_all)
    hi = np.empty(n_all)
    for e in range(k1):
        lo[3 * e] = -0.5
        hi[3 * e] = w - 0.5
        lo[3 * e + 1] = -0.5
        hi[3 * e + 1] = h - 0.5
        lo[3 * e + 2] = PHOTON_FLOOR
        hi[3 * e + 2] = np.inf
    lo[3 * k1] = BACKGROUND_FLOOR
    hi[3 * k1] = np.inf
    lo[3 * k1 + 1] = SIGMA_MIN
    hi[3 * k1 + 1] = min(h, w) / 2.0
    out = np.empty((n, n_all))
    crlb = np.full((n, n_all), np.nan)
    loglik = np.empty(n)
    iters = np.zeros(n, dtype=np.int32)
    conv = np.zeros(n, dtype=np.bool_)
    n_chunks = max(1, min(n, n_chunks))
    for c in prange(n_chunks):
        sc = _scratch(k1, h, w)
        resid = np.empty((h, w))
        starts = np.empty((k1, n_all))
        th = np.empty(n_all)
        best = np.empty(n_all)
        unit = np.zeros(n_all)
        sol = np.zeros(n_all)
        for s in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            d = crops[s]
            v = var[s] if var.shape[0] == n else var[0]
            _starts(d, theta[s], k, sigma0[s], sc, resid, starts)
            best_obj = -np.inf
            best_it = 0
            best_ok = False
            for r in range(k1):
                for p in range(n_all):
                    th[p] = starts[r, p]
                obj, it, ok = _lm_k(
                    d, v, th, k1, npar, fit_sigma, lo, hi, max_iter, tol, ll_tol, sc
                )
                if obj > best_obj or r == 0:
                    best_obj = obj
                    best_it = it
                    best_ok = ok
                    for p in range(n_all):
                        best[p] = th[p]
            # Fisher information at the best fit (the scratch holds the last start's).
            hm = sc[7]
            low = sc[12]
            obj = _evaluate_k(
                d, v, best, k1, npar, fit_sigma, sc[0], sc[1], sc[2], sc[3], sc[4], sc[5],
                sc[6], sc[8], hm,
            )  # fmt: skip
            loglik[s] = obj - _log_factorials(d, v)
            for p in range(npar):
                for q in range(npar):
                    unit[q] = 1.0 if p == q else 0.0
                if _cholesky_solve(hm, unit, npar, low, sol):
                    crlb[s, p] = math.sqrt(sol[p]) if sol[p] > 0.0 else np.nan
            for p in range(n_all):
                out[s, p] = best[p]
            iters[s] = best_it
            conv[s] = best_ok
    return out, crlb, loglik, iters, conv
