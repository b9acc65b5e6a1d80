"""Shared fixtures: seeded random generators, backends, golden data paths."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from stacklab import backend

TESTS_DIR = Path(__file__).resolve().parent
GOLDEN_DIR = TESTS_DIR / "golden"

# Test modules are imported as ``tests.<dir>.<module>`` (--import-mode=importlib). dask.distributed
# workers unpickle kernels defined in them by reference; spawned workers copy this process's
# sys.path, so it must hold the repository root for them to find the ``tests`` package.
if str(TESTS_DIR.parent) not in sys.path:
    sys.path.append(str(TESTS_DIR.parent))


def pytest_collection_modifyitems(config, items):
    """Skip GPU tests cleanly when selected (``-m gpu``) on a machine without a usable GPU."""
    if backend.gpu_available():
        return
    skip = pytest.mark.skip(reason="no usable CUDA device (cupy.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator with a fixed seed, fresh for each test."""
    return np.random.default_rng(12345)


@pytest.fixture
def golden_dir() -> Path:
    """Folder of recorded reference-package outputs (``tests/golden/<package>/``)."""
    return GOLDEN_DIR


@pytest.fixture
def cupy():
    """The cupy module on a machine with a usable GPU (tests using it are marked ``gpu``)."""
    if not backend.gpu_available():
        pytest.skip("no usable CUDA device")
    import cupy

    return cupy
