"""Focus-to-sample distance (defocus) and astigmatism, from Thon rings or from frame registration.

**Thon rings** (:func:`fit_thon_rings`). In the near field a weak object's intensity spectrum at
the detector is modulated by ``|delta sin(chi) + beta cos(chi)|**2`` with
``chi = pi * wavelength * z2 * ((1 + z2 / z_ss) q_ss**2 + (1 + z2 / z_fs) q_fs**2)``
(``q`` the detector spatial frequency in cycles/m, ``z2`` the sample-to-detector distance, ``z_ss``
and ``z_fs`` the focus-to-sample distances along the detector axes, ``z = (z_ss + z_fs) / 2 + z2``:
the model documented by speckle_tracking). The fit is analytic, not a search over a grid of
defocus values:

1. the power spectrum of the whitefield-normalised frames (tapered, averaged over frames);
2. its smooth envelope (a polynomial fitted to the log of the radial profile) is divided out;
3. in angular sectors the modulation is a cosine in ``s = q**2`` whose frequency is
   ``a(theta) = a_ss cos(theta)**2 + a_fs sin(theta)**2`` with ``a_ax = wavelength z2 (1 + z2 /
   z_ax)``; it is read from the peak of the sector profile's spectrum (parabolic refinement);
4. ``a_ss`` and ``a_fs`` follow from a linear least-squares fit over the sectors and are then
   refined by a two-parameter nonlinear least-squares fit of the 2D modulation (the cosine and
   sine amplitudes solved linearly inside), from which ``beta / delta`` also follows;
5. ``z_ss``, ``z_fs`` and ``z2`` solve ``a_ax = wavelength z2 (1 + z2 / z_ax)`` with
   ``(z_ss + z_fs) / 2 + z2 = z`` (one scalar root).

**Registration** (:func:`fit_defocus_registration`). Neighbouring frames are registered by
cross-correlation (sub-pixel by a checked quadratic); the detector shifts ``s`` are fitted as
``s_ax = T_ax * z / (z_ax * Delta_ax)`` against the sample translations ``T`` projected on the
detector axes (metres), giving ``z_ax`` with its sign (negative: sample upstream of the focus, the
image is inverted).
"""

from __future__ import annotations

import itertools
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
        Method-specific diagnostics: for Thon rings ``a_ss``, ``a_fs`` (m**2), ``bd``
        (beta / delta), ``z2`` (m), ``rings`` (number of rings in the fitted range),
        ``contrast`` (fitted modulation amplitude), ``spectrum`` (the flattened power spectrum,
        fftshifted) and ``model``; for registration ``pairs``, ``slopes`` (px/m), ``residual``
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


def _minima(profile: np.ndarray, radii: np.ndarray, prominence: float) -> np.ndarray:
    """Radii of the prominent local minima of a positive profile, refined by a parabola.

    Minima are found on ``log(profile)`` (the envelope falls by orders of magnitude over the
    range) with :func:`scipy.signal.find_peaks`; a minimum counts when it lies at least
    ``log(1 + prominence)`` below the lower of the two maxima that bound it.
    """
    import scipy.signal

    pos = profile[profile > 0]
    if pos.size < 5:
        return np.zeros(0)
    lp = np.log(np.maximum(profile, 1e-3 * float(np.median(pos))))
    lp = np.convolve(lp, np.array([0.25, 0.5, 0.25]), mode="same")
    lp[0], lp[-1] = lp[1], lp[-2]
    idx, _ = scipy.signal.find_peaks(-lp, prominence=math.log1p(prominence))
    out = []
    step = radii[1] - radii[0]
    for i in idx:
        if i < 1 or i > lp.size - 2:
            continue
        y0, y1, y2 = lp[i - 1 : i + 2]
        curv = y0 - 2 * y1 + y2
        off = 0.5 * (y0 - y2) / curv if curv > 0 else 0.0
        out.append(radii[i] + float(np.clip(off, -0.5, 0.5)) * step)
    return np.asarray(out)


def _ring_frequency(profile: np.ndarray, s: np.ndarray, a_grid: np.ndarray) -> tuple[float, float]:
    """Ring frequency ``a`` (rings per unit ``s = q**2``) of a radial profile.

    The log of the profile minus a cubic fit (the envelope) is periodic in ``s`` with period
    ``1 / a`` (deep minima at the zeros of the transfer function); its spectrum, evaluated on
    the candidate frequencies ``a_grid``, peaks at ``a`` (parabolic refinement of the peak).
    Returns ``(a, peak power / mean power)``.
    """
    pos = profile[profile > 0]
    if pos.size < 8:
        return math.nan, 0.0
    lp = np.log(np.maximum(profile, 1e-3 * float(np.median(pos))))
    x = (s - s.mean()) / max(float(np.ptp(s)), 1e-300)
    lp = lp - np.polyval(np.polyfit(x, lp, 3), x)
    power = np.abs(np.exp(-2j * np.pi * np.outer(a_grid, s)) @ lp) ** 2
    k = int(np.argmax(power))
    a = float(a_grid[k])
    if 0 < k < a_grid.size - 1:
        y0, y1, y2 = power[k - 1 : k + 2]
        curv = y0 - 2 * y1 + y2
        if curv < 0:
            a += float(np.clip(0.5 * (y0 - y2) / curv, -1, 1)) * float(a_grid[1] - a_grid[0])
    return a, float(power[k] / max(float(np.median(power)), 1e-300))


