"""Pixel maps and sample translations: the geometry, and their refinement against the reference.

* :func:`make_pixel_translations` and :func:`generate_pixel_map`: the nominal geometry (the
  conventions of speckle_tracking: ``dss = x_pixel_size * defocus / z``, translations projected on
  the detector basis and divided by the object pixel, mean removed).
* :func:`update_pixel_map`: for every good detector pixel, the shift of its map that minimises
  ``sum_n (data - W O(u + s - dij_n + n0))**2`` over a window of shifts (all pixels and all
  window offsets at once, numba-parallel or vectorized ``xp``), followed by a 2D quadratic
  refinement of the error surface that is accepted only where its Hessian is positive-definite
  and its minimum lies within one window step (:func:`stacklab.core.quadratic_peak_2d`), then
  optional clipping, smoothing and a curl-free projection of the update.
* :func:`update_translations`: the same search per frame, for the sample translations.
* :func:`regularize_pixel_map`: fill bad pixels, smooth, and/or make the displacement curl-free
  (integrate it and differentiate again), as a physical pixel map must be.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import call_numba, get_xp, ndimage, to_numpy, use_numba
from ..core.peaks import quadratic_peak_2d
from ..errors import ShapeError, check_positive
from ._common import (
    as_array,
    check_mask,
    check_pixel_map,
    check_scan,
    check_translations,
    gather_points,
    kernel_points,
    numba_kernels,
    roi_mask,
    window_offsets,
)
from ._interp import sample
from .phase import integrate_gradient

__all__ = [
    "PixelMapUpdate",
    "TranslationUpdate",
    "generate_pixel_map",
    "make_pixel_translations",
    "regularize_pixel_map",
    "update_pixel_map",
    "update_translations",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def make_pixel_translations(translations: Any, basis: Any, dss: float, dfs: float) -> np.ndarray:
    """Sample translations in object pixels, ``dij_n`` of shape (N, 2) = [ss, fs].

    Each lab-frame translation is projected on the unit vectors of the detector's ss and fs
    axes (``basis[0, 0]`` and ``basis[0, 1]``), divided by the object pixel size, and the mean
    over frames is removed. A positive translation along a basis vector gives a positive
    ``dij_n``; a feature of the object then appears at a larger detector index.

    Parameters
    ----------
    translations : ndarray of shape (N, 3)
        Sample position ``(x, y, z)`` per frame, metres.
    basis : ndarray of shape (N, 2, 3) or (2, 3)
        Detector basis vectors (ss step, fs step) in the lab frame, metres.
    dss, dfs : float
        Object pixel size along ss and fs, metres.

    Returns
    -------
    ndarray of float64, shape (N, 2)
        Translations [ss, fs] in object pixels, zero mean.
    """
    t = np.asarray(to_numpy(translations), dtype=float)
    b = np.asarray(to_numpy(basis), dtype=float)
    if t.ndim != 2 or t.shape[1] != 3:
        raise ShapeError(f"translations must have shape (N, 3) = (x, y, z), got {t.shape}")
    if b.ndim == 2:
        b = b[None]
    if b.ndim != 3 or b.shape[1:] != (2, 3):
        raise ShapeError(f"basis must have shape (N, 2, 3) or (2, 3), got {b.shape}")
    if b.shape[0] not in (1, t.shape[0]):
        raise ShapeError(
            f"basis has {b.shape[0]} frames but translations has {t.shape[0]}; they must match"
        )
    check_positive(dss, "dss")
    check_positive(dfs, "dfs")
    norms = np.linalg.norm(b[0], axis=1)
    if np.any(norms == 0):
        raise ValueError("basis vectors must be non-zero")
    e_ss = b[0, 0] / norms[0]
    e_fs = b[0, 1] / norms[1]
    dij = np.stack([t @ e_ss / dss, t @ e_fs / dfs], axis=1)
    return dij - dij.mean(axis=0)


def generate_pixel_map(
    shape: tuple[int, int],
    translations: Any,
    basis: Any,
    x_pixel_size: float,
    y_pixel_size: float,
    z: float,
    defocus_fs: float,
    defocus_ss: float | None = None,
    dss: float | None = None,
    dfs: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The nominal pixel map and translations of the imaging geometry.

    Parameters
    ----------
    shape : (int, int)
        Detector (or roi) shape ``(M, L)``.
    translations : ndarray of shape (N, 3)
        Sample positions, metres.
    basis : ndarray of shape (N, 2, 3)
        Detector basis vectors, metres.
    x_pixel_size, y_pixel_size : float
        Detector pixel size along ss and fs, metres.
    z : float
        Focus-to-detector distance, metres.
    defocus_fs : float
        Focus-to-sample distance along fs, metres (> 0: sample downstream of the focus).
    defocus_ss : float, optional
        Focus-to-sample distance along ss (default ``defocus_fs``).
    dss, dfs : float, optional
        Object pixel sizes (default ``x_pixel_size * defocus / z`` and
        ``y_pixel_size * defocus / z`` with ``defocus`` the mean of the two defocus values).

    Returns
    -------
    pixel_map : ndarray of float64, shape (2, M, L)
        ``u[0] = i * x_pixel_size / M_ss / dss`` and ``u[1] = j * y_pixel_size / M_fs / dfs``
        with ``M_a = z / defocus_a``: the identity without astigmatism.
    dij_n : ndarray of float64, shape (N, 2)
        Translations in object pixels (:func:`make_pixel_translations`).
    info : dict
        ``dss``, ``dfs`` (m), ``magnification`` (``z / defocus``), ``magnification_ss``,
        ``magnification_fs``, ``defocus``, ``defocus_ss``, ``defocus_fs`` (m).
    """
    m, n = (int(v) for v in shape)
    if m < 1 or n < 1:
        raise ShapeError(f"shape must be two positive integers, got {shape}")
    defocus_ss = defocus_fs if defocus_ss is None else defocus_ss
    for v, name in (
        (x_pixel_size, "x_pixel_size"),
        (y_pixel_size, "y_pixel_size"),
        (z, "z"),
    ):
        check_positive(v, name)
    if not (np.isfinite(defocus_fs) and np.isfinite(defocus_ss)) or defocus_fs * defocus_ss <= 0:
        raise ValueError(
            f"defocus_fs ({defocus_fs}) and defocus_ss ({defocus_ss}) must be finite, non-zero "
            "and of the same sign"
        )
    defocus = 0.5 * (defocus_ss + defocus_fs)
    dss = x_pixel_size * defocus / z if dss is None else float(dss)
    dfs = y_pixel_size * defocus / z if dfs is None else float(dfs)
    mag_ss = z / defocus_ss
    mag_fs = z / defocus_fs
    i, j = np.indices((m, n), dtype=float)
    pixel_map = np.stack([i * x_pixel_size / mag_ss / dss, j * y_pixel_size / mag_fs / dfs])
    dij = make_pixel_translations(translations, basis, abs(dss), abs(dfs))
    info = {
        "dss": dss,
        "dfs": dfs,
        "magnification": z / defocus,
        "magnification_ss": mag_ss,
        "magnification_fs": mag_fs,
        "defocus": defocus,
        "defocus_ss": float(defocus_ss),
        "defocus_fs": float(defocus_fs),
    }
    return pixel_map, dij, info


