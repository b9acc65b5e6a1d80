"""make_mask, make_whitefield, update_whitefield and guess_roi against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.speckle import (
    guess_roi,
    make_mask,
    make_reference,
    make_whitefield,
    simulate,
    update_whitefield,
)

from .conftest import golden_file


@pytest.mark.parametrize("photons", [1e4, 1e2, None])
def test_mask_finds_hot_and_dead_pixels_only(photons):
    s = simulate((64, 64), (4, 4), photons=photons, n_hot=4, n_dead=4, seed=21)
    mask = make_mask(s.data)
    assert mask.dtype == bool and mask.shape == (64, 64)
    np.testing.assert_array_equal(mask, s.mask)  # every bad pixel, no good one


def test_mask_corners_nan_integers_and_gaps():
    s = simulate((48, 48), (3, 3), seed=22)
    data = s.data.astype(np.uint16)  # integer input is widened
    mask = make_mask(data)
    assert mask[0, 0] and mask[-1, -1] and mask.all()
    bad = s.data.copy()
    bad[:, 10, 11] = np.nan
    bad[:, :, 30] = 0.0  # a dead column (module gap)
    m2 = make_mask(bad, mask_gaps=True)
    assert not m2[10, 11]
    assert not m2[:, 30].any()
    assert m2[6:-6, 29].all() and m2[6:-6, 31].all()
    assert np.isfinite(bad[:, 10, 11]).sum() == 0  # input untouched


def test_mask_one_dimensional(scan_1d):
    s = simulate((1, 200), (1, 12), n_hot=2, n_dead=2, seed=23)
    np.testing.assert_array_equal(make_mask(s.data), s.mask)


@pytest.mark.parametrize("name", ["scan_2d.npz", "scan_1d.npz"])
def test_mask_on_golden_scans(name):
    g = np.load(golden_file(name))
    np.testing.assert_array_equal(make_mask(g["in_data"]), g["truth_mask"])


def test_whitefield_median_and_fill(scan_small):
    s = scan_small
    W = make_whitefield(s.data, s.mask)
    good = s.mask
    np.testing.assert_allclose(W[good], np.median(s.data, axis=0)[good])
    assert np.all(W > 0)
    # filled bad pixels resemble their neighbourhood (the whitefield is smooth)
    bad = np.argwhere(~good)
    for i, j in bad:
        assert W[i, j] == pytest.approx(s.whitefield[i, j], rel=0.15)
    with pytest.raises(ValueError, match="masked"):
        make_whitefield(s.data, np.zeros((64, 64), bool))
    with pytest.raises(ValueError, match="zero"):
        make_whitefield(np.zeros((3, 8, 8)))


def test_update_whitefield_removes_speckle_imprint(scan_clean):
    s = scan_clean
    W0 = make_whitefield(s.data)
    ref = make_reference(s.data, None, s.whitefield, s.dij, s.pixel_map, iterations=4)
    W1 = update_whitefield(s.data, None, ref.image, s.pixel_map, ref.n0, ref.m0, s.dij, W=W0)
    inner = (slice(8, -8), slice(8, -8))

    def err(w):
        r = (w / s.whitefield)[inner]
        return float(np.std(r / np.median(r)))

    assert err(W1) < 0.3 * err(W0)
    assert err(W1) < 0.01


def test_guess_roi_box_and_scans(scan_small):
    box = np.full((24, 30), 2.0)
    box[5:15, 7:21] = 100.0
    assert guess_roi(box) == [5, 15, 7, 21]  # speckle_tracking returns [4, 14, 6, 20]
    roi = guess_roi(scan_small.whitefield)
    assert roi == [4, 60, 4, 60]
    assert guess_roi(np.ones((1, 40)) * np.r_[np.zeros(5), np.ones(30), np.zeros(5)]) == [
        0,
        1,
        5,
        35,
    ]
    with pytest.raises(ValueError):
        guess_roi(np.ones(5))
