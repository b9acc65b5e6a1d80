"""py4DSTEM ``preprocess.utils``: binning, Fourier coordinates, shifts, maxima, interpolation.

Axis naming: py4DSTEM calls axis 0 of a 2-D array ``x`` and axis 1 ``y``; in stacklab's terms
``x`` is the row and ``y`` the column. A peak ``(x, y)`` is at ``ar[x, y]``, and a positive shift
``(xshift, yshift)`` moves content toward higher row and column indices. Arrays are laid out
exactly as in py4DSTEM; only the names differ.

Where py4DSTEM 0.14.18 and its documentation (the seed) disagree, or where py4DSTEM gives a wrong
answer, these functions follow the documentation / the right answer and the docstring says so:

* :func:`get_shifted_ar` with ``periodic=False`` lets no content wrap around: zeros enter from
  outside (py4DSTEM shifts periodically and then zeroes ``round(shift)`` edge rows/columns, so
  wrapped content survives next to the zeroed band).
* :func:`linear_interpolation_2D` raises for points outside the array (py4DSTEM wraps negative
  coordinates through negative indexing).
* :func:`filter_2D_maxima` applies ``edgeBoundary`` as documented (py4DSTEM ignores it).
* :func:`get_maxima_2D` with ``subpixel='poly'`` reports the fitted peak height and keeps the list
  sorted by it (py4DSTEM reports the bilinear interpolation at the refined position, which
  underestimates the peak, without re-sorting).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ...backend import asarray_on, get_xp
from ...core.binning import bin_frames
from ...errors import ShapeError, check_ndim
from ...stem4d.maxima import Maxima, filter_maxima, find_maxima_2d
from ...stem4d.transforms import shift_patterns
from ._common import check_int, complex_shift_corner

__all__ = [
    "MAXIMA_DTYPE",
    "bin2D",
    "filter_2D_maxima",
    "get_maxima_2D",
    "get_shifted_ar",
    "linear_interpolation_2D",
    "make_Fourier_coords2D",
]

logger = logging.getLogger(__name__)

#: Structured dtype of the maxima lists of :func:`get_maxima_2D` and :func:`filter_2D_maxima`.
MAXIMA_DTYPE = np.dtype([("x", np.float64), ("y", np.float64), ("intensity", np.float64)])


# ----------------------------------------------------------------------------- helpers


def _pair(value: Any, name: str) -> tuple[float, float]:
    """A scalar or a length-2 sequence as a pair of floats."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return float(arr), float(arr)
    if arr.shape != (2,):
        raise ShapeError(f"{name} must be a scalar or a pair (x, y), got shape {arr.shape}")
    return float(arr[0]), float(arr[1])


# ----------------------------------------------------------------------------- bin2D


def bin2D(array: Any, factor: int, dtype: Any = np.float64) -> Any:
    """Sum ``factor x factor`` blocks of a 2-D array.

    Parameters
    ----------
    array : ndarray of shape (Nx, Ny)
        Image (NumPy or CuPy). Integer data are summed in 64 bits, so nothing wraps; an integer
        ``dtype`` too small for the sums raises ``ValueError``
        (:func:`stacklab.core.binning.bin_frames`).
    factor : int
        Binning factor, >= 1. Trailing rows/columns that do not fill a block are dropped.
    dtype : dtype, optional
        Data type of the result (default float64, as py4DSTEM).

    Returns
    -------
    ndarray of shape (Nx // factor, Ny // factor)
        Block sums, on the input's device.
    """
    xp = get_xp(array)
    array = xp.asarray(array)
    check_ndim(array, "array", 2)
    factor = check_int(factor, "factor")
    return bin_frames(array, factor, dtype=np.dtype(dtype))


# ----------------------------------------------------------------------------- Fourier coords


