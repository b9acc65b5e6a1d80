"""wavelength, diffraction_to_detector, (i)fftshift_coords and validity_mask.

Golden files: tests/golden/ptychography40 (ptychography40 repository version, README there). Files
marked _BUGGY record the reference's errors (odd_center, aniso_rotation); stacklab must give the
``corrected_*`` values and differ from the recorded ``out_*``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stacklab.errors import ShapeError
from stacklab.ptycho import (
    diffraction_to_detector,
    fftshift_coords,
    ifftshift_coords,
    validity_mask,
    wavelength,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ptychography40"


def load_golden(name):
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def golden_names(prefix):
    return sorted(p.stem for p in GOLDEN.glob(f"{prefix}*.npz"))


def _d2d(d):
    return diffraction_to_detector(
        float(d["in_lamb"]),
        tuple(d["in_diffraction_shape"]),
        (float(d["in_pixel_size_real_y"]), float(d["in_pixel_size_real_x"])),
        (float(d["in_pixel_size_detector_y"]), float(d["in_pixel_size_detector_x"])),
        float(d["in_cy"]),
        float(d["in_cx"]),
        bool(d["in_flip_y"]),
        float(d["in_scan_rotation_deg"]),
    )


def test_wavelength_golden():
    d = load_golden("wavelength__voltages")
    got = np.array([wavelength(float(v)) for v in d["in_voltage_kV"]])
    np.testing.assert_allclose(got, d["out_wavelength_m"], rtol=1e-12, atol=0)
    # vectorised call agrees with the scalar calls
    np.testing.assert_allclose(wavelength(d["in_voltage_kV"]), got, rtol=1e-14)


def test_wavelength_analytic_limits():
    # non-relativistic limit h / sqrt(2 m e U) at 1 V (= 1e-3 kV): 1.2264 nm
    assert wavelength(1e-3) == pytest.approx(1.22642e-9, rel=1e-4)
    assert wavelength(300) == pytest.approx(1.96875e-12, rel=1e-5)


@pytest.mark.parametrize("bad", [0, -300, float("nan"), float("inf")])
def test_wavelength_rejects_bad_voltage(bad):
    with pytest.raises(ValueError, match="voltage_kV"):
        wavelength(bad)


MATCH = [n for n in golden_names("diffraction_to_detector__") if not n.endswith("_BUGGY")]
BUGGY = [n for n in golden_names("diffraction_to_detector__") if n.endswith("_BUGGY")]


@pytest.mark.parametrize("name", MATCH)
def test_diffraction_to_detector_golden(name):
    d = load_golden(name)
    tr = _d2d(d)
    np.testing.assert_allclose(tr(d["in_coords"]), d["out_coords"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(tr.jacobian, d["out_jacobian"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", BUGGY)
def test_diffraction_to_detector_corrects_reference(name):
    d = load_golden(name)
    tr = _d2d(d)
    out = tr(d["in_coords"])
    np.testing.assert_allclose(out, d["corrected_coords"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(tr.jacobian, d["corrected_jacobian"], rtol=0, atol=1e-9)
    assert np.max(np.abs(out - d["out_coords"])) > 1.0  # the recorded bug is not reproduced


def test_odd_shape_puts_zero_frequency_on_centre():
    tr = diffraction_to_detector(1.0, (15, 9), 1 / 15, 1.0, cy=7.2, cx=3.1)
    # fftshifted zero frequency is index shape // 2 = (7, 4)
    np.testing.assert_allclose(tr([[7, 4]]), [[7.2, 3.1]], atol=1e-12)


def test_anisotropic_pixels_with_rotation_analytic():
    # target y steps are 2 detector px, x steps 3 px; rotating by 90 degrees maps +y onto +x
    # (y' = y cos t - x sin t, x' = y sin t + x cos t): a +1 step in target y moves +2 px in
    # detector x, a +1 step in target x moves -3 px in detector y.
    tr = diffraction_to_detector(
        1.0, (8, 8), (1 / 16, 1 / 24), 1.0, cy=10.0, cx=20.0, scan_rotation=90.0
    )
    np.testing.assert_allclose(tr.jacobian, [[0.0, 2.0], [-3.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(tr([[5, 4]]), [[10.0, 22.0]], atol=1e-12)
    # an anisotropic detector pixel divides along detector axes: 2 px -> 1 px in detector x
    tr2 = diffraction_to_detector(
        1.0, (8, 8), (1 / 16, 1 / 24), (1.0, 2.0), cy=0.0, cx=0.0, scan_rotation=90.0
    )
    np.testing.assert_allclose(tr2.jacobian, [[0.0, 1.0], [-3.0, 0.0]], atol=1e-12)


def test_flip_and_inverse_round_trip(rng):
    tr = diffraction_to_detector(
        wavelength(200), (12, 10), (1e-11, 1.3e-11), (1e-3, 1.1e-3), 31.5, 29.0, True, 23.0
    )
    pts = rng.uniform(-5, 15, (50, 2))
    np.testing.assert_allclose(tr.inverse()(tr(pts)), pts, atol=1e-10)
    # flip_y reverses the handedness: the Jacobian's determinant changes sign
    plain = diffraction_to_detector(
        wavelength(200), (12, 10), (1e-11, 1.3e-11), (1e-3, 1.1e-3), 31.5, 29.0, False, 23.0
    )
    assert np.sign(np.linalg.det(tr.jacobian)) == -np.sign(np.linalg.det(plain.jacobian))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pixel_size_real=0.0), "pixel_size_real"),
        (dict(pixel_size_detector=(1e-3, 0.0)), "pixel_size_detector"),
        (dict(pixel_size_detector=-1e-3), "pixel_size_detector"),
        (dict(pixel_size_real=(1e-11, 1e-11, 1e-11)), "pixel_size_real"),
        (dict(lamb=0.0), "lamb"),
        (dict(cy=float("nan")), "cy"),
        (dict(scan_rotation=float("inf")), "scan_rotation"),
    ],
)
def test_diffraction_to_detector_bad_input(kwargs, match):
    args = dict(
        lamb=1e-12,
        diffraction_shape=(16, 16),
        pixel_size_real=1e-11,
        pixel_size_detector=1e-3,
        cy=8.0,
        cx=8.0,
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        diffraction_to_detector(**args)


def test_diffraction_to_detector_bad_shape():
    with pytest.raises(ShapeError, match="diffraction_shape"):
        diffraction_to_detector(1e-12, (16, 0), 1e-11, 1e-3, 8, 8)


@pytest.mark.parametrize("name", golden_names("shift_coords__"))
def test_shift_coords_golden(name):
    d = load_golden(name)
    f = fftshift_coords(tuple(d["in_shape"]))
    i = ifftshift_coords(tuple(d["in_shape"]))
    np.testing.assert_array_equal(f(d["in_coords"]), d["out_fftshift"])
    np.testing.assert_array_equal(i(d["in_coords"]), d["out_ifftshift"])
    np.testing.assert_array_equal(f(d["in_coords_wrap"]), d["out_fftshift_wrap"])
    np.testing.assert_array_equal(i(d["in_coords_wrap"]), d["out_ifftshift_wrap"])


@pytest.mark.parametrize("shape", [(7, 5), (8, 6), (9, 4)])
def test_shift_coords_perform_fft_shifts(shape, rng):
    src = rng.standard_normal(shape)
    yy, xx = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    t = np.stack([yy.ravel(), xx.ravel()], 1)
    for func, ref in ((fftshift_coords, np.fft.fftshift), (ifftshift_coords, np.fft.ifftshift)):
        s = func(shape)(t)
        np.testing.assert_array_equal(src[s[:, 0], s[:, 1]].reshape(shape), ref(src))


def test_validity_mask_flags_pixels_off_the_detector():
    # 16x16 target, 2 detector px per target px, centred on a 24x24 detector: the outer ring of
    # targets maps beyond it
    tr = diffraction_to_detector(1.0, (16, 16), 1 / 32, 1.0, 12.0, 12.0)
    area = validity_mask((24, 24), (16, 16), tr, method="area")
    footprint_lo = 12 + (np.arange(16) - 8) * 2 - 1.0  # footprint spans centre +- 1 px
    ok1 = (footprint_lo > -0.5) & (footprint_lo + 2.0 < 23.5)
    np.testing.assert_array_equal(area, ok1[:, None] & ok1[None, :])
    near = validity_mask((24, 24), (16, 16), tr, method="nearest")
    centre = 12 + (np.arange(16) - 8) * 2
    ok2 = (centre >= 0) & (centre < 24)
    np.testing.assert_array_equal(near, ok2[:, None] & ok2[None, :])
    assert area.sum() < near.sum()
    with pytest.raises(ValueError, match="method"):
        validity_mask((24, 24), (16, 16), tr, method="cubic")
