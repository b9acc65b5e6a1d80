"""Tests for stacklab.core.peaks: exact on sampled parabolas/quadratics, magtrack golden data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stacklab import backend
from stacklab.core.peaks import argmax_parabolic, parabolic_vertex, quadratic_peak_2d
from stacklab.errors import ShapeError

_GOLDEN_CANDIDATES = [
    Path(__file__).resolve().parents[1] / "golden" / "magtrack",
    Path("/work/shared/golden/magtrack"),
]
GOLDEN = next((p for p in _GOLDEN_CANDIDATES if p.is_dir()), None)
needs_golden = pytest.mark.skipif(GOLDEN is None, reason="magtrack golden data not found")
gpu = pytest.mark.gpu


# ----------------------------------------------------------------------------- parabolic_vertex


@pytest.mark.parametrize("n_local", [3, 5, 7])
def test_parabolic_vertex_exact_on_parabola_batch(n_local):
    rng = np.random.default_rng(0)
    n_rows, n = 40, 25
    true = rng.uniform(4.0, 20.0, n_rows)
    curv = rng.uniform(0.2, 3.0, n_rows) * rng.choice([-1, 1], n_rows)
    t = np.arange(n)
    values = curv[:, None] * (t[None, :] - true[:, None]) ** 2 + rng.uniform(-5, 5, (n_rows, 1))
    index = np.rint(true).astype(int)
    got = parabolic_vertex(values, index, n_local=n_local)
    assert got.shape == (n_rows,)
    np.testing.assert_allclose(got, true, rtol=0, atol=1e-10)


def test_parabolic_vertex_weighted_exact_and_leading_axes():
    rng = np.random.default_rng(1)
    t = np.arange(30)
    true = rng.uniform(5, 25, (3, 4))
    values = -((t - true[..., None]) ** 2) + 100.0
    weights = rng.uniform(0.1, 2.0, (3, 4, 30))
    got = parabolic_vertex(values, np.floor(true).astype(int), n_local=5, weights=weights)
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, true, atol=1e-10)
    got1 = parabolic_vertex(values, np.floor(true).astype(int), n_local=5, weights=weights[0, 0])
    np.testing.assert_allclose(got1, true, atol=1e-10)


def test_parabolic_vertex_weights_matter_on_non_parabola():
    # On a Gaussian the fitted vertex depends on the weighting; weights must change the answer.
    t = np.arange(21.0)
    values = np.exp(-((t - 10.3) ** 2) / (2 * 1.5**2))
    plain = parabolic_vertex(values, 10, n_local=7)
    centre_heavy = parabolic_vertex(values, 10, n_local=7, window_weights=[1, 1, 1, 100, 1, 1, 1])
    assert abs(plain - centre_heavy) > 1e-3
    # Both within half a sample of the truth.
    assert abs(plain - 10.3) < 0.5 and abs(centre_heavy - 10.3) < 0.5


def test_parabolic_vertex_shifts_window_at_edges():
    t = np.arange(12.0)
    values = (t - 0.4) ** 2
    assert parabolic_vertex(values, 0, n_local=5) == pytest.approx(0.4, abs=1e-12)
    values = (t - 11.2) ** 2
    assert parabolic_vertex(values, 11, n_local=5) == pytest.approx(11.2, abs=1e-12)
    # magtrack's convention: NaN whenever the window touches an end.
    assert np.isnan(parabolic_vertex(values, 11, n_local=5, edge="nan"))
    assert np.isnan(parabolic_vertex(values, 2, n_local=5, edge="nan"))
    assert np.isfinite(parabolic_vertex(values, 3, n_local=5, edge="nan"))


def test_parabolic_vertex_degenerate_is_nan():
    values = np.stack([np.full(10, 3.0), np.arange(10.0) * 2.0 + 1.0, (np.arange(10.0) - 4.5) ** 2])
    got = parabolic_vertex(values, [5, 5, 5], n_local=5)
    assert np.isnan(got[0]) and np.isnan(got[1])
    assert got[2] == pytest.approx(4.5, abs=1e-12)
    # Only two samples with weight: underdetermined.
    w = np.zeros(10)
    w[4:6] = 1.0
    assert np.isnan(parabolic_vertex(values[2], 5, n_local=5, weights=w))
    # A NaN estimate gives a NaN result.
    assert np.isnan(parabolic_vertex(values[2], np.nan, n_local=5))


def test_parabolic_vertex_rounds_half_to_even():
    t = np.arange(20.0)
    values = np.exp(-((t - 10.9) ** 2) / 8.0)  # not a parabola: answer depends on the window
    a = parabolic_vertex(values, 10.5, n_local=3)  # rounds to 10
    b = parabolic_vertex(values, 10, n_local=3)
    c = parabolic_vertex(values, 11, n_local=3)
    assert a == b and a != c


def test_parabolic_vertex_validation():
    v = np.zeros((2, 10))
    with pytest.raises(ValueError, match="n_local"):
        parabolic_vertex(v, [1, 2], n_local=4)
    with pytest.raises(ShapeError, match="n_local"):
        parabolic_vertex(v, [1, 2], n_local=11)
    with pytest.raises(ValueError, match="index"):
        parabolic_vertex(v, [1, 10])
    with pytest.raises(ShapeError, match="index"):
        parabolic_vertex(v, [1, 2, 3])
    with pytest.raises(ShapeError, match="weights"):
        parabolic_vertex(v, [1, 2], weights=np.ones(9))
    with pytest.raises(ValueError, match="weights"):
        parabolic_vertex(v, [1, 2], weights=-np.ones(10))
    with pytest.raises(ValueError, match="edge"):
        parabolic_vertex(v, [1, 2], edge="wrap")


def test_parabolic_vertex_does_not_modify_inputs():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(4, 12))
    idx = np.array([3, 4, 5, 6])
    w = rng.uniform(size=12)
    v0, idx0, w0 = v.copy(), idx.copy(), w.copy()
    parabolic_vertex(v, idx, n_local=5, weights=w)
    assert np.array_equal(v, v0) and np.array_equal(idx, idx0) and np.array_equal(w, w0)


def test_argmax_parabolic_max_min_and_nan():
    rng = np.random.default_rng(4)
    t = np.arange(32.0)
    true = rng.uniform(3, 28, 6)
    up = -((t - true[:, None]) ** 2)
    np.testing.assert_allclose(argmax_parabolic(up, n_local=5), true, atol=1e-10)
    np.testing.assert_allclose(argmax_parabolic(-up, mode="min"), true, atol=1e-10)
    withnan = up.copy()
    withnan[0, 0] = np.nan
    withnan[1] = np.nan
    got = argmax_parabolic(withnan)
    assert got[0] == pytest.approx(true[0], abs=1e-10)
    assert np.isnan(got[1])
    with pytest.raises(ValueError, match="mode"):
        argmax_parabolic(up, mode="peak")


@needs_golden
@pytest.mark.parametrize(
    ("name", "n_local", "weighted"),
    [("parabolic_vertex.npz", 5, True), ("parabolic_vertex_unweighted.npz", 7, False)],
)
def test_parabolic_vertex_matches_magtrack_golden(name, n_local, weighted):
    d = np.load(GOLDEN / name, allow_pickle=False)
    h = n_local // 2
    ww = (h + 1 - np.abs(np.arange(-h, h + 1))) ** 2.0 if weighted else None
    got = parabolic_vertex(
        d["in_data"], d["in_vertex_est"], n_local=n_local, window_weights=ww, edge="nan"
    )
    ref = d["out_vertex"]
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12, equal_nan=True)


# --------------------------------------------------------------------------- quadratic_peak_2d


def _quadratic_images(rng, n, shape, sign):
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(float)
    centre = np.stack([rng.uniform(2, shape[0] - 3, n), rng.uniform(2, shape[1] - 3, n)], axis=1)
    a = rng.uniform(0.5, 2.0, n)
    c = rng.uniform(0.5, 2.0, n)
    b = rng.uniform(-0.8, 0.8, n) * np.sqrt(a * c)  # keeps the form definite
    dy = rows[None] - centre[:, 0, None, None]
    dx = cols[None] - centre[:, 1, None, None]
    q = a[:, None, None] * dy**2 + b[:, None, None] * dy * dx + c[:, None, None] * dx**2
    return sign * q + 7.0, centre


def test_quadratic_peak_2d_exact_on_sampled_quadratics():
    rng = np.random.default_rng(5)
    images, centre = _quadratic_images(rng, 50, (12, 15), sign=-1.0)
    pos, valid = quadratic_peak_2d(images)
    assert pos.shape == (50, 2) and valid.shape == (50,)
    assert valid.all()
    np.testing.assert_allclose(pos, centre, atol=1e-9)
    # minimum, with explicit index and extra leading axes
    images, centre = _quadratic_images(rng, 12, (9, 9), sign=+1.0)
    index = np.rint(centre).astype(int)
    pos, valid = quadratic_peak_2d(images.reshape(3, 4, 9, 9), index.reshape(3, 4, 2), mode="min")
    assert valid.all()
    np.testing.assert_allclose(pos.reshape(12, 2), centre, atol=1e-9)
    off, _ = quadratic_peak_2d(images, index, mode="min", relative=True)
    np.testing.assert_allclose(off, centre - index, atol=1e-9)


def test_quadratic_peak_2d_flags_saddle_and_wrong_mode():
    rows, cols = np.mgrid[:9, :9].astype(float)
    saddle = (rows - 4.2) ** 2 - (cols - 3.7) ** 2
    pos, valid = quadratic_peak_2d(saddle, np.array([4, 4]))
    assert not valid
    np.testing.assert_array_equal(pos, [4.0, 4.0])  # falls back to the integer index
    bowl = (rows - 4.2) ** 2 + (cols - 3.7) ** 2
    _, valid_max = quadratic_peak_2d(bowl, np.array([4, 4]), mode="max")
    pos_min, valid_min = quadratic_peak_2d(bowl, np.array([4, 4]), mode="min")
    assert not valid_max and valid_min
    np.testing.assert_allclose(pos_min, [4.2, 3.7], atol=1e-12)


def test_quadratic_peak_2d_far_stationary_point_invalid():
    rows, cols = np.mgrid[:9, :9].astype(float)
    img = -((rows - 4.0) ** 2) - (cols - 4.0) ** 2
    _, valid = quadratic_peak_2d(img, np.array([4, 6]))  # true peak 2 px away
    assert not valid
    flat = np.zeros((7, 7))
    pos, valid = quadratic_peak_2d(flat, np.array([3, 3]))
    assert not valid and np.array_equal(pos, [3.0, 3.0])


def test_quadratic_peak_2d_at_border_shifts_window():
    rows, cols = np.mgrid[:8, :8].astype(float)
    img = -1.5 * (rows - 0.3) ** 2 - (cols - 7.2) ** 2
    pos, valid = quadratic_peak_2d(img)
    assert valid
    np.testing.assert_allclose(pos, [0.3, 7.2], atol=1e-12)


def test_quadratic_peak_2d_validation():
    with pytest.raises(ShapeError, match="images"):
        quadratic_peak_2d(np.zeros((2, 8)))
    with pytest.raises(ShapeError, match="index"):
        quadratic_peak_2d(np.zeros((2, 8, 8)), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="index"):
        quadratic_peak_2d(np.zeros((8, 8)), np.array([8, 0]))
    with pytest.raises(ValueError, match="mode"):
        quadratic_peak_2d(np.zeros((8, 8)), mode="both")


# ---------------------------------------------------------------------------------------- GPU


@gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="no CUDA device")
def test_peaks_cupy_matches_numpy():
    import cupy as cp

    rng = np.random.default_rng(6)
    values = rng.normal(size=(20, 30)).cumsum(axis=1)
    index = rng.integers(0, 30, 20)
    w = rng.uniform(size=30)
    ref = parabolic_vertex(values, index, n_local=5, weights=w)
    got = parabolic_vertex(cp.asarray(values), cp.asarray(index), n_local=5, weights=cp.asarray(w))
    assert isinstance(got, cp.ndarray)
    np.testing.assert_allclose(got.get(), ref, rtol=1e-12, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(
        argmax_parabolic(cp.asarray(values)).get(), argmax_parabolic(values), rtol=1e-12
    )
    images, _ = _quadratic_images(rng, 10, (11, 13), sign=-1.0)
    images = images + rng.normal(scale=0.05, size=images.shape)
    p_ref, v_ref = quadratic_peak_2d(images)
    p_gpu, v_gpu = quadratic_peak_2d(cp.asarray(images))
    assert isinstance(p_gpu, cp.ndarray)
    np.testing.assert_allclose(p_gpu.get(), p_ref, rtol=1e-12)
    np.testing.assert_array_equal(v_gpu.get(), v_ref)
