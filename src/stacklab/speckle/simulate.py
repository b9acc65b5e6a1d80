"""Simulated near-field speckle-tracking scans with ground truth.

The simulation follows the speckle-tracking forward model (the one speckle_tracking documents)::

    data[n, i, j] = Poisson( W[i, j] * O(u[0, i, j] - dij[n, 0] + n0, u[1, i, j] - dij[n, 1] + m0) )

Geometry (SI units): a point focus, the sample ``defocus`` downstream of it, the detector
``distance`` = z downstream of the focus (focus-to-detector). The sample plane is sampled in
*object pixels* of ``dss = x_pixel_size * defocus / z`` and ``dfs = y_pixel_size * defocus / z``
metres (the detector pixel demagnified by ``M = z / defocus``). With astigmatism the focus lies at
``defocus + dz`` (slow scan, ss) and ``defocus - dz`` (fast scan, fs) upstream of the sample, and
the ideal pixel map is stretched: ``u[0] = i * z_ss / defocus``, ``u[1] = j * z_fs / defocus`` (the
convention of speckle_tracking's ``generate_pixel_map``).

1. **Object.** A weak phase object (Gaussian-filtered white noise phase, RMS ``object_phase_rms``
   rad, absorption ``beta_delta`` times the phase) is propagated to the reference plane with the
   Fresnel transfer function ``exp(-i pi lambda z2 (1 + z2 / z_a) q_a**2)`` per detector axis
   ``a`` (``q_a`` the detector spatial frequency in cycles/m, ``z2 = z - defocus`` the
   sample-to-detector distance). Its intensity is the reference image ``O``: it carries the Thon
   rings that :func:`stacklab.speckle.fit_thon_rings` fits. It is computed on a twice oversampled
   periodic grid and read with cubic splines.
2. **Lens aberration.** A phase ``phase[i, j]`` (rad) made of 3rd and 4th order polynomials over
   the detector, with piston, tilts, ``i**2``, ``j**2`` and ``i*j`` removed (those are geometry:
   offset, defocus and astigmatism). It displaces the pixel map by
   ``du[a] = -(wavelength * z / (2 pi d_a Delta_a)) * d(phase)/d(i_a)`` object pixels, which is
   the sign documented for speckle_tracking's ``integrate_pixel_map``
   (``grad Phi' = i Delta_ss - d_ss (u + n0)`` with ``Phi' = wavelength z phase / (2 pi)``).
3. **Scan.** A raster of ``grid`` positions ``step`` object pixels apart plus Gaussian jitter,
   mean removed: ``dij`` (object pixels, [ss, fs]). The lab-frame translations are
   ``(x, y, z) = (dij_fs * dfs, dij_ss * dss, defocus)`` metres with detector basis vectors
   ``[[0, x_pixel_size, 0], [y_pixel_size, 0, 0]]`` (ss = lab y, fs = lab x).
4. **Detector.** A flat-top whitefield with soft edges and a dim border, optional hot and dead
   pixels, Poisson counts.

A 1D scan is ``shape=(1, L)`` with ``grid=(1, n)``: the object and aberration vary along fs only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
import scipy.ndimage

from ..errors import ShapeError, check_positive

__all__ = ["SpeckleScan", "aberration_phase", "simulate"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeckleScan:
    """A simulated speckle-tracking scan and its ground truth.

    Attributes
    ----------
    data : ndarray of float32, shape (N, M, L)
        Frames (counts): N frames, M slow-scan rows (ss), L fast-scan columns (fs).
    mask : ndarray of bool, shape (M, L)
        True for good pixels (False at the simulated hot and dead pixels).
    whitefield : ndarray of float64, shape (M, L)
        True whitefield (expected counts without the sample).
    translations : ndarray of float64, shape (N, 3)
        Sample position ``(x, y, z)`` in metres for each frame (lab frame).
    basis : ndarray of float64, shape (N, 2, 3)
        Detector basis vectors (metres) of the ss and fs pixel steps in the lab frame.
    x_pixel_size, y_pixel_size : float
        Detector pixel size along ss and fs (metres), named as in speckle_tracking.
    distance : float
        Focus-to-detector distance z (metres).
    wavelength : float
        Wavelength (metres).
    defocus : float
        Mean focus-to-sample distance (metres); > 0: sample downstream of the focus.
    dz : float
        Astigmatism (metres): the focus-to-sample distance is ``defocus + dz`` along ss and
        ``defocus - dz`` along fs.
    dss, dfs : float
        Object (reference-image) pixel size along ss and fs (metres).
    dij : ndarray of float64, shape (N, 2)
        True sample translations in object pixels, [ss, fs], mean removed.
    pixel_map : ndarray of float64, shape (2, M, L)
        True pixel map u ([0] = ss, [1] = fs, object pixels).
    phase : ndarray of float64, shape (M, L)
        True lens aberration phase (rad), sign as documented for speckle_tracking's
        ``integrate_pixel_map``; no piston, tilt, ``i**2``, ``j**2`` or ``i*j`` terms.
    reference : ndarray of float64, shape (U, V)
        True reference image O at integer object coordinates (mean about 1).
    n0, m0 : float
        Offsets of the forward model: object index ``(k, l)`` is the coordinate
        ``(u[0] - dij[:, 0] + n0, u[1] - dij[:, 1] + m0) = (k, l)``.
    clean : ndarray of float32, shape (N, M, L)
        Noise-free expected counts (before bad pixels and Poisson noise).
    """

    data: np.ndarray
    mask: np.ndarray
    whitefield: np.ndarray
    translations: np.ndarray
    basis: np.ndarray
    x_pixel_size: float
    y_pixel_size: float
    distance: float
    wavelength: float
    defocus: float
    dz: float
    dss: float
    dfs: float
    dij: np.ndarray
    pixel_map: np.ndarray
    phase: np.ndarray
    reference: np.ndarray
    n0: float
    m0: float
    clean: np.ndarray

    @property
    def defocus_ss(self) -> float:
        """Focus-to-sample distance along ss (metres)."""
        return self.defocus + self.dz

    @property
    def defocus_fs(self) -> float:
        """Focus-to-sample distance along fs (metres)."""
        return self.defocus - self.dz

    @property
    def is_1d(self) -> bool:
        """True for a single-row detector (M == 1)."""
        return self.data.shape[1] == 1


def _pair(value: Any, name: str) -> tuple[float, float]:
    arr = np.broadcast_to(np.asarray(value, dtype=float), (2,))
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(arr[0]), float(arr[1])


def _norm_coords(n: int) -> tuple[np.ndarray, float]:
    """Coordinates in [-1, 1] over n pixels and the half width in pixels."""
    half = max((n - 1) / 2.0, 0.5)
    return (np.arange(n) - (n - 1) / 2.0) / half, half


def _poly_terms(ny: int, nx: int) -> list[tuple[int, int]]:
    """Exponent pairs (p, q) of y**p x**q of total degree 3 and 4 (x only for 1D)."""
    if ny == 1:
        return [(0, 3), (0, 4)]
    return [(p, d - p) for d in (3, 4) for p in range(d + 1)]


def _low_terms(ny: int) -> list[tuple[int, int]]:
    if ny == 1:
        return [(0, 0), (0, 1), (0, 2)]
    return [(0, 0), (1, 0), (0, 1), (2, 0), (0, 2), (1, 1)]


def aberration_phase(
    shape: tuple[int, int], coefficients: Any = None, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth lens-aberration phase and its gradient, free of geometry terms.

    The phase is a sum of ``y**p x**q`` of total degree 3 and 4 in coordinates normalised to
    ``[-1, 1]`` over the detector (``y`` along ss, ``x`` along fs), from which the least-squares
    fit of ``1, y, x, y**2, x**2, x*y`` over the detector has been subtracted (x-only terms for a
    single-row detector).

    Parameters
    ----------
    shape : (int, int)
        Detector shape ``(M, L)``.
    coefficients : array-like, optional
        One coefficient per term (9 terms in 2D: degree 3 then 4, descending power of x... as
        ``(p, q)`` = (0, 3), (1, 2), (2, 1), (3, 0), (0, 4), ...; 2 in 1D). Default: standard
        normal numbers drawn with ``seed``.
    seed : int
        Seed of the default coefficients.

    Returns
    -------
    phase : ndarray of float64, shape (M, L)
        The phase (arbitrary units; the caller scales it).
    gradient : ndarray of float64, shape (2, M, L)
        ``d phase / d i`` (ss) and ``d phase / d j`` (fs) per pixel index.
    """
    ny, nx = int(shape[0]), int(shape[1])
    terms = _poly_terms(ny, nx)
    if coefficients is None:
        coefficients = np.random.default_rng(seed).standard_normal(len(terms))
    coefficients = np.asarray(coefficients, dtype=float)
    if coefficients.shape != (len(terms),):
        raise ShapeError(f"coefficients must have shape ({len(terms)},), got {coefficients.shape}")
    y, hy = _norm_coords(ny)
    x, hx = _norm_coords(nx)
    if ny == 1:
        y = np.zeros(1)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    deg = 5
    coef = np.zeros((deg, deg))
    for c, (p, q) in zip(coefficients, terms):
        coef[p, q] += c
    low = _low_terms(ny)
    design = np.stack([yy.ravel() ** p * xx.ravel() ** q for p, q in low], axis=1)
    values = np.polynomial.polynomial.polyval2d(yy, xx, coef).ravel()
    fit, *_ = np.linalg.lstsq(design, values, rcond=None)
    for c, (p, q) in zip(fit, low):
        coef[p, q] -= c
    phase = np.polynomial.polynomial.polyval2d(yy, xx, coef)
    d_y = np.polynomial.polynomial.polyder(coef, axis=0)
    d_x = np.polynomial.polynomial.polyder(coef, axis=1)
    grad = np.stack(
        [
            np.polynomial.polynomial.polyval2d(yy, xx, d_y) / hy if ny > 1 else np.zeros_like(yy),
            np.polynomial.polynomial.polyval2d(yy, xx, d_x) / hx,
        ]
    )
    return phase, grad


