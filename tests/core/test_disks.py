"""Tests for stacklab.core.disks: bright-field disk radius and sub-pixel centres.

Known answers: soft disks ``0.5 (1 - tanh((r - R) / (2 w)))`` drawn at sub-pixel centres. The
integrated-intensity radius of such a disk is ``sqrt(R**2 + pi**2 w**2 / 3)``.

Figures (``pytest tests/core/test_disks.py -s``): disk_radius within 0.02 px of that radius and
0.005 px of the centre; disk_centres within 1.1e-4 px of the centres of noise-free disks
(within 1e-3 px with a 1 px template radius error, upsample=8, other edges and sharpening),
0.025 px with a linear background ramp (edge-sharpened; 1.1 px without sharpening), RMS 0.051 px
per axis with Poisson noise at 5000 counts per disk.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from stacklab import backend
from stacklab.core import disk_centres, disk_radius
from stacklab.core.disks import _soft_disk
from stacklab.errors import ShapeError

H, W = 45, 50  # odd x even detector


def _disks(centres, radius=7.0, edge=0.6, shape=(H, W)):
    return np.stack([_soft_disk(shape, c, radius, edge) for c in centres])


@pytest.fixture(scope="module")
def centres():
    rng = np.random.default_rng(7)
    return np.column_stack([rng.uniform(15, 30, 8), rng.uniform(15, 35, 8)])


# -- disk_radius ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("radius", "edge", "centre"),
    [
        (6.0, 0.5, (20.25, 27.5)),
        (6.0, 0.5, (23.7, 25.13)),
        (9.3, 0.7, (20.25, 27.5)),
        (12.0, 1.0, (23.7, 25.13)),
    ],
)
def test_disk_radius_of_soft_disks(radius, edge, centre):
    pattern = _soft_disk((48, 52), centre, radius, edge)
    r, (row, col) = disk_radius(pattern)
    expected = math.sqrt(radius**2 + math.pi**2 * edge**2 / 3)
    print(
        f"R={radius}, w={edge}: radius {r:.4f} (expected {expected:.4f}), centre {row:.4f}, "
        f"{col:.4f} (true {centre})"
    )
    assert r == pytest.approx(expected, abs=0.03)
    assert row == pytest.approx(centre[0], abs=0.01)
    assert col == pytest.approx(centre[1], abs=0.01)
    assert isinstance(r, float) and isinstance(row, float)


def test_disk_radius_ignores_background_scale_and_hot_pixels():
    """Offset, gain, integer counts and a hot pixel brighter than the disk leave the answer."""
    clean = _soft_disk((48, 52), (21.4, 26.8), 8.0, 0.6)
    ref = disk_radius(clean)
    counts = np.round(40 + 1000 * clean).astype(np.uint16)
    counts[3, 45] = 60000
    before = counts.copy()
    r, centre = disk_radius(counts)
    np.testing.assert_array_equal(counts, before)  # input untouched
    assert r == pytest.approx(ref[0], abs=0.01)
    np.testing.assert_allclose(centre, ref[1], atol=0.01)
    # masking the hot pixel gives the same; a threshold of 0.3 finds the same disk
    mask = np.ones(counts.shape, bool)
    mask[3, 45] = False
    r_m, c_m = disk_radius(counts, mask=mask, threshold=0.3)
    assert r_m == pytest.approx(ref[0], abs=0.01)
    np.testing.assert_allclose(c_m, ref[1], atol=0.01)


def test_disk_radius_elliptic_disk_centre():
    """An elliptic disk (anisotropic detector pixels): the centre is still found."""
    yy, xx = np.mgrid[:48, :60].astype(float)
    r = np.hypot((yy - 22.6) / 1.0, (xx - 31.3) / 1.3)
    pattern = 0.5 * (1 - np.tanh((r - 8.0) / (2 * 0.5 / 1.15)))
    radius, (row, col) = disk_radius(pattern)
    assert row == pytest.approx(22.6, abs=0.01)
    assert col == pytest.approx(31.3, abs=0.01)
    assert radius == pytest.approx(8.0 * math.sqrt(1.3), abs=0.1)  # sqrt(area / pi)


def test_disk_radius_errors_name_the_argument():
    good = _soft_disk((30, 30), (15, 15), 6.0, 0.5)
    with pytest.raises(ValueError, match="pattern is flat"):
        disk_radius(np.ones((20, 20)))
    with pytest.raises(ValueError, match="mean pattern is flat"):
        disk_radius(np.zeros((20, 20)), name="mean pattern")
    with pytest.raises(ShapeError, match="pattern must be a 2-D"):
        disk_radius(good[None])
    with pytest.raises(ShapeError, match="pattern"):
        disk_radius(np.zeros((0, 4)))
    bad = good.copy()
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        disk_radius(bad)
    with pytest.raises(ValueError, match="threshold"):
        disk_radius(good, threshold=1.5)
    with pytest.raises(ShapeError, match="mask"):
        disk_radius(good, mask=np.ones((4, 4), bool))
    with pytest.raises(ShapeError, match="mask"):
        disk_radius(good, mask=np.zeros((30, 30), bool))


# -- disk_centres --------------------------------------------------------------------------------


def test_disk_centres_of_soft_disks(centres):
    frames = _disks(centres)
    before = frames.copy()
    found = disk_centres(frames, 7.0)
    err = np.abs(found - centres).max()
    print(f"disk_centres max error {err:.2e} px")
    assert found.shape == (8, 2) and found.dtype == np.float64
    assert err < 1e-3
    np.testing.assert_array_equal(frames, before)
    # options change the estimate but not the answer; a batch equals its frames one by one
    for kw in (dict(edge=0.6), dict(sharpen=0.0), dict(upsample=8), dict(edge=1.0, sharpen=2)):
        assert np.abs(disk_centres(frames, 7.0, **kw) - centres).max() < 1e-3, kw
    assert np.abs(disk_centres(frames, 6.0) - centres).max() < 1e-3  # template radius off 1 px
    one = np.concatenate([disk_centres(f[None], 7.0) for f in frames])
    np.testing.assert_allclose(one, found, atol=1e-10)


def test_disk_centres_integer_counts_and_weights(centres):
    frames = np.round(1000 * _disks(centres)).astype(np.uint16)
    found = disk_centres(frames, 7.0)
    assert np.abs(found - centres).max() < 0.01
    # a bright artefact in a corner pulls the correlation; weights that drop it restore the answer
    spoilt = frames.copy()
    spoilt[:, 0:9, 0:9] = 3000
    weights = np.ones((H, W))
    weights[0:10, 0:10] = 0.0
    assert np.abs(disk_centres(spoilt, 7.0, weights=weights) - centres).max() < 0.01
    assert np.abs(disk_centres(spoilt, 7.0) - centres).max() > 0.05


def test_edge_sharpening_removes_a_background_ramp(centres):
    yy, xx = np.mgrid[:H, :W]
    frames = _disks(centres) + (0.02 * yy + 0.01 * xx + 0.3)
    sharp = np.abs(disk_centres(frames, 7.0) - centres).max()
    plain = np.abs(disk_centres(frames, 7.0, sharpen=0.0) - centres).max()
    print(f"ramp: error {sharp:.3f} px sharpened, {plain:.3f} px plain correlation")
    assert sharp < 0.05
    assert plain > 0.3


def test_disk_centres_with_poisson_noise(centres):
    rng = np.random.default_rng(11)
    clean = _disks(centres)
    counts = rng.poisson(clean * (5000 / clean.sum(axis=(1, 2)))[:, None, None])
    found = disk_centres(counts.astype(np.uint16), 7.0)
    rms = float(np.sqrt(np.mean((found - centres) ** 2)))
    print(f"Poisson noise, 5000 counts per disk: RMS error {rms:.3f} px per axis")
    assert rms < 0.1


def test_empty_frames_give_nan_and_centres_wrap_into_the_detector():
    """The correlation is periodic: a disk that wraps around the detector edge is found, and
    the centre is reported in [-0.5, H - 0.5) x [-0.5, W - 0.5)."""

    def periodic(centre):  # the disk and its copies one detector away
        shifts = [(a * H, b * W) for a in (-1, 0, 1) for b in (-1, 0, 1)]
        return sum(_soft_disk((H, W), np.add(centre, d), 5.0, 0.6) for d in shifts)

    frames = np.stack([np.zeros((H, W)), periodic((0.2, 30.4)), periodic((44.6, 49.8))])
    found = disk_centres(frames, 5.0)
    assert np.all(np.isnan(found[0]))
    np.testing.assert_allclose(found[1], [0.2, 30.4], atol=1e-3)
    np.testing.assert_allclose(found[2], [44.6 - H, 49.8 - W], atol=1e-3)


def test_disk_centres_errors_name_the_argument():
    frames = _disks([(20.0, 25.0)])
    with pytest.raises(ShapeError, match="frames"):
        disk_centres(frames[0], 7.0)
    with pytest.raises(ShapeError, match="frames"):
        disk_centres(np.zeros((0, H, W)), 7.0)
    with pytest.raises(TypeError, match="frames"):
        disk_centres(frames.astype(complex), 7.0)
    with pytest.raises(ValueError, match="radius"):
        disk_centres(frames, -1.0)
    with pytest.raises(ValueError, match="edge"):
        disk_centres(frames, 7.0, edge=0.0)
    with pytest.raises(ValueError, match="sharpen"):
        disk_centres(frames, 7.0, sharpen=5)
    with pytest.raises(ValueError, match="upsample"):
        disk_centres(frames, 7.0, upsample=2)
    with pytest.raises(ShapeError, match="weights"):
        disk_centres(frames, 7.0, weights=np.ones((4, 4)))
    with pytest.raises(ValueError, match="weights"):
        disk_centres(frames, 7.0, weights=-np.ones((H, W)))


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="no CUDA device")
def test_cupy_matches_numpy(centres):
    import cupy as cp

    frames = np.round(1000 * _disks(centres)).astype(np.uint16)
    weights = np.ones((H, W))
    weights[0:3] = 0.5
    ref = disk_centres(frames, 7.0, weights=weights)
    got = disk_centres(cp.asarray(frames), 7.0, weights=cp.asarray(weights))
    assert isinstance(got, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(got), ref, atol=1e-8)
    r_gpu = disk_radius(cp.asarray(frames[0]))
    r_cpu = disk_radius(frames[0])
    assert r_gpu[0] == pytest.approx(r_cpu[0], abs=1e-12)
    np.testing.assert_allclose(r_gpu[1], r_cpu[1], atol=1e-12)
