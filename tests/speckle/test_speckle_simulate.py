"""The simulator follows the documented forward model and sign conventions."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.speckle import (
    aberration_phase,
    integrate_pixel_map,
    make_pixel_translations,
    simulate,
)
from stacklab.speckle.phase import remove_terms


def test_forward_model_on_integer_grid():
    # No aberration, integer steps, no jitter: every coordinate is an object-grid node, where
    # the spline reproduces the stored reference exactly.
    s = simulate((32, 40), (3, 3), step=2.0, jitter=0.0, aberration_px=0.0, photons=None, seed=1)
    assert float(s.n0) == int(s.n0) and float(s.m0) == int(s.m0)
    ii, jj = np.indices((32, 40))
    for n in range(s.data.shape[0]):
        y = (ii - s.dij[n, 0] + s.n0).astype(int)
        x = (jj - s.dij[n, 1] + s.m0).astype(int)
        expect = s.whitefield * s.reference[y, x]
        np.testing.assert_allclose(s.clean[n], expect, rtol=2e-6)
    np.testing.assert_array_equal(s.data, s.clean)


def test_translation_sign_and_units():
    s = simulate((32, 32), (2, 2), step=4.0, jitter=0.0, aberration_px=0.0, photons=None, seed=2)
    # translations (x, y, z): x along fs, y along ss, in metres of object pixels dfs / dss
    np.testing.assert_allclose(s.translations[:, 0], s.dij[:, 1] * s.dfs)
    np.testing.assert_allclose(s.translations[:, 1], s.dij[:, 0] * s.dss)
    np.testing.assert_allclose(s.translations[:, 2], s.defocus)
    dij = make_pixel_translations(s.translations, s.basis, s.dss, s.dfs)
    np.testing.assert_allclose(dij, s.dij, atol=1e-12)
    # a feature moves to larger detector index for a positive translation along fs
    a = s.clean[0].astype(float) / s.whitefield
    b = s.clean[1].astype(float) / s.whitefield  # dij[1, 1] - dij[0, 1] = +4
    assert s.dij[1, 1] - s.dij[0, 1] == pytest.approx(4.0)
    np.testing.assert_allclose(b[:, 8:28], a[:, 4:24], rtol=1e-5)


def test_geometry_and_aberration_relation():
    s = simulate((48, 56), (3, 3), dz=5e-5, aberration_px=1.5, photons=None, seed=3)
    assert s.dss == pytest.approx(s.x_pixel_size * s.defocus / s.distance)
    assert s.defocus_ss == pytest.approx(s.defocus + 5e-5)
    ii, jj = np.indices((48, 56), dtype=float)
    du = s.pixel_map - np.stack([ii * s.defocus_ss / s.defocus, jj * s.defocus_fs / s.defocus])
    du_c = du - du.reshape(2, -1).mean(axis=1)[:, None, None]
    assert np.sqrt(np.mean(du_c**2)) == pytest.approx(1.5, rel=1e-9)
    # du = -(wavelength z / (2 pi d Delta)) grad(phase): integrating -du recovers the phase
    base = np.stack([ii * s.defocus_ss / s.defocus, jj * s.defocus_fs / s.defocus])
    u = np.stack([ii, jj]) + (s.pixel_map - base)
    ph = integrate_pixel_map(
        u, None, s.wavelength, s.distance, s.x_pixel_size, s.y_pixel_size, s.dss, s.dfs
    )
    truth, _ = remove_terms(s.phase, None, "tilt")
    assert np.sqrt(np.mean((ph.phase - truth) ** 2)) < 5e-3 * np.std(truth)


def test_aberration_has_no_geometry_terms():
    phase, grad = aberration_phase((40, 50), seed=4)
    y = np.linspace(-1, 1, 40)[:, None] * np.ones((1, 50))
    x = np.ones((40, 1)) * np.linspace(-1, 1, 50)[None, :]
    for basis in (np.ones_like(x), x, y, x * x, y * y, x * y):
        assert abs(np.sum(phase * basis)) < 1e-9 * np.sum(np.abs(phase))
    gy, gx = np.gradient(phase)
    np.testing.assert_allclose(grad[0][2:-2, 2:-2], gy[2:-2, 2:-2], rtol=0.05, atol=1e-3)
    np.testing.assert_allclose(grad[1][2:-2, 2:-2], gx[2:-2, 2:-2], rtol=0.05, atol=1e-3)


def test_poisson_noise_bad_pixels_and_seed(scan_small):
    s = scan_small
    assert s.data.shape == (25, 64, 64) and s.data.dtype == np.float32
    good = s.mask
    assert (~good).sum() == 2
    ratio = s.data[:, good].mean() / s.clean[:, good].mean()
    assert ratio == pytest.approx(1.0, abs=2e-3)
    resid = (s.data - s.clean)[:, good] / np.sqrt(np.maximum(s.clean[:, good], 1))
    assert np.std(resid) == pytest.approx(1.0, abs=0.02)
    again = simulate((64, 64), (5, 5), aberration_px=1.0, n_hot=1, n_dead=1, seed=11)
    np.testing.assert_array_equal(again.data, s.data)


def test_one_dimensional_scan(scan_1d):
    s = scan_1d
    assert s.data.shape == (15, 1, 256) and s.is_1d
    assert np.all(s.dij[:, 0] == 0)
    assert np.all(s.pixel_map[0] == 0)
    assert s.reference.shape[0] == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="defocus"):
        simulate((16, 16), (2, 2), defocus=2.0)
    with pytest.raises(ValueError, match="dz"):
        simulate((16, 16), (2, 2), dz=1e-3)
    with pytest.raises(ValueError, match="grid"):
        simulate((1, 32), (2, 3))