# --------------------------------------------------------------------------------------------
# Error surfaces
# --------------------------------------------------------------------------------------------


def _offset_grid(h_ss: int, h_fs: int, step: float) -> np.ndarray:
    s = np.arange(-h_ss, h_ss + 1) * step
    f = np.arange(-h_fs, h_fs + 1) * step
    return np.stack(np.meshgrid(s, f, indexing="ij"), axis=-1).reshape(-1, 2)


def _search_inputs(data, mask, W, O, pixel_map, dij_n, roi, search_window, step):  # noqa: E741
    """Checked inputs of the shift searches (:func:`update_pixel_map`, :func:`update_translations`).

    Returns ``(xp, data, good, W, u, dij, obj, (h_ss, h_fs), offsets)``: the checked stack, good
    pixels, whitefield, pixel map, translations, reference image (float64), the half widths of
    the search window and the (K, 2) grid of trial offsets (NumPy, in pixels).
    """
    xp, data, good, W = check_scan(data, mask, W, roi)
    n_frames, m, n = data.shape
    u = check_pixel_map(xp, pixel_map, (m, n))
    dij = check_translations(xp, dij_n, n_frames)
    obj = as_array(xp, O).astype(xp.float64)
    if obj.ndim != 2:
        raise ShapeError(f"O must be a 2-D reference image (U, V), got shape {tuple(obj.shape)}")
    check_positive(step, "step")
    h_ss, h_fs = window_offsets(search_window, one_d=(m == 1))
    offsets = _offset_grid(h_ss, h_fs, float(step))
    return xp, data, good, W, u, dij, obj, (h_ss, h_fs), offsets