def make_Fourier_coords2D(Nx: int, Ny: int, pixelSize: Any = 1) -> tuple[np.ndarray, np.ndarray]:
    """Fourier (spatial-frequency) coordinates of an ``(Nx, Ny)`` array.

    Parameters
    ----------
    Nx, Ny : int
        Array shape (axis 0 = x = rows, axis 1 = y = columns), >= 1.
    pixelSize : float or (float, float), optional
        Real-space pixel size, one value for both axes or ``(dx, dy)`` (default 1). Frequencies
        are in cycles per unit of ``pixelSize``.

    Returns
    -------
    qx, qy : ndarray of float64, shape (Nx, Ny)
        ``qx[i, j] = fftfreq(Nx, dx)[i]`` (varies along axis 0) and
        ``qy[i, j] = fftfreq(Ny, dy)[j]`` (varies along axis 1), in FFT order.
    """
    Nx = check_int(Nx, "Nx")
    Ny = check_int(Ny, "Ny")
    dx, dy = _pair(pixelSize, "pixelSize")
    if not (dx > 0 and dy > 0 and math.isfinite(dx) and math.isfinite(dy)):
        raise ValueError(f"pixelSize must be finite and > 0, got {pixelSize!r}")
    qx = np.fft.fftfreq(Nx, dx)
    qy = np.fft.fftfreq(Ny, dy)
    qx2, qy2 = np.meshgrid(qx, qy, indexing="ij")
    return qx2, qy2


# ----------------------------------------------------------------------------- shifts


