"""Tests for stacklab.core.masks.fill_masked against a brute-force reference and known answers."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab import backend
from stacklab.core.masks import fill_masked
from stacklab.errors import ShapeError


def _reference(frame, mask, method="median", size=3, sigma=1.0):
    """Per-pixel loop: the definition, written plainly (float64 result)."""
    out = frame.astype(np.float64).copy()
    h = size // 2
    for r, c in zip(*np.nonzero(mask)):
        vals, wts = [], []
        for dr in range(-h, h + 1):
            for dc in range(-h, h + 1):
                rr, cc = r + dr, c + dc
                inside = 0 <= rr < frame.shape[0] and 0 <= cc < frame.shape[1]
                if inside and not mask[rr, cc] and not np.isnan(frame[rr, cc]):
                    vals.append(float(frame[rr, cc]))
                    wts.append(np.exp(-(dr**2 + dc**2) / (2 * sigma**2)))
        if not vals:
            out[r, c] = np.nan
        elif method == "median":
            out[r, c] = np.median(vals)
        else:
            out[r, c] = np.dot(wts, vals) / np.sum(wts)
    return out


def _smooth(shape=(20, 24)):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return (1000 + 7 * rows + 3 * cols).astype(np.uint16)


def test_hot_pixel_restored_to_neighbour_median_exactly():
    img = _smooth()
    hot = img.copy()
    hot[6, 11] = 60000
    mask = np.zeros(img.shape, bool)
    mask[6, 11] = True
    out = fill_masked(hot, mask)
    assert out.dtype == np.uint16
    neighbours = np.delete(img[5:8, 10:13].ravel(), 4)
    assert out[6, 11] == np.median(neighbours)
    assert out[6, 11] == img[6, 11]  # on a plane the neighbour median is the true value
    mask_other = ~mask
    np.testing.assert_array_equal(out[mask_other], hot[mask_other])


def test_adjacent_masked_pixels_use_only_unmasked_neighbours():
    rng = np.random.default_rng(0)
    frame = rng.normal(100, 10, size=(12, 13))
    mask = np.zeros(frame.shape, bool)
    mask[4, 5] = mask[5, 5] = True  # a vertical pair
    mask[0, 0] = True  # a corner
    mask[8, 3:8] = True  # a row segment
    frame[mask] = 1e6  # would dominate any window that included masked pixels
    for size in (3, 5):
        out = fill_masked(frame, mask, size=size)
        np.testing.assert_allclose(out, _reference(frame, mask, size=size), rtol=1e-15)
        assert out[mask].max() < 200
    # the pair: 3x3 window of (4, 5) without (4, 5) and (5, 5)
    win = frame[3:6, 4:7].copy()
    keep = np.ones((3, 3), bool)
    keep[1, 1] = keep[2, 1] = False
    assert fill_masked(frame, mask)[4, 5] == np.median(win[keep])


def test_gaussian_normalized_convolution():
    rng = np.random.default_rng(1)
    frame = rng.normal(size=(10, 11)).astype(np.float32)
    mask = rng.uniform(size=frame.shape) < 0.15
    out = fill_masked(frame, mask, method="gaussian", size=5, sigma=1.3)
    assert out.dtype == np.float32
    ref = _reference(frame, mask, method="gaussian", size=5, sigma=1.3)
    np.testing.assert_allclose(out, ref, rtol=2e-6, atol=2e-6)
    # a plane is reproduced exactly by a symmetric window with all neighbours present
    rows, cols = np.mgrid[:9, :9].astype(float)
    plane = 2 * rows - cols
    m = np.zeros((9, 9), bool)
    m[4, 4] = True
    assert fill_masked(plane, m, method="gaussian", size=3)[4, 4] == pytest.approx(4.0, abs=1e-12)
    assert fill_masked(plane.astype(np.int32), m, method="gaussian").dtype == np.float64


def test_batch_shared_and_per_frame_masks_match_loop_and_input_untouched():
    rng = np.random.default_rng(2)
    stack = rng.integers(0, 4000, size=(2, 3, 9, 10)).astype(np.uint16)
    per_frame = rng.uniform(size=stack.shape) < 0.1
    shared = per_frame[0, 0]
    before, mbefore = stack.copy(), per_frame.copy()
    for mask in (shared, per_frame):
        out = fill_masked(stack, mask)
        assert out.shape == stack.shape and out.dtype == np.uint16
        m = np.broadcast_to(mask, stack.shape)
        for i in range(2):
            for j in range(3):
                ref = _reference(stack[i, j], m[i, j])
                np.testing.assert_array_equal(out[i, j], np.rint(ref).astype(np.uint16))
    assert np.array_equal(stack, before) and np.array_equal(per_frame, mbefore)


def test_integer_median_rounds_half_to_even_and_no_neighbour_cases():
    frame = np.array([[1, 2, 9], [9, 0, 9], [9, 9, 9]], dtype=np.int32)
    mask = frame == 9  # mask all 9s ...
    mask[1, 1] = True  # ... and the centre
    # unmasked neighbours of (1, 1): 1 and 2 -> median 1.5 -> rint -> 2
    assert fill_masked(frame, mask)[1, 1] == 2
    frame[0, 1] = 4  # neighbours 1 and 4 -> 2.5 -> 2 (half to even)
    assert fill_masked(frame, mask)[1, 1] == 2
    everything = np.ones((3, 3), bool)
    np.testing.assert_array_equal(fill_masked(frame, everything), frame)  # ints unchanged
    assert np.isnan(fill_masked(frame.astype(float), everything)).all()
    # NaN neighbours are ignored like masked ones
    f = np.array([[np.nan, 2.0, 4.0], [8.0, 0.0, 8.0], [8.0, 8.0, 8.0]])
    m = np.zeros((3, 3), bool)
    m[1, 1] = True
    assert fill_masked(f, m)[1, 1] == 8.0


def test_validation():
    img = np.zeros((5, 6))
    with pytest.raises(ValueError, match="size"):
        fill_masked(img, np.zeros((5, 6), bool), size=4)
    with pytest.raises(TypeError, match="mask"):
        fill_masked(img, np.zeros((5, 6)))
    with pytest.raises(ShapeError, match="mask"):
        fill_masked(img, np.zeros((6, 5), bool))
    with pytest.raises(ShapeError, match="mask"):
        fill_masked(np.zeros((2, 5, 6)), np.zeros((3, 5, 6), bool))
    with pytest.raises(ValueError, match="sigma"):
        fill_masked(img, np.zeros((5, 6), bool), method="gaussian", sigma=0)
    with pytest.raises(ValueError, match="method"):
        fill_masked(img, np.zeros((5, 6), bool), method="mean")
    out = fill_masked(img, np.zeros((5, 6), bool))
    assert out is not img and np.array_equal(out, img)


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="no CUDA device")
def test_cupy_matches_numpy():
    import cupy as cp

    rng = np.random.default_rng(3)
    stack = rng.integers(0, 4000, size=(4, 16, 15)).astype(np.uint16)
    for mask in (rng.uniform(size=(16, 15)) < 0.1, rng.uniform(size=stack.shape) < 0.1):
        for kw in ({}, {"method": "gaussian", "size": 5}):
            ref = fill_masked(stack, mask, **kw)
            got = fill_masked(cp.asarray(stack), cp.asarray(mask), **kw)
            assert isinstance(got, cp.ndarray) and got.dtype == ref.dtype
            np.testing.assert_allclose(got.get(), ref, rtol=1e-12)
