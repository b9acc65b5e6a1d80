"""open_stack / save_stack: dispatch on the file name, errors, FrameWindow."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.errors import FileFormatError
from stacklab.io import FrameWindow, file_kind, open_stack, save_stack, write_hdf5

SUFFIXES = [
    ".h5",
    ".hdf5",
    ".hdf",
    ".cxi",
    ".emd",
    ".nxs",
    ".tif",
    ".tiff",
    ".npy",
    ".npz",
    ".zarr",
]


def _close(obj):
    if hasattr(obj, "close"):
        obj.close()


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("fixture", ["u16_stack", "f32_stack"])
def test_round_trip_every_format(tmp_path, request, suffix, fixture):
    a = request.getfixturevalue(fixture)
    path = save_stack(tmp_path / f"s{suffix}", a)
    r = open_stack(path)
    try:
        assert (tuple(r.shape), np.dtype(r.dtype), r.ndim, r.size) == (a.shape, a.dtype, 3, a.size)
        np.testing.assert_array_equal(np.asarray(r), a)
        np.testing.assert_array_equal(r[2:5], a[2:5])
        if suffix != ".npz":  # .npz archives cannot be read lazily
            assert not (isinstance(r, np.ndarray) and not isinstance(r, np.memmap))
    finally:
        _close(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("suffix", [".h5", ".npz", ".zarr"])
def test_keys(tmp_path, u16_stack, suffix):
    path = save_stack(tmp_path / f"k{suffix}", u16_stack, key="frames")
    r = open_stack(path, key="frames")
    np.testing.assert_array_equal(np.asarray(r), u16_stack)
    _close(r)
    with pytest.raises(FileFormatError, match=f"k\\{suffix}.*'frames'"):
        open_stack(path, key="missing")


def test_hdf5_key_none(tmp_path, u16_stack):
    write_hdf5(tmp_path / "a.emd", {"data/sig/data": u16_stack, "data/sig/dim1": np.arange(9)})
    with open_stack(tmp_path / "a.emd") as r:
        assert r.key == "data/sig/data"
    write_hdf5(tmp_path / "b.h5", {"x": u16_stack, "y": u16_stack})
    with pytest.raises(FileFormatError, match=r"b\.h5.*'x', 'y'"):
        open_stack(tmp_path / "b.h5")
    write_hdf5(tmp_path / "c.h5", {"x": u16_stack[0]})
    with pytest.raises(FileFormatError, match=r"c\.h5.*no dataset with >= 3.*'x'"):
        open_stack(tmp_path / "c.h5")


def test_key_for_keyless_format(tmp_path, u16_stack):
    with pytest.raises(FileFormatError, match=r"a\.tif.*key='x'"):
        save_stack(tmp_path / "a.tif", u16_stack, key="x")
    save_stack(tmp_path / "a.npy", u16_stack)
    with pytest.raises(FileFormatError, match=r"a\.npy.*key='x'"):
        open_stack(tmp_path / "a.npy", key="x")


def test_unknown_suffix(tmp_path, u16_stack):
    (tmp_path / "a.xyz").write_text("?")
    with pytest.raises(FileFormatError, match=r"a\.xyz.*'\.xyz'.*\.h5"):
        open_stack(tmp_path / "a.xyz")
    with pytest.raises(FileFormatError, match=r"b\.mrc"):
        save_stack(tmp_path / "b.mrc", u16_stack)
    assert isinstance(FileFormatError("x"), OSError)


@pytest.mark.parametrize("suffix", [".h5", ".tif", ".npy", ".npz", ".zarr"])
def test_missing_file(tmp_path, suffix):
    with pytest.raises(FileFormatError, match=f"nope\\{suffix}"):
        open_stack(tmp_path / f"nope{suffix}")


@pytest.mark.parametrize("suffix", [".h5", ".tif", ".npy", ".npz"])
def test_truncated_file(tmp_path, truncate_half, suffix):
    a = np.arange(20 * 16 * 16, dtype=np.uint16).reshape(20, 16, 16)
    path = save_stack(tmp_path / f"cut{suffix}", a)
    truncate_half(path)
    with pytest.raises(FileFormatError, match=f"cut\\{suffix}"):
        np.asarray(open_stack(path))


def test_zarr_store_without_suffix(tmp_path, u16_stack):
    save_stack(tmp_path / "store.zarr", u16_stack)
    (tmp_path / "store.zarr").rename(tmp_path / "plain")
    assert file_kind(tmp_path / "plain") == "zarr"
    np.testing.assert_array_equal(open_stack(tmp_path / "plain")[:], u16_stack)


@pytest.mark.parametrize(
    "index",
    [
        0,
        -1,
        3,
        slice(None),
        slice(1, 4),
        slice(None, None, 2),
        slice(None, None, -1),
        slice(4, 0, -2),
        [4, 0, 2],
        np.array([True, False, True, False, True]),
        (1, 2),
        (..., 1),
        (slice(1, 3), ..., 0),
        (),
    ],
)
def test_frame_window_matches_numpy(index):
    a = np.arange(8 * 3 * 2).reshape(8, 3, 2)
    window = FrameWindow(a, 3)
    assert window.shape == (5, 3, 2) and len(window) == 5
    np.testing.assert_array_equal(window[index], a[3:][index])


def test_frame_window_writes_through_and_checks_bounds():
    a = np.zeros((6, 2))
    FrameWindow(a, 2, 5)[1:] = 7
    np.testing.assert_array_equal(a[:, 0], [0, 0, 0, 7, 7, 0])
    np.testing.assert_array_equal(np.asarray(FrameWindow(a, 4)), a[4:])
    with pytest.raises(ValueError, match="start"):
        FrameWindow(a, 7)
    with pytest.raises(IndexError):
        FrameWindow(a, 4)[2]
