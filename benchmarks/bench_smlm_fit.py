"""Benchmark: Poisson MLE fits of 20 000 spots (7 x 7 crops), stacklab versus smlmlp.

Data: crops in photons (photoelectrons) of a pixel-integrated Gaussian, sigma 1.3 px (130 nm at
100 nm pixels), 1000 photons, 20 background photons per pixel, centre uniform within +-0.5 px
of the crop centre, Poisson noise (seeded). Both sides fit the same model, an isotropic
Gaussian with free sigma (5 parameters: x, y, sigma, photons, background), by Poisson maximum
likelihood with Levenberg–Marquardt:

* stacklab: :func:`stacklab.smlm.fit_spots` with ``fit_sigma=True`` (numba, parallel over
  spots), which also returns the CRLB and log-likelihood of every fit;
* smlmlp: ``locs_individual_isogaussfit([crops], X0, Y0, channels_pixels_nm=100,
  channels_psf_sigmas_nm=130, parallel=2)`` with its defaults (optimizer "lm", estimator
  "mle", distribution "poisson"), on two threads like stacklab (set ``THREADS = 1`` in
  ``REFERENCE_CODE`` for its one-thread rate).

Accuracy against the truth: RMS position error (nm, both axes), mean sigma (nm), fraction of
fits flagged as converged; for stacklab also the RMS CRLB and the error/CRLB ratio.
"""

from __future__ import annotations

import numpy as np

NAME = "smlm_fit"
REFERENCE_PACKAGE = "smlmlp"

N_SPOTS = 20_000
BOX = 7
PIXEL_NM = 100.0
SIGMA_PX = 1.3
PHOTONS = 1000.0
BACKGROUND = 20.0

baseline = None


def make_data(seed: int) -> dict[str, np.ndarray]:
    """Crops ``(20000, 7, 7)`` float32 photons and the true centres (px, crop coordinates)."""
    from stacklab.smlm import psf_model

    rng = np.random.default_rng(seed)
    c = (BOX - 1) / 2.0
    x = c + rng.uniform(-0.5, 0.5, N_SPOTS)
    y = c + rng.uniform(-0.5, 0.5, N_SPOTS)
    params = np.column_stack(
        [
            x,
            y,
            np.full(N_SPOTS, PHOTONS),
            np.full(N_SPOTS, BACKGROUND),
            np.full(N_SPOTS, SIGMA_PX),
        ]
    )
    crops = rng.poisson(psf_model((BOX, BOX), params)).astype(np.float32)
    return {"crops": crops, "truth_x_px": x, "truth_y_px": y}


def run_stacklab(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Free-sigma Poisson MLE of every crop (the timed work), plus a fixed-sigma rate."""
    from stacklab.smlm import fit_spots

    crops = data["crops"]
    res = fit_spots(crops, sigma=SIGMA_PX, fit_sigma=True)
    ex = (res.x - data["truth_x_px"]) * PIXEL_NM
    ey = (res.y - data["truth_y_px"]) * PIXEL_NM
    err = float(np.sqrt(np.mean(np.concatenate([ex, ey]) ** 2)))
    crlb = float(np.sqrt(np.mean(np.concatenate([res.crlb[:, 0], res.crlb[:, 1]]) ** 2)))
    return {
        "rms_error_nm": err,
        "rms_crlb_nm": crlb * PIXEL_NM,
        "error_over_crlb": err / (crlb * PIXEL_NM),
        "mean_sigma_nm": float(np.mean(res.sigma) * PIXEL_NM),
        "converged_fraction": float(np.mean(res.converged)),
        "n_spots": float(crops.shape[0]),
    }


REFERENCE_CODE = """
import numpy as np
import stacklp
import arrlp

stacklp.get_xp = arrlp.get_xp  # smlmlp 0.1.20 imports get_xp from stacklp, which lacks it
import smlmlp

PIXEL_NM = 100.0
THREADS = 2  # both cores, as stacklab uses (parallel=False would be one thread)


def run(data):
    crops = data["crops"]
    n = crops.shape[0]
    x0 = np.zeros(n, dtype=np.float32)
    y0 = np.zeros(n, dtype=np.float32)
    mux, muy, info = smlmlp.locs_individual_isogaussfit(
        [crops], x0, y0, channels_pixels_nm=PIXEL_NM, channels_psf_sigmas_nm=130.0,
        parallel=THREADS,
    )
    ex = np.asarray(mux, float) - data["truth_x_px"] * PIXEL_NM
    ey = np.asarray(muy, float) - data["truth_y_px"] * PIXEL_NM
    err = float(np.sqrt(np.mean(np.concatenate([ex, ey]) ** 2)))
    return {
        "rms_error_nm": err,
        "mean_sigma_nm": float(np.mean(info["sigma"])),
        "converged_fraction": float(np.mean(np.asarray(info["converged"]) > 0)),
        "n_spots": float(n),
    }
"""
