"""Shared simulated data for the bead-tracking tests (session scope: simulated once)."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.beads import make_zlut, simulate, simulate_zscan

#: Reduced look-up table of the fast tests: +-2 um in 100 nm steps (the slow tests use +-5 um).
Z_FAST = np.arange(-2000.0, 2000.0 + 50.0, 100.0)


@pytest.fixture(scope="session")
def zscan_fast():
    """Calibration z-scan (41 frames of 64 x 64, bead at the frame centre), noise-free."""
    return simulate_zscan(Z_FAST)


@pytest.fixture(scope="session")
def lut_fast(zscan_fast):
    """ZLUT from :data:`Z_FAST`."""
    return make_zlut(zscan_fast.images, Z_FAST, pixel_size_nm=100.0)


@pytest.fixture(scope="session")
def beads_clean():
    """120 noise-free 64 x 64 frames, xy within +-2 px of the centre, z within the fast table."""
    return simulate(120, z_range=(-1950.0, 1950.0), seed=11)


@pytest.fixture(scope="session")
def beads_noisy():
    """120 frames like :func:`beads_clean` with 1000 photons per background pixel (Poisson)."""
    return simulate(120, z_range=(-1950.0, 1950.0), photons=1000.0, seed=12)


def rms(a) -> float:
    """Root mean square of an array (NaN propagates)."""
    return float(np.sqrt(np.mean(np.square(np.asarray(a, dtype=np.float64)))))
