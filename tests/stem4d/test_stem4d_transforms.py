"""Binning, thinning, per-position shifts, resampling and padding of 4D cubes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stacklab.errors import ShapeError
from stacklab.stem4d import (
    Calibration,
    DataCube,
    bin_diffraction,
    bin_scan,
    mean_pattern,
    pad_diffraction,
    resample_diffraction,
    shift_patterns,
    thin_scan,
)
from stacklab.stem4d.simulate import simulate_diffraction

GOLDEN = Path("/work/shared/golden/py4dstem")
if not GOLDEN.exists():
    GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "py4dstem"


def golden(name):
    return np.load(GOLDEN / f"{name}.npz")


# -- binning ------------------------------------------------------------------------------------


def test_bin_uint16_near_65535_widens():
    cube = np.full((2, 3, 4, 6), 65535, np.uint16)
    cube[0, 0, 0, 0] = 65000
    out = bin_diffraction(cube, 2)
    assert out.dtype == np.uint64 and out.shape == (2, 3, 2, 3)
    assert out[0, 0, 0, 0] == 65000 + 3 * 65535 and out[1, 2, 1, 2] == 4 * 65535
    with pytest.raises(ValueError, match="cannot hold"):
        bin_diffraction(cube, 2, dtype=np.uint16)
    z = golden("bin_data_diffraction__u16_wrap_QUIRK")
    out = bin_diffraction(z["in_data"], 2)
    assert set(out[0, 0].ravel().tolist()) == {80000}  # py4DSTEM wraps to 14464
    assert set(z["out_data"][0, 0].ravel().tolist()) == {14464}
    assert set(out[0, 1].ravel().tolist()) == {400}


@pytest.mark.parametrize("case", ["u16_f2", "u16_f3", "f32_f2", "f32_f3", "u16_f2_dtype_f64"])
def test_bin_diffraction_golden(case):
    z = golden(f"bin_data_diffraction__{case}")
    dtype = str(z["in_dtype"]) if "in_dtype" in z else None
    out = bin_diffraction(z["in_data"], int(z["in_bin_factor"]), dtype=dtype)
    np.testing.assert_allclose(out.astype(np.float64), z["out_data"].astype(np.float64), rtol=1e-6)
    cube = DataCube(z["in_data"], Calibration(q_pixel_size=1.0))
    assert (
        cube.bin_diffraction(int(z["in_bin_factor"])).calibration.q_pixel_size
        == (float(z["out_Q_pixel_size"]),) * 2
    )


@pytest.mark.parametrize("case", ["u16_f2", "u16_f3", "f32_f2", "f32_f3"])
def test_bin_scan_and_thin_golden(case):
    z = golden(f"bin_data_real__{case}")
    out = bin_scan(z["in_data"], int(z["in_bin_factor"]))
    np.testing.assert_allclose(out.astype(np.float64), z["out_data"].astype(np.float64), rtol=1e-6)
    if case.startswith("u16"):
        assert out.dtype == np.uint64
        t = golden(f"thin_data_real__{case}")
        np.testing.assert_array_equal(
            thin_scan(t["in_data"], int(t["in_thinning_factor"])), t["out_data"]
        )


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_binning_conserves_sums(fr, fc, fs, seed):
    rng = np.random.default_rng(seed)
    cube = rng.integers(0, 65536, (fs * 2, 3, 4 * fr, 4 * fc), dtype=np.uint16)
    d = bin_diffraction(cube, (fr, fc))
    s = bin_scan(cube, (fs, 1))
    assert int(d.sum()) == int(cube.sum(dtype=np.uint64)) == int(s.sum())


# -- shifts -------------------------------------------------------------------------------------


def _disk_centres(cube):
    """Centre of mass of each pattern, (R, C, 2)."""
    h, w = cube.shape[-2:]
    yy, xx = np.indices((h, w))
    tot = cube.sum(axis=(-2, -1))
    return np.stack([(cube * yy).sum((-2, -1)) / tot, (cube * xx).sum((-2, -1)) / tot], -1)


@pytest.mark.parametrize("method", ["fourier", "bilinear"])
def test_shifts_per_scan_position_align_the_disk(method):
    cube, truth = simulate_diffraction(
        (5, 7), (48, 40), noise=False, bragg_spacing=None, background=0.0, dtype=np.float64, seed=2
    )
    before = _disk_centres(cube)
    np.testing.assert_allclose(before, truth.centers, atol=0.02)  # the simulator's truth
    aligned = shift_patterns(cube, -truth.shifts, method=method)
    after = _disk_centres(aligned)
    target = truth.centers.reshape(-1, 2).mean(0)
    err = np.abs(after - target).max()
    print(
        f"{method}: disk centre spread {np.ptp(before, axis=(0, 1))} px -> max error {err:.4f} px"
    )
    assert err < (0.01 if method == "fourier" else 0.05)
    assert aligned.dtype == np.float64


@pytest.mark.parametrize(
    "case",
    ["f32_perpos_fourier", "f32_perpos_bilinear", "f32_scalar_fourier", "f32_scalar_bilinear"],
)
def test_shifts_golden(case):
    z = golden(f"datacube_diffraction_shift__{case}")
    xs, ys = np.asarray(z["in_xshifts"], float), np.asarray(z["in_yshifts"], float)
    shifts = np.stack(np.broadcast_arrays(xs, ys), axis=-1)  # py4DSTEM x = rows
    method = "bilinear" if bool(z["in_bilinear"]) else "fourier"
    out = shift_patterns(z["in_data"], shifts, method=method, periodic=True)
    ref = z["out_data"]
    if method == "fourier":
        # Convention (both detector axes even): py4DSTEM takes the real part of the complex
        # shift, giving the (Nyquist, Nyquist) corner term cos(pi (dy + dx)); stacklab splits
        # it symmetrically, cos(pi dy) cos(pi dx) (separable and mirror-symmetric; see
        # core.shifts.fourier_shift). The outputs differ by exactly that checkerboard term.
        h, w = ref.shape[-2:]
        cb = (-1.0) ** np.add.outer(np.arange(h), np.arange(w))
        corner = (z["in_data"].astype(np.float64) * cb).sum(axis=(-2, -1))
        s = np.broadcast_to(shifts, (*ref.shape[:-2], 2))
        amp = corner * np.sin(np.pi * s[..., 0]) * np.sin(np.pi * s[..., 1]) / (h * w)
        corner_term = amp[..., None, None] * cb
        diff = np.abs(out - ref).max()
        print(f"{case}: differs from py4DSTEM by up to {diff:.3f} (data max {ref.max():.0f})")
        assert diff > 0.1  # the conventions really differ on this data
        ref = ref + corner_term
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-3)


def test_non_periodic_shift_fills_the_uncovered_edge():
    cube = np.arange(1, 1 + 2 * 3 * 6 * 5, dtype=np.float64).reshape(2, 3, 6, 5)
    for method in ("bilinear", "fourier"):
        out = shift_patterns(cube, (2.0, -1.0), method=method, periodic=False)
        np.testing.assert_allclose(out[..., :2, :], 0, atol=1e-9 if method == "bilinear" else 1)
        np.testing.assert_allclose(out[..., 2:, :-1], cube[..., :-2, 1:], atol=1e-9)
    wrapped = shift_patterns(cube, (2.0, -1.0), method="bilinear", periodic=True)
    np.testing.assert_allclose(wrapped, np.roll(cube, (2, -1), axis=(2, 3)))


def test_integer_output_is_rounded_not_wrapped():
    cube = np.full((1, 2, 8, 8), 100, np.uint16)
    cube[..., 4, 4] = 65535
    out = shift_patterns(cube, (0.5, 0.0), method="fourier", dtype=np.uint16)
    assert out.dtype == np.uint16 and out.min() >= 0  # ringing clipped, not wrapped to ~65535
    assert out[0, 0, 4:6, 4].min() > 30000


@settings(max_examples=20, deadline=None)
@given(st.floats(-3, 3), st.floats(-3, 3), st.integers(0, 2**31 - 1))
def test_fourier_shift_then_unshift_is_identity(dy, dx, seed):
    rng = np.random.default_rng(seed)
    cube = rng.normal(size=(2, 2, 15, 17))  # odd sizes: no Nyquist term
    there = shift_patterns(cube, (dy, dx))
    back = shift_patterns(there, (-dy, -dx))
    np.testing.assert_allclose(back, cube, atol=1e-9)


def test_shift_shape_errors():
    cube = np.zeros((5, 7, 8, 8), np.float32)
    with pytest.raises(ShapeError, match="shifts"):
        shift_patterns(cube, np.zeros((7, 5, 2)))  # transposed scan
    with pytest.raises(ShapeError, match="shifts"):
        shift_patterns(cube, np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        shift_patterns(cube, (np.nan, 0))
    with pytest.raises(ValueError, match="method"):
        shift_patterns(cube, (0, 0), method="cubic")


# -- resampling and padding ---------------------------------------------------------------------


def test_resample_sum_conservation(diffraction_cube):
    cube, _ = diffraction_cube
    for method, tol in (("fourier", 1e-9), ("bilinear", 1e-9)):
        for factor in (1.5, 0.75, (2.0, 0.5)):
            kept = resample_diffraction(cube, factor, method=method, conserve_sum=True)
            ratio = kept.sum(axis=(-2, -1)) / cube.sum(axis=(-2, -1))
            assert np.abs(ratio - 1).max() < tol, (method, factor)
            vals = resample_diffraction(cube, factor, method=method)
            area = (vals.shape[-2] * vals.shape[-1]) / (cube.shape[-2] * cube.shape[-1])
            rtol = 1e-5 if method == "fourier" else 2e-2  # bilinear sums are not exact
            np.testing.assert_allclose(vals.sum((-2, -1)), area * kept.sum((-2, -1)), rtol=rtol)
    up = resample_diffraction(cube, output_size=(96, 80), method="fourier")
    np.testing.assert_allclose(up[..., ::2, ::2], cube, rtol=1e-4, atol=1e-2)  # band-limited


@pytest.mark.parametrize(
    "case, tol",
    [
        ("bilinear_rf1.5", 1e-6),
        ("bilinear_rf1.5_conserve", 1e-6),
        ("bilinear_size30x26", 1e-6),
        ("bilinear_rf0.5", 1e-6),
        ("fourier_rf0.75", 1e-5),
        ("fourier_rf1.5_conserve", 2e-3),
    ],
)
def test_resample_golden(case, tol):
    z = golden(f"resample_data_diffraction__f32_{case}")
    kw = {
        "method": str(z["in_method"]),
        "conserve_sum": bool(z.get("in_conserve_array_sums", False)),
    }
    if "in_output_size" in z:
        out = resample_diffraction(z["in_data"], output_size=tuple(z["in_output_size"]), **kw)
    else:
        out = resample_diffraction(z["in_data"], float(z["in_resampling_factor"]), **kw)
    assert out.shape == z["out_data"].shape
    np.testing.assert_allclose(out, z["out_data"], atol=tol * np.abs(z["out_data"]).max())


@pytest.mark.parametrize("case", ["f32_pf1.5", "f32_pf1.25", "u16_pf_pair", "f32_size29x27"])
def test_pad_golden(case):
    z = golden(f"pad_data_diffraction__{case}")
    if "in_output_size" in z:
        out = pad_diffraction(z["in_data"], output_size=tuple(z["in_output_size"]))
    else:
        out = pad_diffraction(z["in_data"], z["in_pad_factor"])
    assert out.dtype == z["in_data"].dtype
    np.testing.assert_array_equal(out, z["out_data"])


def test_pad_errors():
    cube = np.zeros((1, 1, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="output_size"):
        pad_diffraction(cube, output_size=(3, 8))
    with pytest.raises(ValueError, match="value"):
        pad_diffraction(cube, 2.0, value=300)
    with pytest.raises(ValueError, match="exactly one"):
        pad_diffraction(cube)


def test_datacube_methods_track_calibration(diffraction_cube):
    cube, _ = diffraction_cube
    dc = DataCube(
        cube,
        Calibration(
            q_pixel_size=(0.1, 0.2),
            q_units="A^-1",
            r_pixel_size=2.0,
            r_units="nm",
            q_origin=(23.5, 19.5),
        ),
    )
    b = dc.bin_diffraction(2)
    assert b.calibration.q_pixel_size == (0.2, 0.4)
    assert b.calibration.q_origin == (11.5, 9.5)
    s = dc.bin_scan(2)
    assert s.shape == (3, 3, 48, 40) and s.calibration.r_pixel_size == (4.0, 4.0)
    np.testing.assert_allclose(mean_pattern(dc), cube.mean(axis=(0, 1)))
    assert dc.thin_scan(3).shape == (2, 2, 48, 40)
