"""Geometric transforms of 4D-STEM cubes: binning, thinning, shifts, resampling, padding.

All functions take a cube ``(scan_row, scan_col, det_row, det_col)`` (or any stack of frames
``(..., det_row, det_col)``) as a NumPy, CuPy, Dask or file-backed array, or a
:class:`~stacklab.stem4d.DataCube`, never modify it, and return a new array (a lazy Dask array
for Dask input). Integer data are widened before arithmetic, so nothing wraps around.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np

from .. import backend, engine
from ..backend import get_xp, is_cupy, is_dask
from ..core.binning import bin_frames
from ..core.shifts import bilinear_shift, fourier_shift
from ..errors import ShapeError
from ._output import map_cube
from .datacube import as_array, check_cube

__all__ = [
    "bin_diffraction",
    "bin_scan",
    "pad_diffraction",
    "pad_widths",
    "resample_diffraction",
    "shift_patterns",
    "thin_scan",
]

logger = logging.getLogger(__name__)


def _int_pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a positive int or a pair of ints, got {value!r}")
    if isinstance(value, int | np.integer):
        pair = (int(value), int(value))
    else:
        try:
            pair = tuple(value)
        except TypeError:
            raise TypeError(
                f"{name} must be a positive int or a pair of ints, got {value!r}"
            ) from None
        if len(pair) != 2 or not all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair
        ):
            raise TypeError(f"{name} must be a positive int or a pair of ints, got {value!r}")
        pair = (int(pair[0]), int(pair[1]))
    if min(pair) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return pair


# ------------------------------------------------------------------------------------------------
# binning and thinning
# ------------------------------------------------------------------------------------------------


def _bin_kernel(block: Any, *, factor: tuple[int, int], dtype: Any, reduce: str) -> Any:
    """Bin one block of frames (:func:`stacklab.core.binning.bin_frames`)."""
    return bin_frames(block, factor, dtype=dtype, reduce=reduce)


def bin_diffraction(
    cube: Any,
    factor: int | tuple[int, int],
    *,
    dtype: Any = None,
    reduce: Literal["sum", "mean"] = "sum",
    chunk: int = 256,
    out: Any = None,
    progress: bool | None = None,
) -> Any:
    """Bin the detector axes by integer factors.

    Parameters
    ----------
    cube : array-like of shape (..., det_row, det_col) or DataCube
        NumPy, CuPy, Dask or file-backed.
    factor : int or (int, int)
        Bin factor for both detector axes, or ``(f_row, f_col)``. Trailing rows/columns that do
        not fill a block are dropped.
    dtype : dtype, optional
        Output dtype. Default for ``"sum"``: integers are widened to 64 bit (uint16 -> uint64,
        so 4 x 65535 stays 262140), floats keep their dtype. An integer dtype too small for the
        sums raises ``ValueError`` (never wraps).
    reduce : {"sum", "mean"}
        Sum (default) or mean of each block.
    chunk, out, progress
        Frames per block; output target (None, an HDF5 path, or an array; see
        :func:`~stacklab.stem4d.repair_pixels`); progress bar.

    Returns
    -------
    array of shape (..., det_row // f_row, det_col // f_col)
    """
    data = as_array(cube)
    shape = check_cube(data)
    f = _int_pair(factor, "factor")
    if f[0] > shape[-2] or f[1] > shape[-1]:
        raise ShapeError(f"factor {f} is larger than the detector {shape[-2:]}")
    if out is None and (isinstance(data, np.ndarray) or is_cupy(data)):
        # in memory: one call (core works piece by piece, so temporaries stay small)
        return bin_frames(data, f, dtype=dtype, reduce=reduce)
    return map_cube(
        _bin_kernel,
        data,
        out=out,
        chunk=chunk,
        progress=progress,
        factor=f,
        dtype=dtype,
        reduce=reduce,
    )


def _bin_scan_block(block: Any, f: tuple[int, int], dtype: Any, reduce: str) -> Any:
    # block (rows, cols, H, W): move scan axes last and reuse the image binning
    xp = get_xp(block)
    moved = (
        xp.moveaxis(block, (0, 1), (2, 3)) if not is_dask(block) else block.transpose(2, 3, 0, 1)
    )
    binned = bin_frames(moved, f, dtype=dtype, reduce=reduce)
    return binned.transpose(2, 3, 0, 1)


def bin_scan(
    cube: Any,
    factor: int | tuple[int, int],
    *,
    dtype: Any = None,
    reduce: Literal["sum", "mean"] = "sum",
    chunk: int = 256,
    progress: bool | None = None,
) -> Any:
    """Bin the scan axes: each output pattern sums (or averages) ``f_row x f_col`` positions.

    Parameters
    ----------
    cube : array-like of shape (scan_row, scan_col, det_row, det_col) or DataCube
        NumPy, CuPy, Dask or file-backed (read ``f_row`` scan rows at a time).
    factor : int or (int, int)
        Scan bin factors; the remainder of the scan is cropped.
    dtype, reduce
        As in :func:`bin_diffraction` (uint16 sums become uint64; no wrap-around).
    chunk : int
        Approximate frames read per block for file-backed input.
    progress : bool or None
        Progress bar.

    Returns
    -------
    array of shape (scan_row // f_row, scan_col // f_col, det_row, det_col)
        In memory (NumPy/CuPy), or lazy Dask for Dask input.
    """
    data = as_array(cube)
    shape = check_cube(data, min_ndim=4)
    if len(shape) != 4:
        raise ShapeError(f"cube must be 4-D (scan_row, scan_col, det_row, det_col), got {shape}")
    f = _int_pair(factor, "factor")
    if f[0] > shape[0] or f[1] > shape[1]:
        raise ShapeError(f"factor {f} is larger than the scan {shape[:2]}")
    nr, nc = shape[0] // f[0], shape[1] // f[1]
    if is_dask(data) or isinstance(data, np.ndarray) or is_cupy(data):
        return _bin_scan_block(data[: nr * f[0], : nc * f[1]], f, dtype, reduce)
    rows_per_block = f[0] * max(1, chunk // max(shape[1], 1) // f[0])
    parts = []
    for _, block in engine.iter_blocks(
        _RowWindow(data, nr * f[0]),
        chunk=rows_per_block,
        frame_ndim=3,
        progress=progress,
        desc="bin scan",
    ):
        parts.append(_bin_scan_block(np.asarray(block)[:, : nc * f[1]], f, dtype, reduce))
    return np.concatenate(parts, axis=0)


class _RowWindow:
    """The first ``n`` scan rows of a lazily read cube (no data read)."""

    def __init__(self, base: Any, n: int) -> None:
        self.base = base
        self.shape = (n, *(int(s) for s in base.shape[1:]))
        self.dtype = np.dtype(base.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            a, b, s = index.indices(self.shape[0])
            return self.base[slice(a, b, s)]
        return self.base[index]


def thin_scan(cube: Any, factor: int | tuple[int, int]) -> Any:
    """Keep scan positions ``(f_row * i, f_col * j)`` for ``i < scan_row // f_row`` etc.

    Returns a view or lazy slice where possible (NumPy/Dask); file-backed cubes are read.
    """
    data = as_array(cube)
    shape = check_cube(data, min_ndim=4)
    f = _int_pair(factor, "factor")
    if f[0] > shape[0] or f[1] > shape[1]:
        raise ShapeError(f"factor {f} is larger than the scan {shape[:2]}")
    nr, nc = shape[0] // f[0], shape[1] // f[1]
    return data[: nr * f[0] : f[0], : nc * f[1] : f[1]]


# ------------------------------------------------------------------------------------------------
# shifts
# ------------------------------------------------------------------------------------------------


#: Threads used by SciPy's FFTs in the Fourier kernels (-1: all cores).
FFT_WORKERS = -1


def _fft_workers(xp: Any) -> Any:
    """Context that lets scipy.fft use ``FFT_WORKERS`` threads (no-op for CuPy)."""
    import contextlib

    if xp is np:
        import scipy.fft

        return scipy.fft.set_workers(FFT_WORKERS)
    return contextlib.nullcontext()


def _fourier_shift(stack: Any, shifts: Any) -> Any:
    """:func:`stacklab.core.shifts.fourier_shift` with ``FFT_WORKERS`` FFT threads."""
    with _fft_workers(get_xp(stack)):
        return fourier_shift(stack, shifts)


def _shift_kernel(
    block: Any, shifts: Any, *, method: str, periodic: bool, fill: float, dtype: Any
) -> Any:
    xp = get_xp(block)
    s = xp.asarray(shifts)
    if method == "fourier":
        if periodic:
            out = _fourier_shift(block, s)
        else:
            pad = math.ceil(float(xp.max(xp.abs(s)))) + 1 if s.size else 1
            data = block.astype(xp.float32 if block.dtype == xp.float32 else xp.float64)
            padded = xp.pad(data, ((0, 0), (pad, pad), (pad, pad)), constant_values=fill)
            out = _fourier_shift(padded, s)[:, pad:-pad, pad:-pad]
    else:
        out = bilinear_shift(block, s, fill="wrap" if periodic else float(fill))
    if dtype is not None:
        target = np.dtype(dtype)
        if target.kind in "iu":
            info = np.iinfo(target)
            out = xp.clip(xp.rint(out), info.min, info.max)
        out = out.astype(target)
    return out


def shift_patterns(
    cube: Any,
    shifts: Any,
    *,
    method: Literal["fourier", "bilinear"] = "fourier",
    periodic: bool = True,
    fill: float = 0.0,
    dtype: Any = None,
    chunk: int = 256,
    out: Any = None,
    progress: bool | None = None,
) -> Any:
    """Shift every diffraction pattern by its own sub-pixel ``(dy, dx)``.

    Parameters
    ----------
    cube : array-like of shape (scan_row, scan_col, det_row, det_col) or DataCube
        Any stack of frames ``(..., det_row, det_col)``.
    shifts : array of shape (2,) or (scan_row, scan_col, 2)
        ``(dy, dx)`` in detector pixels, one pair for all patterns or one per scan position.
        Positive values move the content toward higher indices.
    method : {"fourier", "bilinear"}
        Band-limited shift (:func:`stacklab.core.shifts.fourier_shift`: real FFTs, Nyquist
        terms split symmetrically) or bilinear interpolation
        (:func:`stacklab.core.shifts.bilinear_shift`). With both detector axes even, the
        Fourier shift differs from the real part of the complex shift (py4DSTEM's
        ``get_shifted_ar``) by the (Nyquist, Nyquist) corner term only (see the Notes of
        :func:`~stacklab.core.shifts.fourier_shift`; :mod:`stacklab.compat.py4dstem`
        reproduces py4DSTEM's convention).
    periodic : bool
        True: content leaving one edge re-enters at the other. False: it is lost and ``fill``
        enters (Fourier: computed on a zero-padded frame, then cropped).
    fill : float
        Value entering from outside for ``periodic=False``.
    dtype : dtype, optional
        Output dtype; integer outputs are rounded and clipped (never truncated or wrapped).
        Default: float (float32 for float32 input, float64 otherwise).
    chunk, out, progress
        Frames per block, output target, progress bar.

    Returns
    -------
    array of the cube's shape

    Raises
    ------
    ShapeError
        If ``shifts`` is neither ``(2,)`` nor one pair per scan position.
    """
    if method not in ("fourier", "bilinear"):
        raise ValueError(f"method must be 'fourier' or 'bilinear', got {method!r}")
    data = as_array(cube)
    shape = check_cube(data)
    scan = shape[:-2]
    n_frames = math.prod(scan)
    s = np.asarray(backend.to_numpy(shifts), dtype=np.float64)
    if s.shape == (2,):
        s = np.broadcast_to(s, (n_frames, 2))
    elif s.shape == (*scan, 2):
        s = s.reshape(n_frames, 2)
    else:
        raise ShapeError(
            f"shifts must have shape (2,) or {(*scan, 2)} (one (dy, dx) per scan position), "
            f"got {s.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError("shifts must be finite")
    if is_cupy(data):
        s = get_xp(data).asarray(s)
    return map_cube(
        _shift_kernel,
        data,
        out=out,
        chunk=chunk,
        progress=progress,
        per_frame={"shifts": s},
        method=method,
        periodic=bool(periodic),
        fill=float(fill),
        dtype=dtype,
    )


# ------------------------------------------------------------------------------------------------
# resampling and padding
# ------------------------------------------------------------------------------------------------


def _resize_spectrum(spec: Any, n_out: int, axis: int) -> Any:
    """Crop or zero-pad a full FFT spectrum along ``axis`` to ``n_out`` bins, keeping it Hermitian
    for real signals: an even input's Nyquist term is split in halves between the two new bins
    when padding; when cropping to an even length the new Nyquist bin gets the mean of the two
    terms at the band edge (an ideal low-pass with half weight at its cut-off)."""
    xp = get_xp(spec)
    n_in = spec.shape[axis]
    if n_out == n_in:
        return spec
    spec = xp.moveaxis(spec, axis, -1)
    out = xp.zeros((*spec.shape[:-1], n_out), dtype=spec.dtype)
    if n_out > n_in:
        pos = (n_in + 1) // 2  # 0 .. ceil(n/2)-1
        neg = n_in // 2  # -floor(n/2) .. -1
        out[..., :pos] = spec[..., :pos]
        out[..., n_out - neg :] = spec[..., n_in - neg :]
        if n_in % 2 == 0:  # split the Nyquist term between +n/2 and -n/2
            nyq = spec[..., n_in // 2]
            out[..., n_in // 2] = nyq / 2
            out[..., n_out - n_in // 2] = nyq / 2
    else:
        pos = (n_out + 1) // 2
        neg = n_out // 2
        out[..., :pos] = spec[..., :pos]
        out[..., n_out - neg :] = spec[..., n_in - neg :]
        if n_out % 2 == 0:  # the new Nyquist bin: mean of the +n_out/2 and -n_out/2 terms
            out[..., n_out // 2] = (spec[..., n_out // 2] + spec[..., n_in - n_out // 2]) / 2
    return xp.moveaxis(out, -1, axis)


def _resample_kernel(block: Any, *, size: tuple[int, int], method: str, conserve_sum: bool) -> Any:
    xp = get_xp(block)
    h, w = block.shape[-2:]
    if method == "bilinear":
        ndi = backend.ndimage(xp)
        data = block.astype(xp.float32)
        out = ndi.zoom(data, (1, size[0] / h, size[1] / w), order=1, mode="nearest", grid_mode=True)
        out = out.astype(xp.float64)
        if conserve_sum:
            # area scaling, then an exact per-pattern correction (interpolation alone does not
            # conserve sums, e.g. when downsampling)
            out = out * ((h * w) / (size[0] * size[1]))
            s_in = xp.sum(block, axis=(-2, -1), dtype=xp.float64)
            s_out = xp.sum(out, axis=(-2, -1))
            ok = xp.abs(s_out) > 1e-12 * xp.maximum(xp.abs(s_in), 1e-300)
            scale = xp.where(ok, s_in / xp.where(ok, s_out, 1.0), 1.0)
            out = out * scale[..., None, None]
        return out
    fft = backend.fft(xp)
    real = xp.float32 if block.dtype == xp.float32 else xp.float64
    with _fft_workers(xp):
        spec = fft.fft2(block.astype(real), axes=(-2, -1))
        spec = _resize_spectrum(_resize_spectrum(spec, size[0], -2), size[1], -1)
        out = fft.ifft2(spec, axes=(-2, -1)).real
    if not conserve_sum:
        out = out * ((size[0] * size[1]) / (h * w))
    return out.astype(real)


def _output_size(
    shape: tuple[int, int], factor: Any, output_size: Any, rounding: str
) -> tuple[int, int]:
    if (factor is None) == (output_size is None):
        raise ValueError("give exactly one of factor and output_size")
    if output_size is not None:
        return _int_pair(output_size, "output_size")
    f = np.broadcast_to(np.asarray(factor, dtype=np.float64), (2,))
    if not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise ValueError(f"factor must be finite and > 0, got {factor!r}")
    raw = f * np.asarray(shape, dtype=np.float64)
    size = np.round(raw) if rounding == "round" else np.floor(raw + 1e-9)
    size = tuple(int(s) for s in size)
    if min(size) < 1:
        raise ValueError(f"factor {factor!r} leaves no pixels of the detector {shape}")
    return size  # type: ignore[return-value]


def resample_diffraction(
    cube: Any,
    factor: float | tuple[float, float] | None = None,
    *,
    output_size: tuple[int, int] | None = None,
    method: Literal["bilinear", "fourier"] = "bilinear",
    conserve_sum: bool = False,
    chunk: int = 256,
    out: Any = None,
    progress: bool | None = None,
) -> Any:
    """Resample the detector grid (interpolate every pattern onto a finer or coarser grid).

    Parameters
    ----------
    cube : array-like of shape (..., det_row, det_col) or DataCube
        The patterns.
    factor : float or (float, float), optional
        New pixels per old pixel along (det_row, det_col); > 1 upsamples. The output size is
        ``round(factor * size)`` for bilinear and ``floor(factor * size)`` for Fourier
        resampling (py4DSTEM's conventions).
    output_size : (int, int), optional
        Exact output detector shape instead of ``factor``.
    method : {"bilinear", "fourier"}
        ``"bilinear"``: ``scipy.ndimage.zoom(order=1, mode="nearest", grid_mode=True)`` on
        float32 frames (pixel areas aligned, no anti-aliasing). ``"fourier"``: the spectrum is
        zero-padded or cropped (band-limited interpolation, Nyquist split symmetrically).
    conserve_sum : bool
        False (default): values are interpolated (intensity per pixel kept). True: each
        pattern's total is kept: Fourier resampling keeps the zero frequency (exact); bilinear
        values are scaled by the ratio of pixel areas (py4DSTEM's ``conserve_array_sums``) and
        then by the small factor that makes each pattern's sum exact.
    chunk, out, progress
        Frames per block, output target, progress bar.

    Returns
    -------
    array of shape (..., new_row, new_col)
        float64 for bilinear; float32/float64 (input float32 or not) for Fourier.
    """
    if method not in ("bilinear", "fourier"):
        raise ValueError(f"method must be 'bilinear' or 'fourier', got {method!r}")
    data = as_array(cube)
    shape = check_cube(data)
    size = _output_size(
        shape[-2:], factor, output_size, "round" if method == "bilinear" else "floor"
    )
    return map_cube(
        _resample_kernel,
        data,
        out=out,
        chunk=chunk,
        progress=progress,
        size=size,
        method=method,
        conserve_sum=bool(conserve_sum),
    )


def pad_widths(
    det_shape: tuple[int, int], pad_factor: Any = None, output_size: Any = None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Pixels added before and after each detector axis by :func:`pad_diffraction`.

    With ``pad_factor`` p each side of an axis of length Q gets ``round(Q * (p - 1) / 2)``
    (``numpy.round``: half to even); with ``output_size`` the odd extra pixel goes at the end.
    """
    h, w = (int(s) for s in det_shape)
    if (pad_factor is None) == (output_size is None):
        raise ValueError("give exactly one of pad_factor and output_size")
    if pad_factor is not None:
        p = np.broadcast_to(np.asarray(pad_factor, dtype=np.float64), (2,))
        if not np.all(np.isfinite(p)) or np.any(p < 1):
            raise ValueError(f"pad_factor must be >= 1, got {pad_factor!r}")
        a = int(np.round(h * (p[0] - 1) / 2))
        b = int(np.round(w * (p[1] - 1) / 2))
        return (a, a), (b, b)
    size = _int_pair(output_size, "output_size")
    if size[0] < h or size[1] < w:
        raise ValueError(f"output_size {size} must be at least the detector shape {(h, w)}")
    dr, dc = size[0] - h, size[1] - w
    return (dr // 2, dr - dr // 2), (dc // 2, dc - dc // 2)


def _pad_kernel(block: Any, *, widths: Any, value: float) -> Any:
    xp = get_xp(block)
    return xp.pad(block, ((0, 0), *widths), mode="constant", constant_values=value)


def pad_diffraction(
    cube: Any,
    pad_factor: float | tuple[float, float] | None = None,
    *,
    output_size: tuple[int, int] | None = None,
    value: float = 0,
    chunk: int = 256,
    out: Any = None,
    progress: bool | None = None,
) -> Any:
    """Pad every pattern with a constant (zeros by default); the dtype is kept.

    Parameters
    ----------
    cube : array-like of shape (..., det_row, det_col) or DataCube
        The patterns.
    pad_factor : float or (float, float), optional
        Output size about ``pad_factor`` times the input (see :func:`pad_widths`).
    output_size : (int, int), optional
        Exact output detector shape (at least the input's).
    value : float
        Padding value (must fit the dtype).
    chunk, out, progress
        Frames per block, output target, progress bar.

    Returns
    -------
    array of shape (..., new_row, new_col)
    """
    data = as_array(cube)
    shape = check_cube(data)
    widths = pad_widths(shape[-2:], pad_factor, output_size)
    dt = np.dtype(data.dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if not (float(value).is_integer() and info.min <= value <= info.max):
            raise ValueError(f"value={value!r} does not fit the cube's dtype {dt}")
    return map_cube(
        _pad_kernel, data, out=out, chunk=chunk, progress=progress, widths=widths, value=value
    )
