"""Drop-in replacement for magtrack's documented API (``magtrack.core``), built on stacklab.

Every function of magtrack's documented API is here with its documented signature, array layout
and return shapes, so ``from stacklab.compat import magtrack as mt`` can replace
``import magtrack as mt``:

* stacks are **frames-last**, ``(W, W, n_images)`` (``stack[row, col, frame]``);
* ``x`` is the column index (axis 1), ``y`` the row index (axis 0), pixel centres at integers;
* profiles are ``(n_bins, n_images)``; Z look-up tables are ``(1 + n_bins, n_ref)`` with the
  z-coordinates in row 0.

Everything runs on NumPy or CuPy input (the array module is taken from the stack); results stay
on the input's device. The numerics are those of magtrack 1.0.0 and are checked against its
recorded outputs (``tests/golden/magtrack``) to float rounding, with these deliberate
differences:

* **The documented API wins over 1.0.0's code** where they disagree: ``center_of_mass``
  defaults to ``background='none'`` (1.0.0: ``'median'``), ``lookup_z`` to ``n_local=5``
  (1.0.0: 7), ``stack_to_xyzp_advanced`` to ``"use fft_profile": True`` (1.0.0: False), and
  ``fft_profile(stack, x, y, ...)`` is the windowed profile (1.0.0 calls that
  ``fft_profile_with_center``; its centre-less ``fft_profile`` is ``fft_profile(stack)`` here).
* **Inputs are never modified.** magtrack's ``binmean`` clips ``x`` in place and its windowed
  ``fft_profile`` multiplies the caller's stack by the window; here both work on copies.
* **The Gaussian window of** ``fft_profile`` **is centred on the bead** (row ``y``, column
  ``x``). magtrack centres it on row ``x``, column ``y``, the mirror image across the diagonal.
* **lookup_z has no NaN dead zones.** magtrack returns NaN whenever the best-matching Z-LUT plane
  is within ``n_local // 2 + 1`` planes of either end; here the fit window narrows near the ends
  (staying centred on the best plane) and the result is clipped to the table's z range, so every
  profile gets a finite z. Away from the ends the result is magtrack's to float rounding.
* ``qi`` with a NaN start returns NaN for that image (magtrack can crash SciPy); ``auto_conv*``
  and ``radial_profile`` likewise return NaN for non-finite centres.

Known limits of magtrack's methods are kept (they are what its users' results are made of) and
documented per function: ``center_of_mass`` is pulled toward the frame centre ``(W - 1) / 2``,
``qi`` is one three-point parabola step on raw intensity (not quadrant interpolation), and the
``fft_profile`` radial range ``rmax`` is in units of ``W / 2`` FFT samples, so ``rmax = 0.5``
reaches a quarter of the sampling frequency.
"""

from __future__ import annotations

import logging
import math
import warnings
from types import ModuleType
from typing import Any

import numpy as np

from .. import backend
from ..backend import get_xp
from ..core.peaks import parabolic_vertex as _core_parabolic_vertex
from ..core.profiles import bin_mean as _core_bin_mean
from ..core.profiles import radial_profile as _core_radial_profile
from ..errors import ShapeError

__all__ = [
    "_qi_quadratic_offsets",
    "_qi_sample_axis_profiles",
    "auto_conv",
    "auto_conv_multiline",
    "auto_conv_multiline_sub_pixel",
    "auto_conv_sub_pixel",
    "binmean",
    "center_of_mass",
    "crop_stack_to_rois",
    "fft_profile",
    "gaussian",
    "gaussian_2d",
    "lookup_z",
    "parabolic_vertex",
    "pearson",
    "qi",
    "radial_profile",
    "stack_to_xyzp",
    "stack_to_xyzp_advanced",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# argument helpers
# --------------------------------------------------------------------------------------------


def _float_array(xp: ModuleType, arr: Any) -> Any:
    """``arr`` as a float array: float32/float64 kept, integers and bool widened to float64."""
    arr = xp.asarray(arr)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"expected a real numeric array, got dtype {arr.dtype}")
    if arr.dtype == xp.float32 or arr.dtype == xp.float64:
        return arr
    return arr.astype(xp.float64)


def _stack(stack: Any, *, square: bool = False) -> tuple[ModuleType, Any]:
    """Validate a frames-last stack ``(rows, cols, n_images)``; return (xp, float stack)."""
    xp = get_xp(stack)
    arr = xp.asarray(stack)
    if arr.ndim != 3 or arr.size == 0:
        raise ShapeError(
            f"stack must be a non-empty 3-D array of shape (n_pixels, n_pixels, n_images), "
            f"got shape {tuple(arr.shape)}"
        )
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"stack must be a real numeric array, got dtype {arr.dtype}")
    if square and arr.shape[0] != arr.shape[1]:
        raise ShapeError(
            f"stack images must be square (n_pixels, n_pixels, n_images), got shape {arr.shape}"
        )
    return xp, _float_array(xp, arr)


def _coords(xp: ModuleType, value: Any, n: int, name: str) -> Any:
    """A float64 vector of ``n`` per-image coordinates on ``xp``'s device."""
    arr = _on(xp, value)
    arr = xp.asarray(arr, dtype=xp.float64)
    if arr.ndim == 0:
        arr = xp.full(n, float(arr), dtype=xp.float64)
    if arr.shape != (n,):
        raise ShapeError(f"{name} must have shape ({n},) (one value per image), got {arr.shape}")
    return arr


def _on(xp: ModuleType, value: Any) -> Any:
    """Move ``value`` to the device of ``xp`` (NumPy <-> CuPy) without other changes."""
    if xp is np:
        return backend.to_numpy(value) if backend.is_cupy(value) else np.asarray(value)
    return xp.asarray(value)


