"""Focus-to-sample distance (defocus) and astigmatism, from Thon rings or from frame registration.

**Thon rings** (:func:`fit_thon_rings`). In the near field a weak object's intensity spectrum at
the detector is modulated by ``|delta sin(chi) + beta cos(chi)|**2`` with
``chi = pi * wavelength * z2 * ((1 + z2 / z_ss) q_ss**2 + (1 + z2 / z_fs) q_fs**2)``
(``q`` the detector spatial frequency in cycles/m, ``z2`` the sample-to-detector distance, ``z_ss``
and ``z_fs`` the focus-to-sample distances along the detector axes, ``z = (z_ss + z_fs) / 2 + z2``:
the model documented by speckle_tracking). No grid of trial defocus values is searched:

1. the power spectrum of the whitefield-normalised frames (tapered, averaged over frames);
2. a start: the log power minus a smooth fitted envelope is read along ellipses
   ``rho = (1 + e) q_ss**2 + (1 - e) q_fs**2``; one FFT per trial ellipticity ``e`` gives the ring
   amplitude at every ring frequency at once (elliptical periodograms), and their highest peaks
   are the starting points;
3. a maximum-likelihood fit of the 2D spectrum (exponential statistics of a power spectrum) with
   ``M = F + G (1 - m cos(2 pi (a_ss q_ss**2 + a_fs q_fs**2 - c)))``: a white floor ``F``, a
   smooth envelope ``G`` (log-polynomial in radius with ``cos 2theta``, ``sin 2theta`` terms, its
   degree chosen by BIC) and a ring contrast ``m`` that may fall with radius (aberrations blur
   the outer rings), by Fisher scoring from the best starts; the likelihood gain over the
   envelope alone is the test that rings exist;
4. ``z_ss``, ``z_fs`` and ``z2`` solve ``a_ax = wavelength z2 (1 + z2 / z_ax)`` with
   ``(z_ss + z_fs) / 2 + z2 = z`` (one scalar root); ``c`` gives ``beta / delta``.

**Registration** (:func:`fit_defocus_registration`). Neighbouring frames are registered by
cross-correlation (sub-pixel by a checked quadratic); the detector shifts ``s`` are fitted as
``s_ax = T_ax * z / (z_ax * Delta_ax)`` against the sample translations ``T`` projected on the
detector axes (metres), giving ``z_ax`` with its sign (negative: sample upstream of the focus, the
image is inverted).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.optimize

from ..backend import to_numpy
from ..core.peaks import quadratic_peak_2d
from ..errors import ShapeError, check_positive
from ._common import check_mask, check_stack, parse_roi
from .pairs import choose_pairs

__all__ = ["DefocusFit", "fit_defocus", "fit_defocus_registration", "fit_thon_rings"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DefocusFit:
    """A defocus estimate.

    Attributes
    ----------
    defocus : float
        Mean focus-to-sample distance ``(z_ss + z_fs) / 2`` (m); > 0 with the sample downstream
        of the focus.
    dz : float
        Astigmatism (m): ``z_ss = defocus + dz``, ``z_fs = defocus - dz``.
    defocus_ss, defocus_fs : float
        Focus-to-sample distance along the ss and fs detector axes (m).
    method : str
        ``"thon"`` or ``"registration"``.
    details : dict
        Method-specific diagnostics. Thon rings: ``a_ss``, ``a_fs`` (m**2, ring scale per
        axis), ``bd`` (beta / delta), ``z2`` (m), ``rings`` (rings in the fitted range),
        ``contrast`` (mean fitted ring contrast ``m``), ``rad_range`` (spectrum px),
        ``envelope_degree`` (chosen), ``noise_floor``, ``gain`` (log-likelihood gain of the
        rings, BIC-penalised), ``score``, ``ring_strength`` (highest periodogram peak over the
        median), ``starts``, ``spectrum`` (the power spectrum over its fitted envelope,
        fftshifted, zero outside ``rad_range``) and ``model`` (the fitted ring pattern
        ``sin**2``, same layout). Registration: ``pairs``, ``slopes`` (px/m), ``residual``
        (RMS of the shift fit, px).
    """

    defocus: float
    dz: float
    defocus_ss: float
    defocus_fs: float
    method: str
    details: dict = field(default_factory=dict)


def _prepare(data, mask, W, roi):
    """Whitefield-normalised, mean-free, tapered frames of the roi (NumPy float64) and weights."""
    xp, data = check_stack(data)
    _, m, n = data.shape
    good = to_numpy(check_mask(xp, mask, (m, n)))
    s0, s1, f0, f1 = parse_roi(roi, (m, n))
    d = np.asarray(to_numpy(data[:, s0:s1, f0:f1]), dtype=np.float64)
    g = good[s0:s1, f0:f1]
    if W is None:
        w = np.median(d, axis=0)
    else:
        w = np.asarray(to_numpy(W), dtype=np.float64)
        if w.shape != (m, n):
            raise ShapeError(f"W must have shape {(m, n)} (M, L), got {w.shape}")
        w = w[s0:s1, f0:f1]
    g = g & np.isfinite(w) & (w > 0)
    if not g.any():
        raise ValueError("mask has no good pixel with W > 0 in the roi")
    f = np.where(g[None], d / np.where(g, w, 1.0)[None] - 1.0, 0.0)
    f = np.where(np.isfinite(f), f, 0.0)
    mean = f.sum(axis=(1, 2)) / g.sum()
    f = np.where(g[None], f - mean[:, None, None], 0.0)
    return f, g


def _taper(n: int, frac: float = 0.2) -> np.ndarray:
    """Tukey window of length n (cosine tapers over ``frac`` of each end)."""
    if n < 3:
        return np.ones(n)
    x = np.arange(n) / (n - 1)
    w = np.ones(n)
    a = frac
    lo = x < a
    hi = x > 1 - a
    w[lo] = 0.5 * (1 - np.cos(np.pi * x[lo] / a))
    w[hi] = 0.5 * (1 - np.cos(np.pi * (1 - x[hi]) / a))
    return w


def _power_spectrum(f, g):
    m, n = f.shape[1:]
    win = np.outer(_taper(m), _taper(n)) * g
    spec = np.abs(np.fft.fft2(f * win[None])) ** 2
    return spec.mean(axis=0)


# --------------------------------------------------------------------------------------------
# Thon rings
# --------------------------------------------------------------------------------------------

#: Mean of ``log(X)`` for an exponentially distributed ``X`` of mean 1 (minus Euler's gamma).
_LOG_EXP_MEAN = -0.5772156649015329
#: The ring score is the BIC-penalised log-likelihood gain of the rings divided by this.
_SCORE_UNIT = 10.0
#: Rings closer than this (spectrum pixels) are left out of the fitted range.
_MIN_RING_SPACING = 2.5
#: Degree in radius of the polynomial whose logistic function is the ring contrast.
_CONTRAST_DEGREE = 2


@dataclass(frozen=True)
class _Samples:
    """Power-spectrum samples of the fitted annulus, one half plane (``P(-q) = P(q)``).

    ``u_ss = q_ss**2 / s_ref`` and ``u_fs = q_fs**2 / s_ref`` with ``s_ref = (r_hi dq)**2``,
    so a ring frequency ``alpha`` in these units is the number of rings from ``q = 0`` to the
    outer radius; ``x`` is the radius mapped to [-1, 1] over the range; ``c2``, ``s2`` are
    ``cos(2 theta)`` and ``sin(2 theta)`` of the azimuth.
    """

    p: np.ndarray
    r: np.ndarray
    u_ss: np.ndarray
    u_fs: np.ndarray
    c2: np.ndarray
    s2: np.ndarray
    r_lo: float
    r_hi: float
    s_ref: float

    @property
    def x(self) -> np.ndarray:
        return (self.r - self.r_lo) * (2.0 / (self.r_hi - self.r_lo)) - 1.0

    def restrict(self, r_hi: float) -> _Samples:
        """The samples with radius <= r_hi (u rescaled to the new outer radius)."""
        keep = self.r <= r_hi
        scale = (self.r_hi / r_hi) ** 2
        return _Samples(
            self.p[keep],
            self.r[keep],
            self.u_ss[keep] * scale,
            self.u_fs[keep] * scale,
            self.c2[keep],
            self.s2[keep],
            self.r_lo,
            float(r_hi),
            self.s_ref / scale,
        )


def _envelope_basis(x: np.ndarray, c2: np.ndarray, s2: np.ndarray, degree: int, one_d: bool):
    """Basis of ``log G``: ``x**k`` (k <= degree) and, in 2D, ``(1, x) cos 2theta, sin 2theta``."""
    cols = [x**k for k in range(degree + 1)]
    if not one_d:
        cols += [c2, c2 * x, s2, s2 * x]
    return np.stack(cols, axis=-1)


def _ring_scores(smp: _Samples, y: np.ndarray, band: np.ndarray, eps: np.ndarray):
    """Ring scores over trial ellipticities ``eps`` and ring frequencies (see caller).

    Returns ``(score (n_eps, n_freq), freqs)``, ``freqs`` in rings per unit ``u``.
    """
    n_band = int(band.max()) + 1
    n_per = np.bincount(band, minlength=n_band).astype(float)
    norm = 1.0 / np.sqrt(np.maximum(n_per, 1.0))
    a_lo, a_hi = 1.2, max(smp.r_hi / 2.0, 2.0)  # about one ring .. rings 2 px apart at r_hi
    rho_max = float((1.0 + np.abs(eps).max()) * max(smp.u_ss.max(), smp.u_fs.max(), 1e-12))
    rho_max = max(rho_max, float((smp.u_ss + smp.u_fs).max())) * (1.0 + 1e-9)

    def combine(z):  # z (..., n_band, n_freq), scaled per band
        z = z * norm[:, None]
        return 0.5 * ((z.real**2 + z.imag**2).sum(axis=-2) + np.abs((z * z).sum(axis=-2)))

    if eps.size == 1 and smp.p.size * a_hi * rho_max * 10 <= 4e6:
        # Few samples along one ellipse: direct Fourier sums (no binning).
        freqs = np.arange(a_lo, a_hi, 0.1 / rho_max)
        rho = (1.0 + eps[0]) * smp.u_ss + (1.0 - eps[0]) * smp.u_fs
        onehot = np.zeros((rho.size, n_band))
        onehot[np.arange(rho.size), band] = y
        z = (np.exp(-2j * np.pi * np.outer(freqs, rho)) @ onehot).T
        return combine(z)[None], freqs
    n_b = 1 << max(8, math.ceil(math.log2(4.0 * a_hi * rho_max)))
    pad = 8 * n_b
    d_rho = rho_max / n_b
    freqs = np.fft.rfftfreq(pad, d=d_rho)
    k_lo = max(int(np.searchsorted(freqs, a_lo)), 1)
    k_hi = max(int(np.searchsorted(freqs, a_hi)), k_lo + 3)
    score = np.empty((eps.size, k_hi - k_lo))
    for start in range(0, eps.size, 16):  # bounded temporaries
        e = eps[start : start + 16]
        rho = (1.0 + e[:, None]) * smp.u_ss[None] + (1.0 - e[:, None]) * smp.u_fs[None]
        idx = np.minimum((rho / d_rho).astype(np.int64), n_b - 1)
        idx += n_b * band[None] + (n_b * n_band) * np.arange(e.size)[:, None]
        tot = np.bincount(
            idx.ravel(),
            weights=np.broadcast_to(y, rho.shape).ravel(),
            minlength=e.size * n_band * n_b,
        ).reshape(e.size, n_band, n_b)
        score[start : start + 16] = combine(np.fft.rfft(tot, n=pad, axis=2)[:, :, k_lo:k_hi])
    return score, freqs[k_lo:k_hi]


def _ring_candidates(
    smp: _Samples, ys: list[tuple[np.ndarray, np.ndarray]], astig: bool, n_keep: int = 3
) -> list[tuple[float, float, float]]:
    """Starting ring frequencies ``(alpha_ss, alpha_fs, strength)`` from elliptical periodograms.

    For each trial ellipticity ``e`` the normalised log power ``y`` is read along
    ``rho = (1 + e) u_ss + (1 - e) u_fs``, where rings of frequency ``alpha`` are a periodic
    modulation ``cos(2 pi alpha rho - phase)``. Within radial bands ``b`` the Fourier sums
    ``Z_b(alpha) = sum y exp(-2 pi i alpha rho)`` (binned and FFT-ed over ``rho``, or summed
    directly for few samples) give the least-squares gain of rings with one common phase and a
    free amplitude per band, ``sum_b |Z_b|**2 / n_b + |sum_b Z_b**2 / n_b|``. The candidates
    are the highest local maxima of that score and of the score over its running median in
    ``alpha`` (which suppresses residues of the envelope at low frequency), for each
    ``(y, band)`` given (differently detrended versions of the spectrum).
    """
    import scipy.ndimage

    if astig:
        n_eps = min(2 * math.ceil(2.0 * max(smp.r_hi / 2.0, 2.0)) + 1, 121)
        eps = np.linspace(-0.5, 0.5, n_eps)
    else:
        eps = np.zeros(1)
    out: list[tuple[float, float, float]] = []
    for y, band in ys:
        score, freqs = _ring_scores(smp, y, band, eps)
        f_step = float(freqs[1] - freqs[0])
        win = max(round(2.0 / f_step), 3) | 1
        base = scipy.ndimage.median_filter(np.median(score, axis=0), size=win, mode="nearest")
        white = score / np.maximum(base, 1e-300)[None]
        med = max(float(np.median(score)), 1e-300)
        picked: list[tuple[int, int]] = []
        for s in (score, white):
            peak = s == scipy.ndimage.maximum_filter(s, size=(3, 5), mode="nearest")
            where = np.argwhere(peak)
            for i, j in where[np.argsort(s[peak])[::-1][:n_keep]]:
                if (int(i), int(j)) not in picked:
                    picked.append((int(i), int(j)))
        for i, j in picked:
            alpha = float(freqs[j])
            if 0 < j < score.shape[1] - 1:
                y0, y1, y2 = score[i, j - 1 : j + 2]
                curv = y0 - 2 * y1 + y2
                if curv < 0:
                    alpha += float(np.clip(0.5 * (y0 - y2) / curv, -1, 1)) * f_step
            e = float(eps[i])
            if 0 < i < eps.size - 1:
                y0, y1, y2 = score[i - 1 : i + 2, j]
                curv = y0 - 2 * y1 + y2
                if curv < 0:
                    e += float(np.clip(0.5 * (y0 - y2) / curv, -1, 1)) * float(eps[1] - eps[0])
            a_ss, a_fs = alpha * (1.0 + e), alpha * (1.0 - e)
            if all(
                abs(a_ss - b_ss) > 0.02 * b_ss or abs(a_fs - b_fs) > 0.02 * b_fs
                for b_ss, b_fs, _ in out
            ):
                out.append((a_ss, a_fs, float(score[i, j]) / med))
    return out


def _gamma_fit(p: np.ndarray, model, theta: np.ndarray, iters: int) -> tuple[np.ndarray, float]:
    """Maximise the exponential-family likelihood ``-sum(log M + p / M)`` over ``theta``.

    Fisher scoring with a Levenberg-Marquardt damping: ``model(theta, True)`` returns the
    expected power ``M`` (> 0) and its Jacobian. Returns ``(theta, -log-likelihood)``.
    """
    m, jac = model(theta, True)
    if not (np.all(m > 0) and np.all(np.isfinite(m))):
        return theta, math.inf
    cur = float(np.sum(np.log(m) + p / m))
    lam = 1e-3
    for _ in range(iters):
        jw = jac / m[:, None]
        hess = jw.T @ jw
        grad = jw.T @ ((p - m) / m)
        diag = np.diag(hess) + 1e-12 * float(np.trace(hess)) + 1e-300
        accepted = False
        for _ in range(12):
            try:
                step = np.linalg.solve(hess + lam * np.diag(diag), grad)
            except np.linalg.LinAlgError:
                lam *= 10.0
                continue
            trial = theta + step
            m2 = model(trial, False)
            if np.all(m2 > 0) and np.all(np.isfinite(m2)):
                val = float(np.sum(np.log(m2) + p / m2))
                if val <= cur:
                    accepted = True
                    break
            lam *= 10.0
        if not accepted:
            break
        gain = cur - val
        theta, cur = trial, val
        m, jac = model(theta, True)
        lam = max(lam / 10.0, 1e-10)
        if gain < 1e-4:
            break
    return theta, cur


class _RingModel:
    """Expected power ``M = F + G (1 - m(r) cos(2 pi (t - c)))`` of the fitted annulus.

    ``F`` is a white floor, ``G = exp(basis @ g)`` the smooth envelope, ``m(r)`` the ring
    contrast, in (0, 1): the logistic function of a quadratic in radius; and
    ``t = alpha_ss u_ss + alpha_fs u_fs`` (``alpha (u_ss + u_fs)`` without astigmatism).
    ``theta = [log F, g..., m..., alpha_ss, alpha_fs, c]`` (one alpha without astigmatism);
    ``rings=False`` keeps only ``[log F, g...]``.
    """

    def __init__(self, smp: _Samples, basis: np.ndarray, astig: bool, rings: bool = True):
        self.smp, self.basis, self.astig, self.rings = smp, basis, astig, rings
        self.n_g = basis.shape[1]
        self.vm = np.stack([smp.x**k for k in range(_CONTRAST_DEGREE + 1)], axis=1)
        self.n_m = self.vm.shape[1]

    def contrast(self, mm: np.ndarray) -> np.ndarray:
        """Ring contrast ``m`` at the samples for contrast parameters ``mm``."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.vm @ mm, -50.0, 50.0)))

    def split(self, theta: np.ndarray):
        n_g, n_m = self.n_g, self.n_m
        g = theta[1 : 1 + n_g]
        if not self.rings:
            return g, None, None, None
        mm = theta[1 + n_g : 1 + n_g + n_m]
        rest = theta[1 + n_g + n_m :]
        a_ss, a_fs = (rest[0], rest[1]) if self.astig else (rest[0], rest[0])
        return g, mm, (float(a_ss), float(a_fs)), float(rest[-1])

    def __call__(self, theta: np.ndarray, with_jac: bool):
        smp = self.smp
        floor = math.exp(min(float(theta[0]), 700.0))
        g, mm, alphas, c = self.split(theta)
        env = np.exp(np.clip(self.basis @ g, -700.0, 700.0))
        if not self.rings:
            m = floor + env
            if not with_jac:
                return m
            return m, np.hstack([np.full((m.size, 1), floor), env[:, None] * self.basis])
        phase = 2.0 * math.pi * (alphas[0] * smp.u_ss + alphas[1] * smp.u_fs - c)
        cos_p = np.cos(phase)
        contrast = self.contrast(mm)
        d_contrast = contrast * (1.0 - contrast)
        mod = 1.0 - contrast * cos_p
        m = floor + env * mod
        if not with_jac:
            return m
        d_phase = (2.0 * math.pi) * env * contrast * np.sin(phase)
        if self.astig:
            d_shape = np.stack([d_phase * smp.u_ss, d_phase * smp.u_fs, -d_phase], axis=1)
        else:
            d_shape = np.stack([d_phase * (smp.u_ss + smp.u_fs), -d_phase], axis=1)
        jac = np.hstack(
            [
                np.full((m.size, 1), floor),
                (env * mod)[:, None] * self.basis,
                -(env * cos_p * d_contrast)[:, None] * self.vm,
                d_shape,
            ]
        )
        return m, jac

    def start(self, g0: np.ndarray, floor0: float, alpha_ss: float, alpha_fs: float):
        """Initial theta: the envelope fit, and the contrast and phase by linear least squares."""
        smp = self.smp
        env = np.exp(np.clip(self.basis @ g0, -700.0, 700.0))
        y = smp.p / env - 1.0
        best = None
        for c in np.arange(8) / 16.0:
            design = (
                -self.vm
                * np.cos(2 * math.pi * (alpha_ss * smp.u_ss + alpha_fs * smp.u_fs - c))[:, None]
            )
            coef, *_ = np.linalg.lstsq(design, y, rcond=None)
            rss = float(np.sum((design @ coef - y) ** 2))
            if best is None or rss < best[0]:
                best = (rss, c, coef)
        _, c0, m0 = best
        m_x = self.vm @ m0
        if m_x.mean() < 0:  # the same rings, half a period on
            m_x, c0 = -m_x, c0 + 0.5
        m_x = np.clip(m_x, 0.05, 0.95)
        m0, *_ = np.linalg.lstsq(self.vm, np.log(m_x / (1.0 - m_x)), rcond=None)
        alphas = [alpha_ss, alpha_fs] if self.astig else [0.5 * (alpha_ss + alpha_fs)]
        return np.concatenate([[math.log(floor0)], g0, m0, alphas, [c0]])


