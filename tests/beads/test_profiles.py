"""Radial profiles (angular interpolation and pixel binning) and FFT profiles."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.beads import fft_profiles, profile_radii, radial_profiles
from stacklab.core.profiles import radial_profile
from stacklab.errors import ShapeError


def _radial_image(xc, yc, size=64, f=lambda r: np.cos(r / 4.0) * np.exp(-(r**2) / 400.0)):
    t = np.arange(size, dtype=np.float64)
    xc = np.asarray(xc, dtype=np.float64)[:, None, None]
    yc = np.asarray(yc, dtype=np.float64)[:, None, None]
    r = np.hypot(t[None, None, :] - xc, t[None, :, None] - yc)
    return f(r), f


def test_radii_default_and_custom():
    r = profile_radii((64, 64))
    assert r[0] == 0.0 and r[1] == 0.5 and r[-1] == 29.0
    assert profile_radii((64, 64), bin_width=1.0, n_bins=10).tolist() == list(range(10))
    with pytest.raises(ValueError, match="bin_width"):
        profile_radii((64, 64), bin_width=0.0)
    with pytest.raises(ValueError, match="n_bins"):
        profile_radii((64, 64), n_bins=1)


def test_interp_profile_of_analytic_function():
    xc, yc = np.array([31.3, 30.8]), np.array([32.1, 31.55])
    img, f = _radial_image(xc, yc)
    prof = radial_profiles(img.astype(np.float32), xc, yc)
    r = profile_radii((64, 64))
    # bilinear interpolation error of a smooth function: O(h^2 f'') ~ 1e-2 of its range
    np.testing.assert_allclose(prof, np.broadcast_to(f(r), prof.shape), atol=0.02)
    # a profile about a wrong centre is further off (second order in the offset)
    wrong = radial_profiles(img, xc + 3.0, yc)
    assert np.abs(wrong - f(r)).max() > 0.08


def test_bin_method_is_core_radial_profile():
    xc, yc = np.array([31.3]), np.array([32.1])
    img, _ = _radial_image(xc, yc)
    prof = radial_profiles(img, xc, yc, method="bin", bin_width=1.0, n_bins=20)
    ref = radial_profile(img, np.array([[32.1, 31.3]]), n_bins=20, rounding="nearest")
    np.testing.assert_allclose(prof, ref, equal_nan=True)


def test_symmetry_score():
    xc, yc = np.array([31.5, 31.5]), np.array([31.5, 31.5])
    img, _ = _radial_image(xc, yc)
    img[1, :, 40:] += 0.5  # break the symmetry of frame 1
    _prof, sym = radial_profiles(img, xc, yc, return_symmetry=True)
    assert sym[0] > 0.999
    assert sym[1] < 0.9
    with pytest.raises(ValueError, match="return_symmetry"):
        radial_profiles(img, xc, yc, method="bin", return_symmetry=True)


def test_numba_and_vectorized_agree(beads_noisy):
    pytest.importorskip("numba")
    s = beads_noisy
    a, sa = radial_profiles(s.images, s.x, s.y, return_symmetry=True, backend="numba")
    b, sb = radial_profiles(s.images, s.x, s.y, return_symmetry=True, backend="xp")
    np.testing.assert_allclose(a, b, rtol=1e-9)
    np.testing.assert_allclose(sa, sb, rtol=1e-9, atol=1e-12)


def test_nan_centre_and_nan_frame():
    img, _ = _radial_image([31.0, 31.0, 31.0], [31.0, 31.0, 31.0])
    img[2, 5, 5] = np.nan
    prof = radial_profiles(img, [31.0, np.nan, 31.0], 31.0)
    assert np.all(np.isfinite(prof[0]))
    assert np.all(np.isnan(prof[1])) and np.all(np.isnan(prof[2]))
    binned = radial_profiles(img, [31.0, np.nan, 31.0], 31.0, method="bin")
    assert np.all(np.isnan(binned[1])) and np.all(np.isnan(binned[2]))


def test_bad_profile_options():
    img, _ = _radial_image([31.0], [31.0])
    with pytest.raises(ValueError, match="n_angles"):
        radial_profiles(img, 31.0, 31.0, n_angles=30)
    with pytest.raises(ValueError, match="method"):
        radial_profiles(img, 31.0, 31.0, method="fft")


def test_fft_profile_is_shift_invariant_without_window():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((1, 32, 32))
    shifted = np.roll(img, (3, -5), axis=(1, 2))  # a circular shift changes only phases
    a = fft_profiles(img)
    b = fft_profiles(shifted)
    np.testing.assert_allclose(a, b, equal_nan=True)
    # bins that no integer frequency reaches are NaN (e.g. radius 0.25 at oversample 4)
    assert np.isnan(a[0, 1]) and np.isfinite(a[0, 0]) and np.isfinite(a[0, 4])
    assert a.shape == (1, round(0.25 * 32 * 4))


def test_fft_profile_known_answer_and_window():
    # A single cosine of 4 cycles per frame along x: all magnitude in bin 4 * oversample.
    t = np.arange(32)
    img = np.cos(2 * np.pi * 4 * t / 32)[None, None, :] * np.ones((1, 32, 1))
    prof = fft_profiles(img, oversample=1, f_max=0.5)
    assert np.nanargmax(prof[0]) == 4
    win = fft_profiles(img, 15.5, 15.5, oversample=1, f_max=0.5)
    assert np.nanargmax(win[0]) == 4
    orig = img.copy()
    fft_profiles(img, 15.5, 15.5)
    np.testing.assert_array_equal(img, orig)  # the input is not windowed in place
    with pytest.raises(ShapeError, match="square"):
        fft_profiles(np.zeros((1, 16, 20)))
    with pytest.raises(ValueError, match="both"):
        fft_profiles(img, 15.5)


def test_fill_empty_bins_interpolates():
    # bead centre at a half pixel: no pixel centre within 0.25 px of r = 0 -> bin 0 empty
    xc, yc = np.array([31.5]), np.array([31.5])
    img, _ = _radial_image(xc, yc)
    raw = radial_profiles(img, xc, yc, method="bin", bin_width=0.5, n_bins=12)
    assert np.isnan(raw[0, 0]) and np.isnan(raw[0, 2])
    filled = radial_profiles(img, xc, yc, method="bin", bin_width=0.5, n_bins=12, fill_empty=True)
    assert np.all(np.isfinite(filled))
    ok = np.isfinite(raw)
    np.testing.assert_array_equal(filled[ok], raw[ok])
    # interior gap: the mean of its neighbours; leading gap: the first filled value
    np.testing.assert_allclose(filled[0, 2], 0.5 * (raw[0, 1] + raw[0, 3]))
    np.testing.assert_allclose(filled[0, 0], raw[0, 1])
