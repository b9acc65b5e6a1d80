"""Centre estimators: centre of mass, auto-convolution, true QI (numba and vectorized twins)."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.beads import auto_conv, center_of_mass, locate, qi, simulate
from stacklab.errors import ShapeError

from .conftest import rms


def _gaussian_blobs(x, y, size=32, sigma=3.0):
    t = np.arange(size, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)[:, None, None]
    y = np.asarray(y, dtype=np.float64)[:, None, None]
    return np.exp(-((t[None, None, :] - x) ** 2 + (t[None, :, None] - y) ** 2) / (2 * sigma**2))


def test_center_of_mass_known_answer():
    stack = np.zeros((2, 8, 10), dtype=np.float32)
    stack[0, 2, 3] = 1.0
    stack[0, 4, 7] = 3.0  # weighted: x = (3 + 21) / 4 = 6, y = (2 + 12) / 4 = 3.5
    stack[1, 5, 1] = 2.0
    x, y = center_of_mass(stack)
    np.testing.assert_allclose(x, [6.0, 1.0])
    np.testing.assert_allclose(y, [3.5, 5.0])
    assert x.dtype == np.float64


def test_center_of_mass_backgrounds():
    img = np.full((1, 9, 9), 5.0)
    img[0, 2, 6] = 9.0  # the only deviation from the (mean ~ median) background
    for bg in ("mean", "median"):
        x, y = center_of_mass(img, background=bg)
        if bg == "median":
            np.testing.assert_allclose([x[0], y[0]], [6.0, 2.0])
        else:  # every pixel deviates a little from the mean: pulled toward the frame centre
            assert 4.0 < x[0] < 6.0 and 2.0 < y[0] < 4.0
    with pytest.raises(ValueError, match="background"):
        center_of_mass(img, background="min")


def test_center_of_mass_nan_and_empty_frames():
    stack = _gaussian_blobs([10.0, 12.0, 14.0], [11.0, 13.0, 15.0])
    stack[1, 3, 3] = np.nan
    stack[2] = 0.0
    x, y = center_of_mass(stack)
    assert np.isnan(x[1]) and np.isnan(y[1])
    assert np.isnan(x[2]) and np.isnan(y[2])
    np.testing.assert_allclose([x[0], y[0]], [10.0, 11.0], atol=0.01)


def test_auto_conv_half_pixel_and_subpixel():
    xt = np.array([14.3, 16.7, 15.5])
    yt = np.array([15.9, 14.2, 16.5])
    stack = _gaussian_blobs(xt, yt)
    x, y = auto_conv(stack, np.round(xt), np.round(yt))
    np.testing.assert_array_equal(x * 2, np.round(x * 2))  # multiples of 0.5
    assert np.max(np.abs(x - xt)) <= 0.5 and np.max(np.abs(y - yt)) <= 0.5
    for _ in range(4):  # the window follows the estimate
        xs, ys = auto_conv(
            stack, xt if _ else np.round(xt), yt if _ else np.round(yt), subpixel=True, n_lines=3
        )
    np.testing.assert_allclose(xs, xt, atol=0.02)
    np.testing.assert_allclose(ys, yt, atol=0.02)
    out = auto_conv(stack, xt, yt, return_conv=True)
    assert out[2].shape == (3, 32) and out[3].shape == (3, 32)
    with pytest.raises(ValueError, match="n_lines"):
        auto_conv(stack, xt, yt, n_lines=2)


def test_auto_conv_nan_start_gives_nan():
    stack = _gaussian_blobs([15.0, 16.0], [15.0, 16.0])
    x, _y = auto_conv(stack, [np.nan, 16.0], [15.0, 16.0], subpixel=True)
    assert np.isnan(x[0]) and np.isfinite(x[1])


def test_qi_accuracy_noise_free(beads_clean):
    s = beads_clean
    x0, y0 = center_of_mass(s.images, background="mean")
    assert rms(x0 - s.x) > 0.1  # a poor start...
    x, y = qi(s.images, x0, y0)
    assert rms(np.r_[x - s.x, y - s.y]) < 0.005  # ...made precise
    assert np.all(np.isfinite(x))


def test_qi_from_far_start():
    s = simulate(20, seed=4, xy_range=0.0)  # bead at the centre
    x, y = qi(s.images, s.x + 2.4, s.y - 1.7)
    np.testing.assert_allclose(x, s.x, atol=0.01)
    np.testing.assert_allclose(y, s.y, atol=0.01)


def test_qi_numba_and_vectorized_agree(beads_noisy):
    pytest.importorskip("numba")
    s = beads_noisy
    x0, y0 = center_of_mass(s.images, background="mean")
    a = qi(s.images, x0, y0, backend="numba")
    b = qi(s.images, x0, y0, backend="xp")
    np.testing.assert_allclose(a[0], b[0], atol=1e-9)
    np.testing.assert_allclose(a[1], b[1], atol=1e-9)


def test_qi_nan_handling():
    s = simulate(3, seed=5)
    stack = s.images.copy()
    stack[1, 10, 10] = np.nan
    x, y = qi(stack, [s.x[0], s.x[1], np.nan], s.y)
    assert np.isfinite(x[0]) and np.isnan(x[1]) and np.isnan(x[2]) and np.isnan(y[2])
    ref, _ = qi(s.images[:1], s.x[:1], s.y[:1])
    assert x[0] == ref[0]  # other frames unaffected
    assert np.isnan(stack[1, 10, 10])  # input untouched


def test_qi_bad_options():
    s = simulate(1, seed=1)
    with pytest.raises(ValueError, match="n_iter"):
        qi(s.images, 31.5, 31.5, n_iter=-1)
    with pytest.raises(ValueError, match="radii"):
        qi(s.images, 31.5, 31.5, max_radius=1.0)
    with pytest.raises(ValueError, match="max_shift"):
        qi(s.images, 31.5, 31.5, max_shift=0.0)
    with pytest.raises(ShapeError, match="frames"):
        qi(s.images, [31.5, 31.5], 31.5)


@pytest.mark.parametrize(("method", "tol"), [("qi", 0.005), ("auto_conv", 0.05), ("com", 1.0)])
def test_locate_methods(beads_clean, method, tol):
    s = beads_clean
    x, y = locate(s.images, method=method)
    assert rms(np.r_[x - s.x, y - s.y]) < tol


def test_integer_images_are_widened():
    s = simulate(6, photons=300.0, seed=9)
    assert s.images.max() < 30000
    counts = s.images.astype(np.uint16)
    a = locate(counts)
    b = locate(counts.astype(np.float32))
    np.testing.assert_array_equal(a[0], b[0])
    # near the top of the uint16 range nothing wraps around (the result is scale-free)
    k = 65535 // int(counts.max())
    assert k >= 2
    big = counts * np.uint16(k)
    assert int(big.max()) > 32768
    c = locate(big)
    np.testing.assert_allclose(c[0], a[0], atol=1e-6)


def test_bad_stacks():
    with pytest.raises(ShapeError, match="empty"):
        locate(np.zeros((0, 64, 64), np.float32))
    with pytest.raises(ShapeError, match="3-D"):
        locate(np.zeros(64, np.float32))
    with pytest.raises(TypeError, match="real"):
        locate(np.zeros((2, 16, 16), np.complex64))
