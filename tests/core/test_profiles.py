"""Tests for stacklab.core.profiles: analytic annulus means, batch = loop, magtrack golden data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stacklab import backend
from stacklab.core.profiles import bin_mean, radial_profile
from stacklab.errors import ShapeError

_GOLDEN_CANDIDATES = [
    Path(__file__).resolve().parents[1] / "golden" / "magtrack",
    Path("/work/shared/golden/magtrack"),
]
GOLDEN = next((p for p in _GOLDEN_CANDIDATES if p.is_dir()), None)
needs_golden = pytest.mark.skipif(GOLDEN is None, reason="magtrack golden data not found")
gpu = pytest.mark.gpu

SIGMA = 8.0
CENTRE = np.array([31.3, 32.7])


def _gaussian_image(shape=(64, 64), centre=CENTRE, sigma=SIGMA):
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(float)
    return np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma**2))


def _gaussian_annulus_mean(a, b, sigma=SIGMA):
    """Exact mean of exp(-r^2 / 2 s^2) over the annulus a <= r < b."""
    num = sigma**2 * (np.exp(-(a**2) / (2 * sigma**2)) - np.exp(-(b**2) / (2 * sigma**2)))
    return num / ((b**2 - a**2) / 2)


# ------------------------------------------------------------------------------ radial_profile


def test_radial_profile_gaussian_matches_annulus_mean_and_oversample_helps():
    img = _gaussian_image()
    j = np.arange(24.0)
    truth = _gaussian_annulus_mean(j, j + 1)  # peak value 1
    err = {
        k: np.abs(radial_profile(img, CENTRE, n_bins=24, oversample=k) - truth).max()
        for k in (1, 4)
    }
    print(f"max |profile - annulus mean| (peak 1): oversample 1 {err[1]:.2e}, 4 {err[4]:.2e}")
    assert err[1] < 1e-2
    assert err[4] < 2e-3
    assert err[4] < 0.5 * err[1]


def test_radial_profile_r_squared_annulus_mean():
    rows, cols = np.mgrid[:64, :64].astype(float)
    img = (rows - CENTRE[0]) ** 2 + (cols - CENTRE[1]) ** 2
    prof = radial_profile(img, CENTRE, n_bins=28)
    j = np.arange(28.0)
    truth = j**2 + j + 0.5  # mean of r^2 over j <= r < j + 1
    rel = np.abs(prof - truth) / truth
    print(f"r^2 profile, relative error for radii 8..27 px: max {rel[8:].max():.2e}")
    assert rel[8:].max() < 6e-3
    assert rel.max() < 0.2  # small annuli hold few pixels


def test_radial_profile_nearest_rounding_and_bin_width():
    rows, cols = np.mgrid[:40, :40].astype(float)
    centre = np.array([20.0, 20.0])
    r = np.hypot(rows - centre[0], cols - centre[1])
    # rounding="nearest", bin_width 0.5: bin j holds rint(2 r) == j
    prof = radial_profile(r, centre, n_bins=30, bin_width=0.5, rounding="nearest")
    for jj in (0, 2, 7, 13, 29):
        sel = np.rint(2 * r) == jj
        assert prof[jj] == pytest.approx(r[sel].mean(), rel=1e-14)
    assert np.isnan(prof[1])  # no pixel centre with 0.25 <= r < 0.75 around an integer centre


def test_radial_profile_constant_image_and_empty_bins():
    img = np.full((3, 20, 24), 4.25)
    centres = np.array([[9.5, 11.2], [10.0, 12.0], [8.3, 14.9]])
    prof = radial_profile(img, centres, n_bins=20)
    assert prof.shape == (3, 20)
    finite = np.isfinite(prof)
    assert finite[:, :10].all()
    np.testing.assert_array_equal(prof[finite], 4.25)
    assert not finite[:, -1].any()  # beyond the frame corners: no samples, NaN


def test_radial_profile_batch_equals_per_frame_loop_and_blocks():
    rng = np.random.default_rng(0)
    stack = rng.normal(size=(7, 18, 21))
    centres = rng.uniform(6, 12, (7, 2))
    batch = radial_profile(stack, centres, oversample=2)
    loop = np.stack([radial_profile(s, c, oversample=2) for s, c in zip(stack, centres)])
    np.testing.assert_allclose(batch, loop, rtol=1e-13, equal_nan=True)
    blocked = radial_profile(stack, centres, oversample=2, block_elements=3000)
    np.testing.assert_allclose(blocked, batch, rtol=1e-13, equal_nan=True)
    shared = radial_profile(stack, centres[0])
    loop_shared = np.stack([radial_profile(s, centres[0]) for s in stack])
    np.testing.assert_allclose(shared, loop_shared, rtol=1e-13, equal_nan=True)


def test_radial_profile_mask_excludes_pixels():
    img = np.full((2, 16, 16), 5.0)
    img[:, 3, 4] = 1000.0
    img[1, 10, 10] = -50.0
    mask = np.zeros((2, 16, 16), bool)
    mask[:, 3, 4] = True
    mask[1, 10, 10] = True
    prof, counts = radial_profile(img, [8.2, 7.9], mask=mask, return_counts=True)
    np.testing.assert_array_equal(prof, 5.0)
    _, counts_all = radial_profile(img, [8.2, 7.9], return_counts=True)
    assert counts_all.sum(axis=1).tolist() == [
        counts[0].sum() + 1,
        counts[1].sum() + 2,
    ]
    prof2 = radial_profile(img, [8.2, 7.9], mask=mask[0], oversample=3)
    assert np.all(prof2[0] == 5.0)


def test_radial_profile_dtypes_and_inputs_untouched():
    rng = np.random.default_rng(1)
    img32 = rng.uniform(size=(2, 16, 16)).astype(np.float32)
    before = img32.copy()
    out = radial_profile(img32, [7.5, 7.5])
    assert out.dtype == np.float32
    assert np.array_equal(img32, before)
    ref = radial_profile(img32.astype(np.float64), [7.5, 7.5])
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    u16 = np.full((16, 16), 65535, dtype=np.uint16)
    out16 = radial_profile(u16, [8, 8])
    assert out16.dtype == np.float64 and np.all(out16 == 65535.0)


def test_radial_profile_validation():
    img = np.zeros((2, 8, 8))
    with pytest.raises(ShapeError, match="center"):
        radial_profile(img, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="center"):
        radial_profile(img, [np.nan, 1.0])
    with pytest.raises(ShapeError, match="images"):
        radial_profile(np.zeros(8), [1.0, 1.0])
    with pytest.raises(ValueError, match="bin_width"):
        radial_profile(img, [4, 4], bin_width=0)
    with pytest.raises(ValueError, match="oversample"):
        radial_profile(img, [4, 4], oversample=0)
    with pytest.raises(ShapeError, match="mask"):
        radial_profile(img, [4, 4], mask=np.zeros((7, 8), bool))
    with pytest.raises(TypeError, match="mask"):
        radial_profile(img, [4, 4], mask=np.zeros((8, 8)))
    with pytest.raises(ValueError, match="rounding"):
        radial_profile(img, [4, 4], rounding="ceil")


@needs_golden
@pytest.mark.parametrize(
    ("name", "oversample", "rtol"),
    [
        ("radial_profile_os1.npz", 1, 1e-12),
        ("radial_profile_os3.npz", 3, 1e-12),
        ("radial_profile_float32.npz", 1, 1e-5),
    ],
)
def test_radial_profile_matches_magtrack_golden(name, oversample, rtol):
    d = np.load(GOLDEN / name, allow_pickle=False)
    stack = np.moveaxis(d["in_stack"], -1, 0)  # magtrack is frames-last, x = column
    centre = np.stack([d["in_y"], d["in_x"]], axis=1)
    width = stack.shape[-1]
    got = radial_profile(
        stack,
        centre,
        n_bins=(width // 2) * oversample,
        bin_width=1.0 / oversample,
        rounding="nearest",
    )
    ref = d["out_profiles"].T
    assert got.dtype == ref.dtype
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=0, equal_nan=True)


# ------------------------------------------------------------------------------------ bin_mean


def test_bin_mean_known_answer_integer_positions():
    values = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]])
    positions = np.array([[0, 0, 2, 2, 7, -1], [1, 1, 1, 3, 3, 4]])
    got, counts = bin_mean(values, positions, 4, return_counts=True)
    expected = np.array([[1.5, np.nan, 3.5, np.nan], [np.nan, 20.0, np.nan, 45.0]])
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(counts, [[2, 0, 2, 0], [0, 3, 0, 2]])


def test_bin_mean_float_positions_and_edges():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    pos = np.array([0.2, 0.99, 1.0, np.nan, 2.5])
    np.testing.assert_array_equal(bin_mean(values, pos, 2), [1.5, 3.0])
    edges = np.array([0.0, 1.0, 2.5])
    np.testing.assert_array_equal(bin_mean(values, pos, edges), [1.5, 4.0])  # 2.5 in last bin
    np.testing.assert_array_equal(bin_mean(values, pos, [0.5, 1.0]), [2.5])
    # shared positions broadcast over a batch; float32 stays float32
    v32 = np.stack([values, 2 * values]).astype(np.float32)
    out = bin_mean(v32, pos, 2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1.5, 3.0], [3.0, 6.0]])


def test_bin_mean_matches_bincount_on_random_data_and_leaves_inputs():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(3, 5, 50))
    positions = rng.integers(-2, 12, size=(3, 5, 50))
    v0, p0 = values.copy(), positions.copy()
    got = bin_mean(values, positions, 10)
    assert got.shape == (3, 5, 10)
    for i in range(3):
        for j in range(5):
            keep = (positions[i, j] >= 0) & (positions[i, j] < 10)
            s = np.bincount(positions[i, j][keep], values[i, j][keep], minlength=10)
            c = np.bincount(positions[i, j][keep], minlength=10)
            with np.errstate(invalid="ignore", divide="ignore"):
                np.testing.assert_allclose(got[i, j], s / c, rtol=1e-13, equal_nan=True)
    assert np.array_equal(values, v0) and np.array_equal(positions, p0)


def test_bin_mean_validation():
    with pytest.raises(ValueError, match="bins"):
        bin_mean(np.ones(3), np.zeros(3, int), 0)
    with pytest.raises(ValueError, match="bins"):
        bin_mean(np.ones(3), np.zeros(3), [1.0, 0.5])
    with pytest.raises(ShapeError, match="positions"):
        bin_mean(np.ones((2, 3)), np.zeros(4, int), 3)


@needs_golden
def test_bin_mean_matches_magtrack_binmean_golden():
    d = np.load(GOLDEN / "binmean.npz", allow_pickle=False)
    x, weights = d["in_x"], d["in_weights"]
    x0 = x.copy()
    got = bin_mean(weights.T, x.T, int(d["n_bins"])).T
    ref = d["out_bin_means"]
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-12, equal_nan=True)
    assert np.array_equal(x, x0)  # magtrack clips x in place; we must not


# ---------------------------------------------------------------------------------------- GPU


@gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="no CUDA device")
def test_profiles_cupy_matches_numpy():
    import cupy as cp

    rng = np.random.default_rng(3)
    stack = rng.normal(size=(9, 20, 22)).astype(np.float32)
    centres = rng.uniform(8, 12, (9, 2))
    mask = rng.uniform(size=(20, 22)) < 0.05
    for kw in ({}, {"oversample": 3}, {"mask": mask, "rounding": "nearest", "bin_width": 0.5}):
        ref = radial_profile(stack, centres, **kw)
        kw_gpu = {k: (cp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        got = radial_profile(cp.asarray(stack), cp.asarray(centres), **kw_gpu)
        assert isinstance(got, cp.ndarray) and got.dtype == np.float32
        np.testing.assert_allclose(got.get(), ref, rtol=1e-6, equal_nan=True)
    values = rng.normal(size=(4, 100))
    pos = rng.integers(-1, 12, size=(4, 100))
    np.testing.assert_allclose(
        bin_mean(cp.asarray(values), cp.asarray(pos), 10).get(),
        bin_mean(values, pos, 10),
        rtol=1e-12,
        equal_nan=True,
    )
