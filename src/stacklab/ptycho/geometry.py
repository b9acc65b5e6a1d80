"""Coordinate transforms between the forward-model grid and the detector.

Conventions (shared by the whole :mod:`stacklab.ptycho` package):

* coordinates are ``(y, x) = (row, column)`` in pixels, integer values are pixel centres;
* the forward model's far field (the "target" or "diffraction" grid) has zero frequency at index
  ``shape // 2`` in its fftshifted layout and at index 0 in the native FFT layout;
* a coordinate transform is a callable mapping an ``(n, 2)`` array of target coordinates to an
  ``(n, 2)`` array of source (detector) coordinates.

The detector geometry parameters (``cy``, ``cx``, ``flip_y``, ``scan_rotation``) follow LiberTEM's
centre-of-mass analysis: the transform first flips the y axis if asked, then rotates by the scan
rotation (``y' = y cos t - x sin t``, ``x' = y sin t + x cos t`` for the row vector ``(y, x)``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import get_xp
from ..errors import ShapeError

__all__ = [
    "AffineTransform",
    "diffraction_to_detector",
    "fftshift_coords",
    "footprints",
    "ifftshift_coords",
    "validity_mask",
]

logger = logging.getLogger(__name__)

CoordTransform = Callable[[Any], Any]


def _shape2(shape: Any, name: str) -> tuple[int, int]:
    """Validate a 2-D shape argument and return it as a tuple of Python ints."""
    try:
        vals = tuple(int(v) for v in np.asarray(shape).ravel())
        ok = len(vals) == 2 and all(float(v) == float(w) for v, w in zip(vals, np.ravel(shape)))
    except (TypeError, ValueError):
        ok = False
    if not ok or any(v <= 0 for v in vals):
        raise ShapeError(f"{name} must be two positive integers (rows, cols), got {shape!r}")
    return vals  # type: ignore[return-value]


def _pair(value: Any, name: str) -> np.ndarray:
    """Return a positive finite (y, x) pair from a scalar or a 2-sequence."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.array([arr, arr])
    if arr.shape != (2,):
        raise ValueError(f"{name} must be a scalar or a (y, x) pair, got {value!r}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return arr


@dataclass(frozen=True, eq=False)
class AffineTransform:
    """Affine map of ``(n, 2)`` coordinates: ``out = origin_out + (coords - origin_in) @ linear``.

    Attributes
    ----------
    linear : ndarray of shape (2, 2)
        Row 0 is the output displacement for a +1 step along input y, row 1 for input x
        (the Jacobian, in output pixels per input pixel).
    origin_in : ndarray of shape (2,)
        Input coordinate (y, x) that maps onto ``origin_out``.
    origin_out : ndarray of shape (2,)
        Output coordinate (y, x) of ``origin_in``.
    """

    linear: np.ndarray
    origin_in: np.ndarray
    origin_out: np.ndarray

    def __call__(self, coords: Any) -> Any:
        """Map ``coords`` (ndarray of shape (n, 2), (y, x)) to output coordinates (n, 2) float64.

        CuPy input gives CuPy output.
        """
        xp = get_xp(coords)
        c = xp.asarray(coords, dtype=xp.float64)
        lin = xp.asarray(self.linear)
        return (c - xp.asarray(self.origin_in)) @ lin + xp.asarray(self.origin_out)

    @property
    def jacobian(self) -> np.ndarray:
        """ndarray of shape (2, 2): displacement per +1 input step along y (row 0) and x (row 1)."""
        return self.linear.copy()

    def inverse(self) -> AffineTransform:
        """Return the inverse map (output coordinates to input coordinates).

        Raises
        ------
        ValueError
            If the linear part is singular.
        """
        det = float(np.linalg.det(self.linear))
        if det == 0 or not np.isfinite(det):
            raise ValueError("the transform is singular and has no inverse")
        return AffineTransform(np.linalg.inv(self.linear), self.origin_out, self.origin_in)


def diffraction_to_detector(
    lamb: float,
    diffraction_shape: tuple[int, int],
    pixel_size_real: float | tuple[float, float],
    pixel_size_detector: float | tuple[float, float],
    cy: float,
    cx: float,
    flip_y: bool = False,
    scan_rotation: float = 0.0,
) -> AffineTransform:
    """Map far-field (forward model) pixel coordinates onto detector pixel coordinates.

    One pixel of the Fourier transform of a real-space array of ``diffraction_shape`` pixels of
    size ``pixel_size_real`` spans ``lamb / (pixel_size_real * diffraction_shape)`` radian. That
    scale applies along the *forward-model* axes, before the flip and the scan rotation; the
    detector pixel size then divides along the *detector* axes. Zero frequency (index
    ``diffraction_shape // 2`` of the fftshifted far field) lands on ``(cy, cx)``.

    Parameters
    ----------
    lamb : float
        Wavelength in metres (> 0), e.g. :func:`stacklab.ptycho.wavelength`.
    diffraction_shape : (int, int)
        Shape (rows, cols) of the forward-model array.
    pixel_size_real : float or (float, float)
        Real-space pixel size of the forward model in metres, scalar or (y, x).
    pixel_size_detector : float or (float, float)
        Detector pixel size in radian, scalar or (y, x) (pixel pitch / camera length).
    cy, cx : float
        Position of the central beam on the detector, detector pixels (row, column).
    flip_y : bool
        Flip the y axis (different handedness of detector and scan coordinates).
    scan_rotation : float
        Scan rotation in degrees.

    Returns
    -------
    AffineTransform
        Callable mapping target coordinates (n, 2) (y, x) to detector coordinates (n, 2).

    Raises
    ------
    ValueError
        For a non-positive or non-finite wavelength, pixel size, or non-finite centre/rotation.
    ShapeError
        For a ``diffraction_shape`` that is not two positive integers.

    Notes
    -----
    Two departures from the ptychography40 repository version (which is wrong there): zero
    frequency sits at ``shape // 2`` (the reference uses ``shape / 2``, half a pixel off for odd
    shapes), and the per-axis diffracted pixel size scales the forward-model axes before the
    rotation (the reference applies it after, swapping anisotropic scales under rotation).
    """
    if not np.isfinite(lamb) or lamb <= 0:
        raise ValueError(f"lamb must be finite and > 0 (metres), got {lamb!r}")
    shape = _shape2(diffraction_shape, "diffraction_shape")
    psr = _pair(pixel_size_real, "pixel_size_real")
    psd = _pair(pixel_size_detector, "pixel_size_detector")
    for name, val in (("cy", cy), ("cx", cx), ("scan_rotation", scan_rotation)):
        if not np.isfinite(float(val)):
            raise ValueError(f"{name} must be finite, got {val!r}")
    pixel_size_diffracted = lamb / (psr * np.asarray(shape, dtype=np.float64))  # rad, (y, x)
    theta = np.deg2rad(float(scan_rotation))
    c, s = np.cos(theta), np.sin(theta)
    rotation = np.array([[c, s], [-s, c]])
    flip = np.diag([-1.0, 1.0]) if flip_y else np.eye(2)
    linear = np.diag(pixel_size_diffracted) @ rotation @ flip @ np.diag(1.0 / psd)
    origin_in = np.asarray(shape, dtype=np.float64) // 2
    return AffineTransform(linear, origin_in, np.array([float(cy), float(cx)]))


@dataclass(frozen=True, eq=False)
class _ShiftCoords:
    """Index map performing an (inverse) FFT shift: target index -> source index."""

    shape: tuple[int, int]
    inverse: bool

    def __call__(self, coords: Any) -> Any:
        xp = get_xp(coords)
        c = xp.asarray(coords)
        n = xp.asarray(self.shape)
        offset = n // 2 if self.inverse else (n + 1) // 2
        return (c + offset) % n


def fftshift_coords(reconstruct_shape: tuple[int, int]) -> CoordTransform:
    """Index map that performs :func:`numpy.fft.fftshift` when used as a pre-transform.

    Reading ``source[f(t)]`` into ``target[t]`` for every target index ``t`` gives
    ``target = fftshift(source)``. Indices outside the shape wrap around (Python modulo).

    Parameters
    ----------
    reconstruct_shape : (int, int)
        Shape (rows, cols) of the target array.

    Returns
    -------
    callable
        ``f(coords)`` with ``coords`` of shape (n, 2) integers (y, x), returning (n, 2).
    """
    return _ShiftCoords(_shape2(reconstruct_shape, "reconstruct_shape"), inverse=False)


def ifftshift_coords(reconstruct_shape: tuple[int, int]) -> CoordTransform:
    """Index map that performs :func:`numpy.fft.ifftshift` when used as a pre-transform.

    Reading ``source[f(t)]`` into ``target[t]`` gives ``target = ifftshift(source)``: a detector
    image with the central beam at ``shape // 2`` becomes the native FFT layout (zero frequency
    at index 0).

    Parameters
    ----------
    reconstruct_shape : (int, int)
        Shape (rows, cols) of the target array.

    Returns
    -------
    callable
        ``f(coords)`` with ``coords`` of shape (n, 2) integers (y, x), returning (n, 2).
    """
    return _ShiftCoords(_shape2(reconstruct_shape, "reconstruct_shape"), inverse=True)


def footprints(
    target_shape: tuple[int, int],
    affine_transformation: CoordTransform,
    pre_transform: CoordTransform | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre and edge vectors, in source pixels, of every target pixel.

    Target pixel ``t`` (row-major) is mapped to ``a = affine(pre(t))``, its centre in source
    coordinates; its edges are ``v_y = affine(pre(t) + (1, 0)) - a`` and
    ``v_x = affine(pre(t) + (0, 1)) - a``. Its footprint is the parallelogram
    ``a + u v_y + w v_x`` with ``u, w`` in ``[-1/2, 1/2]``.

    Parameters
    ----------
    target_shape : (int, int)
        Shape of the target image.
    affine_transformation : callable
        Maps (n, 2) float coordinates (y, x) to (n, 2) source coordinates.
    pre_transform : callable, optional
        Maps (n, 2) integer target indices to the coordinates fed to ``affine_transformation``
        (e.g. :func:`ifftshift_coords`); identity by default.

    Returns
    -------
    centres, v_y, v_x : ndarray of shape (ty * tx, 2)
        float64, source pixels, in row-major target order.
    """
    ty, tx = _shape2(target_shape, "target_shape")
    yy, xx = np.meshgrid(np.arange(ty), np.arange(tx), indexing="ij")
    tcoords = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.int64)
    inter = tcoords if pre_transform is None else np.asarray(pre_transform(tcoords))
    inter = np.asarray(inter, dtype=np.float64)
    if inter.shape != tcoords.shape:
        raise ShapeError(
            f"pre_transform must return an array of shape {tcoords.shape}, got {inter.shape}"
        )
    n = len(inter)
    # One call for all three points keeps user callables' overhead low.
    step_y = np.array([1.0, 0.0])
    step_x = np.array([0.0, 1.0])
    pts = np.concatenate([inter, inter + step_y, inter + step_x])
    mapped = np.asarray(affine_transformation(pts), dtype=np.float64)
    if mapped.shape != pts.shape:
        raise ShapeError(
            f"affine_transformation must return an array of shape {pts.shape}, got {mapped.shape}"
        )
    centres = mapped[:n]
    return centres, mapped[n : 2 * n] - centres, mapped[2 * n :] - centres


def validity_mask(
    source_shape: tuple[int, int],
    target_shape: tuple[int, int],
    affine_transformation: CoordTransform,
    pre_transform: CoordTransform | None = None,
    *,
    method: str = "auto",
) -> np.ndarray:
    """Which target pixels are fully measured by the detector.

    A target pixel is valid when every source pixel the matching
    :func:`~stacklab.ptycho.image_transformation_matrix` would read for it lies on the detector:
    its nearest source pixel (``"nearest"``), its whole footprint (``"area"``), or all four
    interpolation neighbours (``"bilinear"``). ``"auto"`` uses nearest for footprints with both
    edges shorter than 1.5 source pixels and area otherwise, as the matrix builder does.

    Parameters
    ----------
    source_shape, target_shape : (int, int)
        Detector (source) and forward-model (target) image shapes.
    affine_transformation : callable
        Target coordinates (n, 2) -> source coordinates (n, 2), e.g. from
        :func:`diffraction_to_detector`.
    pre_transform : callable, optional
        Target index map such as :func:`ifftshift_coords`; identity by default.
    method : {"auto", "nearest", "area", "bilinear"}
        Sampling method of the matrix the mask goes with.

    Returns
    -------
    ndarray of bool, shape target_shape
        True where the target pixel's value is complete; False where part or all of it falls
        off the detector (such pixels should be excluded from a data-fidelity term).
    """
    sy, sx = _shape2(source_shape, "source_shape")
    ts = _shape2(target_shape, "target_shape")
    if method not in ("auto", "nearest", "area", "bilinear"):
        raise ValueError(f"method must be 'auto', 'nearest', 'area' or 'bilinear', got {method!r}")
    centres, vy, vx = footprints(ts, affine_transformation, pre_transform)
    hi = np.array([sy, sx], dtype=np.float64)
    near = np.rint(centres)
    ok_near = np.all((near >= 0) & (near < hi), axis=1)
    corners = [centres + 0.5 * (a * vy + b * vx) for a in (-1, 1) for b in (-1, 1)]
    ok_area = np.all([np.all((c > -0.5) & (c < hi - 0.5), axis=1) for c in corners], axis=0)
    ok_bil = np.all((centres >= 0) & (centres <= hi - 1), axis=1)
    if method == "nearest":
        ok = ok_near
    elif method == "area":
        ok = ok_area
    elif method == "bilinear":
        ok = ok_bil
    else:
        single = (np.hypot(*vy.T) < 1.5) & (np.hypot(*vx.T) < 1.5)
        ok = np.where(single, ok_near, ok_area)
    return ok.reshape(ts)
