"""Background estimates of localization movies: temporal median and spatial smoothing.

Blinking emitters are off most of the time, so the per-pixel median over time is the background
(:func:`temporal_median`, whole block or running window). Within one frame, a grey-scale opening
of the smoothed frame removes spots narrower than its window (:func:`spatial_background`); it is
biased low by a fraction of the noise.
The fitter estimates a local background per spot by itself; these estimates serve detection on
strongly structured backgrounds and the blink analyses.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from .. import backend
from ..errors import ShapeError, check_positive

__all__ = ["spatial_background", "subtract_background", "temporal_median"]

logger = logging.getLogger(__name__)


def _as_float_stack(frames: Any) -> Any:
    xp = backend.get_xp(frames)
    a = xp.asarray(frames)
    if a.ndim != 3 or a.shape[0] == 0:
        raise ShapeError(f"frames must have shape (n, rows, cols) with n >= 1, got {a.shape}")
    if a.dtype.kind not in "iuf":
        raise TypeError(f"frames must be real numbers, got dtype {a.dtype}")
    return a if a.dtype.kind == "f" else a.astype(xp.float32)


def temporal_median(frames: Any, window: int | None = None) -> Any:
    """Per-pixel median over time.

    Parameters
    ----------
    frames : ndarray of shape (n, rows, cols)
        Images (integers are converted to float32). Not modified.
    window : int, optional
        None: one median over all ``n`` frames. An odd integer: running median over ``window``
        frames centred on each frame (edges use the nearest frames, ``mode="nearest"``).

    Returns
    -------
    ndarray of shape (rows, cols) or (n, rows, cols)
        The background (same float dtype), on the input's device.
    """
    a = _as_float_stack(frames)
    xp = backend.get_xp(a)
    if window is None:
        return xp.median(a, axis=0).astype(a.dtype)
    if not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd positive integer, got {window!r}")
    ndi = backend.ndimage(xp)
    return ndi.median_filter(a, size=(window, 1, 1), mode="nearest")


def spatial_background(
    frames: Any,
    *,
    method: Literal["opening", "gaussian", "median"] = "opening",
    size: int = 9,
    sigma: float | None = None,
) -> Any:
    """Smooth background of every frame.

    Parameters
    ----------
    frames : ndarray of shape (n, rows, cols)
        Images. Not modified.
    method : {"opening", "gaussian", "median"}
        ``opening``: a Gaussian of sigma ``size / 6`` (so that noise does not bias the
        minimum), a grey-scale opening with a ``size x size`` window (removes spots narrower
        than it), then a Gaussian of sigma ``size / 4``; ``gaussian``: a Gaussian of ``sigma``
        (spots bias it upward); ``median``: a ``size x size`` median filter.
    size : int
        Window size in pixels (opening, median); larger than a spot (about 6 PSF sigmas).
    sigma : float, optional
        Gaussian sigma in pixels for ``method="gaussian"`` (default ``size / 2``).

    Returns
    -------
    ndarray of shape (n, rows, cols)
        Background per pixel and frame.
    """
    a = _as_float_stack(frames)
    xp = backend.get_xp(a)
    ndi = backend.ndimage(xp)
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if method == "opening":
        smooth = ndi.gaussian_filter(a, (0, size / 6.0, size / 6.0), mode="nearest")
        opened = ndi.grey_opening(smooth, size=(1, size, size), mode="nearest")
        return ndi.gaussian_filter(opened, (0, size / 4.0, size / 4.0), mode="nearest")
    if method == "gaussian":
        s = size / 2.0 if sigma is None else float(sigma)
        check_positive(s, "sigma")
        return ndi.gaussian_filter(a, (0, s, s), mode="nearest")
    if method == "median":
        return ndi.median_filter(a, size=(1, size, size), mode="nearest")
    raise ValueError(f"method must be 'opening', 'gaussian' or 'median', got {method!r}")


def subtract_background(frames: Any, background: Any) -> Any:
    """Return ``frames - background`` as a new float array (broadcast over frames).

    Parameters
    ----------
    frames : ndarray of shape (n, rows, cols)
        Images. Not modified.
    background : ndarray of shape (rows, cols) or (n, rows, cols)
        From :func:`temporal_median` or :func:`spatial_background`.

    Returns
    -------
    ndarray of shape (n, rows, cols)
    """
    a = _as_float_stack(frames)
    xp = backend.get_xp(a, background)
    b = xp.asarray(background)
    if b.shape not in (a.shape, a.shape[1:]):
        raise ShapeError(f"background must have shape {a.shape[1:]} or {a.shape}, got {b.shape}")
    return a - b.astype(a.dtype)
