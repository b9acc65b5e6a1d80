"""Bad-pixel mask of a speckle-tracking scan.

A pixel is compared with its neighbours through two per-pixel statistics over the frames, the
mean and the variance. For each, ``log(value / median of its 3 x 3 neighbourhood)`` is computed
(1 x 5 along the row for a single-row detector; reflected edges, so corners are treated like any
other pixel), and its robust z-score over the detector (median and MAD) must stay within
``thresh``. Hot pixels (a mean far above their neighbours'), dead or stuck pixels (mean or
variance far below) and non-finite pixels are flagged. speckle_tracking's statistic (a sum over
frames of squared deviations from a zero-padded 3 x 3 median) flags the four corners of every
detector and all but one pixel of a single-row detector; this one does neither.
"""

from __future__ import annotations

import logging
from typing import Any

from ..backend import ndimage
from ._common import check_stack

__all__ = ["make_mask"]

logger = logging.getLogger(__name__)


def _neighbour_median(xp, image, one_d: bool):
    nd = ndimage(xp)
    size = (1, 5) if one_d else (3, 3)
    return nd.median_filter(image, size=size, mode="reflect")


def _robust_z(xp, values, valid, expected):
    """z-score of ``values``: detector-wide MAD and expected noise added in quadrature."""
    v = values[valid]
    if v.size == 0:
        return xp.zeros_like(values)
    med = xp.median(v)
    mad = xp.median(xp.abs(v - med)) * 1.4826
    scale = xp.sqrt(mad**2 + expected**2 + 1e-6)
    return (values - med) / scale


def make_mask(data: Any, thresh: float = 10.0, mask_gaps: bool = False) -> Any:
    """Boolean mask of good pixels (True) from the statistics of a stack of frames.

    Parameters
    ----------
    data : ndarray of shape (N, M, L)
        Frames (counts): N frames, M ss rows, L fs columns. Integer data are widened.
    thresh : float
        Largest robust z-score (in units of the detector-wide MAD) of the log ratio of a pixel's
        temporal mean, or variance, to the median of its neighbours (default 10). Lower is
        stricter.
    mask_gaps : bool
        Also mask whole rows and columns whose pixels are zero in every frame on more than half
        of their length (gaps between detector modules), default False.

    Returns
    -------
    ndarray of bool, shape (M, L)
        True for good pixels, on the input's device.

    Raises
    ------
    ShapeError
        If ``data`` is not (N, M, L).
    """
    xp, data = check_stack(data)
    n_frames, m, n = data.shape
    one_d = m == 1
    d = data.astype(xp.float64)
    finite = xp.all(xp.isfinite(d), axis=0)
    d = xp.where(finite[None], d, 0.0)
    mean = d.mean(axis=0)
    var = d.var(axis=0) if n_frames > 1 else xp.zeros_like(mean)
    bad = ~finite
    level = float(xp.percentile(mean[finite], 95)) if bool(xp.any(finite)) else 0.0
    if not level > 0:
        return finite
    floor = 1e-3 * level
    med_mean = _neighbour_median(xp, mean, one_d)
    med_var = _neighbour_median(xp, var, one_d)
    lit = finite & (med_mean > 0.02 * level)
    # Expected scatter of the log ratios from the frames' own noise, per pixel.
    se_mean = xp.sqrt(med_var / n_frames) / (med_mean + floor)
    se_var = (2.0 / max(n_frames - 1, 1)) ** 0.5
    stats = [(mean, med_mean, se_mean, floor)]
    if n_frames > 2:
        stats.append((var, med_var, se_var, floor * floor))
    for stat, med, se, fl in stats:
        ratio = xp.log((stat + fl) / (xp.maximum(med, 0.0) + fl))
        z = _robust_z(xp, ratio, lit, se)
        bad = bad | (lit & (xp.abs(z) > float(thresh)))
        # No signal at all where the neighbours have plenty: dead or stuck.
        bad = bad | (lit & (stat <= 0.0))
    if mask_gaps:
        zero = xp.all(d == 0, axis=0)
        rows = zero.mean(axis=1) > 0.5
        cols = zero.mean(axis=0) > 0.5
        bad = bad | rows[:, None] | cols[None, :]
    good = ~bad
    logger.debug("make_mask: %d of %d pixels masked", int(xp.count_nonzero(bad)), m * n)
    return good
