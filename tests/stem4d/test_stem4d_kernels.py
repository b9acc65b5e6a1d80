"""The compiled kernels of stacklab.stem4d (_numba_kernels): serial vs parallel vs NumPy.

Each parallel kernel is checked against its serial path and against an independent NumPy
computation; the test data are small, so the work threshold for threads is lowered to 0.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from stacklab.core.masks import fill_masked
from stacklab.stem4d import _numba_kernels as K
from stacklab.stem4d import filter_hot_pixels, find_hot_pixels, repair_pixels
from stacklab.stem4d.counting import count_block
from stacklab.stem4d.hotpix import _neighbour_stack, _offsets, _patch_plan


@pytest.fixture(params=["serial", "parallel"])
def threads(request, monkeypatch):
    """Run the kernels serially, or in parallel whatever the amount of work."""
    if request.param == "serial":
        monkeypatch.setattr(K, "PARALLEL", False)
    else:
        monkeypatch.setattr(K, "PARALLEL_MIN_WORK", 0)
    return request.param


# ----------------------------------------------------------------------------- counting


def _events(frames, dark, **kw):
    a = count_block(frames, dark, method="numba", **kw)
    b = count_block(frames, dark, method="array", **kw)
    for key in ("frame", "row", "col"):
        np.testing.assert_array_equal(a[key], b[key])
    if "subpixel" in b:
        np.testing.assert_allclose(a["subpixel"], b["subpixel"], atol=1e-5)
    return a


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32, np.float64])
def test_count_kernel_matches_array_code(threads, dtype):
    """Sparse events on a 41-column detector (not a multiple of the 8-pixel flag words), with
    events on every border, bad pixels, x-rays and plateaus."""
    rng = np.random.default_rng(31)
    n, h, w = 23, 19, 41
    dark = rng.uniform(90, 110, (h, w)).astype(np.float32)
    frames = (dark + rng.normal(0, 2.0, (n, h, w))).round()
    hits = rng.random((n, h, w)) < 0.02
    frames[hits] += rng.uniform(20, 400, hits.sum()).round()
    frames[:, 0, :] += 30 * (rng.random((n, w)) < 0.1)  # first row
    frames[:, -1, -1] += 60  # last pixel
    frames[3, 5, 7:9] = frames[3, 5, 7] + 100  # a plateau: its first pixel is the event
    frames = frames.astype(dtype)
    mask = np.zeros((h, w), bool)
    mask[4, 10] = mask[0, 40] = True
    ev = _events(frames, dark, background=10.0, xray=300.0, mask=mask, subpixel=True)
    print(f"{threads}, {np.dtype(dtype).name}: {ev['row'].size} events")
    assert ev["row"].size > 100
    assert np.any(ev["row"] == 0) and np.any(ev["col"] == w - 1)
    assert not np.any((ev["row"] == 4) & (ev["col"] == 10))
    plateau = (ev["frame"] == 3) & (ev["row"] == 5) & np.isin(ev["col"], (7, 8))
    assert ev["col"][plateau].tolist() == [7]


def test_count_kernel_dense_events_and_nan(threads):
    """Random noise with a threshold below it: about one pixel in 5 is a local maximum, more
    than the first guess of the output size, so the kernel must retry with room for all."""
    rng = np.random.default_rng(32)
    n, h, w = 5, 64, 48
    frames = rng.normal(0, 1, (n, h, w)).astype(np.float32)
    frames[2, 7, 5] = np.nan  # never an event (nor, as in the array code, its neighbours)
    ev = _events(frames, None, background=-10.0)
    per_frame = ev["row"].size / n
    print(f"{threads}: {per_frame:.0f} local maxima per {h * w}-pixel frame")
    assert per_frame > h * w // 32 + 64  # the first output guess of count_events
    assert not np.any((ev["frame"] == 2) & (ev["row"] == 7) & (ev["col"] == 5))


# ----------------------------------------------------------------------------- hot pixels


@pytest.mark.parametrize("nan", [False, True])
@pytest.mark.parametrize("exclude", [False, True])
def test_local_stats_match_nanmedian(nan, exclude):
    """The 8-neighbour sorting network (NaN-free interior) and the generic path both give the
    NumPy median and MAD of the usable neighbours."""
    rng = np.random.default_rng(33)
    img = rng.normal(100, 3, (17, 22))
    img[5, 6] = img[5, 7] = 130.0  # ties and outliers
    if nan:
        img[3, 4] = np.nan
    offs = np.array(_offsets(exclude), dtype=np.int64)
    med, mad = K.local_stats(img, offs[:, 0], offs[:, 1], True)
    med_only, _ = K.local_stats(img, offs[:, 0], offs[:, 1], False)
    nb = _neighbour_stack(img, exclude)
    with np.errstate(all="ignore"):
        ref = np.nanmedian(nb, axis=0)
        ref_mad = np.nanmedian(np.abs(nb - ref[None]), axis=0)
    np.testing.assert_array_equal(med, ref)
    np.testing.assert_array_equal(med_only, ref)
    np.testing.assert_array_equal(mad, ref_mad)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.uint32])
@pytest.mark.parametrize("statistic", ["mean", "max"])
def test_copy_reduce_matches_numpy(threads, dtype, statistic):
    rng = np.random.default_rng(34)
    info = np.iinfo(dtype)
    src = rng.integers(info.min, info.max, (37, 50), dtype=dtype, endpoint=True)
    src[:, 0] = info.max  # full scale: 32-bit partial sums of uint32 data would overflow
    src[:, 1] = info.min
    dst = np.empty_like(src)
    got = K.copy_reduce(src, dst, statistic)
    np.testing.assert_array_equal(dst, src)
    if statistic == "mean":
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, src.sum(axis=0, dtype=np.int64))
    else:
        assert got.dtype == src.dtype
        np.testing.assert_array_equal(got, src.max(axis=0))


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("copy", [True, False])
def test_patch_frames_match_fill_masked(threads, dtype, copy):
    """Copy-and-repair and in-place repair give core.fill_masked's median, frame by frame."""
    rng = np.random.default_rng(35)
    block = rng.normal(100, 30, (31, 20, 23)).astype(dtype)
    if np.dtype(dtype).kind == "f":
        block[4, 6, 6] = np.nan  # a NaN neighbour is skipped
    mask = rng.random((20, 23)) < 0.08
    mask[0, 0] = mask[0, 1] = mask[19, 22] = True  # corner, edge and an adjacent pair
    mask[6, 7] = True
    targets, nbrs, valid, *_ = _patch_plan(mask, 20, 23, 3)
    flat = block.reshape(31, -1)
    if copy:
        out = np.empty_like(flat)
        K.patch_frames(flat, out, targets, nbrs, valid, copy=True)
    else:
        out = flat.copy()
        K.patch_frames(out, out, targets, nbrs, valid, copy=False)
    ref = fill_masked(block, mask, method="median", size=3).reshape(31, -1)
    if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(out, ref, rtol=1e-6)
    else:
        np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(out[:, ~mask.ravel()], flat[:, ~mask.ravel()])


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.int32])
@pytest.mark.parametrize(
    "kw",
    [{}, {"statistic": "max", "threshold": 150.0}, {"cold": True, "exclude_neighbours": True}],
)
def test_fused_filter_matches_detect_then_repair(threads, diffraction_cube, dtype, kw):
    """filter_hot_pixels on an in-memory integer cube (one copy + summary pass, then in-place
    repair) gives find_hot_pixels + repair_pixels exactly, and leaves its input alone."""
    cube, truth = diffraction_cube
    data = np.clip(cube, 0, np.iinfo(dtype).max).astype(dtype)
    before = data.copy()
    repaired, mask = filter_hot_pixels(data, **kw)
    ref_mask = find_hot_pixels(data, **kw)
    np.testing.assert_array_equal(mask, ref_mask)
    ref = repair_pixels(data, ref_mask)
    assert repaired.dtype == data.dtype and repaired.shape == data.shape
    np.testing.assert_array_equal(repaired, ref)
    np.testing.assert_array_equal(data, before)
    if not kw:
        np.testing.assert_array_equal(mask, truth.hot_mask)


def test_run_ranges_runs_each_range_once_and_raises():
    import threading

    seen = []
    lock = threading.Lock()

    def one(r):
        with lock:
            seen.append(r)

    K.run_ranges(one, 37)
    assert sorted(seen) == list(range(37))

    def bad(r):
        if r == 5:
            raise RuntimeError("range 5 failed")

    with pytest.raises(RuntimeError, match="range 5"):
        K.run_ranges(bad, 9)
    assert K.frame_ranges(10, False).tolist() == [0, 10]
    bounds = K.frame_ranges(1000, True)
    assert bounds[0] == 0 and bounds[-1] == 1000 and np.all(np.diff(bounds) > 0)
