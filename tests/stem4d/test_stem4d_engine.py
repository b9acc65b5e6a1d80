"""The same results in memory, on Dask with awkward chunks, from files and on a LocalCluster."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from stacklab import engine
from stacklab.io import H5Stack
from stacklab.stem4d import (
    DataCube,
    bin_diffraction,
    count_electrons,
    estimate_thresholds,
    filter_hot_pixels,
    find_hot_pixels,
    read_emd,
    repair_pixels,
    resample_diffraction,
    shift_patterns,
    write_emd,
)
from stacklab.stem4d.simulate import simulate_counting

da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def scan():
    cube, truth = simulate_counting(
        (5, 7),
        (40, 36),
        electrons_per_frame=20,
        xrays_per_frame=0.5,
        n_hot=3,
        n_hot_pairs=1,
        seed=21,
    )
    th = estimate_thresholds(cube, truth.dark)
    return cube, truth, th


def _same_events(a, b):
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.cols, b.cols)
    if a.subpixel is not None:
        np.testing.assert_allclose(a.subpixel, b.subpixel, atol=1e-6)


def test_dask_awkward_chunks_match_memory(scan):
    cube, truth, th = scan
    lazy = da.from_array(cube, chunks=(2, 3, 40, 36))  # 7 and 35 frames do not divide evenly
    _same_events(
        count_electrons(lazy, truth.dark, thresholds=th, subpixel=True),
        count_electrons(cube, truth.dark, thresholds=th, subpixel=True),
    )
    # thresholds estimated from the Dask cube equal those from memory (same frame sample)
    t2 = estimate_thresholds(lazy, truth.dark)
    assert t2.background == pytest.approx(th.background)
    np.testing.assert_array_equal(t2.hot_mask, th.hot_mask)
    b = bin_diffraction(lazy, 3)
    assert hasattr(b, "compute")
    np.testing.assert_array_equal(b.compute(), bin_diffraction(cube, 3))
    mask = find_hot_pixels(lazy)
    np.testing.assert_array_equal(mask, find_hot_pixels(cube))
    np.testing.assert_array_equal(repair_pixels(lazy, mask).compute(), repair_pixels(cube, mask))
    shifts = np.random.default_rng(0).uniform(-2, 2, (5, 7, 2))
    np.testing.assert_allclose(
        shift_patterns(lazy, shifts).compute(), shift_patterns(cube, shifts), atol=1e-9
    )
    np.testing.assert_allclose(
        resample_diffraction(lazy, 0.5, method="fourier").compute(),
        resample_diffraction(cube, 0.5, method="fourier"),
    )


def test_file_backed_cube_and_chunked_outputs(tmp_path, scan):
    cube, truth, th = scan
    path = write_emd(tmp_path / "scan.h5", DataCube(cube))
    lazy = read_emd(path)
    _same_events(
        count_electrons(lazy, truth.dark, thresholds=th, chunk=6),
        count_electrons(cube, truth.dark, thresholds=th),
    )
    mask = find_hot_pixels(lazy, chunk=4)
    out = repair_pixels(lazy, mask, chunk=9, out=tmp_path / "rep.h5")
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["data"][()], repair_pixels(cube, mask))
    out = bin_diffraction(lazy, 2, chunk=5, out=tmp_path / "bin.h5")
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["data"][()], bin_diffraction(cube, 2))
    target = np.zeros((5, 7, 40, 36))
    shift_patterns(lazy, (0.5, -1.25), out=target, chunk=8)
    np.testing.assert_allclose(target, shift_patterns(cube, (0.5, -1.25)), atol=1e-9)
    lazy.data.close()


@pytest.mark.dist
def test_local_cluster_matches_memory(tmp_path, scan):
    cube, truth, th = scan
    path = write_emd(tmp_path / "scan.h5", DataCube(cube))
    source = H5Stack(path, "datacube_root/datacube/data")  # pickles by file name
    lazy = da.from_array(source, chunks=(1, 7, 40, 36))
    mask = find_hot_pixels(cube)
    with engine.cluster(n_workers=2, memory_limit="1GiB"):
        events = count_electrons(lazy, truth.dark, thresholds=th, subpixel=True)
        binned = bin_diffraction(lazy, 2, out=tmp_path / "bin.h5")
        repaired, found = filter_hot_pixels(lazy, out=tmp_path / "rep.h5")
    _same_events(events, count_electrons(cube, truth.dark, thresholds=th, subpixel=True))
    np.testing.assert_array_equal(found, mask)
    with h5py.File(binned) as f:
        np.testing.assert_array_equal(f["data"][()], bin_diffraction(cube, 2))
    with h5py.File(repaired) as f:
        np.testing.assert_array_equal(f["data"][()], repair_pixels(cube, mask))
    source.close()


@pytest.mark.dist
@pytest.mark.slow
def test_file_larger_than_worker_memory(tmp_path):
    """A 416 MiB cube on 2 workers allowed 384 MiB each (about 210 MiB of which is the worker
    process itself: Python, NumPy, h5py, numba): counting, binning, repair, file to file."""
    base, truth = simulate_counting(
        (4, 4),
        (256, 256),
        electrons_per_frame=150,
        n_hot=4,
        n_hot_pairs=2,
        xrays_per_frame=1,
        seed=8,
    )
    th = estimate_thresholds(base, truth.dark)
    reps = (13, 16)
    shape = (base.shape[0] * reps[0], base.shape[1] * reps[1], 256, 256)
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("data", shape=shape, dtype=np.uint16, chunks=(1, 4, 256, 256))
        row = np.tile(base, (1, reps[1], 1, 1))
        for i in range(reps[0]):
            ds[i * 4 : (i + 1) * 4] = row
    limit = 384 * 2**20
    assert path.stat().st_size > limit
    mask = th.hot_mask
    ref_events = count_electrons(base, truth.dark, thresholds=th)
    ref_bin = bin_diffraction(base, 2)
    ref_rep = repair_pixels(base, mask)
    source = H5Stack(path, "data")
    lazy = da.from_array(source, chunks=(1, 16, 256, 256))
    with engine.cluster(n_workers=2, memory_limit=limit):
        events = count_electrons(lazy, truth.dark, thresholds=th, chunk=64)
        bin_diffraction(lazy, 2, out=tmp_path / "bin.h5")
        repair_pixels(lazy, mask, out=tmp_path / "rep.h5")
    source.close()
    counts = events.counts_per_frame()
    np.testing.assert_array_equal(counts, np.tile(ref_events.counts_per_frame(), reps))
    assert events.n_events == ref_events.n_events * math.prod(reps)
    with h5py.File(tmp_path / "bin.h5") as fb, h5py.File(tmp_path / "rep.h5") as fr:
        for i in range(reps[0]):
            sl = slice(i * 4, (i + 1) * 4)
            np.testing.assert_array_equal(fb["data"][sl], np.tile(ref_bin, (1, reps[1], 1, 1)))
            np.testing.assert_array_equal(fr["data"][sl], np.tile(ref_rep, (1, reps[1], 1, 1)))
