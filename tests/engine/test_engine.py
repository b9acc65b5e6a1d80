"""The engine gives identical results on NumPy, h5py, Dask (awkward chunks) and a LocalCluster."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pandas as pd
import pytest

from stacklab import engine
from stacklab.errors import ShapeError

da = pytest.importorskip("dask.array")


def frame_stats(block):
    """Per-frame (sum, max, centroid row) of a block, as float64."""
    b = block.astype(np.float64)
    rows = np.arange(b.shape[1])[None, :, None]
    return np.stack([b.sum((1, 2)), b.max((1, 2)), (b * rows).sum((1, 2)) / b.sum((1, 2))], axis=1)


def sum_and_count(block):
    return np.array([block.astype(np.float64).sum(), block.shape[0]])


def bright_pixels(block, first, threshold):
    f, r, c = np.nonzero(block > threshold)
    return pd.DataFrame({"frame": f + first, "row": r, "col": c})


@pytest.fixture
def stack(rng):
    return rng.integers(0, 65535, size=(53, 12, 10), dtype=np.uint16)


@pytest.fixture
def expected(stack):
    return frame_stats(stack)


def test_map_numpy_chunks_match_whole(stack, expected):
    for chunk in (1, 7, 53, 1000):
        np.testing.assert_array_equal(engine.map_frames(frame_stats, stack, chunk=chunk), expected)


def test_map_dask_awkward_chunks(stack, expected):
    lazy = da.from_array(stack, chunks=(7, 5, 10))
    out = engine.map_frames(frame_stats, lazy)
    assert hasattr(out, "compute")
    np.testing.assert_array_equal(out.compute(), expected)


def test_map_hdf5_dataset(tmp_path, stack, expected):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["data"] = stack
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(engine.map_frames(frame_stats, f["data"], chunk=7), expected)


def test_map_4d_scan_restores_scan_axes(rng):
    scan = rng.random((3, 5, 6, 4))
    want = scan.sum(axis=(2, 3))
    np.testing.assert_allclose(engine.map_frames(lambda b: b.sum((1, 2)), scan, chunk=4), want)
    lazy = da.from_array(scan, chunks=(2, 2, 6, 4))
    np.testing.assert_allclose(engine.map_frames(lambda b: b.sum((1, 2)), lazy).compute(), want)


def test_map_4d_hdf5_scan_reads_partial_rows(tmp_path, rng):
    scan = rng.random((4, 3, 5, 5)).astype(np.float32)
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        f["d"] = scan
    with h5py.File(path, "r") as f:
        got = engine.map_frames(lambda b: b * 2, f["d"], chunk=5)
    np.testing.assert_array_equal(got, scan * 2)


def test_map_into_sink(tmp_path, stack, expected):
    out = np.zeros_like(expected)
    assert engine.map_frames(frame_stats, stack, chunk=9, out=out) is out
    np.testing.assert_array_equal(out, expected)
    with h5py.File(tmp_path / "o.h5", "w") as f:
        sink = f.create_dataset("o", shape=expected.shape, dtype=expected.dtype)
        engine.map_frames(frame_stats, stack, chunk=9, out=sink)
        np.testing.assert_array_equal(sink[...], expected)
    with pytest.raises(ShapeError, match="out must have shape"):
        engine.map_frames(frame_stats, stack, out=np.zeros((2, 3)))


def shift_rows(block, offset):
    """Each frame's sum plus its own per-frame offset (a kernel with per-frame parameters)."""
    return block.astype(np.float64).sum((1, 2)) + offset


@pytest.mark.parametrize("chunk", [1, 4, 7, 100])
def test_map_4d_scan_into_file_sink_by_rows(tmp_path, rng, chunk):
    """A 4D scan goes into an h5py dataset of the full scan shape, block of whole scan rows by
    block (chunk smaller than a row still takes one row), from NumPy and from Dask input."""
    scan = rng.random((5, 3, 6, 4))
    want = scan * 2
    with h5py.File(tmp_path / "o.h5", "w") as f:
        sink = f.create_dataset("o", shape=scan.shape, dtype=scan.dtype)
        assert engine.map_frames(lambda b: b * 2, scan, chunk=chunk, out=sink) is sink
        np.testing.assert_array_equal(sink[...], want)
        lazy_sink = f.create_dataset("lazy", shape=scan.shape, dtype=scan.dtype)
        lazy = da.from_array(scan, chunks=(2, 2, 6, 4))
        engine.map_frames(lambda b: b * 2, lazy, chunk=chunk, out=lazy_sink)
        np.testing.assert_array_equal(lazy_sink[...], want)
        with pytest.raises(ShapeError, match="out must have shape"):
            engine.map_frames(
                lambda b: b * 2, scan, out=f.create_dataset("bad", (15, 6, 4), dtype=np.float64)
            )


