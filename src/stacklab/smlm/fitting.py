"""Per-spot fits of a pixel-integrated Gaussian PSF: Poisson MLE (or least squares) with CRLB.

Each crop ``(h, w)`` (photon counts, pixel centres at integer indices) is fitted with

.. math::

    \\mu_{ij} = b + N\\,E_y(i)\\,E_x(j), \\qquad
    E_x(j) = \\tfrac12\\left[\\operatorname{erf}\\frac{j + 1/2 - x}{\\sqrt2\\,\\sigma}
             - \\operatorname{erf}\\frac{j - 1/2 - x}{\\sqrt2\\,\\sigma}\\right]

with parameters ``(x, y, N, b)`` and optionally ``sigma`` (free-sigma fits). The optimizer is a
Levenberg–Marquardt iteration on the Poisson log-likelihood whose curvature matrix is the Fisher
information (Fisher scoring with Marquardt damping; for least squares, Gauss–Newton ``J^T J``).
The Cramér–Rao lower bound of every parameter is the square root of the diagonal of the inverse
Fisher information at the fitted parameters (Smith et al., Nat. Methods 7, 373 (2010)); the
log-likelihood includes ``-ln(d!)``. An sCMOS variance map (photons^2) adds to data and model.

On NumPy input the fits run in a numba kernel, parallel over spots
(:func:`stacklab.smlm._numba_kernels.lm_fit`); on CuPy input (or without numba) a vectorized
``xp`` twin runs the same iteration over all spots at once. Both start from the same centroid
guess (:func:`initial_guess`) and agree to rounding.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .. import backend
from ..errors import ShapeError

__all__ = ["PARAMS", "FitResult", "fit_spots", "initial_guess", "psf_model"]

logger = logging.getLogger(__name__)

#: Parameter order of :attr:`FitResult.params` and :attr:`FitResult.crlb`.
PARAMS = ("x", "y", "photons", "background", "sigma")

# Damping schedule; identical to the numba kernel's constants.
_LAM0 = 1e-3
_LAM_DOWN = 0.1
_LAM_UP = 10.0
_LAM_MIN = 1e-7
_LAM_MAX = 1e7
_SIGMA_MIN = 0.3


class ParamColumns:
    """Named views of the columns of ``params``, an array of shape (n, 5) in :data:`PARAMS`
    order (one row per fitted spot or emitter)."""

    params: Any

    def __len__(self) -> int:
        return int(self.params.shape[0])

    @property
    def x(self) -> Any:
        """Centre column in crop pixels, shape (n,)."""
        return self.params[:, 0]

    @property
    def y(self) -> Any:
        """Centre row in crop pixels, shape (n,)."""
        return self.params[:, 1]

    @property
    def photons(self) -> Any:
        """Photons of the spot (emitter), shape (n,)."""
        return self.params[:, 2]

    @property
    def background(self) -> Any:
        """Background photons per pixel of the crop, shape (n,)."""
        return self.params[:, 3]

    @property
    def sigma(self) -> Any:
        """PSF sigma in pixels, shape (n,)."""
        return self.params[:, 4]


@dataclass(frozen=True)
class FitResult(ParamColumns):
    """Fitted parameters of ``n`` spots (arrays on the crops' device).

    Attributes
    ----------
    params : ndarray of shape (n, 5), float64
        ``(x, y, photons, background, sigma)``: centre column and row in crop pixels (pixel
        centres at integer indices), photons in the spot, background photons per pixel, PSF
        sigma in pixels (the fixed value for fixed-sigma fits).
    crlb : ndarray of shape (n, 5), float64
        Cramér–Rao lower bound (standard deviation) of each parameter, same units; NaN for a
        fixed sigma or a singular Fisher matrix.
    loglik : ndarray of shape (n,), float64
        Poisson log-likelihood at ``params`` (data clipped at 0), including ``-ln(d!)``.
    iterations : ndarray of shape (n,), int32
        Trial steps taken (model evaluations after the first).
    converged : ndarray of shape (n,), bool
        The last step was below ``tol``.
    at_bound : ndarray of shape (n,), bool
        A parameter ended on its box bound (centre on the crop edge, photons or background at
        the floor, sigma at a limit): treat the spot with suspicion.
    method : str
        ``"mle"`` or ``"lsq"``.
    fit_sigma : bool
        Whether sigma was fitted.
    """

    params: Any
    crlb: Any
    loglik: Any
    iterations: Any
    converged: Any
    at_bound: Any
    method: str = "mle"
    fit_sigma: bool = False


def psf_model(
    shape: tuple[int, int], params: Any, *, xp: Any = None, dtype: Any = np.float64
) -> Any:
    """Evaluate the pixel-integrated Gaussian model on crops.

    Parameters
    ----------
    shape : (int, int)
        Crop ``(h, w)`` in pixels.
    params : array of shape (n, 5) or (5,)
        ``(x, y, photons, background, sigma)`` per crop (px, px, photons, photons/px, px).
    xp : module, optional
        Array module (default: that of ``params``).
    dtype : dtype
        Output dtype.

    Returns
    -------
    ndarray of shape (n, h, w) or (h, w)
        Expected photons per pixel.
    """
    xp = backend.get_xp(params) if xp is None else xp
    p = xp.asarray(params, dtype=xp.float64)
    single = p.ndim == 1
    p = p.reshape(-1, 5)
    h, w = (int(s) for s in shape)
    ex = _erf_axis(xp, w, p[:, 0], p[:, 4])
    ey = _erf_axis(xp, h, p[:, 1], p[:, 4])
    mu = p[:, 3, None, None] + p[:, 2, None, None] * ey[:, :, None] * ex[:, None, :]
    mu = mu.astype(dtype, copy=False)
    return mu[0] if single else mu


def _erf_axis(xp: Any, n: int, c: Any, s: Any) -> Any:
    erf = backend.special(xp).erf
    edges = xp.arange(n + 1, dtype=xp.float64) - 0.5
    e = erf((edges[None, :] - c[:, None]) / (math.sqrt(2.0) * s[:, None]))
    return 0.5 * (e[:, 1:] - e[:, :-1])


def initial_guess(crops: Any, sigma: Any) -> Any:
    """Starting values from the crop edges and the background-subtracted centroid.

    The background is the smallest of the four edge means (robust to one neighbour at an
    edge), the photon count is the background-subtracted sum, the centre is the centroid of
    the positive part of the background-subtracted crop (crop centre when empty).

    Parameters
    ----------
    crops : ndarray of shape (n, h, w)
        Photon counts.
    sigma : float or ndarray of shape (n,)
        PSF sigma in pixels.

    Returns
    -------
    ndarray of shape (n, 5), float64
        ``(x, y, photons, background, sigma)``.
    """
    xp = backend.get_xp(crops)
    c = xp.asarray(crops, dtype=xp.float64)
    n, h, w = c.shape
    sides = (c[:, 0, :], c[:, -1, :], c[:, :, 0], c[:, :, -1])
    edges = xp.stack([side.mean(axis=1) for side in sides], axis=1)
    bg = xp.maximum(edges.min(axis=1), 1e-3)
    sub = c - bg[:, None, None]
    total = xp.maximum(sub.sum(axis=(1, 2)), 1.0)
    pos = xp.maximum(sub, 0.0)
    wsum = pos.sum(axis=(1, 2))
    cols = xp.arange(w, dtype=xp.float64)
    rows = xp.arange(h, dtype=xp.float64)
    safe = xp.where(wsum > 0, wsum, 1.0)
    x0 = xp.where(wsum > 0, (pos.sum(axis=1) * cols).sum(axis=1) / safe, (w - 1) / 2.0)
    y0 = xp.where(wsum > 0, (pos.sum(axis=2) * rows).sum(axis=1) / safe, (h - 1) / 2.0)
    s = xp.broadcast_to(xp.asarray(sigma, dtype=xp.float64), (n,))
    return xp.stack([x0, y0, total, bg, s], axis=1)


def _bounds(h: int, w: int, sigma_max: float | None) -> tuple[np.ndarray, np.ndarray]:
    s_max = min(h, w) / 2.0 if sigma_max is None else float(sigma_max)
    lo = np.array([-0.5, -0.5, 1e-3, 1e-6, _SIGMA_MIN])
    hi = np.array([w - 0.5, h - 0.5, np.inf, np.inf, s_max])
    return lo, hi


def fit_spots(
    crops: Any,
    *,
    sigma: float | Any = 1.3,
    fit_sigma: bool = False,
    method: Literal["mle", "lsq"] = "mle",
    variance: Any = None,
    init: Any = None,
    max_iter: int = 30,
    tol: float = 1e-3,
    impl: Literal["auto", "numba", "vectorized"] = "auto",
) -> FitResult:
    """Fit a pixel-integrated Gaussian to every crop; return parameters, CRLB and likelihood.

    Parameters
    ----------
    crops : ndarray of shape (n, h, w)
        Photon counts (photoelectrons: Poisson data), NumPy or CuPy. Any real dtype; work is in
        float64. Not modified.
    sigma : float or ndarray of shape (n,)
        PSF sigma in pixels: the fixed value, or the starting value when ``fit_sigma``.
    fit_sigma : bool
        Fit sigma too (5 parameters) instead of holding it fixed (4 parameters).
    method : {"mle", "lsq"}
        Poisson maximum likelihood (default) or unweighted least squares. The CRLB and the
        log-likelihood are those of the Poisson model in both cases.
    variance : ndarray of shape (h, w) or (n, h, w), optional
        sCMOS read-noise variance per pixel in photons^2 (photoelectrons^2), added to data and
        model (MLE only). None: no read noise.
    init : ndarray of shape (n, 5), optional
        Starting values ``(x, y, photons, background, sigma)``; default :func:`initial_guess`.
    max_iter : int
        Largest number of trial steps per spot.
    tol : float
        Convergence: every step component below ``tol`` (px for x, y, sigma; relative for
        photons and background). The default 1e-3 px leaves positions within about 1e-3 px of
        the optimum (1/60 of the CRLB at 1000 photons); smaller values cost iterations.
    impl : {"auto", "numba", "vectorized"}
        ``auto``: numba on NumPy input when numba is installed, else the vectorized ``xp``
        implementation (always used on CuPy input).

    Returns
    -------
    FitResult
        Arrays on the crops' device.

    Raises
    ------
    ShapeError
        If ``crops`` is not a 3-D array with crops of at least 3 x 3 pixels, or ``variance``
        or ``sigma`` do not match it.
    ValueError
        For an unknown ``method`` or ``impl``, or non-positive ``sigma``, ``max_iter``, ``tol``.
    BackendError
        For ``impl="numba"`` with CuPy crops (use ``"vectorized"`` or ``"auto"`` on the GPU).
    """
    if method not in ("mle", "lsq"):
        raise ValueError(f"method must be 'mle' or 'lsq', got {method!r}")
    xp = backend.get_xp(crops)
    numba_on = backend.use_numba(xp, impl, name="impl", xp_name="vectorized")
    if not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    crops = xp.asarray(crops)
    if crops.ndim != 3 or crops.shape[1] < 3 or crops.shape[2] < 3:
        raise ShapeError(f"crops must have shape (n, h, w) with h, w >= 3, got {crops.shape}")
    if crops.dtype.kind not in "iuf":
        raise TypeError(f"crops must be real numbers, got dtype {crops.dtype}")
    n, h, w = (int(s) for s in crops.shape)
    sig = xp.asarray(sigma, dtype=xp.float64)
    if sig.ndim > 1 or (sig.ndim == 1 and sig.shape[0] != n):
        raise ShapeError(f"sigma must be a scalar or have shape ({n},), got {tuple(sig.shape)}")
    if n and not bool(xp.all(sig > 0)):
        raise ValueError(f"sigma must be > 0 px, got {sigma!r}")
    var = _variance(xp, variance, n, h, w)
    if var is not None and method == "lsq":
        raise ValueError("variance (sCMOS) is only used by method='mle'")
    npar = 5 if fit_sigma else 4
    lo, hi = _bounds(h, w, None)
    if n == 0:
        empty = xp.zeros((0, 5))
        return FitResult(
            empty,
            empty.copy(),
            xp.zeros(0),
            xp.zeros(0, dtype=xp.int32),
            xp.zeros(0, dtype=bool),
            xp.zeros(0, dtype=bool),
            method,
            fit_sigma,
        )
    if init is None and numba_on:
        theta0 = xp.zeros((n, 5))
        theta0[:, 4] = sig  # the kernel computes the same centroid guess in parallel
    elif init is None:
        theta0 = initial_guess(crops, sig)
    else:
        theta0 = xp.asarray(init, dtype=xp.float64)
    if theta0.shape != (n, 5):
        raise ShapeError(f"init must have shape ({n}, 5), got {tuple(theta0.shape)}")
    if numba_on:
        import numba

        # One compiled specialization: float64 crops and variance.
        data = np.ascontiguousarray(crops, dtype=np.float64)
        v = np.zeros((1, h, w)) if var is None else var.astype(np.float64)
        theta, crlb, ll, iters, conv = backend.call_numba(
            backend.load_kernels(f"{__package__}._numba_kernels").lm_fit,
            data,
            np.ascontiguousarray(v),
            np.ascontiguousarray(theta0),
            init is None,
            npar,
            method == "lsq",
            int(max_iter),
            float(tol),
            lo,
            hi,
            16 * numba.get_num_threads(),
        )
    else:
        theta, crlb, ll, iters, conv = _lm_fit_xp(
            xp, crops, var, theta0, npar, method == "lsq", int(max_iter), float(tol), lo, hi
        )
    lo_x, hi_x = xp.asarray(lo), xp.asarray(hi)
    at_lo = theta[:, :npar] <= lo_x[:npar] + 1e-9
    at_hi = theta[:, :npar] >= hi_x[:npar] - 1e-9
    at_bound = xp.any(at_lo | at_hi, axis=1)
    return FitResult(theta, crlb, ll, iters, conv, at_bound, method, fit_sigma)


def _variance(xp: Any, variance: Any, n: int, h: int, w: int) -> Any:
    if variance is None:
        return None
    v = xp.asarray(variance, dtype=xp.float64)
    if v.shape == (h, w):
        v = v[None]
    if v.shape not in ((1, h, w), (n, h, w)):
        raise ShapeError(f"variance must have shape ({h}, {w}) or ({n}, {h}, {w}), got {v.shape}")
    if not bool(xp.all(v >= 0)):
        raise ValueError("variance must be >= 0 (photons^2) everywhere")
    return v


# --------------------------------------------------------------------------------------------
# Vectorized twin of the numba kernel (NumPy or CuPy): the same iteration over all spots at once.


def _axis_xp(xp, n, c, s, fit_sigma):
    erf = backend.special(xp).erf
    t = (xp.arange(n + 1, dtype=xp.float64) - 0.5)[None, :] - c[:, None]
    inv = 1.0 / (math.sqrt(2.0) * s[:, None])
    e = erf(t * inv)
    g = xp.exp(-((t * inv) ** 2))
    val = 0.5 * (e[:, 1:] - e[:, :-1])
    dc = -(g[:, 1:] - g[:, :-1]) / (math.sqrt(2.0 * math.pi) * s[:, None])
    ds = None
    if fit_sigma:
        tg = t * g
        ds = -(tg[:, 1:] - tg[:, :-1]) / (math.sqrt(2.0 * math.pi) * s[:, None] ** 2)
    return val, dc, ds


def _jacobian_xp(xp, h, w, th, npar):
    fit_sigma = npar == 5
    ex, dex, dsx = _axis_xp(xp, w, th[:, 0], th[:, 4], fit_sigma)
    ey, dey, dsy = _axis_xp(xp, h, th[:, 1], th[:, 4], fit_sigma)
    n_ph = th[:, 2, None, None]
    psf = ey[:, :, None] * ex[:, None, :]
    mu = th[:, 3, None, None] + n_ph * psf
    cols = [
        n_ph * ey[:, :, None] * dex[:, None, :],
        n_ph * dey[:, :, None] * ex[:, None, :],
        psf,
        xp.ones_like(psf),
    ]
    if fit_sigma:
        cols.append(n_ph * (dsy[:, :, None] * ex[:, None, :] + ey[:, :, None] * dsx[:, None, :]))
    jac = xp.stack([c.reshape(c.shape[0], -1) for c in cols], axis=2)  # (m, P, npar)
    return mu.reshape(mu.shape[0], -1), jac


def _evaluate_xp(xp, d, v, th, npar, lsq, h, w):
    mu, jac = _jacobian_xp(xp, h, w, th, npar)
    if lsq:
        r = d - mu
        obj = -0.5 * (r * r).sum(axis=1)
        g = xp.einsum("mp,mpk->mk", r, jac)
        hm = xp.einsum("mpk,mpl->mkl", jac, jac)
        return obj, g, hm
    m = xp.maximum(mu + v, 1e-12)
    dd = xp.maximum(d, 0.0) + v
    obj = (dd * xp.log(m) - m).sum(axis=1)
    g = xp.einsum("mp,mpk->mk", dd / m - 1.0, jac)
    hm = xp.einsum("mpk,mpl->mkl", jac / m[:, :, None], jac)
    return obj, g, hm


def _fisher_xp(xp, d, v, th, npar, h, w):
    mu, jac = _jacobian_xp(xp, h, w, th, npar)
    m = xp.maximum(mu + v, 1e-12)
    dd = xp.maximum(d, 0.0) + v
    lgamma = backend.special(xp).gammaln
    ll = (dd * xp.log(m) - m - lgamma(dd + 1.0)).sum(axis=1)
    fis = xp.einsum("mpk,mpl->mkl", jac / m[:, :, None], jac)
    return ll, fis


def _solve_xp(xp, hm, g, lam):
    npar = hm.shape[1]
    diag = xp.diagonal(hm, axis1=1, axis2=2)
    a = hm.copy()
    idx = xp.arange(npar)
    a[:, idx, idx] = diag * (1.0 + lam[:, None]) + 1e-12 * diag + 1e-30
    with np.errstate(all="ignore"):
        try:
            delta = xp.linalg.solve(a, g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            delta = xp.full_like(g, xp.nan)
    solved = xp.all(xp.isfinite(delta), axis=1) & ((delta * g).sum(axis=1) > 0)
    solved |= xp.all(g == 0, axis=1) & xp.all(xp.isfinite(delta), axis=1)
    return xp.where(solved[:, None], delta, 0.0), solved


def _small_xp(xp, delta, th, npar, tol):
    ok = (xp.abs(delta[:, 0]) < tol) & (xp.abs(delta[:, 1]) < tol)
    ok &= xp.abs(delta[:, 2]) < tol * xp.maximum(xp.abs(th[:, 2]), 1.0)
    ok &= xp.abs(delta[:, 3]) < tol * xp.maximum(xp.abs(th[:, 3]), 1.0)
    if npar == 5:
        ok &= xp.abs(delta[:, 4]) < tol
    return ok


def _lm_fit_xp(xp, crops, var, theta0, npar, lsq, max_iter, tol, lo, hi):
    """Vectorized twin of :func:`stacklab.smlm._numba_kernels.lm_fit` (same arguments/returns)."""
    n, h, w = crops.shape
    d_all = xp.asarray(crops, dtype=xp.float64).reshape(n, h * w)
    if var is None:
        v_all = xp.zeros((1, h * w))
    else:
        v_all = var.reshape(var.shape[0], h * w)
    lo_x, hi_x = xp.asarray(lo), xp.asarray(hi)
    theta = xp.clip(xp.asarray(theta0, dtype=xp.float64), lo_x, hi_x)
    if npar == 4:
        theta[:, 4] = xp.asarray(theta0, dtype=xp.float64)[:, 4]

    def vsel(idx):
        return v_all if v_all.shape[0] == 1 else v_all[idx]

    obj, g, hm = _evaluate_xp(xp, d_all, vsel(slice(None)), theta[:, :], npar, lsq, h, w)
    g = g[:, :npar]
    hm = hm[:, :npar, :npar]
    lam = xp.full(n, _LAM0)
    iters = xp.zeros(n, dtype=xp.int32)
    conv = xp.zeros(n, dtype=bool)
    active = xp.ones(n, dtype=bool)
    while True:
        idx = xp.nonzero(active)[0]
        if idx.size == 0:
            break
        delta, solved = _solve_xp(xp, hm[idx], g[idx], lam[idx])
        small = solved & _small_xp(xp, delta, theta[idx], npar, tol)
        conv[idx[small]] = True
        stop = small | (iters[idx] >= max_iter)
        # Failed solves: raise the damping, count the step.
        fail = ~stop & ~solved
        fi = idx[fail]
        lam[fi] *= _LAM_UP
        iters[fi] += 1
        stop_fail = fail & (lam[idx] > _LAM_MAX)
        active[idx[stop | stop_fail]] = False
        go = ~stop & solved
        gi = idx[go]
        if gi.size == 0:
            continue
        trial = theta[gi].copy()
        trial[:, :npar] = trial[:, :npar] + delta[go]
        trial = xp.clip(trial, lo_x, hi_x)
        if npar == 4:
            trial[:, 4] = theta[gi, 4]
        obj2, g2, hm2 = _evaluate_xp(xp, d_all[gi], vsel(gi), trial, npar, lsq, h, w)
        iters[gi] += 1
        better = obj2 >= obj[gi]
        bi = gi[better]
        theta[bi] = trial[better]
        obj[bi] = obj2[better]
        g[bi] = g2[better]
        hm[bi] = hm2[better]
        lam[bi] = xp.maximum(lam[bi] * _LAM_DOWN, _LAM_MIN)
        wi = gi[~better]
        lam[wi] *= _LAM_UP
        active[wi[lam[wi] > _LAM_MAX]] = False
    ll, fis = _fisher_xp(xp, d_all, vsel(slice(None)), theta, npar, h, w)
    crlb = xp.full((n, 5), xp.nan)
    with np.errstate(all="ignore"):
        try:
            inv = xp.linalg.inv(fis)
            dg = xp.diagonal(inv, axis1=1, axis2=2)
        except np.linalg.LinAlgError:
            dg = _safe_inverse_diag(xp, fis)
    crlb[:, :npar] = xp.where(dg > 0, xp.sqrt(xp.where(dg > 0, dg, 1.0)), xp.nan)
    return theta, crlb, ll, iters, conv


def _safe_inverse_diag(xp, fis):
    out = xp.full(fis.shape[:2], xp.nan)
    for k in range(fis.shape[0]):  # only reached for singular matrices (rare)
        try:
            out[k] = xp.diagonal(xp.linalg.inv(fis[k]))
        except np.linalg.LinAlgError:
            pass
    return out
