"""Benchmark: the whole localization pipeline on a 2000-frame movie, stacklab versus smlmlp.

Data (:func:`stacklab.smlm.simulate_movie`, seeded): 2000 frames of 64 x 64 pixels (uint16 ADU),
100 nm pixels, PSF sigma 1.3 px, 1000 photons per emitter per on-frame, 20 background photons per
pixel, camera offset 100 ADU and gain 0.25 e-/ADU, 107 emitters blinking with k_on 0.01 and k_off
0.25 per frame (about 4 on per frame, 8000 emitter-frames), no drift.

* stacklab: :func:`stacklab.smlm.localize` on the ADU movie (camera conversion, detection on the
  Anscombe transform with a difference of separable Gaussians at a false-positive rate of 1e-6
  per pixel, 7 x 7 crops, fixed-sigma Poisson MLE with CRLB), chunks of 256 frames.
* smlmlp: its stages in order, with its own defaults for this PSF and pixel size (``Config`` with
  ``cameras_pixels_nm=100``, ``channels_psf_sigmas_nm=130``): ``bkgd_combination`` (temporal
  median over 10 frames and spatial mean), ``signal_spatial_filter`` (its 25 x 25 kernel),
  ``detect_snr``, ``detect_spatial_maxima`` (SNR threshold 4), ``crop_individual_extract``
  (11 x 11 crops), ``locs_individual_isogaussfit`` (Poisson MLE, free sigma). smlmlp has no
  camera offset, so its side converts the movie to photons first (``(ADU - 100) * 0.25``) and
  its camera gain and QE are set to 1. ``Config.parallel`` is set to 2 (both cores, as stacklab
  uses; its default 0 asks numba for 0 threads and fails).

Accuracy against the truth (same code on both sides): recall and precision of the localizations
matched one-to-one to true emitters within 150 nm in the same frame, RMS error of the matches.
"""

from __future__ import annotations

import numpy as np

NAME = "smlm_pipeline"
REFERENCE_PACKAGE = "smlmlp"

N_FRAMES = 2000

baseline = None


def make_data(seed: int) -> dict[str, np.ndarray]:
    """The ADU movie ``(2000, 64, 64)`` uint16 and the true positions (frame, x, y in nm)."""
    from stacklab.smlm import simulate_movie

    sim = simulate_movie(N_FRAMES, (64, 64), seed=seed)
    return {
        "movie": sim.movie,
        "truth_frame": sim.truth["frame"].to_numpy(),
        "truth_x_nm": sim.truth["x [nm]"].to_numpy(),
        "truth_y_nm": sim.truth["y [nm]"].to_numpy(),
    }


def run_stacklab(data: dict[str, np.ndarray]) -> dict[str, float]:
    """:func:`stacklab.smlm.localize` on the ADU movie; accuracy against the truth."""
    import pandas as pd

    from stacklab.smlm import Camera, localize, match_localizations

    camera = Camera(offset=100.0, gain=0.25, qe=1.0, pixel_size_nm=100.0)
    locs = localize(data["movie"], camera, sigma_px=1.3, progress=False)
    truth = pd.DataFrame(
        {
            "frame": data["truth_frame"],
            "x [nm]": data["truth_x_nm"],
            "y [nm]": data["truth_y_nm"],
        }
    )
    m = match_localizations(locs, truth, max_dist_nm=150.0)
    return {
        "n_locs": float(len(locs)),
        "recall": m.recall,
        "precision": m.precision,
        "rmse_nm": float(np.sqrt(np.mean(np.concatenate([m.dx_nm, m.dy_nm]) ** 2))),
    }


REFERENCE_CODE = """
import numpy as np
import stacklp
import arrlp

stacklp.get_xp = arrlp.get_xp  # smlmlp 0.1.20 imports get_xp from stacklp, which lacks it
import smlmlp
from scipy.spatial import cKDTree

PIXEL_NM = 100.0


def _config():
    cfg = smlmlp.Config()
    cfg.cameras_pixels_nm = PIXEL_NM
    cfg.channels_psf_sigmas_nm = 130.0
    cfg.cameras_constructor_gains = 1.0  # the movie is converted to photons first
    cfg.cameras_QE = 1.0
    cfg.parallel = 2  # both cores, like stacklab (Config.parallel=0 would ask numba for 0 threads)
    cfg.cuda = False
    return cfg


def _match(fl, xl, yl, ft, xt, yt, max_dist=150.0):
    span = 4.0 * (max(np.ptp(xt), np.ptp(yt)) + max_dist) + 1.0
    a = np.column_stack([xl, yl, fl * span])
    b = np.column_stack([xt, yt, ft * span])
    dl, il = cKDTree(b).query(a, distance_upper_bound=max_dist)
    dt, it = cKDTree(a).query(b, distance_upper_bound=max_dist)
    li = np.nonzero(np.isfinite(dl))[0]
    ti = il[li]
    mutual = it[ti] == li
    li, ti = li[mutual], ti[mutual]
    err = np.concatenate([xl[li] - xt[ti], yl[li] - yt[ti]])
    return len(ti) / len(ft), len(li) / max(len(fl), 1), float(np.sqrt(np.mean(err**2)))


def run(data):
    cfg = _config()
    movie = data["movie"]
    # smlmlp has no camera offset: convert ADU to photons first, as stacklab does internally.
    ch = (movie.astype(np.float32) - 100.0) * 0.25
    bkgds, nc, _ = smlmlp.bkgd_combination([ch], config=cfg)
    kernels = cfg.channels_spatial_kernels
    signals, nc, _ = smlmlp.signal_spatial_filter([ch], kernels, bkgds=bkgds, noise_corrections=nc)
    snrs, _ = smlmlp.detect_snr(signals, bkgds, noise_corrections=nc, config=cfg)
    fr, x, y, _, _ = smlmlp.detect_spatial_maxima(
        snrs, cfg.snr_thresh, kernels, channels_pixels_nm=cfg.channels_pixels_nm
    )
    crops, x0, y0, _ = smlmlp.crop_individual_extract([ch], fr, x, y, config=cfg)
    mux, muy, info = smlmlp.locs_individual_isogaussfit(crops, x0, y0, config=cfg)
    fl = np.asarray(fr, np.int64) - 1  # smlmlp frames are 1-based
    recall, precision, rmse = _match(
        fl, np.asarray(mux, float), np.asarray(muy, float),
        data["truth_frame"], data["truth_x_nm"], data["truth_y_nm"],
    )
    return {"n_locs": float(len(fl)), "recall": recall, "precision": precision, "rmse_nm": rmse}
"""
