"""Whitefield (the image without the sample) and the region of interest.

:func:`make_whitefield` is the per-pixel median over frames, with masked or non-positive pixels
filled by the Gaussian-weighted mean of their good neighbours (normalised convolution, sigma
``sigma`` pixels, widened until every such pixel is filled). :func:`guess_roi` returns the
rectangle ``[ss0, ss1, fs0, fs1]`` (a slice, end exclusive) holding the bright part of the
whitefield: along each axis the contiguous range that maximises the summed excess of the
whitefield profile over the half-way level between its dark floor and its bright plateau
(speckle_tracking returns the same box moved one pixel toward index 0).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..backend import ndimage, to_numpy
from ..errors import ShapeError
from ._common import as_array, check_mask, check_stack

__all__ = ["guess_roi", "make_whitefield", "update_whitefield"]

logger = logging.getLogger(__name__)


def make_whitefield(data: Any, mask: Any = None, *, sigma: float = 4.0) -> Any:
    """Estimate the whitefield from the scan itself.

    Parameters
    ----------
    data : ndarray of shape (N, M, L)
        Frames (counts).
    mask : bool ndarray of shape (M, L), optional
        True for good pixels (default all).
    sigma : float
        Width (pixels) of the Gaussian weights used to fill bad pixels (default 4).

    Returns
    -------
    ndarray of float64, shape (M, L)
        Median over frames at good pixels; the filled values elsewhere. Every value is > 0 where
        any good pixel within reach carries signal.

    Raises
    ------
    ValueError
        If every pixel is masked, or the median is zero on every good pixel.
    """
    xp, data = check_stack(data)
    _, m, n = data.shape
    good = check_mask(xp, mask, (m, n))
    if not bool(xp.any(good)):
        raise ValueError("mask has no good pixel: the whole detector is masked")
    med = xp.median(data.astype(xp.float64), axis=0)
    ok = good & xp.isfinite(med) & (med > 0)
    if not bool(xp.any(ok)):
        raise ValueError("the median of the data is zero (or NaN) on every good pixel")
    white = xp.where(ok, med, 0.0)
    if bool(xp.all(ok)):
        return white
    nd = ndimage(xp)
    s = float(sigma)
    filled = white
    missing = ~ok
    for _ in range(6):
        sig = (0.0, s) if m == 1 else s
        num = nd.gaussian_filter(xp.where(ok, white, 0.0), sig, mode="constant")
        den = nd.gaussian_filter(ok.astype(xp.float64), sig, mode="constant")
        can = missing & (den > 1e-8)
        filled = xp.where(can, num / xp.where(can, den, 1.0), filled)
        missing = missing & ~can
        if not bool(xp.any(missing)):
            break
        s *= 2.0
    logger.debug("make_whitefield: %d pixels filled", int(xp.count_nonzero(~ok)))
    return filled


def _axis_range(profile: np.ndarray) -> tuple[int, int]:
    """Contiguous [start, stop) maximising the sum of ``profile - level`` (Kadane)."""
    if profile.size == 1:
        return 0, 1
    lo = float(np.percentile(profile, 5))
    hi = float(np.percentile(profile, 95))
    level = 0.5 * (lo + hi)
    gain = profile - level
    best, best_range = -np.inf, (0, profile.size)
    run, start = 0.0, 0
    for k, g in enumerate(gain):
        if run <= 0:
            run, start = g, k
        else:
            run += g
        if run > best:
            best, best_range = run, (start, k + 1)
    return best_range


def guess_roi(W: Any) -> list[int]:
    """The rectangle that holds the bright part of a whitefield.

    Parameters
    ----------
    W : ndarray of shape (M, L)
        Whitefield.

    Returns
    -------
    list of 4 int
        ``[ss0, ss1, fs0, fs1]``: the bright region is ``W[ss0:ss1, fs0:fs1]``. For a box of
        uniform brightness on a dark floor, exactly the box.

    Raises
    ------
    ShapeError
        If ``W`` is not 2-D or is empty.
    """
    w = np.asarray(to_numpy(as_array(np, to_numpy(W))), dtype=float)
    if w.ndim != 2 or w.size == 0:
        raise ShapeError(f"W must be a non-empty 2-D array (M, L), got shape {w.shape}")
    w = np.where(np.isfinite(w), w, 0.0)
    s0, s1 = _axis_range(w.mean(axis=1))
    f0, f1 = _axis_range(w[s0:s1].mean(axis=0))
    s0, s1 = _axis_range(w[:, f0:f1].mean(axis=1))
    return [int(s0), int(s1), int(f0), int(f1)]


def update_whitefield(
    data: Any,
    mask: Any,
    O: Any,  # noqa: E741 - the seed's name for the reference image
    pixel_map: Any,
    n0: float,
    m0: float,
    dij_n: Any,
    *,
    W: Any = None,
) -> Any:
    """Least-squares whitefield for a given reference image and pixel map.

    ``W[i, j] = sum_n data[n, i, j] O_n[i, j] / sum_n O_n[i, j]**2`` with
    ``O_n[i, j] = O(u[:, i, j] - dij[n] + (n0, m0))`` over the frames where the reference is
    defined: the whitefield that best explains the data with this reference. It removes the
    speckle imprint a per-pixel median over a short scan leaves in the whitefield.

    Parameters
    ----------
    data : ndarray of shape (N, M, L)
        Frames (counts).
    mask : bool ndarray of shape (M, L) or None
        Good pixels (others keep the value of ``W``, or are filled from neighbours).
    O : ndarray of shape (U, V)
        Reference image.
    pixel_map : ndarray of shape (2, M, L)
        Pixel map, object pixels.
    n0, m0 : float
        Object offsets.
    dij_n : ndarray of shape (N, 2)
        Translations, object pixels.
    W : ndarray of shape (M, L), optional
        Current whitefield: its values are kept where the update is undefined, and the update
        is rescaled to its mean over the good pixels (W * O is only defined up to a constant).

    Returns
    -------
    ndarray of float64, shape (M, L)
        The updated whitefield (> 0 wherever it was defined).
    """
    from .error import forward_model

    xp, data = check_stack(data)
    n_frames, m, n = data.shape
    good = check_mask(xp, mask, (m, n))
    ones = xp.ones((m, n), dtype=xp.float64)
    obj = forward_model(ones, O, pixel_map, n0, m0, dij_n)
    ok = ~xp.isnan(obj)
    o = xp.where(ok, obj, 0.0)
    d = data.astype(xp.float64)
    num = (d * o).sum(axis=0)
    den = (o * o).sum(axis=0)
    cnt = ok.sum(axis=0)
    defined = good & (den > 0) & (cnt >= max(1, n_frames // 4))
    new = xp.where(defined, num / xp.where(defined, den, 1.0), 0.0)
    if W is not None:
        old = as_array(xp, W).astype(xp.float64)
        if old.shape != (m, n):
            raise ShapeError(f"W must have shape {(m, n)} (M, L), got {old.shape}")
        sel = defined & (new > 0)
        if bool(xp.any(sel)):
            new = new * (float(old[sel].mean()) / float(new[sel].mean()))
        new = xp.where(defined & (new > 0), new, old)
        return new
    return make_whitefield(new[None], defined & (new > 0))
