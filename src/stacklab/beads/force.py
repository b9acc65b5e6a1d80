"""Force calibration of magnetic tweezers from the lateral fluctuations of a tethered bead.

A bead held by a tether of extension ``L`` under a vertical force ``F`` is an inverted pendulum:
a lateral displacement ``x`` feels the restoring force ``F x / L_eff``, so the lateral stiffness
is ``k = F / L_eff`` and, by equipartition, ``<x^2> = kB T / k``. The effective length depends
on the direction of the fluctuation relative to the magnetic field: ``L_eff = L`` perpendicular
to the field, where the bead rotates freely, and ``L_eff = L + R`` (``R`` the bead radius) along
the field, where the bead's magnetic moment pins its orientation (te Velthuis et al. 2010; Daldrop
et al. 2015). Hence

* **variance method**: ``F = kB T L_eff / <x^2>`` (:func:`force_from_variance`);
* **spectral method**: the motion is an Ornstein-Uhlenbeck (OU) process with corner frequency
  ``fc = k / (2 pi gamma)`` and diffusion constant ``D = kB T / gamma`` (``gamma`` the drag
  coefficient), so ``F = 2 pi gamma fc L_eff`` (:func:`fit_force_spectrum`).

A camera does not sample ``x(t)``: each frame is the average of ``x`` over the exposure time
``W``, taken at the frame rate ``fs``. Averaging removes variance (the measured variance is
``S(2 pi fc W)`` times the true one, :func:`exposure_variance_factor`; Wong & Halvorsen 2006), so
the variance method overestimates the force once ``fc`` approaches ``1/W``; sampling folds the
spectrum above ``fs/2`` back into the band (aliasing). The spectral method fits the exact power
spectral density (PSD) of the sampled, exposure-averaged OU process (:func:`camera_psd`), which
accounts for both, and recovers the force up to ``fc`` of the order of ``fs`` (te Velthuis et al.
2010; Lansdorp & Saleh 2012). The fit is a maximum-likelihood fit to the periodogram, whose
values are exponentially distributed about the PSD (Nørrelykke & Flyvbjerg 2010).

Units are explicit in every name: positions nm, forces pN, stiffness pN/nm, drag pN s/nm,
diffusion nm^2/s, frequencies Hz, times s, temperature K, viscosity Pa s.

References
----------
.. [1] A. J. te Velthuis, J. W. Kerssemakers, J. Lipfert, N. H. Dekker, "Quantitative
   guidelines for force calibration through spectral analysis of magnetic tweezers data",
   Biophys. J. 99, 1292-1302 (2010).
.. [2] B. M. Lansdorp, O. A. Saleh, "Power spectrum and Allan variance methods for calibrating
   single-molecule video-tracking instruments", Rev. Sci. Instrum. 83, 025115 (2012).
.. [3] W. P. Wong, K. Halvorsen, "The effect of integration time on fluctuation measurements:
   calibrating an optical trap in the presence of motion blur", Opt. Express 14, 12517 (2006).
.. [4] B. Daldrop, D. Kaiser, et al., "Extending the range for force calibration in magnetic
   tweezers", Biophys. J. 108, 2550-2561 (2015).
.. [5] S. F. Nørrelykke, H. Flyvbjerg, "Power spectrum analysis with least-squares fitting:
   amplitude bias and its elimination", Rev. Sci. Instrum. 81, 075103 (2010).
.. [6] H. Faxén (1923); see E. Schäffer, S. F. Nørrelykke, J. Howard, "Surface forces and drag
   coefficients of microspheres near a plane surface measured with optical tweezers",
   Langmuir 23, 3654-3665 (2007), for the series used here.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..backend import asarray_on, fft, get_xp, is_cupy, ndimage, to_numpy
from ..errors import ShapeError, check_positive

__all__ = [
    "BOLTZMANN_PN_NM_PER_K",
    "ForceFit",
    "SimulatedFluctuations",
    "camera_psd",
    "drag_coefficient",
    "effective_length",
    "exposure_variance_factor",
    "fit_force_spectrum",
    "force_from_variance",
    "forces_from_table",
    "simulate_fluctuations",
]

logger = logging.getLogger(__name__)

#: Boltzmann constant in pN nm / K (1.380649e-23 J/K; 1 J = 1e21 pN nm).
BOLTZMANN_PN_NM_PER_K = 1.380649e-2

#: Viscosity conversion: 1 Pa s = 1e-6 pN s / nm^2.
_PA_S_TO_PN_S_PER_NM2 = 1e-6

Direction = Literal["perpendicular", "parallel"]
Detrend = Literal["mean", "linear"] | int

_MIN_FRAMES_VARIANCE = 10
_MIN_FRAMES_SPECTRUM = 64


# --------------------------------------------------------------------------------------------
# argument checks and small physics helpers
# --------------------------------------------------------------------------------------------


def _positive_scalar(value: Any, name: str, *, allow_zero: bool = False) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    check_positive(out, name, allow_zero=allow_zero)
    return out


def _kbt(temperature_K: float) -> float:
    """Thermal energy in pN nm."""
    return BOLTZMANN_PN_NM_PER_K * _positive_scalar(temperature_K, "temperature_K")


def _check_direction(direction: Any) -> str:
    if direction not in ("perpendicular", "parallel"):
        raise ValueError(f"direction must be 'perpendicular' or 'parallel', got {direction!r}")
    return str(direction)


def effective_length(
    extension_nm: float,
    *,
    direction: Direction = "perpendicular",
    bead_radius_nm: float | None = None,
) -> float:
    """Pendulum length of a tethered bead for lateral fluctuations.

    ``L`` for fluctuations perpendicular to the magnetic field (the bead rotates freely about the
    tether axis) and ``L + R`` along the field (its orientation is pinned by the field), see
    te Velthuis et al. (2010) and Daldrop et al. (2015).

    Parameters
    ----------
    extension_nm : float
        Tether extension ``L`` (surface to the bottom of the bead), nm, > 0.
    direction : {"perpendicular", "parallel"}
        Direction of the fluctuations relative to the magnetic field.
    bead_radius_nm : float, optional
        Bead radius ``R``, nm; required for ``direction="parallel"``.

    Returns
    -------
    float
        Effective length, nm.

    Raises
    ------
    ValueError
        For a non-positive extension, an unknown direction, or a missing radius.
    """
    length = _positive_scalar(extension_nm, "extension_nm")
    if _check_direction(direction) == "parallel":
        if bead_radius_nm is None:
            raise ValueError(
                "bead_radius_nm is required for direction='parallel' (pendulum length L + R)"
            )
        length += _positive_scalar(bead_radius_nm, "bead_radius_nm")
    return length


def drag_coefficient(
    bead_radius_nm: float,
    *,
    viscosity_pa_s: float = 0.89e-3,
    height_nm: float | None = None,
) -> float:
    """Lateral drag coefficient of a sphere, optionally near a wall (Faxén's correction).

    ``gamma = 6 pi eta R / (1 - 9/16 (R/h) + 1/8 (R/h)^3 - 45/256 (R/h)^4 - 1/16 (R/h)^5)``
    for motion parallel to a plane wall at distance ``h`` from the sphere's centre (Faxén; see
    Schäffer et al. 2007); ``6 pi eta R`` (Stokes) without a wall.

    Parameters
    ----------
    bead_radius_nm : float
        Bead radius ``R``, nm.
    viscosity_pa_s : float
        Dynamic viscosity, Pa s (default 0.89e-3, water at 25 C).
    height_nm : float, optional
        Distance from the wall to the bead centre, nm (``L + R`` for a tethered bead); must be
        larger than ``R``. None: no wall correction.

    Returns
    -------
    float
        Drag coefficient, pN s / nm (multiply by 1e-3 for N s / m).
    """
    radius = _positive_scalar(bead_radius_nm, "bead_radius_nm")
    eta = _positive_scalar(viscosity_pa_s, "viscosity_pa_s") * _PA_S_TO_PN_S_PER_NM2
    gamma = 6.0 * math.pi * eta * radius
    if height_nm is not None:
        h = _positive_scalar(height_nm, "height_nm")
        if h <= radius:
            raise ValueError(
                f"height_nm ({h}) is the wall-to-centre distance and must exceed "
                f"bead_radius_nm ({radius})"
            )
        q = radius / h
        gamma /= 1.0 - 9.0 / 16.0 * q + q**3 / 8.0 - 45.0 / 256.0 * q**4 - q**5 / 16.0
    return gamma


def exposure_variance_factor(corner_frequency_hz: Any, exposure_s: float) -> Any:
    """Fraction of an OU variance that survives averaging over the exposure time.

    ``S(a) = 2/a - 2 (1 - exp(-a)) / a^2`` with ``a = 2 pi fc W`` (Wong & Halvorsen 2006); 1 for
    ``W = 0``, ``~2 / a`` for ``fc >> 1/W``. The measured variance is ``S`` times ``kB T / k``.

    Parameters
    ----------
    corner_frequency_hz : float or ndarray
        Corner frequency ``fc``, Hz.
    exposure_s : float
        Exposure (integration) time ``W``, s, >= 0.

    Returns
    -------
    float or ndarray
        ``S``, same shape as ``corner_frequency_hz``.
    """
    w = _positive_scalar(exposure_s, "exposure_s", allow_zero=True)
    a = 2.0 * np.pi * np.asarray(corner_frequency_hz, dtype=np.float64) * w
    out = _blur_s(a)
    return float(out) if out.ndim == 0 else out


def _blur_s(a: np.ndarray) -> np.ndarray:
    """``S(a) = 2 (a - 1 + exp(-a)) / a^2``, by its series below a = 1e-3."""
    a = np.asarray(a, dtype=np.float64)
    small = a < 1e-3
    safe = np.where(small, 1.0, a)
    direct = 2.0 * (safe + np.expm1(-safe)) / safe**2
    series = 1.0 - a / 3.0 + a**2 / 12.0 - a**3 / 60.0
    return np.where(small, series, direct)


def _blur_c(a: np.ndarray) -> np.ndarray:
    """``c(a) = 2 (cosh a - 1) / a^2 = (sinh(a/2) / (a/2))^2`` (covariance of disjoint windows)."""
    a = np.asarray(a, dtype=np.float64)
    half = 0.5 * a
    small = half < 1e-4
    safe = np.where(small, 1.0, half)
    direct = (np.sinh(safe) / safe) ** 2
    series = 1.0 + half**2 / 3.0
    return np.where(small, series, direct)


def camera_psd(
    frequency_hz: Any,
    corner_frequency_hz: float,
    diffusion_nm2_per_s: float,
    *,
    frame_rate_hz: float,
    exposure_s: float | None = None,
    n_aliases: int | None = None,
) -> np.ndarray:
    """One-sided PSD of an OU process seen by a camera (exposure-averaged, then sampled).

    The continuous process has the Lorentzian ``D / (2 pi^2 (fc^2 + f^2))`` (two-sided) and the
    autocovariance ``sigma^2 exp(-|t| / tau)``, ``sigma^2 = D / (2 pi fc)``, ``tau = 1 / (2 pi
    fc)``. Averaging over the exposure ``W <= 1/fs`` and sampling at ``fs`` gives frames with
    variance ``sigma^2 S(a)`` and lag-``m`` covariance ``sigma^2 c(a) r^m`` (``a = W / tau``,
    ``r = exp(-1 / (fs tau))``, ``S`` from :func:`exposure_variance_factor`, ``c(a) = 2 (cosh a -
    1) / a^2``, Wong & Halvorsen 2006). Their discrete-time Fourier transform is the closed form
    used here (default)::

        P(f) = (2 / fs) sigma^2 [S(a) + 2 c(a) r (cos(theta) - r) / (1 - 2 r cos(theta) + r^2)],
        theta = 2 pi f / fs.

    With ``n_aliases`` the PSD is instead the explicit sum over aliases of the blurred
    Lorentzian, ``sum_n L(f + n fs) sinc^2((f + n fs) W)`` for ``|n| <= n_aliases``
    (te Velthuis et al. 2010), which converges to the closed form.

    Parameters
    ----------
    frequency_hz : float or ndarray
        Frequencies, Hz, in ``[0, fs/2]`` (any shape).
    corner_frequency_hz : float
        Corner frequency ``fc``, Hz.
    diffusion_nm2_per_s : float
        Diffusion constant ``D = kB T / gamma``, nm^2/s.
    frame_rate_hz : float
        Camera frame rate ``fs``, Hz.
    exposure_s : float, optional
        Exposure time ``W``, s, ``0 <= W <= 1/fs`` (default ``1/fs``; 0 = instantaneous
        sampling).
    n_aliases : int, optional
        Use the truncated alias sum with this many aliases on each side instead of the closed
        form (for checks).

    Returns
    -------
    ndarray of float64
        One-sided PSD, nm^2/Hz, shape of ``frequency_hz``; it integrates over ``[0, fs/2]`` to the
        measured variance ``sigma^2 S(a)``.
    """
    fs = _positive_scalar(frame_rate_hz, "frame_rate_hz")
    w = _check_exposure(exposure_s, fs)
    fc = _positive_scalar(corner_frequency_hz, "corner_frequency_hz")
    d = _positive_scalar(diffusion_nm2_per_s, "diffusion_nm2_per_s")
    f = np.asarray(frequency_hz, dtype=np.float64)
    if n_aliases is not None:
        n = int(n_aliases)
        if n < 0:
            raise ValueError(f"n_aliases must be >= 0, got {n_aliases!r}")
        shifts = fs * np.arange(-n, n + 1, dtype=np.float64)
        fa = f[..., None] + shifts
        lorentz = d / (2.0 * np.pi**2 * (fc**2 + fa**2))
        return 2.0 * np.sum(lorentz * np.sinc(fa * w) ** 2, axis=-1)
    return d * _unit_psd(f, fc, fs, w)


def _unit_psd(f: np.ndarray, fc: float, fs: float, w: float) -> np.ndarray:
    """:func:`camera_psd` for ``D = 1`` (the model is linear in D)."""
    a_exp = 2.0 * np.pi * fc * w  # W / tau
    a_dt = 2.0 * np.pi * fc / fs  # dt / tau
    sigma2 = 1.0 / (2.0 * np.pi * fc)
    r = math.exp(-a_dt)
    one_minus_r = -math.expm1(-a_dt)
    half = np.pi * f / fs
    s2 = np.sin(half) ** 2  # (1 - cos theta) / 2
    den = one_minus_r**2 + 4.0 * r * s2
    num = one_minus_r - 2.0 * s2  # cos(theta) - r
    bracket = _blur_s(np.float64(a_exp)) + 2.0 * _blur_c(np.float64(a_exp)) * r * num / den
    return (2.0 / fs) * sigma2 * bracket


def _check_exposure(exposure_s: float | None, fs: float) -> float:
    if exposure_s is None:
        return 1.0 / fs
    w = _positive_scalar(exposure_s, "exposure_s", allow_zero=True)
    if w > (1.0 / fs) * (1.0 + 1e-9):
        raise ValueError(
            f"exposure_s ({w:g} s) cannot exceed the frame interval 1/frame_rate_hz "
            f"({1.0 / fs:g} s)"
        )
    return min(w, 1.0 / fs)


# --------------------------------------------------------------------------------------------
# trace preparation (NaN handling, detrending)
# --------------------------------------------------------------------------------------------


def _as_trace(x: Any, name: str) -> tuple[Any, Any]:
    """Return ``(xp, float64 1-D trace)`` (a new array; the input is never modified)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    xp = get_xp(x)
    if not (isinstance(x, np.ndarray) or is_cupy(x)):
        x = np.asarray(to_numpy(x))
        xp = np
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.ndim != 1:
        raise ShapeError(f"{name} must be a 1-D array (n_frames,), got shape {tuple(x.shape)}")
    return xp, x.astype(xp.float64, copy=True)


