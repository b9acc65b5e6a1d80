"""The localization pipeline: ADU movie in, table of localizations (nm) out, chunk by chunk.

Per block of frames (:func:`stacklab.engine.collect_frames`, so NumPy, CuPy, Dask, and lazy
TIFF/HDF5/Zarr movies stream block by block):

1. camera conversion to photoelectrons (:func:`stacklab.smlm.camera.to_electrons`), with a clear
   error when ``offset`` makes the background negative;
2. optional background removal for detection (temporal median of the block, or spatial);
3. detection on the Anscombe transform of the photoelectrons (so that the Gaussian
   false-positive rate holds for Poisson counts): difference of separable Gaussians, robust
   noise, threshold at a stated per-pixel false-positive rate, local maxima
   (:func:`stacklab.smlm.detection.detect`);
4. crops ``box x box`` (windows shifted inside the frame at the edges and flagged);
5. per-spot Poisson MLE of a pixel-integrated Gaussian with CRLB and log-likelihood
   (:func:`stacklab.smlm.fitting.fit_spots`), sCMOS variance when the camera has a map;
6. rows of the table in nm, photon numbers divided by the quantum efficiency, per-spot flags.

Columns (pixel centres at integer indices: ``x [nm] = column * pixel_size_nm``): see
:data:`COLUMNS`. Flags (:class:`Flag`, bits of the ``flags`` column): ``EDGE`` crop window shifted
at a frame edge, ``SATURATED`` a saturated pixel in the crop, ``NOT_CONVERGED``, ``AT_BOUND``
(a parameter on its box limit, e.g. background at 0 from a wrong offset).
"""

from __future__ import annotations

import enum
import logging
import math
from typing import Any, Literal

import numpy as np
import pandas as pd

from .. import backend, engine
from ..errors import ShapeError, check_positive
from .camera import Camera, check_offset, saturated, to_electrons
from .crops import extract_crops
from .detection import anscombe, detect, threshold_for_rate
from .fitting import fit_spots

__all__ = ["COLUMNS", "Flag", "localize", "localize_frames"]

logger = logging.getLogger(__name__)


class Flag(enum.IntFlag):
    """Per-localization quality flags (bits of the ``flags`` column)."""

    EDGE = 1
    SATURATED = 2
    NOT_CONVERGED = 4
    AT_BOUND = 8


#: Columns of the localization table (ThunderSTORM names, see :mod:`stacklab.smlm.locs`).
COLUMNS: dict[str, str] = {
    "frame": "frame index (0-based)",
    "x [nm]": "x (column) position, nm; x = column * pixel_size_nm (pixel centres at integers)",
    "y [nm]": "y (row) position, nm",
    "sigma [nm]": "PSF sigma, nm (fitted, or the fixed value)",
    "intensity [photon]": "photons in the spot (photoelectrons / QE)",
    "offset [photon]": "background photons per pixel",
    "uncertainty [nm]": "localization precision from the CRLB, sqrt((crlb_x^2 + crlb_y^2) / 2)",
    "loglik": "Poisson log-likelihood of the crop at the fit",
    "uncertainty_x [nm]": "CRLB of x, nm",
    "uncertainty_y [nm]": "CRLB of y, nm",
    "uncertainty_intensity [photon]": "CRLB of the photon count",
    "uncertainty_offset [photon]": "CRLB of the background, photons per pixel",
    "uncertainty_sigma [nm]": "CRLB of sigma, nm (NaN for a fixed sigma)",
    "iterations": "optimizer steps",
    "converged": "optimizer converged",
    "snr": "detection score: filtered peak / filtered noise",
    "flags": "bits of stacklab.smlm.pipeline.Flag",
}


def _empty_table() -> pd.DataFrame:
    dtypes = {
        "frame": np.int64,
        "iterations": np.int32,
        "converged": bool,
        "flags": np.int32,
        "snr": np.float32,
    }
    return pd.DataFrame({c: np.zeros(0, dtype=dtypes.get(c, np.float64)) for c in COLUMNS})


