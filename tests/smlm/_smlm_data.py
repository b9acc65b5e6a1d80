"""Simulated data shared by the SMLM tests (cached: simulated once per test session)."""

from __future__ import annotations

import functools

import numpy as np

from stacklab.smlm import psf_model, simulate_movie


@functools.lru_cache(maxsize=4)
def movie(n_frames: int = 400, seed: int = 3, drift: tuple[float, float] = (0.0, 0.0)):
    """A 64 x 64 movie with the issue's parameters (uint16 ADU, offset 100, gain 0.25)."""
    return simulate_movie(n_frames, (64, 64), drift_nm=drift, seed=seed)


@functools.lru_cache(maxsize=4)
def spots(
    n: int = 3000,
    *,
    photons: float = 1000.0,
    background: float = 20.0,
    sigma: float = 1.3,
    box: int = 7,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson crops (float32 photons) of spots within +-0.5 px of the centre, and the truth."""
    rng = np.random.default_rng(seed)
    c = (box - 1) / 2.0
    truth = np.column_stack(
        [
            c + rng.uniform(-0.5, 0.5, n),
            c + rng.uniform(-0.5, 0.5, n),
            np.full(n, photons),
            np.full(n, background),
            np.full(n, sigma),
        ]
    )
    crops = rng.poisson(psf_model((box, box), truth)).astype(np.float32)
    return crops, truth