def _whitefield(shape: tuple[int, int], peak: float, border: float) -> np.ndarray:
    def edge(n: int) -> np.ndarray:
        if n == 1:
            return np.ones(1)
        idx = np.arange(n, dtype=float)
        margin, width = 0.06 * n, max(0.012 * n, 1.0)
        return 0.5 * (np.tanh((idx - margin) / width) - np.tanh((idx - (n - 1 - margin)) / width))

    m, n = shape
    y, _ = _norm_coords(m)
    x, _ = _norm_coords(n)
    tilt = 1.0 + 0.08 * x[None, :] - 0.05 * (y[:, None] ** 2 if m > 1 else 0.0)
    flat = np.outer(edge(m), edge(n))
    return peak * (border + (1.0 - border) * flat) * tilt


def _object_field(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    sigma: float,
    phase_rms: float,
    beta_delta: float,
    chirp: tuple[float, float],
    oversample: int,
) -> np.ndarray:
    """Reference image on a grid ``oversample`` times finer than the object pixels (periodic)."""
    u, v = shape
    fu, fv = u * oversample if u > 1 else 1, v * oversample
    noise = rng.standard_normal((fu, fv))
    # Gaussian filter in Fourier space (periodic), sigma in object pixels.
    ku = scipy.fft.fftfreq(fu, d=1.0 / oversample) if fu > 1 else np.zeros(1)
    kv = scipy.fft.fftfreq(fv, d=1.0 / oversample)
    k2_u, k2_v = ku[:, None] ** 2, kv[None, :] ** 2
    filt = np.exp(-2.0 * math.pi**2 * sigma**2 * (k2_u + k2_v))
    phi = scipy.fft.ifft2(scipy.fft.fft2(noise) * filt).real
    phi *= phase_rms / max(float(np.std(phi)), 1e-30)
    t = np.exp((1j - beta_delta) * phi)
    prop = np.exp(-1j * math.pi * (chirp[0] * k2_u + chirp[1] * k2_v))
    field = scipy.fft.ifft2(scipy.fft.fft2(t) * prop)
    intensity = np.abs(field) ** 2
    return intensity / float(np.mean(intensity))


