"""Detection (difference of Gaussians, stated false-positive rate), crops, Anscombe transform."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from stacklab.errors import ShapeError
from stacklab.smlm import (
    detect,
    dog_filter,
    extract_crops,
    false_positive_rate,
    psf_model,
    threshold_for_rate,
)
from stacklab.smlm.detection import anscombe, edge_gain


def test_threshold_and_rate_are_inverse():
    assert threshold_for_rate(1e-6) == pytest.approx(4.753424, abs=1e-5)
    for k in (2.0, 3.5, 5.0):
        assert threshold_for_rate(false_positive_rate(k)) == pytest.approx(k, rel=1e-9)
    with pytest.raises(ValueError, match="fpr"):
        threshold_for_rate(0.7)


def test_false_detections_on_gaussian_noise_stay_below_the_stated_rate():
    rng = np.random.default_rng(0)
    frames = rng.normal(0.0, 1.0, (400, 64, 64)).astype(np.float32)
    for fpr in (1e-3, 1e-4):
        det = detect(frames, 1.3, fpr=fpr)
        bound = fpr * frames.size
        print(f"fpr {fpr:g}: {len(det)} detections, bound {bound:.0f}")
        assert len(det) <= bound
        assert len(det) >= 0.2 * bound  # the bound is not vacuous


def test_anscombe_makes_poisson_noise_unit_gaussian():
    rng = np.random.default_rng(1)
    for mean in (5.0, 20.0, 200.0):
        a = anscombe(rng.poisson(mean, 200_000).astype(np.float32))
        assert np.std(a) == pytest.approx(1.0, abs=0.03)
    # With read noise of variance 9 e-^2 the transform includes it.
    x = rng.poisson(20.0, 200_000) + rng.normal(0, 3.0, 200_000)
    assert np.std(anscombe(x.astype(np.float32), 9.0)) == pytest.approx(1.0, abs=0.03)


def test_edge_gain_matches_filtered_white_noise():
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 1, (1000, 32, 32)).astype(np.float32)
    f = dog_filter(noise, 0.78, ratio=2.5 / 0.6)
    gain = edge_gain((32, 32), 0.78, ratio=2.5 / 0.6)
    # Row profile (averaged over the middle columns) and the corner, relative to the centre.
    std = np.sqrt(np.mean(f[:, :, 8:24] ** 2, axis=(0, 2)))
    np.testing.assert_allclose(std / std[14:18].mean(), gain[:, 16], rtol=0.03)
    corners = np.sqrt(np.mean(f[:, [0, 0, -1, -1], [0, -1, 0, -1]] ** 2))
    assert corners / std[14:18].mean() == pytest.approx(gain[0, 0], rel=0.05)
    assert gain[0, 0] > 1.3 and gain[16, 16] == 1.0


def test_detects_every_isolated_spot_at_its_pixel():
    rng = np.random.default_rng(3)
    n = 50
    rows = rng.integers(6, 58, n).astype(float) + rng.uniform(-0.4, 0.4, n)
    cols = rng.integers(6, 58, n).astype(float) + rng.uniform(-0.4, 0.4, n)
    frames = np.full((n, 64, 64), 20.0)
    for i in range(n):  # one spot per frame
        p = np.array([cols[i] - (round(cols[i]) - 5), rows[i] - (round(rows[i]) - 5), 1000, 0, 1.3])
        r0, c0 = round(rows[i]) - 5, round(cols[i]) - 5
        frames[i, r0 : r0 + 11, c0 : c0 + 11] += psf_model((11, 11), p)
    frames = anscombe(rng.poisson(frames).astype(np.float32))
    det = detect(frames, 1.3)
    assert len(det) == n
    np.testing.assert_array_equal(det.frame, np.arange(n))
    # The brightest pixel is the spot's own pixel, or (noise, spot near a pixel edge) its neighbour.
    dist = np.maximum(np.abs(det.row - rows), np.abs(det.col - cols))
    assert np.all(dist < 1.0) and np.mean(dist <= 0.5) >= 0.9
    assert np.all(det.snr > det.k)


def test_constant_and_nonfinite_frames_give_no_detection(caplog):
    frames = np.zeros((3, 32, 32), np.float32)
    frames[1] = np.nan
    with caplog.at_level(logging.WARNING, logger="stacklab.smlm.detection"):
        det = detect(frames, 1.3)
    assert len(det) == 0
    assert "NaN" in caplog.text


def test_extract_crops_values_and_edge_windows():
    frames = np.arange(2 * 20 * 30, dtype=np.float32).reshape(2, 20, 30)
    c = extract_crops(frames, np.array([0, 1, 1]), np.array([10, 1, 19]), np.array([15, 2, 29]))
    np.testing.assert_array_equal(c.data[0], frames[0, 7:14, 12:19])
    np.testing.assert_array_equal(c.shifted, [False, True, True])
    np.testing.assert_array_equal(c.top, [7, 0, 13])
    np.testing.assert_array_equal(c.left, [12, 0, 23])
    np.testing.assert_array_equal(c.data[2], frames[1, 13:20, 23:30])
    with pytest.raises(ShapeError, match="crop size"):
        extract_crops(frames[:, :5, :5], np.array([0]), np.array([2]), np.array([2]))
    with pytest.raises(ValueError, match="odd"):
        extract_crops(frames, np.array([0]), np.array([5]), np.array([5]), size=6)
