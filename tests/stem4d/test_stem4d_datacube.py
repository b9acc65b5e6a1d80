"""DataCube, Calibration, scan reshaping, reductions and dark references."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from stacklab.errors import ShapeError
from stacklab.io import read_hdf5
from stacklab.stem4d import (
    Calibration,
    DataCube,
    dark_reference,
    edge_dark_reference,
    max_pattern,
    mean_pattern,
    set_scan_shape,
    streak_background,
    subtract_dark,
    virtual_image,
)

GOLDEN = Path("/work/shared/golden/py4dstem")
if not GOLDEN.exists():
    GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "py4dstem"


def golden(name):
    return np.load(GOLDEN / f"{name}.npz")


def test_calibration_validation_and_scaling():
    c = Calibration(q_pixel_size=(0.1, 0.2), r_pixel_size=3.0, q_origin=(10.5, 7.5))
    assert c.r_pixel_size == (3.0, 3.0)
    b = c.scaled_q(2)
    assert b.q_pixel_size == (0.2, 0.4) and b.q_origin == (5.0, 3.5)
    assert Calibration.from_dict(c.to_dict()) == c
    assert c.shifted_q((2, 3)).q_origin == (12.5, 10.5)
    with pytest.raises(ValueError, match="q_pixel_size"):
        Calibration(q_pixel_size=0)
    with pytest.raises(ShapeError, match="q_origin"):
        Calibration(q_origin=(1, 2, 3))
    with pytest.raises(ShapeError, match="q_origin"):
        DataCube(np.zeros((2, 3, 4, 4)), Calibration(q_origin=np.zeros((3, 2, 2))))


def test_datacube_basics(rng):
    data = rng.integers(0, 100, (3, 4, 5, 6), dtype=np.uint16)
    cube = DataCube(data)
    assert cube.shape == (3, 4, 5, 6) and cube.scan_shape == (3, 4) and cube.det_shape == (5, 6)
    assert cube.storage == "numpy" and not cube.is_lazy and cube.n_frames == 12
    np.testing.assert_array_equal(cube.frame(2, 3), data[2, 3])
    with pytest.raises(IndexError, match="row"):
        cube.frame(3, 0)
    with pytest.raises(ShapeError, match="set_scan_shape"):
        DataCube(data.reshape(12, 5, 6))
    with pytest.raises(TypeError, match="data"):
        DataCube("nope")
    assert "DataCube(shape=(3, 4, 5, 6)" in repr(cube)


def test_set_scan_shape_numpy_and_lazy(tmp_path, rng):
    data = rng.integers(0, 100, (1, 6, 4, 5), dtype=np.uint16)
    z = golden("set_scan_shape__1x6_to_3x2")
    np.testing.assert_array_equal(set_scan_shape(z["in_data"], (3, 2)), z["out_data"])
    with pytest.raises(ShapeError, match="scan_shape"):
        set_scan_shape(data, (4, 4))  # py4DSTEM prints and returns the cube unchanged
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["frames"] = data.reshape(6, 4, 5)
    with read_hdf5(path, "frames") as lazy:
        view = set_scan_shape(lazy, (2, 3))
        assert view.shape == (2, 3, 4, 5)
        ref = data.reshape(2, 3, 4, 5)
        np.testing.assert_array_equal(view[1], ref[1])
        np.testing.assert_array_equal(view[:, 2], ref[:, 2])
        np.testing.assert_array_equal(view[1, 1:, 2, ::2], ref[1, 1:, 2, ::2])
        np.testing.assert_array_equal(np.asarray(view), ref)
        cube = DataCube(view)
        assert cube.is_lazy
        np.testing.assert_allclose(mean_pattern(cube), ref.mean(axis=(0, 1)))


def test_reductions(rng):
    data = rng.integers(0, 1000, (3, 5, 6, 7), dtype=np.uint16)
    np.testing.assert_allclose(mean_pattern(data, chunk=4), data.mean(axis=(0, 1)))
    np.testing.assert_array_equal(max_pattern(data, chunk=4), data.max(axis=(0, 1)))
    mask = np.zeros((6, 7), bool)
    mask[2:4, 3:5] = True
    np.testing.assert_allclose(virtual_image(data, mask), data[..., 2:4, 3:5].sum(axis=(-2, -1)))
    with pytest.raises(ShapeError, match="mask"):
        virtual_image(data, np.ones((3, 3)))


def test_dark_reference_from_dark_frames(rng):
    dark = rng.normal(100, 5, (16, 12))
    frames = (dark + rng.normal(0, 2, (200, 16, 12))).astype(np.float32)
    frames[3, 4, 5] = 1e6  # cosmic ray
    mean = dark_reference(frames)
    med = dark_reference(frames, method="median")
    assert np.abs(med - dark).max() < 1.0
    assert np.abs(mean - dark)[4, 5] > 1000 and np.abs(med - dark)[4, 5] < 1.0


@pytest.mark.parametrize("case", ["x_all_w3_end", "y_all_w2_start"])
def test_streak_background_is_the_unbiased_strip_mean(case):
    z = golden(f"get_background_streaks__{case}")
    axis = 0 if str(z["in_direction"]) == "x" else 1
    out = streak_background(z["in_data"], int(z["in_width"]), axis=axis, side=str(z["in_side"]))
    data = z["in_data"].astype(np.float64)
    w = int(z["in_width"])
    strip = data[..., -w:, :] if str(z["in_side"]) == "end" else data[..., :w, :]
    if axis == 1:
        strip = data[..., :, -w:] if str(z["in_side"]) == "end" else data[..., :, :w]
    prof = strip.mean(axis=(0, 1, 2 + axis))
    expected = np.broadcast_to(prof[None, :] if axis == 0 else prof[:, None], out.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    # py4DSTEM floor-divides: biased low by about half a count
    bias = float(np.mean(out - z["out_darkref"]))
    assert 0.2 < bias < 0.8


def test_edge_dark_reference_combination():
    z = golden("get_darkreference__all_frames_wx3_wy2")
    out = edge_dark_reference(
        z["in_data"], width_rows=3, width_cols=2, side_rows="end", side_cols="start"
    )
    assert np.abs(out - z["out_darkref"]).max() < 1.5  # py4DSTEM floors each strip mean
    assert 0.3 < float(np.mean(out - z["out_darkref"])) < 0.7  # the floor's bias, removed
    truth = z["truth_dark"]
    sub = streak_background(z["in_data"], 2, axis=0, n_frames=5, seed=1)
    assert sub.shape == truth.shape
    with pytest.raises(ValueError, match="width"):
        streak_background(z["in_data"], 0)
    with pytest.raises(ValueError, match="width_rows or width_cols"):
        edge_dark_reference(z["in_data"])


def test_subtract_dark_float_output():
    z = golden("get_bksbtr_DP__u16")
    out = subtract_dark(z["in_data"], z["in_darkref"], dtype=np.float64)
    np.testing.assert_allclose(out[2, 5], z["out_dp"], rtol=1e-12)
    assert out.min() < 0  # no wrap-around to ~65535
    with pytest.raises(TypeError, match="dtype"):
        subtract_dark(z["in_data"], z["in_darkref"], dtype=np.uint16)
    with pytest.raises(ShapeError, match="dark"):
        subtract_dark(z["in_data"], z["in_darkref"][:, :-1])
