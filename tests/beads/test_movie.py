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
