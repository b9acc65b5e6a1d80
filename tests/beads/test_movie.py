"""Whole-movie tracking: ROIs, automatic bead finding, lazy/Dask movies, table files."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from stacklab.beads import simulate_movie
from stacklab.beads.movie import (
    TABLE_COLUMNS,
    find_beads,
    load_rois,
    load_table,
    rois_to_boxes,
    save_table,
    track_movie,
)
from stacklab.errors import FileFormatError, ShapeError

from .conftest import rms


@pytest.fixture(scope="module")
def movie():
    """30 frames of 128 x 256 px with 3 beads (1 px jitter, z within +-1.5 um), noise-free."""
    return simulate_movie(30, shape=(128, 256), n_beads=3, z_range=(-1500.0, 1500.0), seed=5)


def _match(table, truth):
    """Bead id of the table -> bead id of the truth (nearest in frame 0)."""
    f0 = truth[truth.frame == 0]
    ids = {}
    for b, row in table[table.frame == 0].set_index("bead").iterrows():
        j = int(np.argmin(np.hypot(f0.x - row.x, f0.y - row.y)))
        ids[b] = int(f0.bead.iloc[j])
    return ids


def test_find_beads(movie):
    frames, truth = movie
    centres = find_beads(frames[0])
    assert centres.shape == (3, 2)
    f0 = truth[truth.frame == 0][["x", "y"]].to_numpy()
    for c in centres:
        assert np.min(np.hypot(*(f0 - c).T)) < 0.01
    assert find_beads(frames[0], n_beads=2).shape == (2, 2)
    assert find_beads(np.ones((100, 100))).shape == (0, 2)


def test_track_movie_accuracy_and_layout(movie, lut_fast):
    frames, truth = movie
    table = track_movie(frames, zlut=lut_fast)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert len(table) == 30 * 3
    np.testing.assert_array_equal(table.frame, np.repeat(np.arange(30), 3))
    np.testing.assert_array_equal(table.bead, np.tile(np.arange(3), 30))
    ids = _match(table, truth)
    for b, t in ids.items():
        got = table[table.bead == b]
        want = truth[truth.bead == t]
        assert rms(np.r_[got.x.values - want.x.values, got.y.values - want.y.values]) < 0.01
        assert rms(got.z.values - want.z.values) < 10.0


def test_dask_and_hdf5_movies_give_the_same_table(movie, lut_fast, tmp_path):
    da = pytest.importorskip("dask.array")
    frames, _ = movie
    rois = find_beads(frames[0])
    ref = track_movie(frames, rois, zlut=lut_fast)
    lazy = track_movie(da.from_array(frames, chunks=(7, 128, 256)), rois, zlut=lut_fast)
    pd.testing.assert_frame_equal(lazy, ref, check_exact=False, rtol=1e-12)
    path = tmp_path / "movie.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=frames, chunks=(4, 128, 256))
    from stacklab.io import open_stack

    with open_stack(path) as stack:
        from_file = track_movie(stack, rois, zlut=lut_fast, chunk=11)
    pd.testing.assert_frame_equal(from_file, ref, check_exact=False, rtol=1e-12)


def test_nan_frame_only_affects_its_rows(movie, lut_fast):
    frames, _ = movie
    bad = frames[:6].copy()
    bad[2, 40, 100] = np.nan
    rois = find_beads(frames[0])
    table = track_movie(bad, rois, zlut=lut_fast)
    ref = track_movie(frames[:6], rois, zlut=lut_fast)
    hit = table.frame == 2
    # only the bead whose ROI holds the NaN pixel is NaN
    boxes, _ = rois_to_boxes(rois, frames.shape[1:])
    inside = [(t <= 40 < b) and (left <= 100 < r) for t, b, left, r in boxes]
    assert table[hit].x.isna().tolist() == inside
    pd.testing.assert_frame_equal(table[~hit], ref[~hit])


def test_per_bead_tables(movie, lut_fast):
    frames, _ = movie
    rois = find_beads(frames[0])
    a = track_movie(frames[:4], rois, zlut=[lut_fast, lut_fast, lut_fast])
    b = track_movie(frames[:4], rois, zlut=lut_fast)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)
    with pytest.raises(ValueError, match="tables"):
        track_movie(frames[:4], rois, zlut=[lut_fast])


def test_rois_centres_and_boxes():
    boxes, kept = rois_to_boxes([[40.0, 50.0], [100.2, 60.7]], (128, 256), roi_size=64)
    # top-left = floor(c - (64 - 1) / 2 + 0.5): the ROI centre is within half a pixel of c
    np.testing.assert_array_equal(boxes, [[19, 83, 9, 73], [29, 93, 69, 133]])
    np.testing.assert_array_equal(kept, [0, 1])
    same, _ = rois_to_boxes(boxes, (128, 256))
    np.testing.assert_array_equal(same, boxes)
    # a box exactly at the edge is fine
    rois_to_boxes([[0, 64, 0, 64]], (64, 64))


def test_bad_rois():
    with pytest.raises(ValueError, match="square"):
        rois_to_boxes([[0, 64, 0, 60]], (128, 128))
    with pytest.raises(ValueError, match="same size"):
        rois_to_boxes([[0, 64, 0, 64], [0, 32, 0, 32]], (128, 128))
    with pytest.raises(ValueError, match=r"rois \[1\] extend beyond"):
        rois_to_boxes([[64.0, 64.0], [20.0, 64.0]], (128, 128), roi_size=64)
    with pytest.warns(UserWarning, match="left out"):
        _boxes, kept = rois_to_boxes(
            [[64.0, 64.0], [20.0, 64.0]], (128, 128), roi_size=64, edge="drop"
        )
    np.testing.assert_array_equal(kept, [0])
    with pytest.raises(ShapeError, match="shape"):
        rois_to_boxes(np.zeros((2, 3)), (128, 128))
    with pytest.raises(ShapeError, match="empty"):
        rois_to_boxes(np.zeros((0, 2)), (128, 128))
    with pytest.raises(ValueError, match="finite"):
        rois_to_boxes([[np.nan, 3.0]], (128, 128))
    with pytest.raises(ValueError, match="whole pixels"):
        rois_to_boxes([[0.5, 64.5, 0, 64]], (128, 128))
    with pytest.raises(ValueError, match="roi_size"):
        rois_to_boxes([[64.0, 64.0]], (128, 128), roi_size=4)


def test_edge_drop_in_track_movie(movie):
    frames, _ = movie
    rois = np.vstack([find_beads(frames[0]), [[5.0, 5.0]]])
    with pytest.raises(ValueError, match="rois"):
        track_movie(frames[:2], rois)
    with pytest.warns(UserWarning):
        table = track_movie(frames[:2], rois, edge="drop")
    assert sorted(table.bead.unique().tolist()) == [0, 1, 2]


def test_bad_movies():
    with pytest.raises(ShapeError, match="3-D"):
        track_movie(np.zeros((64, 64)), [[32.0, 32.0]])
    with pytest.raises(ShapeError, match="empty"):
        track_movie(np.zeros((0, 64, 64)), [[32.0, 32.0]])
    with pytest.raises(ValueError, match="no bead"):
        track_movie(np.ones((2, 96, 96), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        find_beads(np.full((96, 96), np.nan))


@pytest.mark.parametrize("name", ["xyz.csv", "xyz.h5"])
def test_save_table(movie, lut_fast, tmp_path, name):
    frames, _ = movie
    table = track_movie(frames[:3], zlut=lut_fast)
    path = save_table(table, tmp_path / name)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    if name.endswith(".csv"):
        back = pd.read_csv(path)
        pd.testing.assert_frame_equal(back, table, check_exact=False, rtol=1e-12)
    else:
        with h5py.File(path, "r") as f:
            assert f["tracks"].attrs["columns"] == ",".join(TABLE_COLUMNS)
            np.testing.assert_array_equal(f["tracks/x"][()], table.x.to_numpy())
            np.testing.assert_array_equal(f["tracks/frame"][()], table.frame.to_numpy())
    with pytest.raises(FileFormatError, match="csv"):
        save_table(table, tmp_path / "xyz.xlsx")
    back = load_table(path)  # round trip, columns in order
    assert list(back.columns) == list(table.columns)
    pd.testing.assert_frame_equal(back, table, check_exact=False, rtol=1e-12)


def test_load_table_errors(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        load_table(tmp_path / "none.csv")
    save_table(pd.DataFrame({"frame": [0, 1], "x": [1.0, 2.0]}), tmp_path / "t.h5")
    with pytest.raises(FileFormatError, match="no table group 'other'"):
        load_table(tmp_path / "t.h5", key="other")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(FileFormatError, match=r"use a \.csv"):
        load_table(tmp_path / "t.xlsx")


def test_load_rois(tmp_path):
    (tmp_path / "c.csv").write_text("x,y,label\n10.5,20,a\n30,40,b\n")
    np.testing.assert_array_equal(load_rois(tmp_path / "c.csv"), [[10.5, 20.0], [30.0, 40.0]])
    (tmp_path / "b.csv").write_text("Top, Bottom, Left, Right\n0,64,0,64\n")
    np.testing.assert_array_equal(load_rois(tmp_path / "b.csv"), [[0, 64, 0, 64]])
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(FileFormatError, match="columns"):
        load_rois(tmp_path / "bad.csv")
    with pytest.raises(FileFormatError, match="does not exist"):
        load_rois(tmp_path / "none.csv")


def test_integer_movie(movie, lut_fast):
    frames, _ = movie
    counts = np.round(frames[:4] * 1000.0).astype(np.uint16)  # about 1000 photons background
    rois = find_beads(frames[0])
    a = track_movie(counts, rois, zlut=lut_fast)
    b = track_movie(counts.astype(np.float32), rois, zlut=lut_fast)
    pd.testing.assert_frame_equal(a, b)
    assert a.x.notna().all()


# --- ROIs that follow drifting beads ---------------------------------------------------------


def _linear_drift(n, dx, dy):
    """(n, 2) drift growing linearly from 0 to (dx, dy) px."""
    t = np.linspace(0.0, 1.0, n)
    return np.stack([dx * t, dy * t], axis=1)


def _errors(table, truth):
    """xy RMS error (px), z RMS error (nm) and xy error per frame of a table against the truth
    (same frame/bead order: beads numbered as in the simulation)."""
    dxy = np.hypot(table.x.to_numpy() - truth.x.to_numpy(), table.y.to_numpy() - truth.y.to_numpy())
    return rms(dxy), rms(table.z.to_numpy() - truth.z.to_numpy()), dxy


@pytest.fixture(scope="module")
def drifting():
    """240 noise-free frames, 2 beads, a common linear drift of (20, 6) px."""
    n = 240
    drift = _linear_drift(n, 20.0, 6.0)
    frames, truth = simulate_movie(
        n,
        shape=(128, 256),
        n_beads=2,
        drift=drift,
        xy_jitter=0.5,
        z_range=(-1500.0, 1500.0),
        seed=1,
    )
    rois = truth[truth.frame == 0][["x", "y"]].to_numpy() - drift[0]  # the mean start positions
    return frames, truth, rois


def test_follow_keeps_drifting_beads_at_the_static_accuracy(drifting, lut_fast):
    frames, truth, rois = drifting
    fixed = track_movie(frames, rois, zlut=lut_fast, chunk=24)
    followed = track_movie(frames, rois, zlut=lut_fast, chunk=24, follow=True)
    assert list(followed.columns) == list(TABLE_COLUMNS)
    pd.testing.assert_frame_equal(followed[["frame", "bead"]], fixed[["frame", "bead"]])
    xy_fixed, z_fixed, err_fixed = _errors(fixed, truth)
    xy_follow, z_follow, _ = _errors(followed, truth)
    late = fixed.frame.to_numpy() >= 180  # the last quarter: 15-20 px away from the start
    print(
        f"\n20 px drift, 240 frames, chunk 24: fixed ROIs xy RMS {xy_fixed:.3f} px (last quarter "
        f"{rms(err_fixed[late]):.3f}), z RMS {z_fixed:.1f} nm, min quality "
        f"{fixed.quality.min():.3f}; follow xy RMS {xy_follow:.5f} px, z RMS {z_follow:.2f} nm, "
        f"min quality {followed.quality.min():.4f}"
    )
    # static level (test_track_movie_accuracy_and_layout): < 0.01 px, < 10 nm
    assert xy_follow < 0.01 and z_follow < 5.0
    assert followed.quality.min() > 0.99
    # fixed ROIs: exact at first, lost at the end
    assert rms(err_fixed[fixed.frame.to_numpy() < 24]) < 0.01
    assert rms(err_fixed[late]) > 0.3 and z_fixed > 30.0
    assert fixed.quality.min() < 0.9


def test_follow_y_drift_only(lut_fast):
    n = 200
    drift = _linear_drift(n, 0.0, 15.0)
    frames, truth = simulate_movie(
        n,
        shape=(128, 128),
        n_beads=1,
        positions=[[63.5, 55.0]],
        drift=drift,
        xy_jitter=0.3,
        z_range=(-1500.0, 1500.0),
        seed=2,
    )
    rois = [[63.5, 55.0]]
    fixed = track_movie(frames, rois, zlut=lut_fast, chunk=20)
    followed = track_movie(frames, rois, zlut=lut_fast, chunk=20, follow=True)
    xy_fixed, z_fixed, err_fixed = _errors(fixed, truth)
    xy_follow, z_follow, err_follow = _errors(followed, truth)
    early, late = slice(0, 20), slice(180, 200)  # 0-1.5 px and 13.5-15 px off the start
    print(
        f"\n15 px y drift, 200 frames: fixed xy RMS {xy_fixed:.4f} px (first 20 frames "
        f"{rms(err_fixed[early]):.4f}, last 20 {rms(err_fixed[late]):.4f}), z RMS {z_fixed:.1f} "
        f"nm; follow xy RMS {xy_follow:.5f} px (last 20 {rms(err_follow[late]):.5f}), z RMS "
        f"{z_follow:.2f} nm"
    )
    assert xy_follow < 0.01 and z_follow < 5.0
    # the fixed ROI's error grows with the drift; follow stays at its start level
    assert rms(err_fixed[late]) > 20 * rms(err_fixed[early])
    assert rms(err_follow[late]) < 3 * rms(err_follow[early]) < 0.01
    assert xy_fixed > 10 * xy_follow and z_fixed > z_follow
    # x never drifted: the y drift is what the fixed ROI misses
    assert rms(fixed.y - truth.y) > rms(fixed.x - truth.x)


def test_follow_result_depends_on_chunk_only_through_roi_placement(drifting, lut_fast):
    frames, truth, rois = drifting
    frames, truth = frames[:60], truth[truth.frame < 60].reset_index(drop=True)  # 5 px drift
    tables = {
        c: track_movie(frames, rois, zlut=lut_fast, chunk=c, follow=True) for c in (1, 7, 500)
    }
    for c, t in tables.items():
        pd.testing.assert_frame_equal(t[["frame", "bead"]], tables[1][["frame", "bead"]])
        xy, z, _ = _errors(t, truth)
        print(f"\nchunk {c}: xy RMS {xy:.5f} px, z RMS {z:.2f} nm")
        for col, tol in (("x", 0.005), ("y", 0.005), ("z", 5.0), ("quality", 0.002)):
            np.testing.assert_allclose(t[col], tables[1][col], rtol=0, atol=tol)
    # one block (chunk >= n_frames): the ROIs never move, exactly as follow=False
    pd.testing.assert_frame_equal(
        tables[500], track_movie(frames, rois, zlut=lut_fast, chunk=500), check_exact=True
    )


def test_follow_dask_and_hdf5_give_the_numpy_table(drifting, lut_fast, tmp_path):
    da = pytest.importorskip("dask.array")
    frames, _, rois = drifting
    frames = frames[:80]
    ref = track_movie(frames, rois, zlut=lut_fast, chunk=10, follow=True)
    lazy = track_movie(
        da.from_array(frames, chunks=(7, 128, 256)), rois, zlut=lut_fast, chunk=10, follow=True
    )
    pd.testing.assert_frame_equal(lazy, ref, check_exact=True)
    path = tmp_path / "drift.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=frames, chunks=(4, 128, 256))
    from stacklab.io import open_stack

    with open_stack(path) as stack:
        from_file = track_movie(stack, rois, zlut=lut_fast, chunk=10, follow=True)
    pd.testing.assert_frame_equal(from_file, ref, check_exact=True)


def test_follow_through_nan_frames(drifting, lut_fast):
    frames, truth, rois = drifting
    frames, truth = frames[:90], truth[truth.frame < 90].reset_index(drop=True)
    bad = frames.copy()
    bad[[20, 21, 22, 55]] = np.nan  # whole frames
    bad[70, 60, 60] = np.nan  # one pixel in bead 0's ROI
    clean = track_movie(frames, rois, zlut=lut_fast, chunk=1, follow=True)
    table = track_movie(bad, rois, zlut=lut_fast, chunk=1, follow=True)
    nan_rows = table.x.isna().to_numpy()
    expect = (
        table.frame.isin([20, 21, 22, 55]).to_numpy()
        | ((table.frame == 70) & (table.bead == 0)).to_numpy()
    )
    np.testing.assert_array_equal(nan_rows, expect)
    # the ROIs waited on the NaN frames and caught up: same positions to tracker precision
    np.testing.assert_allclose(table.x[~expect], clean.x[~expect], rtol=0, atol=0.005)
    np.testing.assert_allclose(table.y[~expect], clean.y[~expect], rtol=0, atol=0.005)
    xy, z, _ = _errors(table[~expect], truth[~expect])
    assert xy < 0.01 and z < 5.0


def test_bead_drifting_out_of_the_frame(lut_fast, caplog):
    # bead 0 stays, bead 1 drifts 40 px towards the right edge of a 200 px wide frame
    n = 120
    drift = np.zeros((n, 2, 2))
    drift[:, 1, 0] = np.linspace(0.0, 40.0, n)
    frames, truth = simulate_movie(
        n,
        shape=(96, 200),
        positions=[[40.0, 47.5], [145.0, 47.5]],
        drift=drift,
        xy_jitter=0.2,
        z_range=(-1500.0, 1500.0),
        seed=3,
    )
    rois = [[40.0, 47.5], [145.0, 47.5]]
    with caplog.at_level("WARNING", logger="stacklab.beads.movie"):
        table = track_movie(frames, rois, zlut=lut_fast, chunk=6, follow=True)
    warned = [r for r in caplog.records if "leaving" in r.getMessage()]
    assert len(warned) == 1 and "bead 1" in warned[0].getMessage()
    b0, b1 = table[table.bead == 0], table[table.bead == 1]
    t0, t1 = truth[truth.bead == 0], truth[truth.bead == 1]
    assert b0.x.notna().all()
    assert rms(b0.x.to_numpy() - t0.x.to_numpy()) < 0.01
    lost = b1.x.isna().to_numpy()
    first_lost = int(np.argmax(lost))
    assert lost.any() and lost[first_lost:].all()
    assert first_lost % 6 == 0  # from a block boundary on
    # lost once the bead is more than roi_size / 8 = 8 px beyond the last in-frame ROI centre
    # (200 - 32 - 0.5 = 167.5 px): not before x = 167.5 + 8 - one block of drift
    x_at_loss = t1.x.to_numpy()[first_lost - 1]
    print(f"\nbead 1 lost from frame {first_lost} (true x {x_at_loss:.1f} px)")
    assert 173.0 < x_at_loss < 180.0
    ok = ~lost
    err = np.abs(b1.x.to_numpy()[ok] - t1.x.to_numpy()[ok])
    assert err.max() < 0.05  # tracked (also in the clipped ROI) until it is declared lost
    assert b1.z[ok].notna().all() and b1.quality[lost].isna().all()


def test_follow_on_a_static_movie_matches_fixed_rois(movie, lut_fast):
    frames, _ = movie
    rois = find_beads(frames[0])
    fixed = track_movie(frames, rois, zlut=lut_fast)
    followed = track_movie(frames, rois, zlut=lut_fast, chunk=5, follow=True)
    for col, tol in (("x", 0.005), ("y", 0.005), ("z", 5.0)):
        np.testing.assert_allclose(followed[col], fixed[col], rtol=0, atol=tol)
    with pytest.raises(ValueError, match="chunk"):
        track_movie(frames, rois, chunk=0, follow=True)


@pytest.mark.slow
def test_follow_600_frames_and_noise_at_the_static_level(lut_fast):
    n = 600
    cases = {
        "20 px in x and y": _linear_drift(n, 16.0, 12.0),
        "15 px in y": _linear_drift(n, 0.0, 15.0),
    }
    early, late = slice(0, 50), slice(550, 600)
    for name, drift in cases.items():
        frames, truth = simulate_movie(
            n,
            shape=(128, 128),
            n_beads=1,
            positions=[[55.0, 50.0]],
            drift=drift,
            xy_jitter=0.5,
            z_range=(-1500.0, 1500.0),
            seed=4,
        )
        fixed = track_movie(frames, [[55.0, 50.0]], zlut=lut_fast, chunk=50)
        followed = track_movie(frames, [[55.0, 50.0]], zlut=lut_fast, chunk=50, follow=True)
        xy_fixed, z_fixed, err_fixed = _errors(fixed, truth)
        xy_follow, z_follow, err_follow = _errors(followed, truth)
        print(
            f"\n{name}, {n} frames, chunk 50: fixed xy RMS {xy_fixed:.4f} px (first 50 frames "
            f"{rms(err_fixed[early]):.4f}, last 50 {rms(err_fixed[late]):.4f}), z RMS "
            f"{z_fixed:.1f} nm; follow xy RMS {xy_follow:.5f} px (last 50 "
            f"{rms(err_follow[late]):.5f}), z RMS {z_follow:.2f} nm"
        )
        assert xy_follow < 0.01 and z_follow < 5.0
        assert rms(err_fixed[late]) > 20 * rms(err_fixed[early])
        assert rms(err_follow[late]) < 3 * rms(err_follow[early])
        assert xy_fixed > 5 * xy_follow and z_fixed > z_follow
    # With photon noise, the drifting bead tracked with follow=True is as precise as the same
    # bead without drift (same seed: same jitter and z draws).
    kw = dict(
        shape=(128, 128),
        n_beads=1,
        positions=[[55.0, 50.0]],
        xy_jitter=0.5,
        z_range=(-1500.0, 1500.0),
        photons=1000.0,
        seed=5,
    )
    still, truth_s = simulate_movie(300, **kw)
    moving, truth_m = simulate_movie(300, drift=_linear_drift(300, 14.0, 10.0), **kw)
    a = _errors(track_movie(still, [[55.0, 50.0]], zlut=lut_fast, chunk=25), truth_s)
    b = _errors(track_movie(moving, [[55.0, 50.0]], zlut=lut_fast, chunk=25, follow=True), truth_m)
    print(
        f"\n1000 photons, 300 frames: static xy RMS {a[0]:.4f} px, z RMS {a[1]:.1f} nm; "
        f"17 px drift + follow xy RMS {b[0]:.4f} px, z RMS {b[1]:.1f} nm"
    )
    assert b[0] < 1.25 * a[0] and b[1] < 1.25 * a[1]


@pytest.mark.parametrize("follow", [False, True])
@pytest.mark.parametrize("chunk", [0, True, 2.5])
def test_track_movie_bad_chunk(movie, follow, chunk):
    frames, _ = movie
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        track_movie(frames[:4], chunk=chunk, follow=follow)
