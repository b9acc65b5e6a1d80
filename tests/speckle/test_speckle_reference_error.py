"""make_reference, calc_error and forward_model against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.errors import ShapeError
from stacklab.speckle import calc_error, forward_model, make_reference, object_grid, simulate
from stacklab.speckle._interp import sample, splat

from .conftest import golden_file


def test_constant_object_is_exact():
    rng = np.random.default_rng(0)
    W = rng.uniform(50, 100, size=(12, 14))
    data = np.broadcast_to(2.5 * W, (4, 12, 14)).copy()
    dij = rng.normal(size=(4, 2))
    u = np.stack(np.indices((12, 14), dtype=float)) + rng.normal(scale=0.3, size=(2, 12, 14))
    for backend in ("numba", "xp"):
        ref = make_reference(data, None, W, dij, u, backend=backend)
        ok = np.isfinite(ref.image)
        assert ok.mean() > 0.9
        np.testing.assert_allclose(ref.image[ok], 2.5, rtol=1e-12)
        err = calc_error(data, None, W, dij, ref.image, u, ref.n0, ref.m0, backend=backend)
        assert err.total < 1e-15 * data.sum()


def test_object_grid_convention():
    u = np.stack(np.indices((5, 6), dtype=float))
    dij = np.array([[0.0, 0.0], [1.5, -2.0]])
    n0, m0, shape = object_grid(u, dij)
    assert n0 == pytest.approx(1.5) and m0 == pytest.approx(0.0)
    # smallest object coordinate is exactly 0
    assert min((u[0] - d[0] + n0).min() for d in dij) == pytest.approx(0.0)
    assert shape == (int(np.rint(4 + 0 + 1.5)) + 1, int(np.rint(5 + 2 + 0)) + 1)


def test_true_map_reproduces_the_object(scan_clean):
    s = scan_clean
    ref = make_reference(s.data, s.mask, s.whitefield, s.dij, s.pixel_map, iterations=6)
    # object index k of the reference is the simulator's coordinate k - n0 + truth n0
    ky, kx = np.indices(ref.image.shape)
    truth = sample(np, s.reference, ky - ref.n0 + s.n0, kx - ref.m0 + s.m0)
    ok = np.isfinite(ref.image) & np.isfinite(truth) & (ref.count > 8)
    assert ok.sum() > 0.5 * ok.size
    corr = np.corrcoef(ref.image[ok], truth[ok])[0, 1]
    assert corr > 0.995
    # (the truth is read bilinearly from its own integer grid: part of the difference)
    assert np.sqrt(np.mean((ref.image[ok] - truth[ok]) ** 2)) < 0.12 * truth[ok].std()
    # NaN exactly where no data reach
    np.testing.assert_array_equal(np.isnan(ref.image), ref.count == 0)


def test_least_squares_sweeps_lower_the_residual(scan_clean):
    s = scan_clean
    errs = []
    for sweeps in (0, 2, 6):
        ref = make_reference(s.data, None, s.whitefield, s.dij, s.pixel_map, iterations=sweeps)
        errs.append(
            calc_error(
                s.data, None, s.whitefield, s.dij, ref.image, s.pixel_map, ref.n0, ref.m0
            ).total
        )
    assert errs[1] < 0.7 * errs[0] and errs[2] < errs[1]


def test_numba_and_xp_agree(scan_small):
    s = scan_small
    a = make_reference(
        s.data, s.mask, s.whitefield, s.dij, s.pixel_map, iterations=2, backend="numba"
    )
    b = make_reference(s.data, s.mask, s.whitefield, s.dij, s.pixel_map, iterations=2, backend="xp")
    np.testing.assert_allclose(a.image, b.image, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.weight, b.weight, rtol=1e-9)
    np.testing.assert_allclose(a.count, b.count, rtol=1e-9)
    fa = forward_model(s.whitefield, a.image, s.pixel_map, a.n0, a.m0, s.dij, backend="numba")
    fb = forward_model(s.whitefield, a.image, s.pixel_map, a.n0, a.m0, s.dij, backend="xp")
    np.testing.assert_allclose(fa, fb, rtol=1e-12, equal_nan=True)


def test_splat_is_the_transpose_of_sample():
    rng = np.random.default_rng(3)
    img = rng.normal(size=(7, 9))
    y = rng.uniform(-0.5, 6.5, size=200)
    x = rng.uniform(-0.5, 8.5, size=200)
    v = rng.normal(size=200)
    num, _ = splat(np, img.shape, y, x, v, np.ones(1))
    # <S^T v, img> == <v, S img>
    assert np.sum(num * img) == pytest.approx(np.sum(v * sample(np, img, y, x)), rel=1e-12)


def test_calc_error_poisson_level_and_shapes(scan_small):
    s = scan_small
    ref = make_reference(s.data, s.mask, s.whitefield, s.dij, s.pixel_map, iterations=6)
    err = calc_error(s.data, s.mask, s.whitefield, s.dij, ref.image, s.pixel_map, ref.n0, ref.m0)
    assert err.frame.shape == (25,) and err.pixel.shape == (64, 64)
    assert err.residual.shape == (25, 64, 64)
    assert not err.valid[:, ~s.mask].any()
    assert 1.0 < err.normalised < 6.0  # Poisson (1) plus bilinear interpolation error
    assert err.total == pytest.approx(err.residual.sum())
    # on a twice finer reference grid the fit is Poisson-limited
    r2 = make_reference(s.data, s.mask, s.whitefield, 2 * s.dij, 2 * s.pixel_map, iterations=6)
    e2 = calc_error(
        s.data, s.mask, s.whitefield, 2 * s.dij, r2.image, 2 * s.pixel_map, r2.n0, r2.m0
    )
    assert 0.9 < e2.normalised < 1.3
    # a wrong map costs more
    bad = calc_error(
        s.data, s.mask, s.whitefield, s.dij, ref.image, s.pixel_map + 0.5, ref.n0, ref.m0
    )
    assert bad.normalised > 3 * err.normalised


def test_golden_true_map_object():
    g = np.load(golden_file("make_object_map_truemap_2d.npz"))
    s = np.load(golden_file("scan_2d.npz"))
    ref = make_reference(g["in_data"], g["in_mask"], g["in_W"], g["in_dij_n"], g["in_pixel_map"])
    assert ref.n0 == pytest.approx(float(g["out_n0"]))
    assert ref.m0 == pytest.approx(float(g["out_m0"]))
    assert ref.image.shape == g["out_O"].shape
    ky, kx = np.indices(ref.image.shape)
    truth = sample(np, s["truth_object"], ky - ref.n0 + s["truth_n0"], kx - ref.m0 + s["truth_m0"])
    ok = np.isfinite(ref.image) & np.isfinite(truth)
    assert np.corrcoef(ref.image[ok], truth[ok])[0, 1] > 0.94


def test_errors_name_the_argument(scan_small):
    s = scan_small
    with pytest.raises(ShapeError, match="dij_n"):
        make_reference(s.data, s.mask, s.whitefield, s.dij[:-1], s.pixel_map)
    with pytest.raises(ShapeError, match="pixel_map"):
        make_reference(s.data, s.mask, s.whitefield, s.dij, s.pixel_map[:, :-1])
    with pytest.raises(ValueError, match="masked"):
        make_reference(s.data, np.zeros((64, 64), bool), s.whitefield, s.dij, s.pixel_map)
    W = s.whitefield.copy()
    W[10, 10] = 0.0
    with pytest.raises(ValueError, match="W"):
        make_reference(s.data, s.mask, W, s.dij, s.pixel_map)
    with pytest.raises(ShapeError, match="data"):
        make_reference(s.data[0], s.mask, s.whitefield, s.dij, s.pixel_map)
    d = s.data.copy()
    make_reference(d, s.mask, s.whitefield, s.dij, s.pixel_map)
    np.testing.assert_array_equal(d, s.data)


def test_integer_data_widened():
    s = simulate((24, 24), (2, 2), seed=5)
    a = make_reference(s.data.astype(np.uint16), None, s.whitefield, s.dij, s.pixel_map)
    b = make_reference(s.data, None, s.whitefield, s.dij, s.pixel_map)
    np.testing.assert_allclose(a.image, b.image, rtol=1e-6, equal_nan=True)
