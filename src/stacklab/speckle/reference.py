"""The reference (object) image of a speckle-tracking scan.

Forward model (speckle_tracking's)::

    data[n, i, j] = W[i, j] * O[u[0, i, j] - dij[n, 0] + n0, u[1, i, j] - dij[n, 1] + m0]

:func:`make_reference` inverts it for O by weighted least squares on the object grid: every good
detector value ``data / W`` is splatted onto the four object pixels around its object coordinate
with bilinear weights ``b`` (the transpose of the bilinear reading used by the forward model), and

    O[k, l] = sum(b * W * data) / sum(b * W**2)

over all frames at once (vectorized with ``bincount``, or one numba loop). Object pixels that no
data reaches are NaN (speckle_tracking writes -1 there and treats 0 as missing; here 0 is a valid
value).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import call_numba, ndimage, to_numpy, use_numba
from ._common import (
    check_pixel_map,
    check_scan,
    check_translations,
    gather_points,
    kernel_points,
    numba_kernels,
)
from ._interp import sample, splat

__all__ = ["Reference", "make_reference", "object_grid"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    """A reference image and its placement.

    Attributes
    ----------
    image : ndarray of float64, shape (U, V)
        The reference image O (whitefield-normalised intensity, about 1); NaN where no data.
    n0, m0 : float
        Offsets of the forward model, object pixels: detector pixel ``(i, j)`` of frame ``n``
        reads ``O`` at ``(u[0, i, j] - dij[n, 0] + n0, u[1, i, j] - dij[n, 1] + m0)``.
    weight : ndarray of float64, shape (U, V)
        ``sum(b * W**2)`` per object pixel (its statistical weight, counts**2).
    count : ndarray of float64, shape (U, V)
        ``sum(b)`` per object pixel: the number of detector values that reached it (bilinear
        fractions counted fractionally).
    """

    image: Any
    n0: float
    m0: float
    weight: Any
    count: Any

    @property
    def shape(self) -> tuple[int, int]:
        """``(U, V)``."""
        return tuple(self.image.shape)


def _good_points(xp, good, u, dij):
    """Object coordinates extremes over good pixels (float64 NumPy scalars)."""
    uy = u[0][good]
    ux = u[1][good]
    return (
        float(uy.min()),
        float(uy.max()),
        float(ux.min()),
        float(ux.max()),
        float(dij[:, 0].min()),
        float(dij[:, 0].max()),
        float(dij[:, 1].min()),
        float(dij[:, 1].max()),
    )


def object_grid(
    pixel_map: Any, dij_n: Any, good: Any = None
) -> tuple[float, float, tuple[int, int]]:
    """Offsets ``(n0, m0)`` and object shape ``(U, V)`` that hold every good pixel of every frame.

    ``n0 = max(dij[:, 0]) - min(u[0])`` so that the smallest object coordinate is exactly 0, and
    ``U = rint(max(u[0]) - min(dij[:, 0]) + n0) + 1`` (the same for fs), minima and maxima over
    the good pixels: the convention of speckle_tracking.

    Parameters
    ----------
    pixel_map : ndarray of shape (2, M, L)
        Pixel map ([0] = ss, [1] = fs), object pixels.
    dij_n : ndarray of shape (N, 2)
        Translations [ss, fs], object pixels.
    good : bool ndarray of shape (M, L), optional
        Pixels to cover (default all).

    Returns
    -------
    n0, m0 : float
        Offsets, object pixels.
    shape : (int, int)
        ``(U, V)``.
    """
    u = np.asarray(to_numpy(pixel_map), dtype=float)
    d = np.asarray(to_numpy(dij_n), dtype=float)
    g = np.ones(u.shape[1:], dtype=bool) if good is None else np.asarray(to_numpy(good), bool)
    if not g.any():
        raise ValueError("mask has no good pixel: the whole detector (or roi) is masked")
    uy_min, uy_max, ux_min, ux_max, dy_min, dy_max, dx_min, dx_max = _good_points(np, g, u, d)
    n0 = dy_max - uy_min
    m0 = dx_max - ux_min
    n_u = int(np.rint(uy_max - dy_min + n0)) + 1
    n_v = int(np.rint(ux_max - dx_min + m0)) + 1
    return n0, m0, (n_u, n_v)


def make_reference(
    data: Any,
    mask: Any,
    W: Any,
    dij_n: Any,
    pixel_map: Any,
    *,
    roi: Any = None,
    n0: float | None = None,
    m0: float | None = None,
    shape: tuple[int, int] | None = None,
    minimum_overlap: float | None = None,
    sigma: float | None = None,
    iterations: int = 0,
    backend: str = "auto",
) -> Reference:
    """Build the reference image from the data, the pixel map and the translations.

    Parameters
    ----------
    data : ndarray of shape (N, M, L)
        Frames (counts): N frames, M ss rows, L fs columns. Integer data are widened.
    mask : bool ndarray of shape (M, L) or None
        True for good pixels (None: all good).
    W : ndarray of shape (M, L)
        Whitefield (counts); must be finite and > 0 on good pixels.
    dij_n : ndarray of shape (N, 2)
        Sample translations [ss, fs] in object pixels (see :func:`generate_pixel_map`).
    pixel_map : ndarray of shape (2, M, L)
        Pixel map u ([0] = ss, [1] = fs), object pixels.
    roi : sequence of 4 int, optional
        ``[ss0, ss1, fs0, fs1]``: only pixels ``[ss0:ss1, fs0:fs1]`` are used.
    n0, m0 : float, optional
        Object offsets to use (default: :func:`object_grid`, the smallest coordinate is 0).
    shape : (int, int), optional
        Object shape ``(U, V)`` (default: :func:`object_grid`). Give ``n0``, ``m0`` and
        ``shape`` to keep the object grid of an earlier call.
    minimum_overlap : float, optional
        Object pixels reached by fewer than this many detector values become NaN.
    sigma : float, optional
        Gaussian smoothing (object pixels) of the numerator and denominator (normalised
        convolution); None (default) for none.
    iterations : int
        Least-squares sweeps after the weighted average (default 0): each one adds
        ``splat(W * (data - W * O(read))) / sum(b * W**2)``, so that reading the reference back
        with the same bilinear interpolation reproduces the data more closely (the plain
        average is blurred by the splat-and-read kernel). 3 to 5 sweeps sharpen fine speckle.
    backend : {"auto", "numba", "xp"}
        ``"auto"``: numba for NumPy data when installed, vectorized ``xp`` otherwise.

    Returns
    -------
    Reference
        ``image`` (U, V) float64, ``n0``, ``m0``, ``weight``, ``count``; on the input's device.

    Raises
    ------
    ShapeError
        For mismatched shapes (e.g. translations and frame count).
    ValueError
        If every pixel is masked, or W <= 0 on a good pixel.
    """
    xp, data, good, W = check_scan(data, mask, W, roi)
    n_frames, m, n = data.shape
    u = check_pixel_map(xp, pixel_map, (m, n))
    dij = check_translations(xp, dij_n, n_frames)
    g_n0, g_m0, g_shape = object_grid(u, dij, good)
    n0 = g_n0 if n0 is None else float(n0)
    m0 = g_m0 if m0 is None else float(m0)
    shape = g_shape if shape is None else (int(shape[0]), int(shape[1]))
    if min(shape) < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    num, den, cnt = _splat_all(xp, data, good, W, u, dij, n0, m0, shape, backend)
    if int(iterations) > 0:
        if sigma is not None and sigma > 0:
            raise ValueError("iterations and sigma cannot be combined")
        ok = den > 0
        obj = xp.where(ok, num / xp.where(ok, den, 1.0), xp.nan)
        for _ in range(int(iterations)):
            obj = _refine(xp, obj, den, data, good, W, u, dij, n0, m0, backend)
        num = xp.where(ok, obj * den, 0.0)
    if sigma is not None and sigma > 0:
        nd = ndimage(xp)
        num = nd.gaussian_filter(num, sigma, mode="constant")
        den = nd.gaussian_filter(den, sigma, mode="constant")
    ok = den > 0
    if minimum_overlap is not None:
        ok = ok & (cnt >= float(minimum_overlap))
    image = xp.where(ok, num / xp.where(ok, den, 1.0), xp.nan)
    logger.debug(
        "reference %s, n0=%.3f m0=%.3f, %d empty pixels",
        shape,
        n0,
        m0,
        int(xp.count_nonzero(~ok)),
    )
    return Reference(image=image, n0=n0, m0=m0, weight=den, count=cnt)


def _splat_all(xp, data, good, W, u, dij, n0, m0, shape, backend):
    """Numerator, denominator and counts of the object update, (U, V) float64 each."""
    idx = xp.flatnonzero(good.ravel())
    d_np, w, uy, ux = gather_points(data, idx, W, u)
    if use_numba(xp, backend):
        return call_numba(
            numba_kernels().splat_points,
            *kernel_points(d_np, w, uy, ux, dij, n0, m0),
            int(shape[0]),
            int(shape[1]),
        )
    y = uy[None, :] - dij[:, 0:1] + n0
    x = ux[None, :] - dij[:, 1:2] + m0
    num, den = splat(xp, shape, y, x, d_np.astype(xp.float64) / w[None, :], w[None, :] ** 2)
    _, cnt = splat(xp, shape, y, x, 0.0, xp.ones(1, dtype=xp.float64))
    return num, den, cnt


def _refine(xp, obj, den, data, good, W, u, dij, n0, m0, backend):
    """One least-squares sweep of the reference (see ``iterations``)."""
    idx = xp.flatnonzero(good.ravel())
    d_np, w, uy, ux = gather_points(data, idx, W, u)
    if use_numba(xp, backend):
        return call_numba(
            numba_kernels().refine_points,
            *kernel_points(d_np, w, uy, ux, dij, n0, m0),
            np.ascontiguousarray(obj),
            np.ascontiguousarray(den),
        )
    y = uy[None, :] - dij[:, 0:1] + n0
    x = ux[None, :] - dij[:, 1:2] + m0
    v = sample(xp, obj, y, x)
    ok = ~xp.isnan(v)
    r = xp.where(ok, d_np.astype(xp.float64) / w[None, :] - xp.where(ok, v, 0.0), 0.0)
    num, _ = splat(xp, obj.shape, xp.where(ok, y, -10.0), x, r, w[None, :] ** 2)
    return xp.where(den > 0, obj + num / xp.where(den > 0, den, 1.0), obj)