def localize_frames(
    block: Any,
    first_frame: int = 0,
    *,
    camera: Camera,
    sigma_px: float = 1.3,
    fit_sigma: bool = False,
    method: Literal["mle", "lsq"] = "mle",
    box: int = 7,
    fpr: float = 1e-6,
    k: float | None = None,
    background: Literal["none", "temporal", "spatial"] = "none",
    max_iter: int = 30,
    tol: float = 1e-3,
) -> pd.DataFrame:
    """Localize the spots of one block of frames (the kernel of :func:`localize`).

    Parameters
    ----------
    block : ndarray of shape (n, rows, cols)
        Camera counts in ADU (NumPy or CuPy). Not modified.
    first_frame : int
        Movie index of ``block[0]`` (added to the ``frame`` column).
    camera, sigma_px, fit_sigma, method, box, fpr, k, background, max_iter, tol
        See :func:`localize`.

    Returns
    -------
    pandas.DataFrame
        One row per localization, columns :data:`COLUMNS`.
    """
    xp = backend.get_xp(block)
    if block.ndim != 3:
        raise ShapeError(f"block must have shape (n, rows, cols), got {block.shape}")
    if block.shape[0] == 0:
        return _empty_table()
    e = to_electrons(block, camera)
    check_offset(e, camera)
    read_var = camera.variance_electrons(xp)
    if read_var is None:
        read_var = float(camera.read_noise) ** 2
    det_img = anscombe(e, read_var)  # Gaussian-like noise of unit variance
    if background == "temporal":
        from .background import temporal_median

        det_img = det_img - temporal_median(det_img)[None]
    elif background == "spatial":
        from .background import spatial_background

        size = max(7, 2 * math.ceil(3 * sigma_px) + 1)
        det_img = det_img - spatial_background(det_img, size=size)
    elif background != "none":
        raise ValueError(f"background must be 'none', 'temporal' or 'spatial', got {background!r}")
    det = detect(det_img, sigma_px, fpr=fpr, k=k)
    if len(det) == 0:
        return _empty_table()
    crops = extract_crops(e, det.frame, det.row, det.col, size=box)
    data = crops.data
    finite = xp.all(xp.isfinite(data), axis=(1, 2))
    var = camera.variance_electrons(xp)
    var_crops = None
    if var is not None:
        var_crops = extract_crops(var, None, det.row, det.col, size=box).data
    fit = fit_spots(
        xp.where(finite[:, None, None], data, 0.0),
        sigma=float(sigma_px),
        fit_sigma=fit_sigma,
        method=method,
        variance=var_crops,
        max_iter=max_iter,
        tol=tol,
    )
    flags = xp.where(crops.shifted, int(Flag.EDGE), 0)
    sat = saturated(block, camera)
    if sat is not None:
        sat_crops = extract_crops(sat, det.frame, det.row, det.col, size=box).data
        flags = flags | xp.where(xp.any(sat_crops, axis=(1, 2)), int(Flag.SATURATED), 0)
    flags = flags | xp.where(fit.converged & finite, 0, int(Flag.NOT_CONVERGED))
    flags = flags | xp.where(fit.at_bound, int(Flag.AT_BOUND), 0)
    px = float(camera.pixel_size_nm)
    qe = float(camera.qe)
    p = backend.to_numpy(fit.params)
    c = backend.to_numpy(fit.crlb)
    top = backend.to_numpy(crops.top).astype(np.float64)
    left = backend.to_numpy(crops.left).astype(np.float64)
    ux, uy = c[:, 0] * px, c[:, 1] * px
    table = pd.DataFrame(
        {
            "frame": backend.to_numpy(det.frame).astype(np.int64) + int(first_frame),
            "x [nm]": (left + p[:, 0]) * px,
            "y [nm]": (top + p[:, 1]) * px,
            "sigma [nm]": p[:, 4] * px,
            "intensity [photon]": p[:, 2] / qe,
            "offset [photon]": p[:, 3] / qe,
            "uncertainty [nm]": np.sqrt(0.5 * (ux**2 + uy**2)),
            "loglik": backend.to_numpy(fit.loglik),
            "uncertainty_x [nm]": ux,
            "uncertainty_y [nm]": uy,
            "uncertainty_intensity [photon]": c[:, 2] / qe,
            "uncertainty_offset [photon]": c[:, 3] / qe,
            "uncertainty_sigma [nm]": c[:, 4] * px,
            "iterations": backend.to_numpy(fit.iterations).astype(np.int32),
            "converged": backend.to_numpy(fit.converged & finite).astype(bool),
            "snr": backend.to_numpy(det.snr).astype(np.float32),
            "flags": backend.to_numpy(flags).astype(np.int32),
        }
    )
    return table


