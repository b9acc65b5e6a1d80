"""Hot/cold pixel detection (adjacent pairs included) and median repair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stacklab.errors import ShapeError
from stacklab.stem4d import filter_hot_pixels, find_hot_pixels, local_median, repair_pixels
from stacklab.stem4d.simulate import simulate_diffraction

GOLDEN = Path("/work/shared/golden/py4dstem")
if not GOLDEN.exists():
    GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "py4dstem"


def test_local_median_excludes_the_pixel():
    img = np.arange(25, dtype=float).reshape(5, 5)
    med = local_median(img)
    # interior pixel: median of its 8 neighbours, not of the 3x3 window
    nb = np.delete(img[1:4, 1:4].ravel(), 4)
    assert med[2, 2] == np.median(nb)
    assert med[0, 0] == np.median([1, 5, 6])
    ring2 = local_median(img, exclude_neighbours=True)
    assert ring2[2, 2] == np.median(np.concatenate([img[0], img[4], img[1:4, 0], img[1:4, 4]]))
    with pytest.raises(ShapeError, match="image"):
        local_median(np.zeros((2, 3, 4)))


def test_detects_isolated_and_adjacent_hot_pixels(diffraction_cube):
    cube, truth = diffraction_cube
    mask = find_hot_pixels(cube)
    assert truth.hot_pair_mask.sum() == 4
    np.testing.assert_array_equal(mask, truth.hot_mask)  # pairs found, no false positives


def test_cold_pixels_optional(diffraction_cube):
    cube, truth = diffraction_cube
    assert not (find_hot_pixels(cube) & truth.cold_mask).any()
    both = find_hot_pixels(cube, cold=True)
    np.testing.assert_array_equal(both, truth.hot_mask | truth.cold_mask)


def test_two_by_two_cluster_needs_second_ring():
    rng = np.random.default_rng(1)
    img = rng.normal(100, 1, (32, 32))
    img[10:12, 20:22] += 500  # 2x2 cluster: each pixel has 3 hot neighbours of 8
    img[5:8, 5:8] += 500  # 3x3 cluster: only the second ring sees it
    m1 = find_hot_pixels(img)
    assert m1[10:12, 20:22].all()
    assert not m1[5:8, 5:8].all()
    m2 = find_hot_pixels(img, exclude_neighbours=True)
    assert m2[5:8, 5:8].all() and m2[10:12, 20:22].all()
    assert m2.sum() == 13


def test_repair_restores_the_truth(diffraction_cube):
    cube, truth = diffraction_cube
    repaired, mask = filter_hot_pixels(cube, cold=True)
    assert repaired.dtype == cube.dtype and repaired.shape == cube.shape
    np.testing.assert_array_equal(repaired[..., ~mask], cube[..., ~mask])  # others untouched
    bad = truth.hot_mask | truth.cold_mask
    err = repaired[..., bad].astype(float) - truth.clean[..., bad]
    noise = np.sqrt(truth.clean[..., bad])
    before = np.abs(cube[..., bad].astype(float) - truth.clean[..., bad]) / noise
    after = np.abs(err) / noise
    print(
        f"repaired bad pixels: median |error| {np.median(after):.2f} sigma (before "
        f"{np.median(before):.1f} sigma)"
    )
    assert np.median(after) < 1.5 and np.median(before) > 20
    assert np.max(after) < 8


def test_repair_each_frame_from_unmasked_neighbours():
    cube = np.arange(2 * 5 * 5, dtype=np.uint16).reshape(2, 5, 5)
    mask = np.zeros((5, 5), bool)
    mask[2, 2] = mask[2, 3] = True  # adjacent pair
    out = repair_pixels(cube, mask)
    for k in range(2):
        win = cube[k, 1:4, 1:4].astype(float)
        good = win[~mask[1:4, 1:4]]
        assert out[k, 2, 2] == np.rint(np.median(good))
    assert out.dtype == np.uint16
    with pytest.raises(ShapeError, match="mask"):
        repair_pixels(cube, np.zeros((4, 4), bool))
    with pytest.raises(TypeError, match="mask"):
        repair_pixels(cube, np.zeros((5, 5), np.uint8))


@pytest.mark.parametrize("case", ["u16_ind1", "f32_ind1"])
def test_golden_hot_pixel_mask_is_the_truth(case):
    z = np.load(GOLDEN / f"filter_hot_pixels__{case}.npz")
    mine = find_hot_pixels(z["in_data"], threshold=float(z["in_thresh"]))
    # py4DSTEM misses the adjacent pair at ind_compare=1; the planted truth has it
    assert z["out_mask"].sum() == 4 and z["truth_mask"].sum() == 6
    np.testing.assert_array_equal(mine, z["truth_mask"])
    np.testing.assert_array_equal(find_hot_pixels(z["in_data"]), z["truth_mask"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_sigma"):
        find_hot_pixels(np.ones((8, 8)), n_sigma=0)
    with pytest.raises(ValueError, match="threshold"):
        find_hot_pixels(np.ones((8, 8)), threshold=-1)
    with pytest.raises(ShapeError, match="data"):
        find_hot_pixels(np.ones(8))
    with pytest.raises(ValueError, match="statistic"):
        find_hot_pixels(np.ones((2, 8, 8)), statistic="median")


def test_cold_pixels_on_a_flat_field():
    # flat field (no disk): every dead pixel stands out; on steep disk edges a bad pixel is
    # judged against the local spread of its neighbours and must stand out more
    cube, truth = simulate_diffraction(
        (3, 4),
        (24, 20),
        n_cold=3,
        n_hot=2,
        disk_counts=0.0,
        bragg_spacing=None,
        background=30.0,
        seed=9,
    )
    np.testing.assert_array_equal(
        find_hot_pixels(cube, cold=True), truth.cold_mask | truth.hot_mask
    )


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32, np.float64])
def test_numba_repair_matches_core_fill_masked(dtype):
    from stacklab.core.masks import fill_masked
    from stacklab.stem4d.hotpix import _repair_kernel

    rng = np.random.default_rng(3)
    block = rng.normal(100, 30, (40, 20, 23)).astype(dtype)
    mask = rng.random((20, 23)) < 0.1
    mask[0, 0] = mask[0, 1] = mask[19, 22] = True  # corner, edge and an adjacent pair
    fast = _repair_kernel(block, mask=mask, method="median", size=3)
    ref = fill_masked(block, mask, method="median", size=3)
    assert fast.dtype == ref.dtype
    if np.dtype(dtype).kind == "f":  # may differ in the last bit (fused multiply-add)
        np.testing.assert_allclose(fast, ref, rtol=1e-6)
    else:
        np.testing.assert_array_equal(fast, ref)
    np.testing.assert_array_equal(fast[:, ~mask], block[:, ~mask])


def test_numba_and_array_detection_agree():
    from stacklab.stem4d import hotpix

    rng = np.random.default_rng(4)
    img = rng.normal(100, 3, (30, 41))
    img[3, 4] = np.nan
    offs = np.array(hotpix._offsets(True))
    med, mad = hotpix._numba().local_stats(img, offs[:, 0], offs[:, 1], True)
    nb = hotpix._neighbour_stack(img, True)
    m2 = hotpix._nanmedian0(nb)
    np.testing.assert_array_equal(med, m2)
    np.testing.assert_array_equal(mad, hotpix._nanmedian0(np.abs(nb - m2[None])))


def test_detection_from_a_frame_sample(diffraction_cube):
    cube, truth = diffraction_cube
    sample = find_hot_pixels(cube, n_frames=12, cold=True)
    np.testing.assert_array_equal(sample, truth.hot_mask | truth.cold_mask)
    repaired, mask = filter_hot_pixels(cube, n_frames=12)
    np.testing.assert_array_equal(mask, truth.hot_mask)
    np.testing.assert_array_equal(repaired, repair_pixels(cube, truth.hot_mask))
    with pytest.raises(ValueError, match="n_frames"):
        find_hot_pixels(cube, n_frames=0)
    import dask.array as da

    lazy = da.from_array(cube, chunks=(2, 3, 48, 40))
    np.testing.assert_array_equal(find_hot_pixels(lazy, n_frames=12, cold=True), sample)
