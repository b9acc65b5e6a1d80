"""The whole pipeline (stacklab.speckle.run): accuracy against truth and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.errors import ShapeError
from stacklab.speckle import SpeckleResult, run, simulate
from stacklab.speckle.demo import map_error, phase_error


def _args(s):
    return (
        s.data,
        s.translations,
        s.basis,
        s.x_pixel_size,
        s.y_pixel_size,
        s.distance,
        s.wavelength,
    )


@pytest.fixture(scope="module")
def result_small(scan_small):
    before = scan_small.data.copy()
    res = run(*_args(scan_small), defocus=scan_small.defocus, progress=False)
    np.testing.assert_array_equal(scan_small.data, before)  # the input is not modified
    return res


def test_accuracy_small_scan(scan_small, result_small):
    s, r = scan_small, result_small
    assert isinstance(r, SpeckleResult)
    assert r.pixel_map.shape == (2, 64, 64) and r.phase.shape == (64, 64)
    assert np.abs(np.array(r.roi) - [4, 60, 4, 60]).max() <= 1  # the bright area
    assert not r.mask[~s.mask].any()  # the hot and dead pixel were found
    assert map_error(r, s.pixel_map) < 0.05
    assert phase_error(r, s.phase) < 0.05
    assert len(r.errors) == r.iterations + 1 == 3
    assert all(np.isfinite(r.errors)) and r.errors[-1] < r.errors[0]
    assert r.errors[-1] < 2.5  # close to the Poisson level (1)
    assert np.isnan(r.phase[0, 0]) and np.isfinite(r.phase[10, 10])
    # the reference image and n0, m0 refer to the full-frame map
    ii = np.arange(8, 56)
    y = r.pixel_map[0, 30, ii] - r.dij_n[0, 0] + r.n0
    assert y.min() >= -0.5 and y.max() <= r.reference.shape[0] - 0.5
    assert set(r.timings) >= {"mask", "initial pixel map", "phase"}


def test_fitted_defocus_and_translations(scan_small):
    s = scan_small
    rng = np.random.default_rng(4)
    t = s.translations.copy()
    t[:, :2] += rng.normal(scale=0.15, size=(25, 2)) * s.dss  # 0.15 object px position errors
    r = run(
        s.data,
        t,
        s.basis,
        s.x_pixel_size,
        s.y_pixel_size,
        s.distance,
        s.wavelength,
        refine_translations=True,
        iterations=2,
        progress=False,
    )
    # (0.15 px position errors and a strong aberration on a small field: a few % here)
    assert r.defocus == pytest.approx(s.defocus, rel=0.04)
    assert r.defocus_fit is not None and r.defocus_fit.method == "registration"
    d_true = s.dij - s.dij.mean(axis=0)
    start = np.sqrt(
        np.mean(((t[:, [1, 0]] / s.dss) - (t[:, [1, 0]] / s.dss).mean(0) - d_true) ** 2)
    )
    scale = r.defocus / s.defocus  # translations are in the fitted object pixels
    got = r.dij_n * scale
    got -= got.mean(axis=0)
    assert np.sqrt(np.mean((got - d_true) ** 2)) < 0.8 * start  # 0.15 -> about 0.11 px


def test_one_dimensional_scan(scan_1d):
    s = scan_1d
    r = run(*_args(s), defocus=s.defocus, progress=False)
    assert r.pixel_map.shape == (2, 1, 256)
    _, _, f0, f1 = r.roi
    e = (r.pixel_map - s.pixel_map)[1, 0, f0:f1]
    assert np.std(e[r.mask[0, f0:f1]]) < 0.05
    assert phase_error(r, s.phase) < 0.05


def test_bad_input_errors(scan_small):
    s = scan_small
    a = list(_args(s))
    with pytest.raises(ShapeError, match="translations"):
        run(s.data, s.translations[:-1], *a[2:], defocus=4e-4, progress=False)
    with pytest.raises(ShapeError, match="basis"):
        run(s.data, s.translations, s.basis[:, :1], *a[3:], defocus=4e-4, progress=False)
    with pytest.raises(ValueError, match="masked"):
        run(*a, mask=np.zeros((64, 64), bool), defocus=4e-4, progress=False)
    W = s.whitefield.copy()
    W[30, 30] = 0.0
    with pytest.raises(ValueError, match="whitefield"):
        run(*a, whitefield=W, defocus=4e-4, progress=False)
    with pytest.raises(ValueError, match="wavelength"):
        run(*a[:-1], -1.0, defocus=4e-4, progress=False)
    with pytest.raises(ValueError, match="roi"):
        run(*a, roi=[0, 100, 0, 10], defocus=4e-4, progress=False)
    with pytest.raises(ValueError, match="defocus_method"):
        run(*a, defocus_method="magic", progress=False)


@pytest.mark.slow
def test_benchmark_size_accuracy():
    # the benchmark's scan: 128 x 128, 7 x 7 positions, 1.2 px RMS aberration
    s = simulate((128, 128), (7, 7), seed=0)
    r = run(*_args(s), defocus=s.defocus, progress=False)
    e_map, e_phase = map_error(r, s.pixel_map), phase_error(r, s.phase)
    print(f"128x128x49: map {e_map:.4f} px, phase {e_phase:.4f} rad, errors {r.errors}")
    assert e_map < 0.05 and e_phase < 0.05
