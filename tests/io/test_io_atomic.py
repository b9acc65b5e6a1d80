"""Atomic writes: nothing half-written is ever left at the destination."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.io import (
    atomic_path,
    read_hdf5,
    read_npy,
    read_tiff,
    read_zarr,
    write_hdf5,
    write_npy,
    write_tiff,
    write_zarr,
)


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_success_renames_and_leaves_no_temporary(tmp_path):
    dest = tmp_path / "out.bin"
    with atomic_path(dest) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".out.bin.tmp-")
        assert not dest.exists()  # nothing visible before the block ends
        tmp.write_bytes(b"complete")
    assert dest.read_bytes() == b"complete"
    assert _names(tmp_path) == ["out.bin"]


def test_failure_removes_temporary_and_creates_nothing(tmp_path):
    dest = tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="boom"), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert _names(tmp_path) == []


def test_failure_keeps_original(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"original")
    with pytest.raises(KeyboardInterrupt), atomic_path(dest) as tmp:
        tmp.write_bytes(b"new but unfinished")
        raise KeyboardInterrupt
    assert dest.read_bytes() == b"original"
    assert _names(tmp_path) == ["out.bin"]


def test_folder_store_is_replaced_whole(tmp_path):
    dest = tmp_path / "store"
    dest.mkdir()
    (dest / "old").write_text("old")
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    assert _names(dest) == ["new"]
    assert _names(tmp_path) == ["store"]


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"), atomic_path(tmp_path / "nowhere" / "f"):
        pass


def test_block_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="did not create"), atomic_path(tmp_path / "f"):
        pass
    assert _names(tmp_path) == []


WRITERS = {
    "h5": (lambda p, a: write_hdf5(p, {"data": a}), lambda p: np.asarray(read_hdf5(p, "data"))),
    "tif": (write_tiff, lambda p: np.asarray(read_tiff(p))),
    "npy": (write_npy, lambda p: np.asarray(read_npy(p))),
    "zarr": (write_zarr, lambda p: np.asarray(read_zarr(p))),
}


@pytest.mark.parametrize("ext", sorted(WRITERS))
def test_writer_failing_midway_leaves_nothing(tmp_path, ext, failing_stack):
    write, _ = WRITERS[ext]
    with pytest.raises(RuntimeError, match="simulated failure"):
        write(tmp_path / f"out.{ext}", failing_stack)
    assert _names(tmp_path) == []


@pytest.mark.parametrize("ext", sorted(WRITERS))
def test_writer_failing_midway_keeps_original(tmp_path, ext, failing_stack, u16_stack):
    write, read = WRITERS[ext]
    dest = tmp_path / f"out.{ext}"
    write(dest, u16_stack)
    with pytest.raises(RuntimeError, match="simulated failure"):
        write(dest, failing_stack)
    assert _names(tmp_path) == [dest.name]
    np.testing.assert_array_equal(read(dest), u16_stack)


def test_hdf5_append_failure_keeps_original_datasets(tmp_path, failing_stack, u16_stack):
    dest = tmp_path / "a.h5"
    write_hdf5(dest, {"keep": u16_stack})
    with pytest.raises(RuntimeError):
        write_hdf5(dest, {"extra": np.ones(3), "bad": failing_stack}, mode="a")
    with read_hdf5(dest, "keep") as h:
        np.testing.assert_array_equal(np.asarray(h), u16_stack)
    from stacklab.io import list_datasets

    assert list(list_datasets(dest)) == ["keep"]
    assert _names(tmp_path) == ["a.h5"]