def get_shifted_ar(
    ar: Any,
    xshift: float,
    yshift: float,
    periodic: bool = True,
    bilinear: bool = False,
    device: str = "cpu",
) -> Any:
    """Shift a 2-D array by ``(xshift, yshift)`` pixels.

    Parameters
    ----------
    ar : ndarray of shape (Nx, Ny)
        Input image.
    xshift, yshift : float
        Shift along axis 0 (x, rows) and axis 1 (y, columns) in pixels; positive values move
        content toward higher indices.
    periodic : bool, optional
        True (default): periodic boundaries. False: content leaving the array is lost and zeros
        enter: a bilinear output pixel whose source point ``(i - xshift, j - yshift)`` lies
        outside ``[0, Nx - 1] x [0, Ny - 1]`` is 0, and the Fourier shift is computed on a
        zero-padded copy and cropped (:func:`stacklab.stem4d.transforms.shift_patterns`).
        py4DSTEM 0.14.18 instead shifts periodically and then zeroes ``round(shift)`` edge
        rows/columns, which leaves wrapped content next to the zeroed band; stacklab does not.
    bilinear : bool, optional
        False (default): Fourier shift theorem, the real part of
        ``ifft2(fft2(ar) * exp(-2 pi i (qx xshift + qy yshift)))`` as py4DSTEM (for an array
        with both axes even, :func:`stacklab.core.shifts.fourier_shift` treats the
        (Nyquist, Nyquist) corner term differently; this function follows py4DSTEM). True:
        bilinear interpolation with weights ``shift - floor(shift)``.
    device : {"cpu", "gpu"}, optional
        Where the calculation runs and the result lives (default "cpu", as py4DSTEM: a CuPy
        ``ar`` is copied to the host unless ``device="gpu"``).

    Returns
    -------
    ndarray of float64, shape (Nx, Ny)
        The shifted image.
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    ar = asarray_on(ar, device)
    check_ndim(ar, "ar", 2)
    for name, v in (("xshift", xshift), ("yshift", yshift)):
        if np.ndim(v) != 0:
            raise ShapeError(f"{name} must be a scalar, got shape {np.shape(v)}")
        if not math.isfinite(float(v)):
            raise ValueError(f"{name} must be finite, got {v!r}")
    frames = ar.astype(get_xp(ar).float64, copy=False)[None]
    out = shift_patterns(
        frames,
        (float(xshift), float(yshift)),
        method="bilinear" if bilinear else "fourier",
        periodic=bool(periodic),
        progress=False,
    )
    if periodic and not bilinear:
        out = complex_shift_corner(out, frames, (float(xshift), float(yshift)))
    return out[0]


# ----------------------------------------------------------------------------- interpolation


def linear_interpolation_2D(ar: Any, x: Any, y: Any) -> Any:
    """Bilinear interpolation of ``ar`` at ``(x, y)`` from the four nearest elements.

    Parameters
    ----------
    ar : ndarray of shape (Nx, Ny)
        Image; ``x`` indexes axis 0 and ``y`` axis 1.
    x, y : float or ndarray
        Positions in pixels (broadcast together), inside ``[0, Nx - 1] x [0, Ny - 1]``.

    Returns
    -------
    float or ndarray of float64
        Interpolated values (a Python float for scalar ``x, y``).

    Raises
    ------
    ValueError
        For a position outside the array (py4DSTEM silently wraps negative coordinates through
        negative indexing instead) or a non-finite one.
    """
    xp = get_xp(ar, x, y)
    ar = xp.asarray(ar)
    check_ndim(ar, "ar", 2)
    scalar = np.ndim(x) == 0 and np.ndim(y) == 0
    xa = xp.asarray(x, dtype=xp.float64)
    ya = xp.asarray(y, dtype=xp.float64)
    nx, ny = ar.shape
    for name, v, n in (("x", xa, nx), ("y", ya, ny)):
        if not bool(xp.all(xp.isfinite(v))):
            raise ValueError(f"{name} must be finite")
        if v.size and (bool(xp.any(v < 0)) or bool(xp.any(v > n - 1))):
            raise ValueError(
                f"{name} must lie in [0, {n - 1}] (inside the array), got out-of-range"
            )
    x0 = xp.clip(xp.floor(xa), 0, max(nx - 2, 0)).astype(xp.int64)
    y0 = xp.clip(xp.floor(ya), 0, max(ny - 2, 0)).astype(xp.int64)
    x1 = xp.minimum(x0 + 1, nx - 1)
    y1 = xp.minimum(y0 + 1, ny - 1)
    dx = xa - x0
    dy = ya - y0
    a = ar.astype(xp.float64, copy=False)
    val = (
        (1 - dx) * (1 - dy) * a[x0, y0]
        + (1 - dx) * dy * a[x0, y1]
        + dx * (1 - dy) * a[x1, y0]
        + dx * dy * a[x1, y1]
    )
    return float(val) if scalar else val


# ----------------------------------------------------------------------------- maxima


def _as_maxima(maxima: Any) -> Maxima:
    arr = np.asarray(maxima)
    if arr.dtype.names is None or not {"x", "y", "intensity"} <= set(arr.dtype.names):
        raise TypeError("maxima must be a structured array with fields 'x', 'y', 'intensity'")
    if arr.ndim != 1:
        raise ShapeError(f"maxima must be 1-D, got shape {arr.shape}")
    return Maxima(
        arr["x"].astype(np.float64), arr["y"].astype(np.float64), arr["intensity"].astype(float)
    )


def _structured(m: Maxima) -> np.ndarray:
    return m.to_structured(("x", "y", "intensity"))


def _max_peaks(maxNumPeaks: Any) -> int | None:
    if maxNumPeaks is None:
        return None
    if isinstance(maxNumPeaks, bool) or not isinstance(maxNumPeaks, int | np.integer):
        raise TypeError(f"maxNumPeaks must be None or an integer >= 0, got {maxNumPeaks!r}")
    return int(maxNumPeaks)


def filter_2D_maxima(
    maxima: Any,
    minAbsoluteIntensity: float = 0,
    minRelativeIntensity: float = 0,
    relativeToPeak: int = 0,
    minSpacing: float = 0,
    edgeBoundary: int = 1,
    maxNumPeaks: int | None = 1,
    *,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Filter a list of maxima by intensity, spacing, distance to the edge and count.

    The list is assumed sorted by intensity, descending (as :func:`get_maxima_2D` returns it).
    Filters run in this order (:func:`stacklab.stem4d.maxima.filter_maxima`): absolute
    intensity, relative intensity, spacing, edge, count.

    Parameters
    ----------
    maxima : structured ndarray of shape (n,)
        Fields ``'x'`` (axis 0, rows), ``'y'`` (axis 1, columns), ``'intensity'``.
    minAbsoluteIntensity : float
        Drop maxima with intensity below this value (>= 0).
    minRelativeIntensity : float
        Drop maxima with intensity below this fraction of the intensity of entry
        ``relativeToPeak`` (0-based, counted after the absolute filter; ignored when the list
        has no such entry).
    relativeToPeak : int
        See above.
    minSpacing : float
        Greedy in list order: drop a maximum closer than this (Euclidean, strictly ``<``, in
        pixels) to an earlier surviving maximum. Dropped maxima suppress nothing.
    edgeBoundary : int
        Drop maxima closer than this to the image edge: ``x < edgeBoundary`` or
        ``y < edgeBoundary``, and, when ``shape`` is given, ``x > Nx - 1 - edgeBoundary`` or
        ``y > Ny - 1 - edgeBoundary``. (py4DSTEM 0.14.18 accepts and ignores this argument; the
        seed documents the filter, which stacklab applies.)
    maxNumPeaks : int or None
        Keep at most this many (default 1, as py4DSTEM); None keeps all.
    shape : (int, int), optional
        ``(Nx, Ny)`` of the image the maxima come from, for the far edges (stacklab extension).

    Returns
    -------
    structured ndarray of shape (m,)
        The surviving maxima (dtype :data:`MAXIMA_DTYPE`, a new array), in input order.
    """
    m = _as_maxima(maxima)
    eb = check_int(edgeBoundary, "edgeBoundary", minimum=0)
    m = filter_maxima(
        m,
        min_absolute=max(float(minAbsoluteIntensity), 0.0),
        min_relative=max(float(minRelativeIntensity), 0.0),
        relative_to_peak=check_int(relativeToPeak, "relativeToPeak", minimum=0),
        min_spacing=max(float(minSpacing), 0.0),
        edge_boundary=eb if shape is not None else 0,
        shape=None if shape is None else tuple(int(s) for s in shape),
        max_peaks=None,
    )
    if shape is None and eb > 0:
        m = m.subset((m.row >= eb) & (m.col >= eb))
    limit = _max_peaks(maxNumPeaks)
    if limit is not None:
        m = m.subset(slice(0, limit))
    return _structured(m)


