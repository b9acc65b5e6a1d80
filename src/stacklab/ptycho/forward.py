"""Forward model building blocks for iterative ptychography.

Geometry: the object ``O`` is a 2-D complex array (rows, cols); a scan position is a *shift*
``s = (s_y, s_x)`` in object pixels, the offset of the probe window's first pixel in the object.
The exit wave at position ``s`` is
``psi[y, x] = P(y - f_y, x - f_x) * O[(y + i_y) % Ny, (x + i_x) % Nx]`` with ``i = floor(s)``
and ``f = s - i``: the object is rolled (periodic), the probe carries the sub-pixel part. The
far field is ``FFT2(psi)`` (orthonormal), its intensity the diffraction pattern. All functions
take NumPy or CuPy arrays and return results on the same device.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..backend import fft as fft_module
from ..backend import get_xp, ndimage
from ..core.shifts import fourier_shift
from ..errors import ShapeError

__all__ = [
    "diffraction_intensities",
    "exit_waves",
    "far_field",
    "fourier_shift_probe",
    "object_patches",
    "rolled_object_aggregation",
    "rolled_object_probe_product",
    "shifted_probes",
    "split_shifts",
]

logger = logging.getLogger(__name__)


def _bins2(bins: Any) -> tuple[int, int]:
    if isinstance(bins, bool):
        raise TypeError(f"bins must be an int or a (y, x) pair of ints, got {bins!r}")
    if isinstance(bins, int | np.integer):
        vals = (int(bins), int(bins))
    elif isinstance(bins, tuple | list) and len(bins) == 2:
        if not all(isinstance(b, int | np.integer) and not isinstance(b, bool) for b in bins):
            raise TypeError(f"bins must be an int or a (y, x) pair of ints, got {bins!r}")
        vals = (int(bins[0]), int(bins[1]))
    else:
        raise TypeError(f"bins must be an int or a (y, x) pair of ints, got {bins!r}")
    if min(vals) < 1:
        raise ValueError(f"bins must be >= 1, got {bins!r}")
    return vals


def _check_shifts(shifts: Any, xp: Any, name: str = "shifts") -> Any:
    arr = xp.asarray(shifts)
    if arr.ndim == 1 and arr.shape[0] == 2:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ShapeError(f"{name} must have shape (n, 2) (y, x), got {tuple(arr.shape)}")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not bool(xp.all(xp.isfinite(arr))):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_object(obj: Any, name: str = "obj") -> None:
    if getattr(obj, "ndim", None) != 2:
        raise ShapeError(
            f"{name} must be a 2-D array (rows, cols), got shape {getattr(obj, 'shape', None)}"
        )
    if obj.size == 0:
        raise ShapeError(f"{name} is empty")


def shifted_probes(probe: Any, bins: int | tuple[int, int], *, method: str = "spline") -> Any:
    """Sub-pixel shifted copies of a probe, one per bin of a ``bins`` grid.

    Entry ``[i, j]`` is ``probe`` shifted by ``(+i / bins_y, +j / bins_x)`` pixels (content moves
    towards higher indices); together they let :func:`rolled_object_probe_product` place the
    probe on a sub-pixel grid.

    Parameters
    ----------
    probe : ndarray of shape (py, px)
        Real or complex probe (illumination).
    bins : int or (int, int)
        Number of sub-pixel steps along y and x (an int means the same for both).
    method : {"spline", "fourier"}
        ``"spline"``: cubic spline (:func:`scipy.ndimage.shift`, order 3, zero outside), real and
        imaginary parts separately, as ptychography40 does. ``"fourier"``: exact band-limited
        shift by a phase ramp (periodic boundary).

    Returns
    -------
    ndarray of shape (bins_y, bins_x, py, px)
        Same dtype and device as ``probe``.

    Raises
    ------
    TypeError, ValueError
        For invalid ``bins`` or ``method``.
    ShapeError
        If ``probe`` is not 2-D.
    """
    by, bx = _bins2(bins)
    _check_object(probe, "probe")
    if method not in ("spline", "fourier"):
        raise ValueError(f"method must be 'spline' or 'fourier', got {method!r}")
    xp = get_xp(probe)
    probe = xp.asarray(probe)
    out = xp.zeros((by, bx, *probe.shape), dtype=probe.dtype)
    if method == "fourier":
        sy, sx = xp.meshgrid(xp.arange(by) / by, xp.arange(bx) / bx, indexing="ij")
        shifts = xp.stack([sy.ravel(), sx.ravel()], axis=1)
        res = fourier_shift_probe(probe, shifts)
        if not xp.iscomplexobj(probe):
            res = res.real
        out[...] = res.reshape(by, bx, *probe.shape).astype(probe.dtype, copy=False)
        return out
    nd = ndimage(xp)
    complex_probe = xp.iscomplexobj(probe)
    for i in range(by):
        for j in range(bx):
            shift = (i / by, j / bx)
            re = nd.shift(probe.real, shift=shift, order=3, mode="constant", cval=0.0)
            if complex_probe:
                im = nd.shift(probe.imag, shift=shift, order=3, mode="constant", cval=0.0)
                out[i, j].real = re
                out[i, j].imag = im
            else:
                out[i, j] = re
    return out


def fourier_shift_probe(probe: Any, shifts: Any) -> Any:
    """Copies of ``probe`` shifted by arbitrary (sub-pixel) amounts with a Fourier phase ramp.

    Parameters
    ----------
    probe : ndarray of shape (py, px)
        Complex (or real) probe.
    shifts : ndarray of shape (n, 2)
        Shifts (y, x) in pixels; positive values move content towards higher indices. The shift
        is periodic over the probe window.

    Returns
    -------
    ndarray of shape (n, py, px), complex
        Shifted probes, complex64 for single-precision input, complex128 otherwise.
    """
    xp = get_xp(probe, shifts)
    _check_object(probe, "probe")
    sh = _check_shifts(shifts, xp)
    cdtype = xp.complex64 if probe.dtype in (xp.float32, xp.complex64) else xp.complex128
    return fourier_shift(xp.asarray(probe, dtype=cdtype), sh.astype(xp.float64), real=False)


def split_shifts(shifts: Any, bins: tuple[int, int] = (1, 1)) -> tuple[Any, Any]:
    """Split shifts into integer object offsets and sub-pixel probe bins (floor convention).

    ``k = floor(s * bins)``; integer part ``k // bins``, bin ``k % bins``. The effective probe
    position is therefore ``floor(s * bins) / bins`` for positive and negative shifts alike.

    Parameters
    ----------
    shifts : ndarray of shape (n, 2)
        Shifts (y, x) in object pixels.
    bins : (int, int)
        Sub-pixel bins along y and x.

    Returns
    -------
    integer, subpixel : ndarray of shape (n, 2), int64
    """
    xp = get_xp(shifts)
    sh = _check_shifts(shifts, xp)
    b = xp.asarray(bins, dtype=xp.int64)
    if sh.dtype.kind in "iu":
        k = sh.astype(xp.int64) * b
    else:
        k = xp.floor(sh.astype(xp.float64) * b).astype(xp.int64)
    return k // b, k % b


def _window_indices(
    obj_shape: tuple[int, int], win: tuple[int, int], integer: Any, xp: Any, shifted: bool
) -> Any:
    """Flat object indices (n, wy, wx) of each window, optionally in ifftshift order."""
    ny, nx = obj_shape
    ay = xp.arange(win[0], dtype=xp.int64)
    ax = xp.arange(win[1], dtype=xp.int64)
    if shifted:  # target t reads window position (t + w // 2) % w  == ifftshift
        ay = (ay + win[0] // 2) % win[0]
        ax = (ax + win[1] // 2) % win[1]
    rows = (integer[:, 0, None] + ay[None, :]) % ny
    cols = (integer[:, 1, None] + ax[None, :]) % nx
    return rows[:, :, None] * nx + cols[:, None, :]


def object_patches(obj: Any, shifts: Any, window: tuple[int, int]) -> Any:
    """Cut (periodically rolled) object windows at integer offsets ``floor(shifts)``.

    Parameters
    ----------
    obj : ndarray of shape (ny, nx)
        Object.
    shifts : ndarray of shape (n, 2)
        Shifts (y, x); the integer part ``floor(shift)`` is used.
    window : (int, int)
        Window shape (wy, wx), at most the object's shape.

    Returns
    -------
    ndarray of shape (n, wy, wx)
        ``out[i, y, x] = obj[(y + floor(s_y)) % ny, (x + floor(s_x)) % nx]``.
    """
    _check_object(obj)
    xp = get_xp(obj, shifts)
    win = (int(window[0]), int(window[1]))
    if win[0] > obj.shape[0] or win[1] > obj.shape[1]:
        raise ShapeError(f"window {win} is larger than the object {tuple(obj.shape)}")
    integer, _ = split_shifts(shifts)
    idx = _window_indices(obj.shape, win, xp.asarray(integer), xp, shifted=False)
    return xp.take(xp.ravel(obj), idx)


def rolled_object_probe_product(
    obj: Any,
    probe: Any,
    shifts: Any,
    *,
    ifftshift: bool = False,
    out: Any = None,
) -> tuple[Any, Any]:
    """Multiply rolled object windows with (sub-pixel shifted) probes, for all shifts at once.

    ``result[i, y, x] = obj[(y + I_y) % ny, (x + I_x) % nx] * probe[k_y, k_x, y, x]`` with
    ``k = floor(s * bins)``, ``I = k // bins`` and bin ``k % bins`` (so the probe sits at
    ``floor(s * bins) / bins``, for negative shifts too). With ``ifftshift=True`` each result is
    written in :func:`numpy.fft.ifftshift` order, ready for an FFT without another copy.

    Parameters
    ----------
    obj : ndarray of shape (ny, nx)
        Complex object.
    probe : ndarray of shape (py, px) or (bins_y, bins_x, py, px)
        A single probe or a stack of sub-pixel shifted probes (:func:`shifted_probes`);
        ``py <= ny`` and ``px <= nx``.
    shifts : ndarray of shape (n, 2)
        Probe positions (y, x) in object pixels, float or int; negative values and values beyond
        the object wrap around.
    ifftshift : bool
        Write each product ifftshifted over its last two axes.
    out : ndarray of shape (n, py, px), optional
        Buffer for the result (its previous content is ignored).

    Returns
    -------
    result : ndarray of shape (n, py, px)
        ``result_type(obj, probe)``.
    subpixel_indices : ndarray of shape (n, 2), int64
        The probe bin used for each shift.

    Raises
    ------
    ShapeError
        If the probe is larger than the object or arrays have the wrong number of dimensions.
    ValueError
        If ``shifts`` contains NaN or infinity.
    """
    _check_object(obj)
    xp = get_xp(obj, probe, shifts)
    if getattr(probe, "ndim", None) == 2:
        probe4 = probe[None, None]
    elif getattr(probe, "ndim", None) == 4:
        probe4 = probe
    else:
        raise ShapeError(
            f"probe must be 2-D (py, px) or 4-D (bins_y, bins_x, py, px), got shape "
            f"{getattr(probe, 'shape', None)}"
        )
    by, bx, py, px = probe4.shape
    if py > obj.shape[0] or px > obj.shape[1]:
        raise ShapeError(
            f"probe window ({py}, {px}) is larger than the object {tuple(obj.shape)}; "
            "pad the object or crop the probe"
        )
    sh = _check_shifts(shifts, xp)
    integer, sub = split_shifts(sh, (by, bx))
    idx = _window_indices(obj.shape, (py, px), integer, xp, shifted=ifftshift)
    patches = xp.take(xp.ravel(obj), idx)
    if ifftshift:
        probe4 = xp.fft.ifftshift(probe4, axes=(-2, -1))
    probes = probe4[0, 0][None] if by == bx == 1 else probe4[sub[:, 0], sub[:, 1]]
    rdtype = xp.result_type(obj.dtype, probe4.dtype)
    if out is None:
        result = (patches * probes).astype(rdtype, copy=False)
    else:
        if tuple(out.shape) != (len(sh), py, px):
            raise ShapeError(f"out must have shape {(len(sh), py, px)}, got {tuple(out.shape)}")
        xp.multiply(patches, probes, out=out)
        result = out
    return result, sub


def rolled_object_aggregation(
    obj: Any,
    updates: Any,
    shifts: Any,
    *,
    fftshift: bool = False,
    out: Any = None,
) -> Any:
    """Add shifted update windows into an object (periodic), summing overlaps.

    ``result[(y + I_y) % ny, (x + I_x) % nx] += U[i, y, x]`` with ``I = floor(shifts[i])``; ``U`` is
    ``updates`` or, with ``fftshift=True``, ``numpy.fft.fftshift(updates, axes=(1, 2))``. This is
    the adjoint of :func:`object_patches` (and, multiplied by the conjugate probe, of
    :func:`rolled_object_probe_product`).

    Parameters
    ----------
    obj : ndarray of shape (ny, nx)
        Object to add to; not modified unless passed as ``out``.
    updates : ndarray of shape (n, uy, ux)
        Update windows, ``uy <= ny``, ``ux <= nx``.
    shifts : ndarray of shape (n, 2)
        Offsets (y, x) in object pixels (the integer part ``floor`` is used).
    fftshift : bool
        Read the updates fftshifted (undoes an ifftshifted forward product).
    out : ndarray of shape (ny, nx), optional
        Array to accumulate into in place (may be ``obj`` itself).

    Returns
    -------
    ndarray of shape (ny, nx)
        ``obj`` plus the aggregated updates, dtype of ``obj`` (or ``out``).
    """
    _check_object(obj)
    xp = get_xp(obj, updates, shifts)
    if getattr(updates, "ndim", None) != 3:
        raise ShapeError(
            f"updates must have shape (n, uy, ux), got {getattr(updates, 'shape', None)}"
        )
    n, uy, ux = updates.shape
    if uy > obj.shape[0] or ux > obj.shape[1]:
        raise ShapeError(
            f"updates windows ({uy}, {ux}) are larger than the object {tuple(obj.shape)}"
        )
    sh = _check_shifts(shifts, xp)
    if len(sh) != n:
        raise ShapeError(f"shifts has {len(sh)} rows but updates has {n} windows")
    integer, _ = split_shifts(sh)
    upd = xp.fft.fftshift(updates, axes=(1, 2)) if fftshift else updates
    idx = _window_indices(obj.shape, (uy, ux), integer, xp, shifted=False).ravel()
    size = obj.shape[0] * obj.shape[1]
    vals = upd.reshape(-1)
    target = out if out is not None else obj
    if xp.iscomplexobj(vals) and not xp.iscomplexobj(target):
        raise TypeError("complex updates cannot be aggregated into a real object")
    if xp is np:
        if np.iscomplexobj(vals):
            acc = np.bincount(idx, weights=vals.real, minlength=size) + 1j * np.bincount(
                idx, weights=vals.imag, minlength=size
            )
        else:
            acc = np.bincount(idx, weights=vals, minlength=size)
        acc = acc.reshape(obj.shape)
    else:  # CuPy: atomic adds of the real and imaginary parts (float atomics)
        real_dtype = xp.float64 if vals.dtype in (xp.float64, xp.complex128) else xp.float32
        acc_re = xp.zeros(size, dtype=real_dtype)
        xp.add.at(acc_re, idx, xp.real(vals).astype(real_dtype, copy=False))
        if xp.iscomplexobj(vals):
            acc_im = xp.zeros(size, dtype=real_dtype)
            xp.add.at(acc_im, idx, xp.imag(vals).astype(real_dtype, copy=False))
            acc = acc_re + 1j * acc_im
        else:
            acc = acc_re
        acc = acc.reshape(obj.shape)
    if out is not None:
        if tuple(out.shape) != tuple(obj.shape):
            raise ShapeError(f"out must have shape {tuple(obj.shape)}, got {tuple(out.shape)}")
        if out is not obj:
            out[...] = obj
        out += acc.astype(out.dtype, copy=False)
        return out
    return (obj + acc).astype(obj.dtype, copy=False)


def exit_waves(obj: Any, probe: Any, positions: Any, *, ifftshift: bool = False) -> Any:
    """Exit waves ``probe(r - f) * obj(r + floor(R))`` for every position.

    Integer positions use the probe as is; fractional parts shift the probe by a Fourier phase
    ramp (band-limited, periodic over the probe window).

    Parameters
    ----------
    obj : ndarray of shape (ny, nx)
        Complex object transmission.
    probe : ndarray of shape (py, px)
        Complex probe.
    positions : ndarray of shape (n, 2)
        Probe positions (y, x) in object pixels.
    ifftshift : bool
        Return each exit wave ifftshifted (native FFT layout of the window).

    Returns
    -------
    ndarray of shape (n, py, px), complex
    """
    xp = get_xp(obj, probe, positions)
    pos = _check_shifts(positions, xp, "positions")
    integer, _ = split_shifts(pos)
    frac = pos - integer if pos.dtype.kind == "f" else None
    if frac is None or not bool(xp.any(frac != 0)):
        res, _ = rolled_object_probe_product(obj, probe, integer, ifftshift=ifftshift)
        return res
    probes = fourier_shift_probe(probe, frac).astype(
        xp.result_type(obj.dtype, probe.dtype, xp.complex64), copy=False
    )
    patches = object_patches(obj, integer, probe.shape)
    res = patches * probes
    return xp.fft.ifftshift(res, axes=(1, 2)) if ifftshift else res


def far_field(obj: Any, probe: Any, positions: Any, *, layout: str = "centered") -> Any:
    """Far-field waves ``FFT2(exit wave)`` (orthonormal) for every position.

    Parameters
    ----------
    obj, probe, positions
        As in :func:`exit_waves`.
    layout : {"centered", "native"}
        ``"centered"``: zero frequency at index ``shape // 2`` (a detector image);
        ``"native"``: zero frequency at index 0 (FFT layout).

    Returns
    -------
    ndarray of shape (n, py, px), complex
    """
    if layout not in ("centered", "native"):
        raise ValueError(f"layout must be 'centered' or 'native', got {layout!r}")
    xp = get_xp(obj, probe, positions)
    f = fft_module(xp)
    waves = exit_waves(obj, probe, positions, ifftshift=True)
    spec = f.fft2(waves, norm="ortho")
    return xp.fft.fftshift(spec, axes=(1, 2)) if layout == "centered" else spec


def diffraction_intensities(
    obj: Any, probe: Any, positions: Any, *, layout: str = "centered"
) -> Any:
    """Diffraction patterns ``|FFT2(probe * object window)|^2`` (orthonormal FFT).

    Parameters
    ----------
    obj, probe, positions
        As in :func:`exit_waves`.
    layout : {"centered", "native"}
        See :func:`far_field`.

    Returns
    -------
    ndarray of shape (n, py, px), float
        Intensities; their sum over a pattern equals the exit wave's total intensity.
    """
    spec = far_field(obj, probe, positions, layout=layout)
    xp = get_xp(spec)
    return (spec.real**2 + spec.imag**2).astype(
        xp.float32 if spec.dtype == xp.complex64 else xp.float64
    )