def localize(
    movie: Any,
    camera: Camera | None = None,
    *,
    sigma_px: float = 1.3,
    fit_sigma: bool = False,
    method: Literal["mle", "lsq"] = "mle",
    box: int = 7,
    fpr: float = 1e-6,
    k: float | None = None,
    background: Literal["none", "temporal", "spatial"] = "none",
    max_iter: int = 30,
    tol: float = 1e-3,
    chunk: int = 256,
    device: str = "cpu",
    progress: bool | None = None,
) -> Any:
    """Localize every spot of a movie.

    Parameters
    ----------
    movie : array-like of shape (n_frames, rows, cols)
        Camera counts in ADU: NumPy, CuPy, Dask, or a lazy dataset (:func:`stacklab.io.open_stack`
        of a TIFF, HDF5, Zarr or ``.npy``). Read block by block; never modified.
    camera : Camera or Config, optional
        Offset (ADU), gain (e-/ADU), QE, pixel size (nm), optional sCMOS variance map and
        saturation level; a :class:`stacklab.smlm.Config` gives the camera of its first
        channel (``Config.to_camera()``). None: the movie is already in photons (offset 0,
        gain 1, 100 nm px).
    sigma_px : float
        PSF sigma in pixels (fixed, or the starting value with ``fit_sigma``).
    fit_sigma : bool
        Fit the PSF sigma of every spot (5 parameters).
    method : {"mle", "lsq"}
        Poisson maximum likelihood (default) or least squares.
    box : int
        Odd crop size in pixels.
    fpr : float
        Per-pixel false-positive probability of the detection threshold under Gaussian noise
        (default 1e-6: threshold 4.75 noise standard deviations; at most ``fpr * rows * cols``
        false detections per frame).
    k : float, optional
        Detection threshold in noise standard deviations (overrides ``fpr``).
    background : {"none", "temporal", "spatial"}
        Background removed before detection only (the fit has its own background):
        none (the difference-of-Gaussians filter already removes smooth backgrounds), temporal
        median of each block, or a spatial opening.
    max_iter, tol : int, float
        Optimizer limits (see :func:`stacklab.smlm.fitting.fit_spots`).
    chunk : int
        Frames per block.
    device : {"cpu", "gpu", "auto"}
        Where blocks are processed (CuPy input always stays on the GPU).
    progress : bool, optional
        Progress bar (None: only when interactive).

    Returns
    -------
    Locs
        One row per localization (columns :data:`COLUMNS`), in frame order, with
        ``pixel_size_nm``, ``image_shape`` (rows, cols), ``n_frames`` and ``meta`` (fit options,
        detection threshold ``threshold_k`` in noise standard deviations). ``.df`` is the
        DataFrame; ``.save("locs.csv")`` writes ThunderSTORM CSV.

    Raises
    ------
    ShapeError
        If the movie is not ``(n_frames, rows, cols)`` or its frames are smaller than ``box``.
    ValueError
        If ``offset`` is clearly too large (negative photons), or for bad options.
    """
    cam = Camera(offset=0.0, gain=1.0) if camera is None else camera
    if not isinstance(cam, Camera) and callable(getattr(cam, "to_camera", None)):
        cam = cam.to_camera()  # a stacklab.smlm.Config: its first channel
    if not isinstance(cam, Camera):
        raise TypeError(f"camera must be a stacklab.smlm.Camera, got {type(camera).__name__}")
    shape = tuple(getattr(movie, "shape", ()))
    if len(shape) != 3:
        raise ShapeError(f"movie must have shape (n_frames, rows, cols), got {shape or None}")
    if shape[0] == 0:
        raise ShapeError("movie has no frames")
    if shape[1] < box or shape[2] < box:
        raise ShapeError(f"frames of shape {shape[1:]} are smaller than box={box}")
    check_positive(sigma_px, "sigma_px")
    if not isinstance(box, int | np.integer) or box < 3 or box % 2 == 0:
        raise ValueError(f"box must be an odd integer >= 3, got {box!r}")
    kk = threshold_for_rate(fpr) if k is None else float(k)
    cam.check_frame_shape(tuple(int(s) for s in shape[1:]))
    dev = backend.resolve_device(device)
    kernel = localize_frames
    if dev == "gpu" and not backend.is_cupy(movie) and not backend.is_dask(movie):
        kernel = _on_gpu
    table = engine.collect_frames(
        kernel,
        movie,
        chunk=chunk,
        progress=progress,
        camera=cam,
        sigma_px=sigma_px,
        fit_sigma=fit_sigma,
        method=method,
        box=int(box),
        fpr=fpr,
        k=kk,
        background=background,
        max_iter=max_iter,
        tol=tol,
    )
    if not isinstance(table, pd.DataFrame):
        table = _empty_table()
    from .locs import Locs

    locs = Locs(
        table,
        pixel_size_nm=float(cam.pixel_size_nm),
        image_shape=(int(shape[1]), int(shape[2])),
        n_frames=int(shape[0]),
        meta={
            "sigma_px": float(sigma_px),
            "fit_sigma": bool(fit_sigma),
            "method": method,
            "box": int(box),
            "threshold_k": kk,
            "camera_gain_e_per_adu": float(cam.gain),
            "camera_qe": float(cam.qe),
        },
    )
    logger.info("localized %d spots in %d frames", len(locs), shape[0])
    return locs


def _on_gpu(block: Any, first_frame: int, **params: Any) -> pd.DataFrame:
    return localize_frames(backend.asarray_on(block, "gpu"), first_frame, **params)