def get_maxima_2D(
    ar: Any,
    subpixel: str = "poly",
    upsample_factor: int = 16,
    sigma: float = 0,
    minAbsoluteIntensity: float = 0,
    minRelativeIntensity: float = 0,
    relativeToPeak: int = 0,
    minSpacing: float = 0,
    edgeBoundary: int = 1,
    maxNumPeaks: int | None = 1,
    _ar_FT: Any = None,
) -> np.ndarray:
    """Local maxima of a 2-D array, optionally refined to sub-pixel precision.

    A pixel is a maximum when it is the largest of its 3x3 neighbourhood (ties broken in raster
    order); maxima in the first/last ``edgeBoundary`` rows and columns (at least 1) are dropped;
    the rest are sorted by pixel value, filtered as in :func:`filter_2D_maxima` (on pixel
    positions) and refined (:func:`stacklab.stem4d.maxima.find_maxima_2d`).

    Parameters
    ----------
    ar : ndarray of shape (Nx, Ny)
        Image (computed on the host). ``x`` = axis 0 = rows.
    subpixel : {"pixel", "poly", "multicorr"}
        ``"pixel"``: integer positions and pixel values. ``"poly"``: a 3-point parabola along
        each axis, ``dx = (I[+1] - I[-1]) / (4 I[0] - 2 I[+1] - 2 I[-1])``. ``"multicorr"``:
        the 'poly' position rounded to half a pixel, refined by DFT upsampling.
    upsample_factor : int
        Upsampling factor of ``"multicorr"`` (> 2).
    sigma : float
        Gaussian smoothing (px) before the search; positions and intensities then refer to the
        smoothed image.
    minAbsoluteIntensity, minRelativeIntensity, relativeToPeak : float, float, int
        Intensity filters (see :func:`filter_2D_maxima`).
    minSpacing, edgeBoundary, maxNumPeaks : float, int, int or None
        Filters applied after detection and before refinement (see :func:`filter_2D_maxima`);
        ``maxNumPeaks`` defaults to 1, as in py4DSTEM.
    _ar_FT : complex ndarray of shape (Nx, Ny), optional
        Precomputed ``fft2`` of the (smoothed) image for ``"multicorr"``.

    Returns
    -------
    structured ndarray of shape (n,)
        Fields ``'x'``, ``'y'``, ``'intensity'`` (:data:`MAXIMA_DTYPE`), sorted by intensity,
        descending. For ``"poly"`` and ``"multicorr"`` the intensity is the refined peak value
        (parabola vertex / upsampled maximum). py4DSTEM 0.14.18 reports, for 'poly', the bilinear
        interpolation of ``ar`` at the refined position, which underestimates the peak, and does
        not re-sort; stacklab reports the fitted height and keeps the list sorted.
    """
    xp = get_xp(ar)
    image = xp.asarray(ar)
    check_ndim(image, "ar", 2)
    m = find_maxima_2d(
        image,
        subpixel=subpixel,  # type: ignore[arg-type]
        upsample_factor=int(upsample_factor),
        sigma=float(sigma),
        min_absolute=max(float(minAbsoluteIntensity), 0.0),
        min_relative=max(float(minRelativeIntensity), 0.0),
        relative_to_peak=check_int(relativeToPeak, "relativeToPeak", minimum=0),
        min_spacing=max(float(minSpacing), 0.0),
        edge_boundary=check_int(edgeBoundary, "edgeBoundary", minimum=0),
        max_peaks=_max_peaks(maxNumPeaks),
        intensity="refined",
        spectrum=_ar_FT,
    )
    return _structured(m)