def _check_detrend(detrend: Any) -> str | int:
    if isinstance(detrend, str):
        if detrend not in ("mean", "linear"):
            raise ValueError(
                f"detrend must be 'mean', 'linear' or an odd window length in frames, got "
                f"{detrend!r}"
            )
        return detrend
    if isinstance(detrend, bool) or not isinstance(detrend, int | np.integer):
        raise ValueError(
            f"detrend must be 'mean', 'linear' or an odd window length in frames, got {detrend!r}"
        )
    if detrend < 3 or detrend % 2 == 0:
        raise ValueError(f"detrend window must be an odd integer >= 3 frames, got {detrend}")
    return int(detrend)


def _detrend(xp: Any, x: Any, t: Any, detrend: str | int) -> Any:
    """Remove the mean, a least-squares line in ``t``, or a centred moving average."""
    if detrend == "mean":
        return x - xp.mean(x)
    if detrend == "linear":
        tc = t - xp.mean(t)
        xc = x - xp.mean(x)
        slope = xp.sum(tc * xc) / xp.sum(tc * tc)
        return xc - slope * tc
    window = int(detrend)
    if window > x.shape[0]:
        raise ValueError(
            f"detrend window ({window} frames) is longer than the trace ({x.shape[0]} frames)"
        )
    trend = ndimage(xp).uniform_filter1d(x, size=window, mode="reflect")
    return x - trend


