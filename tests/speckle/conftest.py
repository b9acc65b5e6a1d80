"""Shared simulated scans for the speckle-tracking tests (session scope: simulated once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stacklab.speckle import simulate

#: Golden outputs of speckle_tracking, when present (copied by the compat layer's tests).
GOLDEN = [
    Path(__file__).resolve().parents[1] / "golden" / "speckle_tracking",
    Path("/work/shared/golden/speckle_tracking"),
]


def golden_file(name: str) -> Path:
    """Path of a golden file, or skip the test when the golden data are not available."""
    for folder in GOLDEN:
        if (folder / name).exists():
            return folder / name
    pytest.skip(f"golden file {name} not available")


@pytest.fixture(scope="session")
def scan_small():
    """64 x 64 detector, 5 x 5 positions, 1.0 px RMS aberration, Poisson counts, 2 bad pixels."""
    return simulate((64, 64), (5, 5), aberration_px=1.0, n_hot=1, n_dead=1, seed=11)


@pytest.fixture(scope="session")
def scan_clean():
    """Noise-free 64 x 64 scan without bad pixels (1.0 px RMS aberration)."""
    return simulate((64, 64), (5, 5), aberration_px=1.0, photons=None, seed=12)


@pytest.fixture(scope="session")
def scan_1d():
    """Single-row detector (1 x 256), 15 positions along fs, 1.0 px RMS aberration."""
    return simulate((1, 256), (1, 15), aberration_px=1.0, photons=1e4, seed=13)


def rms(a) -> float:
    """Root mean square (NaN ignored)."""
    a = np.asarray(a, dtype=float)
    return float(np.sqrt(np.nanmean(a**2)))


def map_rms(u, truth, good=None) -> float:
    """RMS of a pixel-map error over ``good`` pixels, mean offset of each component removed."""
    e = np.asarray(u, dtype=float) - np.asarray(truth, dtype=float)
    if good is None:
        good = np.ones(e.shape[1:], dtype=bool)
    v = e[:, good]
    v = v - v.mean(axis=1, keepdims=True)
    return float(np.sqrt(np.mean(v**2)))