def _int_param(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _window_weights(n_local: int) -> np.ndarray:
    """magtrack's weighted fit as squared-residual weights: ``(h + 1 - |t|)**2``."""
    h = n_local // 2
    return (h + 1.0 - np.abs(np.arange(-h, h + 1.0))) ** 2


# --------------------------------------------------------------------------------------------
# small numerical utilities
# --------------------------------------------------------------------------------------------


def binmean(x: Any, weights: Any, n_bins: int) -> Any:
    """Mean of ``weights`` per integer bin ``x``, column by column.

    Parameters
    ----------
    x : int ndarray of shape (n_values, n_datasets)
        Bin index of every value. Entries ``>= n_bins`` (and negative ones) belong to no bin and
        are ignored.
    weights : float ndarray of shape (n_values, n_datasets)
        The values to average.
    n_bins : int
        Number of bins, ``0 .. n_bins - 1``.

    Returns
    -------
    bin_means : ndarray of shape (n_bins, n_datasets)
        Mean of the weights in each bin of each column; **NaN for an empty bin**. float32 for
        float32 weights, float64 otherwise. On the input's device.

    Notes
    -----
    Differs from magtrack 1.0.0 by design: magtrack clips ``x`` **in place** to ``n_bins``;
    here ``x`` is left untouched. Negative ``x`` are ignored (magtrack's ``bincount`` raises).
    """
    xp = get_xp(x, weights)
    x = xp.asarray(x)
    weights = xp.asarray(weights)
    if x.ndim != 2 or x.size == 0:
        raise ShapeError(f"x must be a non-empty 2-D array (n_values, n_datasets), got {x.shape}")
    if x.dtype.kind not in "iu":
        raise TypeError(f"x must hold integer bin indices, got dtype {x.dtype}")
    if weights.shape != x.shape:
        raise ShapeError(f"weights must have the shape of x {x.shape}, got {weights.shape}")
    n_bins = _int_param(n_bins, "n_bins", 1)
    # core.bin_mean is frames-first: one data set per row.
    return _core_bin_mean(weights.T, x.T, n_bins).T


def pearson(x: Any, y: Any) -> Any:
    """Pearson correlation coefficients between every column of ``y`` and every column of ``x``.

    Parameters
    ----------
    x : ndarray of shape (n, m)
        ``m`` data sets of ``n`` samples (a 1-D ``x`` is one column).
    y : ndarray of shape (n, k)
        ``k`` data sets of ``n`` samples (a 1-D ``y`` is one column).

    Returns
    -------
    r : ndarray of shape (k, m)
        ``r[j, i]`` correlates column ``j`` of ``y`` with column ``i`` of ``x``. NaN samples count
        as their column's mean (they drop out after centring); a constant column gives NaN.
        float32 if both inputs are float32, float64 otherwise.
    """
    xp = get_xp(x, y)
    x = _float_array(xp, x)
    y = _float_array(xp, y)
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] == 0:
        raise ShapeError(f"x and y must be 2-D (n, m) and (n, k), got {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ShapeError(
            f"x and y must have the same number of rows (samples), got {x.shape} and {y.shape}"
        )
    dtype = xp.result_type(x.dtype, y.dtype)
    x = x.astype(dtype, copy=False)
    y = y.astype(dtype, copy=False)

    def centred(a):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: mean of nothing
            mean = xp.nanmean(a, axis=0)
        c = a - mean
        return xp.where(xp.isnan(c), 0, c)

    xc = centred(x)
    yc = centred(y)
    num = yc.T @ xc
    den = xp.sqrt(xp.sum(yc * yc, axis=0)[:, None] * xp.sum(xc * xc, axis=0)[None, :])
    ok = den > 0
    return xp.where(ok, num / xp.where(ok, den, 1), xp.nan).astype(dtype, copy=False)


def gaussian(x: Any, mu: float, sigma: float) -> Any:
    """Unnormalised 1-D Gaussian ``exp(-(x - mu)**2 / (2 sigma**2))`` (peak value 1 at ``mu``).

    Parameters
    ----------
    x : array_like
        Where to evaluate it (any shape; integers are evaluated in float64).
    mu : float
        Centre, in the units of ``x``.
    sigma : float
        Standard deviation, in the units of ``x``; > 0.

    Returns
    -------
    ndarray, shape of ``x``
        On the device of ``x``.
    """
    xp = get_xp(x, mu, sigma)
    x = _float_array(xp, x)
    return xp.exp(-((x - mu) ** 2) / (2.0 * sigma**2))


def gaussian_2d(x: Any, y: Any, mu_x: Any, mu_y: Any, sigma: float) -> Any:
    """Unnormalised 2-D Gaussians on the grid ``(x, y)``, one per centre ``(mu_x, mu_y)``.

    Parameters
    ----------
    x : 1-D array of shape (nx,)
        Coordinates along the first output axis.
    y : 1-D array of shape (ny,)
        Coordinates along the second output axis.
    mu_x, mu_y : 1-D arrays of shape (n_images,)
        Centre of each Gaussian.
    sigma : float
        Standard deviation along both axes, in the units of ``x`` and ``y``.

    Returns
    -------
    ndarray of shape (nx, ny, n_images)
        ``g[i, j, k] = exp(-((x[i] - mu_x[k])**2 + (y[j] - mu_y[k])**2) / (2 sigma**2))``.
        Axis 0 follows ``x`` (magtrack's documented layout): used as a ``(row, col)`` image this
        puts ``x`` on the rows, so for an image window centred at column ``x0``, row ``y0`` call
        ``gaussian_2d(rows, cols, y0, x0, sigma)``.
    """
    xp = get_xp(x, y, mu_x, mu_y)
    x = _float_array(xp, x).ravel()
    y = _float_array(xp, y).ravel()
    mu_x = _float_array(xp, mu_x).reshape(-1)
    mu_y = _float_array(xp, mu_y).reshape(-1)
    if mu_x.shape != mu_y.shape:
        raise ShapeError(f"mu_x and mu_y must have the same length, got {mu_x.shape}, {mu_y.shape}")
    dx2 = (x[:, None, None] - mu_x[None, None, :]) ** 2
    dy2 = (y[None, :, None] - mu_y[None, None, :]) ** 2
    return xp.exp(-(dx2 + dy2) / (2.0 * sigma**2))


def crop_stack_to_rois(stack: Any, rois: Any) -> Any:
    """Cut the same square regions out of every image of a stack.

    Parameters
    ----------
    stack : ndarray of shape (n_rows, n_cols, n_images), any dtype
        The image stack, frames last.
    rois : int ndarray of shape (n_roi, 4)
        One ROI per row, ``[top, bottom, left, right]`` in pixels (``bottom`` and ``right``
        exclusive). All ROIs must be squares of the same width ``bottom - top`` and lie inside
        the images.

    Returns
    -------
    cropped_stack : ndarray of shape (width, width, n_images, n_roi)
        Same dtype and device as ``stack`` (a copy).
    """
    xp = get_xp(stack)
    stack = xp.asarray(stack)
    if stack.ndim != 3 or stack.size == 0:
        raise ShapeError(f"stack must be a non-empty 3-D array, got shape {tuple(stack.shape)}")
    r = backend.to_numpy(rois)
    if r.ndim == 1 and r.shape == (4,):
        r = r[None, :]
    if r.ndim != 2 or r.shape[1] != 4 or r.shape[0] == 0:
        raise ShapeError(
            f"rois must have shape (n_roi, 4) = [top, bottom, left, right], got {r.shape}"
        )
    if r.dtype.kind not in "iu":
        if r.dtype.kind != "f" or not np.all(r == np.round(r)):
            raise TypeError(f"rois must hold integer pixel indices, got {r.dtype}")
        r = r.astype(np.int64)
    r = r.astype(np.int64)
    top, bottom, left, right = r.T
    width = int(bottom[0] - top[0])
    if width < 1:
        raise ValueError(f"rois[0] has bottom <= top: {r[0].tolist()}")
    if np.any(bottom - top != width) or np.any(right - left != width):
        raise ValueError(
            f"every ROI must be a square of width {width} (from rois[0]); got heights "
            f"{(bottom - top).tolist()} and widths {(right - left).tolist()}"
        )
    n_rows, n_cols = stack.shape[:2]
    if np.any(top < 0) or np.any(left < 0) or np.any(bottom > n_rows) or np.any(right > n_cols):
        raise ValueError(f"rois must lie inside the {n_rows}x{n_cols} images, got {r.tolist()}")
    offs = np.arange(width)
    row_idx = xp.asarray(top[:, None] + offs)  # (n_roi, width)
    col_idx = xp.asarray(left[:, None] + offs)
    cropped = stack[row_idx[:, :, None], col_idx[:, None, :]]  # (n_roi, width, width, n_images)
    return xp.moveaxis(cropped, 0, -1)


