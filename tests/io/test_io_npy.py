"""NumPy .npy (memory-mapped) and .npz files."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.errors import FileFormatError
from stacklab.io import read_hdf5, read_npy, read_npz, write_hdf5, write_npy, write_npz


@pytest.mark.parametrize("fixture", ["u16_stack", "f32_stack"])
def test_npy_round_trip_memmapped(tmp_path, request, fixture):
    a = request.getfixturevalue(fixture)
    path = write_npy(tmp_path / "a.npy", a)
    r = read_npy(path)
    assert isinstance(r, np.memmap) and r.mode == "r"
    assert (r.shape, r.dtype) == (a.shape, a.dtype)
    np.testing.assert_array_equal(r, a)
    assert isinstance(r[3], np.memmap)  # slicing stays on disk
    np.testing.assert_array_equal(r[3], a[3])
    loaded = read_npy(path, mmap=False)
    assert not isinstance(loaded, np.memmap)
    np.testing.assert_array_equal(loaded, a)


def test_npy_name_is_kept_exactly(tmp_path, u16_stack):
    write_npy(tmp_path / "frames.dat", u16_stack)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.dat"]
    np.testing.assert_array_equal(read_npy(tmp_path / "frames.dat"), u16_stack)


def test_npy_from_lazy_source(tmp_path, f32_stack):
    write_hdf5(tmp_path / "src.h5", {"x": f32_stack})
    with read_hdf5(tmp_path / "src.h5", "x") as src:
        write_npy(tmp_path / "a.npy", src)
    np.testing.assert_array_equal(read_npy(tmp_path / "a.npy"), f32_stack)


def test_npz_keys(tmp_path, u16_stack, f32_stack):
    path = write_npz(tmp_path / "a.npz", {"counts": u16_stack, "dark": f32_stack})
    np.testing.assert_array_equal(read_npz(path, "counts"), u16_stack)
    assert read_npz(path, "dark").dtype == np.float32
    with pytest.raises(FileFormatError, match=r"a\.npz.*2 arrays.*'counts'.*'dark'"):
        read_npz(path)
    with pytest.raises(FileFormatError, match=r"no array 'bright'.*'counts', 'dark'"):
        read_npz(path, "bright")


def test_npz_single_array_needs_no_key(tmp_path, u16_stack):
    path = write_npz(tmp_path / "a.npz", u16_stack, compress=True)
    np.testing.assert_array_equal(read_npz(path), u16_stack)
    np.testing.assert_array_equal(read_npz(path, "data"), u16_stack)


@pytest.mark.parametrize("name", ["cut.npy", "cut.npz"])
def test_truncated(tmp_path, truncate_half, u16_stack, name):
    path = tmp_path / name
    (write_npy if name.endswith("npy") else write_npz)(path, u16_stack)
    truncate_half(path)
    reader = read_npy if name.endswith("npy") else read_npz
    with pytest.raises(FileFormatError, match=name.replace(".", r"\.")):
        reader(path)


def test_missing(tmp_path):
    with pytest.raises(FileFormatError, match=r"nope\.npy"):
        read_npy(tmp_path / "nope.npy")
    with pytest.raises(FileFormatError, match=r"nope\.npz"):
        read_npz(tmp_path / "nope.npz")
