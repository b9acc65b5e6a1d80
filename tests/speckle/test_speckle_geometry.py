"""generate_pixel_map and make_pixel_translations: the nominal geometry."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.errors import ShapeError
from stacklab.speckle import generate_pixel_map, make_pixel_translations

from .conftest import golden_file


def _geometry(n=6):
    rng = np.random.default_rng(0)
    t = np.zeros((n, 3))
    t[:, 0] = rng.normal(size=n) * 1e-7
    t[:, 1] = rng.normal(size=n) * 1e-7
    t[:, 2] = 1e-3
    basis = np.broadcast_to([[0.0, 55e-6, 0.0], [55e-6, 0.0, 0.0]], (n, 2, 3)).copy()
    return t, basis


def test_identity_map_and_translations():
    t, basis = _geometry()
    u, dij, info = generate_pixel_map((10, 12), t, basis, 55e-6, 55e-6, 1.0, 1e-3)
    ii, jj = np.indices((10, 12))
    np.testing.assert_allclose(u, np.stack([ii, jj]), atol=1e-12)
    assert info["dss"] == pytest.approx(55e-9) and info["magnification"] == pytest.approx(1000)
    expect = np.stack([t[:, 1] / 55e-9, t[:, 0] / 55e-9], axis=1)
    np.testing.assert_allclose(dij, expect - expect.mean(axis=0), atol=1e-9)
    assert abs(dij.mean(axis=0)).max() < 1e-12


def test_astigmatic_stretch():
    t, basis = _geometry()
    u, _, info = generate_pixel_map(
        (10, 12), t, basis, 55e-6, 55e-6, 1.0, defocus_fs=1.1e-3, defocus_ss=0.9e-3
    )
    ii, jj = np.indices((10, 12))
    np.testing.assert_allclose(u[0], 0.9 * ii, atol=1e-12)
    np.testing.assert_allclose(u[1], 1.1 * jj, atol=1e-12)
    assert info["magnification_ss"] == pytest.approx(1.0 / 0.9e-3)
    assert info["dss"] == pytest.approx(55e-6 * 1e-3)


def test_against_golden():
    g = np.load(golden_file("generate_pixel_map_2d.npz"))
    args = (
        tuple(g["in_shape"]),
        g["in_translations"],
        g["in_basis"],
        float(g["in_x_pixel_size"]),
        float(g["in_y_pixel_size"]),
        float(g["in_z"]),
    )
    u, dij, info = generate_pixel_map(*args, float(g["in_defocus_fs"]))
    np.testing.assert_allclose(u, g["out_pixel_map"], atol=1e-12)
    np.testing.assert_allclose(dij, g["out_pixel_translations"], atol=1e-12)
    assert info["dss"] == pytest.approx(float(g["out_res_dss"]))
    u, dij, info = generate_pixel_map(
        *args, float(g["in_astig_defocus_fs"]), float(g["in_astig_defocus_ss"])
    )
    np.testing.assert_allclose(u, g["out_astig_pixel_map"], atol=1e-12)
    assert info["magnification_fs"] == pytest.approx(float(g["out_astig_res_magnification_fs"]))


def test_bad_geometry():
    t, basis = _geometry()
    with pytest.raises(ShapeError, match="basis"):
        make_pixel_translations(t, basis[:3], 1e-9, 1e-9)
    with pytest.raises(ShapeError, match="translations"):
        make_pixel_translations(t[:, :2], basis, 1e-9, 1e-9)
    with pytest.raises(ValueError, match="defocus"):
        generate_pixel_map((4, 4), t, basis, 1e-6, 1e-6, 1.0, 1e-3, -1e-3)
    with pytest.raises(ValueError, match="dss"):
        make_pixel_translations(t, basis, 0.0, 1e-9)
