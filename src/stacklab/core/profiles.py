"""Binned means: radial (azimuthally averaged) profiles and general "mean by bin".

Both functions do all frames of a stack in one ``bincount`` over ``frame * n_slots + bin`` (no
loop over frames) and run unchanged on NumPy or CuPy arrays; results stay on the input's device.
Coordinates are ``(row, col)`` in pixels with pixel centres at integer indices.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np

from ..backend import get_xp
from ..errors import ShapeError

__all__ = ["bin_mean", "radial_profile"]

logger = logging.getLogger(__name__)

#: Default bound on the number of (sub-)samples binned at once by :func:`radial_profile`.
BLOCK_ELEMENTS = 2**26


def _out_dtype(xp, dtype):
    """float32 stays float32; everything else (integers, float64, float16) becomes float64."""
    return xp.float32 if dtype == xp.float32 else xp.float64


def _binned_mean(xp, slot, weights, n_groups: int, n_bins: int, out_dtype, return_counts: bool):
    """Mean of ``weights`` per (group, bin) from flat slots ``group * (n_bins + 1) + bin``.

    Slot ``n_bins`` of each group is a discard slot for samples outside every bin.
    """
    n_slots = n_groups * (n_bins + 1)
    sums = xp.bincount(slot, weights=weights, minlength=n_slots)
    counts = xp.bincount(slot, minlength=n_slots)
    sums = sums.reshape(n_groups, n_bins + 1)[:, :n_bins]
    counts = counts.reshape(n_groups, n_bins + 1)[:, :n_bins]
    mean = xp.where(counts > 0, sums / xp.maximum(counts, 1), xp.nan).astype(out_dtype)
    return (mean, counts) if return_counts else (mean, None)


def radial_profile(
    images: Any,
    center: Any,
    *,
    n_bins: int | None = None,
    bin_width: float = 1.0,
    oversample: int = 1,
    mask: Any = None,
    rounding: Literal["floor", "nearest"] = "floor",
    return_counts: bool = False,
    block_elements: int = BLOCK_ELEMENTS,
) -> Any:
    """Mean intensity in concentric annuli around a (sub-pixel) centre, for every frame.

    Every pixel (or, with ``oversample = k``, each of its ``k x k`` sub-pixels, all carrying the
    pixel's value) is assigned to an annulus by its distance ``r`` from the centre, and the values
    in each annulus are averaged. With ``rounding="floor"`` (default) bin ``j`` holds
    ``j * bin_width <= r < (j + 1) * bin_width``; with ``rounding="nearest"`` bin ``j`` is centred
    on ``r = j * bin_width`` (``rint(r / bin_width) == j``, ties to even), which is magtrack's
    convention (magtrack's ``oversample`` is ``bin_width = 1 / oversample`` here, with this
    function's ``oversample=1``).

    Parameters
    ----------
    images : ndarray of shape (n, H, W) or (H, W)
        Frames. Integer data are averaged in float64.
    center : array of shape (n, 2) or (2,)
        ``(row, col)`` of the centre in pixels, per frame or shared by all frames; finite.
    n_bins : int, optional
        Number of annuli. Default ``floor((min(H, W) // 2) / bin_width)``, the largest complete
        circle inside a centred frame.
    bin_width : float, optional
        Annulus width in pixels (default 1.0), > 0.
    oversample : int, optional
        Split each pixel into ``oversample x oversample`` sub-pixels at offsets
        ``(i + 0.5) / oversample - 0.5`` from its centre (default 1: pixel centres only). Reduces
        radial aliasing of sub-pixel centres at a cost of ``oversample**2`` in work and memory.
    mask : bool array of shape (H, W) or (n, H, W), optional
        True marks pixels to **exclude** (bad or hot pixels, beam stop).
    rounding : {"floor", "nearest"}, optional
        How distances are turned into bin numbers (see above).
    return_counts : bool, optional
        Also return the number of samples (pixels times ``oversample**2``) in each bin.
    block_elements : int, optional
        At most this many samples (``frames * H * W * oversample**2``) are binned at once; larger
        stacks are processed in blocks of frames (default 2**26) to bound temporary memory.

    Returns
    -------
    profile : ndarray of shape (n, n_bins), or (n_bins,) for a 2-D ``images``
        Mean intensity per annulus; float32 for float32 input, float64 otherwise. **Bins without
        any sample are NaN** (e.g. bin 0 at small ``bin_width`` when no pixel centre is close
        enough to a sub-pixel centre). A NaN pixel makes its bin NaN.
    counts : ndarray of int64, same shape
        Only with ``return_counts=True``.

    Raises
    ------
    ShapeError
        For images that are not 2-D/3-D or empty, or a ``center``/``mask`` of the wrong shape.
    ValueError
        For a non-finite ``center`` or bad ``n_bins``, ``bin_width``, ``oversample``, ``rounding``.
    """
    xp = get_xp(images, center, mask)
    images = xp.asarray(images)
    if images.ndim not in (2, 3) or images.size == 0:
        raise ShapeError(
            f"images must be a non-empty array of shape (n, H, W) or (H, W), got {images.shape}"
        )
    if images.dtype.kind not in "fiub":
        raise TypeError(f"images must be a real numeric array, got dtype {images.dtype}")
    single = images.ndim == 2
    stack = images[None] if single else images
    n, n_rows, n_cols = stack.shape

    center = xp.asarray(center, dtype=xp.float64)
    if center.shape == (2,):
        center = center[None]
    elif center.ndim != 2 or center.shape[1] != 2 or center.shape[0] not in (1, n):
        raise ShapeError(
            f"center must have shape ({n}, 2) or (2,) = (row, col), got {center.shape}"
        )
    if not bool(xp.all(xp.isfinite(center))):
        raise ValueError("center must be finite")

    if not (isinstance(bin_width, int | float | np.integer | np.floating)) or not (
        math.isfinite(bin_width) and bin_width > 0
    ):
        raise ValueError(f"bin_width must be a finite number > 0, got {bin_width!r}")
    bin_width = float(bin_width)
    if isinstance(oversample, bool) or not isinstance(oversample, int | np.integer):
        raise TypeError(f"oversample must be an integer >= 1, got {oversample!r}")
    oversample = int(oversample)
    if oversample < 1:
        raise ValueError(f"oversample must be an integer >= 1, got {oversample}")
    if rounding not in ("floor", "nearest"):
        raise ValueError(f"rounding must be 'floor' or 'nearest', got {rounding!r}")
    if n_bins is None:
        n_bins = max(1, math.floor((min(n_rows, n_cols) // 2) / bin_width + 1e-9))
    elif isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    n_bins = int(n_bins)

    if mask is not None:
        mask = xp.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(f"mask must be a boolean array (True = excluded), got {mask.dtype}")
        if mask.shape not in ((n_rows, n_cols), (n, n_rows, n_cols)) and not (
            single and mask.shape == (1, n_rows, n_cols)
        ):
            raise ShapeError(
                f"mask must have shape ({n_rows}, {n_cols}) or ({n}, {n_rows}, {n_cols}), "
                f"got {mask.shape}"
            )
        if mask.ndim == 2:
            mask = mask[None]

    out_dtype = _out_dtype(xp, stack.dtype)
    k = oversample
    sub = (xp.arange(k, dtype=xp.float64) + 0.5) / k - 0.5
    rows = (xp.arange(n_rows, dtype=xp.float64)[:, None] + sub[None, :]).ravel()  # (H*k,)
    cols = (xp.arange(n_cols, dtype=xp.float64)[:, None] + sub[None, :]).ravel()  # (W*k,)
    per_frame = n_rows * n_cols * k * k
    block = max(1, int(block_elements) // per_frame)
    shared_center = center.shape[0] == 1

    means, counts_all = [], []
    for start in range(0, n, block):
        stop = min(n, start + block)
        nb = stop - start
        c = center if shared_center else center[start:stop]
        dy = rows[None, :] - c[:, 0:1]  # (nc, H*k)
        dx = cols[None, :] - c[:, 1:2]  # (nc, W*k)
        r = xp.sqrt(dy[:, :, None] ** 2 + dx[:, None, :] ** 2) / bin_width  # (nc, H*k, W*k)
        b = xp.floor(r) if rounding == "floor" else xp.rint(r)
        b = xp.minimum(b, n_bins).astype(xp.int64)  # n_bins = discard slot
        b = xp.broadcast_to(b, (nb, n_rows * k, n_cols * k))
        vals = stack[start:stop].astype(xp.float64, copy=False)
        if mask is not None:
            m = mask if mask.shape[0] == 1 else mask[start:stop]
            if k > 1:
                m = xp.repeat(xp.repeat(m, k, axis=-2), k, axis=-1)
            b = xp.where(m, n_bins, b)
        if k > 1:
            vals = xp.repeat(xp.repeat(vals, k, axis=-2), k, axis=-1)
        frame = xp.arange(nb, dtype=xp.int64)[:, None, None] * (n_bins + 1)
        slot = (b + frame).ravel()
        mean, cnt = _binned_mean(
            xp, slot, vals.ravel(), nb, n_bins, out_dtype, return_counts=return_counts
        )
        means.append(mean)
        counts_all.append(cnt)
    profile = means[0] if len(means) == 1 else xp.concatenate(means, axis=0)
    if single:
        profile = profile[0]
    if not return_counts:
        return profile
    counts = counts_all[0] if len(counts_all) == 1 else xp.concatenate(counts_all, axis=0)
    return profile, (counts[0] if single else counts).astype(xp.int64)


def bin_mean(
    values: Any,
    positions: Any,
    bins: Any,
    *,
    return_counts: bool = False,
) -> Any:
    """Mean of ``values`` grouped by the bin that ``positions`` falls into, per batch row.

    This is magtrack's ``binmean`` semantic in stacklab's frames-first layout, without its
    in-place clipping: entries whose position lies outside every bin are ignored and **empty
    bins are NaN**. Inputs are never modified.

    Parameters
    ----------
    values : ndarray of shape (..., m)
        Values to average; the last axis holds the samples of one data set (e.g. one frame),
        leading axes are batch axes.
    positions : ndarray broadcastable to ``values.shape``
        Where each value belongs. With an integer ``bins``, the bin index: integers are used as
        they are, floating-point positions are floored (bin ``j`` holds ``j <= p < j + 1``).
        With bin edges, the coordinate to bin. NaN positions are ignored.
    bins : int or 1-D array of edges
        An integer ``n_bins >= 1`` (bins ``0 .. n_bins - 1``), or ``n_bins + 1`` strictly
        increasing edges: bin ``j`` holds ``edges[j] <= p < edges[j + 1]``, the last bin also
        includes ``p == edges[-1]`` (as :func:`numpy.histogram`).
    return_counts : bool, optional
        Also return the number of values in each bin.

    Returns
    -------
    means : ndarray of shape (..., n_bins)
        float32 when ``values`` is float32, float64 otherwise; NaN where a bin is empty. A NaN
        value makes its bin NaN.
    counts : ndarray of int64, shape (..., n_bins)
        Only with ``return_counts=True``.

    Raises
    ------
    ShapeError
        If ``values`` is 0-D or empty, or ``positions`` does not broadcast to it.
    ValueError
        For a bad ``bins``.

    Notes
    -----
    magtrack's ``binmean(x, weights, n_bins)`` with ``(n_values, n_datasets)`` arrays is
    ``bin_mean(weights.T, x.T, n_bins).T``.
    """
    xp = get_xp(values, positions, bins)
    values = xp.asarray(values)
    positions = xp.asarray(positions)
    if values.ndim < 1 or values.size == 0:
        raise ShapeError(f"values must be a non-empty array of shape (..., m), got {values.shape}")
    if values.dtype.kind not in "fiub":
        raise TypeError(f"values must be a real numeric array, got dtype {values.dtype}")
    if positions.dtype.kind not in "fiu":
        raise TypeError(f"positions must be a real numeric array, got dtype {positions.dtype}")
    try:
        positions = xp.broadcast_to(positions, values.shape)
    except ValueError:
        raise ShapeError(
            f"positions of shape {positions.shape} does not broadcast to values {values.shape}"
        ) from None

    if isinstance(bins, int | np.integer) and not isinstance(bins, bool):
        n_bins = int(bins)
        if n_bins < 1:
            raise ValueError(f"bins must be an integer >= 1 or an array of edges, got {bins}")
        if positions.dtype.kind == "f":
            valid = xp.isfinite(positions) & (positions >= 0) & (positions < n_bins)
            idx = xp.where(valid, xp.floor(xp.where(valid, positions, 0)), n_bins)
            idx = idx.astype(xp.int64)
        else:
            p = positions.astype(xp.int64)
            idx = xp.where((p >= 0) & (p < n_bins), p, n_bins)
    else:
        edges = xp.asarray(bins, dtype=xp.float64)
        if edges.ndim != 1 or edges.size < 2:
            raise ValueError("bins must be an integer >= 1 or a 1-D array of at least 2 edges")
        if not bool(xp.all(xp.isfinite(edges))) or not bool(xp.all(xp.diff(edges) > 0)):
            raise ValueError("bin edges (bins) must be finite and strictly increasing")
        n_bins = int(edges.size) - 1
        p = positions.astype(xp.float64)
        idx = xp.searchsorted(edges, p.ravel(), side="right").reshape(p.shape) - 1
        idx = xp.where(p == edges[-1], n_bins - 1, idx)
        valid = xp.isfinite(p) & (idx >= 0) & (idx < n_bins)
        idx = xp.where(valid, idx, n_bins).astype(xp.int64)

    batch = values.shape[:-1]
    n_groups = int(np.prod(batch, dtype=np.int64)) if batch else 1
    group = xp.arange(n_groups, dtype=xp.int64).reshape(*batch, 1) * (n_bins + 1)
    slot = (idx + group).ravel()
    mean, counts = _binned_mean(
        xp,
        slot,
        values.astype(xp.float64).ravel(),
        n_groups,
        n_bins,
        _out_dtype(xp, values.dtype),
        return_counts,
    )
    mean = mean.reshape(*batch, n_bins)
    if return_counts:
        return mean, counts.reshape(*batch, n_bins).astype(xp.int64)
    return mean
