"""Camera conversion, offset check, saturation; background estimates; the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.errors import ShapeError
from stacklab.smlm import (
    Camera,
    blink_states,
    check_offset,
    saturated,
    simulate_movie,
    spatial_background,
    temporal_median,
    to_electrons,
    to_photons,
)


def test_to_photons_formula_without_uint16_wraparound():
    cam = Camera(offset=100.0, gain=0.25, qe=0.8)
    adu = np.array([[[50, 100, 500, 65535]]], dtype=np.uint16)
    ph = to_photons(adu, cam)
    np.testing.assert_allclose(ph[0, 0], (np.array([50, 100, 500, 65535.0]) - 100) * 0.25 / 0.8)
    assert ph.dtype == np.float32
    np.testing.assert_allclose(to_electrons(adu, cam), (adu.astype(float) - 100) * 0.25)
    assert adu[0, 0, 0] == 50  # input untouched


def test_offset_map_and_shape_check():
    off = np.full((4, 5), 90.0)
    cam = Camera(offset=off, gain=2.0)
    e = to_electrons(np.full((2, 4, 5), 100, np.uint16), cam)
    np.testing.assert_allclose(e, 20.0)
    with pytest.raises(ShapeError, match="offset"):
        to_electrons(np.zeros((1, 3, 3)), cam)


def test_wrong_offset_raises_a_clear_error():
    sim = simulate_movie(20, (32, 32), n_emitters=3, seed=1)
    for wrong in (180.0, 400.0):  # the true dark level is 100 ADU
        cam = Camera(offset=wrong, gain=0.25)
        with pytest.raises(ValueError, match=f"offset={wrong:g}"):
            check_offset(to_electrons(sim.movie, cam), cam)
    assert check_offset(to_electrons(sim.movie, sim.camera), sim.camera) == pytest.approx(
        20.0, abs=1.5
    )


def test_camera_validation():
    with pytest.raises(ValueError, match="gain"):
        Camera(gain=0.0)
    with pytest.raises(ValueError, match="qe"):
        Camera(qe=1.5)
    with pytest.raises(ValueError, match="variance"):
        Camera(variance=np.array([[-1.0]]))


def test_saturation_mask():
    frames = np.array([[[0, 65535], [100, 65534]]], dtype=np.uint16)
    np.testing.assert_array_equal(saturated(frames, Camera())[0], [[False, True], [False, False]])
    assert saturated(frames.astype(np.float32), Camera()) is None
    np.testing.assert_array_equal(
        saturated(frames.astype(np.float32), Camera(saturation=100))[0],
        [[False, True], [True, True]],
    )


def test_blink_states_match_the_markov_rates():
    rng = np.random.default_rng(0)
    k_on, k_off = 0.02, 0.25
    s = blink_states(20000, 50, k_on, k_off, rng=rng)
    assert s.mean() == pytest.approx(k_on / (k_on + k_off), rel=0.05)
    starts = (s[1:] & ~s[:-1]).sum()
    assert s.sum() / starts == pytest.approx(1 / k_off, rel=0.05)  # mean on-time


def test_simulated_movie_photons_drift_and_camera():
    sim = simulate_movie(
        200, (32, 32), n_emitters=5, photons=2000.0, background=10.0, drift_nm=(0, 100), seed=4
    )
    assert sim.movie.dtype == np.uint16 and sim.movie.shape == (200, 32, 32)
    e = to_electrons(sim.movie, sim.camera).astype(np.float64)
    expected = 10.0 * e.size + sim.truth["intensity [photon]"].sum()
    # PSF mass near the edges is lost; emitters are >= 3 px inside.
    assert e.sum() == pytest.approx(expected, rel=0.01)
    np.testing.assert_allclose(sim.drift_nm[[0, -1], 1], [0.0, 100.0])
    first = sim.truth[sim.truth["frame"] == sim.truth["frame"].min()]
    e0 = sim.emitters[first["emitter"].to_numpy()]
    f0 = first["frame"].to_numpy()[:, None]
    np.testing.assert_allclose(
        first[["y [px]", "x [px]"]].to_numpy(), e0 + sim.drift_nm[f0[:, 0]] / 100.0
    )


def test_temporal_median_and_spatial_background():
    sim = simulate_movie(300, (32, 32), n_emitters=10, background=20.0, seed=2)
    e = to_electrons(sim.movie, sim.camera)
    bg = temporal_median(e)
    assert bg.shape == (32, 32)
    assert np.median(bg) == pytest.approx(20.0, abs=1.0)
    run = temporal_median(e[:21], window=5)
    assert run.shape == (21, 32, 32)
    sp = spatial_background(e[:50])
    assert np.median(sp) == pytest.approx(20.0, rel=0.1)
    # A bright spot does not leak into the opened background.
    frame = np.full((1, 32, 32), 20.0, np.float32)
    frame[0, 14:17, 14:17] += 500.0
    assert spatial_background(frame, size=9)[0, 15, 15] < 25.0
    with pytest.raises(ValueError, match="window"):
        temporal_median(e, window=4)
