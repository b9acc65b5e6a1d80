"""Fixtures for the stacklab.io tests: small stacks with awkward values, a failing lazy array."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def u16_stack() -> np.ndarray:
    """(9, 6, 5) uint16 with values within 10 of 65535 and a few zeros (wrap-around traps)."""
    rng = np.random.default_rng(7)
    a = (65535 - rng.integers(0, 10, size=(9, 6, 5))).astype(np.uint16)
    a[0, 0, 0] = 0
    a[-1, -1, -1] = 65535
    return a


@pytest.fixture
def f32_stack() -> np.ndarray:
    """(9, 6, 5) float32 with extreme magnitudes, negative zero and subnormal-free noise."""
    rng = np.random.default_rng(8)
    a = rng.normal(size=(9, 6, 5)).astype(np.float32)
    a[0, 0, :3] = [np.finfo(np.float32).max, np.finfo(np.float32).tiny, -0.0]
    return a


class FailingStack:
    """A lazy array whose reads fail: makes a writer raise after it created its output."""

    def __init__(self, shape=(4, 3, 2), dtype=np.uint16):
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)

    def __getitem__(self, index):
        raise RuntimeError("simulated failure while reading the source")


@pytest.fixture
def failing_stack() -> FailingStack:
    """A lazy (4, 3, 2) uint16 'array' that raises RuntimeError on every read."""
    return FailingStack()


@pytest.fixture
def truncate_half():
    """A function that cuts a file to half its size (as a crash during a copy would)."""

    def cut(path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    return cut
