"""Diffraction backgrounds: polar-elliptical median background with iterative masking.

:func:`polar_transform` samples an image on a polar grid around an ellipse
``(row0, col0, a, b, theta)``: the sample at radius ``r`` and angle ``phi`` is at

``row = row0 + r cos(phi) cos(theta) - r (b/a) sin(phi) sin(theta)``,
``col = col0 + r cos(phi) sin(theta) + r (b/a) sin(phi) cos(theta)``

(bilinear interpolation; ``theta`` is measured from the row axis toward the column axis and
``r`` along the ``a`` semi-axis). :func:`polar_background_1d` takes the median over angle of
every radius, masks samples brighter than ``min_relative_threshold`` times that background
(Bragg spots, streaks), and **recomputes** the median with the updated mask, ``n_iter`` times
(py4DSTEM computes the median once, before its masking loop, so its ``maskUpdateIter`` never
changes the background). :func:`polar_background_2d` turns the 1-D background back into an
image.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backend
from ..errors import ShapeError

__all__ = [
    "PolarBackground",
    "elliptical_radius",
    "polar_background_1d",
    "polar_background_2d",
    "polar_transform",
    "subtract_polar_background",
]

logger = logging.getLogger(__name__)


def _ellipse(ellipse: Any) -> tuple[float, float, float, float, float]:
    try:
        r0, c0, a, b, theta = (float(v) for v in ellipse)
    except (TypeError, ValueError):
        raise ValueError(f"ellipse must be (row0, col0, a, b, theta), got {ellipse!r}") from None
    if not all(math.isfinite(v) for v in (r0, c0, a, b, theta)) or a <= 0 or b <= 0:
        raise ValueError(f"ellipse must be finite with a, b > 0, got {ellipse!r}")
    return r0, c0, a, b, theta


def _image(image: Any) -> np.ndarray:
    img = np.asarray(backend.to_numpy(image), dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 2:
        raise ShapeError(f"image must be a 2-D array of at least 2x2 pixels, got {img.shape}")
    return img


def elliptical_radius(shape: tuple[int, int], ellipse: Any) -> np.ndarray:
    """Elliptical radius (px along the ``a`` axis) of every pixel of an image of ``shape``."""
    r0, c0, a, b, theta = _ellipse(ellipse)
    yy, xx = np.indices(tuple(int(s) for s in shape), dtype=np.float64)
    dr, dc = yy - r0, xx - c0
    u = dr * math.cos(theta) + dc * math.sin(theta)
    v = -dr * math.sin(theta) + dc * math.cos(theta)
    return np.sqrt(u**2 + (v * a / b) ** 2)


def polar_transform(
    image: Any,
    ellipse: Any,
    *,
    dr: float = 1.0,
    dphi: float = math.radians(2.0),
    r_max: float | None = None,
    mask: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample an image on an elliptical polar grid.

    Parameters
    ----------
    image : ndarray of shape (H, W)
        The image.
    ellipse : (row0, col0, a, b, theta)
        Centre (px), semi-axes (only ``b / a`` matters) and angle (rad) of the ellipse.
    dr : float
        Radial bin width, px; bin centres at ``dr/2, 3 dr/2, ...``.
    dphi : float
        Angular bin width, rad; centres at ``-pi + dphi/2, ...``.
    r_max : float, optional
        Largest radius (default: the farthest image corner).
    mask : bool ndarray of shape (H, W), optional
        Pixels to exclude (True); a sample is excluded when any of its 4 bilinear neighbours is.

    Returns
    -------
    polar : ndarray of float64, shape (n_phi, n_r)
        Samples, axes (phi, r).
    invalid : ndarray of bool, shape (n_phi, n_r)
        True where the sample lies outside the image (or touches ``mask``).
    r_bins : ndarray of shape (n_r,)
        Radii of the columns, px.
    phi_bins : ndarray of shape (n_phi,)
        Angles of the rows, rad.
    """
    img = _image(image)
    r0, c0, a, b, theta = _ellipse(ellipse)
    h, w = img.shape
    if not (dr > 0 and dphi > 0):
        raise ValueError("dr and dphi must be > 0")
    if r_max is None:
        rad = elliptical_radius(img.shape, ellipse)
        r_max = float(max(rad[0, 0], rad[0, -1], rad[-1, 0], rad[-1, -1]))
    r_bins = np.arange(dr / 2, r_max + dr / 2, dr)
    phi_bins = np.arange(-math.pi + dphi / 2, math.pi, dphi)
    rr, pp = r_bins[None, :], phi_bins[:, None]
    rows = r0 + rr * np.cos(pp) * math.cos(theta) - rr * (b / a) * np.sin(pp) * math.sin(theta)
    cols = c0 + rr * np.cos(pp) * math.sin(theta) + rr * (b / a) * np.sin(pp) * math.cos(theta)
    invalid = (rows < 0) | (rows > h - 1) | (cols < 0) | (cols > w - 1)
    rc = np.clip(rows, 0, h - 1)
    cc = np.clip(cols, 0, w - 1)
    i0 = np.clip(np.floor(rc).astype(np.int64), 0, h - 2)
    j0 = np.clip(np.floor(cc).astype(np.int64), 0, w - 2)
    fr, fc = rc - i0, cc - j0
    polar = (
        img[i0, j0] * (1 - fr) * (1 - fc)
        + img[i0 + 1, j0] * fr * (1 - fc)
        + img[i0, j0 + 1] * (1 - fr) * fc
        + img[i0 + 1, j0 + 1] * fr * fc
    )
    if mask is not None:
        m = np.asarray(backend.to_numpy(mask), dtype=bool)
        if m.shape != img.shape:
            raise ShapeError(f"mask must have the image shape {img.shape}, got {m.shape}")
        invalid |= m[i0, j0] | m[i0 + 1, j0] | m[i0, j0 + 1] | m[i0 + 1, j0 + 1]
    invalid |= ~np.isfinite(polar)
    return polar, invalid, r_bins, phi_bins


