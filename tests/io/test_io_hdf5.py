"""HDF5: lazy H5Stack, atomic write_hdf5, list_datasets, errors."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from stacklab.errors import FileFormatError
from stacklab.io import H5Stack, list_datasets, read_hdf5, write_hdf5


@pytest.mark.parametrize("fixture", ["u16_stack", "f32_stack"])
@pytest.mark.parametrize("compression", [None, "gzip"])
def test_round_trip_exact(tmp_path, request, fixture, compression):
    a = request.getfixturevalue(fixture)
    path = write_hdf5(tmp_path / "a.h5", {"entry/data": a}, compression=compression)
    with read_hdf5(path, "/entry/data") as h:
        assert isinstance(h, H5Stack)
        assert (h.shape, h.dtype, h.ndim, h.size, len(h)) == (a.shape, a.dtype, 3, a.size, 9)
        out = np.asarray(h)
    assert out.dtype == a.dtype
    np.testing.assert_array_equal(out, a)
    if fixture == "u16_stack":
        assert out.max() == 65535 and out.min() == 0


def test_indexing_matches_numpy(tmp_path, f32_stack):
    a = f32_stack
    write_hdf5(tmp_path / "a.h5", {"x": a})
    with read_hdf5(tmp_path / "a.h5", "x") as h:
        for index in [3, -1, slice(2, 7), slice(1, 8, 3), (4, slice(1, 3)), (..., 2), [5, 1, 5]]:
            np.testing.assert_array_equal(h[index], a[index], err_msg=repr(index))
        np.testing.assert_array_equal(h[np.array([8, 0])], a[[8, 0]])


def test_reading_one_frame_reads_only_that_frame(tmp_path, monkeypatch):
    a = np.arange(200 * 32 * 32, dtype=np.uint16).reshape(200, 32, 32)
    write_hdf5(tmp_path / "big.h5", {"x": a})
    requested = []
    original = h5py.Dataset.__getitem__

    def spy(self, index, *args, **kwargs):
        requested.append(index)
        return original(self, index, *args, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    h = read_hdf5(tmp_path / "big.h5", "x")
    assert not isinstance(h, np.ndarray)
    frame = h[123]
    h.close()
    np.testing.assert_array_equal(frame, a[123])
    assert frame.shape == (32, 32)
    assert requested == [(123,)]  # one frame asked of h5py, not the whole dataset


def test_key_none_picks_the_single_stack(tmp_path, u16_stack):
    write_hdf5(tmp_path / "a.h5", {"meta/energy": np.float64(300e3), "frames": u16_stack})
    with read_hdf5(tmp_path / "a.h5") as h:
        assert h.key == "frames"


def test_key_none_ambiguous_lists_candidates(tmp_path, u16_stack):
    write_hdf5(tmp_path / "a.h5", {"one": u16_stack, "g/two": u16_stack})
    with pytest.raises(FileFormatError, match=r"a\.h5.*'g/two'.*'one'|a\.h5.*'one'.*'g/two'"):
        read_hdf5(tmp_path / "a.h5")


def test_missing_key_lists_available(tmp_path, u16_stack):
    write_hdf5(tmp_path / "a.h5", {"entry/frames": u16_stack, "dark": u16_stack[0]})
    with pytest.raises(FileFormatError) as info:
        read_hdf5(tmp_path / "a.h5", "frame")
    msg = str(info.value)
    assert "a.h5" in msg and "'frame'" in msg and "'entry/frames'" in msg and "'dark'" in msg
    assert isinstance(info.value, OSError)


def test_group_key_lists_its_datasets(tmp_path, u16_stack):
    write_hdf5(tmp_path / "a.h5", {"entry/frames": u16_stack})
    with pytest.raises(FileFormatError, match=r"group.*'frames'"):
        read_hdf5(tmp_path / "a.h5", "entry")


def test_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match=r"nope\.h5"):
        read_hdf5(tmp_path / "nope.h5", "x")


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_truncated_file(tmp_path, truncate_half, u16_stack, compression):
    path = write_hdf5(tmp_path / "cut.h5", {"x": u16_stack}, compression=compression)
    truncate_half(path)
    with pytest.raises(FileFormatError, match=r"cut\.h5"):
        read_hdf5(path, "x")
    with pytest.raises(FileFormatError, match=r"cut\.h5"):
        list_datasets(path)


def test_not_hdf5(tmp_path):
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(FileFormatError, match=r"text\.h5"):
        read_hdf5(tmp_path / "text.h5")


def test_list_datasets(tmp_path, u16_stack):
    write_hdf5(tmp_path / "a.h5", {"entry/frames": u16_stack, "dark": np.zeros((6, 5), "f4")})
    found = list_datasets(tmp_path / "a.h5")
    assert found == {
        "dark": ((6, 5), np.dtype("f4")),
        "entry/frames": ((9, 6, 5), np.dtype("uint16")),
    }


def test_attrs_and_scalars(tmp_path, u16_stack):
    write_hdf5(
        tmp_path / "a.h5",
        {"frames": u16_stack, "name": "scan 12", "step": 1.5e-9},
        attrs={"/": {"version": 2, "params": {"a": 1}}, "frames": {"units": "counts"}},
    )
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert f.attrs["version"] == 2
        assert f.attrs["params"] == '{"a": 1}'
        assert f["frames"].attrs["units"] == "counts"
        assert f["name"].asstr()[()] == "scan 12"
        assert f["step"][()] == 1.5e-9


def test_append_mode_keeps_and_replaces(tmp_path, u16_stack, f32_stack):
    path = tmp_path / "a.h5"
    write_hdf5(path, {"a": u16_stack, "b": np.zeros(3)})
    write_hdf5(path, {"b": f32_stack, "c": np.ones(2)}, mode="a")
    assert list(list_datasets(path)) == ["a", "b", "c"]
    with read_hdf5(path, "b") as h:
        np.testing.assert_array_equal(np.asarray(h), f32_stack)
    write_hdf5(path, {"only": np.ones(2)})  # mode "w" replaces the whole file
    assert list(list_datasets(path)) == ["only"]


def test_write_from_lazy_source(tmp_path, u16_stack):
    write_hdf5(tmp_path / "src.h5", {"x": u16_stack})
    with read_hdf5(tmp_path / "src.h5", "x") as src:
        write_hdf5(tmp_path / "dst.h5", {"y": src}, compression="gzip")
    with read_hdf5(tmp_path / "dst.h5", "y") as h:
        assert h.chunks is not None
        np.testing.assert_array_equal(np.asarray(h), u16_stack)


def test_write_from_dask(tmp_path, f32_stack):
    da = pytest.importorskip("dask.array")
    write_hdf5(tmp_path / "a.h5", {"x": da.from_array(f32_stack, chunks=(4, 6, 5))})
    with read_hdf5(tmp_path / "a.h5", "x") as h:
        np.testing.assert_array_equal(np.asarray(h), f32_stack)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        write_hdf5(tmp_path / "a.h5", {"x": np.ones(2)}, mode="r+")
    with pytest.raises(ValueError, match="datasets"):
        write_hdf5(tmp_path / "a.h5", {})
    with pytest.raises(ValueError, match="attrs names 'y'"):
        write_hdf5(tmp_path / "a.h5", {"x": np.ones(2)}, attrs={"y": {"units": "m"}})
    with pytest.raises(TypeError, match="compression"):
        write_hdf5(tmp_path / "a.h5", {"x": np.ones(2)}, compression=1.5)
    assert list(tmp_path.iterdir()) == []


def test_closed_stack_and_pickle(tmp_path, u16_stack):
    write_hdf5(tmp_path / "a.h5", {"x": u16_stack})
    h = read_hdf5(tmp_path / "a.h5", "x")
    copy = pickle.loads(pickle.dumps(h))
    np.testing.assert_array_equal(copy[4], u16_stack[4])
    copy.close()
    h.close()
    h.close()  # idempotent
    assert "closed" in repr(h)
    with pytest.raises(ValueError, match="closed"):
        h[0]
