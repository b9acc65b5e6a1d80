"""Wavefront phase from a pixel map: weighted least-squares integration of its gradient.

Sign convention and units (those documented for speckle_tracking's ``integrate_pixel_map``; the
package itself returns the opposite sign, see ``PEERS.md``). With ``Phi' = wavelength z Phi /
(2 pi)`` the pixel map satisfies::

    grad Phi'(i Delta_ss) = i Delta_ss - Delta_x (u[i] + n0)

(``Delta_ss`` the detector pixel, ``Delta_x = dss`` the object pixel, metres). The part
``i (Delta_ss - dss) - dss n0`` is the wavefront of the nominal geometry (a spherical wave from the
focus, plus a tilt); what :func:`integrate_pixel_map` returns is the rest, the phase of the lens
aberration relative to that nominal wave::

    d Phi / d i_a = -(2 pi Delta_a d_a / (wavelength z)) * (u[a] - i_a)     (rad per pixel)

for a = ss (``Delta_ss = x_pixel_size``, ``d_ss = dss``) and fs (``y_pixel_size``, ``dfs``). Ray
angles are ``theta_a = d_a (u[a] - i_a) / z`` (rad), i.e. ``theta = -(wavelength / 2 pi) grad_x
Phi``. A pixel map displaced by ``+grad(psi)`` (psi in px**2) therefore gives
``Phi = -(2 pi Delta dss / (wavelength z)) psi``.

The integration minimises ``sum w (D Phi - g)**2`` over the forward differences ``D`` of
neighbouring pixels, with the target of each difference the mean of its two pixels' gradients and
the weight the smaller of their weights. The unweighted problem is a Neumann Poisson equation
solved exactly with a DCT; with weights it is solved by conjugate gradients preconditioned by that
DCT solver (NumPy or CuPy through :func:`stacklab.backend.fft`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..backend import fft, get_xp, to_numpy
from ..errors import ShapeError, check_positive
from ._common import as_array

__all__ = ["PhaseResult", "integrate_gradient", "integrate_pixel_map", "remove_terms"]

logger = logging.getLogger(__name__)

_REMOVE = ("none", "piston", "tilt", "defocus", "astigmatism")


@dataclass(frozen=True)
class PhaseResult:
    """Phase and ray angles integrated from a pixel map.

    Attributes
    ----------
    phase : ndarray of float64, shape (M, L)
        Aberration phase (rad) with the terms named in ``removed`` subtracted (weighted fit).
    angles : ndarray of float64, shape (2, M, L)
        Residual ray angles [ss, fs] (rad), consistent with ``phase``.
    removed : dict
        Fitted coefficients of the removed terms (rad, coordinates in metres on the detector):
        keys among ``piston``, ``tilt_ss``, ``tilt_fs``, ``defocus`` (x**2 + y**2),
        ``quad_ss``, ``quad_fs``, ``quad_cross``.
    iterations : int
        Conjugate-gradient iterations used (0 for the direct DCT solution).
    """

    phase: Any
    angles: Any
    removed: dict = field(default_factory=dict)
    iterations: int = 0


def _laplacian_eigenvalues(xp, shape):
    m, n = shape
    ky = 2.0 - 2.0 * xp.cos(math.pi * xp.arange(m) / m)
    kx = 2.0 - 2.0 * xp.cos(math.pi * xp.arange(n) / n)
    lam = ky[:, None] + kx[None, :]
    lam[0, 0] = 1.0
    return lam


def _dct_solve(xp, rhs, lam):
    """Solve the Neumann Laplacian ``L phi = rhs`` (mean-free solution)."""
    f = fft(xp)
    c = f.dctn(rhs, type=2, norm="ortho")
    c = c / lam
    c[0, 0] = 0.0
    return f.idctn(c, type=2, norm="ortho")


def _apply(xp, phi, wy, wx):
    """``D^T diag(w) D phi`` for forward differences (Neumann Laplacian with edge weights)."""
    out = xp.zeros_like(phi)
    if phi.shape[0] > 1:
        e = wy * (phi[1:, :] - phi[:-1, :])
        out[:-1, :] -= e
        out[1:, :] += e
    if phi.shape[1] > 1:
        e = wx * (phi[:, 1:] - phi[:, :-1])
        out[:, :-1] -= e
        out[:, 1:] += e
    return out


def _rhs(xp, shape, ty, tx, wy, wx):
    out = xp.zeros(shape, dtype=xp.float64)
    if shape[0] > 1:
        e = wy * ty
        out[:-1, :] -= e
        out[1:, :] += e
    if shape[1] > 1:
        e = wx * tx
        out[:, :-1] -= e
        out[:, 1:] += e
    return out


def integrate_gradient(
    gy: Any,
    gx: Any,
    weight: Any = None,
    *,
    maxiter: int = 500,
    tol: float = 1e-10,
) -> tuple[Any, int]:
    """Least-squares integration of a gradient field sampled at pixel centres.

    Parameters
    ----------
    gy, gx : ndarray of shape (M, L)
        Gradient along rows (ss) and columns (fs) in units per pixel. Values at zero-weight
        pixels are ignored (they may be NaN).
    weight : ndarray of shape (M, L), optional
        Non-negative pixel weights (default all 1). Each difference between neighbours gets the
        smaller of their two weights.
    maxiter : int
        Largest number of preconditioned conjugate-gradient iterations (weighted case).
    tol : float
        Relative residual at which the iterations stop.

    Returns
    -------
    phi : ndarray of float64, shape (M, L)
        The integral, with zero weighted mean (zero mean when unweighted). Zero-weight pixels
        are filled by a harmonic (smoothest) extension of their surroundings.
    iterations : int
        Conjugate-gradient iterations used (0 when unweighted).
    """
    xp = get_xp(gy, gx, weight)
    gy = xp.asarray(gy, dtype=xp.float64)
    gx = xp.asarray(gx, dtype=xp.float64)
    if gy.shape != gx.shape or gy.ndim != 2:
        raise ShapeError(f"gy and gx must be 2-D arrays of equal shape, got {gy.shape}, {gx.shape}")
    shape = gy.shape
    if weight is None:
        w = xp.ones(shape, dtype=xp.float64)
    else:
        w = xp.asarray(weight, dtype=xp.float64)
        if w.shape != shape:
            raise ShapeError(f"weight must have shape {shape}, got {w.shape}")
        if bool(xp.any(~xp.isfinite(w) | (w < 0))):
            raise ValueError("weight must be finite and >= 0")
    w = w / max(float(w.max()), 1e-300)
    gy = xp.where(w > 0, gy, 0.0)
    gx = xp.where(w > 0, gx, 0.0)
    # Differences touching a zero-weight pixel get a tiny weight and a zero target, so such
    # pixels are filled smoothly (harmonic extension) instead of being left undetermined.
    eps = 1e-6
    wy = xp.maximum(xp.minimum(w[1:, :], w[:-1, :]), eps)
    wx = xp.maximum(xp.minimum(w[:, 1:], w[:, :-1]), eps)
    ty = 0.5 * (gy[1:, :] + gy[:-1, :])
    tx = 0.5 * (gx[:, 1:] + gx[:, :-1])
    lam = _laplacian_eigenvalues(xp, shape)
    b = _rhs(xp, shape, ty, tx, wy, wx)
    uniform = bool(xp.all(w == 1.0))
    if uniform:
        return _dct_solve(xp, b, lam), 0
    # Preconditioned CG on the weighted normal equations.
    phi = _dct_solve(xp, b, lam)
    r = b - _apply(xp, phi, wy, wx)
    z = _dct_solve(xp, r, lam)
    p = z.copy()
    rz = float((r * z).sum())
    b_norm = max(float(xp.sqrt((b * b).sum())), 1e-300)
    it = 0
    for it in range(1, maxiter + 1):
        if float(xp.sqrt((r * r).sum())) <= tol * b_norm:
            it -= 1
            break
        ap = _apply(xp, p, wy, wx)
        pap = float((p * ap).sum())
        if pap <= 0:
            break
        alpha = rz / pap
        phi = phi + alpha * p
        r = r - alpha * ap
        z = _dct_solve(xp, r, lam)
        rz_new = float((r * z).sum())
        p = z + (rz_new / rz) * p
        rz = rz_new
    wsum = float(w.sum())
    if wsum > 0:
        phi = phi - float((w * phi).sum()) / wsum
    return phi, it


def _basis(xp, shape, remove, x_pixel_size, y_pixel_size):
    m, n = shape
    y = (xp.arange(m, dtype=xp.float64) - (m - 1) / 2.0) * x_pixel_size
    x = (xp.arange(n, dtype=xp.float64) - (n - 1) / 2.0) * y_pixel_size
    yy, xx = xp.meshgrid(y, x, indexing="ij")
    terms: dict[str, Any] = {}
    level = _REMOVE.index(remove)
    if level >= 1:
        terms["piston"] = xp.ones(shape)
    if level >= 2:
        if m > 1:
            terms["tilt_ss"] = yy
        if n > 1:
            terms["tilt_fs"] = xx
    if level == 3:
        terms["defocus"] = yy**2 + xx**2
    if level >= 4:
        if m > 1:
            terms["quad_ss"] = yy**2
        if n > 1:
            terms["quad_fs"] = xx**2
        if m > 1 and n > 1:
            terms["quad_cross"] = yy * xx
    return terms


def remove_terms(
    phase: Any,
    weight: Any = None,
    remove: Literal["none", "piston", "tilt", "defocus", "astigmatism"] = "tilt",
    *,
    x_pixel_size: float = 1.0,
    y_pixel_size: float = 1.0,
) -> tuple[Any, dict]:
    """Subtract the weighted least-squares fit of low-order terms from a phase map.

    Parameters
    ----------
    phase : ndarray of shape (M, L)
        Phase (rad).
    weight : ndarray of shape (M, L), optional
        Fit weights (default 1); zero-weight pixels are corrected but do not steer the fit.
    remove : {"none", "piston", "tilt", "defocus", "astigmatism"}
        Cumulative: ``"tilt"`` removes piston and tilts; ``"defocus"`` also ``y**2 + x**2``;
        ``"astigmatism"`` also ``y**2``, ``x**2`` and ``x*y`` separately (instead of defocus).
    x_pixel_size, y_pixel_size : float
        Pixel size along ss and fs: coordinates are in these units about the detector centre.

    Returns
    -------
    phase : ndarray of float64, shape (M, L)
        Corrected phase.
    coefficients : dict
        Fitted coefficient of each removed term.
    """
    if remove not in _REMOVE:
        raise ValueError(f"remove must be one of {_REMOVE}, got {remove!r}")
    xp = get_xp(phase, weight)
    phase = xp.asarray(phase, dtype=xp.float64)
    w = xp.ones(phase.shape) if weight is None else xp.asarray(weight, dtype=xp.float64)
    terms = _basis(xp, phase.shape, remove, x_pixel_size, y_pixel_size)
    if not terms:
        return phase, {}
    names = list(terms)
    a = xp.stack([terms[k].ravel() for k in names], axis=1)
    sw = xp.sqrt(xp.maximum(w, 0.0)).ravel()
    ok = sw > 0
    ph = xp.where(xp.isfinite(phase.ravel()), phase.ravel(), 0.0)
    coef, *_ = np.linalg.lstsq(to_numpy((a * sw[:, None])[ok]), to_numpy((ph * sw)[ok]), rcond=None)
    coef_x = xp.asarray(coef)
    fit = (a @ coef_x).reshape(phase.shape)
    return phase - fit, {k: float(c) for k, c in zip(names, coef)}


def integrate_pixel_map(
    pixel_map: Any,
    weight: Any,
    wavelength: float,
    z: float,
    x_pixel_size: float,
    y_pixel_size: float,
    dss: float,
    dfs: float,
    *,
    remove: Literal["none", "piston", "tilt", "defocus", "astigmatism"] = "tilt",
    maxiter: int = 500,
    tol: float = 1e-10,
) -> PhaseResult:
    """Integrate a pixel map into the lens-aberration phase (rad) and the ray angles.

    Parameters
    ----------
    pixel_map : ndarray of shape (2, M, L)
        Pixel map u ([0] = ss, [1] = fs), object pixels.
    weight : ndarray of shape (M, L) or None
        Pixel weights, e.g. ``W * mask`` (None: all 1); zero-weight pixels do not steer the fit.
    wavelength : float
        Wavelength (m).
    z : float
        Focus-to-detector distance (m).
    x_pixel_size, y_pixel_size : float
        Detector pixel size along ss and fs (m).
    dss, dfs : float
        Object pixel size along ss and fs (m), e.g. from :func:`generate_pixel_map`.
    remove : {"none", "piston", "tilt", "defocus", "astigmatism"}
        Low-order terms removed from the phase by a weighted fit (see :func:`remove_terms`);
        default piston and tilt (the tilt depends on the arbitrary offsets n0, m0).
    maxiter, tol : int, float
        Conjugate-gradient limits of :func:`integrate_gradient`.

    Returns
    -------
    PhaseResult
        ``phase`` (M, L) rad, ``angles`` (2, M, L) rad, ``removed`` coefficients.

    Notes
    -----
    ``d phase / d i_a = -(2 pi x_a d_a / (wavelength z)) (u[a] - i_a)`` with ``x_a`` the detector
    pixel and ``d_a`` the object pixel along axis ``a``: the sign documented by
    speckle_tracking (module docstring). For a single-row detector (M = 1) only the fs term
    exists.
    """
    for v, name in (
        (wavelength, "wavelength"),
        (z, "z"),
        (x_pixel_size, "x_pixel_size"),
        (y_pixel_size, "y_pixel_size"),
        (dss, "dss"),
        (dfs, "dfs"),
    ):
        check_positive(v, name)
    xp = get_xp(pixel_map, weight)
    u = as_array(xp, pixel_map).astype(xp.float64)
    if u.ndim != 3 or u.shape[0] != 2:
        raise ShapeError(f"pixel_map must have shape (2, M, L), got {tuple(u.shape)}")
    shape = u.shape[1:]
    w = xp.ones(shape) if weight is None else as_array(xp, weight).astype(xp.float64)
    if w.shape != shape:
        raise ShapeError(f"weight must have shape {shape} (M, L), got {tuple(w.shape)}")
    w = xp.where(xp.isfinite(w) & xp.all(xp.isfinite(u), axis=0), w, 0.0)
    if not bool(xp.any(w > 0)):
        raise ValueError("weight is zero everywhere: nothing to integrate")
    ii, jj = xp.meshgrid(
        xp.arange(shape[0], dtype=xp.float64), xp.arange(shape[1], dtype=xp.float64), indexing="ij"
    )
    k_ss = 2.0 * math.pi * x_pixel_size * dss / (wavelength * z)
    k_fs = 2.0 * math.pi * y_pixel_size * dfs / (wavelength * z)
    du_ss = xp.where(w > 0, u[0] - ii, 0.0)
    du_fs = xp.where(w > 0, u[1] - jj, 0.0)
    gy = -k_ss * du_ss
    gx = -k_fs * du_fs
    phi, iterations = integrate_gradient(gy, gx, w, maxiter=maxiter, tol=tol)
    phi, coef = remove_terms(phi, w, remove, x_pixel_size=x_pixel_size, y_pixel_size=y_pixel_size)
    # Angles of the removed terms, subtracted from the raw ray angles.
    theta_ss = dss * du_ss / z
    theta_fs = dfs * du_fs / z
    m, n = shape
    y = (ii - (m - 1) / 2.0) * x_pixel_size
    x = (jj - (n - 1) / 2.0) * y_pixel_size
    dphi_dy = coef.get("tilt_ss", 0.0) + 2.0 * y * (
        coef.get("defocus", 0.0) + coef.get("quad_ss", 0.0)
    )
    dphi_dy = dphi_dy + coef.get("quad_cross", 0.0) * x
    dphi_dx = coef.get("tilt_fs", 0.0) + 2.0 * x * (
        coef.get("defocus", 0.0) + coef.get("quad_fs", 0.0)
    )
    dphi_dx = dphi_dx + coef.get("quad_cross", 0.0) * y
    scale = wavelength / (2.0 * math.pi)
    angles = xp.stack([theta_ss + scale * dphi_dy, theta_fs + scale * dphi_dx])
    return PhaseResult(phase=phi, angles=angles, removed=coef, iterations=iterations)