@dataclass(frozen=True, eq=False)
class PolarBackground:
    """Result of :func:`polar_background_1d`.

    Attributes
    ----------
    background : ndarray of float64, shape (n_r,)
        Median background at each radius.
    r_bins : ndarray of float64, shape (n_r,)
        Radii, px along the ``a`` axis.
    polar : ndarray of float64, shape (n_phi, n_r)
        The polar samples.
    mask : ndarray of bool, shape (n_phi, n_r)
        Samples excluded from the final median (outside the image or masked as too bright).
    ellipse : tuple
        ``(row0, col0, a, b, theta)``.
    n_iter : int
        Mask updates performed (stops early when the mask no longer changes).
    """

    background: np.ndarray
    r_bins: np.ndarray
    polar: np.ndarray
    mask: np.ndarray
    ellipse: tuple[float, float, float, float, float]
    n_iter: int

    def image(self, shape: tuple[int, int]) -> np.ndarray:
        """The 2-D background of an image of ``shape`` (see :func:`polar_background_2d`)."""
        return polar_background_2d(shape, self.background, self.r_bins, self.ellipse)


def _masked_median(polar: np.ndarray, mask: np.ndarray) -> np.ndarray:
    work = np.where(mask, np.nan, polar)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(work, axis=0)


def polar_background_1d(
    image: Any,
    ellipse: Any,
    *,
    n_iter: int = 3,
    min_relative_threshold: float = 4.0,
    smoothing: tuple[int, int] | None = None,
    smooth_log: bool = True,
    min_value: float = 1e-3,
    dr: float = 1.0,
    dphi: float = math.radians(2.0),
    mask: Any = None,
) -> PolarBackground:
    """Median polar-elliptical background of a diffraction pattern, with iterative masking.

    Parameters
    ----------
    image : ndarray of shape (H, W)
        Usually a mean diffraction pattern.
    ellipse : (row0, col0, a, b, theta)
        See :func:`polar_transform`.
    n_iter : int
        Mask updates: samples above ``min_relative_threshold * background(r)`` are masked and the
        median is recomputed from the remaining samples; 0 gives the plain median.
    min_relative_threshold : float
        See ``n_iter``.
    smoothing : (window, polyorder), optional
        Savitzky-Golay smoothing of the final background (odd window > polyorder).
    smooth_log : bool
        Smooth ``log(max(background, min_value))`` and exponentiate (default).
    min_value : float
        Floor of the background (also before taking the logarithm).
    dr, dphi, mask
        See :func:`polar_transform`.

    Returns
    -------
    PolarBackground
        Radii holding no valid sample at all are dropped from the end; isolated empty radii
        are filled by linear interpolation.
    """
    if isinstance(n_iter, bool) or not isinstance(n_iter, int | np.integer) or n_iter < 0:
        raise ValueError(f"n_iter must be an integer >= 0, got {n_iter!r}")
    if not (math.isfinite(min_relative_threshold) and min_relative_threshold > 0):
        raise ValueError(f"min_relative_threshold must be > 0, got {min_relative_threshold!r}")
    if smoothing is not None:
        window, order = (int(v) for v in smoothing)
        if window < 3 or window % 2 == 0 or order >= window or order < 0:
            raise ValueError(
                f"smoothing must be (odd window >= 3, polyorder < window), got {smoothing!r}"
            )
    el = _ellipse(ellipse)
    polar, geometric, r_bins, _ = polar_transform(image, el, dr=dr, dphi=dphi, mask=mask)
    has_data = ~np.all(geometric, axis=0)
    if not has_data.any():
        raise ValueError("the ellipse centre is so far outside the image that no sample is valid")
    last = int(np.flatnonzero(has_data)[-1]) + 1
    polar, geometric, r_bins = polar[:, :last], geometric[:, :last], r_bins[:last]
    current = geometric.copy()
    bg = _masked_median(polar, current)
    done = 0
    for _ in range(n_iter):
        new = geometric | (polar > min_relative_threshold * np.maximum(bg, min_value)[None, :])
        done += 1
        if np.array_equal(new, current):
            break
        current = new
        bg = _masked_median(polar, current)
    empty = ~np.isfinite(bg)
    if empty.any():
        good = np.flatnonzero(~empty)
        bg = bg.copy()
        bg[empty] = np.interp(np.flatnonzero(empty), good, bg[good])
    bg = np.maximum(bg, min_value)
    if smoothing is not None and bg.size >= smoothing[0]:
        from scipy.signal import savgol_filter

        if smooth_log:
            bg = np.exp(savgol_filter(np.log(bg), smoothing[0], smoothing[1]))
        else:
            bg = np.maximum(savgol_filter(bg, smoothing[0], smoothing[1]), min_value)
    return PolarBackground(bg, r_bins, polar, current, el, done)