def _log_envelope(smp: _Samples, basis: np.ndarray, floor: float) -> np.ndarray:
    """Coefficients of ``log G`` from a least-squares fit to ``log(P - floor / 2)``."""
    p_mean = float(smp.p.mean())
    lp = np.log(np.maximum(smp.p - 0.5 * floor, 1e-3 * p_mean))
    coef, *_ = np.linalg.lstsq(basis, lp, rcond=None)
    coef[0] -= _LOG_EXP_MEAN  # the mean of log(exponential) lies below the log of its mean
    return coef


def _fit_rings(smp: _Samples, starts, floor: float, degrees, astig: bool, one_d: bool):
    """Best ring model over starts and envelope degrees (BIC); returns (bic, nll, model, theta)."""
    log_n = math.log(smp.p.size)
    models = {}
    for d in degrees:
        basis = _envelope_basis(smp.x, smp.c2, smp.s2, d, one_d)
        models[d] = (_RingModel(smp, basis, astig), _log_envelope(smp, basis, floor))
    # 8 Fisher steps from every start at a middle degree, then the two best at every degree
    # (to convergence, at most 50 steps).
    d_mid = degrees[min(1, len(degrees) - 1)]
    model, g0 = models[d_mid]
    trials = []
    for a_ss, a_fs in starts:
        theta, nll = _gamma_fit(smp.p, model, model.start(g0, floor, a_ss, a_fs), 8)
        trials.append((nll, theta))
    trials.sort(key=lambda t: t[0])
    best = None
    for _, theta in trials[:2]:
        _, _, alphas, _ = model.split(theta)
        for d in degrees:
            mod_d, g_d = models[d]
            th, nll = _gamma_fit(smp.p, mod_d, mod_d.start(g_d, floor, *alphas), 50)
            bic = nll + 0.5 * th.size * log_n
            if best is None or bic < best[0]:
                best = (bic, nll, mod_d, th)
    return best