def _moving_average_gain(f: np.ndarray, fs: float, window: int) -> np.ndarray:
    """Power gain ``|1 - H(f)|^2`` of subtracting a centred ``window``-frame moving average."""
    theta = np.pi * np.asarray(f, dtype=np.float64) / fs  # in (0, pi/2) for 0 < f < fs/2
    h = np.sin(window * theta) / (window * np.sin(theta))
    return (1.0 - h) ** 2


# --------------------------------------------------------------------------------------------
# variance method
# --------------------------------------------------------------------------------------------


def force_from_variance(
    x_nm: Any,
    extension_nm: float,
    *,
    temperature_K: float = 296.15,
    direction: Direction = "perpendicular",
    bead_radius_nm: float | None = None,
    detrend: Detrend = "linear",
    nan_policy: Literal["omit", "raise"] = "omit",
) -> float:
    """Force from the equipartition theorem: ``F = kB T L_eff / <x^2>``.

    Simple and model-free, but biased: the camera's exposure averaging lowers the measured
    variance by :func:`exposure_variance_factor` (overestimating ``F`` once the corner frequency
    approaches ``1 / exposure``), and a finite trace or a detrend removes slow fluctuations
    (overestimating ``F`` when the trace is not much longer than ``1 / fc``; the moving-average
    window must also be much longer than ``1 / fc``). Use :func:`fit_force_spectrum` for
    unbiased forces (te Velthuis et al. 2010).

    Parameters
    ----------
    x_nm : ndarray of shape (n_frames,)
        Lateral bead position, nm, one value per frame (NumPy or CuPy).
    extension_nm : float
        Tether extension ``L``, nm, > 0.
    temperature_K : float
        Temperature, K (default 296.15).
    direction : {"perpendicular", "parallel"}
        Direction of ``x`` relative to the magnetic field (pendulum length ``L`` or ``L + R``,
        see :func:`effective_length`).
    bead_radius_nm : float, optional
        Bead radius, nm (needed for ``direction="parallel"``).
    detrend : {"mean", "linear"} or int
        Drift removal before the variance: the mean only, a least-squares line (default), or a
        centred moving average of this many frames (odd; edges reflected).
    nan_policy : {"omit", "raise"}
        NaN frames (lost tracking) are dropped (default; the line is fitted to the frames left)
        or raise ``ValueError``.

    Returns
    -------
    float
        Force, pN.

    Raises
    ------
    ShapeError
        If ``x_nm`` is not 1-D.
    ValueError
        For fewer than 10 finite frames, a zero variance, NaN with ``nan_policy="raise"``, or
        invalid parameters (each error names the argument).
    """
    xp, x = _as_trace(x_nm, "x_nm")
    length = effective_length(extension_nm, direction=direction, bead_radius_nm=bead_radius_nm)
    kbt = _kbt(temperature_K)
    mode = _check_detrend(detrend)
    if nan_policy not in ("omit", "raise"):
        raise ValueError(f"nan_policy must be 'omit' or 'raise', got {nan_policy!r}")
    finite = xp.isfinite(x)
    n_finite = int(xp.count_nonzero(finite))
    if n_finite < x.shape[0]:
        if nan_policy == "raise":
            raise ValueError(
                f"x_nm holds {x.shape[0] - n_finite} NaN/inf frames; pass nan_policy='omit' to "
                "drop them"
            )
        if isinstance(mode, int):
            raise ValueError(
                "a moving-average detrend needs an evenly sampled trace: x_nm holds NaN frames; "
                "fill them or use detrend='linear'"
            )
    if n_finite < _MIN_FRAMES_VARIANCE:
        raise ValueError(
            f"x_nm has {n_finite} finite frames; the variance method needs at least "
            f"{_MIN_FRAMES_VARIANCE}"
        )
    t = xp.arange(x.shape[0], dtype=xp.float64)[finite]
    resid = _detrend(xp, x[finite], t, mode)
    variance = float(xp.mean(resid * resid))
    if not variance > 0.0:
        raise ValueError("x_nm has zero variance after detrending; no force can be computed")
    return kbt * length / variance


