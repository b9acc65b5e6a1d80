"""stacklab.compat.magtrack: API surface, analytic answers, no mutation, errors, CuPy agreement.

The comparison with magtrack 1.0.0's recorded outputs is in test_magtrack_golden.py.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest

from stacklab.compat import magtrack as mt
from stacklab.errors import ShapeError

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "magtrack"

# The documented signatures (shared/seeds/magtrack.txt): name -> [(parameter, default)],
# ``inspect.Parameter.empty`` for required ones.
_E = inspect.Parameter.empty
SEED_SIGNATURES = {
    "binmean": [("x", _E), ("weights", _E), ("n_bins", _E)],
    "pearson": [("x", _E), ("y", _E)],
    "gaussian": [("x", _E), ("mu", _E), ("sigma", _E)],
    "gaussian_2d": [("x", _E), ("y", _E), ("mu_x", _E), ("mu_y", _E), ("sigma", _E)],
    "crop_stack_to_rois": [("stack", _E), ("rois", _E)],
    "parabolic_vertex": [("data", _E), ("vertex_est", _E), ("n_local", _E), ("weighted", True)],
    "_qi_sample_axis_profiles": [("stack", _E), ("x", _E), ("y", _E), ("axis", _E)],
    "_qi_quadratic_offsets": [("samples", _E)],
    "qi": [("stack", _E), ("x_old", _E), ("y_old", _E)],
    "center_of_mass": [("stack", _E), ("background", "none")],
    "auto_conv": [("stack", _E), ("x_old", _E), ("y_old", _E), ("return_conv", False)],
    "auto_conv_sub_pixel": [("stack", _E), ("x_old", _E), ("y_old", _E), ("n_local", 5)],
    "auto_conv_multiline": [
        ("stack", _E),
        ("x_old", _E),
        ("y_old", _E),
        ("line_ratio", 0.05),
        ("return_conv", False),
    ],
    "auto_conv_multiline_sub_pixel": [
        ("stack", _E),
        ("x_old", _E),
        ("y_old", _E),
        ("line_ratio", 0.1),
        ("n_local", 5),
    ],
    "radial_profile": [("stack", _E), ("x", _E), ("y", _E), ("oversample", 1)],
    "fft_profile": [
        ("stack", _E),
        ("x", None),  # documented as required; None = 1.0.0's centre-less variant
        ("y", None),
        ("oversample", 4),
        ("rmin", 0.0),
        ("rmax", 0.5),
        ("gaus_factor", 6.0),
    ],
    "lookup_z": [("profiles", _E), ("zlut", _E), ("n_local", 5)],
    "stack_to_xyzp_advanced": [("stack", _E), ("zlut", None), ("kwargs", _E)],
    "stack_to_xyzp": [("stack", _E), ("zlut", None)],
}


@pytest.mark.parametrize("name", sorted(SEED_SIGNATURES))
def test_documented_signature(name):
    func = getattr(mt, name)
    params = list(inspect.signature(func).parameters.values())
    assert [(p.name, p.default) for p in params] == SEED_SIGNATURES[name]
    assert "Returns" in (func.__doc__ or "")


def bead_stack(x, y, width=40, dtype=np.float64):
    """Ringed, radially symmetric bead images (W, W, n) centred at column x, row y."""
    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    t = np.arange(width, dtype=float)
    r = np.hypot(t[None, :, None] - x, t[:, None, None] - y)
    img = 1.0 + 0.6 * np.cos(1.3 * r) * np.exp(-((r / 6.0) ** 2)) - 0.4 * np.exp(-((r / 2.0) ** 2))
    return img.astype(dtype)


# ------------------------------------------------------------------------------------------
# small utilities
# ------------------------------------------------------------------------------------------


def test_binmean_analytic_and_no_mutation():
    x = np.array([[0, 1], [0, 3], [2, 3], [5, 9], [4, 1]])
    w = np.array([[1.0, 10.0], [3.0, 20.0], [5.0, 30.0], [7.0, 40.0], [9.0, 50.0]])
    x0 = x.copy()
    out = mt.binmean(x, w, 4)
    expected = np.array([[2.0, np.nan], [np.nan, 30.0], [5.0, np.nan], [np.nan, 25.0]])
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(x, x0)  # magtrack clips x in place
    assert mt.binmean(x, w.astype(np.float32), 4).dtype == np.float32
    with pytest.raises(TypeError, match="x must hold integer"):
        mt.binmean(x.astype(float), w, 4)
    with pytest.raises(ShapeError, match="weights"):
        mt.binmean(x, w[:3], 4)


def test_pearson_analytic():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    y = np.stack([2 * x[:, 1] + 5, -x[:, 0], np.full(30, 4.0)], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a constant column gives NaN without a warning
        r = mt.pearson(x, y)
    assert r.shape == (3, 3)
    assert r[0, 1] == pytest.approx(1.0, abs=1e-12)
    assert r[1, 0] == pytest.approx(-1.0, abs=1e-12)
    assert np.all(np.isnan(r[2]))
    np.testing.assert_allclose(r[:2], np.corrcoef(y[:, :2].T, x.T)[:2, 2:], atol=1e-12)
    with pytest.raises(ShapeError, match="same number of rows"):
        mt.pearson(x, y[:10])


def test_gaussian_and_gaussian_2d_axes():
    g = mt.gaussian(np.array([0.5, 1.5, 2.5]), 1.5, 2.0)
    np.testing.assert_allclose(g, [np.exp(-1 / 8), 1.0, np.exp(-1 / 8)], rtol=1e-15)
    x = np.arange(7.0)
    y = np.arange(5.0)
    g2 = mt.gaussian_2d(x, y, np.array([5.0, 1.0]), np.array([2.0, 3.0]), 1.0)
    assert g2.shape == (7, 5, 2)  # axis 0 follows x
    assert np.unravel_index(np.argmax(g2[:, :, 0]), (7, 5)) == (5, 2)
    assert np.unravel_index(np.argmax(g2[:, :, 1]), (7, 5)) == (1, 3)


def test_crop_stack_to_rois():
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 60000, size=(20, 24, 3), dtype=np.uint16)
    rois = np.array([[0, 5, 2, 7], [10, 15, 19, 24]])
    out = mt.crop_stack_to_rois(stack, rois)
    assert out.shape == (5, 5, 3, 2) and out.dtype == np.uint16
    np.testing.assert_array_equal(out[..., 0], stack[0:5, 2:7])
    np.testing.assert_array_equal(out[..., 1], stack[10:15, 19:24])
    with pytest.raises(ValueError, match="square"):
        mt.crop_stack_to_rois(stack, np.array([[0, 5, 0, 6]]))
    with pytest.raises(ValueError, match="inside"):
        mt.crop_stack_to_rois(stack, np.array([[16, 21, 0, 5]]))


def test_parabolic_vertex_exact_and_ends():
    t = np.arange(20.0)
    data = np.stack([-((t - 7.3) ** 2), (t - 12.6) ** 2 + 3, -((t - 1.2) ** 2)])
    v = mt.parabolic_vertex(data, np.array([7.0, 12.4, 1.0]), 5)
    np.testing.assert_allclose(v[:2], [7.3, 12.6], rtol=1e-12)
    assert np.isnan(v[2])  # estimate within n_local // 2 of the start: NaN (magtrack)
    v = mt.parabolic_vertex(data, np.array([7.0, 12.4, np.nan]), 7, weighted=False)
    np.testing.assert_allclose(v[:2], [7.3, 12.6], rtol=1e-12)
    assert np.isnan(v[2])
    with pytest.raises(ValueError, match="n_local"):
        mt.parabolic_vertex(data, np.array([7.0, 12.0, 5.0]), 4)


# ------------------------------------------------------------------------------------------
# x, y
# ------------------------------------------------------------------------------------------


def test_center_of_mass_single_pixel_x_is_column():
    stack = np.zeros((9, 9, 2))
    stack[2, 6, 0] = 5.0  # row 2, column 6
    stack[7, 1, 1] = 1.0
    x, y = mt.center_of_mass(stack)
    np.testing.assert_array_equal(x, [6.0, 1.0])
    np.testing.assert_array_equal(y, [2.0, 7.0])
    x, y = mt.center_of_mass(np.zeros((9, 9, 1)))
    assert np.isnan(x[0]) and np.isnan(y[0])
    with pytest.raises(ValueError, match="background"):
        mt.center_of_mass(stack, background="min")


def test_center_of_mass_integer_stack_is_widened():
    stack = (bead_stack([17.3], [21.8]) * 1000).astype(np.uint16)
    for bg in ("none", "mean", "median"):
        xi, yi = mt.center_of_mass(stack, bg)  # |I - median| would wrap in uint16
        xf, yf = mt.center_of_mass(stack.astype(np.float64), bg)
        np.testing.assert_allclose([xi[0], yi[0]], [xf[0], yf[0]], rtol=1e-12)
        assert xi.dtype == np.float64


@pytest.mark.parametrize("func", ["auto_conv", "auto_conv_multiline"])
def test_auto_conv_half_pixel_steps(func):
    xs, ys = np.array([17.3, 21.6, 19.5]), np.array([22.8, 18.1, 20.0])
    stack = bead_stack(xs, ys)
    x, y = getattr(mt, func)(stack, xs + 0.8, ys - 0.9)
    np.testing.assert_array_equal(x % 0.5, 0)
    assert np.max(np.abs(x - xs)) <= 0.25 + 1e-12 and np.max(np.abs(y - ys)) <= 0.25 + 1e-12
    col_max, row_max, col_con, row_con = getattr(mt, func)(stack, xs, ys, return_conv=True)
    assert col_con.shape == (40, 3) and row_con.shape == (3, 40)
    assert col_max.dtype.kind == "i"
    np.testing.assert_array_equal(col_max, np.argmax(col_con, axis=0))
    np.testing.assert_array_equal((19 + row_max) / 2, getattr(mt, func)(stack, xs, ys)[0])


@pytest.mark.parametrize("func", ["auto_conv_sub_pixel", "auto_conv_multiline_sub_pixel"])
def test_auto_conv_sub_pixel_accuracy(func):
    xs, ys = np.array([17.3, 21.6, 19.5, 20.15]), np.array([22.8, 18.1, 20.0, 19.45])
    stack = bead_stack(xs, ys)
    x, y = getattr(mt, func)(stack, xs + 0.6, ys - 0.7)
    assert np.max(np.abs(x - xs)) < 0.03 and np.max(np.abs(y - ys)) < 0.03
    # a NaN start gives NaN for that image only
    x2, y2 = getattr(mt, func)(stack, np.r_[np.nan, xs[1:]], ys)
    assert np.isnan(x2[0]) and np.isnan(y2[0]) and np.all(np.isfinite(x2[1:]))


def test_qi_smooth_peak_and_helpers():
    t = np.arange(30.0)
    xs, ys = np.array([14.3, 15.8]), np.array([16.2, 13.7])
    stack = np.exp(-((t[None, :, None] - xs) ** 2 + (t[:, None, None] - ys) ** 2) / (2 * 4.0**2))
    x, y = mt.qi(stack, np.round(xs), np.round(ys))
    assert np.max(np.abs(x - xs)) < 0.03 and np.max(np.abs(y - ys)) < 0.03
    s = mt._qi_sample_axis_profiles(stack, np.round(xs), np.round(ys), 1)
    assert s.shape == (2, 3)
    np.testing.assert_allclose(
        s[:, 1], stack[np.round(ys).astype(int), np.round(xs).astype(int), [0, 1]], rtol=1e-12
    )
    offsets = mt._qi_quadratic_offsets(np.array([[1.0, 2.0, 1.0], [0.0, 1.0, 1.5], [1, 1, 1]]))
    np.testing.assert_allclose(offsets, [0.0, 1.5, np.nan])  # collinear samples: NaN


# ------------------------------------------------------------------------------------------
# profiles and z
# ------------------------------------------------------------------------------------------


def test_radial_profile_of_distance_image():
    xs, ys = np.array([15.0, 16.4]), np.array([15.0, 14.7])
    t = np.arange(32.0)
    r = np.hypot(t[None, :, None] - xs, t[:, None, None] - ys)
    for oversample in (1, 3):
        p = mt.radial_profile(r, xs, ys, oversample=oversample)
        assert p.shape == (16 * oversample, 2)
        centres = np.arange(16 * oversample) / oversample
        ok = np.isfinite(p)
        # each bin averages radii within +-0.5/oversample of its centre
        assert np.all(
            np.abs(p[ok] - np.broadcast_to(centres[:, None], p.shape)[ok]) <= 0.5 / oversample
        )
    p = mt.radial_profile(r.astype(np.float32), xs, np.r_[np.nan, 14.7])
    assert p.dtype == np.float32 and np.all(np.isnan(p[:, 0])) and np.all(np.isfinite(p[1:, 1]))


def test_fft_profile_window_is_on_the_bead():
    # A single bright pixel at row 5, column 20: |FFT| is flat and equals the window there.
    stack = np.zeros((32, 32, 1))
    stack[5, 20, 0] = 2.0
    before = stack.copy()
    p = mt.fft_profile(stack, np.array([20.0]), np.array([5.0]), oversample=1)
    np.testing.assert_array_equal(stack, before)  # not windowed in place
    np.testing.assert_allclose(p, 2.0, rtol=1e-12)  # window centred on the pixel: weight 1
    # magtrack's transposed window (row x, column y) would weigh it exp(-(15^2+15^2)/(2 s^2)).
    p_swapped = mt.fft_profile(stack, np.array([5.0]), np.array([20.0]), oversample=1)
    np.testing.assert_allclose(p_swapped, 2.0 * np.exp(-(2 * 15.0**2) / (2 * (32 / 6) ** 2)))


def test_fft_profile_ring_frequency():
    t = np.arange(32.0)
    stack = np.cos(2 * np.pi * 5 * t / 32)[None, :, None] * np.ones((32, 1, 1))
    p = mt.fft_profile(stack, oversample=1, rmin=0.0, rmax=1.0)  # no window
    assert p.shape == (16, 1)  # rmax is in units of W / 2 frequency samples
    assert int(np.nanargmax(p[:, 0])) == 5
    p4 = mt.fft_profile(stack, oversample=4, rmax=1.0)
    assert p4.shape == (64, 1) and int(np.nanargmax(p4[:, 0])) == 20
    with pytest.raises(ValueError, match="both"):
        mt.fft_profile(stack, np.array([3.0]))
    with pytest.raises(ValueError, match="rmin"):
        mt.fft_profile(stack, rmin=0.5, rmax=0.5)


def make_zlut(z, n_bins=16, noise=0.0, seed=0):
    """Profiles whose ring radius grows with z: (1 + n_bins, len(z))."""
    rng = np.random.default_rng(seed)
    r = np.arange(n_bins, dtype=float)[:, None]
    ring = 3.0 + np.asarray(z, float)[None, :] / 250.0
    prof = 1.0 + np.exp(-((r - ring) ** 2) / 4.0) + noise * rng.normal(size=(n_bins, len(z)))
    return np.vstack([np.asarray(z, float)[None, :], prof])


def test_lookup_z_between_planes_and_at_the_ends():
    planes = np.arange(-1000.0, 1001.0, 100.0)
    zlut = make_zlut(planes)
    truth = np.array([-1000.0, -985.0, -910.0, -455.0, 37.0, 620.0, 940.0, 1000.0])
    profiles = make_zlut(truth)[1:]
    z = mt.lookup_z(profiles, zlut)
    assert np.all(np.isfinite(z))  # magtrack: NaN within 3 planes of either end
    assert np.max(np.abs(z - truth)) < 50.0
    assert np.all((z >= -1000) & (z <= 1000))
    with pytest.raises(ShapeError, match="matching radial bins"):
        mt.lookup_z(profiles[:-1], zlut)
    with pytest.warns(UserWarning, match="fewer than n_local"):
        z3 = mt.lookup_z(profiles, zlut[:, :4], n_local=5)
    np.testing.assert_array_equal(z3[:3], [-1000.0, -1000.0, -900.0])


def test_stack_to_xyzp_synthetic_beads():
    xs, ys = np.array([19.3, 20.6, 18.8]), np.array([20.4, 19.2, 21.1])
    stack = bead_stack(xs, ys)
    before = stack.copy()
    x, y, z, profiles = mt.stack_to_xyzp(stack)
    np.testing.assert_array_equal(stack, before)
    assert np.max(np.abs(x - xs)) < 0.03 and np.max(np.abs(y - ys)) < 0.03
    assert np.all(np.isnan(z)) and profiles.shape == (20, 3)
    with pytest.raises(TypeError, match="unknown option"):
        mt.stack_to_xyzp_advanced(stack, None, **{"use_fft_profile": False})
    x2, _, _, p2 = mt.stack_to_xyzp_advanced(stack, **{"use fft_profile": True})
    assert p2.shape == (40, 3) and np.max(np.abs(x2 - xs)) < 0.03


# ------------------------------------------------------------------------------------------
# inputs, shapes, errors
# ------------------------------------------------------------------------------------------


def _calls(stack, x, y, zlut):
    return {
        "center_of_mass": lambda: mt.center_of_mass(stack, "median"),
        "auto_conv": lambda: mt.auto_conv(stack, x, y),
        "auto_conv_sub_pixel": lambda: mt.auto_conv_sub_pixel(stack, x, y),
        "auto_conv_multiline": lambda: mt.auto_conv_multiline(stack, x, y),
        "auto_conv_multiline_sub_pixel": lambda: mt.auto_conv_multiline_sub_pixel(stack, x, y),
        "qi": lambda: mt.qi(stack, x, y),
        "radial_profile": lambda: mt.radial_profile(stack, x, y, oversample=2),
        "fft_profile": lambda: mt.fft_profile(stack, x, y),
        "lookup_z": lambda: mt.lookup_z(mt.radial_profile(stack, x, y), zlut),
        "stack_to_xyzp": lambda: mt.stack_to_xyzp(stack, zlut),
        "stack_to_xyzp_advanced": lambda: mt.stack_to_xyzp_advanced(stack, None),
    }


@pytest.mark.parametrize("name", sorted(_calls(None, None, None, None)))
def test_inputs_never_modified(name):
    xs, ys = np.array([19.3, 20.6]), np.array([20.4, 19.2])
    stack = bead_stack(xs, ys)
    zlut = make_zlut(np.linspace(-500, 500, 11), n_bins=20)
    copies = [a.copy() for a in (stack, xs, ys, zlut)]
    _calls(stack, xs, ys, zlut)[name]()
    for a, c in zip((stack, xs, ys, zlut), copies):
        np.testing.assert_array_equal(a, c)


def test_shape_errors_name_the_argument():
    stack = bead_stack([19.0], [20.0])
    with pytest.raises(ShapeError, match="stack"):
        mt.center_of_mass(stack[:, :, 0])
    with pytest.raises(ShapeError, match="square"):
        mt.auto_conv(stack[:, :30], np.array([19.0]), np.array([20.0]))
    with pytest.raises(ShapeError, match="x_old"):
        mt.auto_conv(stack, np.array([19.0, 1.0]), np.array([20.0]))
    with pytest.raises(ShapeError, match="y"):
        mt.radial_profile(stack, np.array([19.0]), np.zeros(3))
    with pytest.raises(ValueError, match="oversample"):
        mt.radial_profile(stack, np.array([19.0]), np.array([20.0]), oversample=0)
    with pytest.raises(ValueError, match="n_local"):
        mt.auto_conv_sub_pixel(stack, np.array([19.0]), np.array([20.0]), n_local=4)


# ------------------------------------------------------------------------------------------
# CuPy (run with -m gpu on a machine with a CUDA device)
# ------------------------------------------------------------------------------------------


def _golden(name):
    with np.load(GOLDEN / name, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


@pytest.mark.gpu
def test_cupy_matches_numpy(cupy):
    d = _golden("stack_to_xyzp.npz")
    stack, zlut = d["in_stack"], d["in_zlut"]
    xs, ys = d["truth_x_px"], d["truth_y_px"]
    g = cupy.asarray
    checks = {
        "center_of_mass": (lambda m, s: m.center_of_mass(s, "median"), (stack,)),
        "auto_conv": (lambda m, s, x, y: m.auto_conv(s, x, y), (stack, xs, ys)),
        "auto_conv_return_conv": (
            lambda m, s, x, y: m.auto_conv(s, x, y, return_conv=True),
            (stack, xs, ys),
        ),
        "auto_conv_multiline_sub_pixel": (
            lambda m, s, x, y: m.auto_conv_multiline_sub_pixel(s, x, y),
            (stack, xs, ys),
        ),
        "qi": (lambda m, s, x, y: m.qi(s, x, y), (stack, xs, ys)),
        "radial_profile": (lambda m, s, x, y: m.radial_profile(s, x, y, 3), (stack, xs, ys)),
        "fft_profile": (lambda m, s, x, y: m.fft_profile(s, x, y), (stack, xs, ys)),
        "lookup_z": (
            lambda m, s, x, y, z: m.lookup_z(m.radial_profile(s, x, y), z),
            (stack, xs, ys, zlut),
        ),
        "stack_to_xyzp": (lambda m, s, z: m.stack_to_xyzp(s, z), (stack, zlut)),
        "binmean": (
            lambda m, a, b: m.binmean(a, b, 8),
            (_golden("binmean.npz")["in_x"], _golden("binmean.npz")["in_weights"]),
        ),
        "pearson": (
            lambda m, a, b: m.pearson(a, b),
            (_golden("pearson_nan.npz")["in_x"], _golden("pearson_nan.npz")["in_y"]),
        ),
        "crop": (
            lambda m, s, r: m.crop_stack_to_rois(s, r),
            (
                _golden("crop_stack_to_rois.npz")["in_stack"],
                _golden("crop_stack_to_rois.npz")["in_rois"],
            ),
        ),
    }
    for name, (call, args) in checks.items():
        ref = call(mt, *args)
        out = call(mt, *[g(a) for a in args])
        ref = ref if isinstance(ref, tuple) else (ref,)
        out = out if isinstance(out, tuple) else (out,)
        for r, o in zip(ref, out):
            assert type(o).__module__.split(".")[0] == "cupy", name
            np.testing.assert_allclose(
                cupy.asnumpy(o), r, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name
            )
