"""Simulated ptychography data with ground truth.

Two scenes:

* :func:`simulate_dataset`: a 4D-STEM far-field ptychography scan of a weak-to-moderate phase
  object with a defocused convergent-beam probe (exact forward model of
  :mod:`stacklab.ptycho.forward`), optionally with Poisson noise; the scene for reconstructions.
* :func:`record_4dstem`: what a pixelated detector records from a :func:`simulate_dataset` scan:
  the far field resampled onto a detector with its own angular pixel size, shape, beam centre,
  scan rotation and flip, integrated over each detector pixel, optionally with Poisson noise;
  the ground truth of :func:`stacklab.ptycho.prepare_4dstem`.
* :func:`notebook_scene`: the forward simulation of the ptychography40 notebook "Tools for
  iterative ptychography" (a 256x256 test object with a signature wave, a convergent beam, a
  diffraction pattern resampled to mismatched pixel sizes, rotated and shifted as a detector
  would record it), used to check and benchmark the coordinate transforms.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.ndimage

from ..errors import ShapeError
from .forward import diffraction_intensities
from .physics import wavelength

__all__ = [
    "PtychoDataset",
    "Recorded4DSTEM",
    "illuminated_region",
    "make_object",
    "make_probe",
    "notebook_scene",
    "raster_positions",
    "record_4dstem",
    "simulate_dataset",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class PtychoDataset:
    """A simulated ptychography scan and its ground truth.

    Attributes
    ----------
    patterns : ndarray of shape (scan_y, scan_x, py, px), float32
        Diffraction intensities, detector layout (zero frequency at index ``p // 2``), in counts
        when ``counts`` was given (Poisson-distributed then), otherwise noise-free.
    positions : ndarray of shape (scan_y * scan_x, 2), float64
        Probe window offsets (y, x) in object pixels, scan order row-major.
    probe : ndarray of shape (py, px), complex64
        True probe, scaled so that one pattern holds ``counts`` (or 1) in total for a
        transparent object.
    object : ndarray of shape (ny, nx), complex64
        True object transmission.
    probe_guess : ndarray of shape (py, px), complex64
        A starting probe with a wrong defocus (``defocus_error``), for reconstructions.
    counts : float or None
        Mean total counts per pattern (Poisson noise), None for noise-free data.
    params : dict
        The parameters used (step, aperture radius, defocus, seed, ...).
    """

    patterns: np.ndarray
    positions: np.ndarray
    probe: np.ndarray
    object: np.ndarray
    probe_guess: np.ndarray
    counts: float | None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def scan_shape(self) -> tuple[int, int]:
        """(scan_y, scan_x)."""
        return tuple(self.patterns.shape[:2])  # type: ignore[return-value]

    def illuminated(self, threshold: float = 0.1) -> np.ndarray:
        """Object pixels whose summed probe intensity exceeds ``threshold`` of its maximum.

        Parameters
        ----------
        threshold : float
            Fraction of the maximum of ``sum_j |P(r - R_j)|^2``.

        Returns
        -------
        ndarray of bool, shape of the object
        """
        return illuminated_region(self.object.shape, self.probe, self.positions, threshold)


def illuminated_region(
    object_shape: tuple[int, int], probe: np.ndarray, positions: np.ndarray, threshold: float = 0.1
) -> np.ndarray:
    """Boolean mask of the object area lit by a scan (summed probe intensity >= threshold * max).

    Parameters
    ----------
    object_shape : (int, int)
        Object shape.
    probe : ndarray of shape (py, px)
        Probe.
    positions : ndarray of shape (n, 2)
        Probe window offsets (integer part used).
    threshold : float
        Fraction of the maximum summed intensity.

    Returns
    -------
    ndarray of bool, shape ``object_shape``
    """
    from .forward import rolled_object_aggregation

    p = np.asarray(probe)
    inten = np.broadcast_to(np.abs(p) ** 2, (len(positions), *p.shape))
    total = rolled_object_aggregation(np.zeros(object_shape), inten, np.asarray(positions))
    return total >= threshold * total.max()


def make_probe(
    shape: tuple[int, int] = (64, 64),
    *,
    aperture_radius: float = 8.0,
    defocus_phase: float = 6.0,
    dtype: Any = np.complex64,
) -> np.ndarray:
    """A defocused convergent-beam probe: a circular aperture with quadratic phase, inverse FFT.

    Parameters
    ----------
    shape : (int, int)
        Probe window (py, px).
    aperture_radius : float
        Radius of the bright-field disk in far-field pixels of the window.
    defocus_phase : float
        Defocus aberration phase at the aperture edge, radian (``phi * (k / k_max)^2``); larger
        values give a wider real-space probe (radius about ``defocus_phase * py / (pi *
        aperture_radius)`` pixels).
    dtype : dtype
        Complex output dtype.

    Returns
    -------
    ndarray of shape ``shape``
        Probe centred at ``shape // 2``, normalised to ``sum |P|^2 = 1``.
    """
    py, px = int(shape[0]), int(shape[1])
    if aperture_radius <= 0:
        raise ValueError(f"aperture_radius must be > 0, got {aperture_radius!r}")
    ky = np.fft.fftfreq(py) * py
    kx = np.fft.fftfreq(px) * px
    k2 = (ky[:, None] / aperture_radius) ** 2 + (kx[None, :] / aperture_radius) ** 2
    spec = np.where(k2 <= 1.0, np.exp(1j * defocus_phase * k2), 0.0)
    probe = np.fft.fftshift(np.fft.ifft2(spec))
    probe /= np.sqrt(np.sum(np.abs(probe) ** 2))
    return probe.astype(dtype)


def make_object(
    shape: tuple[int, int],
    *,
    phase_max: float = 0.9,
    amplitude_min: float = 0.9,
    feature_size: float = 2.0,
    seed: int = 0,
    dtype: Any = np.complex64,
) -> np.ndarray:
    """A random phase object with weak amplitude contrast.

    The phase is a Gaussian-smoothed random field, histogram-equalised so that it is uniformly
    distributed on ``[0, phase_max]`` (RMS deviation ``phase_max / sqrt(12)``); the amplitude is an
    independent field of the same kind on ``[amplitude_min, 1]``.

    Parameters
    ----------
    shape : (int, int)
        Object shape (ny, nx).
    phase_max : float
        Phase range in radian: the phase spans ``[0, phase_max]``.
    amplitude_min : float
        Smallest transmission amplitude (1 = pure phase object).
    feature_size : float
        Gaussian smoothing sigma of the random texture, pixels.
    seed : int
        Random seed.
    dtype : dtype
        Complex output dtype.

    Returns
    -------
    ndarray of shape ``shape``
    """
    rng = np.random.default_rng(seed)

    def texture() -> np.ndarray:
        # smooth random field, histogram-equalised to a uniform distribution on [0, 1]
        t = scipy.ndimage.gaussian_filter(rng.standard_normal(shape), feature_size, mode="wrap")
        ranks = np.empty(t.size)
        ranks[np.argsort(t, axis=None)] = np.arange(t.size)
        return (ranks / max(t.size - 1, 1)).reshape(shape)

    phase = phase_max * texture()
    amp = amplitude_min + (1.0 - amplitude_min) * texture()
    return (amp * np.exp(1j * phase)).astype(dtype)


def raster_positions(
    scan_shape: tuple[int, int],
    step: float,
    *,
    offset: tuple[float, float] = (0.0, 0.0),
    jitter: float = 0.0,
    integer: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Raster scan positions (row-major), optionally jittered.

    Parameters
    ----------
    scan_shape : (int, int)
        Number of positions along y and x.
    step : float
        Step size in object pixels.
    offset : (float, float)
        Position of the first point.
    jitter : float
        Uniform random jitter amplitude (+- jitter pixels), which avoids the raster-grid
        ambiguity of probe retrieval.
    integer : bool
        Round positions to whole pixels.
    seed : int
        Random seed of the jitter.

    Returns
    -------
    ndarray of shape (scan_y * scan_x, 2), float64
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(scan_shape[0]), np.arange(scan_shape[1]), indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], axis=1) * float(step) + np.asarray(offset, float)
    if jitter:
        pos = pos + rng.uniform(-jitter, jitter, pos.shape)
    if integer:
        pos = np.round(pos)
    return pos


def simulate_dataset(
    *,
    scan_shape: tuple[int, int] = (10, 10),
    probe_shape: tuple[int, int] = (64, 64),
    step: float = 6.0,
    aperture_radius: float = 8.0,
    defocus_phase: float = 6.0,
    defocus_error: float = 0.2,
    phase_max: float = 0.9,
    amplitude_min: float = 0.9,
    counts: float | None = None,
    jitter: float = 1.0,
    margin: int = 4,
    seed: int = 0,
) -> PtychoDataset:
    """Simulate a far-field ptychography scan with known object and probe.

    The exit wave ``P(r - R_j) O(r)`` is propagated with an orthonormal FFT; the patterns are
    its intensities in detector layout. With ``counts`` the probe is scaled so that a pattern
    holds ``counts`` on average and Poisson noise is drawn.

    Parameters
    ----------
    scan_shape : (int, int)
        Scan positions along y and x.
    probe_shape : (int, int)
        Probe window and pattern shape (py, px).
    step : float
        Raster step in object pixels (about 25 % of the probe diameter by default).
    aperture_radius : float
        Bright-field disk radius in pattern pixels.
    defocus_phase : float
        Defocus phase at the aperture edge, radian (sets the probe diameter).
    defocus_error : float
        Relative defocus error of ``probe_guess``.
    phase_max : float
        Object phase range, radian.
    amplitude_min : float
        Smallest object amplitude.
    counts : float, optional
        Mean counts per pattern; None for noise-free intensities.
    jitter : float
        Random position jitter, pixels (positions stay integer).
    margin : int
        Object pixels around the scanned area.
    seed : int
        Seed of the object texture, jitter and noise.

    Returns
    -------
    PtychoDataset
    """
    if len(scan_shape) != 2 or min(scan_shape) < 1:
        raise ShapeError(f"scan_shape must be two positive integers, got {scan_shape!r}")
    if counts is not None and not counts > 0:
        raise ValueError(f"counts must be > 0 or None, got {counts!r}")
    rng = np.random.default_rng(seed)
    py, px = int(probe_shape[0]), int(probe_shape[1])
    pos = raster_positions(
        scan_shape, step, offset=(margin + jitter, margin + jitter), jitter=jitter, seed=seed + 1
    )
    ny = int(np.ceil(pos[:, 0].max())) + py + margin + 1
    nx = int(np.ceil(pos[:, 1].max())) + px + margin + 1
    obj = make_object((ny, nx), phase_max=phase_max, amplitude_min=amplitude_min, seed=seed + 2)
    scale = 1.0 if counts is None else float(counts)
    probe = make_probe(
        (py, px), aperture_radius=aperture_radius, defocus_phase=defocus_phase
    ) * np.float32(np.sqrt(scale))
    guess = make_probe(
        (py, px),
        aperture_radius=aperture_radius,
        defocus_phase=defocus_phase * (1.0 + defocus_error),
    ) * np.float32(np.sqrt(scale))
    inten = diffraction_intensities(obj, probe, pos, layout="centered")
    if counts is not None:
        inten = rng.poisson(np.maximum(inten, 0).astype(np.float64)).astype(np.float32)
    patterns = np.asarray(inten, dtype=np.float32).reshape(*scan_shape, py, px)
    params = dict(
        step=step,
        aperture_radius=aperture_radius,
        defocus_phase=defocus_phase,
        defocus_error=defocus_error,
        phase_max=phase_max,
        amplitude_min=amplitude_min,
        jitter=jitter,
        margin=margin,
        seed=seed,
    )
    logger.debug("simulated %s scan, object %s, counts=%s", scan_shape, obj.shape, counts)
    return PtychoDataset(patterns, pos, probe, obj, guess.astype(np.complex64), counts, params)


@dataclass(frozen=True, eq=False)
class Recorded4DSTEM:
    """A simulated scan as a pixelated detector records it, with the acquisition parameters.

    Attributes
    ----------
    cube : ndarray of shape (scan_row, scan_col, det_row, det_col), float32
        Detector counts per pixel (Poisson-distributed integers when ``counts`` was given).
    voltage_kV : float
        Acceleration voltage, kV.
    semiconv_rad : float
        Probe semi-convergence angle (bright-field disk radius), rad.
    scan_step_m : ndarray of shape (2,)
        Scan step (y, x), m.
    detector_pixel_rad : ndarray of shape (2,)
        Angular size (y, x) of a detector pixel, rad.
    beam_centre : ndarray of shape (2,)
        Where zero scattering angle lies on the detector, (row, col) detector px.
    scan_rotation_deg : float
        Scan rotation, degrees (as in :func:`~stacklab.ptycho.diffraction_to_detector`).
    flip_y : bool
        Whether the detector's y axis is flipped.
    defocus_m : float
        Defocus of the true probe in the convention of
        :func:`~stacklab.ptycho.prepare_4dstem` (``pi defocus theta^2 / lambda`` phase).
    pixel_size_m : float
        Real-space pixel size of the simulation (object and probe window), m.
    transform : AffineTransform
        The true map from simulation far-field pixels (centred layout) to detector pixels.
    counts : float or None
        Counts per pattern for a transparent object (Poisson noise), None for noise-free.
    dataset : PtychoDataset
        The simulation (true object, probe and positions; its patterns are the forward-model
        intensities the detector data should map back to).
    """

    cube: np.ndarray
    voltage_kV: float
    semiconv_rad: float
    scan_step_m: np.ndarray
    detector_pixel_rad: np.ndarray
    beam_centre: np.ndarray
    scan_rotation_deg: float
    flip_y: bool
    defocus_m: float
    pixel_size_m: float
    transform: Any
    counts: float | None
    dataset: PtychoDataset

    @property
    def acquisition(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~stacklab.ptycho.prepare_4dstem` that describe the
        acquisition (voltage, angles, scan step, detector pixel, rotation, flip); the beam
        centre, the defocus and the grid are left to the caller."""
        return dict(
            voltage_kV=self.voltage_kV,
            semiconv_rad=self.semiconv_rad,
            scan_step_m=tuple(self.scan_step_m),
            detector_pixel_rad=tuple(self.detector_pixel_rad),
            scan_rotation_deg=self.scan_rotation_deg,
            flip_y=self.flip_y,
        )


def record_4dstem(
    dataset: PtychoDataset,
    *,
    pixel_size_m: float = 20e-12,
    voltage_kV: float = 300.0,
    detector_shape: tuple[int, int] = (64, 88),
    detector_pixel_rad: float | tuple[float, float] | None = None,
    beam_centre: tuple[float, float] = (30.4, 45.7),
    scan_rotation_deg: float = 17.0,
    flip_y: bool = True,
    counts: float | None = None,
    subsample: int = 3,
    oversample: int = 4,
    seed: int = 0,
) -> Recorded4DSTEM:
    """What a pixelated detector records from a simulated scan.

    The simulation's window of ``N`` pixels of ``pixel_size_m`` puts one far-field pixel at
    ``dq = lambda / (N pixel_size_m)`` rad. Each exit wave ``P(r - R_j) O(r)`` is Fourier
    transformed on an ``oversample`` times finer angular grid (zero padding: exact samples of
    its continuous spectrum), its intensity is interpolated (cubic splines) at ``subsample`` x
    ``subsample`` points inside every detector pixel, and averaged: the detector integrates
    the intensity over its pixels. Detector pixels are placed by
    :func:`~stacklab.ptycho.diffraction_to_detector` (angular pixel size, beam centre, scan
    rotation, flip); angles beyond the simulated band (``+- N dq / 2``) receive nothing. The
    values are counts per detector pixel on the scale of the forward model (a pattern sums to
    the exit wave's intensity), times ``counts / sum|P|^2`` and Poisson-sampled when
    ``counts`` is given.

    Parameters
    ----------
    dataset : PtychoDataset
        From :func:`simulate_dataset`; for a raster scan use ``jitter=0`` (the positions are
        what the detector frames follow, and :func:`~stacklab.ptycho.prepare_4dstem` assumes
        a raster).
    pixel_size_m : float
        Real-space pixel size of the simulation, m (sets the angular scale).
    voltage_kV : float
        Acceleration voltage, kV.
    detector_shape : (int, int)
        Detector (rows, cols).
    detector_pixel_rad : float or (float, float), optional
        Angular size of a detector pixel, rad; default ``0.6 dq`` (finer than the simulation).
    beam_centre : (float, float)
        Zero angle on the detector, (row, col) px.
    scan_rotation_deg : float
        Scan rotation, degrees.
    flip_y : bool
        Flip the detector's y axis.
    counts : float, optional
        Counts per pattern for a transparent object; Poisson noise is then drawn. None: noise-free.
    subsample : int
        Integration points per detector pixel along each axis (>= 1).
    oversample : int
        Angular oversampling of the spectra before interpolation (>= 2).
    seed : int
        Seed of the Poisson noise.

    Returns
    -------
    Recorded4DSTEM

    Raises
    ------
    ValueError
        For non-positive sizes, counts or sampling factors.
    """
    from .forward import exit_waves
    from .geometry import _pair, _shape2, diffraction_to_detector

    if not (np.isfinite(pixel_size_m) and pixel_size_m > 0):
        raise ValueError(f"pixel_size_m must be finite and > 0 (metres), got {pixel_size_m!r}")
    if int(subsample) != subsample or subsample < 1:
        raise ValueError(f"subsample must be an integer >= 1, got {subsample!r}")
    if int(oversample) != oversample or oversample < 2:
        raise ValueError(f"oversample must be an integer >= 2, got {oversample!r}")
    if counts is not None and not counts > 0:
        raise ValueError(f"counts must be > 0 or None, got {counts!r}")
    det_shape = _shape2(detector_shape, "detector_shape")
    py, px = dataset.probe.shape
    if py != px:
        raise ShapeError(f"the dataset's probe window must be square, got {(py, px)}")
    if dataset.params.get("jitter", 0):
        logger.warning("record_4dstem: the dataset's positions are jittered, not a raster")
    lam = float(wavelength(voltage_kV))
    dq = lam / (py * float(pixel_size_m))
    det_px = _pair(0.6 * dq if detector_pixel_rad is None else detector_pixel_rad, "det_px")
    affine = diffraction_to_detector(
        lam,
        (py, px),
        float(pixel_size_m),
        det_px,
        float(beam_centre[0]),
        float(beam_centre[1]),
        flip_y=bool(flip_y),
        scan_rotation=float(scan_rotation_deg),
    )
    inverse = affine.inverse()
    # integration points of every detector pixel, mapped to the simulation's far-field grid
    s = int(subsample)
    sub = (np.arange(s) + 0.5) / s - 0.5
    yy, xx = np.meshgrid(np.arange(det_shape[0]), np.arange(det_shape[1]), indexing="ij")
    pts = np.stack(
        [
            (yy[..., None, None] + sub[:, None]).repeat(s, -1),
            (xx[..., None, None] + sub[None, :]).repeat(s, -2),
        ],
        axis=-1,
    ).reshape(-1, 2)
    target = inverse(pts) - np.array([py // 2, px // 2])  # far-field pixels from zero angle
    os_ = int(oversample)
    big = os_ * py
    grid = target * os_ + big // 2  # index in the fftshifted oversampled spectrum
    inside = np.all(np.abs(target) <= py / 2, axis=1)
    waves = np.asarray(exit_waves(dataset.object, dataset.probe, dataset.positions))
    padded = np.zeros((len(waves), big, big), dtype=np.complex128)
    padded[:, :py, :px] = waves
    spec = np.fft.fftshift(np.fft.fft2(padded), axes=(1, 2)) / py  # orthonormal scale of N
    inten = spec.real**2 + spec.imag**2
    area = 1.0 / abs(np.linalg.det(affine.linear))  # simulation pixels per detector pixel
    out = np.empty((len(waves), *det_shape), dtype=np.float64)
    for j, frame in enumerate(inten):  # a simulator: one spline per frame
        vals = scipy.ndimage.map_coordinates(frame, grid.T, order=3, mode="constant", cval=0.0)
        vals = np.where(inside, np.maximum(vals, 0.0), 0.0)
        out[j] = vals.reshape(*det_shape, s * s).mean(axis=-1) * area
    if counts is not None:
        total = float(np.sum(np.abs(dataset.probe) ** 2))
        rng = np.random.default_rng(seed)
        out = rng.poisson(out * (float(counts) / total)).astype(np.float64)
    scan = dataset.scan_shape
    semiconv = float(dataset.params["aperture_radius"]) * dq
    defocus = float(dataset.params["defocus_phase"]) * lam / (np.pi * semiconv**2)
    step = float(dataset.params["step"]) * float(pixel_size_m)
    logger.debug("recorded %s scan on a %s detector, %s px", scan, det_shape, det_px)
    return Recorded4DSTEM(
        cube=out.reshape(*scan, *det_shape).astype(np.float32),
        voltage_kV=float(voltage_kV),
        semiconv_rad=semiconv,
        scan_step_m=np.array([step, step]),
        detector_pixel_rad=det_px,
        beam_centre=np.asarray(beam_centre, dtype=np.float64),
        scan_rotation_deg=float(scan_rotation_deg),
        flip_y=bool(flip_y),
        defocus_m=defocus,
        pixel_size_m=float(pixel_size_m),
        transform=affine,
        counts=counts,
        dataset=dataset,
    )


def notebook_scene(size: int = 256) -> dict[str, Any]:
    """The forward simulation of the ptychography40 notebook "Tools for iterative ptychography".

    A ``size`` x ``size`` test object (outline, eyes, nose with a phase gradient, mouth, tongue,
    and a signature wave ``0.3 exp(i 2 pi (3 y + 7 x) / size)``) is illuminated by a 20 mrad
    convergent beam at 300 kV simulated at 0.5 wavelength pixels; the far-field pattern is then
    resampled as an experiment records it: 1 mrad detector pixels, 65 degree scan rotation,
    shifted by (7, 3) pixels, cropped to 129 x 129, negative interpolation values clipped. Object
    and illumination are resampled to 10 pm pixels.

    Parameters
    ----------
    size : int
        Simulation grid (the notebook uses 256).

    Returns
    -------
    dict
        ``lamb`` (m), ``pixel_size_real`` (m), ``pixel_size_detector`` (rad), ``scan_rotation``
        (deg), ``shift`` (detector px), ``obj``, ``illum``, ``diffpattern_sim`` (size x size),
        ``rec_obj``, ``rec_illum`` (resampled, complex), ``real_diffpattern`` (129 x 129 float),
        ``beam_centre`` (y, x): where zero frequency actually lies in ``real_diffpattern`` (the
        notebook assumes ``shape / 2 + shift``, a few pixels off), and
        ``pixel_size_detector_true`` (rad), the pixel size scipy's zoom actually produced.
    """
    semiconv = 0.020
    lamb = wavelength(300)
    pixel_size_real_sim = 0.5 * lamb
    pixel_size_detector_sim = 1 / size / pixel_size_real_sim * lamb
    obj = np.ones((size, size), dtype=np.complex64)
    y, x = np.ogrid[-size // 2 : size // 2, -size // 2 : size // 2]
    outline = (((y * 1.2) ** 2 + x**2) > 110**2) & (((y * 1.2) ** 2 + x**2) < 120**2)
    obj[outline] = 0
    obj[((y + 40) ** 2 + (x + 40) ** 2) < 20**2] = 0
    obj[(np.abs(y + 40) < 15) & (np.abs(x - 40) < 30)] = 0
    nose = (y + 20 + x > 0) & (x < 0) & (y < 10)
    obj[nose] = (0.05j * x + 0.05j * y)[nose]
    obj[((y**2 + x**2) > 50**2) & ((y**2 + x**2) < 70**2) & (y > 20)] = 0
    obj[(((y - 50) ** 2 + (x - 50) ** 2) < 20**2) & ((y**2 + x**2) > 70**2)] = 0
    obj += 0.3 * np.exp(1j * (3 * y + 7 * x) * 2 * np.pi / size) - 0.3
    aperture = np.zeros((size, size))
    aperture[np.sqrt(y**2 + x**2) * pixel_size_detector_sim <= semiconv] = 1
    illum = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(aperture)))
    exitwave = illum * obj
    diffpattern_sim = np.abs(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(exitwave)))) ** 2

    pixel_size_real = 10e-12
    pixel_size_detector = 0.001
    scan_rotation = 65.0
    shift = (7, 3)
    zoom_real = pixel_size_real_sim / pixel_size_real
    rec_obj = scipy.ndimage.zoom(obj, zoom_real)
    rec_illum = scipy.ndimage.zoom(illum, zoom_real)
    pattern = scipy.ndimage.zoom(diffpattern_sim, pixel_size_detector_sim / pixel_size_detector)
    pattern = scipy.ndimage.rotate(pattern, scan_rotation, reshape=False)
    pattern = scipy.ndimage.shift(pattern, shift)
    c = pattern.shape[0] // 2
    real_diffpattern = np.maximum(pattern[c - 64 : c + 65, c - 64 : c + 65], 0)
    # Where zero frequency really lands: scipy's zoom maps index i to i * (n_out - 1) / (n_in - 1),
    # rotate(reshape=False) turns about the array centre, then the shift and the crop.
    n_out = pattern.shape[0]
    stretch = (n_out - 1) / (size - 1)
    mid = (n_out - 1) / 2
    v = np.full(2, (size // 2) * stretch - mid)
    t = np.deg2rad(scan_rotation)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    beam_centre = rot @ v + mid + np.asarray(shift, float) - (c - 64)
    return dict(
        lamb=lamb,
        pixel_size_real=pixel_size_real,
        pixel_size_detector=pixel_size_detector,
        scan_rotation=scan_rotation,
        shift=shift,
        obj=obj,
        illum=illum,
        diffpattern_sim=diffpattern_sim,
        rec_obj=rec_obj,
        rec_illum=rec_illum,
        real_diffpattern=real_diffpattern,
        beam_centre=beam_centre,
        pixel_size_detector_true=pixel_size_detector_sim / stretch,
    )