# --------------------------------------------------------------------------------------------
# spectral method
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ForceFit:
    """Result of :func:`fit_force_spectrum`.

    Standard errors (``*_se``) come from the Fisher information of the periodogram likelihood
    (one standard deviation, statistical only). The plotting arrays hold the periodogram averaged
    in logarithmically spaced frequency blocks and the fitted model averaged the same way.

    Attributes
    ----------
    force_pN, force_se_pN : float
        Force ``2 pi gamma fc L_eff`` and its standard error, pN.
    corner_frequency_hz, corner_frequency_se_hz : float
        Corner frequency ``fc``, Hz.
    diffusion_nm2_per_s, diffusion_se_nm2_per_s : float
        Diffusion constant ``D``, nm^2/s (fixed, se 0, with ``fixed_drag``).
    drag_pN_s_per_nm, drag_se_pN_s_per_nm : float
        Drag coefficient ``gamma = kB T / D``, pN s/nm.
    stiffness_pN_per_nm, stiffness_se_pN_per_nm : float
        Lateral trap stiffness ``k = 2 pi gamma fc``, pN/nm.
    variance_nm2 : float
        Variance of the detrended trace as measured, nm^2.
    model_variance_nm2 : float
        Fitted variance of the bead itself, ``kB T / k``, nm^2.
    blur_factor : float
        ``S(2 pi fc W)``: predicted ratio of measured to true variance.
    force_variance_pN : float
        Equipartition force from the measured variance, ``kB T L_eff / variance_nm2``, pN
        (biased, for comparison).
    expected_drag_pN_s_per_nm : float or None
        Stokes drag with Faxén's wall correction from ``bead_radius_nm`` (None without radius):
        a consistency check of the fitted drag.
    extension_nm, effective_length_nm : float
        Tether extension and pendulum length, nm.
    direction : str
        "perpendicular" or "parallel".
    temperature_K, frame_rate_hz, exposure_s : float
        Conditions of the measurement.
    fixed_drag : bool
        Whether ``D`` was fixed from the bead radius and viscosity.
    n_frames : int
        Frames used (after trimming leading/trailing NaN).
    n_interpolated : int
        Interior NaN frames filled by linear interpolation.
    frequency_range_hz : tuple of float
        Lowest and highest periodogram frequency used in the fit, Hz.
    frequency_hz, psd_nm2_per_hz, psd_se_nm2_per_hz, model_nm2_per_hz : ndarray of shape (m,)
        Block-averaged spectrum for plotting: block mean frequency, Hz; mean periodogram and
        its standard error (mean / sqrt(bins)), nm^2/Hz; mean model, nm^2/Hz.
    block_bins : ndarray of int64, shape (m,)
        Number of periodogram bins (spacing ``fs / n_frames``) in each block.
    """

    force_pN: float
    force_se_pN: float
    corner_frequency_hz: float
    corner_frequency_se_hz: float
    diffusion_nm2_per_s: float
    diffusion_se_nm2_per_s: float
    drag_pN_s_per_nm: float
    drag_se_pN_s_per_nm: float
    stiffness_pN_per_nm: float
    stiffness_se_pN_per_nm: float
    variance_nm2: float
    model_variance_nm2: float
    blur_factor: float
    force_variance_pN: float
    expected_drag_pN_s_per_nm: float | None
    extension_nm: float
    effective_length_nm: float
    direction: str
    temperature_K: float
    frame_rate_hz: float
    exposure_s: float
    fixed_drag: bool
    n_frames: int
    n_interpolated: int
    frequency_range_hz: tuple[float, float]
    frequency_hz: np.ndarray = field(repr=False)
    psd_nm2_per_hz: np.ndarray = field(repr=False)
    psd_se_nm2_per_hz: np.ndarray = field(repr=False)
    model_nm2_per_hz: np.ndarray = field(repr=False)
    block_bins: np.ndarray = field(repr=False)

    def summary(self) -> dict[str, float | int | str | bool | None]:
        """Return the scalar fields as a dict (for tables and logs)."""
        skip = {
            "frequency_hz",
            "psd_nm2_per_hz",
            "psd_se_nm2_per_hz",
            "model_nm2_per_hz",
            "block_bins",
        }
        return {k: v for k, v in self.__dict__.items() if k not in skip}