def test_map_per_frame_parameters(tmp_path, rng):
    """per_frame arrays reach the kernel sliced to its block, on every path."""
    scan = rng.random((4, 5, 3, 3))
    offset = np.arange(20.0) * 100
    want = (scan.sum((2, 3)).ravel() + offset).reshape(4, 5)
    got = engine.map_frames(shift_rows, scan, chunk=3, per_frame={"offset": offset})
    np.testing.assert_allclose(got, want)
    lazy = da.from_array(scan, chunks=(3, 2, 3, 3))
    got = engine.map_frames(shift_rows, lazy, per_frame={"offset": offset}).compute()
    np.testing.assert_allclose(got, want)
    with h5py.File(tmp_path / "o.h5", "w") as f:
        sink = f.create_dataset("o", shape=(4, 5), dtype=np.float64)
        engine.map_frames(shift_rows, scan, chunk=6, out=sink, per_frame={"offset": offset})
        np.testing.assert_allclose(sink[...], want)
    for bad in (offset[:19], lazy):
        with pytest.raises(ShapeError, match=r"per_frame\['offset'\] must have one row per frame"):
            engine.map_frames(shift_rows, scan, per_frame={"offset": bad})


def test_map_empty_stack_is_an_error():
    with pytest.raises(ShapeError, match="no frames"):
        engine.map_frames(lambda b: b * 2, np.zeros((0, 4, 4)))


def test_iter_blocks_reads_dask_in_order(rng):
    """A Dask stack (also a 4D scan) is read block by block in frame order, as NumPy blocks."""
    scan = rng.random((3, 4, 5, 6))
    lazy = da.from_array(scan, chunks=(2, 3, 5, 6))
    got = list(engine.iter_blocks(lazy, chunk=5))
    assert [first for first, _ in got] == [0, 5, 10]
    assert all(isinstance(block, np.ndarray) for _, block in got)
    np.testing.assert_array_equal(np.concatenate([b for _, b in got]), scan.reshape(12, 5, 6))


def test_reduce_all_backends_agree(stack):
    want = np.array([stack.astype(np.float64).sum(), stack.shape[0]])
    np.testing.assert_array_equal(engine.reduce_frames(sum_and_count, stack, chunk=7), want)
    lazy = da.from_array(stack, chunks=(7, 12, 10))
    np.testing.assert_array_equal(engine.reduce_frames(sum_and_count, lazy), want)
    mx = engine.reduce_frames(lambda b: b.max(0), lazy, merge=np.maximum)
    np.testing.assert_array_equal(mx, stack.max(0))


def test_collect_rows_in_frame_order(stack):
    want = bright_pixels(stack, 0, 65000)
    got = engine.collect_frames(bright_pixels, stack, chunk=7, threshold=65000)
    pd.testing.assert_frame_equal(got, want)
    lazy = da.from_array(stack, chunks=(7, 12, 10))
    pd.testing.assert_frame_equal(engine.collect_frames(bright_pixels, lazy, threshold=65000), want)


def test_inputs_not_modified(stack):
    before = stack.copy()
    engine.map_frames(lambda b: b * 2, stack, chunk=5)
    np.testing.assert_array_equal(stack, before)


def test_bad_arguments(stack):
    with pytest.raises(ValueError, match="chunk"):
        engine.map_frames(frame_stats, stack, chunk=0)
    with pytest.raises(ValueError, match="chunk"):
        engine.map_frames(frame_stats, stack, chunk=True)
    with pytest.raises(ShapeError, match="at least 3 dimensions"):
        engine.map_frames(frame_stats, stack[0])
    with pytest.raises(ShapeError, match="first axis must be the frame axis"):
        engine.map_frames(lambda b: b.sum(), stack)
    with pytest.raises(TypeError, match="stack must be an array"):
        engine.map_frames(frame_stats, [[1, 2]])


@pytest.mark.dist
def test_local_cluster_matches_numpy(stack, expected):
    lazy = da.from_array(stack, chunks=(7, 12, 10))
    before = {k: os.environ.get(k) for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS")}
    with engine.cluster(n_workers=2, threads_per_worker=1, memory_limit="1GiB") as client:
        assert len(client.scheduler_info()["workers"]) == 2
        mapped = engine.map_frames(frame_stats, lazy).compute()
        reduced = engine.reduce_frames(sum_and_count, lazy)
        rows = engine.collect_frames(bright_pixels, lazy, threshold=65000)
    # worker thread limits must not leak into this process
    assert {k: os.environ.get(k) for k in before} == before
    np.testing.assert_array_equal(mapped, expected)
    np.testing.assert_array_equal(reduced, [stack.astype(np.float64).sum(), stack.shape[0]])
    pd.testing.assert_frame_equal(rows, bright_pixels(stack, 0, 65000))


@pytest.mark.dist
def test_cluster_reduces_more_data_than_worker_memory():
    # 3000 x 256 x 256 float32 = 786 MB, through two workers allowed 400 MiB each.
    gen = da.random.default_rng(0)
    lazy = gen.random((3000, 256, 256), chunks=(50, 256, 256), dtype=np.float32)
    with engine.cluster(n_workers=2, memory_limit="400MiB"):
        total = engine.reduce_frames(lambda b: b.sum(axis=0, dtype=np.float64), lazy)
    assert total.shape == (256, 256)
    # uniform [0, 1): the per-pixel mean over 3000 frames is 0.5 +- 0.0053 (1 sigma)
    assert abs(total.mean() / 3000 - 0.5) < 1e-3
    assert np.all(np.abs(total / 3000 - 0.5) < 0.03)