def _pixel_surfaces(xp, data, idx, W, u, dij, obj, n0, m0, offsets, min_count, backend):
    """Error surfaces (P, K) of the selected pixels for every offset."""
    d_np, w, uy, ux = gather_points(data, idx, W, u)
    if use_numba(xp, backend):
        return call_numba(
            numba_kernels().search_pixels,
            *kernel_points(d_np.T, w, uy, ux, dij, n0, m0),
            np.ascontiguousarray(obj),
            np.ascontiguousarray(offsets),
            int(min_count),
        )
    offs = to_numpy(offsets)
    out = xp.empty((idx.size, offs.shape[0]), dtype=xp.float64)
    base_y = uy[None, :] - dij[:, 0:1] + n0
    base_x = ux[None, :] - dij[:, 1:2] + m0
    d64 = d_np.astype(xp.float64)
    for k in range(offs.shape[0]):
        v = sample(xp, obj, base_y + float(offs[k, 0]), base_x + float(offs[k, 1]))
        ok = ~xp.isnan(v)
        r = xp.where(ok, d64 - w[None, :] * xp.where(ok, v, 0.0), 0.0)
        c = ok.sum(axis=0)
        e = (r * r).sum(axis=0) / (xp.maximum(c, 1) * w)
        out[:, k] = xp.where((c >= min_count) & (c > 0), e, xp.nan)
    return out


def _refine_1d(xp, surf):
    """Sub-step minimum of (P, K) profiles with a checked 3-point parabola.

    Returns ``(pos, valid, all_nan)``: positions in index units (the integer minimum where the
    parabola is not a minimum within one step), and flags.
    """
    n_k = surf.shape[1]
    all_nan = xp.all(xp.isnan(surf), axis=1)
    filled = xp.where(xp.isnan(surf), xp.inf, surf)
    arg = xp.argmin(filled, axis=1)
    if n_k < 3:
        return arg.astype(xp.float64), xp.zeros(arg.shape, dtype=bool), all_nan
    c = xp.clip(arg, 1, n_k - 2)
    rows = xp.arange(surf.shape[0])
    em, e0, ep = surf[rows, c - 1], surf[rows, c], surf[rows, c + 1]
    curv = em + ep - 2.0 * e0
    safe = xp.where(curv > 0, curv, 1.0)
    off = 0.5 * (em - ep) / safe
    pos = c + off
    valid = (curv > 0) & xp.isfinite(off) & (xp.abs(pos - arg) <= 1.0)
    return xp.where(valid, pos, arg.astype(xp.float64)), valid, all_nan