def simulate(
    shape: tuple[int, int] = (128, 128),
    grid: tuple[int, int] = (7, 7),
    *,
    step: float | tuple[float, float] = 3.0,
    jitter: float = 0.2,
    wavelength: float = 1e-10,
    distance: float = 1.0,
    defocus: float = 4e-4,
    dz: float = 0.0,
    pixel_size: float | tuple[float, float] = 55e-6,
    aberration_px: float = 1.2,
    aberration_coefficients: Any = None,
    photons: float | None = 1e4,
    object_phase_rms: float = 0.3,
    object_sigma: float = 1.2,
    beta_delta: float = 0.1,
    border: float = 0.04,
    n_hot: int = 0,
    n_dead: int = 0,
    seed: int = 0,
) -> SpeckleScan:
    """Simulate a near-field speckle-tracking scan with a known lens aberration.

    Parameters
    ----------
    shape : (int, int)
        Detector shape ``(M, L)`` = (ss rows, fs columns); ``(1, L)`` for a 1D scan.
    grid : (int, int)
        Scan raster ``(n_ss, n_fs)``; N = n_ss * n_fs frames (row-major order).
    step : float or (float, float)
        Raster step in object pixels along (ss, fs).
    jitter : float
        RMS random error added to every position, object pixels.
    wavelength : float
        Wavelength in metres (1e-10 m is 12.4 keV).
    distance : float
        Focus-to-detector distance z in metres.
    defocus : float
        Mean focus-to-sample distance in metres (> 0 and < ``distance``).
    dz : float
        Astigmatism in metres: focus-to-sample ``defocus + dz`` along ss, ``defocus - dz`` along
        fs (``|dz| < defocus``).
    pixel_size : float or (float, float)
        Detector pixel size along (ss, fs), metres.
    aberration_px : float
        RMS of the aberration's pixel-map displacement (both components, mean removed, object
        pixels; the fs component for a 1D scan); 0 gives an aberration-free lens.
    aberration_coefficients : array-like, optional
        Shape of the aberration (see :func:`aberration_phase`); default drawn from ``seed``.
    photons : float or None
        Peak whitefield counts per pixel; None for noise-free data (then ``data == clean``).
    object_phase_rms : float
        RMS phase of the weak phase object (rad); sets the speckle contrast.
    object_sigma : float
        Correlation length (Gaussian sigma) of the object phase, object pixels. Smaller values
        give finer speckle and Thon rings to higher frequencies (0.8 for ring fits).
    beta_delta : float
        Absorption-to-phase ratio of the object.
    border : float
        Whitefield level outside the illuminated area, relative to the peak.
    n_hot, n_dead : int
        Numbers of hot (40 x the peak counts in every frame) and dead (0) pixels.
    seed : int
        Seed of every random choice.

    Returns
    -------
    SpeckleScan
        Frames ``(N, M, L)`` float32 and the ground truth.

    Raises
    ------
    ShapeError
        For a bad ``shape`` or ``grid``.
    ValueError
        For non-physical geometry (``defocus`` outside ``(0, distance)``, ``|dz| >= defocus``).
    """
    m, n = (int(v) for v in shape)
    g_ss, g_fs = (int(v) for v in grid)
    if m < 1 or n < 4:
        raise ShapeError(f"shape must be (M, L) with M >= 1 and L >= 4, got {shape}")
    if g_ss < 1 or g_fs < 1:
        raise ShapeError(f"grid must be two positive integers, got {grid}")
    if m == 1 and g_ss != 1:
        raise ShapeError("a single-row detector (M == 1) needs grid = (1, n)")
    check_positive(wavelength, "wavelength")
    check_positive(distance, "distance")
    check_positive(defocus, "defocus")
    if defocus >= distance:
        raise ValueError(f"defocus ({defocus}) must be smaller than distance ({distance})")
    if abs(dz) >= defocus:
        raise ValueError(f"|dz| ({dz}) must be smaller than defocus ({defocus})")
    step_ss, step_fs = _pair(step, "step")
    px_ss, px_fs = _pair(pixel_size, "pixel_size")
    check_positive((px_ss, px_fs), "pixel_size")
    rng = np.random.default_rng(seed)
    one_d = m == 1

    z_ss, z_fs = defocus + dz, defocus - dz
    dss = px_ss * defocus / distance
    dfs = px_fs * defocus / distance
    stretch = (z_ss / defocus, z_fs / defocus)
    z2 = distance - defocus

    # Aberration phase and the displacement it causes.
    coeff_seed = int(rng.integers(2**31))
    shape_phase, grad = aberration_phase((m, n), aberration_coefficients, seed=coeff_seed)
    conv = (
        wavelength * distance / (2.0 * math.pi * dss * px_ss),
        wavelength * distance / (2.0 * math.pi * dfs * px_fs),
    )
    du = -np.stack([conv[0] * grad[0], conv[1] * grad[1]])
    du_c = du - du.reshape(2, -1).mean(axis=1)[:, None, None]
    rms = float(np.sqrt(np.mean(du_c[1] ** 2))) if one_d else float(np.sqrt(np.mean(du_c**2)))
    scale = 0.0 if aberration_px == 0 or rms == 0 else aberration_px / rms
    phase = shape_phase * scale
    du = du * scale
    ii, jj = np.indices((m, n), dtype=float)
    pixel_map = np.stack([ii * stretch[0] + du[0], jj * stretch[1] + du[1]])

    # Scan positions (object pixels) and lab-frame translations.
    pos_ss = (np.arange(g_ss) - (g_ss - 1) / 2.0) * step_ss
    pos_fs = (np.arange(g_fs) - (g_fs - 1) / 2.0) * step_fs
    dij = np.stack(np.meshgrid(pos_ss, pos_fs, indexing="ij"), axis=-1).reshape(-1, 2)
    dij = dij + jitter * rng.standard_normal(dij.shape)
    if one_d:
        dij[:, 0] = 0.0
    dij -= dij.mean(axis=0)
    n_frames = dij.shape[0]
    translations = np.stack([dij[:, 1] * dfs, dij[:, 0] * dss, np.full(n_frames, defocus)], axis=1)
    basis = np.broadcast_to(
        np.array([[0.0, px_ss, 0.0], [px_fs, 0.0, 0.0]]), (n_frames, 2, 3)
    ).copy()

    # Object grid covering every coordinate, with a margin for interpolation.
    pad = 4.0
    if one_d:
        n0, big_u = 0.0, 1
    else:
        n0 = float(dij[:, 0].max() - pixel_map[0].min() + pad)
        big_u = math.ceil(pixel_map[0].max() - dij[:, 0].min() + n0 + pad) + 1
    m0 = float(dij[:, 1].max() - pixel_map[1].min() + pad)
    big_v = math.ceil(pixel_map[1].max() - dij[:, 1].min() + m0 + pad) + 1

    # Fresnel chirp per axis in object-pixel frequencies (cycles per object pixel).
    chirp = tuple(
        wavelength * z2 * (1.0 + z2 / z_a) * s_a**2 / p_a**2
        for z_a, s_a, p_a in zip((z_ss, z_fs), stretch, (px_ss, px_fs))
    )
    oversample = 2
    fine = _object_field(
        (big_u, big_v),
        rng,
        sigma=object_sigma,
        phase_rms=object_phase_rms,
        beta_delta=beta_delta,
        chirp=chirp,
        oversample=oversample,
    )
    spline = scipy.ndimage.spline_filter(fine, order=3, mode="grid-wrap")
    y = pixel_map[0][None] - dij[:, 0, None, None] + n0
    x = pixel_map[1][None] - dij[:, 1, None, None] + m0
    if one_d:
        coords = np.stack([np.zeros(x.size), oversample * x.ravel()])
    else:
        coords = np.stack([oversample * y.ravel(), oversample * x.ravel()])
    obj = scipy.ndimage.map_coordinates(
        spline, coords, order=3, mode="grid-wrap", prefilter=False
    ).reshape(n_frames, m, n)
    reference = fine[::oversample, ::oversample] if not one_d else fine[:, ::oversample]

    whitefield = _whitefield((m, n), 1.0 if photons is None else float(photons), border)
    clean = (whitefield[None] * obj).astype(np.float32)
    mask = np.ones((m, n), dtype=bool)
    if photons is None:
        data = clean.copy()
    else:
        check_positive(photons, "photons")
        data = rng.poisson(np.maximum(clean, 0.0).astype(np.float64)).astype(np.float32)
    n_bad = int(n_hot) + int(n_dead)
    if n_bad:
        bright = np.flatnonzero(whitefield.ravel() > 0.5 * whitefield.max())
        if bright.size < n_bad:
            raise ValueError(f"too many bad pixels ({n_bad}) for the illuminated area")
        chosen = rng.choice(bright, size=n_bad, replace=False)
        hot, dead = chosen[: int(n_hot)], chosen[int(n_hot) :]
        peak = float(whitefield.max())
        flat = data.reshape(n_frames, -1)
        flat[:, hot] = 40.0 * peak
        flat[:, dead] = 0.0
        mask.ravel()[chosen] = False
    logger.debug(
        "simulated %d frames of %dx%d, object %dx%d, aberration RMS %.3g px",
        n_frames,
        m,
        n,
        big_u,
        big_v,
        aberration_px,
    )
    return SpeckleScan(
        data=data,
        mask=mask,
        whitefield=whitefield,
        translations=translations,
        basis=basis,
        x_pixel_size=px_ss,
        y_pixel_size=px_fs,
        distance=float(distance),
        wavelength=float(wavelength),
        defocus=float(defocus),
        dz=float(dz),
        dss=dss,
        dfs=dfs,
        dij=dij,
        pixel_map=pixel_map,
        phase=phase,
        reference=reference,
        n0=n0,
        m0=m0,
        clean=clean,
    )
