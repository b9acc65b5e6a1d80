"""Zarr stores: lazy reading, atomic writing, keys."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from stacklab.errors import FileFormatError
from stacklab.io import read_hdf5, read_zarr, write_hdf5, write_zarr

zarr = pytest.importorskip("zarr")


@pytest.mark.parametrize("fixture", ["u16_stack", "f32_stack"])
def test_round_trip_lazy(tmp_path, request, fixture):
    a = request.getfixturevalue(fixture)
    path = write_zarr(tmp_path / "a.zarr", a, chunks=(2, 6, 5))
    r = read_zarr(path)
    assert isinstance(r, zarr.Array) and not isinstance(r, np.ndarray)
    assert (r.shape, r.dtype, r.chunks) == (a.shape, a.dtype, (2, 6, 5))
    np.testing.assert_array_equal(r[:], a)
    np.testing.assert_array_equal(r[5], a[5])


def test_group_keys(tmp_path, u16_stack, f32_stack):
    path = write_zarr(tmp_path / "g.zarr", {"raw/frames": u16_stack, "dark": f32_stack[0]})
    np.testing.assert_array_equal(read_zarr(path)[:], u16_stack)  # only >= 3-D array
    np.testing.assert_array_equal(read_zarr(path, "dark")[:], f32_stack[0])
    with pytest.raises(FileFormatError, match=r"g\.zarr.*no array 'bright'.*'raw/frames'"):
        read_zarr(path, "bright")
    write_zarr(tmp_path / "two.zarr", {"a": u16_stack, "b": u16_stack})
    with pytest.raises(FileFormatError, match=r"two\.zarr.*2 arrays.*'a'.*'b'"):
        read_zarr(tmp_path / "two.zarr")


def test_single_array_under_key_and_attrs(tmp_path, u16_stack):
    path = write_zarr(tmp_path / "k.zarr", u16_stack, key="entry/data", attrs={"units": "counts"})
    r = read_zarr(path, "entry/data")
    assert dict(r.attrs) == {"units": "counts"}
    np.testing.assert_array_equal(r[:], u16_stack)
    with pytest.raises(FileFormatError, match="has no key"):
        read_zarr(write_zarr(tmp_path / "root.zarr", u16_stack), "x")


def test_overwrite_replaces_store(tmp_path, u16_stack, f32_stack):
    path = tmp_path / "a.zarr"
    write_zarr(path, {"a": u16_stack, "b": u16_stack})
    write_zarr(path, f32_stack)
    np.testing.assert_array_equal(read_zarr(path)[:], f32_stack)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]


def test_from_lazy_source(tmp_path, u16_stack):
    write_hdf5(tmp_path / "src.h5", {"x": u16_stack})
    with read_hdf5(tmp_path / "src.h5", "x") as src:
        write_zarr(tmp_path / "a.zarr", src)
    np.testing.assert_array_equal(read_zarr(tmp_path / "a.zarr")[:], u16_stack)


def test_missing_store(tmp_path):
    with pytest.raises(FileFormatError, match=r"nope\.zarr"):
        read_zarr(tmp_path / "nope.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(FileFormatError, match=r"empty\.zarr"):
        read_zarr(tmp_path / "empty.zarr")


def test_missing_zarr_names_the_extra(tmp_path, monkeypatch, u16_stack):
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(ImportError, match=r"stacklab\[io\]"):
        read_zarr(tmp_path / "a.zarr")
    with pytest.raises(ImportError, match=r"stacklab\[io\]"):
        write_zarr(tmp_path / "a.zarr", u16_stack)