def _refine(xp, surf, n_ss, n_fs, quadratic):
    """Best offset index (P, 2) per pixel, refinement validity and all-NaN flags."""
    n_p = surf.shape[0]
    if n_ss == 1 or n_fs == 1:
        pos1, valid, all_nan = _refine_1d(xp, surf)
        if not quadratic:
            filled = xp.where(xp.isnan(surf), xp.inf, surf)
            pos1 = xp.argmin(filled, axis=1).astype(xp.float64)
            valid = xp.zeros(n_p, dtype=bool)
        zero = xp.zeros(n_p, dtype=xp.float64)
        pos = xp.stack([zero, pos1], axis=1) if n_ss == 1 else xp.stack([pos1, zero], axis=1)
        return pos, valid, all_nan
    cube = surf.reshape(n_p, n_ss, n_fs)
    all_nan = xp.all(xp.isnan(surf), axis=1)
    if not quadratic:
        filled = xp.where(xp.isnan(surf), xp.inf, surf)
        arg = xp.argmin(filled, axis=1)
        pos = xp.stack([arg // n_fs, arg % n_fs], axis=1).astype(xp.float64)
        return pos, xp.zeros(n_p, dtype=bool), all_nan
    safe = xp.where(all_nan[:, None, None], 0.0, cube)
    pos, valid = quadratic_peak_2d(safe, mode="min")
    return pos, valid & ~all_nan, all_nan


@dataclass(frozen=True)
class PixelMapUpdate:
    """Result of :func:`update_pixel_map`.

    Attributes
    ----------
    pixel_map : ndarray of float64, shape (2, M, L)
        The updated pixel map (object pixels).
    error_map : ndarray of float64, shape (M, L)
        Smallest mean squared residual per pixel, ``mean_n (data - W O)**2 / W`` (about the
        mean object value for Poisson data at convergence); NaN where not searched.
    shift : ndarray of float64, shape (2, M, L)
        The update applied to the map (after clipping, filling and regularisation).
    refined : ndarray of bool, shape (M, L)
        True where the quadratic sub-pixel minimum was accepted.
    error : float
        Mean of ``error_map`` over the searched pixels.
    """

    pixel_map: Any
    error_map: Any
    shift: Any
    refined: Any
    error: float


def update_pixel_map(
    data: Any,
    mask: Any,
    W: Any,
    O: Any,  # noqa: E741 - the seed's name for the reference image
    pixel_map: Any,
    n0: float,
    m0: float,
    dij_n: Any,
    *,
    search_window: int | tuple[int, int] = 5,
    step: float = 1.0,
    roi: Any = None,
    quadratic_refinement: bool = True,
    min_frames: int | None = None,
    clip: tuple[float, float] | None = None,
    fill_bad_pix: bool = True,
    filter: float | None = None,
    integrate: bool = False,
    backend: str = "auto",
) -> PixelMapUpdate:
    """Refine the pixel map by minimising the residual of the forward model pixel by pixel.

    For every good pixel in the roi and every shift ``s`` of the window, the error
    ``sum_n (data[n] - W O(u + s - dij_n + (n0, m0)))**2 / (count * W)`` is evaluated over the
    frames whose coordinate falls on valid object pixels (bilinear reading, all pixels and shifts
    at once). The best shift is refined by a quadratic fit to its 3 x 3 neighbourhood of the
    error surface (a 3-point parabola for a 1D window), accepted only where that quadratic has a
    true minimum within one step of the best sample.

    Parameters
    ----------
    data : ndarray of shape (N, M, L)
        Frames (counts).
    mask : bool ndarray of shape (M, L) or None
        True for good pixels.
    W : ndarray of shape (M, L)
        Whitefield (> 0 on good pixels).
    O : ndarray of shape (U, V)
        Reference image (NaN where unknown), e.g. ``make_reference(...).image``.
    pixel_map : ndarray of shape (2, M, L)
        Current pixel map ([0] = ss, [1] = fs), object pixels.
    n0, m0 : float
        Object offsets of the reference.
    dij_n : ndarray of shape (N, 2)
        Translations [ss, fs], object pixels.
    search_window : int or (int, int)
        Full width of the window of shifts along (ss, fs), in steps: shifts
        ``-(w // 2) .. w // 2`` times ``step`` (the ss width is 1 for a single-row detector).
    step : float
        Spacing of the shifts, object pixels (default 1).
    roi : sequence of 4 int, optional
        Only pixels in ``[ss0:ss1, fs0:fs1]`` are updated.
    quadratic_refinement : bool
        Refine below one step (default True); False keeps the best sampled shift.
    min_frames : int, optional
        Fewest valid frames for a shift to count (default half the frames, at least 1).
    clip : (float, float), optional
        Clip each component of the update to ``[lo, hi]`` object pixels.
    fill_bad_pix : bool
        Give pixels that were not updated (masked, or no valid shift) the Gaussian-weighted
        mean update of their neighbours (default True); inside the roi only.
    filter : float, optional
        Sigma (pixels) of a Gaussian smoothing of the update (masked normalised convolution).
    integrate : bool
        Replace the update by its curl-free part (integrate it, then differentiate).
    backend : {"auto", "numba", "xp"}
        Kernel choice (``"auto"``: numba for NumPy when installed).

    Returns
    -------
    PixelMapUpdate
        ``pixel_map``, ``error_map``, ``shift``, ``refined``, ``error``.
    """
    xp, data, good, W, u, dij, obj, (h_ss, h_fs), offsets = _search_inputs(
        data, mask, W, O, pixel_map, dij_n, roi, search_window, step
    )
    n_frames, m, n = data.shape
    min_count = max(1, n_frames // 2) if min_frames is None else int(min_frames)
    idx = xp.flatnonzero(good.ravel())
    surf = _pixel_surfaces(
        xp,
        data,
        idx,
        W,
        u,
        dij,
        obj,
        float(n0),
        float(m0),
        xp.asarray(offsets),
        min_count,
        backend,
    )
    n_ss, n_fs = 2 * h_ss + 1, 2 * h_fs + 1
    pos, valid, all_nan = _refine(xp, surf, n_ss, n_fs, quadratic_refinement)
    shift_p = xp.stack([(pos[:, 0] - h_ss) * step, (pos[:, 1] - h_fs) * step])
    shift_p = xp.where(all_nan[None, :], 0.0, shift_p)
    err_p = xp.where(all_nan, xp.nan, xp.min(xp.where(xp.isnan(surf), xp.inf, surf), axis=1))

    updated = xp.zeros(m * n, dtype=bool)
    updated[idx] = ~all_nan
    updated = updated.reshape(m, n)
    shift = xp.zeros((2, m * n), dtype=xp.float64)
    shift[:, idx] = shift_p
    shift = shift.reshape(2, m, n)
    error_map = xp.full(m * n, xp.nan)
    error_map[idx] = err_p
    error_map = error_map.reshape(m, n)
    refined = xp.zeros(m * n, dtype=bool)
    refined[idx] = valid
    refined = refined.reshape(m, n)
    if clip is not None:
        lo, hi = (float(v) for v in clip)
        shift = xp.clip(shift, lo, hi)
    region = roi_mask(xp, (m, n), roi)
    shift = _regularize(
        xp, shift, updated, region, fill=fill_bad_pix, sigma=filter, curl_free=integrate
    )
    new_map = u + shift
    n_up = int(xp.count_nonzero(updated))
    error = float(xp.nanmean(error_map)) if n_up else math.nan
    logger.debug(
        "update_pixel_map: %d pixels, %d refined, mean |shift| %.3g px, error %.4g",
        n_up,
        int(xp.count_nonzero(refined)),
        float(xp.mean(xp.abs(shift[:, updated]))) if n_up else 0.0,
        error,
    )
    return PixelMapUpdate(
        pixel_map=new_map, error_map=error_map, shift=shift, refined=refined, error=error
    )


# --------------------------------------------------------------------------------------------
# Regularisation
# --------------------------------------------------------------------------------------------


def _smooth(xp, values, weight, sigma):
    nd = ndimage(xp)
    num = nd.gaussian_filter(values * weight, sigma, mode="nearest")
    den = nd.gaussian_filter(weight, sigma, mode="nearest")
    return num, den


def _regularize(xp, shift, known, region, *, fill, sigma, curl_free):
    """Fill, smooth and project a displacement field (2, M, L); ``known`` marks trusted pixels."""
    w = known.astype(xp.float64)
    one_d = shift.shape[1] == 1
    out = shift
    if sigma is not None and sigma > 0:
        s = (0.0, float(sigma)) if one_d else float(sigma)
        num0, den = _smooth(xp, out[0], w, s)
        num1, _ = _smooth(xp, out[1], w, s)
        ok = den > 1e-6
        sm = xp.stack([num0, num1]) / xp.where(ok, den, 1.0)
        out = xp.where((ok & region)[None], sm, out)
        w = xp.where(ok & region, 1.0, 0.0)
        known = ok & region
    if fill and bool(xp.any(region & ~known)) and bool(xp.any(known)):
        s = (0.0, 2.0) if one_d else 2.0
        num0, den = _smooth(xp, out[0], w, s)
        num1, _ = _smooth(xp, out[1], w, s)
        ok = den > 1e-9
        filled = xp.stack([num0, num1]) / xp.where(ok, den, 1.0)
        missing = region & ~known & ok
        out = xp.where(missing[None], filled, out)
        known = known | missing
    if curl_free:
        out = _curl_free(xp, out, known & region)
    return xp.where(region[None], out, 0.0)


def _central_gradient(xp, phi):
    gy = xp.zeros_like(phi)
    gx = xp.zeros_like(phi)
    m, n = phi.shape
    if m > 1:
        gy[1:-1] = 0.5 * (phi[2:] - phi[:-2])
        gy[0] = phi[1] - phi[0]
        gy[-1] = phi[-1] - phi[-2]
    if n > 1:
        gx[:, 1:-1] = 0.5 * (phi[:, 2:] - phi[:, :-2])
        gx[:, 0] = phi[:, 1] - phi[:, 0]
        gx[:, -1] = phi[:, -1] - phi[:, -2]
    return gy, gx


def _curl_free(xp, disp, weight_mask):
    """Gradient part of a displacement field: integrate it (least squares), differentiate."""
    w = weight_mask.astype(xp.float64)
    if not bool(xp.any(w > 0)):
        return disp
    psi, _ = integrate_gradient(disp[0], disp[1], w, maxiter=200, tol=1e-8)
    gy, gx = _central_gradient(xp, psi)
    if disp.shape[1] == 1:
        gy = disp[0]
    return xp.stack([gy, gx])


def regularize_pixel_map(
    pixel_map: Any,
    mask: Any = None,
    *,
    sigma: float | None = None,
    curl_free: bool = True,
    fill: bool = True,
) -> Any:
    """Fill, smooth and/or make curl-free the displacement of a pixel map.

    The displacement ``u - (i, j)`` is processed: masked pixels are filled from their good
    neighbours (Gaussian-weighted mean, sigma 2 px), an optional Gaussian smoothing of width
    ``sigma`` is applied (normalised convolution over good pixels), and with ``curl_free`` the
    displacement is replaced by the gradient of its least-squares integral, as a map produced by
    a phase (``u = (i, j) + grad(psi)``) must be.

    Parameters
    ----------
    pixel_map : ndarray of shape (2, M, L)
        Pixel map ([0] = ss, [1] = fs), object pixels.
    mask : bool ndarray of shape (M, L), optional
        Trusted pixels (default all).
    sigma : float, optional
        Gaussian smoothing width, pixels (None: none).
    curl_free : bool
        Project on curl-free displacements (default True).
    fill : bool
        Fill untrusted pixels (default True).

    Returns
    -------
    ndarray of float64, shape (2, M, L)
        The regularised pixel map.
    """
    xp = get_xp(pixel_map, mask)
    u = as_array(xp, pixel_map).astype(xp.float64)
    if u.ndim != 3 or u.shape[0] != 2:
        raise ShapeError(f"pixel_map must have shape (2, M, L), got {tuple(u.shape)}")
    shape = u.shape[1:]
    good = check_mask(xp, mask, shape)
    ii, jj = xp.meshgrid(
        xp.arange(shape[0], dtype=xp.float64), xp.arange(shape[1], dtype=xp.float64), indexing="ij"
    )
    base = xp.stack([ii, jj])
    disp = xp.where(good[None], u - base, 0.0)
    region = xp.ones(shape, dtype=bool)
    disp = _regularize(xp, disp, good, region, fill=fill, sigma=sigma, curl_free=curl_free)
    return base + disp


# --------------------------------------------------------------------------------------------
# Translations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TranslationUpdate:
    """Result of :func:`update_translations`.

    Attributes
    ----------
    dij_n : ndarray of float64, shape (N, 2)
        Updated translations [ss, fs], object pixels.
    shift : ndarray of float64, shape (N, 2)
        The change applied to each frame's translation.
    refined : ndarray of bool, shape (N,)
        True where the quadratic sub-pixel minimum was accepted.
    error : ndarray of float64, shape (N,)
        Smallest mean squared residual per frame (``mean (data - W O)**2 / W``).
    """

    dij_n: Any
    shift: Any
    refined: Any
    error: Any


def _frame_surfaces(xp, data, idx, W, u, dij, obj, n0, m0, offsets, backend):
    n_frames = data.shape[0]
    d_np, w, uy, ux = gather_points(data, idx, W, u)
    if use_numba(xp, backend):
        err, cnt = call_numba(
            numba_kernels().search_frames,
            *kernel_points(d_np, w, uy, ux, dij, n0, m0),
            np.ascontiguousarray(obj),
            np.ascontiguousarray(offsets),
        )
    else:
        offs = to_numpy(offsets)
        err = xp.empty((n_frames, offs.shape[0]))
        cnt = xp.empty((n_frames, offs.shape[0]))
        d64 = d_np.astype(xp.float64)
        for k in range(offs.shape[0]):
            y = uy[None, :] - dij[:, 0:1] - float(offs[k, 0]) + n0
            x = ux[None, :] - dij[:, 1:2] - float(offs[k, 1]) + m0
            v = sample(xp, obj, y, x)
            ok = ~xp.isnan(v)
            r = xp.where(ok, d64 - w[None, :] * xp.where(ok, v, 0.0), 0.0)
            err[:, k] = (r * r / w[None, :]).sum(axis=1)
            cnt[:, k] = ok.sum(axis=1)
    return err, cnt


def update_translations(
    data: Any,
    mask: Any,
    W: Any,
    O: Any,  # noqa: E741 - the seed's name for the reference image
    pixel_map: Any,
    n0: float,
    m0: float,
    dij_n: Any,
    *,
    search_window: int | tuple[int, int] = 3,
    step: float = 1.0,
    roi: Any = None,
    min_fraction: float = 0.5,
    backend: str = "auto",
) -> TranslationUpdate:
    """Refine each frame's translation against the reference image.

    For every frame and every shift ``t`` of the window, the residual
    ``sum_{i,j} (data - W O(u - (dij_n + t) + (n0, m0)))**2 / W`` is averaged over the valid
    pixels; the best shift is refined by a checked 2D quadratic (3-point parabola for a 1D
    detector) as in :func:`update_pixel_map`.

    Parameters
    ----------
    data, mask, W, O, pixel_map, n0, m0, dij_n
        As for :func:`update_pixel_map`.
    search_window : int or (int, int)
        Full width of the window of shifts (in steps) along (ss, fs); default 3.
    step : float
        Spacing of the shifts, object pixels.
    roi : sequence of 4 int, optional
        Pixels used.
    min_fraction : float
        A shift counts only if at least this fraction of the frame's best-covered shift's
        pixels are valid (default 0.5).
    backend : {"auto", "numba", "xp"}
        Kernel choice.

    Returns
    -------
    TranslationUpdate
        ``dij_n`` (N, 2), ``shift``, ``refined``, ``error``.
    """
    xp, data, good, W, u, dij, obj, (h_ss, h_fs), offsets = _search_inputs(
        data, mask, W, O, pixel_map, dij_n, roi, search_window, step
    )
    idx = xp.flatnonzero(good.ravel())
    err, cnt = _frame_surfaces(
        xp, data, idx, W, u, dij, obj, float(n0), float(m0), xp.asarray(offsets), backend
    )
    best = cnt.max(axis=1, keepdims=True)
    ok = (cnt >= min_fraction * best) & (cnt > 0)
    surf = xp.where(ok, err / xp.maximum(cnt, 1), xp.nan)
    pos, valid, all_nan = _refine(xp, surf, 2 * h_ss + 1, 2 * h_fs + 1, True)
    shift = xp.stack([(pos[:, 0] - h_ss) * step, (pos[:, 1] - h_fs) * step], axis=1)
    shift = xp.where(all_nan[:, None], 0.0, shift)
    error = xp.where(all_nan, xp.nan, xp.min(xp.where(xp.isnan(surf), xp.inf, surf), axis=1))
    return TranslationUpdate(dij_n=dij + shift, shift=shift, refined=valid, error=error)
