"""Drop-in replacement for smlmLP's blinking blocks, built on :mod:`stacklab.smlm`.

``from stacklab.compat import smlmlp`` gives the documented functions with smlmLP's signatures,
argument forms and return structures:

* :func:`blink_spatial_psf` ``(channels, /, crop_pix=41, *, channels_pixels_nm=100.0,
  cuda=False, parallel=False) -> (psf_sigma, info)`` with ``info`` keys ``ac``, ``coeffs``,
  ``fit``, ``psf``, ``sigx``, ``sigy``, ``spline``, ``theta``, ``tx``, ``ty`` (per-channel lists);
* :func:`blink_temporal_on` ``(channels, /, crop_fr=None, psf_sigma_nm=100.0, *,
  exposure_ms=50.0, channels_pixels_nm=100.0, cuda=False, parallel=False) -> (on_time, info)``
  with ``info`` keys ``ac``, ``average``, ``fit``, ``time`` (smlmLP 0.1.20 makes ``crop_fr``
  positional-only, yet its own example passes it by keyword; both work here);
* :class:`Config` and :class:`Locs`, stacklab's acquisition configuration and localization
  table (:mod:`stacklab.smlm.config`, :mod:`stacklab.smlm.locs`).

``channels`` is a sequence of frames-first stacks ``(n_frames, rows, cols)``, one per channel;
``channels_pixels_nm`` is one size, one ``(y, x)`` pair, or one entry per channel, as in smlmLP.

Deliberate differences from smlmLP 0.1.20, where its answers are biased (the numbers quoted are
from its recorded outputs in ``tests/golden/smlmlp``):

* **PSF width.** smlmLP removes a clipped temporal median, fits a Gaussian to the square root
  of the autocorrelation's spectrum and keeps the pixel integration, which overestimates sigma
  by +2 to +11 % (141.1 nm for a 130 nm PSF on the golden movie). Here the autocorrelation is
  that of the temporal fluctuations (each pixel minus its temporal mean: cross terms between
  emitters and the background vanish), its peak is fitted directly without the zero-lag noise
  spike, and the pixel variance ``p**2 / 12`` is removed (see :mod:`stacklab.smlm.blink`): the
  golden movie gives 130.7 nm, and simulated 2000-frame movies are within 1 % of the truth.
  ``sigx``, ``sigy`` and ``psf_sigma`` are the optical PSF widths in nm; ``psf``, ``fit`` and
  ``spline`` show the pixel-sampled PSF, which is what the camera records.
* **On-time.** smlmLP's ``blink_temporal_on`` returns the decay time of the intensity
  autocorrelation, which is the correlation time ``~1 / (k_on + k_off)`` of the blinking, not the
  on-time: 0.84 x the mean on-time on average over its replicate movies. Following the
  documented meaning (the blinking on-time), this returns the **mean on-time** ``1 / k_off`` in ms,
  from the autocorrelation decay and the duty cycle (third-order cumulants); see
  :func:`stacklab.smlm.blink.blink_statistics`. The time axis ``info["time"]`` starts at the first
  lag (one exposure), where smlmLP starts it at 0.
* **Uniform noise** (no emitters) has no PSF: ``psf_sigma``, ``sigx``, ``sigy`` and ``theta`` are
  NaN there, with a ``RuntimeWarning``; smlmLP returns parameters stuck on its fit bounds.
* ``parallel`` is accepted and has no effect (the work is vectorized); ``cuda=True`` moves the
  frames to the GPU and raises :class:`~stacklab.errors.BackendError` when there is none (no
  silent CPU fallback). CuPy input is processed on its GPU either way.

Shapes and dtypes of ``info`` follow smlmLP: ``ac`` float32 ``(n, n)`` with ``n = 2 * (crop_pix
// 2) + 1``; ``psf``, ``fit``, ``spline`` float64 ``(n, n)``; ``tx``, ``ty`` float32 ``(n + 3,)``
knots in nm; ``coeffs`` float32 ``(n - 1, n - 1)``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.interpolate import BSpline

from .. import backend
from ..errors import ShapeError
from ..smlm.blink import (
    PsfEstimate,
    blink_statistics,
    fit_psf_autocorrelation,
    spatial_autocorrelation,
)
from ..smlm.config import Config, channel_pixel_sizes
from ..smlm.locs import Locs

__all__ = ["Config", "Locs", "blink_spatial_psf", "blink_temporal_on"]

logger = logging.getLogger(__name__)

_INFO_SPATIAL = ("ac", "psf", "fit", "spline", "sigx", "sigy", "theta", "tx", "ty", "coeffs")


def _channels(channels: Any, cuda: bool) -> list[Any]:
    """Validate the channel list and move it to the GPU when ``cuda`` is True."""
    if isinstance(channels, np.ndarray) or backend.is_cupy(channels):
        if channels.ndim == 3:
            raise ShapeError(
                "channels must be a sequence of (n_frames, rows, cols) stacks, one per channel; "
                "wrap a single stack in a list: [stack]"
            )
        if channels.ndim != 4:
            raise ShapeError(
                f"channels must be a sequence of 3-D stacks, got an array of shape {channels.shape}"
            )
    elif not isinstance(channels, Sequence) or isinstance(channels, str | bytes):
        raise TypeError(f"channels must be a sequence of 3-D stacks, got {type(channels).__name__}")
    out = []
    for i, ch in enumerate(channels):
        shape = getattr(ch, "shape", None)
        if shape is None or len(shape) != 3:
            raise ShapeError(
                f"channels[{i}] must be a (n_frames, rows, cols) stack, got shape {shape}"
            )
        if cuda:
            ch = backend.asarray_on(ch, backend.resolve_device("gpu"))
        out.append(ch)
    if not out:
        raise ValueError("channels is empty: give at least one (n_frames, rows, cols) stack")
    return out


def _crop(crop_pix: Any) -> int:
    if isinstance(crop_pix, bool) or not isinstance(crop_pix, int | np.integer):
        raise TypeError(f"crop_pix must be an integer >= 5, got {crop_pix!r}")
    size = 2 * (int(crop_pix) // 2) + 1
    if size < 5:
        raise ValueError(f"crop_pix must be >= 5 pixels, got {crop_pix}")
    return size


def _normalise_ac(ac: np.ndarray) -> np.ndarray:
    """smlmLP's display normalisation: min/max of all lags but zero; the centre keeps its spike."""
    h = ac.shape[0] // 2
    off = ac.copy()
    off[h, h] = np.nan
    lo, hi = np.nanmin(off), np.nanmax(off)
    return (ac - lo) / (hi - lo) if hi > lo else ac - lo


