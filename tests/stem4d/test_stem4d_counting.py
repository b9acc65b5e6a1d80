"""Electron counting: recall/precision on planted electrons, thresholds, sparse events, files."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from stacklab.errors import FileFormatError, ShapeError
from stacklab.stem4d import (
    CountingThresholds,
    DataCube,
    ElectronEvents,
    count_block,
    count_electrons,
    estimate_thresholds,
    robust_noise,
)
from stacklab.stem4d.simulate import match_events, simulate_counting

CASES = {
    "clean_square": dict(scan_shape=(6, 6), det_shape=(48, 48)),
    "xrays_hot_square": dict(
        scan_shape=(6, 6), det_shape=(48, 48), xrays_per_frame=1.0, n_hot=4, n_hot_pairs=2
    ),
    "clean_nonsquare_5x7": dict(scan_shape=(5, 7), det_shape=(33, 47)),
    "xrays_hot_cold_nonsquare_5x7": dict(
        scan_shape=(5, 7),
        det_shape=(33, 47),
        xrays_per_frame=1.0,
        n_hot=3,
        n_hot_pairs=2,
        n_cold=2,
    ),
    "fixed_deposits_dense": dict(
        scan_shape=(4, 9),
        det_shape=(64, 64),
        deposit="fixed",
        electrons_per_frame=60,
        xrays_per_frame=0.5,
        n_hot=2,
        n_hot_pairs=1,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_recall_precision_on_planted_electrons(name):
    cube, truth = simulate_counting(seed=3, **CASES[name])
    events = count_electrons(cube, truth.dark, subpixel=True)
    score = match_events(events, truth.electrons)
    print(
        f"{name}: recall {score.recall:.4f} precision {score.precision:.4f} "
        f"({score.n_matched}/{score.n_true} planted, {score.n_detected} found, "
        f"sub-pixel RMS {score.rms_error:.3f} px)"
    )
    assert score.n_true > 300
    assert score.recall >= 0.99
    assert score.precision >= 0.99
    assert score.rms_error < 0.25
    assert events.scan_shape == cube.shape[:2]


def test_xrays_are_rejected_and_hot_pixels_masked(counting_cube):
    cube, truth = counting_cube
    events = count_electrons(cube, truth.dark)
    th = events.metadata["thresholds"]
    assert th["n_hot_pixels"] == truth.hot_mask.sum()
    assert not truth.hot_mask[events.rows, events.cols].any()
    xr = match_events(events, truth.xrays, tolerance=1.5)
    assert truth.xrays.n_events > 5
    assert xr.n_matched == 0  # no x-ray counted as an electron
    # without rejection and masking the x-rays and hot pixels come back as events
    loose = count_electrons(cube, truth.dark, xray=None, hot_pixels=False)
    assert match_events(loose, truth.xrays, tolerance=1.5).recall > 0.9
    assert match_events(loose, truth.electrons).precision < 0.9


def test_threshold_noise_from_histogram_core(counting_cube):
    cube, truth = counting_cube
    th = estimate_thresholds(cube, truth.dark, n_sigma=5)
    assert th.noise_sigma == pytest.approx(truth.read_noise, rel=0.05)
    assert abs(th.noise_mean) < 0.2
    assert th.background == pytest.approx(th.noise_mean + 5 * th.noise_sigma)
    # x-rays, electrons and hot pixels do not inflate the noise (a plain std would)
    sample = cube.reshape(-1, *cube.shape[2:]).astype(float) - truth.dark
    assert np.std(sample) > 3 * truth.read_noise
    assert th.electron_peak > 5 * th.noise_sigma
    assert math.isfinite(th.xray) and th.xray > 3 * th.electron_peak


def test_robust_noise_known_gaussian(rng):
    v = rng.normal(10.0, 2.0, 200_000)
    v[:5000] += rng.uniform(50, 5000, 5000)  # 2.5 % outliers
    mu, sigma = robust_noise(v)
    assert mu == pytest.approx(10.0, abs=0.03)
    assert sigma == pytest.approx(2.0, rel=0.02)
    with pytest.raises(ValueError, match="zero spread"):
        robust_noise(np.ones(100))
    with pytest.raises(ValueError, match="no finite"):
        robust_noise(np.full(10, np.nan))


def test_numba_and_array_kernels_agree(counting_cube):
    cube, truth = counting_cube
    frames = cube.reshape(-1, *cube.shape[2:])
    th = estimate_thresholds(cube, truth.dark)
    a = count_block(
        frames,
        truth.dark,
        background=th.background,
        xray=th.xray,
        mask=th.hot_mask,
        subpixel=True,
        method="numba",
    )
    b = count_block(
        frames,
        truth.dark,
        background=th.background,
        xray=th.xray,
        mask=th.hot_mask,
        subpixel=True,
        method="array",
    )
    for key in ("frame", "row", "col"):
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_allclose(a["subpixel"], b["subpixel"], atol=1e-5)


def test_tie_breaking_is_deterministic():
    frame = np.zeros((1, 7, 8), np.uint16)
    frame[0, 2, 3] = frame[0, 2, 4] = 50  # horizontal plateau: first in raster order wins
    frame[0, 4:6, 5:7] = 40  # 2x2 plateau: top-left wins
    frame[0, 5, 1] = frame[0, 4, 2] = 30  # diagonal pair (up-right neighbour comes first)
    out = count_block(frame, background=10.0, method="array")
    found = sorted(zip(out["row"].tolist(), out["col"].tolist()))
    assert found == [(2, 3), (4, 2), (4, 5)]
    out2 = count_block(frame, background=10.0, method="numba")
    assert sorted(zip(out2["row"].tolist(), out2["col"].tolist())) == found


def test_float_and_integer_dark_give_the_same_events(counting_cube):
    cube, truth = counting_cube
    th = estimate_thresholds(cube, truth.dark)
    dark_int = np.rint(truth.dark).astype(np.uint16)
    a = count_electrons(cube, dark_int, thresholds=th)
    b = count_electrons(cube, np.rint(truth.dark), thresholds=th)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.rows, b.rows)


def test_uint16_near_65535_does_not_wrap():
    cube, truth = simulate_counting((3, 4), (32, 32), seed=4, dark_level=65000.0, dark_spread=3.0)
    assert cube.max() < 65535 and cube.min() > 64000
    events = count_electrons(cube, truth.dark)
    score = match_events(events, truth.electrons)
    assert score.recall >= 0.99 and score.precision >= 0.99


def test_dense_sparse_round_trip(counting_cube):
    cube, truth = counting_cube
    events = count_electrons(cube, truth.dark, subpixel=True)
    dense = events.to_dense()
    assert dense.shape == cube.shape and dense.dtype == np.uint16
    assert int(dense.sum()) == events.n_events
    np.testing.assert_array_equal(dense.sum(axis=(2, 3)), events.counts_per_frame())
    back = ElectronEvents.from_dense(dense)
    np.testing.assert_array_equal(back.offsets, events.offsets)
    np.testing.assert_array_equal(back.rows, events.rows)
    np.testing.assert_array_equal(back.cols, events.cols)
    # counts > 1 become repeated events; booleans are accepted
    twice = ElectronEvents.from_dense(dense.astype(np.int32) * 2)
    assert twice.n_events == 2 * events.n_events
    np.testing.assert_array_equal(twice.to_dense(np.int32), dense.astype(np.int32) * 2)
    assert ElectronEvents.from_dense(dense > 0).n_events == events.n_events
    with pytest.raises(ValueError, match="negative"):
        ElectronEvents.from_dense(-dense.astype(np.int16))
    np.testing.assert_array_equal(events.sum_pattern(), dense.sum(axis=(0, 1)))
    f = events.frame((2, 3))
    k = 2 * cube.shape[1] + 3
    assert f["row"].size == events.offsets[k + 1] - events.offsets[k]


def test_binned_counting_matches_binned_events(counting_cube):
    cube, truth = counting_cube
    th = estimate_thresholds(cube, truth.dark)
    full = count_electrons(cube, truth.dark, thresholds=th, subpixel=True)
    b2 = count_electrons(cube, truth.dark, thresholds=th, subpixel=True, binning=2)
    ref = full.binned(2)
    assert b2.det_shape == (cube.shape[2] // 2, cube.shape[3] // 2)
    np.testing.assert_array_equal(b2.rows, ref.rows)
    np.testing.assert_allclose(b2.subpixel, ref.subpixel, atol=1e-5)
    dense = b2.to_dense()
    assert dense.max() >= 1 and int(dense.sum()) == b2.n_events
    with pytest.raises(ValueError, match="cannot hold"):
        ElectronEvents.from_dense(np.full((1, 1, 2, 2), 300, np.uint16)).to_dense(np.uint8)


def test_hdf5_save_load_atomic(tmp_path, counting_cube):
    cube, truth = counting_cube
    events = count_electrons(cube, truth.dark, subpixel=True)
    path = events.save(tmp_path / "events.h5")
    back = ElectronEvents.load(path)
    for name in ("offsets", "rows", "cols", "subpixel"):
        np.testing.assert_array_equal(getattr(back, name), getattr(events, name))
    assert back.scan_shape == events.scan_shape and back.det_shape == events.det_shape
    assert (
        back.metadata["thresholds"]["n_hot_pixels"] == events.metadata["thresholds"]["n_hot_pixels"]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["events.h5"]  # no temporary left behind
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(FileFormatError, match="no electron event list"):
        ElectronEvents.load(tmp_path / "other.h5")
    with pytest.raises(FileFormatError, match="not found"):
        ElectronEvents.load(tmp_path / "missing.h5")


def test_datacube_and_stack_inputs(counting_cube):
    cube, truth = counting_cube
    th = estimate_thresholds(cube, truth.dark)
    a = count_electrons(DataCube(cube), truth.dark, thresholds=th)
    b = count_electrons(cube.reshape(-1, *cube.shape[2:]), truth.dark, thresholds=th)
    assert b.scan_shape == (cube.shape[0] * cube.shape[1],)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.offsets, b.offsets)


def test_bad_inputs_name_the_argument(counting_cube):
    cube, truth = counting_cube
    with pytest.raises(ShapeError, match="dark"):
        count_electrons(cube, truth.dark[:-1])
    with pytest.raises(ShapeError, match="mask"):
        count_electrons(cube, truth.dark, mask=np.zeros((3, 3), bool))
    with pytest.raises(TypeError, match="mask"):
        count_electrons(cube, truth.dark, mask=np.zeros(cube.shape[2:], np.uint8))
    with pytest.raises(ValueError, match="binning"):
        count_electrons(cube, truth.dark, binning=0)
    with pytest.raises(ValueError, match="n_sigma"):
        count_electrons(cube, truth.dark, n_sigma=-1)
    with pytest.raises(ValueError, match="dark"):
        count_electrons(cube, np.full(cube.shape[2:], np.nan))
    with pytest.raises(ShapeError, match="cube"):
        count_electrons(np.zeros((5, 5)), None)
    with pytest.raises(ValueError, match="xray"):
        CountingThresholds(background=10.0, xray=5.0)
    with pytest.raises(ShapeError, match="offsets"):
        ElectronEvents(np.zeros(3, np.int64), [], [], (4,), (8, 8))
    with pytest.raises(ValueError, match="det_shape"):
        ElectronEvents(np.array([0, 1]), [9], [0], (1,), (8, 8))


def test_float_cube_counts_like_the_integer_cube(counting_cube):
    cube, truth = counting_cube
    th = estimate_thresholds(cube, truth.dark)
    a = count_electrons(cube, truth.dark, thresholds=th)
    for dtype in (np.float32, np.float64, np.int32):
        b = count_electrons(cube.astype(dtype), truth.dark, thresholds=th)
        np.testing.assert_array_equal(a.offsets, b.offsets)
        np.testing.assert_array_equal(a.rows, b.rows)
