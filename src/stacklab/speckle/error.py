"""Residual of the speckle-tracking forward model: totals per frame, per pixel and overall.

``forward_model`` evaluates
``W[i, j] * O(u[0, i, j] - dij[n, 0] + n0, u[1, i, j] - dij[n, 1] + m0)``
with the bilinear reading of :mod:`stacklab.speckle._interp` (NaN where the coordinate misses the
reference or touches an unknown object pixel); ``calc_error`` compares it with the data. A zero
object value is a valid value here (speckle_tracking counts it as missing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import call_numba, use_numba
from ._common import (
    as_array,
    check_pixel_map,
    check_scan,
    check_translations,
    numba_kernels,
)
from ._interp import sample

__all__ = ["SpeckleError", "calc_error", "forward_model"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeckleError:
    """Residual of the forward model.

    Attributes
    ----------
    total : float
        ``sum (data - W O)**2`` over good pixels of every frame where the model is defined
        (counts**2).
    frame : ndarray of float64, shape (N,)
        Mean squared residual of each frame over its valid pixels (NaN if none).
    pixel : ndarray of float64, shape (M, L)
        Mean squared residual of each pixel over its valid frames (NaN if none).
    residual : ndarray of float64, shape (N, M, L)
        Squared residual per frame and pixel, 0 where not valid.
    valid : ndarray of bool, shape (N, M, L)
        Where the residual is defined (good pixel inside the roi, model defined).
    normalised : float
        ``total / sum(W O)`` over the valid entries: about 1 for a converged fit of Poisson
        counts (a reduced chi-square).
    """

    total: float
    frame: Any
    pixel: Any
    residual: Any
    valid: Any
    normalised: float


def forward_model(
    W: Any,
    O: Any,  # noqa: E741 - the seed's name for the reference image
    pixel_map: Any,
    n0: float,
    m0: float,
    dij_n: Any,
    *,
    backend: str = "auto",
) -> Any:
    """Predicted frames of the speckle-tracking forward model.

    Parameters
    ----------
    W : ndarray of shape (M, L)
        Whitefield (counts).
    O : ndarray of shape (U, V)
        Reference image (NaN where unknown).
    pixel_map : ndarray of shape (2, M, L)
        Pixel map ([0] = ss, [1] = fs), object pixels.
    n0, m0 : float
        Object offsets, object pixels.
    dij_n : ndarray of shape (N, 2)
        Translations [ss, fs], object pixels.
    backend : {"auto", "numba", "xp"}
        Kernel choice (``"auto"``: numba for NumPy when installed).

    Returns
    -------
    ndarray of float64, shape (N, M, L)
        ``W * O(u - dij_n + (n0, m0))``; NaN where the coordinate is not covered by ``O``.
    """
    from ..backend import get_xp

    xp = get_xp(W, O, pixel_map, dij_n)
    W = as_array(xp, W).astype(xp.float64)
    obj = as_array(xp, O).astype(xp.float64)
    shape = tuple(W.shape)
    u = check_pixel_map(xp, pixel_map, shape)
    dij = as_array(xp, dij_n).astype(xp.float64)
    if dij.ndim != 2 or dij.shape[1] != 2:
        raise ValueError(f"dij_n must have shape (N, 2), got {tuple(dij.shape)}")
    if use_numba(xp, backend):
        vals = call_numba(
            numba_kernels().read_points,
            np.ascontiguousarray(u[0].ravel()),
            np.ascontiguousarray(u[1].ravel()),
            np.ascontiguousarray(dij[:, 0]),
            np.ascontiguousarray(dij[:, 1]),
            float(n0),
            float(m0),
            np.ascontiguousarray(obj),
        )
        return W[None] * vals.reshape(dij.shape[0], *shape)
    y = u[0][None] - dij[:, 0, None, None] + float(n0)
    x = u[1][None] - dij[:, 1, None, None] + float(m0)
    return W[None] * sample(xp, obj, y, x)


def calc_error(
    data: Any,
    mask: Any,
    W: Any,
    dij_n: Any,
    O: Any,  # noqa: E741 - the seed's name for the reference image
    pixel_map: Any,
    n0: float,
    m0: float,
    *,
    roi: Any = None,
    backend: str = "auto",
) -> SpeckleError:
    """Squared residual of the forward model per frame, per pixel and in total.

    ``eps[n, i, j] = mask[i, j] * (data[n, i, j] - W[i, j] O(u[:, i, j] - dij[n] + (n0, m0)))**2``
    with bilinear reading of ``O``.

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
    O : ndarray of shape (U, V)
        Reference image.
    pixel_map : ndarray of shape (2, M, L)
        Pixel map, object pixels.
    n0, m0 : float
        Object offsets.
    roi : sequence of 4 int, optional
        Only pixels ``[ss0:ss1, fs0:fs1]`` count.
    backend : {"auto", "numba", "xp"}
        Kernel choice.

    Returns
    -------
    SpeckleError
        ``total``, ``frame`` (N,), ``pixel`` (M, L), ``residual`` (N, M, L), ``valid``,
        ``normalised``.
    """
    xp, data, good, W = check_scan(data, mask, W, roi)
    check_translations(xp, dij_n, data.shape[0])
    model = forward_model(xp.where(good, W, 1.0), O, pixel_map, n0, m0, dij_n, backend=backend)
    valid = good[None] & ~xp.isnan(model)
    res = xp.where(valid, (data.astype(xp.float64) - xp.where(valid, model, 0.0)) ** 2, 0.0)
    cnt_f = valid.sum(axis=(1, 2))
    cnt_p = valid.sum(axis=0)
    frame = xp.where(cnt_f > 0, res.sum(axis=(1, 2)) / xp.maximum(cnt_f, 1), xp.nan)
    pixel = xp.where(cnt_p > 0, res.sum(axis=0) / xp.maximum(cnt_p, 1), xp.nan)
    total = float(res.sum())
    expected = float(xp.where(valid, model, 0.0).sum())
    normalised = total / expected if expected > 0 else float("nan")
    return SpeckleError(
        total=total, frame=frame, pixel=pixel, residual=res, valid=valid, normalised=normalised
    )
