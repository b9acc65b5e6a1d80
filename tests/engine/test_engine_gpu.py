"""The engine keeps CuPy stacks on the GPU (needs no Dask, so it runs on GPU-only machines)."""

from __future__ import annotations

import operator

import numpy as np
import pytest

from stacklab import engine


@pytest.fixture
def stack(rng):
    return rng.integers(0, 65535, size=(53, 12, 10), dtype=np.uint16)


def frame_stats(block):
    """Per-frame (sum, max, centroid row) of a block, as float64, on the block's device."""
    import cupy

    xp = cupy.get_array_module(block)
    b = block.astype(xp.float64)
    rows = xp.arange(b.shape[1])[None, :, None]
    return xp.stack([b.sum((1, 2)), b.max((1, 2)), (b * rows).sum((1, 2)) / b.sum((1, 2))], 1)


@pytest.mark.gpu
def test_cupy_stays_on_gpu(cupy, stack):
    expected = frame_stats(stack)  # NumPy result of the same kernel
    g = cupy.asarray(stack)
    out = engine.map_frames(frame_stats, g, chunk=7)
    assert isinstance(out, cupy.ndarray)
    np.testing.assert_allclose(out.get(), expected, rtol=1e-12)
    total = engine.reduce_frames(lambda b: b.astype(cupy.float64).sum(), g, merge=operator.add)
    assert float(total) == stack.astype(np.float64).sum()