def _fit_no_rings(smp: _Samples, floor: float, degrees, one_d: bool) -> float:
    """Lowest BIC (in log-likelihood units) of the envelope alone over the degrees."""
    log_n = math.log(smp.p.size)
    best = math.inf
    for d in degrees:
        basis = _envelope_basis(smp.x, smp.c2, smp.s2, d, one_d)
        model = _RingModel(smp, basis, False, rings=False)
        start = np.concatenate([[math.log(floor)], _log_envelope(smp, basis, floor)])
        theta, nll = _gamma_fit(smp.p, model, start, 100)
        best = min(best, nll + 0.5 * theta.size * log_n)
    return best


def _fit_spectrum(spec, q_ss, q_fs, dq, r_lo, r_hi, floor, *, astig, one_d, auto_range, degree):
    """Starts, maximum-likelihood ring fit and the no-ring fit of a power spectrum.

    Returns ``(samples, model, theta, gain, starts)`` with ``gain`` the BIC difference (in
    log-likelihood units) between the envelope alone and the ring model.
    """
    qs = q_ss[:, None] * np.ones((1, q_fs.size))
    qf = np.ones((q_ss.size, 1)) * q_fs[None, :]
    radius = np.sqrt(qs**2 + qf**2) / dq
    half = (qs > 0) | ((qs == 0) & (qf >= 0))
    sel = half & (radius >= r_lo) & (radius <= r_hi)
    n_par = degree + 1 + (0 if one_d else 4) + _CONTRAST_DEGREE + 5
    if sel.sum() < max(20, 4 * n_par):
        raise ValueError("too few power-spectrum samples in rad_range to fit Thon rings")
    q2 = np.maximum(qs[sel] ** 2 + qf[sel] ** 2, 1e-300)
    s_ref = (r_hi * dq) ** 2
    smp = _Samples(
        spec[sel],
        radius[sel],
        qs[sel] ** 2 / s_ref,
        qf[sel] ** 2 / s_ref,
        (qs[sel] ** 2 - qf[sel] ** 2) / q2,
        2.0 * qs[sel] * qf[sel] / q2,
        float(r_lo),
        float(r_hi),
        s_ref,
    )
    p_mean = float(smp.p.mean())
    if not (math.isfinite(p_mean) and p_mean > 0):
        raise ValueError("no Thon rings found: the power spectrum is zero in rad_range")
    floor = floor if floor > 1e-6 * p_mean else 1e-3 * p_mean
    degrees = list(range(1, degree + 1))
    astig = astig and not one_d
    # Normalised log power for the periodograms: the log power minus its fitted log envelope,
    # (a) detrended (mean and slope) within 5 radial bands, scored per band; (b) as it is,
    # scored as one band.
    basis = _envelope_basis(smp.x, smp.c2, smp.s2, degree, one_d)
    log_p = np.log(np.maximum(smp.p, 1e-12 * p_mean))
    coef, *_ = np.linalg.lstsq(basis, log_p, rcond=None)
    y = np.maximum(log_p - basis @ coef, math.log(1e-2))
    n_band = 5
    pos = (smp.r - r_lo) * (n_band / (r_hi - r_lo))
    band = np.minimum(pos.astype(int), n_band - 1)
    cnt = np.maximum(np.bincount(band, minlength=n_band), 1)
    y_band = y - (np.bincount(band, weights=y, minlength=n_band) / cnt)[band]
    rr = pos - band - 0.5
    slope = np.bincount(band, weights=y_band * rr, minlength=n_band) / np.maximum(
        np.bincount(band, weights=rr * rr, minlength=n_band), 1e-12
    )
    y_band -= slope[band] * rr
    cands = _ring_candidates(smp, [(y_band, band), (y - y.mean(), np.zeros_like(band))], astig)
    if not cands:
        raise ValueError("no Thon rings found: no ring frequency stands out in the power spectrum")
    _, nll, model, theta = _fit_rings(smp, [c[:2] for c in cands], floor, degrees, astig, one_d)
    _, _, alphas, _ = model.split(theta)
    a_top = max(alphas)
    if auto_range and a_top > 0:
        # Rings closer than _MIN_RING_SPACING px at the outer radius are not resolved.
        r_res = r_hi * r_hi / (2.0 * _MIN_RING_SPACING * a_top)
        if r_lo + 8.0 < r_res < r_hi:
            scale = (r_res / r_hi) ** 2
            smp = smp.restrict(r_res)
            start = [(alphas[0] * scale, alphas[1] * scale)]
            chosen = [model.n_g - (1 if one_d else 5)]  # the envelope degree chosen above
            _, nll, model, theta = _fit_rings(smp, start, floor, chosen, astig, one_d)
    bic = nll + 0.5 * theta.size * math.log(smp.p.size)
    gain = _fit_no_rings(smp, floor, degrees, one_d) - bic
    return smp, model, theta, gain, cands