def _psf_from_ac(est: PsfEstimate) -> np.ndarray:
    """Pixel-sampled PSF image from the autocorrelation: inverse FFT of sqrt(|FFT(ac)|).

    The zero-lag noise spike is replaced by the fitted peak first, and the noise floor of the
    spectrum (its median magnitude) is subtracted before the square root, which would
    otherwise turn the noise into a spike at the centre of the image (+20 % on the golden
    movie, against 2 % with the floor removed).
    """
    ac = est.autocorrelation.copy()
    h = ac.shape[0] // 2
    if est.found:
        ac[h, h] = est.model[h, h]
    else:
        ac[h, h] = np.mean([ac[h - 1, h], ac[h + 1, h], ac[h, h - 1], ac[h, h + 1]])
    mag = np.abs(np.fft.fft2(ac))
    spec = np.sqrt(np.clip(mag - np.median(mag), 0.0, None))
    return np.fft.fftshift(np.real(np.fft.ifft2(spec)))


def _pixelated_model(est: PsfEstimate, size: int) -> np.ndarray:
    """Unit-height Gaussian of the pixel-sampled PSF (covariance + pixel**2 / 12) on the lags."""
    py, px = est.pixel_size_nm
    cov = est.covariance_nm2 + (np.diag([py * py, px * px]) / 12.0 if est.pixelated else 0.0)
    h = size // 2
    lag = np.arange(-h, h + 1, dtype=np.float64)
    ky, kx = np.meshgrid(lag * py, lag * px, indexing="ij")
    inv = np.linalg.inv(cov)
    q = inv[0, 0] * ky * ky + 2 * inv[0, 1] * ky * kx + inv[1, 1] * kx * kx
    return np.exp(-0.5 * q)