def parabolic_vertex(data: Any, vertex_est: Any, n_local: int, weighted: bool = True) -> Any:
    """Refine extrema by a least-squares parabola through the ``n_local`` nearest samples.

    Parameters
    ----------
    data : ndarray of shape (n_datasets, n_datapoints)
        One profile per row.
    vertex_est : ndarray of shape (n_datasets,)
        Estimated index of each extremum; rounded half-to-even, then clamped into the profile.
    n_local : int
        Number of samples in the fit, odd and >= 3.
    weighted : bool, optional
        Weight the residuals by ``h + 1 - |i - h|`` (``h = n_local // 2``, e.g. 1 2 3 2 1), as
        NumPy's ``polyfit(w=...)`` does; default True.

    Returns
    -------
    vertex : float64 ndarray of shape (n_datasets,)
        Vertex ``-b / (2a)`` of the fitted parabola in sample index units. NaN where the rounded
        estimate is within ``n_local // 2`` samples of either end (the window would touch the
        end; magtrack's convention, kept because callers test for it), where the estimate is NaN,
        or where the fit is flat.

    Notes
    -----
    Computed by :func:`stacklab.core.peaks.parabolic_vertex` with ``edge="nan"``; magtrack's
    ``polyfit`` weights ``w`` are its squared-residual weights ``w**2``.
    """
    xp = get_xp(data, vertex_est)
    data = xp.asarray(data)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or data.size == 0:
        raise ShapeError(
            f"data must be a non-empty 2-D array (n_datasets, n_datapoints), got {data.shape}"
        )
    n = data.shape[1]
    est = xp.asarray(vertex_est, dtype=xp.float64).reshape(-1)
    if est.shape != (data.shape[0],):
        raise ShapeError(
            f"vertex_est must have shape ({data.shape[0]},) (one per row of data), got {est.shape}"
        )
    # magtrack clamps the rounded estimate into the profile (and then rejects the ends); core
    # rejects out-of-range indices, so clamp first. Non-finite estimates give NaN.
    est = xp.where(xp.isfinite(est), xp.clip(xp.rint(est), 0, n - 1), xp.nan)
    ww = _window_weights(int(n_local)) if weighted else None
    if ww is not None and xp is not np:
        ww = xp.asarray(ww)
    return _core_parabolic_vertex(data, est, n_local=n_local, window_weights=ww, edge="nan")


# --------------------------------------------------------------------------------------------
# x, y
# --------------------------------------------------------------------------------------------


def center_of_mass(stack: Any, background: str = "none") -> tuple[Any, Any]:
    """Centre of mass of every image of a stack.

    Parameters
    ----------
    stack : float ndarray of shape (n_pixels, n_pixels, n_images)
        The images, frames last.
    background : {"none", "mean", "median"}, optional
        Weights: the raw intensity (``"none"``, the documented default), or the absolute
        deviation ``|I - m|`` from the per-image mean or median.

    Returns
    -------
    x : ndarray of shape (n_images,)
        Column coordinate of the centre, in pixels. float32 for float32 stacks, else float64.
    y : ndarray of shape (n_images,)
        Row coordinate of the centre, in pixels. NaN where the weights sum to zero.

    Notes
    -----
    The documented default ``background='none'`` is followed; magtrack 1.0.0's code defaults to
    ``'median'``. Every pixel with weight pulls the result toward the frame centre
    ``(W - 1) / 2``: with ``'none'`` the bright background dominates and the result is close to
    the frame centre; ``'mean'`` and ``'median'`` weight the background noise ``|I - m|`` too and
    move the answer roughly a quarter of the way from the bead toward the frame centre. It is a
    coarse first guess for the auto-convolution refinements, as in magtrack.
    """
    if background not in ("none", "mean", "median"):
        raise ValueError(f"background must be 'none', 'mean' or 'median', got {background!r}")
    xp, st = _stack(stack)
    n_rows, n_cols, n = st.shape
    if background == "none":
        w = st
    elif background == "mean":
        w = xp.abs(st - xp.mean(st, axis=(0, 1)))
    else:
        w = xp.abs(st - xp.median(st.reshape(n_rows * n_cols, n), axis=0))
    col_marginal = xp.sum(w, axis=0)  # (n_cols, n)
    row_marginal = xp.sum(w, axis=1)  # (n_rows, n)
    total = xp.sum(col_marginal, axis=0)
    ok = total != 0
    safe = xp.where(ok, total, 1)
    x = xp.sum(xp.arange(n_cols, dtype=st.dtype)[:, None] * col_marginal, axis=0) / safe
    y = xp.sum(xp.arange(n_rows, dtype=st.dtype)[:, None] * row_marginal, axis=0) / safe
    return xp.where(ok, x, xp.nan).astype(st.dtype), xp.where(ok, y, xp.nan).astype(st.dtype)


