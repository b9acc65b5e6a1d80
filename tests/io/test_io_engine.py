"""Files meet the engine: map_frames over lazy readers, HDF5Sink output and resume."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from stacklab import engine
from stacklab.errors import FileFormatError
from stacklab.io import (
    HDF5Sink,
    create_hdf5_dataset,
    list_datasets,
    read_hdf5,
    read_tiff,
    write_hdf5,
    write_tiff,
)


def kernel(block, gain=2.0):
    """Widen, scale and offset each frame (the known answer is kernel(whole stack))."""
    return block.astype(np.float32) * np.float32(gain) + np.float32(1)


def profile(block):
    """Per-frame row means: (n, rows, cols) -> (n, rows)."""
    return block.astype(np.float64).mean(axis=2)


@pytest.fixture
def stack_file(tmp_path, u16_stack):
    return write_hdf5(tmp_path / "in.h5", {"frames": u16_stack})


def test_map_frames_over_hdf5_equals_in_memory(stack_file, u16_stack):
    expected = kernel(u16_stack, gain=3.0)
    assert expected.max() > 65535 * 3  # widened: no uint16 wrap-around
    with read_hdf5(stack_file, "frames") as h:
        got = engine.map_frames(kernel, h, chunk=4, gain=3.0, progress=False)
        total = engine.reduce_frames(lambda b: b.astype(np.int64).sum(0), h, chunk=4)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(total, u16_stack.astype(np.int64).sum(0))


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_map_frames_over_tiff_equals_in_memory(tmp_path, f32_stack, compression):
    path = write_tiff(tmp_path / "in.tif", f32_stack, compression=compression)
    r = read_tiff(path)
    got = engine.map_frames(profile, r, chunk=2, progress=False)
    np.testing.assert_array_equal(got, profile(f32_stack))
    if hasattr(r, "close"):
        r.close()


def test_map_frames_over_4d_scan_file(tmp_path):
    scan = np.arange(3 * 4 * 5 * 6, dtype=np.uint16).reshape(3, 4, 5, 6) * np.uint16(500)
    with read_hdf5(write_hdf5(tmp_path / "scan.h5", {"scan": scan}), "scan") as h:
        got = engine.map_frames(kernel, h, chunk=5, progress=False)
    assert got.shape == scan.shape
    np.testing.assert_array_equal(got, kernel(scan))


def test_dask_over_h5stack(stack_file, u16_stack):
    da = pytest.importorskip("dask.array")
    with read_hdf5(stack_file, "frames") as h:
        lazy = da.from_array(h, chunks=(4, 6, 5))
        got = engine.map_frames(kernel, lazy).compute(scheduler="threads")
    np.testing.assert_array_equal(got, kernel(u16_stack))


def test_sink_as_out_equals_in_memory(tmp_path, stack_file, u16_stack):
    out_path = tmp_path / "out.h5"
    with (
        read_hdf5(stack_file, "frames") as h,
        create_hdf5_dataset(
            out_path, "result", (9, 6), np.float64, attrs={"units": "counts"}
        ) as sink,
    ):
        returned = engine.map_frames(profile, h, chunk=4, out=sink, progress=False)
        assert returned is sink
        assert sink.completed == 9
        assert not out_path.exists()  # nothing final before close
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5", "out.h5"]
    with read_hdf5(out_path, "result") as r:
        np.testing.assert_array_equal(np.asarray(r), profile(u16_stack))
        assert r.attrs == {"units": "counts"}  # progress attribute removed on finalize


class Interrupt(Exception):
    pass


def _run_until(sink, stack, fail_after_blocks):
    calls = {"n": 0}

    def flaky(block):
        if calls["n"] == fail_after_blocks:
            raise Interrupt
        calls["n"] += 1
        return kernel(block)

    engine.map_frames(flaky, stack, chunk=2, out=sink, progress=False)


def test_resume_after_interruption(tmp_path, stack_file, u16_stack):
    out_path = tmp_path / "out.h5"
    with read_hdf5(stack_file, "frames") as h:
        with pytest.raises(Interrupt), HDF5Sink(out_path, "r", (9, 6, 5), "f4") as sink:
            _run_until(sink, h, fail_after_blocks=2)
        assert not out_path.exists()
        partial = tmp_path / "out.h5.partial"
        with h5py.File(partial, "r") as f:
            assert f["r"].attrs["stacklab_frames_done"] == 4
            np.testing.assert_array_equal(f["r"][:4], kernel(u16_stack[:4]))

        seen = []

        def counting(block):
            seen.append(block.shape[0])
            return kernel(block)

        with create_hdf5_dataset(out_path, "r", (9, 6, 5), "f4", resume=True) as sink:
            assert sink.completed == 4
            sink.map(counting, h, chunk=2, progress=False)
    assert sum(seen) == 5  # only frames 4..8 were computed again
    assert not partial.exists()
    with read_hdf5(out_path, "r") as r:
        np.testing.assert_array_equal(np.asarray(r), kernel(u16_stack))


def test_resume_false_starts_again(tmp_path, u16_stack):
    out_path = tmp_path / "out.h5"
    with pytest.raises(Interrupt), HDF5Sink(out_path, "r", (9, 6, 5), "f4") as sink:
        _run_until(sink, u16_stack, fail_after_blocks=1)
    with HDF5Sink(out_path, "r", (9, 6, 5), "f4", resume=False) as sink:
        assert sink.completed == 0
        sink.map(kernel, u16_stack, chunk=5, progress=False)
    with read_hdf5(out_path, "r") as r:
        np.testing.assert_array_equal(np.asarray(r), kernel(u16_stack))


def test_resume_with_other_shape_is_refused(tmp_path, u16_stack):
    out_path = tmp_path / "out.h5"
    with pytest.raises(Interrupt), HDF5Sink(out_path, "r", (9, 6, 5), "f4") as sink:
        _run_until(sink, u16_stack, fail_after_blocks=1)
    with pytest.raises(FileFormatError, match=r"out\.h5\.partial.*'r'.*resume=False"):
        HDF5Sink(out_path, "r", (9, 6, 5), "f8", resume=True)


def test_resume_from_corrupt_partial_starts_again(tmp_path, u16_stack, caplog, truncate_half):
    out_path = tmp_path / "out.h5"
    with pytest.raises(Interrupt), HDF5Sink(out_path, "r", (9, 6, 5), "f4") as sink:
        _run_until(sink, u16_stack, fail_after_blocks=3)
    truncate_half(tmp_path / "out.h5.partial")
    with caplog.at_level(logging.WARNING, logger="stacklab.io.hdf5"):
        sink = HDF5Sink(out_path, "r", (9, 6, 5), "f4", resume=True)
    assert sink.completed == 0 and "starting again" in caplog.text
    sink.map(kernel, u16_stack, progress=False)
    assert sink.close() is True
    with read_hdf5(out_path, "r") as r:
        np.testing.assert_array_equal(np.asarray(r), kernel(u16_stack))


def test_incomplete_close_keeps_partial(tmp_path, caplog):
    out_path = tmp_path / "out.h5"
    sink = create_hdf5_dataset(out_path, "r", (5, 2), "u2")
    sink[0:2] = np.array([[1, 2], [65535, 0]])
    sink[3] = [7, 7]  # not contiguous with 0..1: progress stays at 2
    assert sink.completed == 2
    sink[:, 0] = 9  # not a whole-frame write: progress unchanged
    assert sink.completed == 2
    with caplog.at_level(logging.WARNING, logger="stacklab.io.hdf5"):
        assert sink.close() is False
    assert "2 of 5 frames" in caplog.text
    assert not out_path.exists() and (tmp_path / "out.h5.partial").exists()
    sink = create_hdf5_dataset(out_path, "r", (5, 2), "u2", resume=True)
    assert sink.completed == 2
    np.testing.assert_array_equal(sink[:2], [[9, 2], [9, 0]])
    sink[2:] = np.full((3, 2), 65535)
    assert sink.completed == 5
    assert sink.close() is True
    with read_hdf5(out_path, "r") as r:
        assert r.dtype == np.uint16
        np.testing.assert_array_equal(r[:, 1], [2, 0, 65535, 65535, 65535])


def test_forced_finalize_and_discard(tmp_path):
    sink = create_hdf5_dataset(tmp_path / "a.h5", "r", (3, 2), "f4")
    sink[..., 0] = 1.5
    assert sink.close(finalize=True) is True
    with read_hdf5(tmp_path / "a.h5", "r") as r:
        np.testing.assert_array_equal(r[:, 0], [1.5, 1.5, 1.5])
    sink = create_hdf5_dataset(tmp_path / "b.h5", "r", (3, 2), "f4")
    sink.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]
    with pytest.raises(ValueError, match="closed"):
        sink[0] = 1


def test_sink_append_mode_keeps_other_datasets(tmp_path, u16_stack):
    path = write_hdf5(tmp_path / "a.h5", {"frames": u16_stack, "result": np.zeros(2)})
    with create_hdf5_dataset(path, "result", (9,), "f8", mode="a", compression="gzip") as sink:
        engine.map_frames(
            lambda b: b.astype(np.float64).sum(axis=(1, 2)), u16_stack, out=sink, progress=False
        )
    assert list_datasets(path) == {
        "frames": ((9, 6, 5), np.dtype("u2")),
        "result": ((9,), np.dtype("f8")),
    }
    with read_hdf5(path, "result") as r:
        np.testing.assert_array_equal(r[:], u16_stack.astype(np.float64).sum(axis=(1, 2)))


def test_sink_argument_checks(tmp_path, u16_stack):
    with pytest.raises(ValueError, match="shape"):
        HDF5Sink(tmp_path / "a.h5", "r", (0, 3), "f4")
    with pytest.raises(ValueError, match="mode"):
        HDF5Sink(tmp_path / "a.h5", "r", (2, 3), "f4", mode="x")
    with pytest.raises(ValueError, match="key"):
        HDF5Sink(tmp_path / "a.h5", "/", (2, 3), "f4")
    sink = HDF5Sink(tmp_path / "a.h5", "r", (4, 6, 5), "f4")
    with pytest.raises(ValueError, match="9 frames"):
        sink.map(kernel, u16_stack)
    sink.discard()
    assert list(tmp_path.iterdir()) == []