def _ring_scale(s_min: np.ndarray, a0: float) -> tuple[float, float, int] | None:
    """Fit ``a * s_k = k + c`` to ring minima ``s_k`` (q**2) given a first estimate ``a0``.

    Ring indices are ``round(a0 s - c0)`` with ``c0`` the circular mean of ``a0 s`` modulo 1, so
    a missed or spurious minimum does not shift the others; minima more than a quarter ring from
    their index are dropped. Returns ``(a, c, number of minima used)``.
    """
    if s_min.size < 2 or not a0 > 0:
        return None
    ph = 2 * np.pi * (a0 * s_min)
    c0 = math.atan2(float(np.sin(ph).mean()), float(np.cos(ph).mean())) / (2 * np.pi)
    k = np.rint(a0 * s_min - c0)
    keep = np.abs(a0 * s_min - c0 - k) < 0.25
    if np.unique(k[keep]).size < 2:
        return None
    a_fit, b_fit = np.polyfit(s_min[keep], k[keep], 1)
    if not a_fit > 0:
        return None
    return float(a_fit), float(-b_fit), int(keep.sum())


def _refine_2d(spec, sel, radius, qs2, qf2, r_lo, r_hi, a_ss, a_fs, c, astig):
    """Refine (a_ss, a_fs, c) by a least-squares fit of the 2D power spectrum (see caller)."""
    p = spec[sel]
    r = radius[sel]
    s_ss = qs2[sel]
    s_fs = qf2[sel]
    n_knots = 10
    knots = np.linspace(r_lo, r_hi, n_knots)
    # Piecewise-linear (hat) basis of the envelope in radius.
    hat = np.clip(1.0 - np.abs(r[:, None] - knots[None, :]) / (knots[1] - knots[0]), 0.0, None)
    # Relative weights: the mean power at each radius.
    level = hat @ np.linalg.lstsq(hat, p, rcond=None)[0]
    w = 1.0 / np.maximum(level, 1e-12 * float(p.max()))

    def residual(x):
        aa = x[0] * a_ss
        bb = (x[1] if astig else x[0]) * a_fs
        mod = np.sin(np.pi * (aa * s_ss + bb * s_fs - x[2])) ** 2
        design = hat * mod[:, None]
        env, *_ = np.linalg.lstsq(design * w[:, None], p * w, rcond=None)
        return (design @ env - p) * w

    x0 = np.array([1.0, 1.0, c])
    try:
        fit = scipy.optimize.least_squares(
            residual,
            x0,
            bounds=([0.94, 0.94, c - 0.25], [1.06, 1.06, c + 0.25]),
            x_scale=[0.01, 0.01, 0.05],
            loss="soft_l1",
        )
    except ValueError:  # pragma: no cover - degenerate spectra
        return a_ss, a_fs, c, 0.0
    x = fit.x if fit.success else x0
    anti = x.copy()
    anti[2] += 0.5  # zeros where the fitted model has its maxima
    gain = 1.0 - float(np.sum(residual(x) ** 2)) / max(float(np.sum(residual(anti) ** 2)), 1e-300)
    return float(x[0] * a_ss), float((x[1] if astig else x[0]) * a_fs), float(x[2]), gain


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
) -> DefocusFit:
    """Fit the defocus (and astigmatism) to the Thon rings of the frames' power spectrum.

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
        speckle_tracking); default ``(min(10, max(M, L) // 8), max(M, L) // 2 - 2)``.
    astigmatism : bool
        Fit ``z_ss`` and ``z_fs`` separately (default); False fits one defocus.
    sectors : int
        Angular sectors over a quadrant for the astigmatism (default 6).
    prominence : float
        Relative depth a ring minimum must have to count (default 0.1).
    min_score : float
        Test that rings exist (default 1.5): the product of the ring model's gain,
        ``1 - rss(fitted rings) / rss(the same rings shifted by half a period)``, and the peak
        of the radial profile's ring periodogram over its median. Simulated spectra with rings
        scored 2.0 to 11, spectra of Poisson noise 0.2 to 1.3 (a featureless object with a
        whitefield up to 2.4: the test is a guard against fitting noise, not a proof of rings;
        check ``details["model"]`` against ``details["spectrum"]``).

    Returns
    -------
    DefocusFit
        ``defocus``, ``dz``, ``defocus_ss``, ``defocus_fs`` (m) and diagnostics.

    Raises
    ------
    ValueError
        When no ring modulation is found or it is inconsistent with the geometry.
    """
    for v, name in (
        (x_pixel_size, "x_pixel_size"),
        (y_pixel_size, "y_pixel_size"),
        (z, "z"),
        (wav, "wav"),
    ):
        check_positive(v, name)
    f, g = _prepare(data, mask, W, roi)
    m, n = g.shape
    one_d = m == 1
    spec = _power_spectrum(f, g)
    q_ss = np.fft.fftfreq(m, d=x_pixel_size) if not one_d else np.zeros(1)
    q_fs = np.fft.fftfreq(n, d=y_pixel_size)
    qs2 = q_ss[:, None] ** 2 * np.ones((1, n))
    qf2 = np.ones((m, 1)) * q_fs[None, :] ** 2
    q = np.sqrt(qs2 + qf2)
    big = max(m, n)
    dq = 1.0 / (big * (x_pixel_size if m >= n else y_pixel_size))
    radius = q / dq
    # Noise floor (white: Poisson counts) from the outermost frequencies; it is subtracted and
    # the fit stops where the signal falls below a few times the floor.
    outer = radius >= 0.9 * (big // 2)
    floor = float(np.median(spec[outer])) if outer.any() else 0.0
    signal = spec - floor
    user_range = rad_range is not None
    if rad_range is None:
        r_lo, r_hi = min(10.0, big // 8), big // 2 - 2
        width = 2.0
        edges = np.arange(r_lo, r_hi + width, width)
        idx = np.digitize(radius.ravel(), edges)
        prof = np.bincount(idx, weights=spec.ravel(), minlength=edges.size + 1)
        cnt = np.bincount(idx, minlength=edges.size + 1)
        level = prof[1 : edges.size] / np.maximum(cnt[1 : edges.size], 1)
        above = np.flatnonzero(level > 4.0 * floor) if floor > 0 else np.arange(level.size)
        if above.size:
            r_hi = float(min(r_hi, edges[above[-1] + 1]))
        rad_range = (r_lo, r_hi)
    r_lo, r_hi = (float(v) for v in rad_range)
    if not 0 <= r_lo < r_hi:
        raise ValueError(f"rad_range must be (low, high) with 0 <= low < high, got {rad_range}")
    sel = (q >= r_lo * dq) & (q <= r_hi * dq) & (signal > 0)
    if sel.sum() < 20:
        raise ValueError("too few power-spectrum samples in rad_range to fit Thon rings")
    spec = np.where(signal > 0, signal, 0.0)
    # Ring minima: zeros of sin^2(chi + phi), independent of the smooth envelope.
    width = 0.5
    n_r = int((r_hi - r_lo) / width) + 1
    radii = r_lo + width * (np.arange(n_r) + 0.5)

    def profile(keep):
        idx = np.clip(((radius[keep] - r_lo) / width).astype(int), 0, n_r - 1)
        cnt = np.bincount(idx, minlength=n_r)
        tot = np.bincount(idx, weights=spec[keep], minlength=n_r)
        ok = cnt > 0
        return tot[ok] / cnt[ok], radii[ok]

    s_lo, s_hi = (r_lo * dq) ** 2, (r_hi * dq) ** 2
    # Candidate ring frequencies: from half a ring to one ring per 3 profile samples at r_hi.
    a_max = 1.0 / (2 * r_hi * dq * dq * 3 * width)
    a_min = 0.5 / (s_hi - s_lo)
    a_grid = np.linspace(a_min, a_max, 4000)

    strengths: list[float] = []

    def scale(keep, a_hint=None):
        prof, rr = profile(keep)
        if prof.size < 8:
            return None
        s_r = (rr * dq) ** 2
        grid = a_grid if a_hint is None else np.linspace(0.7 * a_hint, 1.3 * a_hint, 600)
        a0, strength = _ring_frequency(prof, s_r, grid)
        if not np.isfinite(a0):
            return None
        s_min = (_minima(prof, rr, prominence) * dq) ** 2
        fit = _ring_scale(s_min, a0)
        strengths.append(strength)
        return fit, a0, s_min

    iso = scale(sel)
    if iso is not None and iso[0] is not None and not user_range:
        # Rings closer than ~2 px at the outer radius are not resolved: shrink the range.
        a_est = iso[0][0]
        r_res = 1.0 / (2.0 * a_est * dq * dq * 2.0)
        if r_lo + 4.0 < r_res < r_hi:
            r_hi = r_res
            sel = sel & (radius <= r_hi)
            iso = scale(sel, a_est)
    if iso is None or iso[0] is None:
        raise ValueError(
            "no Thon rings found: fewer than two ring minima in the power spectrum "
            f"(radii {r_lo:g}..{r_hi:g} px); check rad_range, the roi and the whitefield"
        )
    (a_iso, c_iso, n_rings), _, _ = iso
    a_ss = a_fs = a_iso
    n_sectors_used = 0
    if astigmatism and not one_d:
        theta = np.arctan2(np.sqrt(qf2), np.sqrt(qs2))  # 0 along ss, pi/2 along fs
        n_sec = max(int(sectors), 2)
        edges = np.linspace(0.0, np.pi / 2, n_sec + 1)
        rows, rhs, wts, found = [], [], [], []
        for t0, t1 in itertools.pairwise(edges):
            keep = sel & (theta >= t0) & ((theta < t1) | (t1 == edges[-1]))
            if keep.sum() < 20:
                continue
            res = scale(keep, a_iso)
            if res is None or res[0] is None or res[0][2] < 3:
                continue
            # Mean of cos^2 over the sector (exact for the sector average).
            c2 = 0.5 + (math.sin(2 * t1) - math.sin(2 * t0)) / (4 * (t1 - t0))
            rows.append([c2, 1.0 - c2])
            rhs.append(res[0][0])
            wts.append(float(res[0][2]))
            found.append((c2, res[2]))
        if len(rows) >= 2:
            wv = np.sqrt(np.asarray(wts))
            sol, *_ = np.linalg.lstsq(
                np.asarray(rows) * wv[:, None], np.asarray(rhs) * wv, rcond=None
            )
            if np.all(sol > 0):
                a_ss, a_fs = float(sol[0]), float(sol[1])
                n_sectors_used = len(rows)
                # Joint fit of every sector's minima with one ring offset c:
                # (a_ss cos^2 + a_fs sin^2) s_k - c = k.
                c_all = c_iso
                for _ in range(2):
                    design, target = [], []
                    for c2, s_min in found:
                        a_t = a_ss * c2 + a_fs * (1 - c2)
                        k = np.rint(a_t * s_min - c_all)
                        ok = np.abs(a_t * s_min - c_all - k) < 0.25
                        for sv, kv in zip(s_min[ok], k[ok]):
                            design.append([c2 * sv, (1 - c2) * sv, -1.0])
                            target.append(kv)
                    if len(target) < 4:
                        break
                    sol, *_ = np.linalg.lstsq(np.asarray(design), np.asarray(target), rcond=None)
                    if not (sol[0] > 0 and sol[1] > 0):
                        break
                    a_ss, a_fs, c_all = float(sol[0]), float(sol[1]), float(sol[2])
                c_iso = c_all
    # Final refinement on the whole 2D spectrum: P = E(|q|) sin^2(pi (a_ss qs^2 + a_fs qf^2 - c))
    # with a piecewise-linear envelope E (solved linearly) and (a_ss, a_fs, c) by nonlinear
    # least squares, residuals relative to the mean power at each radius.
    a_ss, a_fs, c_iso, gain = _refine_2d(
        spec, sel, radius, qs2, qf2, r_lo, r_hi, a_ss, a_fs, c_iso, astigmatism and not one_d
    )
    score = gain * (strengths[0] if strengths else 0.0)
    if score < min_score:
        raise ValueError(
            f"no Thon rings found in the power spectrum (ring score {score:.2f} < {min_score:g}, "
            f"radii {r_lo:g}..{r_hi:g} px); try rad_range, a roi, or defocus by registration"
        )
    # sin^2(chi + phi) vanishes at a s = k - phi / pi: phi = pi * c, tan(phi) = beta / delta.
    c_wrapped = c_iso - round(c_iso)
    bd = math.tan(math.pi * c_wrapped)
    z_ss, z_fs, z2 = _solve_geometry(a_ss, a_fs, z, wav)
    if one_d:
        z_ss = z_fs
    defocus = 0.5 * (z_ss + z_fs)
    t = a_ss * qs2 + a_fs * qf2
    model = np.where(sel, np.sin(np.pi * (t + c_wrapped)) ** 2, 0.0)
    flat = np.where(sel, spec, 0.0)
    details = {
        "a_ss": a_ss,
        "a_fs": a_fs,
        "bd": bd,
        "z2": z2,
        "rings": int(n_rings),
        "sectors": n_sectors_used,
        "spectrum": np.fft.fftshift(flat),
        "model": np.fft.fftshift(model),
        "rad_range": (r_lo, r_hi),
        "noise_floor": floor,
        "gain": gain,
        "score": score,
        "ring_strength": strengths[0] if strengths else 0.0,
    }
    logger.debug("fit_thon_rings: z_ss=%.6g z_fs=%.6g z2=%.6g bd=%.3g", z_ss, z_fs, z2, bd)
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
