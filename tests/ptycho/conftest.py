"""Shared fixtures of the ptychography tests (session scope: simulated once)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def notebook():
    """The notebook's forward simulation (about 1 s)."""
    from stacklab.ptycho import notebook_scene

    return notebook_scene()


@pytest.fixture(scope="session")
def small_scan():
    """A small noise-free scan: 6x6 positions, 32x32 patterns, object 63x63."""
    from stacklab.ptycho import simulate_dataset

    return simulate_dataset(
        scan_shape=(6, 6), probe_shape=(32, 32), step=4.0, aperture_radius=6.0, seed=3
    )
