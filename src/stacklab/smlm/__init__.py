"""Single-molecule localization microscopy: localizations, drift, super-resolved images, PSF.

Frames-first canonical API: a movie is ``(n_frames, rows, cols)`` of camera counts (ADU); ``x`` is
the column and ``y`` the row, pixel centres at integer indices, so ``x [nm] = column *
pixel_size_nm``. Localization tables are :class:`Locs` (a pandas DataFrame with ThunderSTORM
columns in nm and photons, plus pixel size, image shape and frame count); every analysis function
also takes a plain DataFrame with the same column names. NumPy, CuPy, Dask and lazy TIFF/HDF5/Zarr
movies are accepted; inputs are never modified.

Typical use::

    from stacklab import smlm

    cam = smlm.Camera(offset=100, gain=0.25, pixel_size_nm=100)   # ADU, e-/ADU, nm
    locs = smlm.localize(movie, cam, sigma_px=1.3)                 # Locs, ThunderSTORM columns
    drift = smlm.drift_rcc(locs)                                   # RCC on localizations
    locs = smlm.correct_drift(locs, drift)
    image = smlm.render(locs, pixel_nm=10)                         # Gaussian rendering
    smlm.frc_resolution(locs).resolution_nm, smlm.nena(locs).precision_nm
    locs.save("locs.csv")                                          # ThunderSTORM CSV

Stages, each usable alone:

* camera: :class:`Camera`, :func:`to_photons`, :func:`to_electrons` (``(ADU - offset) * gain
  / QE``; sCMOS variance maps), :func:`saturated`;
* background: :func:`temporal_median`, :func:`spatial_background`;
* detection: :func:`detect` (separable difference of Gaussians, robust noise, threshold at a
  stated false-positive rate), :func:`dog_filter`, :func:`threshold_for_rate`;
* crops: :func:`extract_crops` (edge spots get shifted windows and a flag);
* fitting: :func:`fit_spots` (Poisson MLE or least squares of a pixel-integrated Gaussian,
  fixed or free sigma, CRLB, log-likelihood; numba on CPU, vectorized twin on GPU);
  :func:`fit_spots_multi` (1 to K emitters per crop chosen by a likelihood-ratio test, for
  dense frames; ``localize(..., max_emitters=2)``);
* pipeline: :func:`localize` (chunk by chunk through :mod:`stacklab.engine`);
* linking: :func:`link`, :func:`track_ids`; drift: :func:`drift_rcc`, :func:`correct_drift`;
  channels: :func:`register_channels`, :func:`apply_transform`;
* rendering: :func:`render` (Gaussian or histogram), :func:`save_png`;
* metrics: :func:`nena`, :func:`frc`, :func:`frc_resolution`, :func:`match_localizations`;
* simulation: :func:`simulate_movie` (blinking Markov emitters, PSF, camera, drift, truth);
* PSF and blinking from raw movies: :func:`psf_sigma_from_blinking`, :func:`blink_statistics`;
* files: :func:`load_locs`, :func:`save_locs` (ThunderSTORM CSV, Picasso HDF5 + YAML);
  acquisition settings: :class:`Config`.

Command line: ``stacklab smlm localize|drift|render|frc|link|simulate`` (:mod:`stacklab.smlm.cli`).
"""

from __future__ import annotations

import importlib
from typing import Any

from .background import spatial_background, subtract_background, temporal_median
from .camera import Camera, check_offset, saturated, to_electrons, to_photons
from .crops import Crops, extract_crops
from .detection import (
    Detections,
    detect,
    dog_filter,
    false_positive_rate,
    local_maxima,
    noise_level,
    threshold_for_rate,
)
from .drift import (
    AffineTransform,
    DriftResult,
    apply_transform,
    correct_drift,
    drift_rcc,
    register_channels,
)
from .fitting import FitResult, fit_spots, psf_model
from .linking import link, merge_tracks, track_ids
from .metrics import (
    FRCResult,
    MatchResult,
    NeNAResult,
    frc,
    frc_resolution,
    match_localizations,
    nena,
)
from .pipeline import COLUMNS, MULTI_COLUMNS, Flag, localize, localize_frames
from .render import SRImage, render, save_png
from .simulate import SimulatedMovie, blink_states, simulate_movie

#: Names defined by sibling modules, imported on first use (``from stacklab.smlm import Locs``).
_LAZY: dict[str, str] = {
    "Locs": "locs",
    "load_locs": "formats",
    "save_locs": "formats",
    "read_thunderstorm_csv": "formats",
    "write_thunderstorm_csv": "formats",
    "read_picasso_hdf5": "formats",
    "write_picasso_hdf5": "formats",
    "psf_sigma_from_blinking": "blink",
    "blink_statistics": "blink",
    "PsfEstimate": "blink",
    "BlinkStatistics": "blink",
    "fit_spots_multi": "multi",
    "MultiFitResult": "multi",
    "split_threshold": "multi",
    "Config": "config",
    "CameraConfig": "config",
    "ChannelConfig": "config",
}

__all__ = [
    "COLUMNS",
    "AffineTransform",
    "Camera",
    "Crops",
    "Detections",
    "DriftResult",
    "FRCResult",
    "FitResult",
    "Flag",
    "MULTI_COLUMNS",
    "MatchResult",
    "NeNAResult",
    "SRImage",
    "SimulatedMovie",
    "apply_transform",
    "blink_states",
    "check_offset",
    "correct_drift",
    "detect",
    "dog_filter",
    "drift_rcc",
    "extract_crops",
    "false_positive_rate",
    "fit_spots",
    "frc",
    "frc_resolution",
    "link",
    "local_maxima",
    "localize",
    "localize_frames",
    "match_localizations",
    "merge_tracks",
    "nena",
    "noise_level",
    "psf_model",
    "register_channels",
    "render",
    "saturated",
    "save_png",
    "simulate_movie",
    "spatial_background",
    "subtract_background",
    "temporal_median",
    "threshold_for_rate",
    "to_electrons",
    "to_photons",
    "track_ids",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stacklab.smlm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