def _solve_geometry(a_ss: float, a_fs: float, z: float, wav: float) -> tuple[float, float, float]:
    """Solve a_ax = wav z2 (1 + z2 / z_ax) with (z_ss + z_fs) / 2 + z2 = z for z_ss, z_fs, z2."""
    b_ss, b_fs = a_ss / wav, a_fs / wav

    def za(b, z2):
        return z2 * z2 / (b - z2)

    def f(z2):
        return 0.5 * (za(b_ss, z2) + za(b_fs, z2)) - (z - z2)

    hi = min(z, b_ss, b_fs) * (1 - 1e-12)
    lo = hi * 1e-9
    if not (f(lo) < 0 < f(hi)):
        raise ValueError(
            "the fitted Thon-ring scale is inconsistent with z and the wavelength "
            f"(a_ss={a_ss:.4g} m^2, a_fs={a_fs:.4g} m^2, z={z} m, wavelength={wav} m)"
        )
    z2 = scipy.optimize.brentq(f, lo, hi, xtol=1e-15 * z, rtol=1e-14, maxiter=200)
    return za(b_ss, z2), za(b_fs, z2), z2


def fit_thon_rings(
    data: Any,
    x_pixel_size: float,
    y_pixel_size: float,
    z: float,
    wav: float,
    mask: Any = None,
    W: Any = None,
    roi: Any = None,
    *,
    rad_range: tuple[float, float] | None = None,
    astigmatism: bool = True,
    sectors: int = 6,
    prominence: float = 0.1,
    min_score: float = 1.5,
    envelope_degree: int = 3,
) -> DefocusFit:
    """Fit the defocus (and astigmatism) to the Thon rings of the frames' power spectrum.

    The power spectrum ``P(q)`` of the whitefield-normalised, tapered frames (averaged over
    frames) is fitted over an annulus of radii by maximum likelihood, with the model

    ``M(q) = F + G(q) * (1 - m(r) cos(2 pi (a_ss q_ss**2 + a_fs q_fs**2 - c)))``

    (``q`` in cycles/m; ``F`` a white noise floor; ``G`` a smooth envelope, ``log G`` a
    polynomial of degree ``envelope_degree`` in the radius ``r`` plus ``cos 2theta`` and
    ``sin 2theta`` terms linear in ``r``; ``m(r)`` the ring contrast, in (0, 1), the logistic
    function of a quadratic in ``r``: it falls where aberrations blur the rings) and the
    likelihood of exponentially distributed powers, ``-sum(log M + P / M)``. The starts come
    from elliptical periodograms of the normalised spectrum (every ellipticity and ring
    frequency at once); the best few are refined by Fisher scoring, for envelope degrees 1 to
    ``envelope_degree``, and the fit of lowest BIC is kept. ``a_ax = wav z2 (1 + z2 / z_ax)``
    with ``(z_ss + z_fs) / 2 + z2 = z`` then gives ``z_ss``, ``z_fs`` and ``z2``; the ring
    offset ``c`` gives ``beta / delta = tan(pi c)`` (speckle_tracking's model
    ``|delta sin(chi) + beta cos(chi)|**2``).

    Parameters
    ----------
    data : ndarray of shape (N, M, L)
        Frames (counts).
    x_pixel_size, y_pixel_size : float
        Detector pixel size along ss and fs (m).
    z : float
        Focus-to-detector distance (m).
    wav : float
        Wavelength (m).
    mask : bool ndarray of shape (M, L), optional
        True for good pixels.
    W : ndarray of shape (M, L), optional
        Whitefield (default: the median over frames).
    roi : sequence of 4 int, optional
        ``[ss0, ss1, fs0, fs1]``; the spectrum is computed over this region.
    rad_range : (float, float), optional
        Radii of the power spectrum used, in spectrum pixels along the longer roi axis (as in
        speckle_tracking). Default: from ``min(10, max(M, L) // 8)`` out to where the radial
        mean power falls below 4 times the noise floor (at most ``max(M, L) // 2 - 2``), then
        in to where neighbouring rings are 2.5 spectrum pixels apart.
    astigmatism : bool
        Fit ``z_ss`` and ``z_fs`` separately (default); False fits one defocus.
    sectors, prominence : optional
        Accepted for compatibility with earlier versions (which read ring minima in angular
        sectors); unused.
    min_score : float
        Test that rings exist (default 1.5): ``details["score"]`` is the gain in
        log-likelihood of the ring model over the envelope alone, both penalised by the
        Bayesian information criterion (``0.5 log(n)`` per parameter), divided by 10. Simulated
        spectra with 2 to 12 rings scored 8 to 200 (a single 449-pixel row of 8 frames with
        about 5 rings: 1.6 to 3.9); Poisson noise, a whitefield alone, smooth speckle without rings
        and rings too fine for the pixels scored below 0 (84 spectra).
    envelope_degree : int
        Highest degree in radius of the polynomial ``log G`` (default 3); the degree used,
        from 1 up, is chosen by the Bayesian information criterion.

    Returns
    -------
    DefocusFit
        ``defocus``, ``dz``, ``defocus_ss``, ``defocus_fs`` (m) and diagnostics.

    Raises
    ------
    ValueError
        When no ring modulation is found or it is inconsistent with the geometry.

    Notes
    -----
    Validated on 120 simulated scans (``tests/speckle/test_thon_study.py``: 96 to 192 px
    square detectors, 9 to 49 frames, 55 and 75 um pixels, 1e2 to 1e4 counts per pixel,
    astigmatism ``|dz|`` up to 0.3 ``defocus``, speckle sizes 0.8 and 1.2 px). "Visible
    rings" are the ring zeros out to where the object's speckle power has fallen to 1 % of
    its peak, or the rings come closer than 2 spectrum pixels (the smaller axis):

    * 5 to 12 visible rings, lens aberrations that change the local ring scale by up to
      about 5 % RMS over the detector (the simulator's ``aberration_px`` <= 0.6 on 128 px):
      within 2.7 % on both axes (54 scans, median 0.64 %);
    * 2 to 5 visible rings, same aberrations: within 4.7 % (42 scans, median 0.84 %; within
      3.5 % with ``aberration_px`` <= 0.3); fewer rings were not tested;
    * stronger aberrations (a 9 % RMS spread of the local ring scale): the frame's rings mix
      several local scales and the fit returns a weighted mean of the local focus, which
      differed from the geometric (least-squares) defocus by up to 13 % (24 scans, median
      4.1 %); :func:`fit_defocus_registration` measures the mean magnification instead;
    * single-row detectors have few spectrum samples: a 1 x 449 row of 8 frames with about 5
      rings gave errors of about 3 % (median over 12 seeds, at most 8 %; the one fit 50 %
      off scored 0.8 and was rejected), 1 x 1024 with 16 frames 0.6 %.

    The fit takes 0.1 to 0.7 s for 128 x 128 pixels and 49 frames, about 1.1 s for 256 x 256.
    """
    for v, name in (
        (x_pixel_size, "x_pixel_size"),
        (y_pixel_size, "y_pixel_size"),
        (z, "z"),
        (wav, "wav"),
    ):
        check_positive(v, name)
    degree = int(envelope_degree)
    if degree < 1:
        raise ValueError(f"envelope_degree must be >= 1, got {envelope_degree!r}")
    f, g = _prepare(data, mask, W, roi)
    m, n = g.shape
    one_d = m == 1
    spec = _power_spectrum(f, g)
    q_ss = np.fft.fftfreq(m, d=x_pixel_size) if not one_d else np.zeros(1)
    q_fs = np.fft.fftfreq(n, d=y_pixel_size)
    big = max(m, n)
    dq = 1.0 / (big * (x_pixel_size if m >= n else y_pixel_size))
    radius = np.sqrt(q_ss[:, None] ** 2 + q_fs[None, :] ** 2) / dq
    # Noise floor (white: Poisson counts) from the outermost frequencies.
    outer = radius >= 0.9 * (big // 2)
    floor = float(np.median(spec[outer])) if outer.any() else 0.0
    auto_range = rad_range is None
    if auto_range:
        r_lo, r_hi = min(10.0, big // 8), float(big // 2 - 2)
        ring = np.minimum(radius.astype(int), big)
        level = np.bincount(ring.ravel(), weights=spec.ravel(), minlength=big + 1) / np.maximum(
            np.bincount(ring.ravel(), minlength=big + 1), 1
        )
        above = np.flatnonzero(level[: big // 2] > 4.0 * floor) if floor > 0 else np.zeros(0)
        if above.size:
            r_hi = float(min(r_hi, above[-1] + 1))
        rad_range = (r_lo, r_hi)
    r_lo, r_hi = (float(v) for v in rad_range)
    if not 0 <= r_lo < r_hi:
        raise ValueError(f"rad_range must be (low, high) with 0 <= low < high, got {rad_range}")
    smp, model, theta, gain, cands = _fit_spectrum(
        spec,
        q_ss,
        q_fs,
        dq,
        r_lo,
        r_hi,
        floor,
        astig=bool(astigmatism),
        one_d=one_d,
        auto_range=auto_range,
        degree=degree,
    )
    r_hi = smp.r_hi
    score = gain / _SCORE_UNIT
    _, contrast, alphas, c = model.split(theta)
    degree = model.basis.shape[1] - (1 if one_d else 5)
    if score < min_score or min(alphas) <= 0:
        raise ValueError(
            f"no Thon rings found in the power spectrum (ring score {score:.2f} < {min_score:g}, "
            f"radii {r_lo:g}..{r_hi:g} px); try rad_range, a roi, or defocus by registration"
        )
    a_ss, a_fs = alphas[0] / smp.s_ref, alphas[1] / smp.s_ref
    # Ring minima (m > 0) where cos(phase) = 1: t = c + k.
    mean_contrast = float(np.mean(model.contrast(contrast)))
    c_min = c
    c_wrapped = c_min - round(c_min)
    bd = math.tan(math.pi * c_wrapped)
    z_ss, z_fs, z2 = _solve_geometry(a_ss, a_fs, z, wav)
    if one_d:
        z_ss = z_fs
    defocus = 0.5 * (z_ss + z_fs)
    # Display: the spectrum over its fitted envelope and the fitted ring pattern (both half
    # planes), zero outside the fitted radii.
    qs = q_ss[:, None] * np.ones((1, n))
    qf = np.ones((m, 1)) * q_fs[None, :]
    sel = (radius >= r_lo) & (radius <= r_hi)
    q2 = np.maximum(qs**2 + qf**2, 1e-300)
    x_q = (radius - r_lo) * (2.0 / (r_hi - r_lo)) - 1.0
    basis = _envelope_basis(x_q, (qs**2 - qf**2) / q2, 2.0 * qs * qf / q2, degree, one_d)
    env = math.exp(min(float(theta[0]), 700.0)) + np.exp(
        np.clip(basis @ theta[1 : 1 + model.n_g], -700.0, 700.0)
    )
    flat = np.where(sel, spec / env, 0.0)
    t = a_ss * qs**2 + a_fs * qf**2
    ring_model = np.where(sel, np.sin(np.pi * (t - c_min)) ** 2, 0.0)
    n_rings = 0.5 * (alphas[0] + alphas[1]) * (1.0 - (r_lo / r_hi) ** 2)
    details = {
        "a_ss": a_ss,
        "a_fs": a_fs,
        "bd": bd,
        "z2": z2,
        "rings": round(n_rings),
        "contrast": mean_contrast,
        "spectrum": np.fft.fftshift(flat),
        "model": np.fft.fftshift(ring_model),
        "rad_range": (r_lo, r_hi),
        "noise_floor": floor,
        "gain": gain,
        "score": score,
        "ring_strength": max(s for _, _, s in cands),
        "starts": len(cands),
        "envelope_degree": degree,
    }
    logger.debug(
        "fit_thon_rings: z_ss=%.6g z_fs=%.6g z2=%.6g bd=%.3g score=%.3g", z_ss, z_fs, z2, bd, score
    )
    return DefocusFit(
        defocus=defocus,
        dz=0.5 * (z_ss - z_fs),
        defocus_ss=z_ss,
        defocus_fs=z_fs,
        method="thon",
        details=details,
    )


def _axis_translations(translations: Any, basis: Any, n_frames: int) -> np.ndarray:
    t = np.asarray(to_numpy(translations), dtype=float)
    b = np.asarray(to_numpy(basis), dtype=float)
    if t.ndim != 2 or t.shape[1] != 3:
        raise ShapeError(f"translations must have shape (N, 3), got {t.shape}")
    if t.shape[0] != n_frames:
        raise ShapeError(
            f"translations has {t.shape[0]} rows but data has {n_frames} frames; they must match"
        )
    if b.ndim == 2:
        b = b[None]
    if b.ndim != 3 or b.shape[1:] != (2, 3):
        raise ShapeError(f"basis must have shape (N, 2, 3) or (2, 3), got {b.shape}")
    e = b[0] / np.linalg.norm(b[0], axis=1, keepdims=True)
    return t @ e.T  # (N, 2) metres along ss, fs


def _register(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """Sub-pixel shift s with b(i) ~ a(i - s) (tapered cross-correlation), and peak height."""
    fa = np.fft.fft2(a)
    fb = np.fft.fft2(b)
    cc = np.fft.ifft2(fb * np.conj(fa)).real
    norm = math.sqrt(float((a * a).sum() * (b * b).sum())) or 1.0
    cc = np.fft.fftshift(cc) / norm
    m, n = cc.shape
    if m < 3:
        k = int(np.argmax(cc[0]))
        k = min(max(k, 1), n - 2)
        y0, y1, y2 = cc[0, k - 1 : k + 2]
        curv = y0 - 2 * y1 + y2
        off = 0.5 * (y0 - y2) / curv if curv < 0 else 0.0
        return np.array([0.0, k + off - n // 2]), float(cc[0, k])
    pos, valid = quadratic_peak_2d(cc, mode="max")
    peak = float(cc.max())
    if not bool(valid):
        k = np.unravel_index(int(np.argmax(cc)), cc.shape)
        pos = np.asarray(k, dtype=float)
    return np.asarray(pos, dtype=float) - np.array([m // 2, n // 2]), peak


def fit_defocus_registration(
    data: Any,
    translations: Any,
    basis: Any,
    x_pixel_size: float,
    y_pixel_size: float,
    z: float,
    mask: Any = None,
    W: Any = None,
    roi: Any = None,
    *,
    min_peak: float = 0.1,
) -> DefocusFit:
    """Fit the defocus from the image shifts between neighbouring frames.

    Parameters
    ----------
    data : ndarray of shape (N, M, L)
        Frames (counts).
    translations : ndarray of shape (N, 3)
        Sample positions (m).
    basis : ndarray of shape (N, 2, 3) or (2, 3)
        Detector basis vectors (m); the ss and fs directions come from ``basis[0]``.
    x_pixel_size, y_pixel_size : float
        Detector pixel size along ss and fs (m).
    z : float
        Focus-to-detector distance (m).
    mask : bool ndarray of shape (M, L), optional
        True for good pixels.
    W : ndarray of shape (M, L), optional
        Whitefield (default: the median over frames).
    roi : sequence of 4 int, optional
        Region used.
    min_peak : float
        Pairs whose normalised correlation peak is below this are left out.

    Returns
    -------
    DefocusFit
        ``defocus``, ``dz``, ``defocus_ss``, ``defocus_fs`` (m). An axis without translation
        spread (a 1D scan) takes the other axis' value (``dz = 0``).

    Raises
    ------
    ValueError
        Without two frames at different positions, or when no pair registers.
    """
    for v, name in ((x_pixel_size, "x_pixel_size"), (y_pixel_size, "y_pixel_size"), (z, "z")):
        check_positive(v, name)
    f, g = _prepare(data, mask, W, roi)
    n_frames, m, n = f.shape
    t_ax = _axis_translations(translations, basis, n_frames)
    pairs = choose_pairs(t_ax / max(float(np.abs(t_ax).max()), 1e-30), factor=1.5)
    if pairs.shape[0] == 0:
        raise ValueError("need at least two frames at different sample positions")
    win = np.outer(_taper(m), _taper(n)) * g
    tapered = f * win[None]
    shifts, dts = [], []
    for a_idx, b_idx in pairs:  # one registration per pair of frames (2D FFTs)
        s, peak = _register(tapered[a_idx], tapered[b_idx])
        if peak >= min_peak:
            shifts.append(s)
            dts.append(t_ax[b_idx] - t_ax[a_idx])
    if len(shifts) < 1:
        raise ValueError("no pair of frames registered (correlation peaks below min_peak)")
    shifts = np.asarray(shifts)
    dts = np.asarray(dts)
    slopes = [math.nan, math.nan]
    resid = []
    for ax in (0, 1):
        x = dts[:, ax]
        if np.ptp(x) <= 0 or (ax == 0 and m == 1):
            continue
        k = float((x * shifts[:, ax]).sum() / (x * x).sum())
        slopes[ax] = k
        resid.append(shifts[:, ax] - k * x)
    pix = (x_pixel_size, y_pixel_size)
    zs = [z / (k * p) if np.isfinite(k) and k != 0 else math.nan for k, p in zip(slopes, pix)]
    if all(math.isnan(v) for v in zs):
        raise ValueError("the translations do not move the sample along either detector axis")
    if math.isnan(zs[0]):
        zs[0] = zs[1]
    if math.isnan(zs[1]):
        zs[1] = zs[0]
    z_ss, z_fs = zs
    res = float(np.sqrt(np.mean(np.concatenate(resid) ** 2))) if resid else math.nan
    return DefocusFit(
        defocus=0.5 * (z_ss + z_fs),
        dz=0.5 * (z_ss - z_fs),
        defocus_ss=z_ss,
        defocus_fs=z_fs,
        method="registration",
        details={"pairs": len(shifts), "slopes": tuple(slopes), "residual": res},
    )


def fit_defocus(
    data: Any,
    x_pixel_size: float,
    y_pixel_size: float,
    z: float,
    wav: float,
    mask: Any = None,
    W: Any = None,
    roi: Any = None,
    *,
    method: str = "thon",
    translations: Any = None,
    basis: Any = None,
    **kwargs: Any,
) -> DefocusFit:
    """Estimate the defocus by Thon rings (default) or by registration of the frames.

    Parameters
    ----------
    data, x_pixel_size, y_pixel_size, z, wav, mask, W, roi
        As for :func:`fit_thon_rings`.
    method : {"thon", "registration"}
        Which estimator; ``"registration"`` needs ``translations`` and ``basis``.
    translations, basis : ndarray, optional
        Sample positions (N, 3) and detector basis (N, 2, 3), metres.
    **kwargs
        Passed to the estimator.

    Returns
    -------
    DefocusFit
    """
    if method == "thon":
        return fit_thon_rings(data, x_pixel_size, y_pixel_size, z, wav, mask, W, roi, **kwargs)
    if method == "registration":
        if translations is None or basis is None:
            raise ValueError("method='registration' needs translations and basis")
        return fit_defocus_registration(
            data, translations, basis, x_pixel_size, y_pixel_size, z, mask, W, roi, **kwargs
        )
    raise ValueError(f"method must be 'thon' or 'registration', got {method!r}")