def _fill_nans(xp: Any, x: Any, nan_policy: str) -> tuple[Any, int]:
    """Trim leading/trailing NaN frames and linearly interpolate interior ones."""
    finite = xp.isfinite(x)
    n_finite = int(xp.count_nonzero(finite))
    if n_finite == x.shape[0]:
        return x, 0
    if nan_policy == "raise":
        raise ValueError(
            f"x_nm holds {x.shape[0] - n_finite} NaN/inf frames; pass nan_policy='interpolate' "
            "to fill them"
        )
    if n_finite == 0:
        raise ValueError("x_nm holds no finite frame")
    n_total = int(x.shape[0])
    idx = xp.flatnonzero(finite)
    first, last = int(idx[0]), int(idx[-1])
    x = x[first : last + 1]
    finite = finite[first : last + 1]
    idx = idx - first
    n_missing = int(x.shape[0] - idx.shape[0])
    if n_missing:
        t = xp.arange(x.shape[0], dtype=xp.float64)
        x = xp.where(finite, x, xp.interp(t, t[idx], x[idx]))
        fraction = n_missing / x.shape[0]
        if fraction > 0.05:
            warnings.warn(
                f"x_nm: {n_missing} of {x.shape[0]} frames ({fraction:.0%}) were NaN and "
                "interpolated; the spectrum (and force) is biased by the filled gaps",
                UserWarning,
                stacklevel=3,
            )
        logger.info("interpolated %d NaN frames of %d", n_missing, x.shape[0])
    n_trimmed = n_total - int(x.shape[0])
    if n_trimmed:
        logger.info("dropped %d leading/trailing NaN frames", n_trimmed)
    return x, n_missing


