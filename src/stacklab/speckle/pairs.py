"""A pixel map from the local shifts between pairs of frames (no reference image needed).

Two frames ``n`` and ``m`` whose translations differ by ``Delta = dij[m] - dij[n]`` (object pixels)
see the same object point at detector positions ``i - s/2`` and ``i + s/2`` where::

    u(i + s/2) - u(i - s/2) = Delta        i.e.  grad(u)(i) . s(i) = Delta  (to third order in s)

so the local shift ``s(i)`` between whitefield-normalised frames measures the Jacobian of the
pixel map directly, with the absolute scale given by the known translations.
:func:`estimate_pixel_map` measures ``s`` for neighbouring pairs of scan positions by a
symmetric Lucas-Kanade fit in a Gaussian window (both frames shifted by ``-+ Delta / 2`` with a
band-limited Fourier shift, then a few Gauss-Newton steps on the small remainder), solves for the
Jacobian at every pixel by least squares over the pairs, and integrates it
(:func:`stacklab.speckle.phase.integrate_gradient`).

The window average biases the shifts where they vary strongly (a strong aberration), so the
estimate is repeated in *object coordinates*: every frame is resampled at ``u^-1(y)`` with the
current map (one bilinear weight set shared by all frames, so every frame sees the same
interpolation), the same fit gives the small remaining distortion ``e(y)``, and the map becomes
``u + e(u)``. Each pass divides the error by about five.

Unlike the iterative reference / pixel-map updates, whose smooth (long-wavelength) errors decay by
only ``1 - |<exp(i k . dij)>|**2`` per iteration (``k**2 var(dij)`` for wavelengths longer than the
scan), this estimate has no slow modes: it is the starting point of :func:`stacklab.speckle.run`,
whose iterations then refine the fine structure.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..backend import ndimage, to_numpy
from ..core.masks import fill_masked
from ..core.shifts import fourier_shift
from ._common import (
    as_pair,
    check_pixel_map,
    check_scan,
    check_translations,
)
from .phase import integrate_gradient

__all__ = ["choose_pairs", "estimate_pixel_map"]

logger = logging.getLogger(__name__)


def choose_pairs(dij_n: Any, *, factor: float = 1.5, max_pairs: int | None = None) -> np.ndarray:
    """Pairs of frames whose translations are near neighbours.

    Parameters
    ----------
    dij_n : ndarray of shape (N, 2)
        Translations [ss, fs], object pixels.
    factor : float
        A pair is kept when its distance is at most ``factor`` times the median
        nearest-neighbour distance (1.5 keeps the axis and diagonal neighbours of a raster).
    max_pairs : int, optional
        Keep at most this many (the closest).

    Returns
    -------
    ndarray of int, shape (P, 2)
        ``(n, m)`` frame indices with ``n < m``.
    """
    d = np.asarray(to_numpy(dij_n), dtype=float)
    n = d.shape[0]
    if n < 2:
        return np.zeros((0, 2), dtype=int)
    diff = d[:, None, :] - d[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    nearest = dist.min(axis=1)
    finite = nearest[np.isfinite(nearest) & (nearest > 0)]
    if finite.size == 0:
        return np.zeros((0, 2), dtype=int)
    scale = float(np.median(finite))
    sel = np.argwhere((dist <= factor * scale) & (dist > 0))
    sel = sel[sel[:, 0] < sel[:, 1]]
    if max_pairs is not None and sel.shape[0] > max_pairs:
        order = np.argsort(dist[sel[:, 0], sel[:, 1]], kind="stable")
        sel = sel[order[:max_pairs]]
    return sel


def _warp(xp, stack, index, y, x):
    """Bilinear values of frames ``stack[index[p]]`` at ``(y[p], x[p])``; zero outside."""
    _, m, n = stack.shape
    valid = (y >= 0) & (y <= m - 1) & (x >= 0) & (x <= n - 1)
    yc = xp.clip(y, 0.0, m - 1.0)
    xc = xp.clip(x, 0.0, n - 1.0)
    i0 = xp.minimum(xp.floor(yc).astype(xp.int64), max(m - 2, 0))
    j0 = xp.minimum(xp.floor(xc).astype(xp.int64), max(n - 2, 0))
    fy = yc - i0
    fx = xc - j0
    i1 = xp.minimum(i0 + 1, m - 1)
    j1 = xp.minimum(j0 + 1, n - 1)
    base = index.astype(xp.int64)[:, None, None] * (m * n)
    flat = stack.ravel()
    v = (
        (1 - fy) * (1 - fx) * flat[base + i0 * n + j0]
        + (1 - fy) * fx * flat[base + i0 * n + j1]
        + fy * (1 - fx) * flat[base + i1 * n + j0]
        + fy * fx * flat[base + i1 * n + j1]
    )
    return xp.where(valid, v, 0.0), valid


def _periodic_shift(xp, frames, shifts):
    """Band-limited shift of frames made periodic by mirroring (no wrap-around ringing)."""
    _, m, n = frames.shape
    pm = min(m // 2, 16) if m > 1 else 0
    pn = min(n // 2, 16)
    ext = xp.pad(frames, ((0, 0), (pm, pm), (pn, pn)), mode="reflect")
    out = fourier_shift(ext, shifts)
    return xp.ascontiguousarray(out[:, pm : pm + m, pn : pn + n])


def _inverse_warp(xp, frames, weight, u):
    """Resample frames (N, M, L) and a weight (M, L) at ``u^-1(y)`` on the pixel grid ``y``."""
    _, m, n = frames.shape
    ii = xp.arange(m, dtype=xp.float64)[:, None] * xp.ones((1, n))
    jj = xp.ones((m, 1)) * xp.arange(n, dtype=xp.float64)[None, :]
    disp = xp.stack([u[0] - ii, u[1] - jj])
    ci, cj = ii, jj
    for _ in range(4):  # fixed point of i = y - D(i)
        dy, _v = _warp(xp, disp[0][None], xp.zeros(1, dtype=xp.int64), ci[None], cj[None])
        dx, _v = _warp(xp, disp[1][None], xp.zeros(1, dtype=xp.int64), ci[None], cj[None])
        ci = xp.clip(ii - dy[0], -1.0, m)
        cj = xp.clip(jj - dx[0], -1.0, n)
    idx = xp.zeros(1, dtype=xp.int64)
    w, valid = _warp(xp, weight[None], idx, ci[None], cj[None])
    n_frames = frames.shape[0]
    # One set of bilinear weights for all frames: gather (N, M, L) at once.
    yc = xp.clip(ci, 0.0, m - 1.0)
    xc = xp.clip(cj, 0.0, n - 1.0)
    i0 = xp.minimum(xp.floor(yc).astype(xp.int64), max(m - 2, 0))
    j0 = xp.minimum(xp.floor(xc).astype(xp.int64), max(n - 2, 0))
    fy = yc - i0
    fx = xc - j0
    i1 = xp.minimum(i0 + 1, m - 1)
    j1 = xp.minimum(j0 + 1, n - 1)
    flat = frames.reshape(n_frames, -1)
    out = (
        (1 - fy) * (1 - fx) * flat[:, i0 * n + j0]
        + (1 - fy) * fx * flat[:, i0 * n + j1]
        + fy * (1 - fx) * flat[:, i1 * n + j0]
        + fy * fx * flat[:, i1 * n + j1]
    )
    return xp.ascontiguousarray(out), xp.where(valid[0], w[0], 0.0)


def _pair_jacobian(xp, frames, wgt, d_np, scale, sel, sigma, iterations, chunk, one_d):
    """Least-squares Jacobian of the displacement over the pairs; returns (jac (2,2,M,L), trace)."""
    nd = ndimage(xp)
    _, m, n = frames.shape
    a = xp.asarray(scale, dtype=xp.float64)
    ii = xp.arange(m, dtype=xp.float64)[None, :, None]
    jj = xp.arange(n, dtype=xp.float64)[None, None, :]
    a_ss = xp.zeros((m, n))
    a_sf = xp.zeros((m, n))
    a_ff = xp.zeros((m, n))
    b = xp.zeros((2, 2, m, n))  # b[comp, axis] = sum w g_comp s_axis

    ftype = xp.float32

    # Box window of about the same width as a Gaussian of ``sigma`` (cost independent of it).
    size = 2 * max(round(1.7 * float(sigma)), 1) + 1
    box = (1, 1, size) if one_d else (1, size, size)

    def smooth(v):
        return nd.uniform_filter(v, box, mode="constant")

    for c0 in range(0, sel.shape[0], int(chunk)):
        pc = sel[c0 : c0 + int(chunk)]
        delta = xp.asarray(d_np[pc[:, 1]] - d_np[pc[:, 0]])
        s0 = delta / a[None, :]
        if one_d:
            s0 = s0 * xp.asarray([0.0, 1.0])[None, :]
        idx_n = xp.asarray(pc[:, 0])
        idx_m = xp.asarray(pc[:, 1])
        zero = xp.zeros_like(idx_n)
        pidx = xp.arange(pc.shape[0])
        r_y = xp.zeros((pc.shape[0], m, n), dtype=ftype)
        r_x = xp.zeros((pc.shape[0], m, n), dtype=ftype)
        # Band-limited (Fourier) pre-shift of both frames by -+ s0 / 2: no interpolation blur.
        base_a = _periodic_shift(xp, frames[idx_n], 0.5 * s0).astype(ftype)
        base_b = _periodic_shift(xp, frames[idx_m], -0.5 * s0).astype(ftype)
        oy = 0.5 * s0[:, 0, None, None]
        ox = 0.5 * s0[:, 1, None, None]
        w_a, _ = _warp(xp, wgt[None], zero, ii - oy, jj - ox)
        w_b, _ = _warp(xp, wgt[None], zero, ii + oy, jj + ox)
        w_ab = xp.minimum(w_a, w_b).astype(ftype)
        for it in range(max(int(iterations), 1)):
            if it == 0:
                img_a, img_b, w = base_a, base_b, w_ab
            else:
                hy = 0.5 * r_y
                hx = 0.5 * r_x
                img_a, va = _warp(xp, base_a, pidx, ii - hy, jj - hx)
                img_b, vb = _warp(xp, base_b, pidx, ii + hy, jj + hx)
                w = xp.where(va & vb, w_ab, 0.0).astype(ftype)
                img_a = img_a.astype(ftype)
                img_b = img_b.astype(ftype)
            gx = 0.5 * (xp.gradient(img_a, axis=2) + xp.gradient(img_b, axis=2))
            di = img_b - img_a
            if one_d:
                sxx = smooth(w * gx * gx)
                sxd = smooth(w * gx * di)
                ok = sxx > 1e-12 * float(xp.max(sxx))
                r_x = r_x - xp.where(ok, sxd / xp.where(ok, sxx, 1.0), 0.0)
                continue
            gy = 0.5 * (xp.gradient(img_a, axis=1) + xp.gradient(img_b, axis=1))
            syy = smooth(w * gy * gy)
            sxx = smooth(w * gx * gx)
            sxy = smooth(w * gx * gy)
            syd = smooth(w * gy * di)
            sxd = smooth(w * gx * di)
            det = syy * sxx - sxy * sxy
            ok = det > 1e-12 * float(xp.max(det))
            safe = xp.where(ok, det, 1.0)
            r_y = r_y - xp.where(ok, (sxx * syd - sxy * sxd) / safe, 0.0)
            r_x = r_x - xp.where(ok, (syy * sxd - sxy * syd) / safe, 0.0)
        conf = smooth(w).astype(xp.float64)
        r_y = r_y.astype(xp.float64)
        r_x = r_x.astype(xp.float64)
        s_y = s0[:, 0, None, None] + r_y
        s_x = s0[:, 1, None, None] + r_x
        g_y = -a[0] * r_y
        g_x = -a[1] * r_x
        a_ss += (conf * s_y * s_y).sum(axis=0)
        a_sf += (conf * s_y * s_x).sum(axis=0)
        a_ff += (conf * s_x * s_x).sum(axis=0)
        b[0, 0] += (conf * g_y * s_y).sum(axis=0)
        b[0, 1] += (conf * g_y * s_x).sum(axis=0)
        b[1, 0] += (conf * g_x * s_y).sum(axis=0)
        b[1, 1] += (conf * g_x * s_x).sum(axis=0)
    # J[c, :] = b[c, :] A^-1, A regularised for scans without spread along one axis.
    trace = a_ss + a_ff
    tmax = float(xp.max(trace))
    eps = 1e-6 * tmax if tmax > 0 else 1.0
    a11 = a_ss + eps
    a22 = a_ff + eps
    det = a11 * a22 - a_sf * a_sf
    inv11, inv12, inv22 = a22 / det, -a_sf / det, a11 / det
    jac = xp.stack(
        [
            xp.stack([b[c, 0] * inv11 + b[c, 1] * inv12, b[c, 0] * inv12 + b[c, 1] * inv22])
            for c in range(2)
        ]
    )
    return jac, trace


def _integrate_jacobian(xp, jac, trace, good, one_d):
    """Displacement (2, M, L) whose gradient best matches ``jac`` where the pairs cover."""
    tmax = float(xp.max(trace))
    if not tmax > 0:
        raise ValueError("no pixel is covered by a pair of frames: check dij_n and the mask")
    weight = (good & (trace > 0.05 * tmax)).astype(xp.float64)
    disp = xp.zeros((2, *jac.shape[2:]))
    for c in range(2):
        if one_d and c == 0:
            continue
        phi, _ = integrate_gradient(jac[c, 0], jac[c, 1], weight, maxiter=100, tol=1e-6)
        disp[c] = phi
    return disp


def estimate_pixel_map(
    data: Any,
    mask: Any,
    W: Any,
    dij_n: Any,
    pixel_map: Any = None,
    *,
    roi: Any = None,
    sigma: float = 3.0,
    iterations: int = 2,
    passes: int = 2,
    pairs: Any = None,
    chunk: int = 32,
    later_iterations: int = 1,
    refine: bool = False,
) -> Any:
    """Estimate the pixel map from local shifts between neighbouring frames.

    Parameters
    ----------
    data : ndarray of shape (N, M, L)
        Frames (counts).
    mask : bool ndarray of shape (M, L) or None
        True for good pixels.
    W : ndarray of shape (M, L)
        Whitefield (> 0 on good pixels).
    dij_n : ndarray of shape (N, 2)
        Translations [ss, fs], object pixels.
    pixel_map : ndarray of shape (2, M, L), optional
        Nominal map giving the scale of each axis (default the identity); only its mean slope
        along each axis is used, e.g. the astigmatic stretch of :func:`generate_pixel_map`.
    roi : sequence of 4 int, optional
        Only data in ``[ss0:ss1, fs0:fs1]`` steer the estimate (the map covers the whole frame).
    sigma : float
        Half width of the local shift fit's window: a box of ``2 round(1.7 sigma) + 1`` pixels
        (default 3: 11 x 11).
    iterations : int
        Gauss-Newton steps of the local fit in the first pass (default 2; later passes use 1).
    passes : int
        1 + number of re-estimates in object coordinates (default 2).
    pairs : ndarray of shape (P, 2), optional
        Frame pairs (default :func:`choose_pairs`).
    chunk : int
        Pairs processed at once (bounds the memory to about ``20 * chunk`` frames).
    later_iterations : int
        Gauss-Newton steps of the local fit in the passes after the first (default 1).
    refine : bool
        Treat ``pixel_map`` as the current estimate and only run re-estimates in object
        coordinates (``passes`` of them), e.g. after the whitefield was improved.

    Returns
    -------
    ndarray of float64, shape (2, M, L)
        The pixel map ([0] = ss, [1] = fs) in object pixels, on the input's device. Its mean
        offset is arbitrary (that of the nominal map plus a zero-mean displacement).

    Raises
    ------
    ValueError
        If there is no usable pair of frames or every pixel is masked.
    """
    xp, data, good, W = check_scan(data, mask, W, roi)
    n_frames, m, n = data.shape
    dij = check_translations(xp, dij_n, n_frames)
    if refine and pixel_map is None:
        raise ValueError("refine=True needs the current pixel_map")
    if pixel_map is None:
        scale = (1.0, 1.0)
    else:
        u0 = to_numpy(pixel_map)
        sl_ss = float(np.diff(u0[0], axis=0).mean()) if m > 1 else 1.0
        sl_fs = float(np.diff(u0[1], axis=1).mean()) if n > 1 else 1.0
        scale = as_pair((sl_ss, sl_fs), "pixel_map slope")
    sel = choose_pairs(dij) if pairs is None else np.asarray(to_numpy(pairs), dtype=int)
    if sel.ndim != 2 or sel.shape[1] != 2 or sel.shape[0] == 0:
        raise ValueError("need at least one pair of frames with different translations")
    one_d = m == 1
    d_np = to_numpy(dij)
    wmax = float(W[good].max())
    wgt = xp.where(good, W / wmax, 0.0)
    norm = xp.where(good[None], data / xp.where(good, W, 1.0)[None], 0.0)
    if bool(xp.any(~good)) and not one_d and m >= 3 and n >= 3:
        norm = fill_masked(norm, ~good, method="median", size=3)
        norm = xp.where(xp.isnan(norm), 1.0, norm)
    norm = xp.ascontiguousarray(norm.astype(xp.float64))

    ii = xp.arange(m, dtype=xp.float64)[:, None] * xp.ones((1, n))
    jj = xp.ones((m, 1)) * xp.arange(n, dtype=xp.float64)[None, :]
    if refine:
        u = check_pixel_map(xp, pixel_map, (m, n))
        n_more = max(int(passes), 1)
    else:
        jac, trace = _pair_jacobian(
            xp, norm, wgt, d_np, scale, sel, sigma, iterations, chunk, one_d
        )
        disp = _integrate_jacobian(xp, jac, trace, good, one_d)
        u = xp.stack([scale[0] * ii, scale[1] * jj]) + disp
        n_more = max(int(passes), 1) - 1
    for _ in range(n_more):
        frames_w, w_w = _inverse_warp(xp, norm, wgt, u)
        good_w = w_w > 0.05
        jac, trace = _pair_jacobian(
            xp, frames_w, w_w, d_np, (1.0, 1.0), sel, sigma, later_iterations, chunk, one_d
        )
        resid = _integrate_jacobian(xp, jac, trace, good_w, one_d)
        idx = xp.zeros(1, dtype=xp.int64)
        e_y, _ = _warp(
            xp, resid[0][None], idx, xp.clip(u[0], 0, m - 1)[None], xp.clip(u[1], 0, n - 1)[None]
        )
        e_x, _ = _warp(
            xp, resid[1][None], idx, xp.clip(u[0], 0, m - 1)[None], xp.clip(u[1], 0, n - 1)[None]
        )
        u = u + xp.stack([e_y[0], e_x[0]])
    logger.debug(
        "estimate_pixel_map: %d pairs, %d passes, window sigma %.3g px", sel.shape[0], passes, sigma
    )
    return u