def polar_background_2d(
    shape: tuple[int, int], background: Any, r_bins: Any, ellipse: Any
) -> np.ndarray:
    """Image of a 1-D radial background at each pixel's elliptical radius.

    Linear interpolation in ``r_bins``, linear extrapolation beyond both ends.

    Returns
    -------
    ndarray of float64, shape ``shape``
    """
    bg = np.asarray(background, dtype=np.float64).ravel()
    rb = np.asarray(r_bins, dtype=np.float64).ravel()
    if bg.shape != rb.shape or bg.size < 2:
        raise ShapeError(
            f"background and r_bins must be 1-D of equal length >= 2, got {bg.shape}, {rb.shape}"
        )
    r = elliptical_radius(shape, ellipse)
    out = np.interp(r, rb, bg)
    lo, hi = r < rb[0], r > rb[-1]
    out[lo] = bg[0] + (r[lo] - rb[0]) * (bg[1] - bg[0]) / (rb[1] - rb[0])
    out[hi] = bg[-1] + (r[hi] - rb[-1]) * (bg[-1] - bg[-2]) / (rb[-1] - rb[-2])
    return out


def subtract_polar_background(
    image: Any, ellipse: Any, **kwargs: Any
) -> tuple[np.ndarray, PolarBackground]:
    """``image - background`` with the background of :func:`polar_background_1d` (kwargs)."""
    img = _image(image)
    res = polar_background_1d(img, ellipse, **kwargs)
    return img - res.image(img.shape), res