def _log_blocks(
    f: np.ndarray, p: np.ndarray, m: np.ndarray, n_blocks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Average periodogram bins in logarithmically spaced frequency blocks."""
    edges = np.geomspace(f[0], f[-1] * (1.0 + 1e-12), n_blocks + 1)
    which = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, n_blocks - 1)
    counts = np.bincount(which, minlength=n_blocks).astype(np.float64)
    keep = counts > 0
    mean = [
        np.bincount(which, weights=v, minlength=n_blocks)[keep] / counts[keep] for v in (f, p, m)
    ]
    return mean[0], mean[1], mean[1] / np.sqrt(counts[keep]), mean[2], counts[keep].astype(np.int64)


def fit_force_spectrum(
    x_nm: Any,
    extension_nm: float,
    *,
    frame_rate_hz: float,
    exposure_s: float | None = None,
    bead_radius_nm: float | None = None,
    viscosity_pa_s: float = 0.89e-3,
    temperature_K: float = 296.15,
    direction: Direction = "perpendicular",
    fix_drag: bool = False,
    wall_correction: bool = True,
    detrend: Detrend = "linear",
    nan_policy: Literal["interpolate", "raise"] = "interpolate",
    f_min_hz: float | None = None,
    f_max_hz: float | None = None,
    n_blocks: int = 60,
) -> ForceFit:
    """Force from the power spectrum of a bead's lateral fluctuations.

    The one-sided periodogram ``P_k = 2 |X_k|^2 / (N fs)`` of the detrended trace (frequencies
    ``k fs / N``, DC and Nyquist bins left out) is fitted with :func:`camera_psd`, the exact
    spectrum of the exposure-averaged, sampled OU process, by maximum likelihood: each ``P_k``
    is exponentially distributed about the model, so ``sum_k ln M_k + P_k / M_k`` is minimised
    (Nørrelykke & Flyvbjerg 2010). The model is linear in ``D``, whose optimum is closed-form, so
    the search is one-dimensional in ``ln fc`` (grid, then Brent). With ``fix_drag`` the
    diffusion constant is fixed to ``kB T / gamma`` from the bead radius and viscosity and only
    ``fc`` is fitted (useful when ``fc`` exceeds the frame rate, where ``fc`` and ``D`` cannot be
    told apart). The force is ``F = 2 pi gamma fc L_eff`` with ``gamma = kB T / D``
    (te Velthuis et al. 2010; Lansdorp & Saleh 2012). A moving-average detrend is part of the
    model (its transfer function multiplies the PSD), so it does not bias the fit.

    Parameters
    ----------
    x_nm : ndarray of shape (n_frames,)
        Lateral bead position, nm, one value per frame at a constant frame rate (NumPy or CuPy;
        the periodogram is computed on the input's device, the fit on the CPU).
    extension_nm : float
        Tether extension ``L``, nm, > 0.
    frame_rate_hz : float
        Camera frame rate ``fs``, Hz.
    exposure_s : float, optional
        Exposure time ``W``, s, ``0 <= W <= 1/fs`` (default ``1/fs``).
    bead_radius_nm : float, optional
        Bead radius ``R``, nm: needed for ``direction="parallel"`` and ``fix_drag``; otherwise
        used only for :attr:`ForceFit.expected_drag_pN_s_per_nm`.
    viscosity_pa_s : float
        Viscosity, Pa s (default 0.89e-3, water at 25 C).
    temperature_K : float
        Temperature, K (default 296.15).
    direction : {"perpendicular", "parallel"}
        Direction of ``x`` relative to the magnetic field (see :func:`effective_length`).
    fix_drag : bool
        Fix ``D`` from ``bead_radius_nm`` and ``viscosity_pa_s`` instead of fitting it.
    wall_correction : bool
        Apply Faxén's correction (wall distance ``L + R``) to the expected/fixed drag.
    detrend : {"mean", "linear"} or int
        Drift removal: the mean, a least-squares line (default), or a centred moving average of
        this many frames (odd), whose effect is included in the model; frequencies below
        ``fs / window`` are then left out of the fit unless ``f_min_hz`` is given (the window
        must be much longer than ``1 / fc``).
    nan_policy : {"interpolate", "raise"}
        NaN frames: leading and trailing ones are dropped and interior ones linearly
        interpolated (default; a warning is issued above 5 % filled), or raise ``ValueError``.
    f_min_hz, f_max_hz : float, optional
        Frequency range of the fit, Hz (default: all bins above 0, or above ``fs / window``
        for a moving-average detrend, and below ``fs/2``).
    n_blocks : int
        Number of logarithmic frequency blocks of the returned plotting spectrum (default 60).

    Returns
    -------
    ForceFit
        Force, corner frequency, diffusion, drag, stiffness with standard errors, the variance
        method's force, and the spectrum for plotting.

    Raises
    ------
    ShapeError
        If ``x_nm`` is not 1-D.
    ValueError
        For fewer than 64 frames, too few frequency bins in range, NaN with
        ``nan_policy="raise"``, or invalid parameters (each error names the argument).
    """
    from scipy import optimize

    xp, x = _as_trace(x_nm, "x_nm")
    fs = _positive_scalar(frame_rate_hz, "frame_rate_hz")
    w = _check_exposure(exposure_s, fs)
    length = effective_length(extension_nm, direction=direction, bead_radius_nm=bead_radius_nm)
    kbt = _kbt(temperature_K)
    mode = _check_detrend(detrend)
    if nan_policy not in ("interpolate", "raise"):
        raise ValueError(f"nan_policy must be 'interpolate' or 'raise', got {nan_policy!r}")
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int | np.integer) or n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive integer, got {n_blocks!r}")
    expected_drag = None
    if bead_radius_nm is not None:
        radius = _positive_scalar(bead_radius_nm, "bead_radius_nm")
        height = float(extension_nm) + radius if wall_correction else None
        expected_drag = drag_coefficient(radius, viscosity_pa_s=viscosity_pa_s, height_nm=height)
    if fix_drag and expected_drag is None:
        raise ValueError("fix_drag=True needs bead_radius_nm (and viscosity_pa_s) to fix the drag")

    x, n_filled = _fill_nans(xp, x, nan_policy)
    n = int(x.shape[0])
    if n < _MIN_FRAMES_SPECTRUM:
        raise ValueError(
            f"x_nm has {n} usable frames; the spectral fit needs at least {_MIN_FRAMES_SPECTRUM}"
        )
    t = xp.arange(n, dtype=xp.float64)
    resid = _detrend(xp, x, t, mode)
    variance = float(xp.mean(resid * resid))
    if not variance > 0.0:
        raise ValueError("x_nm has zero variance after detrending; no force can be computed")
    spec = fft(xp).rfft(resid)
    k_max = (n - 1) // 2  # last bin below Nyquist
    power = to_numpy(spec.real[1 : k_max + 1] ** 2 + spec.imag[1 : k_max + 1] ** 2)
    psd = power * (2.0 / (n * fs))
    freq = np.arange(1, k_max + 1, dtype=np.float64) * (fs / n)
    if f_min_hz is not None:
        lo = _positive_scalar(f_min_hz, "f_min_hz", allow_zero=True)
    elif isinstance(mode, int):
        # below fs / window the filter's notch is buried in periodogram leakage: leave it out
        lo = fs / mode
    else:
        lo = freq[0]
    hi = freq[-1] if f_max_hz is None else _positive_scalar(f_max_hz, "f_max_hz")
    sel = (freq >= lo) & (freq <= hi)
    if int(sel.sum()) < 16:
        raise ValueError(
            f"only {int(sel.sum())} periodogram bins lie in [f_min_hz, f_max_hz] = [{lo:g}, "
            f"{hi:g}] Hz; widen the range or record more frames (at least 16 bins are needed)"
        )
    f_fit, p_fit = freq[sel], psd[sel]
    gain = _moving_average_gain(f_fit, fs, mode) if isinstance(mode, int) else 1.0
    n_bins = f_fit.size

    def unit_model(log_fc: float) -> np.ndarray:
        return _unit_psd(f_fit, math.exp(log_fc), fs, w) * gain

    fixed_d = kbt / expected_drag if fix_drag else None

    def nll(log_fc: float) -> float:
        g = unit_model(log_fc)
        if fixed_d is None:
            d_hat = float(np.mean(p_fit / g))
            return float(np.sum(np.log(g)) + n_bins * math.log(d_hat))
        m = fixed_d * g
        return float(np.sum(np.log(m) + p_fit / m))

    lo_fc, hi_fc = math.log(fs / n / 4.0), math.log(fs * 100.0)
    grid = np.linspace(lo_fc, hi_fc, 121)
    values = np.array([nll(v) for v in grid])
    i = int(np.argmin(values))
    bracket = (grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)])
    res = optimize.minimize_scalar(nll, bounds=bracket, method="bounded", options={"xatol": 1e-9})
    log_fc = float(res.x)
    if i in (0, grid.size - 1):
        msg = (
            f"the corner frequency is at the edge of the search range ({math.exp(log_fc):.3g} Hz"
            f" for fs = {fs:g} Hz and {n} frames); the force is unreliable"
            + ("" if fix_drag else ": consider fix_drag=True with bead_radius_nm")
        )
        warnings.warn(msg, UserWarning, stacklevel=2)
        logger.warning(msg)
    fc = math.exp(log_fc)
    g = unit_model(log_fc)
    d = fixed_d if fixed_d is not None else float(np.mean(p_fit / g))

    # Fisher information of (ln fc, ln D) for exponential periodogram values.
    step = 1e-5
    dlog = (np.log(unit_model(log_fc + step)) - np.log(unit_model(log_fc - step))) / (2 * step)
    if fixed_d is None:
        info = np.array([[np.sum(dlog**2), np.sum(dlog)], [np.sum(dlog), float(n_bins)]])
        try:
            cov = np.linalg.inv(info)
        except np.linalg.LinAlgError:
            cov = np.full((2, 2), np.inf)
    else:
        cov = np.array([[1.0 / np.sum(dlog**2), 0.0], [0.0, 0.0]])
    var_lfc, var_ld, cov_fd = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
    var_lk = max(var_lfc + var_ld - 2.0 * cov_fd, 0.0)

    drag = kbt / d
    stiffness = 2.0 * math.pi * drag * fc
    force = stiffness * length
    rel_k = math.sqrt(var_lk)
    model_full = d * _unit_psd(freq, fc, fs, w)
    if isinstance(mode, int):
        model_full = model_full * _moving_average_gain(freq, fs, mode)
    fb, pb, pse, mb, nb = _log_blocks(freq, psd, model_full, int(n_blocks))
    result = ForceFit(
        force_pN=force,
        force_se_pN=force * rel_k,
        corner_frequency_hz=fc,
        corner_frequency_se_hz=fc * math.sqrt(var_lfc),
        diffusion_nm2_per_s=d,
        diffusion_se_nm2_per_s=d * math.sqrt(var_ld),
        drag_pN_s_per_nm=drag,
        drag_se_pN_s_per_nm=drag * math.sqrt(var_ld),
        stiffness_pN_per_nm=stiffness,
        stiffness_se_pN_per_nm=stiffness * rel_k,
        variance_nm2=variance,
        model_variance_nm2=kbt / stiffness,
        blur_factor=float(_blur_s(np.float64(2.0 * math.pi * fc * w))),
        force_variance_pN=kbt * length / variance,
        expected_drag_pN_s_per_nm=expected_drag,
        extension_nm=float(extension_nm),
        effective_length_nm=length,
        direction=str(direction),
        temperature_K=float(temperature_K),
        frame_rate_hz=fs,
        exposure_s=w,
        fixed_drag=bool(fix_drag),
        n_frames=n,
        n_interpolated=n_filled,
        frequency_range_hz=(float(f_fit[0]), float(f_fit[-1])),
        frequency_hz=fb,
        psd_nm2_per_hz=pb,
        psd_se_nm2_per_hz=pse,
        model_nm2_per_hz=mb,
        block_bins=nb,
    )
    logger.info(
        "spectral force %.4g +- %.2g pN (fc %.4g Hz, D %.4g nm^2/s); variance method %.4g pN",
        force,
        result.force_se_pN,
        fc,
        d,
        result.force_variance_pN,
    )
    return result


# --------------------------------------------------------------------------------------------
# simulation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SimulatedFluctuations:
    """Camera-sampled bead fluctuations with their ground truth (:func:`simulate_fluctuations`).

    Attributes
    ----------
    x_nm : ndarray of shape (n_frames,)
        Exposure-averaged lateral position per frame, nm (on the requested device).
    force_pN, extension_nm, effective_length_nm : float
        The truth: force, pN; extension and pendulum length, nm.
    stiffness_pN_per_nm : float
        ``F / L_eff``, pN/nm.
    drag_pN_s_per_nm : float
        Drag coefficient used, pN s/nm.
    diffusion_nm2_per_s : float
        ``kB T / gamma``, nm^2/s.
    corner_frequency_hz : float
        ``k / (2 pi gamma)``, Hz.
    variance_nm2 : float
        True variance ``kB T / k``, nm^2.
    blurred_variance_nm2 : float
        Expected variance of the frames, ``S(2 pi fc W) kB T / k``, nm^2.
    frame_rate_hz, exposure_s : float
        Camera settings.
    """

    x_nm: Any = field(repr=False)
    force_pN: float
    extension_nm: float
    effective_length_nm: float
    stiffness_pN_per_nm: float
    drag_pN_s_per_nm: float
    diffusion_nm2_per_s: float
    corner_frequency_hz: float
    variance_nm2: float
    blurred_variance_nm2: float
    frame_rate_hz: float
    exposure_s: float


def simulate_fluctuations(
    force_pN: float,
    extension_nm: float,
    *,
    frame_rate_hz: float,
    n_frames: int,
    exposure_s: float | None = None,
    bead_radius_nm: float = 500.0,
    viscosity_pa_s: float = 0.89e-3,
    temperature_K: float = 296.15,
    direction: Direction = "perpendicular",
    wall_correction: bool = True,
    drift_nm_per_s: float = 0.0,
    seed: int | np.random.Generator | None = None,
    device: str = "cpu",
) -> SimulatedFluctuations:
    """Simulate what a camera records of a tethered bead's lateral Brownian motion.

    The bead is an OU process, ``dx = -(k / gamma) x dt + sqrt(2 D) dW`` with ``k = F / L_eff``,
    ``gamma`` the Stokes drag (with Faxén's wall correction at height ``L + R`` unless
    ``wall_correction=False``) and ``D = kB T / gamma``, started in equilibrium. Each frame
    ``n`` records the average of ``x`` over the exposure ``[n / fs, n / fs + W]``. The
    simulation is exact at any frame rate, with no fine time step: over each exposure the
    end position and the time integral of ``x`` are drawn jointly from their exact Gaussian
    transition law, and the dead time ``1/fs - W`` is an exact OU step; the frame-to-frame
    recursion is one linear filter over all frames (vectorized).

    Parameters
    ----------
    force_pN : float
        Force ``F``, pN, > 0.
    extension_nm : float
        Tether extension ``L``, nm, > 0.
    frame_rate_hz : float
        Frame rate ``fs``, Hz.
    n_frames : int
        Number of frames (>= 2).
    exposure_s : float, optional
        Exposure ``W``, s, ``0 <= W <= 1/fs`` (default ``1/fs``; 0 = instantaneous sampling).
    bead_radius_nm : float
        Bead radius ``R``, nm (default 500).
    viscosity_pa_s : float
        Viscosity, Pa s (default 0.89e-3).
    temperature_K : float
        Temperature, K (default 296.15).
    direction : {"perpendicular", "parallel"}
        Direction of ``x`` relative to the field (pendulum length ``L`` or ``L + R``).
    wall_correction : bool
        Apply Faxén's correction to the drag (default True).
    drift_nm_per_s : float
        Linear drift added to the frames, nm/s (default 0), for testing drift removal.
    seed : int or numpy.random.Generator, optional
        Random seed or generator.
    device : {"cpu", "gpu", "auto"}
        Where the returned ``x_nm`` lives (simulated with NumPy, then moved).

    Returns
    -------
    SimulatedFluctuations
        ``x_nm`` of shape (n_frames,), nm, and the ground truth.
    """
    from scipy.signal import lfilter

    force = _positive_scalar(force_pN, "force_pN")
    length = effective_length(extension_nm, direction=direction, bead_radius_nm=bead_radius_nm)
    fs = _positive_scalar(frame_rate_hz, "frame_rate_hz")
    w = _check_exposure(exposure_s, fs)
    if isinstance(n_frames, bool) or not isinstance(n_frames, int | np.integer) or n_frames < 2:
        raise ValueError(f"n_frames must be an integer >= 2, got {n_frames!r}")
    radius = _positive_scalar(bead_radius_nm, "bead_radius_nm")
    kbt = _kbt(temperature_K)
    drift = float(drift_nm_per_s)
    if not math.isfinite(drift):
        raise ValueError(f"drift_nm_per_s must be finite, got {drift_nm_per_s!r}")
    height = float(extension_nm) + radius if wall_correction else None
    gamma = drag_coefficient(radius, viscosity_pa_s=viscosity_pa_s, height_nm=height)
    k = force / length
    theta = k / gamma  # 1 / tau, 1/s
    sigma2 = kbt / k
    rng = np.random.default_rng(seed)
    n = int(n_frames)
    dt = 1.0 / fs

    z = rng.standard_normal((3, n))
    a = theta * w  # exposure in units of tau
    if a > 0.0:
        rho_w = math.exp(-a)
        v1 = -math.expm1(-2.0 * a)  # var of end position / sigma2
        c12 = math.expm1(-a) ** 2 / a  # cov(end, mean over exposure) / sigma2
        if a < 1e-3:  # var of (integral * theta) / sigma2 / 2, by series
            q = a**3 / 3.0 - a**4 / 4.0 + 7.0 * a**5 / 60.0 - a**6 / 24.0
        else:
            q = a + 2.0 * math.expm1(-a) - 0.5 * math.expm1(-2.0 * a)
        v2 = 2.0 * q / a**2  # var of the mean over the exposure / sigma2
        l21 = c12 / math.sqrt(v1)
        l22 = math.sqrt(max(v2 - l21**2, 0.0))
        xi_end = math.sqrt(v1) * z[0]
        xi_mean = l21 * z[0] + l22 * z[1]
        gain_mean = -math.expm1(-a) / a  # E[mean over exposure | start] / start
    else:
        rho_w, xi_end, xi_mean, gain_mean = 1.0, np.zeros(n), np.zeros(n), 1.0
    rho_d = math.exp(-theta * (dt - w))
    xi_dead = math.sqrt(-math.expm1(-2.0 * theta * (dt - w))) * z[2]
    # start of exposure n + 1 from start of exposure n: one AR(1) filter over all frames
    innov = np.empty(n)
    innov[0] = rng.standard_normal()  # equilibrium start
    innov[1:] = rho_d * xi_end[:-1] + xi_dead[:-1]
    start = lfilter([1.0], [1.0, -rho_w * rho_d], innov)
    x = math.sqrt(sigma2) * (gain_mean * start + xi_mean)
    if drift:
        x = x + drift * (np.arange(n) * dt + 0.5 * w)
    blurred = sigma2 * float(_blur_s(np.float64(a)))
    return SimulatedFluctuations(
        x_nm=asarray_on(x, device),
        force_pN=force,
        extension_nm=float(extension_nm),
        effective_length_nm=length,
        stiffness_pN_per_nm=k,
        drag_pN_s_per_nm=gamma,
        diffusion_nm2_per_s=kbt / gamma,
        corner_frequency_hz=theta / (2.0 * math.pi),
        variance_nm2=sigma2,
        blurred_variance_nm2=blurred,
        frame_rate_hz=fs,
        exposure_s=w,
    )


# --------------------------------------------------------------------------------------------
# track tables
# --------------------------------------------------------------------------------------------


def forces_from_table(
    table: Any,
    *,
    pixel_size_nm: float,
    frame_rate_hz: float,
    extension_nm: float | Mapping[int, float] | None = None,
    z_surface_nm: float | None = None,
    field_axis: Literal["x", "y"] = "x",
    exposure_s: float | None = None,
    bead_radius_nm: float | None = None,
    viscosity_pa_s: float = 0.89e-3,
    temperature_K: float = 296.15,
    fix_drag: bool = False,
    detrend: Detrend = "linear",
    min_quality: float | None = None,
) -> Any:
    """Spectral force of every bead of a track table, along x and along y.

    Parameters
    ----------
    table : pandas.DataFrame
        Track table with columns ``frame, bead, x, y, z`` (and ``quality`` if ``min_quality``
        is used): ``x, y`` in px, ``z`` in nm (see :func:`stacklab.beads.track_movie`). Missing
        frames of a bead (and rows below ``min_quality``) become NaN and are interpolated.
    pixel_size_nm : float
        Camera pixel size in the sample plane, nm/px.
    frame_rate_hz : float
        Frame rate, Hz.
    extension_nm : float or mapping bead -> float, optional
        Tether extension, nm. Default: ``median(z) - z_surface_nm`` per bead.
    z_surface_nm : float, optional
        ``z`` of a bead touching the surface (tether length 0), nm; needed without
        ``extension_nm``.
    field_axis : {"x", "y"}
        Camera axis along which the magnetic field points: fluctuations along it are "parallel"
        (pendulum ``L + R``, needs ``bead_radius_nm``), the other axis "perpendicular".
    exposure_s, bead_radius_nm, viscosity_pa_s, temperature_K, fix_drag, detrend
        As in :func:`fit_force_spectrum`.
    min_quality : float, optional
        Rows with ``quality`` below this are treated as lost frames.

    Returns
    -------
    pandas.DataFrame
        One row per bead and axis: ``bead, axis, direction, extension_nm, force_pN,
        force_se_pN, corner_frequency_hz, force_variance_pN, n_frames``. Axes whose fit failed
        (too few frames) hold NaN, with the reason logged.
    """
    import pandas as pd

    needed = {"frame", "bead", "x", "y", "z"} | ({"quality"} if min_quality is not None else set())
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"table lacks the column(s) {sorted(missing)}")
    px = _positive_scalar(pixel_size_nm, "pixel_size_nm")
    if field_axis not in ("x", "y"):
        raise ValueError(f"field_axis must be 'x' or 'y', got {field_axis!r}")
    if extension_nm is None and z_surface_nm is None:
        raise ValueError("give extension_nm or z_surface_nm (to compute median(z) - z_surface_nm)")
    rows = []
    for bead, group in table.groupby("bead", sort=True):
        group = group.sort_values("frame")
        if min_quality is not None:
            group = group.assign(
                x=group.x.where(group.quality >= min_quality),
                y=group.y.where(group.quality >= min_quality),
                z=group.z.where(group.quality >= min_quality),
            )
        frames = group.frame.to_numpy().astype(np.int64)
        full = np.arange(frames.min(), frames.max() + 1)
        g = group.set_index("frame").reindex(full)
        if extension_nm is None:
            ext = float(np.nanmedian(g.z.to_numpy(dtype=np.float64))) - float(z_surface_nm)
        elif isinstance(extension_nm, Mapping):
            ext = float(extension_nm[bead])
        else:
            ext = float(extension_nm)
        if not ext > 0:
            raise ValueError(
                f"bead {bead}: extension_nm = {ext:g} nm must be > 0 (check z_surface_nm and the "
                "sign of z)"
            )
        for axis in ("x", "y"):
            direction = "parallel" if axis == field_axis else "perpendicular"
            trace = g[axis].to_numpy(dtype=np.float64) * px
            row = {"bead": bead, "axis": axis, "direction": direction, "extension_nm": ext}
            try:
                fit = fit_force_spectrum(
                    trace,
                    ext,
                    frame_rate_hz=frame_rate_hz,
                    exposure_s=exposure_s,
                    bead_radius_nm=bead_radius_nm,
                    viscosity_pa_s=viscosity_pa_s,
                    temperature_K=temperature_K,
                    direction=direction,
                    fix_drag=fix_drag,
                    detrend=detrend,
                )
            except ValueError as err:
                if direction == "parallel" and bead_radius_nm is None:
                    raise
                logger.warning("bead %s, axis %s: no force (%s)", bead, axis, err)
                row |= {
                    "force_pN": np.nan,
                    "force_se_pN": np.nan,
                    "corner_frequency_hz": np.nan,
                    "force_variance_pN": np.nan,
                    "n_frames": int(np.isfinite(trace).sum()),
                }
            else:
                row |= {
                    "force_pN": fit.force_pN,
                    "force_se_pN": fit.force_se_pN,
                    "corner_frequency_hz": fit.corner_frequency_hz,
                    "force_variance_pN": fit.force_variance_pN,
                    "n_frames": fit.n_frames,
                }
            rows.append(row)
    return pd.DataFrame(rows)
