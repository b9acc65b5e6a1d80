"""PSF width and blinking kinetics straight from a raw blinking movie, before any localization.

Both estimators work on the **temporal fluctuations** of the movie, ``dF(t, r) = F(t, r) - <F(r)>``
(each pixel minus its mean over time). A constant background, a camera offset and per-pixel
offset maps drop out exactly, and so do the cross terms between different emitters, which blink
independently: ``<dF_i dF_j> = 0`` for ``i != j``. What is left is the sum over emitters of their
own fluctuations, plus white shot/read noise. This is the second-order cumulant of SOFI imaging.

Spatial: :func:`psf_sigma_from_blinking`
    The frame-averaged spatial autocorrelation of ``dF`` is, at every lag ``k`` except ``k = 0``,
    proportional to the autocorrelation of the pixel-sampled PSF. For a Gaussian PSF of
    covariance ``S`` integrated over pixels of size ``(p_y, p_x)``, that is a Gaussian of
    covariance ``2 S + diag(p_y**2, p_x**2) / 6`` (a Gaussian convolved with the pixel box twice;
    the box is replaced by the Gaussian of the same variance, which is accurate to a fraction of a
    percent for sigma above 0.7 pixel). The noise adds a spike at zero lag only, which is left
    out of the fit. So ``S = C / 2 - diag(p_y**2, p_x**2) / 12`` where ``C`` is the fitted
    covariance of the autocorrelation peak.

Temporal: :func:`blink_statistics`
    For emitters that switch between an on and an off state as a two-state Markov chain sampled
    once per frame (``P(off->on) = k_on``, ``P(on->off) = k_off``), the temporal autocovariance of
    ``dF`` at lags ``tau >= 1`` decays as ``lam**tau`` with ``lam = 1 - k_on - k_off``; shot noise
    only adds to ``tau = 0``. The decay gives ``k_on + k_off``. The duty cycle
    ``p = k_on / (k_on + k_off)`` comes from the ratio of the third- to the second-order
    time-lagged cumulants of single-emitter pixel traces (background- and noise-free in
    expectation): ``k3 / (k2**1.5 * lam**0.5) = (1 - 2p) / sqrt(p (1 - p))``. Then
    ``k_off = (1 - lam)(1 - p)`` and the **mean on-time is** ``1 / k_off`` frames, the mean number
    of consecutive frames an emitter stays on. The correlation time ``-1 / ln(lam)`` is reported
    as well; it is always shorter than the mean on-time.

Everything is vectorized over frames and pixels; the spatial autocorrelation is a
:func:`stacklab.engine.reduce_frames` reduction (NumPy, CuPy, Dask, h5py/zarr datasets), with
partial results merged exactly (pairwise update of means and power spectra), so chunk size does
not change the answer. The small fits run on the CPU with SciPy.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.optimize import least_squares

from .. import backend, engine
from ..errors import ShapeError

__all__ = [
    "BlinkStatistics",
    "PsfEstimate",
    "blink_statistics",
    "fit_psf_autocorrelation",
    "pixel_size_pair",
    "psf_sigma_from_blinking",
    "spatial_autocorrelation",
    "temporal_autocovariance",
]

logger = logging.getLogger(__name__)

#: Below this signal-to-noise ratio of the fitted autocorrelation peak, no PSF is reported.
MIN_PEAK_SNR = 5.0


# --------------------------------------------------------------------------------------------
# argument helpers
# --------------------------------------------------------------------------------------------


def pixel_size_pair(pixel_size_nm: Any, name: str = "pixel_size_nm") -> tuple[float, float]:
    """Return a pixel size as a ``(y, x)`` pair of positive floats in nm.

    Parameters
    ----------
    pixel_size_nm : float or sequence of 2 floats
        One size for square pixels, or ``(size_y, size_x)`` (row, column) in nanometres.
    name : str
        Argument name quoted in error messages.

    Returns
    -------
    tuple of float
        ``(size_y, size_x)`` in nm.

    Raises
    ------
    ValueError
        If a size is not finite and positive, or the sequence does not hold two values.
    """
    if isinstance(pixel_size_nm, bool):
        raise TypeError(f"{name} must be a number or a (y, x) pair, got {pixel_size_nm!r}")
    arr = np.asarray(pixel_size_nm, dtype=float)
    if arr.ndim == 0:
        arr = np.array([arr, arr], dtype=float)
    if arr.shape != (2,):
        raise ValueError(
            f"{name} must be a number or a (y, x) pair of numbers, got {pixel_size_nm!r}"
        )
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"{name} must be finite and > 0 nm, got {pixel_size_nm!r}")
    return float(arr[0]), float(arr[1])


def _check_movie(movie: Any, name: str = "movie") -> tuple[int, int, int]:
    shape = getattr(movie, "shape", None)
    dtype = getattr(movie, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(
            f"{name} must be an array of shape (n_frames, rows, cols), got {type(movie)!r}"
        )
    if len(shape) != 3:
        raise ShapeError(
            f"{name} must be a 3-D array (n_frames, rows, cols), got shape {tuple(shape)}"
        )
    if np.dtype(dtype).kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {dtype}")
    n, rows, cols = (int(s) for s in shape)
    if n < 2 or rows < 1 or cols < 1:
        raise ShapeError(f"{name} needs at least 2 frames and 1 pixel, got shape {tuple(shape)}")
    return n, rows, cols


def _check_crop(crop: Any) -> int:
    if isinstance(crop, bool) or not isinstance(crop, int | np.integer):
        raise TypeError(f"crop must be an odd integer >= 5, got {crop!r}")
    if crop < 5 or crop % 2 == 0:
        raise ValueError(f"crop must be an odd integer >= 5 (pixels), got {crop}")
    return int(crop)


# --------------------------------------------------------------------------------------------
# spatial autocorrelation of the temporal fluctuations
# --------------------------------------------------------------------------------------------


def _spectrum_kernel(block: Any, *, shape: tuple[int, int]) -> tuple[int, Any, Any]:
    """Partial of a block: (n frames, mean frame, summed power spectrum of the deviations)."""
    xp = backend.get_xp(block)
    fft = backend.fft(xp)
    data = xp.asarray(block).astype(xp.float64)
    mean = data.mean(axis=0)
    spec = fft.rfft2(data - mean, s=shape, axes=(-2, -1))
    power = (spec.real**2 + spec.imag**2).sum(axis=0)
    return data.shape[0], mean, power


def _merge_spectra(a: tuple, b: tuple, *, shape: tuple[int, int]) -> tuple[int, Any, Any]:
    """Pairwise merge of two partials (the power-spectrum form of Chan's variance update)."""
    na, ma, pa = a
    nb, mb, pb = b
    n = na + nb
    delta = mb - ma
    xp = backend.get_xp(delta)
    spec = backend.fft(xp).rfft2(delta, s=shape)
    power = pa + pb + (spec.real**2 + spec.imag**2) * (na * nb / n)
    return n, ma + delta * (nb / n), power


def spatial_autocorrelation(
    movie: Any, *, crop: int = 21, chunk: int = 256, progress: bool | None = None
) -> Any:
    """Frame-averaged spatial autocorrelation of a movie's temporal fluctuations.

    Each pixel's mean over time is removed, then the linear (zero-padded, not circular)
    autocorrelation of every frame is averaged over frames:
    ``ac[k] = mean_t sum_r dF(t, r) dF(t, r + k)``.

    Parameters
    ----------
    movie : array-like of shape (n_frames, rows, cols)
        Raw frames (any real dtype; integers are widened, the sums run in float64). NumPy,
        CuPy, Dask, or an h5py/zarr dataset read block by block.
    crop : int
        Odd side of the returned window of lags, in pixels (>= 5).
    chunk : int
        Frames per block.
    progress : bool or None
        Progress bar (None: only on a terminal).

    Returns
    -------
    ndarray of shape (crop, crop), float64
        ``ac[crop // 2 + ky, crop // 2 + kx]`` is the autocorrelation at lag ``(ky, kx)`` pixels
        (rows, columns), in squared input units per frame. It is on the input's device
        (NumPy for datasets and Dask).

    Notes
    -----
    Independent emitters do not correlate with each other, so only each emitter's own PSF
    autocorrelation survives, plus a noise spike at zero lag. Blocks are merged exactly, so the
    result does not depend on ``chunk`` (up to float rounding).
    """
    _n, rows, cols = _check_movie(movie)
    crop = _check_crop(crop)
    half = crop // 2
    from scipy.fft import next_fast_len

    shape = (next_fast_len(rows + half + 1), next_fast_len(cols + half + 1))
    total = engine.reduce_frames(
        functools.partial(_spectrum_kernel, shape=shape),
        movie,
        merge=functools.partial(_merge_spectra, shape=shape),
        chunk=chunk,
        progress=progress,
    )
    count, _mean, power = total
    xp = backend.get_xp(power)
    ac = backend.fft(xp).irfft2(power, s=shape) / count
    ac = xp.roll(ac, (half, half), axis=(0, 1))[:crop, :crop]
    return ac


# --------------------------------------------------------------------------------------------
# Gaussian fit of the autocorrelation peak
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PsfEstimate:
    """A Gaussian PSF estimated from the autocorrelation of a blinking movie.

    Attributes
    ----------
    sigma_nm : float
        Geometric-mean width ``sqrt(sigma_x_nm * sigma_y_nm)`` in nm (NaN when no PSF was found).
    sigma_x_nm, sigma_y_nm : float
        Standard deviations along the PSF's principal axes, in nm: ``sigma_x_nm`` along the axis
        at ``theta_deg`` from the image x (column) axis, ``sigma_y_nm`` perpendicular to it.
        These are the widths of the optical PSF, before pixel integration (unless
        ``pixelated=False`` was asked for).
    theta_deg : float
        Angle of the ``sigma_x`` axis from the column axis towards the row axis, in [0, 90).
    covariance_nm2 : ndarray of shape (2, 2)
        PSF covariance in nm^2, ``[[yy, yx], [xy, xx]]`` (row, column order).
    pixel_size_nm : tuple of float
        ``(size_y, size_x)`` in nm used for the conversion.
    autocorrelation : ndarray of shape (crop, crop)
        The autocorrelation that was fitted (NumPy), zero lag at the centre.
    model : ndarray of shape (crop, crop)
        The fitted Gaussian (plus constant) on the same grid, without the zero-lag noise spike.
    amplitude, offset : float
        Height of the fitted autocorrelation peak and the constant level, in the units of
        ``autocorrelation``.
    snr : float
        ``amplitude`` over the RMS of the fit residuals (the zero lag excluded).
    pixelated : bool
        Whether the pixel-integration variance ``p**2 / 12`` was removed.
    """

    sigma_nm: float
    sigma_x_nm: float
    sigma_y_nm: float
    theta_deg: float
    covariance_nm2: np.ndarray
    pixel_size_nm: tuple[float, float]
    autocorrelation: np.ndarray = field(repr=False)
    model: np.ndarray = field(repr=False)
    amplitude: float = math.nan
    offset: float = math.nan
    snr: float = math.nan
    pixelated: bool = True

    @property
    def sigma_px(self) -> float:
        """Geometric-mean width in pixels (geometric mean of the two pixel sizes)."""
        return self.sigma_nm / math.sqrt(self.pixel_size_nm[0] * self.pixel_size_nm[1])

    @property
    def found(self) -> bool:
        """True when a PSF was found (``sigma_nm`` is finite)."""
        return math.isfinite(self.sigma_nm)


def _gauss_cov(params: np.ndarray, ky: np.ndarray, kx: np.ndarray) -> np.ndarray:
    """Unit-height 2-D Gaussian at lags (ky, kx); params are (log sy, log sx, atanh rho)."""
    lsy, lsx, arho = params
    sy, sx, rho = math.exp(lsy), math.exp(lsx), math.tanh(arho)
    q = (ky / sy) ** 2 + (kx / sx) ** 2 - 2.0 * rho * ky * kx / (sy * sx)
    return np.exp(-q / (2.0 * (1.0 - rho * rho)))


def _principal_axes(cov: np.ndarray) -> tuple[float, float, float]:
    """(sigma along theta, sigma across, theta in degrees in [0, 90)) of a (y, x) covariance."""
    # In (x, y) order the matrix is [[xx, xy], [xy, yy]].
    cxx, cyy, cxy = cov[1, 1], cov[0, 0], cov[0, 1]
    theta = 0.5 * math.atan2(2.0 * cxy, cxx - cyy)  # axis of the largest variance, (-90, 90]
    c, s = math.cos(theta), math.sin(theta)
    var_a = cxx * c * c + 2 * cxy * c * s + cyy * s * s
    var_b = cxx * s * s - 2 * cxy * c * s + cyy * c * c
    deg = math.degrees(theta)
    if deg < 0:  # rotate by 90 degrees: the axes swap roles
        deg += 90.0
        var_a, var_b = var_b, var_a
    if deg >= 90.0:
        deg -= 90.0
        var_a, var_b = var_b, var_a
    return math.sqrt(max(var_a, 0.0)), math.sqrt(max(var_b, 0.0)), deg


def fit_psf_autocorrelation(
    ac: Any,
    *,
    pixel_size_nm: float | tuple[float, float] = 100.0,
    exclude: Literal["centre", "cross"] = "centre",
    pixelated: bool = True,
) -> PsfEstimate:
    """Fit a Gaussian PSF to a spatial autocorrelation of blinking emitters.

    Parameters
    ----------
    ac : array-like of shape (crop, crop)
        Autocorrelation with zero lag at the centre (as from :func:`spatial_autocorrelation`).
    pixel_size_nm : float or (float, float)
        Pixel size in nm, one value or ``(size_y, size_x)``.
    exclude : {"centre", "cross"}
        Lags left out of the fit: the zero lag only (white noise), or the whole central row and
        column (cameras with row- or column-correlated noise).
    pixelated : bool
        True (default) when the frames integrate the PSF over each pixel, as cameras do: the
        pixel variance ``p**2 / 12`` is removed from each axis. False for point-sampled PSFs.

    Returns
    -------
    PsfEstimate
        With ``sigma_nm`` NaN (and a warning) when the autocorrelation shows no peak above the
        noise (signal-to-noise ratio below :data:`MIN_PEAK_SNR`) or the fitted peak is narrower
        than one pixel can produce.

    Raises
    ------
    ShapeError
        If ``ac`` is not a square 2-D array of odd side >= 5.
    ValueError
        For an unknown ``exclude`` or a bad pixel size.
    """
    ac = np.asarray(backend.to_numpy(ac), dtype=np.float64)
    if ac.ndim != 2 or ac.shape[0] != ac.shape[1] or ac.shape[0] < 5 or ac.shape[0] % 2 == 0:
        raise ShapeError(f"ac must be a square 2-D array of odd side >= 5, got shape {ac.shape}")
    if not np.all(np.isfinite(ac)):
        raise ValueError("ac holds NaN or infinite values")
    if exclude not in ("centre", "cross"):
        raise ValueError(f"exclude must be 'centre' or 'cross', got {exclude!r}")
    py, px = pixel_size_pair(pixel_size_nm)
    half = ac.shape[0] // 2
    lag = np.arange(-half, half + 1, dtype=np.float64)
    ky = np.repeat(lag[:, None], ac.shape[1], axis=1) * py
    kx = np.repeat(lag[None, :], ac.shape[0], axis=0) * px
    mask = np.ones(ac.shape, dtype=bool)
    if exclude == "centre":
        mask[half, half] = False
    else:
        mask[half, :] = False
        mask[:, half] = False
    z = ac[mask]
    scale = float(np.max(np.abs(z))) or 1.0
    z = z / scale
    kym, kxm = ky[mask], kx[mask]

    # Start from the second moments of the positive part around zero lag.
    w = np.clip(z - np.median(z), 0.0, None)
    if w.sum() > 0:
        vy0 = float((w * kym**2).sum() / w.sum())
        vx0 = float((w * kxm**2).sum() / w.sum())
    else:
        vy0, vx0 = (2 * py) ** 2, (2 * px) ** 2
    lo_y, lo_x = 0.25 * py, 0.25 * px
    hi_y, hi_x = half * py, half * px
    sy0 = float(np.clip(math.sqrt(max(vy0, 1e-12)), 1.01 * lo_y, 0.99 * hi_y))
    sx0 = float(np.clip(math.sqrt(max(vx0, 1e-12)), 1.01 * lo_x, 0.99 * hi_x))

    def resid(p: np.ndarray) -> np.ndarray:
        return p[3] * _gauss_cov(p[:3], kym, kxm) + p[4] - z

    p0 = np.array([math.log(sy0), math.log(sx0), 0.0, max(float(z.max()), 1e-3), 0.0])
    lower = [math.log(lo_y), math.log(lo_x), -3.0, 0.0, -np.inf]
    upper = [math.log(hi_y), math.log(hi_x), 3.0, np.inf, np.inf]
    res = least_squares(resid, p0, bounds=(lower, upper), x_scale="jac")
    p = res.x
    amplitude, offset = float(p[3] * scale), float(p[4] * scale)
    rms = float(np.sqrt(np.mean(res.fun**2))) * scale
    snr = amplitude / rms if rms > 0 else math.inf
    model = amplitude * _gauss_cov(p[:3], ky, kx) + offset

    sy, sx, rho = math.exp(p[0]), math.exp(p[1]), math.tanh(p[2])
    cov_ac = np.array([[sy * sy, rho * sy * sx], [rho * sy * sx, sx * sx]])
    cov = cov_ac / 2.0
    if pixelated:
        cov = cov - np.diag([py * py / 12.0, px * px / 12.0])
    nan = math.nan
    eig_ok = bool(np.all(np.linalg.eigvalsh(cov) > 0))
    if snr < MIN_PEAK_SNR or not eig_ok or not res.success:
        why = (
            f"peak signal-to-noise ratio {snr:.2g} < {MIN_PEAK_SNR}"
            if snr < MIN_PEAK_SNR
            else "the fitted peak is narrower than pixel integration allows"
        )
        warnings.warn(
            f"no PSF found in the autocorrelation ({why}); sigma is NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        return PsfEstimate(
            nan, nan, nan, nan, np.full((2, 2), nan), (py, px), ac, model,
            amplitude, offset, snr, pixelated,
        )  # fmt: skip
    sa, sb, theta = _principal_axes(cov)
    return PsfEstimate(
        sigma_nm=math.sqrt(sa * sb),
        sigma_x_nm=sa,
        sigma_y_nm=sb,
        theta_deg=theta,
        covariance_nm2=cov,
        pixel_size_nm=(py, px),
        autocorrelation=ac,
        model=model,
        amplitude=amplitude,
        offset=offset,
        snr=snr,
        pixelated=pixelated,
    )


def psf_sigma_from_blinking(
    movie: Any,
    *,
    pixel_size_nm: float | tuple[float, float] = 100.0,
    crop: int = 21,
    exclude: Literal["centre", "cross"] = "centre",
    pixelated: bool = True,
    chunk: int = 256,
    progress: bool | None = None,
) -> PsfEstimate:
    """Estimate the Gaussian PSF width from a raw movie of blinking emitters.

    No localization is needed: the width comes from the spatial autocorrelation of the
    temporal fluctuations (see the module notes). The estimate is unbiased for independent
    emitters at any density, with or without a camera offset or a static background.

    Parameters
    ----------
    movie : array-like of shape (n_frames, rows, cols)
        Raw frames in any linear unit (ADU or photons); a constant offset does not matter.
    pixel_size_nm : float or (float, float)
        Pixel size in nm (one value, or ``(size_y, size_x)``).
    crop : int
        Odd side of the window of lags that is fitted, in pixels (>= 5). It should reach
        about 4 PSF sigmas from the centre; the default 21 suits sigma up to ~2.5 px.
    exclude : {"centre", "cross"}
        Left out of the fit: the zero lag (default), or the central row and column.
    pixelated : bool
        Remove the pixel-integration variance (True for camera frames).
    chunk : int
        Frames per block of the reduction.
    progress : bool or None
        Progress bar (None: only on a terminal).

    Returns
    -------
    PsfEstimate
        ``sigma_nm`` is the geometric mean of the principal widths, in nm.

    Examples
    --------
    >>> est = psf_sigma_from_blinking(movie, pixel_size_nm=100.0)   # doctest: +SKIP
    >>> round(est.sigma_nm)                                         # doctest: +SKIP
    130
    """
    ac = spatial_autocorrelation(movie, crop=crop, chunk=chunk, progress=progress)
    return fit_psf_autocorrelation(
        ac, pixel_size_nm=pixel_size_nm, exclude=exclude, pixelated=pixelated
    )


# --------------------------------------------------------------------------------------------
# temporal statistics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlinkStatistics:
    """Blinking kinetics of a movie under the two-state (on/off) model.

    Rates are probabilities per frame for ``model="discrete"`` (a Markov chain with one state
    per frame) and rates per frame for ``model="continuous"`` (exponential dwell times).

    Attributes
    ----------
    decay_per_frame : float
        ``lam``, the factor by which the autocovariance decays per frame of lag.
    correlation_time_frames : float
        ``-1 / ln(lam)`` frames: the 1/e time of the intensity autocorrelation.
    duty_cycle : float
        Fraction of time an emitter is on, ``k_on / (k_on + k_off)`` (NaN if no emitter site was
        bright enough; the mean on-time then assumes a duty cycle of 0).
    k_on, k_off : float
        Switching rates per frame.
    mean_on_frames, mean_off_frames : float
        Mean on- and off-times in frames (``1 / k_off`` and ``1 / k_on``).
    model : str
        ``"discrete"`` or ``"continuous"``.
    lags : ndarray of shape (n_lags,)
        Lags in frames (1, 2, ...) of ``autocovariance``.
    autocovariance : ndarray of shape (n_lags,)
        Pixel-averaged temporal autocovariance of the fluctuations (squared input units).
    fit : ndarray of shape (n_lags,)
        ``amplitude * lam**lag + offset`` on the same lags.
    fit_lags : int
        Number of lags (from lag 1) used by the fit.
    n_sites : int
        Number of emitter sites used for the duty cycle.
    """

    decay_per_frame: float
    correlation_time_frames: float
    duty_cycle: float
    k_on: float
    k_off: float
    mean_on_frames: float
    mean_off_frames: float
    model: str
    lags: np.ndarray = field(repr=False)
    autocovariance: np.ndarray = field(repr=False)
    fit: np.ndarray = field(repr=False)
    fit_lags: int = 0
    n_sites: int = 0

    def mean_on_s(self, exposure_s: float) -> float:
        """Mean on-time in seconds for frames of ``exposure_s`` seconds."""
        return self.mean_on_frames * float(exposure_s)


def _row_tiles(rows: int, cols: int, n_time: int, budget_bytes: int = 64 * 2**20) -> int:
    per_row = max(1, cols * n_time * 16 * 3)
    return int(max(1, min(rows, budget_bytes // per_row)))


def _read_rows(movie: Any, r0: int, r1: int, xp: Any) -> Any:
    block = movie[:, r0:r1]
    if backend.is_dask(block):
        block = block.compute()
    return xp.asarray(block).astype(xp.float64)


def temporal_autocovariance(
    movie: Any, *, max_lag: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-averaged temporal autocovariance of a movie, and its lag-1 covariance image.

    Parameters
    ----------
    movie : array-like of shape (n_frames, rows, cols)
        Raw frames (read in tiles of rows, each over all frames).
    max_lag : int or None
        Largest lag in frames (default ``n_frames // 2 - 1``, at least 1).

    Returns
    -------
    cov : ndarray of shape (max_lag + 1,)
        ``cov[tau] = mean over pixels and t of dF(t) dF(t + tau)`` for ``tau = 0 .. max_lag``,
        in squared input units (``tau = 0`` includes the noise variance).
    lag1 : ndarray of shape (rows, cols)
        Per-pixel covariance at lag 1: bright where emitters blink, free of shot noise.
    mean : ndarray of shape (rows, cols)
        Per-pixel temporal mean.

    Notes
    -----
    The sums use an FFT along time, zero-padded so that lags do not wrap. Results are NumPy.
    """
    n, rows, cols = _check_movie(movie)
    if max_lag is None:
        max_lag = max(1, n // 2 - 1)
    if isinstance(max_lag, bool) or not isinstance(max_lag, int | np.integer):
        raise TypeError(f"max_lag must be an integer >= 1, got {max_lag!r}")
    if not 1 <= max_lag < n:
        raise ValueError(f"max_lag must be in [1, n_frames - 1] = [1, {n - 1}], got {max_lag}")
    xp = backend.get_xp(movie) if backend.is_cupy(movie) else np
    fft = backend.fft(xp)
    nfft = fft.next_fast_len(n + max_lag + 1)
    step = _row_tiles(rows, cols, nfft // 2 + 1)
    power = xp.zeros(nfft // 2 + 1, dtype=xp.float64)
    lag1 = np.empty((rows, cols))
    mean = np.empty((rows, cols))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        tile = _read_rows(movie, r0, r1, xp)
        m = tile.mean(axis=0)
        d = tile - m
        spec = fft.rfft(d, n=nfft, axis=0)
        power += (spec.real**2 + spec.imag**2).sum(axis=(1, 2))
        lag1[r0:r1] = backend.to_numpy((d[:-1] * d[1:]).mean(axis=0))
        mean[r0:r1] = backend.to_numpy(m)
    acf = backend.to_numpy(fft.irfft(power, n=nfft))[: max_lag + 1]
    cov = acf / ((n - np.arange(max_lag + 1)) * rows * cols)
    return cov, lag1, mean


def _fit_decay(cov: np.ndarray) -> tuple[float, float, float, int]:
    """Fit ``a * lam**tau + c`` to cov[1:], with a window of about 4 correlation times."""
    c = cov[1:]
    n_lags = c.size
    if n_lags < 2 or c[0] <= 0:
        return math.nan, math.nan, math.nan, 0
    lam = float(np.clip(c[1] / c[0], 0.05, 0.98)) if n_lags > 1 else 0.5
    window = n_lags
    a = off = math.nan
    for _ in range(6):
        tc = -1.0 / math.log(lam)
        window = int(np.clip(math.ceil(4.0 * tc) + 2, min(4, n_lags), n_lags))
        tau = np.arange(1, window + 1, dtype=np.float64)
        z = c[:window] / c[0]

        def resid(p: np.ndarray, tau: np.ndarray = tau, z: np.ndarray = z) -> np.ndarray:
            return p[0] * p[1] ** tau + p[2] - z

        p0 = [1.0 / lam, lam, 0.0]
        res = least_squares(
            resid, p0, bounds=([0.0, 1e-6, -1.0], [np.inf, 1.0 - 1e-9, 1.0]), x_scale="jac"
        )
        new = float(res.x[1])
        a, off = float(res.x[0] * c[0]), float(res.x[2] * c[0])
        if abs(new - lam) < 1e-6:
            lam = new
            break
        lam = new
    return lam, a, off, window


def _duty_cycle(traces: np.ndarray, lam: float) -> float:
    """Median per-site duty cycle from lag-(1, 2) cumulants of single-pixel traces (T, n)."""
    d = traces - traces.mean(axis=0)
    k2 = (d[:-1] * d[1:]).mean(axis=0)
    k3 = (d[:-2] * d[1:-1] * d[2:]).mean(axis=0)
    ok = k2 > 0
    if not np.any(ok):
        return math.nan
    g = k3[ok] / (k2[ok] ** 1.5 * math.sqrt(lam))
    q = 1.0 / (g * g + 4.0)  # p (1 - p)
    root = np.sqrt(np.clip(1.0 - 4.0 * q, 0.0, None))
    p = 0.5 * (1.0 - np.sign(g) * root)
    return float(np.median(p))


def blink_statistics(
    movie: Any,
    *,
    max_lag: int | None = None,
    site_radius: int = 2,
    site_threshold: float = 10.0,
    model: Literal["discrete", "continuous"] = "discrete",
) -> BlinkStatistics:
    """Blinking kinetics (on-time, off-time, duty cycle) from a raw blinking movie.

    Parameters
    ----------
    movie : array-like of shape (n_frames, rows, cols)
        Raw frames of emitters at fixed positions that blink independently; any linear unit
        and any static background or camera offset.
    max_lag : int or None
        Largest lag computed, in frames (default ``n_frames // 2 - 1``). The decay fit uses
        about four correlation times from lag 1, within this range.
    site_radius : int
        Emitter sites are local maxima of the lag-1 covariance image within
        ``(2 * site_radius + 1)`` pixel squares; about 1.5 PSF sigmas.
    site_threshold : float
        Sites must exceed the median of the lag-1 covariance image by this many robust standard
        deviations (MAD x 1.4826).
    model : {"discrete", "continuous"}
        ``"discrete"``: each frame is on or off, a Markov chain with switching probabilities
        per frame; the autocovariance decays as ``(1 - k_on - k_off)**lag``. ``"continuous"``:
        exponential dwell times with rates per frame, decay ``exp(-(k_on + k_off) lag)``.

    Returns
    -------
    BlinkStatistics
        ``mean_on_frames`` is the mean on-time in frames (``1 / k_off``);
        ``correlation_time_frames`` the decay time of the autocorrelation.

    Raises
    ------
    ShapeError
        If ``movie`` is not 3-D or has fewer than 4 frames.
    ValueError
        For a bad ``model``, ``site_radius`` or ``site_threshold``.
    """
    n = _check_movie(movie)[0]
    if n < 4:
        raise ShapeError(f"movie needs at least 4 frames for blinking statistics, got {n}")
    if model not in ("discrete", "continuous"):
        raise ValueError(f"model must be 'discrete' or 'continuous', got {model!r}")
    if isinstance(site_radius, bool) or not isinstance(site_radius, int | np.integer):
        raise TypeError(f"site_radius must be an integer >= 1, got {site_radius!r}")
    if site_radius < 1:
        raise ValueError(f"site_radius must be >= 1 pixel, got {site_radius}")
    if not (math.isfinite(site_threshold) and site_threshold > 0):
        raise ValueError(f"site_threshold must be finite and > 0, got {site_threshold!r}")

    cov, lag1, _mean = temporal_autocovariance(movie, max_lag=max_lag)
    lam, amp, off, window = _fit_decay(cov)
    lags = np.arange(1, cov.size, dtype=np.float64)
    fit = amp * lam**lags + off if math.isfinite(lam) else np.full(lags.shape, math.nan)

    # Emitter sites: local maxima of the lag-1 covariance image well above its noise.
    from scipy import ndimage

    med = float(np.median(lag1))
    mad = float(np.median(np.abs(lag1 - med))) * 1.4826
    peaks = (lag1 == ndimage.maximum_filter(lag1, size=2 * site_radius + 1, mode="nearest")) & (
        lag1 > med + site_threshold * max(mad, np.finfo(float).tiny)
    )
    rr, cc = np.nonzero(peaks)
    p = math.nan
    if rr.size and math.isfinite(lam):
        traces = _site_traces(movie, rr, cc)
        p = _duty_cycle(traces, lam)
    if not math.isfinite(p):
        logger.warning("no emitter site found for the duty cycle; assuming it is small (0)")
    p_used = p if math.isfinite(p) else 0.0

    if model == "discrete":
        total = 1.0 - lam
    else:
        total = -math.log(lam) if lam > 0 else math.nan
    k_off = total * (1.0 - p_used)
    k_on = total * p_used
    corr = -1.0 / math.log(lam) if 0 < lam < 1 else math.nan
    return BlinkStatistics(
        decay_per_frame=lam,
        correlation_time_frames=corr,
        duty_cycle=p,
        k_on=k_on,
        k_off=k_off,
        mean_on_frames=1.0 / k_off if k_off > 0 else math.nan,
        mean_off_frames=1.0 / k_on if k_on > 0 else math.nan,
        model=model,
        lags=lags,
        autocovariance=cov[1:].copy(),
        fit=fit,
        fit_lags=window,
        n_sites=int(rr.size),
    )


def _site_traces(movie: Any, rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
    """Time traces (n_frames, n_sites) of single pixels, read row by row for datasets."""
    if isinstance(movie, np.ndarray) or backend.is_cupy(movie):
        xp = backend.get_xp(movie)
        traces = movie[:, xp.asarray(rr), xp.asarray(cc)]
        return backend.to_numpy(traces).astype(np.float64)
    out = np.empty((movie.shape[0], rr.size))
    for r in np.unique(rr):  # one read per image row holding sites
        sel = np.nonzero(rr == r)[0]
        row = movie[:, int(r)]
        row = backend.to_numpy(row)
        out[:, sel] = row[:, cc[sel]]
    return out
