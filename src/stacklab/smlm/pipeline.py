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
   (:func:`stacklab.smlm.fitting.fit_spots`), sCMOS variance when the camera has a map; with
   ``max_emitters > 1``, 1..``max_emitters`` emitters per crop chosen by a likelihood-ratio test
   (:func:`stacklab.smlm.multi.fit_spots_multi`);
6. rows of the table in nm, photon numbers divided by the quantum efficiency, per-spot flags.

Multi-emitter crops (``max_emitters > 1``): every emitter of a crop's chosen model gives a row,
except an emitter lying nearer to another detection of the same frame than to its own crop's
detection (a neighbour seen at the crop's edge: that detection's own crop reports it, so it is
not counted twice). The table then has the extra column ``n_emitters`` (emitters in the crop's
model) and such rows carry the ``MULTI`` flag; ``loglik``, ``iterations`` and ``converged`` are
those of the crop's model.

Columns (pixel centres at integer indices: ``x [nm] = column * pixel_size_nm``): see
:data:`COLUMNS`. Flags (:class:`Flag`, bits of the ``flags`` column): ``EDGE`` crop window shifted
at a frame edge, ``SATURATED`` a saturated pixel in the crop, ``NOT_CONVERGED``, ``AT_BOUND``
(a parameter on its box limit, e.g. background at 0 from a wrong offset), ``MULTI`` (the crop was
fitted with two or more emitters).
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
    MULTI = 16


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


#: Extra column of multi-emitter runs (``max_emitters > 1``).
MULTI_COLUMNS: dict[str, str] = {
    "n_emitters": "emitters in the model of the localization's crop (1 = single-emitter fit)",
}


