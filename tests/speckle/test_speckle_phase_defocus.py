"""integrate_gradient / integrate_pixel_map (sign, units) and the defocus fits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stacklab.speckle import (
    fit_defocus,
    fit_defocus_registration,
    fit_thon_rings,
    integrate_gradient,
    integrate_pixel_map,
    remove_terms,
    simulate,
)

from .conftest import golden_file


def test_integrate_gradient_exact_for_quadratics():
    ii, jj = np.indices((30, 40), dtype=float)
    phi = 0.3 * ii**2 - 0.1 * ii * jj + 0.05 * jj**2 + 2 * ii
    gy = 0.6 * ii - 0.1 * jj + 2
    gx = -0.1 * ii + 0.1 * jj
    out, it = integrate_gradient(gy, gx)
    assert it == 0
    np.testing.assert_allclose(out - out.mean(), phi - phi.mean(), atol=1e-9)
    w = np.ones((30, 40))
    w[5:9, 10:20] = 0.0  # masked pixels: garbage there is ignored
    gy2 = gy.copy()
    gy2[w == 0] = 1e6
    out2, it2 = integrate_gradient(gy2, gx, w)
    assert it2 > 0
    d = out2 - phi
    d = d - d[w > 0].mean()
    np.testing.assert_allclose(d[w > 0], 0.0, atol=1e-4)  # phi spans about 300
    # the masked block is filled smoothly (no trace of the 1e6 garbage gradients)
    assert np.abs(d).max() < 2.0


def test_phase_sign_and_units():
    # u = index + grad(psi), psi in px**2  ->  phase = -(2 pi dx dss / (wavelength z)) psi
    ii, jj = np.indices((32, 48), dtype=float)
    psi = 0.01 * (ii - 10) ** 3 / 10 + 0.02 * (ii - 16) * (jj - 20) ** 2 / 20
    gy = 0.03 * (ii - 10) ** 2 / 10 + 0.02 * (jj - 20) ** 2 / 20
    gx = 0.04 * (ii - 16) * (jj - 20) / 20
    u = np.stack([ii + gy, jj + gx])
    wav, z, px, dss = 1e-10, 1.0, 55e-6, 22e-9
    res = integrate_pixel_map(u, None, wav, z, px, px, dss, dss)
    expect, _ = remove_terms(-(2 * math.pi * px * dss / (wav * z)) * psi, None, "tilt")
    np.testing.assert_allclose(res.phase, expect, atol=2e-3 * np.abs(expect).max())
    # angles: dss (u - index) / z minus the removed tilt
    assert res.angles.shape == (2, 32, 48)
    tilt_free = dss * np.stack([gy, gx]) / z
    diff = res.angles - tilt_free
    assert np.ptp(diff[0]) < 1e-12 and np.ptp(diff[1]) < 1e-12  # a constant (the tilt)
    # removing "defocus" also removes x**2 + y**2
    r2 = integrate_pixel_map(u, None, wav, z, px, px, dss, dss, remove="astigmatism")
    assert set(r2.removed) == {"piston", "tilt_ss", "tilt_fs", "quad_ss", "quad_fs", "quad_cross"}


def test_phase_of_a_true_golden_map_follows_the_documented_sign():
    g = np.load(golden_file("integrate_pixel_map_2d.npz"))
    s = np.load(golden_file("scan_2d.npz"))
    res = integrate_pixel_map(
        g["in_truemap_pixel_map"],
        g["in_weight"],
        float(g["in_wavelength"]),
        float(g["in_z"]),
        float(g["in_x_pixel_size"]),
        float(g["in_y_pixel_size"]),
        float(g["in_dx"]),
        float(g["in_dy"]),
        remove="defocus",
    )
    k = 2 * math.pi * float(g["in_x_pixel_size"]) * float(g["in_dx"]) / float(g["in_wavelength"])
    expect, _ = remove_terms(-k * s["truth_psi"], g["in_weight"], "defocus")
    w = g["in_weight"] > 0
    assert np.sqrt(np.mean((res.phase - expect)[w] ** 2)) < 0.1 * np.std(expect[w])
    # speckle_tracking's own output has the opposite sign (PEERS.md)
    pkg, _ = remove_terms(g["out_truemap_phase"], g["in_weight"], "defocus")
    assert np.corrcoef(pkg[w], res.phase[w])[0, 1] < -0.9


@pytest.mark.parametrize("dz", [0.0, 3e-5, -3e-5])
def test_thon_rings_within_two_percent(dz):
    # finer speckle (object_sigma 0.8) and 0.6 mm defocus: about 8 rings within the spectrum
    s = simulate(
        (128, 128), (5, 5), defocus=6e-4, dz=dz, object_sigma=0.8, aberration_px=0.3, seed=41
    )
    fit = fit_thon_rings(
        s.data,
        s.x_pixel_size,
        s.y_pixel_size,
        s.distance,
        s.wavelength,
        s.mask,
        s.whitefield,
        [8, 120, 8, 120],
    )
    assert fit.defocus_ss == pytest.approx(s.defocus_ss, rel=0.02)
    assert fit.defocus_fs == pytest.approx(s.defocus_fs, rel=0.02)
    assert fit.method == "thon" and fit.details["rings"] >= 3
    assert abs(fit.details["bd"]) < 0.3  # a nearly pure phase object (beta/delta = 0.1)
    if dz == 0.0:
        iso = fit_defocus(
            s.data,
            s.x_pixel_size,
            s.y_pixel_size,
            s.distance,
            s.wavelength,
            s.mask,
            s.whitefield,
            [8, 120, 8, 120],
            astigmatism=False,
        )
        assert iso.defocus == pytest.approx(s.defocus, rel=0.02) and iso.dz == 0.0


def _thon(scan, **kwargs):
    return fit_thon_rings(
        scan.data,
        scan.x_pixel_size,
        scan.y_pixel_size,
        scan.distance,
        scan.wavelength,
        scan.mask,
        scan.whitefield,
        **kwargs,
    )


@pytest.mark.parametrize(
    "defocus,dz_rel,aberration,seed",
    [
        (5e-4, -0.3, 0.3, 0),  # 30 % astigmatism, 8 visible rings on the weaker axis
        (5e-4, 0.15, 0.6, 1),  # 10 rings, 4.5 % RMS spread of the local ring scale
        (8e-4, -0.3, 0.6, 0),  # 5 rings, 30 % astigmatism and 0.6 px aberration
    ],
)
def test_thon_rings_hard_cases_within_three_percent(defocus, dz_rel, aberration, seed):
    # cases the sector-minima fit of earlier versions could not fit (it raised)
    s = simulate(
        (128, 128),
        (7, 7),
        defocus=defocus,
        dz=dz_rel * defocus,
        object_sigma=0.8,
        aberration_px=aberration,
        seed=seed,
    )
    data = s.data.copy()
    fit = _thon(s)
    np.testing.assert_array_equal(s.data, data)  # input untouched
    e_ss = fit.defocus_ss / s.defocus_ss - 1
    e_fs = fit.defocus_fs / s.defocus_fs - 1
    print(f"z_ss {100 * e_ss:+.2f} %, z_fs {100 * e_fs:+.2f} %, score {fit.details['score']:.1f}")
    assert abs(e_ss) < 0.03 and abs(e_fs) < 0.03
    assert fit.dz == pytest.approx(0.5 * (fit.defocus_ss - fit.defocus_fs))
    assert fit.details["score"] > 3 * 1.5 and fit.details["rings"] >= 5


@pytest.mark.parametrize("dz_rel", [0.0, -0.3])
def test_thon_rings_few_rings_within_five_percent(dz_rel):
    # 2 mm defocus: 2 to 3 rings before the speckle power falls to 1 %, 4 in the fitted range
    s = simulate(
        (128, 128), (7, 7), defocus=2e-3, dz=dz_rel * 2e-3, object_sigma=0.8,
        aberration_px=0.3, seed=0,
    )  # fmt: skip
    fit = _thon(s)
    e = (fit.defocus_ss / s.defocus_ss - 1, fit.defocus_fs / s.defocus_fs - 1)
    print(f"rings {fit.details['rings']}: z_ss {100 * e[0]:+.2f} %, z_fs {100 * e[1]:+.2f} %")
    assert max(abs(v) for v in e) < 0.05


def test_thon_rings_1d_and_details():
    s = simulate((1, 1024), (1, 16), defocus=1e-3, object_sigma=0.8, aberration_px=0.3, seed=7)
    fit = _thon(s)
    assert fit.defocus == pytest.approx(s.defocus, rel=0.02) and fit.dz == 0.0
    d = fit.details
    assert d["spectrum"].shape == d["model"].shape == (1, 1024)
    r_lo, r_hi = d["rad_range"]
    assert 0 < r_lo < r_hi <= 512 and np.isfinite(d["bd"]) and d["z2"] > 0
    assert d["a_ss"] == d["a_fs"] > 0
    with pytest.raises(ValueError, match="envelope_degree"):
        _thon(s, envelope_degree=0)


def test_thon_rings_reject_spectra_without_rings():
    import scipy.ndimage

    rng = np.random.default_rng(3)
    w = simulate((96, 96), (1, 1), photons=None, seed=1).whitefield * 1e4
    texture = scipy.ndimage.gaussian_filter(rng.standard_normal((120, 120)), 1.5)
    texture = 1 + 0.3 * texture / texture.std()  # smooth intensity speckle, no propagation
    speckle = np.stack(
        [w * texture[i : i + 96, j : j + 96] for i in (0, 5, 10) for j in (0, 5, 10)]
    )
    fine = simulate((96, 96), (3, 3), defocus=2e-5, object_sigma=0.8, seed=4)
    for data, white in (
        (rng.poisson(np.broadcast_to(w, (9, 96, 96))).astype(float), w),  # whitefield alone
        (rng.poisson(np.maximum(speckle, 0)).astype(float), w),  # speckle, no rings
        (fine.data, fine.whitefield),  # rings far too fine for the pixels
    ):
        with pytest.raises(ValueError, match="Thon"):
            fit_thon_rings(data, 55e-6, 55e-6, 1.0, 1e-10, None, white)


@pytest.mark.parametrize("defocus,dz", [(4e-4, 0.0), (4e-4, 3e-5), (1e-3, -5e-5)])
def test_registration_within_two_percent(defocus, dz):
    # (a strong aberration changes the mean magnification itself: keep it moderate here)
    s = simulate((96, 96), (5, 5), defocus=defocus, dz=dz, aberration_px=0.5, seed=32)
    fit = fit_defocus_registration(
        s.data,
        s.translations,
        s.basis,
        s.x_pixel_size,
        s.y_pixel_size,
        s.distance,
        s.mask,
        s.whitefield,
    )
    assert fit.defocus_ss == pytest.approx(s.defocus_ss, rel=0.02)
    assert fit.defocus_fs == pytest.approx(s.defocus_fs, rel=0.02)
    assert fit.details["residual"] < 0.1


def test_registration_sign_and_1d(scan_1d):
    s = simulate((64, 64), (3, 3), seed=33)
    flipped = fit_defocus_registration(
        s.data, -s.translations, s.basis, s.x_pixel_size, s.y_pixel_size, s.distance
    )
    assert flipped.defocus == pytest.approx(-s.defocus, rel=0.02)  # sample upstream of focus
    f1 = fit_defocus(
        scan_1d.data,
        scan_1d.x_pixel_size,
        scan_1d.y_pixel_size,
        scan_1d.distance,
        scan_1d.wavelength,
        method="registration",
        translations=scan_1d.translations,
        basis=scan_1d.basis,
    )
    assert f1.defocus == pytest.approx(scan_1d.defocus, rel=0.02) and f1.dz == 0.0


def test_defocus_errors(scan_small):
    s = scan_small
    flat = np.random.default_rng(0).poisson(1000.0, size=(5, 64, 64)).astype(float)
    with pytest.raises(ValueError, match="Thon"):
        fit_thon_rings(flat, 55e-6, 55e-6, 1.0, 1e-10)
    with pytest.raises(ValueError, match="method"):
        fit_defocus(s.data, 55e-6, 55e-6, 1.0, 1e-10, method="guess")
    with pytest.raises(ValueError, match="translations"):
        fit_defocus(s.data, 55e-6, 55e-6, 1.0, 1e-10, method="registration")
    with pytest.raises(ValueError, match="wav"):
        fit_thon_rings(s.data, 55e-6, 55e-6, 1.0, -1.0)
