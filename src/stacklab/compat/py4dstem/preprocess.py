"""py4DSTEM ``preprocess.preprocess``: reshaping, binning, hot pixels, shifts, resampling.

Every function takes a DataCube (compat :class:`~stacklab.compat.py4dstem.DataCube`, a canonical
:class:`stacklab.stem4d.DataCube`, or a 4-D array ``(Rx, Ry, Qx, Qy)``) and returns a **new**
compat DataCube; the argument and its array are never modified. (py4DSTEM 0.14.18 mutates the
cube it is given, often overwrites its array, and returns the same object.) The calibration of
the result is updated: binning by ``f`` multiplies the pixel size by ``f``, and so on.

The results of :func:`swap_RQ`, :func:`swap_Rxy`, :func:`swap_Qxy`, :func:`set_scan_shape` and
:func:`thin_data_real` hold views of the input array (no copy, as NumPy transposes and slices).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np

from ...backend import get_xp, is_cupy, is_dask, to_numpy
from ...errors import ShapeError
from ...stem4d import datacube as _dc
from ...stem4d import transforms as _tf
from ...stem4d.hotpix import repair_pixels
from ...stem4d.reduce import mean_pattern
from ._common import check_int, complex_shift_corner
from ._datacube import Calibration, DataCube, as_datacube

__all__ = [
    "bin_data_diffraction",
    "bin_data_mmap",
    "bin_data_real",
    "datacube_diffraction_shift",
    "filter_hot_pixels",
    "median_filter_masked_pixels",
    "pad_data_diffraction",
    "resample_data_diffraction",
    "set_scan_shape",
    "swap_Qxy",
    "swap_RQ",
    "swap_Rxy",
    "thin_data_real",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- helpers


def _transposed(data: Any, axes: tuple[int, int, int, int]) -> Any:
    if hasattr(data, "transpose") and (
        isinstance(data, np.ndarray) or is_cupy(data) or is_dask(data)
    ):
        return data.transpose(axes)
    logger.info("reading a lazily stored cube into memory to transpose it")
    return np.asarray(data).transpose(axes)


def _swap(pair: tuple[float, float]) -> tuple[float, float]:
    return (pair[1], pair[0])


def _origin_swapped_q(origin: Any) -> Any:
    if origin is None:
        return None
    o = np.asarray(origin, dtype=np.float64)[..., ::-1]
    return tuple(o) if o.ndim == 1 else o.copy()


# ----------------------------------------------------------------------------- shapes


def set_scan_shape(datacube: Any, R_Nx: int, R_Ny: int) -> DataCube:
    """Give the scan the shape ``(R_Nx, R_Ny)``, in raster (C) order.

    Position ``k`` of the flattened scan goes to ``(k // R_Ny, k % R_Ny)``.

    Parameters
    ----------
    datacube : DataCube or ndarray of shape (Rx, Ry, Qx, Qy)
        The cube (any current scan shape with ``Rx * Ry == R_Nx * R_Ny``).
    R_Nx, R_Ny : int
        New scan shape.

    Returns
    -------
    DataCube
        Shape ``(R_Nx, R_Ny, Qx, Qy)``; a view of the input array where NumPy allows.

    Raises
    ------
    ShapeError
        If ``R_Nx * R_Ny`` is not the number of scan positions (py4DSTEM 0.14.18 prints a
        message and returns the cube unchanged).
    """
    cube = as_datacube(datacube)
    shape = (check_int(R_Nx, "R_Nx"), check_int(R_Ny, "R_Ny"))
    data = _dc.set_scan_shape(cube.data, shape)
    calibration = cube.calibration
    if calibration.q_origin is not None and np.asarray(calibration.q_origin).ndim == 3:
        origin = np.asarray(calibration.q_origin).reshape(*shape, 2)
        calibration = replace(calibration, q_origin=origin)
    return cube.with_data(data, calibration)


def swap_RQ(datacube: Any) -> DataCube:
    """Swap real and reciprocal space: ``(Rx, Ry, Qx, Qy) -> (Qx, Qy, Rx, Ry)``.

    The R and Q calibrations are exchanged (a beam origin, which has no meaning afterwards, is
    dropped). The data is a transposed view of the input.
    """
    cube = as_datacube(datacube)
    c = cube.calibration
    calibration = Calibration(
        q_pixel_size=c.r_pixel_size,
        q_units=c.r_units,
        r_pixel_size=c.q_pixel_size,
        r_units=c.q_units,
    )
    return cube.with_data(_transposed(cube.data, (2, 3, 0, 1)), calibration)


def swap_Rxy(datacube: Any) -> DataCube:
    """Swap the real-space axes: ``(Ry, Rx, Qx, Qy) -> (Rx, Ry, Qx, Qy)`` (axes 0 and 1)."""
    cube = as_datacube(datacube)
    c = cube.calibration
    origin = c.q_origin
    if origin is not None and np.asarray(origin).ndim == 3:
        origin = np.asarray(origin).transpose(1, 0, 2).copy()
    calibration = Calibration(
        q_pixel_size=c.q_pixel_size,
        q_units=c.q_units,
        r_pixel_size=_swap(c.r_pixel_size),
        r_units=c.r_units,
        q_origin=origin,
    )
    return cube.with_data(_transposed(cube.data, (1, 0, 2, 3)), calibration)


def swap_Qxy(datacube: Any) -> DataCube:
    """Swap the detector axes: ``(Rx, Ry, Qy, Qx) -> (Rx, Ry, Qx, Qy)`` (axes 2 and 3)."""
    cube = as_datacube(datacube)
    c = cube.calibration
    calibration = Calibration(
        q_pixel_size=_swap(c.q_pixel_size),
        q_units=c.q_units,
        r_pixel_size=c.r_pixel_size,
        r_units=c.r_units,
        q_origin=_origin_swapped_q(c.q_origin),
    )
    return cube.with_data(_transposed(cube.data, (0, 1, 3, 2)), calibration)


# ----------------------------------------------------------------------------- binning


def _narrowest_fitting(binned: Any, dtype: np.dtype) -> Any:
    """Cast integer sums back to ``dtype`` when they fit, else to the narrowest dtype that holds
    them (same signedness); never wraps. Dask results stay in the widened dtype."""
    if dtype.kind not in "iu" or binned.dtype == dtype:
        return binned.astype(dtype, copy=False) if dtype.kind not in "iu" else binned
    if is_dask(binned):
        logger.info("bin_data_diffraction: Dask input keeps the widened dtype %s", binned.dtype)
        return binned
    if binned.size == 0:
        return binned.astype(dtype)
    xp = get_xp(binned)
    lo, hi = int(xp.min(binned)), int(xp.max(binned))
    target = dtype
    while target.itemsize < 8:
        info = np.iinfo(target)
        if info.min <= lo and hi <= info.max:
            break
        target = np.dtype(f"{target.kind}{target.itemsize * 2}")
    if target != dtype:
        logger.warning(
            "binned sums (up to %d) do not fit %s; returning %s instead of wrapping around",
            hi,
            dtype,
            target,
        )
    return binned.astype(target)


def bin_data_diffraction(datacube: Any, bin_factor: int, dtype: Any = None) -> DataCube:
    """Bin the detector by ``bin_factor``: each pixel is the sum of a block of ``f x f`` pixels.

    Trailing rows/columns that do not fill a block are dropped. The Q pixel size is multiplied
    by the factor.

    Parameters
    ----------
    datacube : DataCube or ndarray of shape (Rx, Ry, Qx, Qy)
        The cube.
    bin_factor : int
        Binning factor, >= 1.
    dtype : dtype, optional
        Output dtype. Default: the input dtype, as documented, whenever every sum fits in it;
        integer sums that do not fit get the next wider integer dtype (a warning is logged)
        instead of wrapping around as in py4DSTEM 0.14.18. An explicit integer ``dtype`` too
        small for the sums raises ``ValueError``.

    Returns
    -------
    DataCube
        Shape ``(Rx, Ry, Qx // f, Qy // f)``.
    """
    cube = as_datacube(datacube)
    f = check_int(bin_factor, "bin_factor")
    if f == 1 and dtype is None:
        return cube.with_data(cube.data)
    binned = _tf.bin_diffraction(cube.data, f, dtype=None if dtype is None else np.dtype(dtype))
    if dtype is None:
        binned = _narrowest_fitting(binned, cube.dtype)
    return cube.with_data(binned, cube.calibration.scaled_q(f))


def bin_data_mmap(datacube: Any, bin_factor: int, dtype: Any = np.float32) -> DataCube:
    """Bin the detector of a memory-mapped (or any lazily read) cube block by block.

    Same as :func:`bin_data_diffraction` with a float32 output by default; the frames are read
    chunk by chunk, so the cube never has to fit in memory (py4DSTEM 0.14.18 loops over
    ``R_Ny x R_Ny`` positions and fails on non-square scans).
    """
    cube = as_datacube(datacube)
    f = check_int(bin_factor, "bin_factor")
    binned = _tf.bin_diffraction(cube.data, f, dtype=None if dtype is None else np.dtype(dtype))
    return cube.with_data(binned, cube.calibration.scaled_q(f))


def bin_data_real(datacube: Any, bin_factor: int) -> DataCube:
    """Bin the scan by ``bin_factor``: each pattern is the sum of ``f x f`` scan positions.

    The scan remainder is cropped and the R pixel size is multiplied by the factor. Integer data
    are summed in 64 bits and stay widened (uint16 -> uint64, as py4DSTEM's NumPy sums), so
    nothing wraps; float32 stays float32.
    """
    cube = as_datacube(datacube)
    f = check_int(bin_factor, "bin_factor")
    return cube.with_data(_tf.bin_scan(cube.data, f), cube.calibration.scaled_r(f))


def thin_data_real(datacube: Any, thinning_factor: int) -> DataCube:
    """Keep every ``thinning_factor``-th scan position along both scan axes.

    Keeps positions ``(f * i, f * j)`` for ``i < Rx // f`` and ``j < Ry // f``; the data size
    shrinks by about ``f**2``. The R pixel size is multiplied by ``f``.
    """
    cube = as_datacube(datacube)
    f = check_int(thinning_factor, "thinning_factor")
    return cube.with_data(_tf.thin_scan(cube.data, f), cube.calibration.scaled_r(f))


# ----------------------------------------------------------------------------- bad pixels


_HOT_OFFSETS = tuple(
    (dy, dx)
    for dy in range(-2, 3)
    for dx in range(-2, 3)
    if (dy, dx) != (0, 0) and not (abs(dy) == 2 and abs(dx) == 2)
)


def _ranked_neighbour(image: Any, rank: int) -> Any:
    """The ``rank``-th brightest (0 = brightest) of the 20 neighbours of every pixel.

    The neighbourhood is the 5x5 square without its corners and without the pixel itself;
    neighbours outside the detector are not used (no wrap-around). NaN where a pixel has no
    more than ``rank`` neighbours.
    """
    xp = get_xp(image)
    h, w = image.shape
    pad = xp.full((h + 4, w + 4), -xp.inf)
    pad[2:-2, 2:-2] = image
    stack = xp.stack([pad[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w] for dy, dx in _HOT_OFFSETS])
    ranked = -xp.sort(-stack, axis=0)
    if rank >= len(_HOT_OFFSETS):
        return xp.full((h, w), xp.nan)
    value = ranked[rank]
    return xp.where(xp.isfinite(value), value, xp.nan)


def filter_hot_pixels(
    datacube: Any, thresh: float, ind_compare: int = 1, return_mask: bool = False
) -> DataCube | tuple[DataCube, Any]:
    """Find hot pixels in the mean diffraction pattern and repair them in every frame.

    A pixel is hot when the mean pattern exceeds the ``ind_compare``-th brightest (0-based) of
    its 20 neighbours by more than ``thresh``. The neighbourhood is the 21-pixel window of the
    documentation (pixel, 8 nearest, 12 next-nearest neighbours) **without the pixel itself**,
    cropped at the detector edge. Flagged pixels are replaced, in every frame, by the median of
    their unmasked 3x3 neighbours (:func:`stacklab.stem4d.hotpix.repair_pixels`).

    Differences from py4DSTEM 0.14.18, which ranks the pixel among its own window: there,
    ``ind_compare=1`` compares a pixel with its brightest neighbour, so both pixels of an
    adjacent hot pair escape (a pixel with one hot neighbour needed ``ind_compare=2``), and
    ``ind_compare=0`` flags nothing. Here ``ind_compare = k`` tolerates ``k`` hot neighbours:
    1 (default) finds isolated pixels and pairs, 0 only isolated pixels, and our ``k`` equals
    py4DSTEM's ``k + 1``. py4DSTEM's window also wraps around the detector edges, and its repair
    medians include the hot pixel and other flagged pixels; stacklab's do not.

    Parameters
    ----------
    datacube : DataCube or ndarray of shape (Rx, Ry, Qx, Qy)
        The cube (never modified).
    thresh : float
        Threshold in counts of the mean pattern, > 0.
    ind_compare : int
        Rank of the neighbour compared with, >= 0 (see above).
    return_mask : bool
        Also return the mask.

    Returns
    -------
    datacube : DataCube
        The repaired cube, same shape and dtype (integer medians rounded half to even).
    mask : ndarray of bool, shape (Qx, Qy)
        True at the hot pixels (only with ``return_mask=True``).
    """
    cube = as_datacube(datacube)
    if not (isinstance(thresh, int | float | np.number) and math.isfinite(thresh) and thresh > 0):
        raise ValueError(f"thresh must be a finite number > 0, got {thresh!r}")
    rank = check_int(ind_compare, "ind_compare", minimum=0)
    mean = mean_pattern(cube.data)
    xp = get_xp(mean)
    mean = xp.asarray(mean, dtype=xp.float64)
    reference = _ranked_neighbour(mean, rank)
    mask = xp.nan_to_num(mean - reference, nan=-xp.inf) > float(thresh)
    logger.info("filter_hot_pixels: %d hot pixel(s)", int(xp.count_nonzero(mask)))
    out = cube.with_data(repair_pixels(cube.data, mask))
    return (out, mask) if return_mask else out


def median_filter_masked_pixels(datacube: Any, mask: Any, kernel_width: int = 3) -> DataCube:
    """Replace the pixels of ``mask`` in every frame by the median of their unmasked neighbours.

    Parameters
    ----------
    datacube : DataCube or ndarray of shape (Rx, Ry, Qx, Qy)
        The cube (never modified).
    mask : bool ndarray of shape (Qx, Qy)
        True at the bad pixels.
    kernel_width : int
        Width of the window centred on each bad pixel, odd and >= 3 (default 3).

    Returns
    -------
    DataCube
        Same shape and dtype; integer medians are rounded half to even.

    Raises
    ------
    ValueError
        For an even or too small ``kernel_width`` (py4DSTEM 0.14.18 uses an off-centre window
        ``[q - w/2, q + w/2)`` for even widths).

    Notes
    -----
    py4DSTEM repairs the bad pixels one at a time from the partly repaired data, with windows
    that include the bad pixel itself and other bad pixels, and truncates float medians written
    into integer cubes. Here every bad pixel gets the median of the good pixels of its window,
    computed for all frames at once (:func:`stacklab.stem4d.hotpix.repair_pixels`).
    """
    cube = as_datacube(datacube)
    width = check_int(kernel_width, "kernel_width")
    if width < 3 or width % 2 == 0:
        raise ValueError(
            f"kernel_width must be an odd integer >= 3 (a window centred on the pixel), got {width}"
        )
    m = mask if is_cupy(mask) else np.asarray(to_numpy(mask))
    if m.dtype != bool:
        raise TypeError(f"mask must be a boolean array, got dtype {m.dtype}")
    if tuple(m.shape) != tuple(cube.det_shape):
        raise ShapeError(f"mask must have the detector shape {cube.det_shape}, got {m.shape}")
    return cube.with_data(repair_pixels(cube.data, m, size=width))


# ----------------------------------------------------------------------------- shifts


def datacube_diffraction_shift(
    datacube: Any, xshifts: Any, yshifts: Any, periodic: bool = True, bilinear: bool = False
) -> DataCube:
    """Shift every diffraction pattern by ``(xshifts, yshifts)`` pixels.

    Parameters
    ----------
    datacube : DataCube or ndarray of shape (Rx, Ry, Qx, Qy)
        The cube (never modified).
    xshifts, yshifts : float or ndarray of shape (Rx, Ry)
        Shift along Qx (axis 2, rows) and Qy (axis 3, columns) in detector pixels, one value for
        all patterns or one per scan position; positive values move content toward higher
        indices.
    periodic : bool
        True: content leaving one edge re-enters at the other. False: zeros enter (see
        :func:`~stacklab.compat.py4dstem.utils.get_shifted_ar`; py4DSTEM's non-periodic mode
        keeps wrapped content next to a zeroed band).
    bilinear : bool
        Bilinear interpolation (True) or the Fourier shift theorem (False, default): the real
        part of the complex phase-ramp shift, as py4DSTEM. (With both detector axes even this
        differs from :func:`stacklab.stem4d.shift_patterns` in the (Nyquist, Nyquist) corner
        term, which stacklab splits symmetrically; see
        :func:`~stacklab.compat.py4dstem._common.complex_shift_corner`.)

    Returns
    -------
    DataCube
        Float data: float32 for float32 input, float64 otherwise. (py4DSTEM writes the result
        back into the input array, truncating it toward zero for integer cubes.)
    """
    cube = as_datacube(datacube)
    scan = cube.scan_shape
    xs = np.asarray(to_numpy(xshifts), dtype=np.float64)
    ys = np.asarray(to_numpy(yshifts), dtype=np.float64)
    for name, v in (("xshifts", xs), ("yshifts", ys)):
        if v.ndim not in (0, 2) or (v.ndim == 2 and v.shape != scan):
            raise ShapeError(f"{name} must be a scalar or an array of shape {scan}, got {v.shape}")
    if xs.ndim == 0 and ys.ndim == 0:
        shifts = np.array([float(xs), float(ys)])
    else:
        shifts = np.stack(np.broadcast_arrays(xs, ys), axis=-1).reshape(*scan, 2)
    out = _tf.shift_patterns(
        cube.data,
        shifts,
        method="bilinear" if bilinear else "fourier",
        periodic=bool(periodic),
    )
    if periodic and not bilinear:
        out = complex_shift_corner(out, cube.data, shifts)
    return cube.with_data(out)


# ----------------------------------------------------------------------------- resampling


def resample_data_diffraction(
    datacube: Any,
    resampling_factor: Any = None,
    output_size: Any = None,
    method: str = "bilinear",
    conserve_array_sums: bool = False,
) -> DataCube:
    """Resample the detector grid by ``resampling_factor`` or to ``output_size``.

    Parameters
    ----------
    datacube : DataCube or ndarray of shape (Rx, Ry, Qx, Qy)
        The cube.
    resampling_factor : float or (float, float), optional
        New pixels per old pixel along (Qx, Qy); > 1 upsamples. Output size
        ``round(f * Q)`` for ``"bilinear"``, ``int(f * Q)`` for ``"fourier"``.
    output_size : (int, int), optional
        Exact output detector shape (instead of ``resampling_factor``).
    method : {"bilinear", "fourier"}
        Linear interpolation (``scipy.ndimage.zoom(order=1, mode="nearest",
        grid_mode=True)`` on float32 frames, output float64) or zero-padding/cropping of the
        spectrum (output float32 for float32 input, float64 otherwise; the Nyquist term of an
        even axis is split symmetrically, where py4DSTEM puts it on one side only).
    conserve_array_sums : bool
        Scale values so each pattern keeps its total (otherwise values are interpolated).

    Returns
    -------
    DataCube
        The Q pixel size divided by the factor of each axis (``calibration.q_pixel_size``);
        :attr:`DataCube.Q_pixel_size` reports the Qx value, like py4DSTEM's single number.
    """
    cube = as_datacube(datacube)
    if method not in ("bilinear", "fourier"):
        raise ValueError(f"method must be 'bilinear' or 'fourier', got {method!r}")
    if (resampling_factor is None) == (output_size is None):
        raise ValueError("give exactly one of resampling_factor and output_size")
    factor = None
    if resampling_factor is not None:
        factor = np.broadcast_to(np.asarray(resampling_factor, dtype=np.float64), (2,))
        factor = (float(factor[0]), float(factor[1]))
    out = _tf.resample_diffraction(
        cube.data,
        factor,
        output_size=None if output_size is None else tuple(int(s) for s in output_size),
        method=method,  # type: ignore[arg-type]
        conserve_sum=bool(conserve_array_sums),
    )
    new = out.shape[-2:]
    scale = (cube.Q_Nx / new[0], cube.Q_Ny / new[1])
    return cube.with_data(out, cube.calibration.scaled_q(scale))


def pad_data_diffraction(
    datacube: Any, pad_factor: Any = None, output_size: Any = None
) -> DataCube:
    """Pad every pattern with zeros to about ``pad_factor`` times its size, or to ``output_size``.

    With ``pad_factor`` p (one value or one per axis) each side of an axis of length Q gets
    ``round(Q * (p - 1) / 2)`` zeros (half to even); with ``output_size`` the odd extra pixel
    goes at the end. The dtype is kept; the beam origin moves with the content.
    """
    cube = as_datacube(datacube)
    if (pad_factor is None) == (output_size is None):
        raise ValueError("give exactly one of pad_factor and output_size")
    pf = None if pad_factor is None else np.asarray(pad_factor, dtype=np.float64)
    size = None if output_size is None else tuple(int(s) for s in output_size)
    widths = _tf.pad_widths(cube.det_shape, pf, size)
    out = _tf.pad_diffraction(cube.data, pf, output_size=size)
    return cube.with_data(out, cube.calibration.shifted_q((widths[0][0], widths[1][0])))