def _spline(image: np.ndarray, pixel: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Cubic tensor B-spline least-squares fitted to an (n, n) image on its grid in nm.

    Same sizes as smlmLP's spline (``n + 3`` knots and ``n - 1`` coefficients per axis, ends
    repeated at the crop edges), but the interior knots sit half-way between pixels, so none
    straddles the PSF peak (smlmLP's knots skip the central line and smooth the peak).
    """
    n = image.shape[0]
    h = n // 2
    lag = np.arange(-h, h + 1, dtype=np.float64)
    inner = np.arange(-(h - 2), h - 2, dtype=np.float64) + 0.5
    knots = []
    mats = []
    for p in pixel:
        x = lag * p
        t = np.concatenate([[x[0]] * 4, inner * p, [x[-1]] * 4])
        knots.append(t)
        mats.append(BSpline.design_matrix(x, t, 3).toarray())
    by, bx = mats
    coeffs = np.linalg.pinv(by) @ image @ np.linalg.pinv(bx).T
    values = by @ coeffs @ bx.T
    return values, knots[1], knots[0], coeffs


def blink_spatial_psf(
    channels: Sequence[Any],
    /,
    crop_pix: int = 41,
    *,
    channels_pixels_nm: Any = 100.0,
    cuda: bool = False,
    parallel: bool = False,
) -> tuple[list[float], dict[str, list[Any]]]:
    """Estimate a global PSF for each channel from spatial autocorrelations.

    For each channel, the frame-averaged spatial autocorrelation of the temporal fluctuations
    is computed, its peak (without the zero-lag noise spike) is fitted with a rotated 2-D
    Gaussian, and the PSF covariance follows as half the peak's covariance minus the pixel
    variance. A PSF image, its Gaussian model and a cubic spline of the image are returned too.

    Parameters
    ----------
    channels : sequence of ndarray
        One stack of shape (n_frames, height, width) per channel (raw ADU or photons).
    crop_pix : int, optional
        Side of the square window of lags, pixels; ``2 * (crop_pix // 2) + 1`` is used (>= 5).
    channels_pixels_nm : float or sequence, optional
        Pixel size in nm: one value, one ``(y, x)`` pair, or one entry per channel.
    cuda : bool, optional
        Run on the GPU (CuPy); raises if none is usable.
    parallel : bool, optional
        Accepted for compatibility; has no effect.

    Returns
    -------
    psf_sigma : list of float
        Per channel, ``sqrt(sigx * sigy)`` in nm (NaN when no PSF is found).
    info : dict of str to list
        Per-channel lists:

        ``'ac'``
            Autocorrelation (n, n), float32, normalised to [0, 1] over the lags but zero
            (the zero lag keeps its noise spike).
        ``'psf'``
            PSF image (n, n) from the autocorrelation's spectrum, scaled to the Gaussian fit.
        ``'fit'``
            The fitted Gaussian of the pixel-sampled PSF, unit height, (n, n).
        ``'spline'``
            Cubic spline of ``psf`` evaluated on the grid (n, n).
        ``'sigx'``, ``'sigy'``
            PSF sigmas in nm along the principal axes (``sigx`` at ``theta``).
        ``'theta'``
            Angle of the ``sigx`` axis from the x (column) axis, degrees in [0, 90).
        ``'tx'``, ``'ty'``
            Spline knots in nm along x and y, float32 (n + 3,).
        ``'coeffs'``
            Spline coefficients, float32 (n - 1, n - 1), indexed (y, x).

    Notes
    -----
    The PSF image is ``fftshift(real(ifft2(sqrt(|fft2(ac)| - floor))))`` after replacing the
    zero-lag spike by the fitted peak (``floor``: the median magnitude, the noise), then
    ``(psf - offset) / amp`` with ``amp`` and ``offset`` from a linear fit to the Gaussian
    model.

    Examples
    --------
    Estimate the PSF for one channel:

    >>> import numpy as np
    >>> channel = np.random.rand(20, 64, 64).astype(np.float32)
    >>> psf_sigma, info = blink_spatial_psf([channel], crop_pix=41)
    >>> len(psf_sigma)
    1
    >>> sorted(info.keys())
    ['ac', 'coeffs', 'fit', 'psf', 'sigx', 'sigy', 'spline', 'theta', 'tx', 'ty']

    (Uniform noise holds no PSF: the widths are NaN, with a RuntimeWarning.)
    """
    del parallel
    size = _crop(crop_pix)
    stacks = _channels(channels, cuda)
    pixels = channel_pixel_sizes(channels_pixels_nm, len(stacks))
    psf_sigma: list[float] = []
    info: dict[str, list[Any]] = {k: [] for k in _INFO_SPATIAL}
    for stack, pix in zip(stacks, pixels):
        ac = spatial_autocorrelation(stack, crop=size)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = fit_psf_autocorrelation(backend.to_numpy(ac), pixel_size_nm=pix)
        for w in caught:
            warnings.warn(w.message, w.category, stacklevel=2)
        psf = _psf_from_ac(est)
        if est.found:
            fit = _pixelated_model(est, size)
            design = np.column_stack([fit.ravel(), np.ones(fit.size)])
            (amp, off), *_ = np.linalg.lstsq(design, psf.ravel(), rcond=None)
            psf = (psf - off) / amp if amp > 0 else psf
        else:
            fit = np.full((size, size), np.nan)
            lo, hi = float(psf.min()), float(psf.max())
            psf = (psf - lo) / (hi - lo) if hi > lo else psf - lo
        spline, tx, ty, coeffs = _spline(psf, pix)
        psf_sigma.append(float(est.sigma_nm))
        info["ac"].append(_normalise_ac(est.autocorrelation).astype(np.float32))
        info["psf"].append(psf)
        info["fit"].append(fit)
        info["spline"].append(spline)
        info["sigx"].append(float(est.sigma_x_nm))
        info["sigy"].append(float(est.sigma_y_nm))
        info["theta"].append(float(est.theta_deg))
        info["tx"].append(tx.astype(np.float32))
        info["ty"].append(ty.astype(np.float32))
        info["coeffs"].append(coeffs.astype(np.float32))
    return psf_sigma, info


def blink_temporal_on(
    channels: Sequence[Any],
    /,
    crop_fr: int | None = None,
    psf_sigma_nm: Any = 100.0,
    *,
    exposure_ms: float = 50.0,
    channels_pixels_nm: Any = 100.0,
    cuda: bool = False,
    parallel: bool = False,
) -> tuple[float, dict[str, Any]]:
    """Estimate the blinking on-time from temporal autocorrelations.

    Per channel, the pixel-averaged temporal autocovariance of the fluctuations is fitted with
    ``a * lam**lag + c`` over about four correlation times; the duty cycle ``p`` comes from
    third-order cumulants at emitter sites, and the mean on-time is ``1 / ((1 - lam)(1 - p))``
    frames (two-state blinking, one state per frame). The channels' on-times are averaged.

    Parameters
    ----------
    channels : sequence of ndarray
        One stack of shape (n_frames, height, width) per channel.
    crop_fr : int or None, optional
        Number of lags returned in ``info`` (from lag 1); default ``n_frames // 2 - 1``.
    psf_sigma_nm : float or sequence, optional
        PSF sigma in nm (one value or one per channel); sets the neighbourhood in which
        emitter sites are found (1.5 sigma).
    exposure_ms : float, optional
        Exposure time per frame in ms.
    channels_pixels_nm : float or sequence, optional
        Pixel size in nm (one value, one ``(y, x)`` pair, or one entry per channel).
    cuda : bool, optional
        Run on the GPU (CuPy); raises if none is usable.
    parallel : bool, optional
        Accepted for compatibility; has no effect.

    Returns
    -------
    on_time : float
        Mean on-time in ms (``1 / k_off`` frames times ``exposure_ms``), averaged over channels.
    info : dict
        ``'ac'``: per channel, the autocovariance at lags 1..crop_fr divided by its lag-1 value
        (float32); ``'average'``: their mean (float32); ``'fit'``: the mean of the fitted decays
        on the same scale (float64); ``'time'``: the lags in ms, ``lag * exposure_ms``.

    Examples
    --------
    >>> import numpy as np
    >>> channel = np.random.rand(50, 32, 32).astype(np.float32)
    >>> on_time, info = blink_temporal_on([channel], psf_sigma_nm=[120.0])
    >>> isinstance(on_time, float), "average" in info
    (True, True)
    """
    del parallel
    stacks = _channels(channels, cuda)
    n = len(stacks)
    pixels = channel_pixel_sizes(channels_pixels_nm, n)
    if np.ndim(psf_sigma_nm) == 0:
        sigmas = [float(psf_sigma_nm)] * n
    else:
        sigmas = [float(s) for s in psf_sigma_nm]
        if len(sigmas) == 1:
            sigmas *= n
        if len(sigmas) != n:
            raise ValueError(
                f"psf_sigma_nm must be one value or one per channel ({n}), got {len(sigmas)}"
            )
    if any(not (math.isfinite(s) and s > 0) for s in sigmas):
        raise ValueError(f"psf_sigma_nm must be finite and > 0 nm, got {psf_sigma_nm!r}")
    exposure = float(exposure_ms)
    if not (math.isfinite(exposure) and exposure > 0):
        raise ValueError(f"exposure_ms must be finite and > 0, got {exposure_ms!r}")
    n_frames = min(int(s.shape[0]) for s in stacks)
    if crop_fr is None:
        crop_fr = max(1, n_frames // 2 - 1)
    if isinstance(crop_fr, bool) or not isinstance(crop_fr, int | np.integer):
        raise TypeError(f"crop_fr must be an integer or None, got {crop_fr!r}")
    if not 1 <= crop_fr < n_frames:
        raise ValueError(f"crop_fr must be in [1, {n_frames - 1}] frames, got {crop_fr}")
    acs, fits, on_times = [], [], []
    for stack, pix, sigma in zip(stacks, pixels, sigmas):
        radius = max(1, round(1.5 * sigma / min(pix)))
        stats = blink_statistics(stack, max_lag=int(crop_fr), site_radius=radius)
        ref = stats.autocovariance[0]
        acs.append((stats.autocovariance / ref).astype(np.float32))
        fits.append(stats.fit / ref)
        on_times.append(stats.mean_on_frames * exposure)
        logger.debug(
            "channel: correlation time %.3g frames, duty cycle %.3g, mean on-time %.3g frames",
            stats.correlation_time_frames,
            stats.duty_cycle,
            stats.mean_on_frames,
        )
    lags = np.arange(1, crop_fr + 1, dtype=np.float64)
    info = {
        "ac": acs,
        "average": np.mean(acs, axis=0).astype(np.float32),
        "fit": np.mean(fits, axis=0),
        "time": lags * exposure,
    }
    return float(np.mean(on_times)), info
