"""From a recorded 4D-STEM datacube to a ptychographic reconstruction.

:func:`reconstruct` works on the forward model's grid: patterns whose pixels are the far-field
pixels of the probe window, positions in object pixels, a probe guess on the same window.
:func:`prepare_4dstem` makes those from what a microscope records, a datacube
``(scan_row, scan_col, det_row, det_col)`` and the acquisition parameters:

1. the beam centre on the detector (zero scattering angle) is found on the mean pattern with
   :func:`stacklab.core.disks.disk_centres` unless given, and the disk radius measured by
   :func:`stacklab.core.disks.disk_radius` is checked against the acquisition parameters;
2. the forward-model grid is chosen (see :func:`prepare_4dstem` for the rule): ``(ty, tx)``
   far-field pixels of ``dq`` rad, i.e. real-space pixels of ``lambda / (t dq)`` m;
3. :func:`~stacklab.ptycho.diffraction_to_detector` gives the affine map from that grid onto
   the detector (scan rotation and flip included),
   :func:`~stacklab.ptycho.image_transformation_matrix` turns it into one sparse matrix, and
   :func:`~stacklab.ptycho.apply_matrix` resamples the cube block by block through
   :func:`stacklab.engine.map_frames` (NumPy, CuPy, Dask or h5py/zarr input; temporary memory
   bounded by ``chunk`` frames);
4. :func:`~stacklab.ptycho.validity_mask` marks the grid pixels the detector covers (the others
   are left free by :func:`reconstruct`);
5. positions are the raster of scan steps in reconstruction pixels, and the probe guess is the
   condenser aperture (soft edge) with defocus and aberrations, scaled to the data.

The reconstruction is in the *scan frame*: object rows follow the slow scan axis (scan rows),
columns the fast one, as in a STEM image of the same scan; the scan rotation and flip are
applied to the diffraction patterns, not to the positions.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import get_xp, is_cupy, is_dask, to_numpy
from ..errors import ShapeError
from .geometry import AffineTransform, diffraction_to_detector, validity_mask
from .matrix import apply_matrix, image_transformation_matrix
from .physics import wavelength
from .reconstruct import ReconstructionResult, reconstruct

__all__ = [
    "PtychoInput",
    "angular_pixel_size",
    "aperture_probe",
    "prepare_4dstem",
    "reconstruct_4dstem",
]

logger = logging.getLogger(__name__)

#: Smallest bright-field disk radius on the forward-model grid, pixels.
_MIN_APERTURE_PX = 2.0
#: Aberration names: ``C<n><m>`` with an ``a``/``b`` suffix for m > 0 (Krivanek notation).
_ABERRATION = re.compile(r"^C(\d)(\d)([ab]?)$")


@dataclass(frozen=True, eq=False)
class PtychoInput:
    """Everything :func:`~stacklab.ptycho.reconstruct` needs, made from a 4D-STEM datacube.

    Attributes
    ----------
    patterns : ndarray of shape (n, ty, tx), float32
        Diffraction intensities on the forward-model grid, centred layout (zero angle at index
        ``(ty // 2, tx // 2)``, ``reconstruct(..., layout="centered")``), scan order row-major
        (``n = scan_row * scan_col``). Counts per target pixel with ``count_conserving``,
        otherwise counts per detector pixel. NumPy (CuPy for CuPy input).
    valid : ndarray of bool, shape (ty, tx)
        Target pixels fully covered by the detector (and by no masked detector pixel); pass as
        ``mask=`` to :func:`~stacklab.ptycho.reconstruct`.
    positions : ndarray of shape (n, 2), float64
        Probe window offsets (y, x) in reconstruction pixels, the raster of scan steps starting
        at (0, 0), row-major.
    probe : ndarray of shape (ty, tx), complex64
        Probe guess centred at ``(ty // 2, tx // 2)``, ``sum |P|^2`` equal to the mean total
        intensity of ``patterns`` over ``valid``.
    pixel_size_m : ndarray of shape (2,)
        Real-space pixel size (y, x) of the reconstruction, m.
    fourier_pixel_rad : ndarray of shape (2,)
        Angular size (y, x) of a forward-model far-field pixel, rad.
    wavelength_m : float
        Electron wavelength, m.
    beam_centre : ndarray of shape (2,)
        Zero scattering angle on the detector, (row, col) px (found or given).
    transform : AffineTransform
        Forward-model coordinates (centred layout) -> detector coordinates.
    matrix : scipy.sparse.csc_matrix of shape (det_row * det_col, ty * tx)
        The resampling matrix (``target_flat = detector_flat @ matrix``).
    scan_shape : (int, int)
        (scan_row, scan_col).
    detector_shape : (int, int)
        (det_row, det_col).
    params : dict
        The acquisition parameters and choices made (SI units).
    """

    patterns: Any
    valid: np.ndarray
    positions: np.ndarray
    probe: np.ndarray
    pixel_size_m: np.ndarray
    fourier_pixel_rad: np.ndarray
    wavelength_m: float
    beam_centre: np.ndarray
    transform: AffineTransform
    matrix: Any
    scan_shape: tuple[int, int]
    detector_shape: tuple[int, int]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def reconstruct_shape(self) -> tuple[int, int]:
        """(ty, tx): probe window and pattern shape of the forward model."""
        return tuple(int(v) for v in self.probe.shape)  # type: ignore[return-value]

    @property
    def layout(self) -> str:
        """Layout of ``patterns`` for :func:`~stacklab.ptycho.reconstruct`: ``"centered"``."""
        return "centered"


# ------------------------------------------------------------------------------------------------
# argument checks and small helpers
# ------------------------------------------------------------------------------------------------


def _positive(value: Any, name: str, unit: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number ({unit}), got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0 ({unit}), got {value!r}")
    return v


def _pair(value: Any, name: str, unit: str) -> np.ndarray:
    """A positive finite (y, x) pair from a scalar or a 2-sequence."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a number or a (y, x) pair ({unit}), got {value!r}"
        ) from None
    if arr.ndim == 0:
        arr = np.array([arr, arr])
    if arr.shape != (2,):
        raise ValueError(f"{name} must be a scalar or a (y, x) pair ({unit}), got {value!r}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0 ({unit}), got {value!r}")
    return arr


def _array_of(cube: Any) -> Any:
    """The array behind ``cube`` without reading it.

    An object that carries its array in ``.data`` (a datacube such as
    :class:`stacklab.stem4d.DataCube`, an xarray DataArray) gives that array; arrays (NumPy,
    CuPy, Dask, h5py/zarr datasets, lazy readers: anything with ``shape`` and ``dtype``) are
    returned as they are, lists and tuples as NumPy arrays.

    Raises
    ------
    TypeError
        If ``cube`` is neither (no ``shape``/``dtype``).
    """
    inner = getattr(cube, "data", None)
    if hasattr(inner, "shape") and hasattr(inner, "dtype"):
        return inner
    if isinstance(cube, list | tuple):
        return np.asarray(cube)
    if not (hasattr(cube, "shape") and hasattr(cube, "dtype")):
        raise TypeError(f"cube must be an array or a DataCube, got {type(cube).__name__}")
    return cube


def angular_pixel_size(pixel_size_m: Any, camera_length_m: float) -> np.ndarray:
    """Angular size of a detector pixel from its physical size and the camera length.

    ``pixel / L`` per axis (small angles: on a flat detector a pixel at angle ``theta`` spans
    ``cos(theta)^2`` of that, 0.25 % less at 50 mrad).

    Parameters
    ----------
    pixel_size_m : float or (float, float)
        Physical pixel pitch (y, x) of the detector, m (e.g. 55e-6 for Medipix/Timepix).
    camera_length_m : float
        Effective camera length, m.

    Returns
    -------
    ndarray of shape (2,)
        Angular pixel size (y, x), rad: the ``detector_pixel_rad`` of :func:`prepare_4dstem`.

    Raises
    ------
    ValueError
        For non-positive or non-finite values.

    Examples
    --------
    >>> angular_pixel_size(55e-6, 0.11)
    array([0.0005, 0.0005])
    """
    pitch = _pair(pixel_size_m, "pixel_size_m", "metres")
    length = _positive(camera_length_m, "camera_length_m", "metres")
    return pitch / length


def _aberration_terms(aberrations: Any) -> list[tuple[int, int, str, float]]:
    """Parse ``{"C30": 1e-3, "C12a": 2e-9, ...}`` into (n, m, a|b, value) terms."""
    if aberrations is None:
        return []
    if not isinstance(aberrations, dict):
        raise TypeError(f"aberrations must be a dict such as {{'C30': 1e-3}}, got {aberrations!r}")
    terms = []
    for key, value in aberrations.items():
        match = _ABERRATION.match(str(key))
        if match is None:
            raise ValueError(
                f"aberrations key {key!r} is not a Krivanek coefficient such as 'C30' or 'C12a'"
            )
        n, m, ab = int(match.group(1)), int(match.group(2)), match.group(3)
        if m > n + 1 or (n + 1 - m) % 2 or (m == 0) != (ab == ""):
            raise ValueError(
                f"aberrations key {key!r} is not a valid coefficient (need m <= n + 1, n + 1 - m "
                "even, and an 'a'/'b' suffix exactly when m > 0)"
            )
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"aberrations[{key!r}] must be finite (metres), got {value!r}")
        terms.append((n, m, ab, v))
    return terms


def aperture_probe(
    shape: tuple[int, int],
    *,
    wavelength_m: float,
    fourier_pixel_rad: Any,
    semiconv_rad: float,
    defocus_m: float = 0.0,
    aberrations: dict[str, float] | None = None,
    edge_px: float = 1.0,
    intensity: float = 1.0,
) -> np.ndarray:
    """A convergent-beam probe: condenser aperture with a soft edge, defocus and aberrations.

    The far field is ``A(theta) exp(i chi(theta))`` with ``A`` the aperture disk of radius
    ``semiconv_rad`` and a linear edge ``edge_px`` far-field pixels wide (anti-aliased), and

    ``chi = pi defocus theta^2 / lambda + (2 pi / lambda) sum C_nm theta^(n+1) / (n+1)
    [cos(m phi) for "a", sin(m phi) for "b"]``

    with ``phi = atan2(theta_y, theta_x)`` in the forward-model (scan) frame. The probe is its
    inverse FFT, centred at ``shape // 2``. The defocus sign follows
    :func:`~stacklab.ptycho.make_probe` (``defocus_phase = pi defocus semiconv^2 / lambda``);
    ``"C10"`` in ``aberrations`` adds to ``defocus_m``.

    Parameters
    ----------
    shape : (int, int)
        Probe window (ty, tx).
    wavelength_m : float
        Electron wavelength, m.
    fourier_pixel_rad : float or (float, float)
        Angular size (y, x) of a far-field pixel of the window, rad.
    semiconv_rad : float
        Semi-convergence angle, rad.
    defocus_m : float
        Defocus, m.
    aberrations : dict of str to float, optional
        Krivanek coefficients in metres, e.g. ``{"C30": 1e-6, "C12a": 2e-9}``.
    edge_px : float
        Width of the aperture edge, far-field pixels (> 0).
    intensity : float
        ``sum |P|^2`` of the result.

    Returns
    -------
    ndarray of shape ``shape``, complex64

    Raises
    ------
    ValueError
        For non-positive sizes or bad aberration names.
    """
    from .geometry import _shape2

    ty, tx = _shape2(shape, "shape")
    lam = _positive(wavelength_m, "wavelength_m", "metres")
    dq = _pair(fourier_pixel_rad, "fourier_pixel_rad", "rad")
    alpha = _positive(semiconv_rad, "semiconv_rad", "rad")
    edge = _positive(edge_px, "edge_px", "pixels")
    total = _positive(intensity, "intensity", "counts")
    if not math.isfinite(float(defocus_m)):
        raise ValueError(f"defocus_m must be finite (metres), got {defocus_m!r}")
    terms = _aberration_terms(aberrations)
    qy = np.fft.fftfreq(ty, 1.0 / ty)[:, None] * dq[0]  # rad, FFT layout
    qx = np.fft.fftfreq(tx, 1.0 / tx)[None, :] * dq[1]
    theta = np.hypot(qy, qx)
    px_size = math.sqrt(dq[0] * dq[1])
    amp = np.clip((alpha - theta) / (edge * px_size) + 0.5, 0.0, 1.0)
    chi = np.pi * float(defocus_m) * theta**2 / lam
    if terms:
        phi = np.arctan2(qy, qx)
        for n, m, ab, c in terms:
            ang = 1.0 if m == 0 else (np.cos(m * phi) if ab == "a" else np.sin(m * phi))
            chi = chi + (2 * np.pi / lam) * c * theta ** (n + 1) / (n + 1) * ang
    probe = np.fft.fftshift(np.fft.ifft2(amp * np.exp(1j * chi)))
    norm = float(np.sum(np.abs(probe) ** 2))
    if norm <= 0:
        raise ValueError("the aperture holds no far-field pixel: semiconv_rad is too small")
    return (probe * math.sqrt(total / norm)).astype(np.complex64)


def _sum_kernel(block: Any) -> Any:
    """Kernel of the mean pattern: sum of a block of frames (n, H, W) in float64, (H, W)."""
    xp = get_xp(block)
    return xp.sum(block, axis=0, dtype=xp.float64)


def _mean_pattern(data: Any, chunk: int, progress: bool | None) -> Any:
    """Mean pattern (det_row, det_col), float64, of a cube read block by block.

    Through :func:`stacklab.engine.reduce_frames`: NumPy, CuPy (result on the GPU), Dask and
    h5py/zarr input (NumPy result). Sums of integer counts are exact in float64.
    """
    from .. import engine

    n = math.prod(int(s) for s in data.shape[:-2])
    return engine.reduce_frames(_sum_kernel, data, chunk=chunk, progress=progress) / n


def _beam_centre_from(
    data: Any, det_px: np.ndarray, chunk: int, progress: bool | None
) -> tuple[np.ndarray, float]:
    """Beam centre (row, col) and bright-field disk radius (px) of the mean pattern.

    The radius is :func:`stacklab.core.disks.disk_radius` of the mean pattern. The centre is
    :func:`stacklab.core.disks.disk_centres` with that radius (edge-sharpened disk template,
    DFT-upsampled peak): the disk's edge fixes its centre, unlike a centre of mass that
    contrast inside the disk (the scan's mean scattering, not quite centrosymmetric) pulls by
    up to 0.1 px. For anisotropic detector pixels the disk is an ellipse that a round template
    does not fit, and the centre of mass of the disk measured by ``disk_radius`` is used.
    """
    from ..core.disks import disk_centres, disk_radius

    mean = _mean_pattern(data, chunk, progress)
    radius, com = disk_radius(to_numpy(mean), name="the mean pattern of cube")
    if det_px.max() <= 1.05 * det_px.min():
        centre = np.asarray(to_numpy(disk_centres(mean[None], radius)), dtype=np.float64)[0]
    else:
        centre = np.asarray(com, dtype=np.float64)
    if not np.all(np.isfinite(centre)):
        raise ValueError("could not find the beam centre: the mean pattern holds no counts")
    return centre, radius


def _choose_grid(
    lam: float,
    det_shape: tuple[int, int],
    det_px: np.ndarray,
    centre: np.ndarray,
    rotation: float,
    flip_y: bool,
    reconstruct_shape: Any,
    pixel_size_m: Any,
) -> tuple[tuple[int, int], np.ndarray]:
    """The forward-model grid (shape, real-space pixel size (y, x) in m); see prepare_4dstem."""
    from scipy.fft import next_fast_len

    from .geometry import _shape2

    dq_det = float(det_px.min())
    if reconstruct_shape is not None:
        shape = _shape2(reconstruct_shape, "reconstruct_shape")
    if pixel_size_m is not None:
        dx = _pair(pixel_size_m, "pixel_size_m", "metres")
        if reconstruct_shape is None:
            n = np.maximum(2, 2 * np.ceil(lam / (dx * dq_det) / 2)).astype(int)
            shape = (int(n[0]), int(n[1]))
        return shape, dx
    if reconstruct_shape is not None:
        return shape, lam / (np.asarray(shape, dtype=np.float64) * dq_det)
    # Default: far-field pixels of the detector's (smallest) angular pixel size, and a square
    # grid just large enough to hold every detector pixel once rotated into the scan frame.
    probe_affine = diffraction_to_detector(
        lam, (2, 2), lam / (2 * dq_det), det_px, centre[0], centre[1], flip_y, rotation
    )
    sy, sx = det_shape
    corners = np.array([[-0.5, -0.5], [-0.5, sx - 0.5], [sy - 0.5, -0.5], [sy - 0.5, sx - 0.5]])
    reach = np.abs(probe_affine.inverse()(corners) - probe_affine.origin_in).max()
    n = next_fast_len(int(2 * math.ceil(reach + 0.5)))
    n += n % 2
    return (n, n), np.full(2, lam / (n * dq_det))


def _check_geometry(
    *,
    lam: float,
    det_shape: tuple[int, int],
    det_px: np.ndarray,
    centre: np.ndarray,
    semiconv: float,
    shape: tuple[int, int],
    dx: np.ndarray,
    dq: np.ndarray,
    step: np.ndarray,
    defocus: float,
) -> None:
    """Raise ValueError (naming the arguments) for an acquisition the grid cannot describe."""
    sy, sx = det_shape
    # 1. the detector must hold the whole bright-field disk
    reach = np.array(
        [
            (centre[0] + 0.5) * det_px[0],
            (sy - 0.5 - centre[0]) * det_px[0],
            (centre[1] + 0.5) * det_px[1],
            (sx - 0.5 - centre[1]) * det_px[1],
        ]
    )
    if np.any(reach <= 0):
        raise ValueError(
            f"beam_centre {tuple(np.round(centre, 2))} lies off the {sy}x{sx} detector"
        )
    if reach.min() < semiconv:
        side = ("top", "bottom", "left", "right")[int(np.argmin(reach))]
        raise ValueError(
            f"the detector does not reach the aperture edge: the bright-field disk "
            f"(semiconv_rad={semiconv:.4g}) extends {semiconv / det_px.min():.1f} px from the "
            f"beam centre {tuple(np.round(centre, 1))} but the {side} edge is only "
            f"{reach.min():.4g} rad away; check semiconv_rad, detector_pixel_rad and beam_centre"
        )
    # 2. the forward-model grid must hold and sample the aperture
    half = (np.asarray(shape) - 1) // 2 * dq  # the shorter, positive side of zero angle
    if half.min() <= semiconv:
        raise ValueError(
            f"the forward-model grid {shape} of {dq.min():.4g} rad pixels spans only "
            f"+-{half.min():.4g} rad, not the aperture (semiconv_rad={semiconv:.4g}); "
            "reduce pixel_size_m (or, with far-field pixels of the detector's size, enlarge "
            "reconstruct_shape)"
        )
    if semiconv / dq.max() < _MIN_APERTURE_PX:
        raise ValueError(
            f"the bright-field disk is only {semiconv / dq.max():.2f} far-field pixels in radius "
            f"(semiconv_rad={semiconv:.4g}, pixels of {dq.max():.4g} rad); need >= "
            f"{_MIN_APERTURE_PX:g}: use finer far-field pixels (a larger reconstruct_shape for "
            "the same pixel_size_m)"
        )
    # 3. the probe window (real-space field of view) must hold the probe
    window = np.asarray(shape) * dx  # = lambda / dq
    diameter = 2 * abs(defocus) * semiconv + 1.22 * lam / semiconv
    if diameter > window.min():
        raise ValueError(
            f"the Fourier grid is not sampled finely enough to hold the probe: a probe of about "
            f"{diameter * 1e9:.3g} nm (defocus_m={defocus:.3g}, semiconv_rad={semiconv:.4g}) "
            f"does not fit the {window.min() * 1e9:.3g} nm window (lambda / far-field pixel); "
            "use smaller detector pixels (or bin less), a smaller defocus_m, or pass "
            "reconstruct_shape/pixel_size_m"
        )
    # 4. the scan: consecutive probe windows must overlap
    if np.any(step >= window):
        raise ValueError(
            f"scan_step_m {tuple(step)} is not smaller than the probe window "
            f"{window.min() * 1e9:.3g} nm: no overlap between neighbouring positions"
        )
    if np.any(step > diameter):
        logger.warning(
            "scan step %s m exceeds the probe diameter (~%.3g m): little or no overlap",
            tuple(step),
            diameter,
        )


def _map_kernel(block: Any, *, matrix: Any, target_shape: tuple[int, int]) -> Any:
    """Kernel of :func:`prepare_4dstem`: detector frames (n, sy, sx) -> grid (n, ty, tx)."""
    xp = get_xp(block)
    out = apply_matrix(block, matrix, target_shape)
    return xp.maximum(out, 0).astype(xp.float32, copy=False)


def prepare_4dstem(
    cube: Any,
    *,
    voltage_kV: float,
    semiconv_rad: float,
    scan_step_m: Any,
    detector_pixel_rad: Any,
    scan_rotation_deg: float = 0.0,
    flip_y: bool = False,
    beam_centre: Any = None,
    reconstruct_shape: tuple[int, int] | None = None,
    pixel_size_m: Any = None,
    defocus_m: float = 0.0,
    aberrations: dict[str, float] | None = None,
    count_conserving: bool = True,
    detector_mask: Any = None,
    method: str = "auto",
    chunk: int = 256,
    progress: bool | None = None,
) -> PtychoInput:
    """Map a 4D-STEM datacube onto the forward-model grid of :func:`reconstruct`.

    Parameters
    ----------
    cube : array-like of shape (scan_row, scan_col, det_row, det_col), or DataCube
        Detector counts (NumPy, CuPy, Dask, h5py/zarr dataset or
        :class:`~stacklab.stem4d.DataCube`, e.g. from :func:`~stacklab.stem4d.open_datacube`);
        read block by block, never modified. Integer data are widened.
    voltage_kV : float
        Acceleration voltage, kV.
    semiconv_rad : float
        Probe semi-convergence angle (bright-field disk radius), rad.
    scan_step_m : float or (float, float)
        Scan step (y = between scan rows, x = along a row), m.
    detector_pixel_rad : float or (float, float)
        Angular size (y, x) of a detector pixel, rad (pixel pitch / camera length; see
        :func:`angular_pixel_size`).
    scan_rotation_deg : float
        Rotation between scan and detector axes, degrees, and
    flip_y : bool
        a flip of the detector's y axis, as in :func:`~stacklab.ptycho.diffraction_to_detector`
        (LiberTEM's convention; :func:`stacklab.stem4d.dpc_rotation` measures them).
    beam_centre : (float, float), optional
        Zero scattering angle on the detector, (row, col) px. Default: the bright-field disk
        centre of the mean pattern (:func:`stacklab.core.disks.disk_centres`, an
        edge-sharpened disk template; the centre of mass of the disk for anisotropic pixels;
        one extra pass over the data).
    reconstruct_shape : (int, int), optional
        Forward-model grid (probe window, pattern shape) ``(ty, tx)``. See Notes for the default.
    pixel_size_m : float or (float, float), optional
        Real-space pixel size of the reconstruction, m. See Notes for the default.
    defocus_m : float
        Defocus of the probe guess, m (sign as :func:`aperture_probe`).
    aberrations : dict of str to float, optional
        Further aberrations of the probe guess, Krivanek coefficients in m (:func:`aperture_probe`).
    count_conserving : bool
        True: a target pixel holds the counts of the detector area it covers (patterns keep
        the detector's total, the Poisson statistics of counts). False: the mean counts of the
        detector pixels it covers.
    detector_mask : array of bool, shape (det_row, det_col), optional
        Good detector pixels (False: dead/hot pixels, beam stop); target pixels that read a
        masked pixel become invalid.
    method : {"auto", "nearest", "area", "bilinear"}
        Sampling of :func:`~stacklab.ptycho.image_transformation_matrix`.
    chunk : int
        Frames per block.
    progress : bool, optional
        Progress bars (default: when interactive).

    Returns
    -------
    PtychoInput

    Raises
    ------
    ShapeError
        If ``cube`` is not 4-D or ``detector_mask`` does not match the detector.
    ValueError
        For non-positive or non-finite parameters, and for inconsistent ones: a bright-field
        disk whose measured radius (when the beam centre is found) is more than 1.5 times off
        ``semiconv_rad / detector_pixel_rad``; a detector that does not reach the aperture
        edge; a grid that cannot hold or sample the aperture; a probe larger than the window
        (``lambda / far-field pixel``); a scan step as large as the window.

    Notes
    -----
    The forward-model grid: the far-field pixel is ``dq = lambda / (t dx)`` for ``t`` grid
    pixels of real-space size ``dx``.

    * Neither ``reconstruct_shape`` nor ``pixel_size_m``: ``dq`` is the detector's angular
      pixel (the smaller of y and x), and the grid is square, ``t`` the smallest even
      FFT-friendly size whose ``+- t / 2`` pixels hold every detector pixel once the detector is
      rotated (and flipped) into the scan frame about the beam centre, i.e. every angle the
      detector measured. Target pixels outside the detector are invalid (``valid``).
    * Only ``reconstruct_shape``: ``dq`` is the detector pixel (a smaller grid crops the high
      angles, a larger one pads).
    * Only ``pixel_size_m``: ``t`` is the even size for which ``dq`` is closest to (not above)
      the detector pixel.
    * Both: ``dq = lambda / (t dx)`` (the detector is resampled to it; ``dq`` larger than the
      detector pixel bins it).

    The positions are ``(i step_y / dx_y, j step_x / dx_x)`` for scan row ``i`` and column ``j``
    (values within 1e-6 of an integer are rounded to it). The probe guess is
    :func:`aperture_probe` with ``intensity`` the mean of ``sum(patterns * valid)``.
    """
    data = _array_of(cube)
    shape4 = tuple(int(s) for s in data.shape)
    if len(shape4) != 4 or min(shape4) < 1:
        raise ShapeError(
            "cube must have shape (scan_row, scan_col, det_row, det_col), got "
            f"{shape4} (give a 3-D stack its scan shape first)"
        )
    if np.dtype(data.dtype).kind not in "biuf":
        raise TypeError(f"cube must hold real numbers, got dtype {data.dtype}")
    scan_shape = (shape4[0], shape4[1])
    det_shape = (shape4[2], shape4[3])
    kv = _positive(voltage_kV, "voltage_kV", "kV")
    semiconv = _positive(semiconv_rad, "semiconv_rad", "rad")
    step = _pair(scan_step_m, "scan_step_m", "metres")
    det_px = _pair(detector_pixel_rad, "detector_pixel_rad", "rad")
    rotation = float(scan_rotation_deg)
    if not math.isfinite(rotation):
        raise ValueError(f"scan_rotation_deg must be finite, got {scan_rotation_deg!r}")
    if not math.isfinite(float(defocus_m)):
        raise ValueError(f"defocus_m must be finite (metres), got {defocus_m!r}")
    _aberration_terms(aberrations)  # validate early, before any pass over the data
    if method not in ("auto", "nearest", "area", "bilinear"):
        raise ValueError(f"method must be 'auto', 'nearest', 'area' or 'bilinear', got {method!r}")
    good = None
    if detector_mask is not None:
        good = np.asarray(to_numpy(detector_mask))
        if good.shape != det_shape:
            raise ShapeError(
                f"detector_mask must have the detector shape {det_shape}, got {good.shape}"
            )
        good = good.astype(bool)
    lam = float(wavelength(kv))

    if beam_centre is None:
        centre, radius = _beam_centre_from(data, det_px, chunk, progress)
        _check_disk_radius(radius, semiconv, det_px)
        found = True
    else:
        centre = np.asarray(to_numpy(beam_centre), dtype=np.float64).ravel()
        if centre.shape != (2,) or not np.all(np.isfinite(centre)):
            raise ValueError(f"beam_centre must be a finite (row, col) pair, got {beam_centre!r}")
        found = False

    grid, dx = _choose_grid(
        lam, det_shape, det_px, centre, rotation, bool(flip_y), reconstruct_shape, pixel_size_m
    )
    dq = lam / (np.asarray(grid, dtype=np.float64) * dx)
    _check_geometry(
        lam=lam,
        det_shape=det_shape,
        det_px=det_px,
        centre=centre,
        semiconv=semiconv,
        shape=grid,
        dx=dx,
        dq=dq,
        step=step,
        defocus=float(defocus_m),
    )
    affine = diffraction_to_detector(
        lam, grid, dx, det_px, centre[0], centre[1], flip_y=bool(flip_y), scan_rotation=rotation
    )
    matrix = image_transformation_matrix(
        det_shape, grid, affine, method=method, conserve_counts=bool(count_conserving)
    )
    valid = validity_mask(det_shape, grid, affine, method=method)
    if good is not None:
        bad_rows = np.flatnonzero(~good.ravel())
        touched = np.asarray(matrix[bad_rows].sum(axis=0)).ravel() != 0
        valid &= ~touched.reshape(grid)
        keep = np.ones(matrix.shape[0])
        keep[bad_rows] = 0.0
        import scipy.sparse

        matrix = (scipy.sparse.diags(keep.astype(np.float32)) @ matrix).tocsc()
        matrix.eliminate_zeros()
    if not valid.any():
        raise ValueError(
            "no forward-model pixel is covered by the detector: check beam_centre, "
            "detector_pixel_rad and reconstruct_shape/pixel_size_m"
        )

    from .. import engine

    mat = matrix
    if is_cupy(data):
        import cupyx.scipy.sparse as cusparse

        mat = cusparse.csc_matrix(matrix)
    mapped = engine.map_frames(
        _map_kernel, data, chunk=chunk, progress=progress, matrix=mat, target_shape=grid
    )
    if is_dask(mapped):
        mapped = mapped.compute()
    patterns = mapped.reshape(-1, *grid)
    xp = get_xp(patterns)
    total = float(xp.mean(xp.sum(patterns * xp.asarray(valid), axis=(-2, -1))))
    if not total > 0:
        raise ValueError("the mapped patterns hold no counts inside the valid region")

    iy, ix = np.meshgrid(np.arange(scan_shape[0]), np.arange(scan_shape[1]), indexing="ij")
    pos = np.stack([iy.ravel() * (step[0] / dx[0]), ix.ravel() * (step[1] / dx[1])], axis=1)
    near = np.round(pos)
    pos = np.where(np.abs(pos - near) < 1e-6, near, pos)

    probe = aperture_probe(
        grid,
        wavelength_m=lam,
        fourier_pixel_rad=dq,
        semiconv_rad=semiconv,
        defocus_m=float(defocus_m),
        aberrations=aberrations,
        intensity=total,
    )
    params = dict(
        voltage_kV=kv,
        semiconv_rad=semiconv,
        scan_step_m=step.tolist(),
        detector_pixel_rad=det_px.tolist(),
        scan_rotation_deg=rotation,
        flip_y=bool(flip_y),
        beam_centre=centre.tolist(),
        beam_centre_found=found,
        reconstruct_shape=list(grid),
        pixel_size_m=dx.tolist(),
        fourier_pixel_rad=dq.tolist(),
        defocus_m=float(defocus_m),
        aberrations=dict(aberrations or {}),
        count_conserving=bool(count_conserving),
        method=method,
        valid_fraction=float(valid.mean()),
        mean_counts=total,
    )
    logger.info(
        "prepare_4dstem: %s scan, %s detector -> %s grid, pixel %.4g pm, far-field pixel "
        "%.4g mrad, beam centre (%.2f, %.2f)%s, %.0f%% of the grid valid",
        scan_shape,
        det_shape,
        grid,
        dx.mean() * 1e12,
        dq.mean() * 1e3,
        centre[0],
        centre[1],
        " (found)" if found else "",
        100 * valid.mean(),
    )
    return PtychoInput(
        patterns=patterns,
        valid=valid,
        positions=pos,
        probe=probe,
        pixel_size_m=dx,
        fourier_pixel_rad=dq,
        wavelength_m=lam,
        beam_centre=centre,
        transform=affine,
        matrix=matrix,
        scan_shape=scan_shape,
        detector_shape=det_shape,
        params=params,
    )


def _check_disk_radius(radius: float, semiconv: float, det_px: np.ndarray) -> None:
    """Compare the measured bright-field disk radius (px, of the mean pattern) with
    ``semiconv_rad / detector_pixel_rad``.

    Off by more than a factor 1.5: ValueError; by more than 1.25: a logged warning.
    """
    expected = semiconv / float(np.sqrt(det_px[0] * det_px[1]))
    ratio = radius / expected
    msg = (
        f"the bright-field disk of the mean pattern measures {radius:.1f} px in radius but "
        f"semiconv_rad / detector_pixel_rad = {semiconv:.4g} / {float(det_px.mean()):.4g} "
        f"gives {expected:.1f} px: check semiconv_rad and detector_pixel_rad"
    )
    if not 1 / 1.5 <= ratio <= 1.5:
        raise ValueError(msg + " (give beam_centre to skip this check)")
    if not 0.8 <= ratio <= 1.25:
        logger.warning(msg)


def reconstruct_4dstem(
    cube: Any,
    *,
    voltage_kV: float,
    semiconv_rad: float,
    scan_step_m: Any,
    detector_pixel_rad: Any,
    scan_rotation_deg: float = 0.0,
    flip_y: bool = False,
    beam_centre: Any = None,
    reconstruct_shape: tuple[int, int] | None = None,
    pixel_size_m: Any = None,
    defocus_m: float = 0.0,
    aberrations: dict[str, float] | None = None,
    count_conserving: bool = True,
    detector_mask: Any = None,
    chunk: int = 256,
    progress: bool | None = None,
    method: str = "rpie",
    iterations: int = 100,
    **reconstruct_options: Any,
) -> ReconstructionResult:
    """Reconstruct object and probe from a 4D-STEM datacube: :func:`prepare_4dstem` +
    :func:`~stacklab.ptycho.reconstruct`.

    Parameters
    ----------
    cube, voltage_kV, semiconv_rad, scan_step_m, detector_pixel_rad, scan_rotation_deg, flip_y,
    beam_centre, reconstruct_shape, pixel_size_m, defocus_m, aberrations, count_conserving,
    detector_mask, chunk, progress
        As in :func:`prepare_4dstem` (``progress`` also drives the reconstruction's bar).
    method : {"rpie", "epie", "lsq"}
        Update rule of :func:`~stacklab.ptycho.reconstruct`.
    iterations : int
        Passes over all positions.
    **reconstruct_options
        Further keyword arguments of :func:`~stacklab.ptycho.reconstruct` (``step``,
        ``alpha``, ``position_refinement``, ``true_object``, ``device``...). ``mask`` and
        ``layout`` are set from the prepared input. ``step`` defaults to 0.3 for ``"rpie"``
        and ``"epie"`` (not 1 as in :func:`~stacklab.ptycho.reconstruct`): recorded patterns
        carry noise and are integrated over detector pixels where the forward model samples
        points, and the damped update settles at a lower error (about 0.05 instead of 0.06-0.19
        rad on the simulated scans of the tests).

    Returns
    -------
    ReconstructionResult
        Object in the scan frame with pixels of ``params["pixel_size_m"]`` (y, x) m;
        ``params`` also holds the geometry used (beam centre, grid, far-field pixel).

    Raises
    ------
    ValueError, ShapeError
        As :func:`prepare_4dstem` and :func:`~stacklab.ptycho.reconstruct`; ``mask`` or
        ``layout`` among ``reconstruct_options``.
    """
    for key in ("mask", "layout"):
        if key in reconstruct_options:
            raise ValueError(f"{key} is set by reconstruct_4dstem; do not pass it")
    if method in ("rpie", "epie"):
        reconstruct_options.setdefault("step", 0.3)
    prepared = prepare_4dstem(
        cube,
        voltage_kV=voltage_kV,
        semiconv_rad=semiconv_rad,
        scan_step_m=scan_step_m,
        detector_pixel_rad=detector_pixel_rad,
        scan_rotation_deg=scan_rotation_deg,
        flip_y=flip_y,
        beam_centre=beam_centre,
        reconstruct_shape=reconstruct_shape,
        pixel_size_m=pixel_size_m,
        defocus_m=defocus_m,
        aberrations=aberrations,
        count_conserving=count_conserving,
        detector_mask=detector_mask,
        chunk=chunk,
        progress=progress,
    )
    result = reconstruct(
        prepared.patterns,
        prepared.positions,
        prepared.probe,
        method=method,
        iterations=iterations,
        mask=prepared.valid,
        layout=prepared.layout,
        progress=progress,
        **reconstruct_options,
    )
    params = dict(result.params)
    params.update(
        pixel_size_m=prepared.pixel_size_m.tolist(),
        beam_centre=prepared.beam_centre.tolist(),
        reconstruct_shape=list(prepared.reconstruct_shape),
        fourier_pixel_rad=prepared.fourier_pixel_rad.tolist(),
        wavelength_m=prepared.wavelength_m,
        prepare=prepared.params,
    )
    return dataclasses.replace(result, params=params)
