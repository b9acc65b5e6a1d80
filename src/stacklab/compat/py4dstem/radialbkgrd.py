"""py4DSTEM ``preprocess.radialbkgrd``: polar-elliptical median backgrounds.

Built on :mod:`stacklab.stem4d.background`. The ellipse ``p_ellipse = (qx0, qy0, a, b, theta)``
has its centre at ``(qx0, qy0)`` = (row, column) and ``theta`` measured from axis 0 toward
axis 1; the polar sample at ``(r, phi)`` is at
``qx = qx0 + r cos(phi) cos(theta) - r (b/a) sin(phi) sin(theta)``,
``qy = qy0 + r cos(phi) sin(theta) + r (b/a) sin(phi) cos(theta)``, on 2-degree phi bins and
1-pixel r bins centred at 0.5, 1.5, ... (py4DSTEM's grid).

Differences from py4DSTEM 0.14.18 (deliberate):

* the median is recomputed after every mask update, so ``maskUpdateIter`` does change the
  background (py4DSTEM takes the median once, before its masking loop);
* the outermost radius that still holds valid samples is kept (py4DSTEM drops it);
* ``center=(qx0, qy0)`` works (py4DSTEM raises ``TypeError``);
* invalid smoothing parameters (the defaults window 3, order 4 among them) raise a
  ``ValueError`` that names them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...backend import to_numpy
from ...errors import ShapeError
from ...stem4d.background import polar_background_1d, polar_background_2d
from ._common import check_int

__all__ = ["get_1D_polar_background", "get_2D_polar_background"]

logger = logging.getLogger(__name__)


def _ellipse(p_ellipse: Any, center: Any) -> tuple[float, float, float, float, float]:
    try:
        qx0, qy0, a, b, theta = (float(v) for v in p_ellipse)
    except (TypeError, ValueError):
        raise ValueError(f"p_ellipse must be (qx0, qy0, a, b, theta), got {p_ellipse!r}") from None
    if center is not None:
        try:
            qx0, qy0 = (float(v) for v in center)
        except (TypeError, ValueError):
            raise ValueError(f"center must be None or (qx0, qy0), got {center!r}") from None
    return qx0, qy0, a, b, theta


def get_1D_polar_background(
    data: Any,
    p_ellipse: Any,
    center: Any = None,
    maskUpdateIter: int = 3,
    min_relative_threshold: float = 4,
    smoothing: bool = False,
    smoothingWindowSize: int = 3,
    smoothingPolyOrder: int = 4,
    smoothing_log: bool = True,
    min_background_value: float = 1e-3,
    return_polararr: bool = False,
) -> tuple[Any, ...]:
    """Median polar-elliptical background of a diffraction pattern.

    The pattern is sampled on the polar grid of the ellipse; at every radius the median over
    angle of the valid samples is the background. Then, ``maskUpdateIter`` times, samples
    brighter than ``min_relative_threshold`` times the background at their radius (Bragg
    spots) are masked and the median is recomputed.

    Parameters
    ----------
    data : ndarray of shape (Qx, Qy)
        Usually a mean diffraction pattern.
    p_ellipse : (qx0, qy0, a, b, theta)
        Ellipse centre (px), semi-axes (only ``b / a`` matters) and angle (rad).
    center : (qx0, qy0), optional
        Overrides the centre of ``p_ellipse``.
    maskUpdateIter : int
        Number of mask updates (>= 0).
    min_relative_threshold : float
        Samples above this multiple of the background are masked.
    smoothing : bool
        Apply a Savitzky-Golay filter (``smoothingWindowSize`` odd, > ``smoothingPolyOrder``).
    smoothingWindowSize, smoothingPolyOrder : int
        Filter window and polynomial order.
    smoothing_log : bool
        Smooth the logarithm of the background and exponentiate.
    min_background_value : float
        Floor of the background (and of its logarithm's argument).
    return_polararr : bool
        Also return the masked polar samples.

    Returns
    -------
    background1D : ndarray of float64, shape (nr,)
        Background at each radius.
    r_bins : ndarray of float64, shape (nr,)
        Elliptical radius of each entry (px along the ``a`` axis).
    polarData : numpy.ma.MaskedArray of shape (180, nr), optional
        The polar samples, axes (phi, r); masked where outside the image or too bright
        (only with ``return_polararr=True``).
    """
    if smoothing:
        window = check_int(smoothingWindowSize, "smoothingWindowSize", minimum=1)
        order = check_int(smoothingPolyOrder, "smoothingPolyOrder", minimum=0)
        if window < 3 or window % 2 == 0 or order >= window:
            raise ValueError(
                "smoothing needs an odd smoothingWindowSize >= 3 larger than smoothingPolyOrder, "
                f"got smoothingWindowSize={window}, smoothingPolyOrder={order}"
            )
        smooth = (window, order)
    else:
        smooth = None
    image = np.asarray(to_numpy(data), dtype=np.float64)
    if image.ndim != 2:
        raise ShapeError(f"data must be a 2-D diffraction pattern, got shape {image.shape}")
    result = polar_background_1d(
        image,
        _ellipse(p_ellipse, center),
        n_iter=check_int(maskUpdateIter, "maskUpdateIter", minimum=0),
        min_relative_threshold=float(min_relative_threshold),
        smoothing=smooth,
        smooth_log=bool(smoothing_log),
        min_value=float(min_background_value),
    )
    logger.debug("get_1D_polar_background: %d mask update(s)", result.n_iter)
    if return_polararr:
        polar = np.ma.masked_array(result.polar, mask=result.mask)
        return result.background, result.r_bins, polar
    return result.background, result.r_bins


def get_2D_polar_background(
    data: Any, background1D: Any, r_bins: Any, p_ellipse: Any, center: Any = None
) -> np.ndarray:
    """2-D background image from a 1-D polar-elliptical background.

    ``background1D`` is interpolated linearly in ``r_bins`` (and extrapolated linearly beyond
    both ends) at the elliptical radius of every pixel.

    Parameters
    ----------
    data : ndarray of shape (Qx, Qy)
        The pattern (only its shape is used).
    background1D, r_bins : ndarray of shape (nr,)
        As returned by :func:`get_1D_polar_background`.
    p_ellipse : (qx0, qy0, a, b, theta)
        The ellipse.
    center : (qx0, qy0), optional
        Overrides the centre of ``p_ellipse``.

    Returns
    -------
    ndarray of float64, shape (Qx, Qy)
    """
    shape = tuple(int(s) for s in np.shape(data))
    if len(shape) != 2:
        raise ShapeError(f"data must be a 2-D diffraction pattern, got shape {shape}")
    bg = np.ma.getdata(
        np.asarray(to_numpy(background1D))
        if not np.ma.isMaskedArray(background1D)
        else background1D
    )
    return polar_background_2d(shape, bg, to_numpy(r_bins), _ellipse(p_ellipse, center))