def _n_lines(width: int, line_ratio: float) -> int:
    """magtrack's number of averaged lines: ``2 * int(W * line_ratio // 2) + 1``."""
    if not (isinstance(line_ratio, int | float | np.integer | np.floating)) or not (
        math.isfinite(line_ratio) and line_ratio >= 0
    ):
        raise ValueError(f"line_ratio must be a finite number >= 0, got {line_ratio!r}")
    return 2 * int(width * line_ratio // 2) + 1


def _line_autoconvolutions(xp, st, x_old, y_old, n_lines: int):
    """Auto-convolutions of the lines through ``(x_old, y_old)``; magtrack's auto_conv kernel.

    For each image, the mean of ``n_lines`` neighbouring columns around ``rint(x_old)`` (a
    profile along the rows, which locates ``y``) and of ``n_lines`` rows around ``rint(y_old)``
    (locates ``x``) is taken, its mean removed, multiplied by a Gaussian of sigma ``W / 6``
    centred on the unrounded start, and convolved with itself. The ``W`` samples of the full
    ``2W - 1`` convolution starting at ``(W - 1) // 2`` are kept, so the self-convolution of a
    profile symmetric about ``c`` peaks at ``m = 2c - (W - 1) // 2``.

    Returns ``col_con (n, W)``, ``row_con (n, W)`` (float64) and a mask of images with a finite
    start and finite convolutions. Lines falling outside the image are clamped to its edge.
    """
    width = st.shape[0]
    n = st.shape[2]
    start_ok = xp.isfinite(x_old) & xp.isfinite(y_old)
    xs = xp.where(start_ok, x_old, (width - 1) / 2.0)
    ys = xp.where(start_ok, y_old, (width - 1) / 2.0)
    half = n_lines // 2
    offs = xp.arange(-half, half + 1, dtype=xp.int64)[:, None]
    cols = xp.clip(xp.rint(xs).astype(xp.int64)[None, :] + offs, 0, width - 1)  # (L, n)
    rows = xp.clip(xp.rint(ys).astype(xp.int64)[None, :] + offs, 0, width - 1)
    frames = xp.arange(n, dtype=xp.int64)[None, :]
    col_lines = xp.mean(st[:, cols, frames].astype(xp.float64), axis=1).T  # (n, W) along rows
    row_lines = xp.mean(st[rows, :, frames].astype(xp.float64), axis=0)  # (n, W) along cols
    t = xp.arange(width, dtype=xp.float64)[None, :]
    two_s2 = 2.0 * (width / 6.0) ** 2
    col_lines = (col_lines - xp.mean(col_lines, axis=1, keepdims=True)) * xp.exp(
        -((t - ys[:, None]) ** 2) / two_s2
    )
    row_lines = (row_lines - xp.mean(row_lines, axis=1, keepdims=True)) * xp.exp(
        -((t - xs[:, None]) ** 2) / two_s2
    )
    fft = backend.fft(xp)
    lines = xp.concatenate([col_lines, row_lines], axis=0)  # (2n, W)
    spec = fft.rfft(lines, n=2 * width, axis=1)
    full = fft.irfft(spec * spec, n=2 * width, axis=1)
    first = (width - 1) // 2
    conv = full[:, first : first + width]
    col_con, row_con = conv[:n], conv[n:]
    ok = start_ok & xp.all(xp.isfinite(col_con), axis=1) & xp.all(xp.isfinite(row_con), axis=1)
    return col_con, row_con, ok


def _auto_conv_impl(stack, x_old, y_old, n_lines, return_conv):
    xp, st = _stack(stack, square=True)
    width, _, n = st.shape
    x_old = _coords(xp, x_old, n, "x_old")
    y_old = _coords(xp, y_old, n, "y_old")
    col_con, row_con, ok = _line_autoconvolutions(xp, st, x_old, y_old, n_lines)
    col_max = xp.where(ok, xp.argmax(col_con, axis=1), -1)
    row_max = xp.where(ok, xp.argmax(row_con, axis=1), -1)
    if return_conv:
        col_con = xp.where(ok[:, None], col_con, xp.nan)
        row_con = xp.where(ok[:, None], row_con, xp.nan)
        return col_max, row_max, col_con.T, row_con
    first = (width - 1) // 2
    x = xp.where(ok, (first + row_max) / 2.0, xp.nan)
    y = xp.where(ok, (first + col_max) / 2.0, xp.nan)
    return x, y


def _auto_conv_sub_pixel_impl(stack, x_old, y_old, n_lines, n_local):
    xp, st = _stack(stack, square=True)
    width, _, n = st.shape
    x_old = _coords(xp, x_old, n, "x_old")
    y_old = _coords(xp, y_old, n, "y_old")
    col_con, row_con, ok = _line_autoconvolutions(xp, st, x_old, y_old, n_lines)
    col_max = xp.where(ok, xp.argmax(col_con, axis=1).astype(xp.float64), xp.nan)
    row_max = xp.where(ok, xp.argmax(row_con, axis=1).astype(xp.float64), xp.nan)
    col_con = xp.where(ok[:, None], col_con, 0.0)
    row_con = xp.where(ok[:, None], row_con, 0.0)
    ww = xp.asarray(_window_weights(_checked_n_local(n_local)))
    col_v = _core_parabolic_vertex(
        col_con, col_max, n_local=int(n_local), window_weights=ww, edge="nan"
    )
    row_v = _core_parabolic_vertex(
        row_con, row_max, n_local=int(n_local), window_weights=ww, edge="nan"
    )
    first = (width - 1) // 2
    return (first + row_v) / 2.0, (first + col_v) / 2.0


def _checked_n_local(n_local: Any) -> int:
    n_local = _int_param(n_local, "n_local", 3)
    if n_local % 2 == 0:
        raise ValueError(f"n_local must be an odd integer >= 3, got {n_local}")
    return n_local


def auto_conv(stack: Any, x_old: Any, y_old: Any, return_conv: bool = False) -> tuple:
    """Centre of a symmetric object from the auto-convolution of one row and one column.

    For each image, the column through ``rint(x_old)`` and the row through ``rint(y_old)`` are
    mean-subtracted, weighted by a Gaussian of sigma ``W / 6`` centred on the unrounded start and
    convolved with themselves; the maximum of each convolution gives the new centre in half-pixel
    steps.

    Parameters
    ----------
    stack : float ndarray of shape (n_pixels, n_pixels, n_images)
        Square images, frames last.
    x_old, y_old : ndarrays of shape (n_images,)
        Start column and row of each centre, in pixels.
    return_conv : bool, optional
        Return the convolutions instead of the centres (default False).

    Returns
    -------
    x, y : float64 ndarrays of shape (n_images,)
        New column and row of each centre (multiples of 0.5 px) when ``return_conv`` is False.
        NaN for a non-finite start or image.
    col_max, row_max, col_con, row_con : tuple
        When ``return_conv`` is True: int64 ``(n_images,)`` indices of the maxima of the column
        and row convolutions (``-1`` for invalid images), ``col_con`` of shape
        ``(n_pixels, n_images)`` and ``row_con`` of shape ``(n_images, n_pixels)`` (magtrack's
        orientations). The centre is ``((n_pixels - 1) // 2 + max) / 2``.
    """
    return _auto_conv_impl(stack, x_old, y_old, 1, return_conv)


def auto_conv_sub_pixel(stack: Any, x_old: Any, y_old: Any, n_local: int = 5) -> tuple[Any, Any]:
    """Sub-pixel centre from the auto-convolution of one row and one column.

    As :func:`auto_conv`, but the maximum of each convolution is refined by a weighted parabola
    through ``n_local`` points (:func:`parabolic_vertex`).

    Parameters
    ----------
    stack : float ndarray of shape (n_pixels, n_pixels, n_images)
        Square images, frames last.
    x_old, y_old : ndarrays of shape (n_images,)
        Start column and row of each centre, in pixels.
    n_local : int, optional
        Points in the parabolic fit, odd and >= 3 (default 5).

    Returns
    -------
    x, y : float64 ndarrays of shape (n_images,)
        Column and row of each centre, in pixels. NaN for a non-finite start or image, and where
        the convolution maximum is within ``n_local // 2`` samples of its end.
    """
    return _auto_conv_sub_pixel_impl(stack, x_old, y_old, 1, n_local)


def auto_conv_multiline(
    stack: Any, x_old: Any, y_old: Any, line_ratio: float = 0.05, return_conv: bool = False
) -> tuple:
    """Centre from the auto-convolution of several averaged rows and columns.

    As :func:`auto_conv`, with the mean of ``2 * int(n_pixels * line_ratio // 2) + 1``
    neighbouring columns (rows) in place of a single one.

    Parameters
    ----------
    stack : float ndarray of shape (n_pixels, n_pixels, n_images)
        Square images, frames last.
    x_old, y_old : ndarrays of shape (n_images,)
        Start column and row of each centre, in pixels.
    line_ratio : float, optional
        Fraction of the image width that sets the number of averaged lines (default 0.05).
    return_conv : bool, optional
        Return the convolutions instead of the centres (default False).

    Returns
    -------
    tuple
        ``(x, y)``, or ``(col_max, row_max, col_con, row_con)`` as :func:`auto_conv`.
    """
    _, st = _stack(stack, square=True)
    return _auto_conv_impl(st, x_old, y_old, _n_lines(st.shape[0], line_ratio), return_conv)


def auto_conv_multiline_sub_pixel(
    stack: Any, x_old: Any, y_old: Any, line_ratio: float = 0.1, n_local: int = 5
) -> tuple[Any, Any]:
    """Sub-pixel centre from the auto-convolution of several averaged rows and columns.

    As :func:`auto_conv_multiline`, with the convolution maximum refined by a weighted parabola
    through ``n_local`` points.

    Parameters
    ----------
    stack : float ndarray of shape (n_pixels, n_pixels, n_images)
        Square images, frames last.
    x_old, y_old : ndarrays of shape (n_images,)
        Start column and row of each centre, in pixels.
    line_ratio : float, optional
        Fraction of the image width that sets the number of averaged lines (default 0.1).
    n_local : int, optional
        Points in the parabolic fit, odd and >= 3 (default 5).

    Returns
    -------
    x, y : float64 ndarrays of shape (n_images,)
        Column and row of each centre, in pixels (NaN as in :func:`auto_conv_sub_pixel`).
    """
    _, st = _stack(stack, square=True)
    return _auto_conv_sub_pixel_impl(st, x_old, y_old, _n_lines(st.shape[0], line_ratio), n_local)


# --------------------------------------------------------------------------------------------
# qi
# --------------------------------------------------------------------------------------------


def _qi_samples(xp, st, x, y, axes: tuple[int, ...]):
    """Spline samples at offsets -1, 0, +1 px along each of ``axes`` around ``(y, x)``.

    Returns float64 ``(n, len(axes), 3)``; NaN rows for non-finite centres. One
    ``map_coordinates`` call (order 2, mode ``nearest``) on the whole stack: the 3-D spline at
    integer frame indices equals each frame's own 2-D spline.
    """
    for axis in axes:
        if axis not in (0, 1):
            raise ValueError(f"axis must be 0 (vary y) or 1 (vary x), got {axis!r}")
    n = st.shape[2]
    ok = xp.isfinite(x) & xp.isfinite(y)
    xs = xp.where(ok, x, 0.0)[:, None, None]
    ys = xp.where(ok, y, 0.0)[:, None, None]
    off = xp.asarray([-1.0, 0.0, 1.0])[None, None, :]
    along_y = xp.asarray([1.0 if a == 0 else 0.0 for a in axes])[None, :, None]
    rows = ys + off * along_y  # (n, n_axes, 3)
    cols = xs + off * (1.0 - along_y)
    frames = xp.broadcast_to(xp.arange(n, dtype=xp.float64)[:, None, None], rows.shape)
    coords = xp.stack([rows.ravel(), cols.ravel(), frames.ravel()])
    vals = backend.ndimage(xp).map_coordinates(
        st.astype(xp.float64, copy=False), coords, order=2, mode="nearest"
    )
    vals = vals.reshape(rows.shape)
    return xp.where(ok[:, None, None], vals, xp.nan)


def _qi_sample_axis_profiles(stack: Any, x: Any, y: Any, axis: int) -> Any:
    """Three-point intensity profiles through ``(x, y)`` along one image axis.

    Parameters
    ----------
    stack : ndarray of shape (n_pixels, n_pixels, n_images)
        Images, frames last (axis 0 is ``y``, axis 1 is ``x``).
    x, y : ndarrays of shape (n_images,)
        Sample centre of each image, in pixels (column, row).
    axis : {0, 1}
        ``0`` samples along the column (varying ``y``), ``1`` along the row (varying ``x``).

    Returns
    -------
    float64 ndarray of shape (n_images, 3)
        The order-2 spline interpolation of the image (mode ``nearest``) at offsets ``-1, 0,
        +1`` px; NaN rows for non-finite centres.
    """
    xp, st = _stack(stack)
    n = st.shape[2]
    x = _coords(xp, x, n, "x")
    y = _coords(xp, y, n, "y")
    return _qi_samples(xp, st, x, y, (axis,))[:, 0, :]


def _qi_quadratic_offsets(samples: Any) -> Any:
    """Vertex offset of the parabola through three equally spaced samples.

    Parameters
    ----------
    samples : ndarray of shape (n, 3)
        Samples ``L, C, R`` at offsets ``-1, 0, +1``.

    Returns
    -------
    ndarray of shape (n,)
        ``(L - R) / (2 (L - 2C + R))`` in sample units; NaN where the curvature ``L - 2C + R``
        is within machine epsilon of zero.
    """
    xp = get_xp(samples)
    s = _float_array(xp, samples)
    if s.ndim != 2 or s.shape[1] != 3:
        raise ShapeError(f"samples must have shape (n, 3) = (L, C, R), got {s.shape}")
    left, centre, right = s[:, 0], s[:, 1], s[:, 2]
    den = left - 2.0 * centre + right
    ok = xp.abs(den) > xp.finfo(s.dtype).eps
    return xp.where(ok, (left - right) / (2.0 * xp.where(ok, den, 1.0)), xp.nan)


def qi(stack: Any, x_old: Any, y_old: Any) -> tuple[Any, Any]:
    """Refine centres by one quadratic-interpolation step along x and along y.

    The image is interpolated (order-2 spline, mode ``nearest``) at the start point and one
    pixel to either side along the row and along the column; the vertex of the parabola through
    each three samples is the new coordinate.

    Parameters
    ----------
    stack : float ndarray of shape (n_pixels, n_pixels, n_images)
        Images, frames last.
    x_old, y_old : ndarrays of shape (n_images,)
        Start column and row of each centre, in pixels.

    Returns
    -------
    x, y : float64 ndarrays of shape (n_images,)
        Refined column and row. NaN where the start is NaN (magtrack can crash SciPy there) or
        the three samples are collinear.

    Notes
    -----
    This is the documented magtrack ``qi``: a three-point parabola on raw intensity. It is
    **not** the quadrant-interpolation (QI) algorithm of magnetic-tweezers tracking (radial
    profiles of four quadrants cross-correlated with their mirror images); on a ringed bead
    image it moves to the nearest intensity extremum, not to the centre of symmetry, and does not
    improve on starts a few tenths of a pixel off.
    """
    xp, st = _stack(stack)
    n = st.shape[2]
    x_old = _coords(xp, x_old, n, "x_old")
    y_old = _coords(xp, y_old, n, "y_old")
    samples = _qi_samples(xp, st, x_old, y_old, (1, 0))  # (n, [x, y], 3)
    dx = _qi_quadratic_offsets(samples[:, 0, :])
    dy = _qi_quadratic_offsets(samples[:, 1, :])
    return x_old + dx, y_old + dy


# --------------------------------------------------------------------------------------------
# profiles and z
# --------------------------------------------------------------------------------------------


def radial_profile(stack: Any, x: Any, y: Any, oversample: int = 1) -> Any:
    """Azimuthally averaged intensity about ``(x, y)`` for every image.

    Each pixel centre is assigned to bin ``rint(r * oversample)`` (half-to-even), ``r`` its
    distance from the centre in pixels; bins ``0 .. (n_pixels // 2) * oversample - 1`` are
    averaged.

    Parameters
    ----------
    stack : ndarray of shape (n_pixels, n_pixels, n_images)
        Images, frames last.
    x, y : ndarrays of shape (n_images,)
        Centre column and row of each image, in pixels.
    oversample : int, optional
        Bins per pixel of radius (default 1), >= 1.

    Returns
    -------
    profiles : ndarray of shape ((n_pixels // 2) * oversample, n_images)
        Mean intensity per bin: bin ``j`` covers radii ``(j - 0.5) / oversample`` to
        ``(j + 0.5) / oversample`` px. float32 for float32 stacks, float64 otherwise. **Empty
        bins are NaN** (bin 0 whenever no pixel centre lies within ``0.5 / oversample`` px of the
        centre; more bins at high ``oversample``), as in magtrack. Columns of non-finite centres
        are NaN.

    Notes
    -----
    Computed by :func:`stacklab.core.profiles.radial_profile` with ``rounding="nearest"`` and
    ``bin_width = 1 / oversample`` (its own ``oversample``, sub-pixel sampling, stays 1).
    """
    xp, st = _stack(stack)
    n = st.shape[2]
    oversample = _int_param(oversample, "oversample", 1)
    x = _coords(xp, x, n, "x")
    y = _coords(xp, y, n, "y")
    ok = xp.isfinite(x) & xp.isfinite(y)
    centre = xp.stack([xp.where(ok, y, 0.0), xp.where(ok, x, 0.0)], axis=1)  # (row, col)
    prof = _core_radial_profile(
        xp.moveaxis(st, -1, 0),
        centre,
        n_bins=(st.shape[0] // 2) * oversample,
        bin_width=1.0 / oversample,
        rounding="nearest",
    )  # (n, n_bins)
    return xp.where(ok[:, None], prof, xp.nan).T


def fft_profile(
    stack: Any,
    x: Any = None,
    y: Any = None,
    oversample: int = 4,
    rmin: float = 0.0,
    rmax: float = 0.5,
    gaus_factor: float = 6.0,
) -> Any:
    """Radial profiles of the Fourier magnitude of Gaussian-windowed images.

    Each image is multiplied by a Gaussian of sigma ``n_pixels / gaus_factor`` centred on
    ``(x, y)``, Fourier transformed (real 2-D FFT over the image axes), and the magnitude is
    averaged in rings: the half-plane sample at integer frequency ``(ky, kx)`` goes to bin
    ``rint(hypot(kx, ky) * oversample)``.

    Parameters
    ----------
    stack : ndarray of shape (n_pixels, n_pixels, n_images)
        Square images, frames last. Not modified.
    x, y : ndarrays of shape (n_images,), optional
        Window centre (column, row) of each image, in pixels. If both are None, no window is
        applied (magtrack 1.0.0's own ``fft_profile(stack, oversample, rmin, rmax)``).
    oversample : int, optional
        Bins per unit of integer frequency (default 4), >= 1.
    rmin, rmax : float, optional
        Radial range returned: bins ``round(n_pixels / 2 * rmin * oversample)`` up to
        ``round(n_pixels / 2 * rmax * oversample) - 1``. The unit is ``n_pixels / 2`` FFT
        samples, so ``rmax = 0.5`` (default) reaches a quarter of the sampling frequency (half of
        Nyquist) and ``rmax = 1`` reaches Nyquist along the axes.
    gaus_factor : float, optional
        Window sigma is ``n_pixels / gaus_factor`` pixels (default 6.0).

    Returns
    -------
    profile : ndarray of shape (n_selected_bins, n_images)
        Mean Fourier magnitude per bin; NaN for bins that no integer frequency reaches (with
        ``oversample > 1`` several small radii are empty). float32 for float32 stacks.

    Notes
    -----
    Follows the documented signature, which magtrack 1.0.0 names ``fft_profile_with_center``.
    Two deliberate differences from 1.0.0: the caller's stack is not windowed in place, and the
    window is centred on the bead (row ``y``, column ``x``), whereas 1.0.0 centres it on row
    ``x``, column ``y`` (the bead mirrored across the diagonal). For a bead on the diagonal
    both agree.
    """
    xp, st = _stack(stack, square=True)
    width, _, n = st.shape
    oversample = _int_param(oversample, "oversample", 1)
    for name, v in (("rmin", rmin), ("rmax", rmax)):
        if not math.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    lo = round(width / 2 * float(rmin) * oversample)
    hi = round(width / 2 * float(rmax) * oversample)
    if hi <= lo:
        raise ValueError(
            f"rmin={rmin} and rmax={rmax} select no bins (bins {lo} to {hi - 1}); need rmin < rmax"
        )
    if (x is None) != (y is None):
        raise ValueError("x and y must both be given (windowed profile) or both be None")
    if x is not None:
        if not (math.isfinite(float(gaus_factor)) and float(gaus_factor) > 0):
            raise ValueError(f"gaus_factor must be a finite number > 0, got {gaus_factor!r}")
        x = _coords(xp, x, n, "x")
        y = _coords(xp, y, n, "y")
        grid = xp.arange(width, dtype=xp.float64)
        # axis 0 of gaussian_2d follows its first argument: rows, centred on y (the bead).
        window = gaussian_2d(grid, grid, y, x, width / float(gaus_factor))
        st = (st * window).astype(st.dtype, copy=False)
    fft = backend.fft(xp)
    mag = xp.abs(fft.rfft2(st, axes=(0, 1)))  # (W, W // 2 + 1, n)
    mag = fft.fftshift(mag, axes=0)
    ky = xp.arange(width, dtype=xp.float64) - width // 2
    kx = xp.arange(mag.shape[1], dtype=xp.float64)
    bins = xp.rint(xp.hypot(ky[:, None], kx[None, :]) * oversample).astype(xp.int64)
    values = xp.moveaxis(mag, -1, 0).reshape(n, -1)
    prof = _core_bin_mean(values, bins.reshape(1, -1), hi)  # (n, hi); bins >= hi dropped
    return prof[:, lo:hi].T


def lookup_z(profiles: Any, zlut: Any, n_local: int = 5) -> Any:
    """z of each radial profile by matching it against a Z look-up table.

    Each profile (without its central bin) is correlated (:func:`pearson`) with every Z-LUT
    profile (without its central bin); the best plane is refined by a weighted parabola through
    ``n_local`` correlation values (:func:`parabolic_vertex` weights), and the fractional plane
    index is turned into z by linear interpolation of the Z-LUT's z row.

    Parameters
    ----------
    profiles : ndarray of shape (n_bins, n_images)
        Radial profiles (:func:`radial_profile`).
    zlut : ndarray of shape (1 + n_bins, n_ref)
        Row 0: z of each reference plane (any unit, monotonic); rows 1..: the reference profiles.
        Moved to the device of ``profiles`` if needed.
    n_local : int, optional
        Planes in the parabolic fit, odd and >= 3 (documented default 5; magtrack 1.0.0 uses 7).

    Returns
    -------
    z : float64 ndarray of shape (n_images,)
        In the unit of ``zlut[0]``; within ``[min(zlut[0]), max(zlut[0])]``. NaN only for a
        profile that correlates with nothing (constant or all NaN).

    Raises
    ------
    ShapeError
        If the profile and Z-LUT bin counts differ (magtrack 1.0.0 raises a ``ValueError``
        subclass too).

    Notes
    -----
    Differs from magtrack 1.0.0 by design at the ends of the table: magtrack returns NaN when the
    best plane is within ``n_local // 2 + 1`` planes of either end, so profiles 200-300 nm inside
    a 100 nm-step table get no z. Here, within ``n_local // 2`` planes of an end, the fit uses
    the widest window still centred on the best plane (the three end planes on an end plane
    itself) and the vertex is clipped to the table, so those profiles get a finite z (within
    one step of the truth on simulated beads). Elsewhere the result equals magtrack's to float
    rounding.
    With fewer than ``n_local`` planes, the best plane's z is returned unrefined with a warning,
    as in magtrack.
    """
    xp = get_xp(profiles)
    profiles = _float_array(xp, profiles)
    zlut = _float_array(xp, _on(xp, zlut))
    if profiles.ndim == 1:
        profiles = profiles[:, None]
    if profiles.ndim != 2 or profiles.size == 0:
        raise ShapeError(
            f"profiles must be a non-empty 2-D array (n_bins, n_images), got {profiles.shape}"
        )
    if zlut.ndim != 2 or zlut.shape[0] < 3 or zlut.shape[1] < 1:
        raise ShapeError(
            f"zlut must be a 2-D array (1 + n_bins, n_ref) with n_bins >= 2, got {zlut.shape}"
        )
    if zlut.shape[0] - 1 != profiles.shape[0]:
        raise ShapeError(
            f"profiles and zlut must have matching radial bins: got {profiles.shape[0]} bins in "
            f"profiles and {zlut.shape[0] - 1} in zlut (build the Z-LUT with the same profile "
            "function and oversampling)"
        )
    n_local = _checked_n_local(n_local)
    n_ref = zlut.shape[1]
    r = pearson(zlut[2:], profiles[1:])  # (n_images, n_ref)
    r = r.astype(xp.float64, copy=False)
    finite = xp.isfinite(r)
    has = xp.any(finite, axis=1)
    best = xp.argmax(xp.where(finite, r, -xp.inf), axis=1)
    z_row = zlut[0].astype(xp.float64)
    if n_ref < n_local:
        warnings.warn(
            f"zlut has {n_ref} planes, fewer than n_local={n_local}: returning the best plane's "
            "z without sub-plane refinement",
            stacklevel=2,
        )
        return xp.where(has, z_row[best], xp.nan)
    best_f = xp.where(has, best.astype(xp.float64), xp.nan)
    r = xp.where(finite, r, 0.0)
    # Away from the ends: magtrack's fit (n_local planes centred on the best one, weighted).
    # Within n_local // 2 planes of an end (magtrack: NaN) the window shrinks to the largest
    # one still centred on the best plane; on the end plane itself the three end planes are
    # fitted. The vertex is clipped to the table.
    half = n_local // 2
    level = xp.minimum(xp.minimum(best, n_ref - 1 - best), half)
    vertex = xp.full(best.shape, xp.nan, dtype=xp.float64)
    for h in range(half + 1):
        width = 2 * max(h, 1) + 1
        v = _core_parabolic_vertex(
            r,
            best_f,
            n_local=width,
            window_weights=xp.asarray(_window_weights(width)),
            edge="shift",
        )
        vertex = xp.where(level == h, v, vertex)
    vertex = xp.clip(vertex, 0.0, n_ref - 1.0)
    return xp.interp(vertex, xp.arange(n_ref, dtype=xp.float64), z_row)


# --------------------------------------------------------------------------------------------
# pipelines
# --------------------------------------------------------------------------------------------

_ADVANCED_DEFAULTS: dict[str, Any] = {
    "center_of_mass": {},
    "auto_conv": {},
    "n auto_conv_multiline_sub_pixel": 5,
    "auto_conv_multiline_sub_pixel": {},
    "use fft_profile": True,
    "fft_profile": {},
    "radial_profile": {},
    "lookup_z": {},
}


def stack_to_xyzp_advanced(stack: Any, zlut: Any = None, **kwargs: Any) -> tuple:
    """x, y, z and profiles of every image, with every stage configurable.

    Stages: :func:`center_of_mass` -> :func:`auto_conv` -> ``n`` x
    :func:`auto_conv_multiline_sub_pixel` -> :func:`fft_profile` or :func:`radial_profile` ->
    :func:`lookup_z` (when ``zlut`` is given).

    Parameters
    ----------
    stack : ndarray of shape (n_pixels, n_pixels, n_images)
        Square images, frames last (NumPy or CuPy; the work and the results stay on its device).
        Not modified.
    zlut : ndarray of shape (1 + n_bins, n_ref), optional
        Z look-up table (row 0: z; rows 1..: profiles made with the same profile function and
        options). Moved to the stack's device if needed. None (default): z is NaN.
    **kwargs
        Stage options, keys as in magtrack (unknown keys raise ``TypeError``):
        ``"center_of_mass"`` (dict), ``"auto_conv"`` (dict),
        ``"n auto_conv_multiline_sub_pixel"`` (int, default 5),
        ``"auto_conv_multiline_sub_pixel"`` (dict), ``"use fft_profile"`` (bool, documented
        default True), ``"fft_profile"`` (dict), ``"radial_profile"`` (dict), ``"lookup_z"``
        (dict). Dicts are passed as keyword arguments to the stage of that name.

    Returns
    -------
    x, y : float64 ndarrays of shape (n_images,)
        Column and row of each bead, in pixels.
    z : float64 ndarray of shape (n_images,)
        In the unit of ``zlut[0]``; NaN when ``zlut`` is None.
    profiles : ndarray of shape (n_bins, n_images)
        The profiles used for z.

    Raises
    ------
    ShapeError
        When the profiles and ``zlut`` have different bin counts. With the documented default
        ``"use fft_profile": True`` the profiles have ``n_pixels`` bins (fft_profile defaults),
        so a Z-LUT of radial profiles (``n_pixels // 2`` bins) needs
        ``**{"use fft_profile": False}``. magtrack 1.0.0 warns and returns z = NaN instead.

    Notes
    -----
    Follows the documented defaults; magtrack 1.0.0 uses ``"use fft_profile": False``,
    ``center_of_mass`` with ``background='median'`` and ``lookup_z`` with ``n_local=7``. Pass
    ``**{"center_of_mass": {"background": "median"}, "use fft_profile": False,
    "lookup_z": {"n_local": 7}}`` to reproduce 1.0.0's defaults. Unlike 1.0.0 the caller's stack
    is never windowed in place.
    """
    unknown = sorted(set(kwargs) - set(_ADVANCED_DEFAULTS))
    if unknown:
        raise TypeError(
            f"stack_to_xyzp_advanced got unknown option(s) {unknown}; known: "
            f"{sorted(_ADVANCED_DEFAULTS)}"
        )
    opts = {**_ADVANCED_DEFAULTS, **kwargs}
    for key, value in opts.items():
        if key not in ("n auto_conv_multiline_sub_pixel", "use fft_profile") and not isinstance(
            value, dict
        ):
            raise TypeError(f"option {key!r} must be a dict of keyword arguments, got {value!r}")
    if "return_conv" in opts["auto_conv"]:
        raise TypeError("option 'auto_conv' must not set return_conv")
    n_iter = _int_param(
        opts["n auto_conv_multiline_sub_pixel"], "'n auto_conv_multiline_sub_pixel'", 0
    )

    xp, st = _stack(stack, square=True)
    x, y = center_of_mass(st, **opts["center_of_mass"])
    x, y = auto_conv(st, x, y, **opts["auto_conv"])
    for _ in range(n_iter):
        x, y = auto_conv_multiline_sub_pixel(st, x, y, **opts["auto_conv_multiline_sub_pixel"])
    if opts["use fft_profile"]:
        profiles = fft_profile(st, x, y, **opts["fft_profile"])
    else:
        profiles = radial_profile(st, x, y, **opts["radial_profile"])
    if zlut is None:
        z = xp.full(st.shape[2], xp.nan, dtype=xp.float64)
    else:
        z = lookup_z(profiles, _on(xp, zlut), **opts["lookup_z"])
    logger.debug(
        "stack_to_xyzp_advanced: %d images, %d NaN x, %d NaN z",
        st.shape[2],
        int(xp.sum(xp.isnan(x))),
        int(xp.sum(xp.isnan(z))),
    )
    return xp.asarray(x, dtype=xp.float64), xp.asarray(y, dtype=xp.float64), z, profiles


def stack_to_xyzp(stack: Any, zlut: Any = None) -> tuple:
    """x, y, z and radial profiles of every image with magtrack's standard pipeline.

    :func:`center_of_mass` -> :func:`auto_conv` -> 5 x :func:`auto_conv_multiline_sub_pixel`
    -> :func:`radial_profile` -> :func:`lookup_z` (documented defaults).

    Parameters
    ----------
    stack : ndarray of shape (n_pixels, n_pixels, n_images)
        Square images, frames last (NumPy or CuPy). Not modified.
    zlut : ndarray of shape (1 + n_pixels // 2, n_ref), optional
        Z look-up table of radial profiles (row 0: z). None (default): z is NaN.

    Returns
    -------
    x, y : float64 ndarrays of shape (n_images,)
        Column and row of each bead, in pixels.
    z : float64 ndarray of shape (n_images,)
        In the unit of ``zlut[0]``; NaN when ``zlut`` is None.
    profiles : ndarray of shape (n_pixels // 2, n_images)
        Radial profiles about ``(x, y)``.

    Notes
    -----
    The first guess uses ``center_of_mass(stack, background='median')`` as magtrack 1.0.0 does
    (the documentation leaves the pipeline's choice open; the median guess is much closer to
    the bead than the documented function default ``'none'``), and ``lookup_z`` its documented
    default ``n_local=5`` (1.0.0: 7), without 1.0.0's NaN at the ends of the Z-LUT.
    """
    return stack_to_xyzp_advanced(
        stack,
        zlut,
        **{"center_of_mass": {"background": "median"}, "use fft_profile": False},
    )
