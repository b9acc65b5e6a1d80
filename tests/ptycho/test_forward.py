"""Forward-model building blocks: shifted probes, rolled products, aggregation, intensities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stacklab.errors import ShapeError
from stacklab.ptycho import (
    diffraction_intensities,
    exit_waves,
    far_field,
    fourier_shift_probe,
    object_patches,
    rolled_object_aggregation,
    rolled_object_probe_product,
    shifted_probes,
    split_shifts,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ptychography40"


def load_golden(name):
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def golden_names(prefix):
    return sorted(p.stem for p in GOLDEN.glob(f"{prefix}*.npz"))


@pytest.mark.parametrize("name", golden_names("shifted_probes__"))
def test_shifted_probes_golden(name):
    d = load_golden(name)
    bins = (
        int(d["in_bins_y"])
        if bool(d["in_bins_given_as_int"])
        else (int(d["in_bins_y"]), int(d["in_bins_x"]))
    )
    out = shifted_probes(d["in_probe"], bins)
    assert out.dtype == d["out_probes"].dtype
    tol = dict(rtol=1e-12, atol=1e-15) if out.dtype == np.complex128 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, d["out_probes"], **tol)


def test_shifted_probes_fourier_moves_content(rng):
    yy, xx = np.mgrid[:16, :16]
    probe = np.exp(-((yy - 7.5) ** 2 + (xx - 6.5) ** 2) / 8.0).astype(np.complex64)
    out = shifted_probes(probe, (2, 4), method="fourier")
    assert out.shape == (2, 4, 16, 16)
    for i in range(2):
        for j in range(4):
            inten = np.abs(out[i, j]) ** 2
            cy = (inten * yy).sum() / inten.sum()
            cx = (inten * xx).sum() / inten.sum()
            assert cy == pytest.approx(7.5 + i / 2, abs=1e-3)
            assert cx == pytest.approx(6.5 + j / 4, abs=1e-3)


@pytest.mark.parametrize("bins", [[2], "2", (0, 2), True, 2.5])
def test_shifted_probes_bad_bins(bins):
    with pytest.raises((TypeError, ValueError), match="bins"):
        shifted_probes(np.ones((4, 4)), bins)


PRODUCT = [n for n in golden_names("rolled_object_probe_product_cpu__") if "BUGGY" not in n]


@pytest.mark.parametrize("name", PRODUCT)
def test_rolled_product_golden(name):
    d = load_golden(name)
    out, sub = rolled_object_probe_product(
        d["in_obj"], d["in_probe"], d["in_shifts"], ifftshift=bool(d["in_ifftshift"])
    )
    np.testing.assert_array_equal(out, d["out_result"])
    np.testing.assert_array_equal(sub, d["out_subpixel_indices"])
    assert sub.dtype == np.int64


def test_negative_fractional_shifts_are_floored():
    d = load_golden("rolled_object_probe_product_cpu__negative_BUGGY")
    out, sub = rolled_object_probe_product(d["in_obj"], d["in_probe"], d["in_shifts"])
    np.testing.assert_array_equal(out, d["corrected_result"])
    np.testing.assert_array_equal(sub, d["corrected_subpixel_indices"])
    buggy = d["meta_buggy_rows"]
    assert buggy.any() and not buggy.all()
    np.testing.assert_array_equal(out[~buggy], d["out_result"][~buggy])
    for i in np.flatnonzero(buggy):
        assert not np.array_equal(out[i], d["out_result"][i])
    # effective probe position floor(s * bins) / bins
    bins = np.array(d["in_probe"].shape[:2])
    integer, frac_bin = split_shifts(d["in_shifts"], tuple(bins))
    np.testing.assert_allclose(integer + frac_bin / bins, d["meta_effective_shift_corrected"])


def test_negative_shift_equals_wrapped_positive_shift(rng):
    obj = (rng.standard_normal((12, 10)) + 1j * rng.standard_normal((12, 10))).astype(np.complex64)
    probes = rng.standard_normal((4, 4, 5, 4)).astype(np.complex64)
    shifts = rng.uniform(-30, 30, (40, 2))
    a, sa = rolled_object_probe_product(obj, probes, shifts)
    b, sb = rolled_object_probe_product(obj, probes, shifts + np.array([12 * 5, 10 * 7]))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)


def test_rolled_product_ifftshift_and_out_buffer(rng):
    obj = rng.standard_normal((9, 11)) + 0j
    probe = rng.standard_normal((5, 7)) + 1j
    shifts = np.array([[0, 0], [3, -2], [8, 10]])
    plain, _ = rolled_object_probe_product(obj, probe, shifts)
    buf = np.full((3, 5, 7), np.nan, dtype=complex)
    res, _ = rolled_object_probe_product(obj, probe, shifts, ifftshift=True, out=buf)
    assert res is buf
    np.testing.assert_array_equal(buf, np.fft.ifftshift(plain, axes=(1, 2)))
    for i, s in enumerate(shifts):
        ref = probe * np.roll(obj, -s, axis=(0, 1))[:5, :7]
        np.testing.assert_array_equal(plain[i], ref)


def test_rolled_product_bad_input():
    obj = np.ones((8, 8), complex)
    with pytest.raises(ShapeError, match="larger than the object"):
        rolled_object_probe_product(obj, np.ones((9, 4), complex), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="NaN"):
        rolled_object_probe_product(obj, np.ones((4, 4), complex), np.array([[np.nan, 0.0]]))
    with pytest.raises(ShapeError, match="shifts"):
        rolled_object_probe_product(obj, np.ones((4, 4), complex), np.zeros((3, 3)))
    with pytest.raises(ShapeError, match="probe"):
        rolled_object_probe_product(obj, np.ones((1, 4, 4), complex), np.zeros((1, 2)))
    with pytest.raises(ShapeError, match="out"):
        rolled_object_probe_product(
            obj, np.ones((4, 4), complex), np.zeros((2, 2)), out=np.empty((1, 4, 4), complex)
        )


@pytest.mark.parametrize("name", golden_names("rolled_object_aggregation_cpu__"))
def test_aggregation_golden(name):
    d = load_golden(name)
    before = d["in_obj"].copy()
    out = rolled_object_aggregation(
        d["in_obj"], d["in_updates"], d["in_shifts"], fftshift=bool(d["in_fftshift"])
    )
    np.testing.assert_array_equal(out, d["out_obj"])
    assert out.dtype == d["in_obj"].dtype
    np.testing.assert_array_equal(d["in_obj"], before)  # input untouched
    buf = d["in_obj"].copy()
    res = rolled_object_aggregation(
        buf, d["in_updates"], d["in_shifts"], fftshift=bool(d["in_fftshift"]), out=buf
    )
    assert res is buf
    np.testing.assert_array_equal(buf, d["out_obj"])


def test_aggregation_bad_input():
    obj = np.zeros((6, 6), complex)
    with pytest.raises(ShapeError, match="larger than the object"):
        rolled_object_aggregation(obj, np.ones((1, 7, 2)), np.zeros((1, 2), int))
    with pytest.raises(ShapeError, match="rows"):
        rolled_object_aggregation(obj, np.ones((2, 3, 3)), np.zeros((3, 2), int))
    with pytest.raises(TypeError, match="real object"):
        rolled_object_aggregation(np.zeros((6, 6)), np.ones((1, 3, 3), complex), [[0, 0]])


@settings(max_examples=20, deadline=None)
@given(
    ny=st.integers(5, 12),
    nx=st.integers(5, 12),
    py=st.integers(1, 5),
    px=st.integers(1, 5),
    n=st.integers(1, 6),
    seed=st.integers(0, 1000),
    shifted=st.booleans(),
)
def test_aggregation_is_adjoint_of_product(ny, nx, py, px, n, seed, shifted):
    """<P O_window, U> == <O, aggregate(conj(P) U)> for every layout."""
    rng = np.random.default_rng(seed)
    obj = rng.standard_normal((ny, nx)) + 1j * rng.standard_normal((ny, nx))
    probe = rng.standard_normal((py, px)) + 1j * rng.standard_normal((py, px))
    upd = rng.standard_normal((n, py, px)) + 1j * rng.standard_normal((n, py, px))
    shifts = rng.integers(-20, 20, (n, 2))
    prod, _ = rolled_object_probe_product(obj, probe, shifts, ifftshift=shifted)
    lhs = np.vdot(prod, upd)
    p = np.fft.ifftshift(probe) if shifted else probe
    adj = rolled_object_aggregation(np.zeros_like(obj), np.conj(p) * upd, shifts, fftshift=shifted)
    assert np.vdot(obj, adj) == pytest.approx(lhs, rel=1e-10, abs=1e-10)


def test_exit_waves_subpixel_and_intensities(rng):
    obj = np.exp(1j * rng.uniform(0, 1, (40, 40))).astype(np.complex64)
    probe = np.zeros((16, 16), np.complex64)
    yy, xx = np.mgrid[:16, :16]
    probe[:] = np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 8.0)
    pos = np.array([[3.0, 4.0], [3.5, 4.25], [-2.0, 30.0]])
    waves = exit_waves(obj, probe, pos)
    np.testing.assert_allclose(waves[0], probe * obj[3:19, 4:20], atol=1e-6)
    np.testing.assert_allclose(
        waves[1], fourier_shift_probe(probe, [[0.5, 0.25]])[0] * obj[3:19, 4:20], atol=1e-5
    )
    np.testing.assert_allclose(
        waves[2], object_patches(obj, pos[2:], (16, 16))[0] * probe, atol=1e-6
    )
    inten = diffraction_intensities(obj, probe, pos)
    # orthonormal FFT: each pattern's sum is the exit wave's total intensity
    np.testing.assert_allclose(
        inten.sum(axis=(1, 2)), (np.abs(waves) ** 2).sum(axis=(1, 2)), rtol=1e-4
    )
    centred = far_field(obj, probe, pos[:1])
    native = far_field(obj, probe, pos[:1], layout="native")
    np.testing.assert_allclose(np.fft.fftshift(native, axes=(1, 2)), centred, atol=1e-6)
    # a flat object gives the probe's far field, brightest at index shape // 2 (centred layout)
    flat = diffraction_intensities(np.ones((40, 40), np.complex64), probe, pos[:1])[0]
    assert np.unravel_index(np.argmax(flat), flat.shape) == (8, 8)
    with pytest.raises(ValueError, match="layout"):
        far_field(obj, probe, pos, layout="shifted")
