"""Tests for stacklab.core.shifts: rolls, analytic Gaussians, shift/unshift, py4DSTEM golden."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stacklab import backend
from stacklab.core.shifts import bilinear_shift, fourier_shift
from stacklab.errors import ShapeError

_GOLDEN_CANDIDATES = [
    Path(__file__).resolve().parents[1] / "golden" / "py4dstem",
    Path("/work/shared/golden/py4dstem"),
]
GOLDEN = next((p for p in _GOLDEN_CANDIDATES if p.is_dir()), None)
needs_golden = pytest.mark.skipif(GOLDEN is None, reason="py4dstem golden data not found")


def _gaussian(shape, centre, sigma=2.0):
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(float)
    return np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma**2))


def _band_limited(rng, shape):
    """Random real image without Nyquist content (so shifts are exactly invertible)."""
    spec = np.fft.fft2(rng.normal(size=shape))
    if shape[0] % 2 == 0:
        spec[shape[0] // 2, :] = 0
    if shape[1] % 2 == 0:
        spec[:, shape[1] // 2] = 0
    return np.fft.ifft2(spec).real


@pytest.mark.parametrize("shape", [(8, 9), (9, 8), (7, 7), (10, 12)])
def test_fourier_integer_shift_is_roll(shape):
    rng = np.random.default_rng(0)
    stack = rng.normal(size=(3, *shape))
    shifts = np.array([[2, -3], [-1, 5], [0, 0]])
    got = fourier_shift(stack, shifts)
    expected = np.stack([np.roll(f, s, axis=(0, 1)) for f, s in zip(stack, shifts)])
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_fourier_subpixel_gaussian_matches_analytic():
    shape = (32, 33)
    shifts = np.array([[0.3, -1.7], [2.45, 0.5], [-0.5, 0.0]])
    centre = np.array([15.2, 16.1])
    frame = _gaussian(shape, centre)
    got = fourier_shift(frame, shifts)  # one image, three shifts
    assert got.shape == (3, *shape)
    expected = np.stack([_gaussian(shape, centre + s) for s in shifts])
    err = np.abs(got - expected).max()
    print(f"Fourier shift of a sigma-2 Gaussian (peak 1): max error {err:.1e}")
    assert err < 1e-6


def test_bilinear_subpixel_gaussian_close_to_analytic():
    shape = (32, 33)
    centre = np.array([15.2, 16.1])
    shift = np.array([0.3, -1.7])
    got = bilinear_shift(_gaussian(shape, centre), shift)
    expected = _gaussian(shape, centre + shift)
    err = np.abs(got - expected).max()
    # Linear interpolation error bound per axis: t (1 - t) / 2 * max|f''|, t the fractional
    # part of the shift (0.3 and 0.7 here), max|f''| = 1 / sigma^2 = 0.25.
    bound = 2 * (0.3 * 0.7 / 2) * 0.25
    print(f"bilinear shift of a sigma-2 Gaussian (peak 1): max error {err:.3f} (bound {bound:.3f})")
    assert err <= bound
    # and it beats not shifting at all by a wide margin
    assert err < 0.2 * np.abs(_gaussian(shape, centre) - expected).max()


def test_bilinear_integer_shift_exact_with_fill_edge_wrap():
    rng = np.random.default_rng(1)
    stack = rng.normal(size=(2, 6, 7))
    got = bilinear_shift(stack, [2, -3])
    expected = np.zeros_like(stack)
    expected[:, 2:, :-3] = stack[:, :-2, 3:]
    np.testing.assert_array_equal(got, expected)
    got_nan = bilinear_shift(stack, [[2, -3], [-1, 0]], fill=np.nan)
    assert np.isnan(got_nan[0, :2]).all() and np.isnan(got_nan[0, :, -3:]).all()
    np.testing.assert_array_equal(got_nan[0, 2:, :-3], stack[0, :-2, 3:])
    np.testing.assert_array_equal(got_nan[1, :-1], stack[1, 1:])
    assert np.isnan(got_nan[1, -1]).all()
    np.testing.assert_array_equal(
        bilinear_shift(stack, [2, -3], fill="wrap"), np.roll(stack, (2, -3), axis=(1, 2))
    )
    edge = bilinear_shift(stack, [2, -3], fill="edge")
    np.testing.assert_array_equal(edge[:, 0], stack[:, 0, np.r_[3:7, 6, 6, 6]])
    np.testing.assert_array_equal(edge[:, 2:, :-3], stack[:, :-2, 3:])


def test_bilinear_fractional_known_answer():
    img = np.arange(12.0).reshape(3, 4)  # linear ramp: bilinear is exact inside the frame
    out = bilinear_shift(img, [0.25, 0.5], fill=-1.0)
    expected = img - 0.25 * 4 - 0.5  # f(i - dy, j - dx) for f = 4 i + j
    np.testing.assert_allclose(out[1:, 1:], expected[1:, 1:], atol=1e-14)
    assert np.all(out[0] == -1.0) and np.all(out[:, 0] == -1.0)  # source points outside


@settings(max_examples=25, deadline=None)
@given(
    n_rows=st.integers(4, 17),
    n_cols=st.integers(4, 17),
    dy=st.floats(-6, 6),
    dx=st.floats(-6, 6),
    seed=st.integers(0, 2**16),
)
def test_fourier_shift_unshift_recovers_band_limited_image(n_rows, n_cols, dy, dx, seed):
    img = _band_limited(np.random.default_rng(seed), (n_rows, n_cols))
    there = fourier_shift(img, [dy, dx])
    back = fourier_shift(there, [-dy, -dx])
    np.testing.assert_allclose(back, img, atol=1e-5 * max(1.0, np.abs(img).max()))
    assert np.isrealobj(there)


def test_fourier_float32_complex_and_inputs_untouched():
    rng = np.random.default_rng(2)
    stack = rng.normal(size=(2, 10, 11)).astype(np.float32)
    shifts = np.array([[0.4, -0.2], [1.0, 2.0]])
    before, sbefore = stack.copy(), shifts.copy()
    out = fourier_shift(stack, shifts)
    assert out.dtype == np.float32
    ref = fourier_shift(stack.astype(np.float64), shifts)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert np.array_equal(stack, before) and np.array_equal(shifts, sbefore)
    assert bilinear_shift(stack, shifts).dtype == np.float32
    # complex data with real=False: the shifted complex Gaussian
    shape = (24, 25)
    field = _gaussian(shape, (11.0, 12.0)) * np.exp(1j * 0.3)
    got = fourier_shift(field, [1.25, -0.75], real=False)
    expected = _gaussian(shape, (12.25, 11.25)) * np.exp(1j * 0.3)
    assert np.iscomplexobj(got)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    with pytest.raises(TypeError, match="real=False"):
        fourier_shift(field, [1, 1])


def _checkerboard(shape):
    return (-1.0) ** np.add.outer(np.arange(shape[0]), np.arange(shape[1]))


def _complex_real_part(img, shift):
    """Re ifft2(fft2(img) exp(-2 pi i k.d)): the complex shift's real part (py4DSTEM's rule)."""
    return fourier_shift(img.astype(np.complex128), shift, real=False).real


@pytest.mark.parametrize("shape", [(8, 6), (8, 7), (7, 6)])
def test_fourier_nyquist_terms_known_answer(shape):
    """Nyquist row/column get cos(pi d); the (Nyquist, Nyquist) corner cos(pi dy) cos(pi dx)."""
    dy, dx = 0.3, -1.2
    rows = np.arange(shape[0])[:, None] * np.ones(shape[1])
    cols = np.ones(shape[0])[:, None] * np.arange(shape[1])
    if shape[0] % 2 == 0:
        row_wave = (-1.0) ** rows
        got = fourier_shift(row_wave, [dy, dx])
        np.testing.assert_allclose(got, np.cos(np.pi * dy) * row_wave, atol=1e-12)
    if shape[1] % 2 == 0:
        col_wave = (-1.0) ** cols
        got = fourier_shift(col_wave, [dy, dx])
        np.testing.assert_allclose(got, np.cos(np.pi * dx) * col_wave, atol=1e-12)
    if shape[0] % 2 == 0 and shape[1] % 2 == 0:
        cb = _checkerboard(shape)
        got = fourier_shift(cb, [dy, dx])
        factor = np.cos(np.pi * dy) * np.cos(np.pi * dx)
        np.testing.assert_allclose(got, factor * cb, atol=1e-12)
        # the real part of the complex shift gives cos(pi (dy + dx)) instead
        other = _complex_real_part(cb, [dy, dx])
        np.testing.assert_allclose(other, np.cos(np.pi * (dy + dx)) * cb, atol=1e-12)
        print(f"corner factor: {factor:.4f} (complex real part: {np.cos(np.pi * (dy + dx)):.4f})")


def test_fourier_even_even_is_separable_and_mirror_symmetric():
    rng = np.random.default_rng(5)
    img = rng.normal(100.0, 10.0, (12, 10))  # both axes even, with Nyquist content
    dy, dx = 0.37, -1.61
    full = fourier_shift(img, [dy, dx])
    # separable: the row shift then the column shift
    np.testing.assert_allclose(
        fourier_shift(fourier_shift(img, [dy, 0.0]), [0.0, dx]), full, atol=1e-10
    )
    # mirror-symmetric: mirror, shift by (dy, -dx), mirror back
    mirrored = fourier_shift(img[:, ::-1], [dy, -dx])[:, ::-1]
    np.testing.assert_allclose(mirrored, full, atol=1e-10)
    flipped = fourier_shift(img[::-1], [-dy, dx])[::-1]
    np.testing.assert_allclose(flipped, full, atol=1e-10)
    # the complex real part (py4DSTEM's rule) is neither; it differs from ours by the corner
    # term sin(pi dy) sin(pi dx) C / (H W) (-1)^(i + j), C = sum img (-1)^(i + j)
    other = _complex_real_part(img, [dy, dx])
    other_mirrored = _complex_real_part(img[:, ::-1], [dy, -dx])[:, ::-1]
    cb = _checkerboard(img.shape)
    corner = (img * cb).sum()
    expected = np.sin(np.pi * dy) * np.sin(np.pi * dx) * corner / img.size * cb
    np.testing.assert_allclose(full - other, expected, atol=1e-10)
    asym = np.abs(other - other_mirrored).max()
    print(f"complex real part: mirror asymmetry {asym:.3f} on data of mean 100")
    assert asym > 0.05


@pytest.mark.parametrize("func", [fourier_shift, bilinear_shift])
def test_bad_shifts_raise(func):
    stack = np.zeros((3, 8, 8))
    with pytest.raises(ValueError, match="shifts"):
        func(stack, [np.nan, 0.0])
    with pytest.raises(ValueError, match="shifts"):
        func(stack, np.array([[0, 0], [0, np.inf], [0, 0]]))
    with pytest.raises(ShapeError, match="shifts"):
        func(stack, np.zeros((3, 3)))
    with pytest.raises(ShapeError, match="shifts"):
        func(stack, np.zeros((2, 2)))
    with pytest.raises(ShapeError, match="stack"):
        func(np.zeros(8), [0, 0])


def test_bilinear_bad_fill():
    with pytest.raises(ValueError, match="fill"):
        bilinear_shift(np.zeros((4, 4)), [0, 0], fill="reflect")


@needs_golden
@pytest.mark.parametrize("method", ["fourier", "bilinear"])
@pytest.mark.parametrize("case", ["s0", "s1", "s2", "s3"])
def test_matches_py4dstem_periodic_shift_golden(method, case):
    d = np.load(GOLDEN / f"get_shifted_ar__{method}_periodic_{case}.npz", allow_pickle=False)
    shift = [float(d["in_xshift"]), float(d["in_yshift"])]  # py4DSTEM x is axis 0 (rows)
    if method == "fourier":
        got = fourier_shift(d["in_ar"], shift)
    else:
        got = bilinear_shift(d["in_ar"], shift, fill="wrap")
    scale = np.abs(d["in_ar"]).max()
    np.testing.assert_allclose(got, d["out_shifted"], rtol=0, atol=1e-10 * scale)


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="no CUDA device")
def test_cupy_matches_numpy():
    import cupy as cp

    rng = np.random.default_rng(3)
    stack = rng.normal(size=(4, 16, 15))
    shifts = rng.uniform(-3, 3, (4, 2))
    for func, kw in [
        (fourier_shift, {}),
        (bilinear_shift, {}),
        (bilinear_shift, {"fill": "edge"}),
        (bilinear_shift, {"fill": "wrap"}),
    ]:
        ref = func(stack, shifts, **kw)
        got = func(cp.asarray(stack), cp.asarray(shifts), **kw)
        assert isinstance(got, cp.ndarray)
        np.testing.assert_allclose(got.get(), ref, atol=1e-12)
    got32 = fourier_shift(cp.asarray(stack, dtype=cp.float32), cp.asarray(shifts))
    assert got32.dtype == cp.float32
    np.testing.assert_allclose(got32.get(), fourier_shift(stack, shifts), atol=1e-4)
