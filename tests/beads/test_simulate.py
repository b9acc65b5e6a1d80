"""The bead simulator: physics sanity, symmetry, sub-pixel placement, noise, argument checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stacklab.beads import simulate, simulate_movie, simulate_zscan
from stacklab.beads.simulate import bead_spectrum
from stacklab.errors import ShapeError


def test_spectrum_at_zero_frequency_matches_closed_form():
    # T(0) = 2 pi R^2 int_0^1 (exp(i a u) - 1) u du, a = 2 k0 R (n_bead - n_medium).
    radius, wavelength, nb, nm = 1500.0, 550.0, 1.59 + 0.002j, 1.33
    a = 2.0 * (2.0 * np.pi / wavelength) * radius * (nb - nm)
    exact = (
        2.0 * np.pi * radius**2 * (np.exp(1j * a) / (1j * a) + (np.exp(1j * a) - 1.0) / a**2 - 0.5)
    )
    got = bead_spectrum(0.0, radius_nm=radius, wavelength_nm=wavelength, n_bead=nb, n_medium=nm)
    assert abs(got - exact) / abs(exact) < 1e-10


def test_spectrum_weak_phase_limit_is_volume_times_phase():
    # For a tiny index step, T(0) ~ i k0 dn * (4/3) pi R^3 (first-order Born).
    dn, radius, wavelength = 1e-6, 1000.0, 500.0
    got = bead_spectrum(0.0, radius_nm=radius, wavelength_nm=wavelength, n_bead=1.33 + dn)
    expected = 1j * (2 * np.pi / wavelength) * dn * (4.0 / 3.0) * np.pi * radius**3
    assert abs(got - expected) / abs(expected) < 1e-4


def test_shapes_truth_and_dtype():
    sim = simulate(5, size=(48, 40), seed=0)
    assert sim.images.shape == (5, 48, 40)
    assert sim.images.dtype == np.float32
    assert sim.x.shape == sim.y.shape == sim.z.shape == (5,)
    assert np.all(np.abs(sim.x - 19.5) <= 2.0) and np.all(np.abs(sim.y - 23.5) <= 2.0)
    assert np.all(np.abs(sim.z) <= 5000.0)
    assert len(sim) == 5
    # Far from an in-focus bead the intensity is the unscattered background, 1.
    far = simulate(1, size=128, x=63.5, y=63.5, z=0.0).images[0]
    assert abs(float(np.median(far[:16, :16])) - 1.0) < 0.05


def test_centred_bead_is_symmetric():
    sim = simulate(3, x=31.5, y=31.5, z=[-3000.0, 0.0, 2500.0])
    im = sim.images.astype(np.float64)
    scale = np.abs(im).max()
    np.testing.assert_allclose(im, im[:, ::-1, ::-1], atol=1e-6 * scale)
    np.testing.assert_allclose(im, np.transpose(im, (0, 2, 1)), atol=1e-6 * scale)


def test_half_pixel_position_is_point_symmetric_about_the_truth():
    # A bead at (x, y) = (30.5, 33.5): inversion about it maps pixel (i, j) to (67 - i, 61 - j).
    sim = simulate(1, x=30.5, y=33.5, z=1200.0)
    im = sim.images[0].astype(np.float64)
    part = im[4:64, 0:62]  # rows 4..63 <-> 63..4, cols 0..61 <-> 61..0
    np.testing.assert_allclose(part, part[::-1, ::-1], atol=1e-6 * np.abs(im).max())
    # ... and not about a point half a pixel away.
    wrong = im[3:64, 0:62]
    assert np.abs(wrong - wrong[::-1, ::-1]).max() > 1e-2


def test_integer_shift_moves_the_image_exactly():
    a = simulate(1, x=30.25, y=31.75, z=-800.0).images[0].astype(np.float64)
    b = simulate(1, x=31.25, y=29.75, z=-800.0).images[0].astype(np.float64)
    np.testing.assert_allclose(b[:-2, 1:], a[2:, :-1], atol=1e-6 * np.abs(a).max())


def test_subpixel_shift_changes_the_image_smoothly():
    base = simulate(1, x=31.5, y=31.5, z=500.0).images[0].astype(np.float64)
    d1 = simulate(1, x=31.51, y=31.5, z=500.0).images[0].astype(np.float64) - base
    d2 = simulate(1, x=31.52, y=31.5, z=500.0).images[0].astype(np.float64) - base
    # Linear response to small shifts: doubling the shift doubles the change.
    np.testing.assert_allclose(d2, 2.0 * d1, atol=0.02 * np.abs(d2).max())
    assert np.abs(d1).max() > 1e-4


def test_poisson_noise_mean_and_variance():
    z = np.zeros(400)
    mean = simulate(1, x=31.5, y=31.5, z=0.0, photons=1000.0, noise=False).images[0]
    noisy = simulate(400, x=31.5, y=31.5, z=z, photons=1000.0, seed=3).images
    np.testing.assert_array_equal(noisy, np.round(noisy))  # counts
    corner = noisy[:, :6, :6].astype(np.float64)
    expected = mean[:6, :6].astype(np.float64)
    assert abs(corner.mean() / expected.mean() - 1.0) < 0.002
    ratio = corner.var(axis=0).mean() / expected.mean()
    assert 0.93 < ratio < 1.07
    expected_scaled = simulate(1, x=31.5, y=31.5, z=0.0).images[0] * 1000.0
    np.testing.assert_allclose(mean, expected_scaled, rtol=1e-5)


def test_seed_reproducible():
    a = simulate(3, seed=7, photons=100.0)
    b = simulate(3, seed=7, photons=100.0)
    c = simulate(3, seed=8, photons=100.0)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)


def test_zscan_puts_bead_at_centre():
    z = np.array([-1000.0, 0.0, 1000.0])
    scan = simulate_zscan(z, size=32)
    np.testing.assert_array_equal(scan.z, z)
    np.testing.assert_array_equal(scan.x, 15.5)
    np.testing.assert_array_equal(scan.y, 15.5)
    # Defocus changes the image.
    assert np.abs(scan.images[0] - scan.images[2]).max() > 0.1


def test_movie_truth_table_and_bead_images():
    movie, truth = simulate_movie(4, shape=(96, 192), n_beads=2, roi_size=48, seed=2)
    assert movie.shape == (4, 96, 192)
    assert list(truth.columns) == ["frame", "bead", "x", "y", "z"]
    assert len(truth) == 8
    np.testing.assert_array_equal(truth.frame.to_numpy(), np.repeat(np.arange(4), 2))
    # The image deviates from the background most near each bead.
    dev = np.abs(movie[0] - np.median(movie[0]))
    for _, row in truth[truth.frame == 0].iterrows():
        r, c = round(row.y), round(row.x)
        assert dev[r - 10 : r + 11, c - 10 : c + 11].max() > 10 * np.median(dev)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"na": 1.4}, "na"),
        ({"n_bead": -1.0}, "n_bead"),
        ({"pixel_size_nm": 0.0}, "pixel_size_nm"),
        ({"photons": -5.0}, "photons"),
        ({"size": 2}, "size"),
        ({"pad": 0.5}, "pad"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate(2, **kwargs)


def test_frame_count_needed():
    with pytest.raises(ValueError, match="n_frames"):
        simulate()
    with pytest.raises(ValueError, match="x"):
        simulate(3, x=[1.0, 2.0])
    with pytest.raises(ValueError, match="beads"):
        simulate_movie(2, shape=(64, 64), n_beads=4)


def test_scalar_z_range_is_a_half_width_and_bad_range_is_named():
    sim = simulate(50, z_range=300.0, seed=3, noise=False)
    assert np.all(np.abs(sim.z) <= 300.0)
    assert sim.z.min() < 0 < sim.z.max()
    with pytest.raises(ValueError, match="z_range"):
        simulate(5, z_range=(1.0, 2.0, 3.0), seed=3)


def test_movie_drift_moves_beads_and_truth():
    kw = dict(shape=(96, 192), n_beads=2, roi_size=48, z_range=(800.0, 800.0), seed=4)
    still, truth0 = simulate_movie(3, **kw)
    # drift=None and an all-zero drift give the same movie as before
    same, truth_same = simulate_movie(3, drift=np.zeros((3, 2)), **kw)
    np.testing.assert_array_equal(same, still)
    pd.testing.assert_frame_equal(truth_same, truth0)
    # an integer drift translates the frame exactly (the patches move with the beads)
    drift = np.array([[0.0, 0.0], [5.0, -3.0], [-4.0, 2.0]])
    moved, truth = simulate_movie(3, drift=drift, **kw)
    for f in (1, 2):
        dx, dy = (int(v) for v in drift[f])
        np.testing.assert_allclose(
            np.roll(still[f], (dy, dx), axis=(0, 1))[8:-8, 8:-8], moved[f][8:-8, 8:-8], atol=1e-6
        )
        rows = truth.frame == f
        np.testing.assert_allclose(truth.x[rows], truth0.x[rows] + dx)
        np.testing.assert_allclose(truth.y[rows], truth0.y[rows] + dy)
    np.testing.assert_array_equal(truth.z, truth0.z)
    # per-bead trajectories: bead 1 moves, bead 0 stays
    per_bead = np.zeros((3, 2, 2))
    per_bead[:, 1, 1] = [0.0, 1.5, 3.0]
    _, truth_pb = simulate_movie(3, drift=per_bead, **kw)
    # rows are (frame, bead) = (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)
    np.testing.assert_allclose(truth_pb.y - truth0.y, [0.0, 0.0, 0.0, 1.5, 0.0, 3.0])
    np.testing.assert_array_equal(truth_pb.x, truth0.x)


def test_movie_bad_drift():
    with pytest.raises(ShapeError, match="drift"):
        simulate_movie(3, shape=(96, 192), n_beads=2, roi_size=48, drift=np.zeros((4, 2)))
    with pytest.raises(ShapeError, match="drift"):
        simulate_movie(3, shape=(96, 192), n_beads=2, roi_size=48, drift=np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match="drift must be finite"):
        simulate_movie(
            2, shape=(96, 192), n_beads=2, roi_size=48, drift=[[0.0, 0.0], [np.nan, 1.0]]
        )
