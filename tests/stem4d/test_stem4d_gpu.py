"""CuPy input gives the NumPy results and stays on the GPU (run with ``-m gpu``)."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.stem4d import (
    bin_diffraction,
    count_block,
    count_electrons,
    estimate_thresholds,
    filter_hot_pixels,
    find_hot_pixels,
    mean_pattern,
    pad_diffraction,
    repair_pixels,
    resample_diffraction,
    shift_patterns,
)
from stacklab.stem4d.simulate import simulate_counting, simulate_diffraction

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def counting():
    return simulate_counting((4, 5), (40, 36), xrays_per_frame=0.5, n_hot=3, n_hot_pairs=1, seed=31)


@pytest.fixture(scope="module")
def integrating():
    return simulate_diffraction((4, 5), (32, 30), n_hot=3, n_hot_pairs=1, seed=32)


def test_counting_on_gpu(cupy, counting):
    cube, truth = counting
    g = cupy.asarray(cube)
    th = estimate_thresholds(cube, truth.dark)
    tg = estimate_thresholds(g, cupy.asarray(truth.dark))
    assert tg.background == pytest.approx(th.background, rel=1e-6)
    cpu = count_electrons(cube, truth.dark, thresholds=th, subpixel=True)
    gpu = count_electrons(g, cupy.asarray(truth.dark), thresholds=th, subpixel=True)
    np.testing.assert_array_equal(gpu.offsets, cpu.offsets)
    np.testing.assert_array_equal(gpu.rows, cpu.rows)
    np.testing.assert_allclose(gpu.subpixel, cpu.subpixel, atol=1e-5)
    frames = g.reshape(-1, *cube.shape[2:])
    out = count_block(frames, cupy.asarray(truth.dark), background=th.background, method="array")
    assert type(out["row"]).__module__.startswith("cupy")


def test_transforms_on_gpu(cupy, integrating):
    cube, truth = integrating
    g = cupy.asarray(cube)
    b = bin_diffraction(g, 2)
    assert type(b).__module__.startswith("cupy")
    np.testing.assert_array_equal(b.get(), bin_diffraction(cube, 2))
    s = shift_patterns(g.astype(cupy.float64), -truth.shifts)
    np.testing.assert_allclose(
        s.get(), shift_patterns(cube.astype(np.float64), -truth.shifts), atol=1e-8
    )
    s = shift_patterns(g, (0.5, -1.25), method="bilinear", periodic=False)
    np.testing.assert_allclose(
        s.get(), shift_patterns(cube, (0.5, -1.25), method="bilinear", periodic=False), atol=1e-8
    )
    r = resample_diffraction(g, 1.5, method="fourier", conserve_sum=True)
    np.testing.assert_allclose(
        r.get(),
        resample_diffraction(cube, 1.5, method="fourier", conserve_sum=True),
        rtol=1e-6,
        atol=1e-6,
    )
    np.testing.assert_array_equal(pad_diffraction(g, 1.5).get(), pad_diffraction(cube, 1.5))
    np.testing.assert_allclose(mean_pattern(g).get(), mean_pattern(cube))


def test_hot_pixels_on_gpu(cupy, integrating):
    cube, truth = integrating
    g = cupy.asarray(cube)
    mask = find_hot_pixels(g)
    assert type(mask).__module__.startswith("cupy")
    np.testing.assert_array_equal(mask.get(), find_hot_pixels(cube))
    np.testing.assert_array_equal(mask.get(), truth.hot_mask)
    rep = repair_pixels(g, mask)
    np.testing.assert_array_equal(rep.get(), repair_pixels(cube, truth.hot_mask))
    fixed, m2 = filter_hot_pixels(g)
    np.testing.assert_array_equal(fixed.get(), rep.get())
    np.testing.assert_array_equal(m2.get(), mask.get())
