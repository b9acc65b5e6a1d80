"""Drop-in replacement for ``ptychography40.reconstruction.common`` (transform tools).

Same names, argument order and defaults as the documented API ("Tools for iterative
ptychography"), LiberTEM conventions for the detector geometry. Implemented on
:mod:`stacklab.ptycho`; results agree with the repository version of ptychography40 except where
that version is wrong, in which case the corrected value is returned:

* ``rolled_object_probe_product_cpu``: negative fractional shifts are floored (the reference
  truncates towards zero and places the probe up to a pixel and a bin too far in +);
* ``image_transformation_matrix``: binned (downscaling) target pixels are centred on the mapped
  point and area-weighted (the reference anchors the bin at the mapped point, shifting the image
  by up to half a target pixel);
* ``diffraction_to_detector``: zero frequency at ``shape // 2`` for odd shapes (the reference
  is half a pixel off), and the per-axis diffracted pixel size is applied before the scan
  rotation (the reference swaps anisotropic scales under rotation).

``rolled_object_aggregation_cpu``/``_cuda`` and ``rolled_object_probe_product_*`` write into the
caller's output buffer, as the original API requires; nothing else modifies its inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse

from ..errors import ShapeError
from ..ptycho import forward as _fw
from ..ptycho import geometry as _geo
from ..ptycho import matrix as _mat
from ..ptycho import physics as _phys

__all__ = [
    "apply_matrix",
    "diffraction_to_detector",
    "fftshift_coords",
    "ifftshift_coords",
    "image_transformation_matrix",
    "rolled_object_aggregation_cpu",
    "rolled_object_aggregation_cuda",
    "rolled_object_probe_product_cpu",
    "rolled_object_probe_product_cuda",
    "shifted_probes",
    "wavelength",
]


def wavelength(U: float) -> float:
    """Relativistic electron wavelength.

    Parameters
    ----------
    U : float
        Acceleration voltage in kV.

    Returns
    -------
    float
        Wavelength in m, e.g. ``wavelength(300)`` is about 1.9687e-12.
    """
    return _phys.wavelength(U)


def diffraction_to_detector(
    lamb: float,
    diffraction_shape: tuple[int, int],
    pixel_size_real: float | tuple[float, float],
    pixel_size_detector: float | tuple[float, float],
    cy: float,
    cx: float,
    flip_y: bool = False,
    scan_rotation: float = 0.0,
) -> Callable[[np.ndarray], np.ndarray]:
    """Callable mapping diffraction (forward model) pixel coordinates to detector coordinates.

    Parameters
    ----------
    lamb : float
        Wavelength in m.
    diffraction_shape : (int, int)
        Shape of the diffracted area (forward-model array).
    pixel_size_real : float or (float, float)
        Real-space pixel size in m, scalar or (y, x).
    pixel_size_detector : float or (float, float)
        Detector pixel size in radian, scalar or (y, x).
    cy, cx : float
        Central beam position on the detector in pixels.
    flip_y : bool
        Flip the y axis of the detector coordinates.
    scan_rotation : float
        Scan rotation in degrees.

    Returns
    -------
    callable
        ``transform(coords)`` with coords of shape (n, 2) (y, x), returning (n, 2) floats.

    Notes
    -----
    Corrected with respect to the repository version for odd shapes and for anisotropic
    real-space pixels (or non-square shapes) combined with rotation; see the module docstring.
    """
    return _geo.diffraction_to_detector(
        lamb,
        diffraction_shape,
        pixel_size_real,
        pixel_size_detector,
        cy,
        cx,
        flip_y,
        scan_rotation,
    )


def fftshift_coords(reconstruct_shape: tuple[int, int]) -> Callable[[np.ndarray], np.ndarray]:
    """Index map (target -> source) that performs an FFT shift; see the canonical function.

    Parameters
    ----------
    reconstruct_shape : (int, int)
        Target shape.

    Returns
    -------
    callable
        Maps (n, 2) integer target coordinates to (n, 2) source coordinates.
    """
    return _geo.fftshift_coords(reconstruct_shape)


def ifftshift_coords(reconstruct_shape: tuple[int, int]) -> Callable[[np.ndarray], np.ndarray]:
    """Index map (target -> source) that performs an inverse FFT shift.

    Parameters
    ----------
    reconstruct_shape : (int, int)
        Target shape.

    Returns
    -------
    callable
        Maps (n, 2) integer target coordinates to (n, 2) source coordinates.
    """
    return _geo.ifftshift_coords(reconstruct_shape)


def image_transformation_matrix(
    source_shape: tuple[int, int],
    target_shape: tuple[int, int],
    affine_transformation: Callable[[np.ndarray], np.ndarray],
    pre_transform: Callable[[np.ndarray], np.ndarray] | None = None,
    post_transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> scipy.sparse.csc_matrix:
    """Sparse matrix transforming a flattened source image stack into a flattened target stack.

    Parameters
    ----------
    source_shape, target_shape : (int, int)
        Source and target image shapes.
    affine_transformation : callable
        Maps intermediate (pre-transformed) coordinates (n, 2) to float source coordinates.
    pre_transform : callable, optional
        Maps target indices to intermediate coordinates (e.g. :func:`ifftshift_coords`).
    post_transform : callable, optional
        Maps source coordinates to integer indices; default ``np.round(...).astype(int)``.

    Returns
    -------
    scipy.sparse.csc_matrix of shape (prod(source_shape), prod(target_shape)), float32

    Notes
    -----
    Target pixels whose footprint edges are both shorter than 1.5 source pixels take the
    nearest source pixel; larger ones are area-averaged over a footprint *centred* on the mapped
    point (the repository version anchors it at the mapped point instead).
    """
    return _mat.image_transformation_matrix(
        source_shape, target_shape, affine_transformation, pre_transform, post_transform
    )


def apply_matrix(sources: Any, matrix: Any, target_shape: tuple[int, int]) -> Any:
    """Apply a matrix from :func:`image_transformation_matrix` to a stack of images.

    Parameters
    ----------
    sources : ndarray of shape (..., sy, sx)
        Image stack.
    matrix : sparse matrix or ndarray of shape (sy * sx, ty * tx)
        Transformation matrix.
    target_shape : (int, int)
        Target shape; the result has shape ``sources.shape[:-2] + target_shape``.

    Returns
    -------
    ndarray of shape (..., ty, tx)
    """
    return _mat.apply_matrix(sources, matrix, target_shape)


def shifted_probes(probe: np.ndarray, bins: int | tuple[int, int]) -> np.ndarray:
    """Sub-pixel shifted versions of the probe (cubic spline, as the original).

    Parameters
    ----------
    probe : ndarray of shape (py, px)
        Probe.
    bins : int or (int, int)
        Number of sub-pixel steps in y and x.

    Returns
    -------
    ndarray of shape (bins_y, bins_x, py, px)
        Entry ``[i, j]`` is the probe shifted by ``(i / bins_y, j / bins_x)`` pixels.
    """
    return _fw.shifted_probes(probe, bins, method="spline")


def _product(obj, probe, shifts, result_out, ifftshift) -> Any:
    if getattr(probe, "ndim", None) != 4:
        raise ShapeError(
            f"probe must be 4-D (bins_y, bins_x, py, px), got shape {getattr(probe, 'shape', None)}"
        )
    n = len(shifts)
    if tuple(result_out.shape) != (n, *probe.shape[2:]):
        raise ShapeError(
            f"result_out must have shape {(n, *probe.shape[2:])}, got {tuple(result_out.shape)}"
        )
    result, sub = _fw.rolled_object_probe_product(obj, probe, shifts, ifftshift=ifftshift)
    result_out[...] = result
    return sub


def rolled_object_probe_product_cpu(
    obj: np.ndarray,
    probe: np.ndarray,
    shifts: np.ndarray,
    result_out: np.ndarray,
    ifftshift: bool = False,
) -> np.ndarray:
    """Multiply the rolled object with sub-pixel shifted probes, writing into ``result_out``.

    Parameters
    ----------
    obj : ndarray of shape (ny, nx)
        Object.
    probe : ndarray of shape (bins_y, bins_x, py, px)
        Sub-pixel shifted probes (:func:`shifted_probes`), ``py <= ny``, ``px <= nx``.
    shifts : ndarray of shape (n, 2)
        Shift vectors (y, x), float.
    result_out : ndarray of shape (n, py, px)
        Output buffer, overwritten.
    ifftshift : bool
        Place each product ifftshifted into ``result_out``.

    Returns
    -------
    ndarray of shape (n, 2), int64
        The probe bin used for each shift.

    Notes
    -----
    Negative fractional shifts are floored (probe at ``floor(s * bins) / bins``); the repository
    version truncates them towards zero.
    """
    return _product(obj, probe, shifts, result_out, ifftshift)


def rolled_object_aggregation_cpu(
    obj_out: np.ndarray, updates: np.ndarray, shifts: np.ndarray, fftshift: bool = False
) -> None:
    """Add shifted updates into ``obj_out`` in place (periodic), summing overlaps.

    Parameters
    ----------
    obj_out : ndarray of shape (ny, nx)
        Object, modified in place.
    updates : ndarray of shape (n, uy, ux)
        Updates.
    shifts : ndarray of shape (n, 2)
        Integer shift vectors (y, x).
    fftshift : bool
        Read the updates fftshifted.
    """
    _fw.rolled_object_aggregation(obj_out, updates, shifts, fftshift=fftshift, out=obj_out)


def rolled_object_probe_product_cuda(
    obj: Any, probe: Any, shifts: Any, result_out: Any, ifftshift: bool = False
) -> Any:
    """CuPy version of :func:`rolled_object_probe_product_cpu` (CuPy arrays in and out).

    Parameters
    ----------
    obj, probe, shifts, result_out, ifftshift
        As in :func:`rolled_object_probe_product_cpu`, as CuPy arrays.

    Returns
    -------
    cupy.ndarray of shape (n, 2), int64
    """
    return _product(obj, probe, shifts, result_out, ifftshift)


def rolled_object_aggregation_cuda(obj_out, updates, shifts, fftshift: bool = False) -> None:
    """CuPy version of :func:`rolled_object_aggregation_cpu` (in place on ``obj_out``).

    Parameters
    ----------
    obj_out, updates, shifts, fftshift
        As in :func:`rolled_object_aggregation_cpu`, as CuPy arrays.
    """
    _fw.rolled_object_aggregation(obj_out, updates, shifts, fftshift=fftshift, out=obj_out)