def _empty_table(multi: bool = False) -> pd.DataFrame:
    dtypes = {
        "frame": np.int64,
        "iterations": np.int32,
        "converged": bool,
        "flags": np.int32,
        "snr": np.float32,
        "n_emitters": np.int32,
    }
    cols = {**COLUMNS, **MULTI_COLUMNS} if multi else COLUMNS
    return pd.DataFrame({c: np.zeros(0, dtype=dtypes.get(c, np.float64)) for c in cols})


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
    max_emitters: int = 1,
    multi_p_value: float = 1e-6,
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
    max_emitters, multi_p_value
        See :func:`localize`.

    Returns
    -------
    pandas.DataFrame
        One row per localization, columns :data:`COLUMNS` (and :data:`MULTI_COLUMNS` when
        ``max_emitters > 1``).
    """
    xp = backend.get_xp(block)
    multi = _check_multi(max_emitters, multi_p_value, method)
    if block.ndim != 3:
        raise ShapeError(f"block must have shape (n, rows, cols), got {block.shape}")
    if block.shape[0] == 0:
        return _empty_table(multi)
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
        return _empty_table(multi)
    crops = extract_crops(e, det.frame, det.row, det.col, size=box)
    data = crops.data
    finite = xp.all(xp.isfinite(data), axis=(1, 2))
    var = camera.variance_electrons(xp)
    var_crops = None
    if var is not None:
        var_crops = extract_crops(var, None, det.row, det.col, size=box).data
    if multi:
        return _multi_table(
            block, first_frame, camera, det, crops, finite, var_crops, sigma_px, fit_sigma,
            max_emitters, multi_p_value, max_iter, tol,
        )  # fmt: skip
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


def _check_multi(max_emitters: Any, p_value: Any, method: str) -> bool:
    if not isinstance(max_emitters, int | np.integer) or max_emitters < 1:
        raise ValueError(f"max_emitters must be an integer >= 1, got {max_emitters!r}")
    if not 0.0 < p_value < 1.0:
        raise ValueError(f"multi_p_value must be in (0, 1), got {p_value!r}")
    if max_emitters > 1 and method != "mle":
        raise ValueError(f"max_emitters > 1 needs method='mle', got method={method!r}")
    return max_emitters > 1


def _multi_table(
    block: Any,
    first_frame: int,
    camera: Camera,
    det: Any,
    crops: Any,
    finite: Any,
    var_crops: Any,
    sigma_px: float,
    fit_sigma: bool,
    max_emitters: int,
    p_value: float,
    max_iter: int,
    tol: float,
) -> pd.DataFrame:
    """Rows of the multi-emitter fits of ``crops`` (one per emitter kept), on the host."""
    from .multi import fit_spots_multi

    xp = backend.get_xp(crops.data)
    data = backend.to_numpy(xp.where(finite[:, None, None], crops.data, 0.0))
    fit = fit_spots_multi(
        data,
        float(sigma_px),
        max_emitters=int(max_emitters),
        p_value=float(p_value),
        fit_sigma=fit_sigma,
        variance=None if var_crops is None else backend.to_numpy(var_crops),
        max_iter=max_iter,
        tol=tol,
    )
    ci = fit.crop
    frame = backend.to_numpy(det.frame).astype(np.int64)
    top = backend.to_numpy(crops.top).astype(np.float64)
    left = backend.to_numpy(crops.left).astype(np.float64)
    n_em = fit.n_emitters[ci]
    p = fit.params
    c = fit.crlb
    x_px = left[ci] + p[:, 0]
    y_px = top[ci] + p[:, 1]
    keep = (n_em == 1) | _owned(
        frame[ci], y_px, x_px, ci, frame, backend.to_numpy(det.row), backend.to_numpy(det.col)
    )
    crop_flags = np.where(backend.to_numpy(crops.shifted), int(Flag.EDGE), 0)
    sat = saturated(block, camera)
    if sat is not None:
        sat_crops = extract_crops(sat, det.frame, det.row, det.col, size=crops.data.shape[1]).data
        crop_flags |= np.where(
            backend.to_numpy(xp.any(sat_crops, axis=(1, 2))), int(Flag.SATURATED), 0
        )
    ok = fit.converged & backend.to_numpy(finite).astype(bool)
    crop_flags |= np.where(ok, 0, int(Flag.NOT_CONVERGED))
    flags = crop_flags[ci] | np.where(fit.at_bound, int(Flag.AT_BOUND), 0)
    flags |= np.where(n_em > 1, int(Flag.MULTI), 0)
    px = float(camera.pixel_size_nm)
    qe = float(camera.qe)
    ux, uy = c[:, 0] * px, c[:, 1] * px
    table = pd.DataFrame(
        {
            "frame": frame[ci] + int(first_frame),
            "x [nm]": x_px * px,
            "y [nm]": y_px * px,
            "sigma [nm]": p[:, 4] * px,
            "intensity [photon]": p[:, 2] / qe,
            "offset [photon]": p[:, 3] / qe,
            "uncertainty [nm]": np.sqrt(0.5 * (ux**2 + uy**2)),
            "loglik": fit.loglik[ci],
            "uncertainty_x [nm]": ux,
            "uncertainty_y [nm]": uy,
            "uncertainty_intensity [photon]": c[:, 2] / qe,
            "uncertainty_offset [photon]": c[:, 3] / qe,
            "uncertainty_sigma [nm]": c[:, 4] * px,
            "iterations": fit.iterations[ci].astype(np.int32),
            "converged": ok[ci],
            "snr": backend.to_numpy(det.snr).astype(np.float32)[ci],
            "flags": flags.astype(np.int32),
            "n_emitters": n_em.astype(np.int32),
        }
    )
    return table[keep].reset_index(drop=True)


def _owned(
    f: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    crop: np.ndarray,
    det_frame: np.ndarray,
    det_row: np.ndarray,
    det_col: np.ndarray,
) -> np.ndarray:
    """True where the nearest detection of the same frame to ``(y, x)`` is the emitter's own."""
    from scipy import spatial

    span = float(max(det_row.max(initial=0), det_col.max(initial=0), y.max(initial=0))) + 1.0
    sep = 8.0 * (span + float(np.abs(x).max(initial=0)) + 1.0)
    tree = spatial.cKDTree(np.column_stack([det_col, det_row, det_frame * sep]))
    _, idx = tree.query(np.column_stack([x, y, f * sep]), k=1)
    return np.asarray(idx) == crop


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
    max_emitters: int = 1,
    multi_p_value: float = 1e-6,
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
    max_emitters : int
        Largest number of emitters fitted per crop (default 1: the single-emitter fit). With 2
        or 3, each crop is fitted with 1, 2, ... emitters (common background and sigma) and
        grows while the log-likelihood ratio is significant at ``multi_p_value``
        (:func:`stacklab.smlm.multi.fit_spots_multi`); resolves pairs about 1.5-3 PSF sigmas
        apart that the detector sees as one spot. Needs ``method="mle"``; fitting a crop costs
        about 20-30 single-emitter fits; adds the ``n_emitters`` column and the ``MULTI`` flag.
    multi_p_value : float
        Significance of each added emitter (default 1e-6: threshold 30.7 on
        ``2 (LL_{k+1} - LL_k)``; isolated emitters are practically never split).
    chunk : int
        Frames per block.
    device : {"cpu", "gpu", "auto"}
        Where blocks are processed (CuPy input always stays on the GPU).
    progress : bool, optional
        Progress bar (None: only when interactive).

    Returns
    -------
    Locs
        One row per localization (columns :data:`COLUMNS`, plus ``n_emitters`` when
        ``max_emitters > 1``), in frame order, with
        ``pixel_size_nm``, ``image_shape`` (rows, cols), ``n_frames`` and ``meta`` (fit options,
        detection threshold ``threshold_k`` in noise standard deviations; ``max_emitters`` and
        ``multi_p_value`` for multi-emitter runs). ``.df`` is the
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
    multi = _check_multi(max_emitters, multi_p_value, method)
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
        max_emitters=int(max_emitters),
        multi_p_value=float(multi_p_value),
    )
    if not isinstance(table, pd.DataFrame):
        table = _empty_table(multi)
    from .locs import Locs

    meta = {
        "sigma_px": float(sigma_px),
        "fit_sigma": bool(fit_sigma),
        "method": method,
        "box": int(box),
        "threshold_k": kk,
        "camera_gain_e_per_adu": float(cam.gain),
        "camera_qe": float(cam.qe),
    }
    if multi:
        meta.update(max_emitters=int(max_emitters), multi_p_value=float(multi_p_value))
    locs = Locs(
        table,
        pixel_size_nm=float(cam.pixel_size_nm),
        image_shape=(int(shape[1]), int(shape[2])),
        n_frames=int(shape[0]),
        meta=meta,
    )
    logger.info("localized %d spots in %d frames", len(locs), shape[0])
    return locs


def _on_gpu(block: Any, first_frame: int, **params: Any) -> pd.DataFrame:
    return localize_frames(backend.asarray_on(block, "gpu"), first_frame, **params)
