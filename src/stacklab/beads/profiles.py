"""Radial intensity profiles of bead images at given sub-pixel centres, and FFT profiles.

A bead's radial profile is its z signature. Two estimators of the profile at radii
``r_j = j * bin_width`` (``j = 0 .. n_bins - 1``) about a centre ``(x, y)``:

* ``method="interp"`` (default): the mean of ``n_angles`` bilinear samples on the circle of
  radius ``r_j``. The samples move continuously with the centre, so the profile of a band-limited
  image barely depends on where the centre falls within a pixel; this is what gives the z lookup
  its nanometre precision.
* ``method="bin"``: the mean of the pixels whose centre lies nearest to ``r_j`` (annuli
  ``|r - r_j| <= bin_width / 2``), by :func:`stacklab.core.profiles.radial_profile`; magtrack's
  estimator. Annuli with no pixel are NaN.

Frames are ``(n_frames, rows, cols)``; ``x`` is the column, ``y`` the row, px.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np

from ..backend import call_numba, use_numba
from ..backend import fft as xp_fft
from ..core.profiles import bin_mean, radial_profile
from ..errors import ShapeError
from ._common import (
    as_frames,
    as_positions,
    default_max_radius,
    numba_kernels,
)
from .centers import _sample_quadrants_xp

__all__ = [
    "fft_profiles",
    "profile_angles",
    "profile_radii",
    "profile_weights",
    "radial_profiles",
]

logger = logging.getLogger(__name__)


def profile_radii(
    shape: tuple[int, ...], *, bin_width: float = 0.5, n_bins: int | None = None
) -> np.ndarray:
    """Radii ``j * bin_width`` of the profile samples, px.

    Parameters
    ----------
    shape : tuple
        Frame shape ``(rows, cols)`` (or any shape ending with it).
    bin_width : float
        Radial spacing, px (default 0.5).
    n_bins : int, optional
        Number of radii. Default: up to half the smaller frame side minus 3 px (29 px for 64 x 64
        frames), so that the circles stay inside the frame for beads up to 2 px off its centre.

    Returns
    -------
    ndarray of float64, shape (n_bins,)
    """
    if not (isinstance(bin_width, int | float | np.integer | np.floating)) or not (
        math.isfinite(bin_width) and bin_width > 0
    ):
        raise ValueError(f"bin_width must be a finite number > 0, got {bin_width!r}")
    if n_bins is None:
        n_bins = math.floor(default_max_radius(shape) / bin_width + 1e-9) + 1
    elif isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    return float(bin_width) * np.arange(int(n_bins), dtype=np.float64)


def profile_weights(radii: Any) -> np.ndarray:
    """Statistical weight of each profile sample: proportional to the radius.

    The number of independent pixels on a circle grows with its radius; the centre sample gets
    the weight of a half-step circle. Used by the z lookup and the symmetry score.

    Parameters
    ----------
    radii : ndarray of shape (n_bins,)
        px.

    Returns
    -------
    ndarray of float64, shape (n_bins,)
    """
    r = np.asarray(radii, dtype=np.float64)
    step = float(r[1] - r[0]) if r.size > 1 else 1.0
    return np.maximum(r, 0.5 * step)


def profile_angles(n_angles: int) -> tuple[np.ndarray, np.ndarray]:
    """Direction cosines (column, row) of ``n_angles`` samples per circle, quadrant by quadrant.

    Angles ``(j + 1/2) 2 pi / n_angles``; ``n_angles`` must be a multiple of 4 so that each
    quadrant holds ``n_angles / 4`` of them.

    Returns
    -------
    cos, sin : ndarray of float64, shape (n_angles,)
    """
    if isinstance(n_angles, bool) or not isinstance(n_angles, int | np.integer):
        raise ValueError(f"n_angles must be a positive multiple of 4, got {n_angles!r}")
    if n_angles < 4 or n_angles % 4:
        raise ValueError(f"n_angles must be a positive multiple of 4, got {n_angles}")
    theta = (np.arange(int(n_angles)) + 0.5) * (2.0 * np.pi / n_angles)
    return np.cos(theta), np.sin(theta)


def _profile_from_quadrants_xp(xp, q, weights):
    """Mean profile (n, n_r) and symmetry (n,) from quadrant profiles q (n, 4, n_r)."""
    prof = xp.mean(q, axis=1)
    w = xp.asarray(weights)
    pm = (prof @ w) / xp.sum(w)
    res = xp.sum(w[None, None, :] * (q - prof[:, None, :]) ** 2, axis=(1, 2))
    tot = xp.sum(w[None, None, :] * (q - pm[:, None, None]) ** 2, axis=(1, 2))
    sym = xp.where(tot > 0, 1.0 - res / xp.where(tot > 0, tot, 1.0), xp.nan)
    return prof, sym


def _interp_xp(xp, frames, x, y, radii, cos_a, sin_a, weights):
    good = xp.isfinite(x) & xp.isfinite(y)
    bx = xp.where(good, x, 0.0)
    by = xp.where(good, y, 0.0)
    q = _sample_quadrants_xp(xp, frames, bx, by, radii, cos_a, sin_a)
    prof, sym = _profile_from_quadrants_xp(xp, q, weights)
    return xp.where(good[:, None], prof, xp.nan), xp.where(good, sym, xp.nan)


def _fill_empty_bins(xp, prof):
    """Linear interpolation over NaN samples along the last axis (vectorized over rows)."""
    n, m = prof.shape
    valid = xp.isfinite(prof)
    if bool(xp.all(valid)):
        return prof
    prev = xp.full(n, -1, dtype=xp.int64)
    prev_idx = xp.empty((n, m), dtype=xp.int64)
    for j in range(m):
        prev = xp.where(valid[:, j], j, prev)
        prev_idx[:, j] = prev
    nxt = xp.full(n, m, dtype=xp.int64)
    next_idx = xp.empty((n, m), dtype=xp.int64)
    for j in range(m - 1, -1, -1):
        nxt = xp.where(valid[:, j], j, nxt)
        next_idx[:, j] = nxt
    rows = xp.arange(n)[:, None]
    cols = xp.arange(m)[None, :]
    has_p, has_n = prev_idx >= 0, next_idx < m
    vp = prof[rows, xp.clip(prev_idx, 0, m - 1)]
    vn = prof[rows, xp.clip(next_idx, 0, m - 1)]
    span = xp.where(has_p & has_n & (next_idx > prev_idx), next_idx - prev_idx, 1)
    t = (cols - prev_idx) / span
    both = vp + (vn - vp) * t
    filled = xp.where(has_p & has_n, both, xp.where(has_p, vp, vn))
    return xp.where(valid, prof, filled)


def radial_profiles(
    stack: Any,
    x: Any,
    y: Any,
    *,
    bin_width: float = 0.5,
    n_bins: int | None = None,
    method: Literal["interp", "bin"] = "interp",
    n_angles: int = 64,
    oversample: int = 1,
    return_symmetry: bool = False,
    fill_empty: bool = False,
    backend: Literal["auto", "numba", "xp"] = "auto",
) -> Any:
    """Radial intensity profile of every frame about its own sub-pixel centre.

    Parameters
    ----------
    stack : ndarray of shape (n_frames, rows, cols)
        Frames (NumPy or CuPy; integers widened to float32).
    x, y : float or ndarray of shape (n_frames,)
        Centre column and row, px. A NaN centre gives a NaN profile.
    bin_width : float
        Radial spacing of the samples, px (default 0.5).
    n_bins : int, optional
        Number of radii (default: see :func:`profile_radii`).
    method : {"interp", "bin"}
        Angular mean of bilinear samples (default) or pixel binning (see the module notes).
    n_angles : int
        Samples per circle for ``"interp"``, a multiple of 4 (default 64).
    oversample : int
        Sub-pixel oversampling of ``"bin"`` (see :func:`stacklab.core.profiles.radial_profile`).
    return_symmetry : bool
        Also return the four-quadrant symmetry score (``"interp"`` only): ``1 - sum_k,r w (Q_k -
        P)**2 / sum_k,r w (Q_k - mean P)**2`` with ``Q_k`` the profile of quadrant ``k``, ``P``
        their mean and ``w`` :func:`profile_weights`. It is 1 for a radially symmetric image about
        the centre, about 0 when the quadrants differ as much as the profile varies.
    fill_empty : bool
        ``"bin"`` only: replace empty annuli (NaN; possible near ``r = 0`` when no pixel centre
        lies within ``bin_width / 2`` of that radius) by linear interpolation between the nearest
        filled annuli (the nearest one at the ends). The z lookup needs complete profiles.
    backend : {"auto", "numba", "xp"}
        Kernel choice for NumPy data.

    Returns
    -------
    profiles : ndarray of float64, shape (n_frames, n_bins)
        Mean intensity at radius ``j * bin_width``; NaN rows for NaN centres or frames holding
        NaN.
    symmetry : ndarray of float64, shape (n_frames,)
        Only with ``return_symmetry=True``.

    Raises
    ------
    ValueError
        For a bad ``method``, ``bin_width``, ``n_bins`` or ``n_angles``.
    """
    if method not in ("interp", "bin"):
        raise ValueError(f"method must be 'interp' or 'bin', got {method!r}")
    xp, frames = as_frames(stack)
    n = frames.shape[0]
    x = as_positions(xp, x, "x", n)
    y = as_positions(xp, y, "y", n)
    radii = profile_radii(frames.shape, bin_width=bin_width, n_bins=n_bins)
    bad_frame = ~xp.all(xp.isfinite(frames), axis=(1, 2))
    if method == "bin":
        if return_symmetry:
            raise ValueError("return_symmetry needs method='interp'")
        good = xp.isfinite(x) & xp.isfinite(y)
        centre = xp.stack(
            [
                xp.where(good, y, (frames.shape[1] - 1) / 2.0),
                xp.where(good, x, (frames.shape[2] - 1) / 2.0),
            ],
            axis=1,
        )
        prof = radial_profile(
            frames,
            centre,
            n_bins=radii.size,
            bin_width=float(bin_width),
            oversample=oversample,
            rounding="nearest",
        ).astype(xp.float64)
        if fill_empty:
            prof = _fill_empty_bins(xp, prof)
        return xp.where((good & ~bad_frame)[:, None], prof, xp.nan)
    cos_a, sin_a = profile_angles(n_angles)
    weights = profile_weights(radii)
    if use_numba(xp, backend):
        prof, sym = call_numba(
            numba_kernels().polar_kernel, frames, x, y, radii, cos_a, sin_a, weights
        )
    else:
        prof, sym = _interp_xp(xp, frames, x, y, radii, cos_a, sin_a, weights)
    prof = xp.where(bad_frame[:, None], xp.nan, prof)
    sym = xp.where(bad_frame, xp.nan, sym)
    return (prof, sym) if return_symmetry else prof


def fft_profiles(
    stack: Any,
    x: Any = None,
    y: Any = None,
    *,
    oversample: int = 4,
    f_min: float = 0.0,
    f_max: float = 0.25,
    window_sigma: float | None = None,
) -> Any:
    """Radially averaged Fourier magnitude of every frame (a shift-insensitive z signature).

    Each frame is optionally multiplied by a Gaussian window centred on the bead, transformed
    with a real 2-D FFT, and the magnitudes of the half-plane samples at integer frequencies
    ``(k_row, k_col)`` (cycles per frame) are averaged in bins ``round(hypot(k_row, k_col) *
    oversample)`` (ties to even). The translation of the bead only changes the phase of the
    spectrum, so without a window the profile does not depend on the bead position up to edge
    effects.

    Parameters
    ----------
    stack : ndarray of shape (n_frames, size, size)
        Square frames (NumPy or CuPy). The input is not modified.
    x, y : float or ndarray of shape (n_frames,), optional
        Bead column and row, px: the centre of the Gaussian window. When both are None no window
        is applied.
    oversample : int
        Bins per frequency step (default 4).
    f_min, f_max : float
        Frequency range kept, cycles per pixel (0 to 0.5 = Nyquist): bins
        ``round(f_min * size * oversample)`` up to ``round(f_max * size * oversample) - 1``.
        Default 0 to 0.25.
    window_sigma : float, optional
        Width of the Gaussian window, px (default ``size / 6``).

    Returns
    -------
    ndarray of float64, shape (n_frames, n_bins)
        Mean magnitude per bin; bins that no integer frequency reaches are NaN.

    Raises
    ------
    ShapeError
        For non-square frames.
    ValueError
        For a bad ``oversample`` or frequency range, or only one of ``x``/``y``.
    """
    xp, frames = as_frames(stack)
    n, n_rows, n_cols = frames.shape
    if n_rows != n_cols:
        raise ShapeError(f"stack frames must be square for fft_profiles, got {n_rows} x {n_cols}")
    if isinstance(oversample, bool) or not isinstance(oversample, int | np.integer):
        raise ValueError(f"oversample must be an integer >= 1, got {oversample!r}")
    if oversample < 1:
        raise ValueError(f"oversample must be an integer >= 1, got {oversample}")
    if not (0.0 <= f_min < f_max) or not math.isfinite(f_max):
        raise ValueError(f"need 0 <= f_min < f_max, got f_min={f_min!r}, f_max={f_max!r}")
    if (x is None) != (y is None):
        raise ValueError("give both x and y (window centre) or neither")
    size = n_rows
    data = frames.astype(xp.float64)
    if x is not None:
        xs = as_positions(xp, x, "x", n)
        ys = as_positions(xp, y, "y", n)
        s = size / 6.0 if window_sigma is None else float(window_sigma)
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"window_sigma must be a finite number > 0, got {window_sigma!r}")
        t = xp.arange(size, dtype=xp.float64)
        wy = xp.exp(-0.5 * ((t[None, :] - ys[:, None]) / s) ** 2)
        wx = xp.exp(-0.5 * ((t[None, :] - xs[:, None]) / s) ** 2)
        data = data * wy[:, :, None] * wx[:, None, :]
    mag = xp.abs(xp_fft(xp).rfft2(data, axes=(1, 2)))  # (n, size, size // 2 + 1)
    ky = xp.fft.fftfreq(size) * size
    kx = xp.fft.rfftfreq(size) * size
    b = xp.rint(xp.hypot(ky[:, None], kx[None, :]) * oversample).astype(xp.int64)
    lo = round(f_min * size * oversample)
    hi = round(f_max * size * oversample)
    if hi <= lo:
        raise ValueError(f"f_min={f_min} and f_max={f_max} leave no bins for size {size}")
    pos = (b - lo).reshape(-1)
    return bin_mean(mag.reshape(n, -1), pos, hi - lo).astype(xp.float64)
