"""Worm-like-chain force-extension models and fits.

Known answers: the Marko-Siggia formula at z/L = 1/2, the Bouchiat polynomial correction
written out term by term, the common low-force limit F = 3/2 kT z/(P L), the extensible model's
inextensible limit and implicit equation, and the force <-> extension round trip. Fits of
simulated lambda-DNA data (P = 50 nm, L = 16.4 um, S = 1000 pN, 25 forces 0.05-30 pN with 3 %
force noise and 5 nm extension noise) recover the truth, and over 100 seeded repeats the
reported standard errors match the scatter (+-1 SE coverage near 68 %). Run with ``-s`` to see
the figures.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stacklab.beads.force import BOLTZMANN_PN_NM_PER_K
from stacklab.beads.wlc import (
    BOUCHIAT_COEFFICIENTS,
    WLCFit,
    fit_wlc,
    fit_wlc_table,
    wlc_extension,
    wlc_force,
)
from stacklab.errors import ShapeError

KBT = BOLTZMANN_PN_NM_PER_K * 296.15  # pN nm
P_TRUE, L_TRUE, S_TRUE = 50.0, 16400.0, 1000.0
LAMBDA = dict(persistence_nm=P_TRUE, contour_nm=L_TRUE, stretch_modulus_pN=S_TRUE)
MODELS = ("bouchiat", "marko_siggia")


def _ms(x: np.ndarray) -> np.ndarray:
    return 1.0 / (4.0 * (1.0 - x) ** 2) - 0.25 + x


def _simulate(rng, *, low=0.05, high=30.0, n=25, offset=0.0, rel_force=0.03, ext_nm=5.0):
    """Lambda-DNA-like data: true forces log-spaced, measured with relative/absolute noise."""
    f_true = np.geomspace(low, high, n)
    z_true = wlc_extension(f_true, **LAMBDA)
    f = f_true * (1.0 + rel_force * rng.standard_normal(n))
    z = z_true + offset + ext_nm * rng.standard_normal(n)
    return f, z, rel_force * f


# --------------------------------------------------------------------------------------------
# the models
# --------------------------------------------------------------------------------------------


def test_marko_siggia_at_half_extension():
    f = wlc_force(0.5 * L_TRUE, persistence_nm=P_TRUE, contour_nm=L_TRUE, model="marko_siggia")
    expected = KBT / P_TRUE * (1.0 / (4.0 * 0.5**2) - 0.25 + 0.5)
    assert isinstance(f, float)
    assert f == pytest.approx(expected, rel=1e-14)


def test_bouchiat_is_marko_siggia_plus_polynomial():
    x = np.array([0.05, 0.3, 0.5, 0.8, 0.95, 0.99])
    poly = sum(a * x**i for i, a in zip(range(2, 8), BOUCHIAT_COEFFICIENTS, strict=True))
    kw = dict(persistence_nm=P_TRUE, contour_nm=L_TRUE)
    got = wlc_force(x * L_TRUE, **kw, model="bouchiat")
    np.testing.assert_allclose(got, KBT / P_TRUE * (_ms(x) + poly), rtol=1e-12)
    np.testing.assert_allclose(
        wlc_force(x * L_TRUE, **kw, model="marko_siggia"), KBT / P_TRUE * _ms(x), rtol=1e-12
    )
    assert BOUCHIAT_COEFFICIENTS == (
        -0.5164228,
        -2.737418,
        16.07497,
        -38.87607,
        39.49944,
        -14.17718,
    )
    # the correction lowers the force by up to ~0.73 kT/P near full extension
    print(f"\nBouchiat - MS at x = {x}: {(got - KBT / P_TRUE * _ms(x)) * P_TRUE / KBT} kT/P")


@pytest.mark.parametrize("model", MODELS)
def test_low_force_limit(model):
    z = np.array([1e-7, 1e-6, 1e-5]) * L_TRUE
    f = wlc_force(z, persistence_nm=P_TRUE, contour_nm=L_TRUE, model=model)
    np.testing.assert_allclose(f, 1.5 * KBT * z / (P_TRUE * L_TRUE), rtol=2e-5)
    # and the inverse: z = 2/3 F P L / kT
    zz = wlc_extension(1e-6, persistence_nm=P_TRUE, contour_nm=L_TRUE, model=model)
    assert zz == pytest.approx(2.0 / 3.0 * 1e-6 * P_TRUE * L_TRUE / KBT, rel=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_high_force_limit_marko_siggia(model):
    # z/L -> 1 - 1/(2 sqrt(F P / kT)) (+ the constant Bouchiat shift, small vs. the 1/u^2 term)
    f = 1e4
    z = wlc_extension(f, persistence_nm=P_TRUE, contour_nm=L_TRUE, model=model)
    expected = 1.0 - 0.5 / math.sqrt(f * P_TRUE / KBT)
    assert z / L_TRUE == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_extensible_reduces_to_inextensible(model):
    z = np.linspace(0.0, 0.98, 30) * L_TRUE
    kw = dict(persistence_nm=P_TRUE, contour_nm=L_TRUE, model=model)
    inext = wlc_force(z, **kw)
    np.testing.assert_allclose(wlc_force(z, **kw, stretch_modulus_pN=1e13), inext, rtol=1e-8)
    np.testing.assert_array_equal(wlc_force(z, **kw, stretch_modulus_pN=math.inf), inext)
    # a finite modulus lowers the force at a given extension (the backbone takes part of z)
    ext = wlc_force(z[1:], **kw, stretch_modulus_pN=S_TRUE)
    assert np.all(ext < inext[1:])


@pytest.mark.parametrize("model", MODELS)
def test_extensible_force_solves_implicit_equation(model):
    z = np.linspace(0.01, 1.02, 40) * L_TRUE  # beyond L: only the extensible model reaches it
    f = wlc_force(z, **LAMBDA, model=model)
    x = z / L_TRUE - f / S_TRUE
    g = _ms(x)
    if model == "bouchiat":
        g = g + sum(a * x**i for i, a in zip(range(2, 8), BOUCHIAT_COEFFICIENTS, strict=True))
    np.testing.assert_allclose(f, KBT / P_TRUE * g, rtol=1e-10)
    assert np.all(np.diff(f) > 0)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stretch", [None, S_TRUE, 50.0])
def test_round_trip(model, stretch, caplog):
    kw = dict(persistence_nm=P_TRUE, contour_nm=L_TRUE, stretch_modulus_pN=stretch, model=model)
    forces = np.geomspace(1e-4, 1e3, 200).reshape(20, 10)
    z = wlc_extension(forces, **kw)
    assert z.shape == forces.shape and np.all(np.diff(z.ravel()) > 0)
    np.testing.assert_allclose(wlc_force(z, **kw), forces, rtol=1e-9)
    zs = np.linspace(0.001, 0.995, 101) * L_TRUE
    np.testing.assert_allclose(wlc_extension(wlc_force(zs, **kw), **kw), zs, rtol=1e-9)
    assert wlc_extension(0.0, **kw) == 0.0 and wlc_force(0.0, **kw) == 0.0
    assert not caplog.records  # the inversion converged everywhere (no warning)


@settings(max_examples=60, deadline=None)
@given(
    p=st.floats(0.3, 5000.0),
    length=st.floats(10.0, 1e6),
    log_s=st.one_of(st.none(), st.floats(0.0, 5.0)),
    log_f=st.floats(-6.0, 3.0),
)
def test_round_trip_property(p, length, log_s, log_f):
    kw = dict(
        persistence_nm=p,
        contour_nm=length,
        stretch_modulus_pN=None if log_s is None else 10.0**log_s,
    )
    f = 10.0**log_f
    assert wlc_force(wlc_extension(f, **kw), **kw) == pytest.approx(f, rel=1e-8)


def test_temperature_scales_force():
    kw = dict(persistence_nm=P_TRUE, contour_nm=L_TRUE)
    a = wlc_force(8000.0, **kw, temperature_K=300.0)
    b = wlc_force(8000.0, **kw, temperature_K=600.0)
    assert b == pytest.approx(2.0 * a, rel=1e-14)


# --------------------------------------------------------------------------------------------
# fits
# --------------------------------------------------------------------------------------------


def test_fit_inextensible_lambda():
    # S fixed at its true value; fit P and L
    rng = np.random.default_rng(3)
    f, z, fse = _simulate(rng)
    res = fit_wlc(f, z, force_se_pN=fse, extension_se_nm=5.0, initial={"stretch_modulus": S_TRUE})
    print(
        f"\nP = {res.persistence_nm:.2f} +- {res.persistence_se_nm:.2f} nm, "
        f"L = {res.contour_nm:.1f} +- {res.contour_se_nm:.1f} nm, chi2/dof {res.reduced_chi2:.2f}"
    )
    assert isinstance(res, WLCFit) and res.fitted == ("persistence", "contour")
    assert abs(res.persistence_nm - P_TRUE) < 3 * res.persistence_se_nm
    assert abs(res.persistence_nm / P_TRUE - 1) < 0.1
    assert abs(res.contour_nm - L_TRUE) < 3 * res.contour_se_nm
    assert abs(res.contour_nm / L_TRUE - 1) < 0.01
    assert res.stretch_modulus_pN == S_TRUE and res.stretch_modulus_se_pN == 0.0
    assert res.offset_nm == 0.0 and res.offset_se_nm == 0.0
    assert res.dof == 23 and res.n_points == 25 and res.absolute_sigma
    assert 0.3 < res.reduced_chi2 < 2.0
    # result arrays are consistent
    np.testing.assert_allclose(res.residuals_nm, res.extension_nm - res.model_extension_nm)
    np.testing.assert_allclose(res.model_extension_nm, res.extension(res.force_pN), rtol=1e-12)
    assert res.chi2 == pytest.approx(np.sum((res.residuals_nm / res.sigma_nm) ** 2))
    assert res.curve_force_pN.shape == res.curve_extension_nm.shape == (200,)
    assert res.curve_force_pN[0] == pytest.approx(f.min())
    assert np.all(np.diff(res.curve_extension_nm) > 0)
    np.testing.assert_allclose(res.force(res.model_extension_nm), res.force_pN, rtol=1e-9)
    assert res.covariance.shape == (2, 2)
    assert np.sqrt(res.covariance[0, 0]) == pytest.approx(res.persistence_se_nm)
    assert "persistence_nm" in res.summary() and "force_pN" not in res.summary()


def _coverage(fit_names, initial, *, offset=0.0, low=0.05, seed=0, n_rep=100):
    rng = np.random.default_rng(seed)
    truth = {"persistence": P_TRUE, "contour": L_TRUE, "stretch_modulus": S_TRUE, "offset": offset}
    attr = {
        "persistence": ("persistence_nm", "persistence_se_nm"),
        "contour": ("contour_nm", "contour_se_nm"),
        "stretch_modulus": ("stretch_modulus_pN", "stretch_modulus_se_pN"),
        "offset": ("offset_nm", "offset_se_nm"),
    }
    est = {k: [] for k in fit_names}
    se = {k: [] for k in fit_names}
    chi2 = []
    for _ in range(n_rep):
        f, z, fse = _simulate(rng, offset=offset, low=low)
        res = fit_wlc(f, z, force_se_pN=fse, extension_se_nm=5.0, fit=fit_names, initial=initial)
        for k in fit_names:
            est[k].append(getattr(res, attr[k][0]))
            se[k].append(getattr(res, attr[k][1]))
        chi2.append(res.reduced_chi2)
    out = {}
    for k in fit_names:
        e, s = np.array(est[k]), np.array(se[k])
        cover = float(np.mean(np.abs(e - truth[k]) <= s))
        out[k] = (e.mean(), e.std(ddof=1), np.median(s), cover)
        print(
            f"  {k}: truth {truth[k]:g}, mean {e.mean():.4g}, scatter {e.std(ddof=1):.3g}, "
            f"median SE {np.median(s):.3g}, +-1 SE coverage {cover:.2f}"
        )
    print(f"  mean chi2/dof {np.mean(chi2):.3f}")
    return out, float(np.mean(chi2))


def test_fit_extensible_standard_errors_match_scatter():
    print("\nP, L, S fitted, 100 repeats:")
    out, chi2 = _coverage(("persistence", "contour", "stretch_modulus"), None, seed=7)
    truth = {"persistence": P_TRUE, "contour": L_TRUE, "stretch_modulus": S_TRUE}
    bound = {"persistence": 0.1, "contour": 0.01, "stretch_modulus": 0.2}
    for k, (mean, scatter, se, cover) in out.items():
        assert 0.6 <= cover <= 0.75, k
        assert 0.75 < se / scatter < 1.33, k  # SE estimates the scatter
        assert abs(mean - truth[k]) < 0.5 * scatter, k  # bias well below one SE
        assert scatter / truth[k] < bound[k] / 2, k  # a single fit: P ~10 %, L ~1 %, S ~20 %
    assert 0.85 < chi2 < 1.15


def test_fit_offset_with_known_contour():
    # L known from the sequence (48.5 kbp x 0.338 nm); unknown zero of z: fit P, S and offset
    print("\nP, S, offset fitted (L known), 200 nm offset injected, 100 repeats:")
    out, chi2 = _coverage(
        ("persistence", "stretch_modulus", "offset"), {"contour": L_TRUE}, offset=200.0, seed=11
    )
    mean, scatter, se, cover = out["offset"]
    assert abs(mean - 200.0) < 0.5 * scatter and se < 25.0  # bias well below one SE
    for k, (_, scatter, se, cover) in out.items():
        assert 0.6 <= cover <= 0.75, k
        assert 0.75 < se / scatter < 1.33, k
    assert 0.85 < chi2 < 1.15


def test_fit_offset_and_contour_need_low_forces():
    # offset and L are told apart by the low-force points, where z/L is small
    rng = np.random.default_rng(5)
    f, z, fse = _simulate(rng, offset=200.0, low=0.005)
    fit = ("persistence", "contour", "offset")
    res = fit_wlc(
        f, z, force_se_pN=fse, extension_se_nm=5.0, fit=fit, initial={"stretch_modulus": S_TRUE}
    )
    print(
        f"\n0.005-30 pN: offset {res.offset_nm:.1f} +- {res.offset_se_nm:.1f} nm, "
        f"L {res.contour_nm:.0f} +- {res.contour_se_nm:.0f} nm, "
        f"P {res.persistence_nm:.2f} +- {res.persistence_se_nm:.2f} nm"
    )
    assert abs(res.offset_nm - 200.0) < 3 * res.offset_se_nm and res.offset_se_nm < 40.0
    assert abs(res.contour_nm / L_TRUE - 1) < 0.01
    assert abs(res.persistence_nm - P_TRUE) < 3 * res.persistence_se_nm
    # from 0.05 pN up, the two are nearly degenerate: the errors say so
    f, z, fse = _simulate(rng, offset=200.0, low=0.05)
    res = fit_wlc(
        f, z, force_se_pN=fse, extension_se_nm=5.0, fit=fit, initial={"stretch_modulus": S_TRUE}
    )
    print(f"0.05-30 pN: offset {res.offset_nm:.0f} +- {res.offset_se_nm:.0f} nm")
    assert res.offset_se_nm > 200.0
    corr = res.covariance[1, 2] / math.sqrt(res.covariance[1, 1] * res.covariance[2, 2])
    assert corr < -0.95


def test_fit_relative_errors_estimates_noise_level():
    # no force_se_pN: constant relative force error, size taken from the scatter
    rng = np.random.default_rng(21)
    f, z, _ = _simulate(rng, rel_force=0.03, ext_nm=0.0, n=40)
    res = fit_wlc(f, z, fit=("persistence", "contour", "stretch_modulus"))
    print(
        f"\nrelative weights: sqrt(chi2/dof) = {math.sqrt(res.reduced_chi2):.4f} (3 % noise), "
        f"P {res.persistence_nm:.2f} +- {res.persistence_se_nm:.2f} nm"
    )
    assert not res.absolute_sigma
    assert 0.022 < math.sqrt(res.reduced_chi2) < 0.038
    assert abs(res.persistence_nm - P_TRUE) < 3 * res.persistence_se_nm
    assert abs(res.contour_nm - L_TRUE) < 3 * res.contour_se_nm


def test_fit_marko_siggia_and_model_bias():
    rng = np.random.default_rng(8)
    f_true = np.geomspace(0.05, 30, 25)
    z = wlc_extension(f_true, **LAMBDA, model="marko_siggia") + 2.0 * rng.standard_normal(25)
    kw = dict(force_se_pN=0.01 * f_true, extension_se_nm=2.0, fit=("persistence", "contour"))
    kw["initial"] = {"stretch_modulus": S_TRUE}
    ms = fit_wlc(f_true, z, model="marko_siggia", **kw)
    assert abs(ms.persistence_nm - P_TRUE) < 3 * ms.persistence_se_nm
    # fitting Marko-Siggia data with the (accurate) Bouchiat formula shows the MS bias in P
    bo = fit_wlc(f_true, z, model="bouchiat", **kw)
    print(
        f"\nMS data: MS fit P = {ms.persistence_nm:.2f} nm, Bouchiat fit P = "
        f"{bo.persistence_nm:.2f} nm ({(bo.persistence_nm / P_TRUE - 1) * 100:+.1f} %)"
    )
    assert abs(bo.persistence_nm / P_TRUE - 1) > 0.03


def test_fit_drops_nan_rows_and_far_points():
    rng = np.random.default_rng(4)
    f, z, fse = _simulate(rng)
    kw = dict(extension_se_nm=5.0, fit=("persistence", "contour", "stretch_modulus"))
    ref = fit_wlc(f, z, force_se_pN=fse, **kw)
    # NaN rows and overstretched points (65 pN, 1.7 x the B-DNA length) are left out
    f2 = np.concatenate([f, [np.nan, 3.0, 65.0, 66.0]])
    z2 = np.concatenate([z, [9000.0, np.nan, 1.6 * L_TRUE, 1.7 * L_TRUE]])
    fse2 = np.concatenate([fse, [0.1, 0.1, 2.0, 2.0]])
    order = rng.permutation(f2.size)  # order of the rows does not matter
    res = fit_wlc(f2[order], z2[order], force_se_pN=fse2[order], force_range_pN=(0.0, 50.0), **kw)
    assert res.n_dropped == 4 and res.n_points == 25
    assert res.persistence_nm == pytest.approx(ref.persistence_nm, rel=1e-7)
    assert res.stretch_modulus_pN == pytest.approx(ref.stretch_modulus_pN, rel=1e-6)
    # the input arrays are untouched
    assert np.isnan(f2[order]).sum() == 1


def test_fit_inextensible_model_beyond_097_contour():
    # extensible data reach z/L = 1.004 at 30 pN: z(F) of the inextensible model stays finite,
    # so the fit runs (L absorbs the stretch) instead of failing on an infinite force
    rng = np.random.default_rng(9)
    f, z, fse = _simulate(rng)
    assert np.max(z) > L_TRUE
    res = fit_wlc(f, z, force_se_pN=fse, extension_se_nm=5.0)
    print(
        f"\ninextensible fit of extensible data: P {res.persistence_nm:.1f} nm, L "
        f"{res.contour_nm:.0f} nm, chi2/dof {res.reduced_chi2:.1f}"
    )
    assert res.stretch_modulus_pN is None and res.contour_nm > np.max(z)
    assert np.isfinite(res.persistence_nm) and np.isfinite(res.chi2)
    # the same data, low forces only (F/S small): close to the truth
    low = fit_wlc(f, z, force_se_pN=fse, extension_se_nm=5.0, force_range_pN=(0.0, 5.0))
    assert abs(low.contour_nm / L_TRUE - 1) < 0.01 and abs(low.persistence_nm / P_TRUE - 1) < 0.1


def test_fit_unconstrained_stretch_modulus_warns(caplog):
    # below 1 pN the backbone stretch F/S is hardly visible: S is not determined, and flagged
    rng = np.random.default_rng(6)
    f, z, fse = _simulate(rng, high=1.0, n=15)
    res = fit_wlc(
        f,
        z,
        force_se_pN=fse,
        extension_se_nm=5.0,
        fit=("persistence", "contour", "stretch_modulus"),
    )
    assert res.stretch_modulus_se_pN > res.stretch_modulus_pN  # relative error > 100 %
    assert "stretch_modulus" in caplog.text and "not constrained" in caplog.text
    assert abs(res.persistence_nm - P_TRUE) < 3 * res.persistence_se_nm


def test_fit_fixed_parameters_and_initial():
    rng = np.random.default_rng(12)
    f, z, fse = _simulate(rng)
    res = fit_wlc(
        f,
        z,
        force_se_pN=fse,
        extension_se_nm=5.0,
        fit="persistence",
        initial={"contour": L_TRUE, "stretch_modulus": S_TRUE},
    )
    assert res.fitted == ("persistence",) and res.contour_se_nm == 0.0
    assert abs(res.persistence_nm - P_TRUE) < 3 * res.persistence_se_nm
    # a poor start converges to the same optimum
    full = dict(force_se_pN=fse, extension_se_nm=5.0, fit=("persistence", "contour"))
    full["initial"] = {"stretch_modulus": S_TRUE}
    a = fit_wlc(f, z, **full)
    full["initial"] = {"stretch_modulus": S_TRUE, "persistence": 3.0, "contour": 30000.0}
    b = fit_wlc(f, z, **full)
    assert b.persistence_nm == pytest.approx(a.persistence_nm, rel=1e-6)


def test_fit_wlc_table():
    rng = np.random.default_rng(2)
    rows = []
    for bead, n in ((0, 20), (1, 1)):
        f_true = np.geomspace(0.05, 20, n)
        z = wlc_extension(f_true, **LAMBDA) - 150.0  # z_surface off by 150 nm
        for fi, zi in zip(f_true, z, strict=True):
            for axis, direction in (("x", "parallel"), ("y", "perpendicular")):
                rows.append(
                    {
                        "bead": bead,
                        "axis": axis,
                        "direction": direction,
                        "extension_nm": zi,
                        "force_pN": fi * (1 + 0.03 * rng.standard_normal()),
                        "force_se_pN": 0.03 * fi,
                    }
                )
    table = pd.DataFrame(rows)
    out = fit_wlc_table(
        table,
        fit=("persistence", "stretch_modulus", "offset"),
        initial={"contour": L_TRUE},
        extension_se_nm=2.0,
    )
    print("\n" + out.to_string())
    assert list(out.bead) == [0, 1] and out.n_points.tolist() == [40, 2]
    b0 = out.iloc[0]
    assert abs(b0.offset_nm + 150.0) < 3 * b0.offset_se_nm
    assert abs(b0.persistence_nm - P_TRUE) < 3 * b0.persistence_se_nm
    assert np.isnan(out.iloc[1].persistence_nm)  # 2 points cannot fix 3 parameters: NaN
    perp = fit_wlc_table(table, direction="perpendicular", initial={"stretch_modulus": S_TRUE})
    assert perp.n_points.tolist() == [20, 1]


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_model_errors():
    kw = dict(persistence_nm=P_TRUE, contour_nm=L_TRUE)
    with pytest.raises(ValueError, match="contour_nm"):
        wlc_force(L_TRUE, **kw)
    with pytest.raises(ValueError, match="extension_nm"):
        wlc_force([-1.0, 5.0], **kw)
    with pytest.raises(ValueError, match="extension_nm"):
        wlc_force(np.nan, **kw, stretch_modulus_pN=S_TRUE)
    with pytest.raises(ValueError, match="force_pN"):
        wlc_extension(-0.1, **kw)
    with pytest.raises(ValueError, match="persistence_nm"):
        wlc_force(1.0, persistence_nm=0.0, contour_nm=L_TRUE)
    with pytest.raises(ValueError, match="contour_nm"):
        wlc_extension(1.0, persistence_nm=P_TRUE, contour_nm=-5.0)
    with pytest.raises(ValueError, match="stretch_modulus_pN"):
        wlc_force(1.0, **kw, stretch_modulus_pN=0.0)
    with pytest.raises(ValueError, match="temperature_K"):
        wlc_force(1.0, **kw, temperature_K=-3.0)
    with pytest.raises(ValueError, match="model"):
        wlc_force(1.0, **kw, model="freely_jointed")


def test_fit_errors():
    f = np.geomspace(0.1, 10, 6)
    z = wlc_extension(f, persistence_nm=P_TRUE, contour_nm=L_TRUE)
    with pytest.raises(ValueError, match="force_pN must be > 0"):
        fit_wlc(np.r_[f[:-1], 0.0], z)
    with pytest.raises(ValueError, match="more points than parameters"):
        fit_wlc(f[:2], z[:2])
    with pytest.raises(ValueError, match="more points than parameters"):
        fit_wlc(np.r_[f[:2], np.nan], np.r_[z[:2], 1.0])
    with pytest.raises(ShapeError, match="extension_nm"):
        fit_wlc(f, z[:-1])
    with pytest.raises(ShapeError, match="force_se_pN"):
        fit_wlc(f, z, force_se_pN=np.ones(3))
    with pytest.raises(ValueError, match="force_se_pN must be >= 0"):
        fit_wlc(f, z, force_se_pN=-0.1)
    with pytest.raises(ValueError, match="zero effective error"):
        fit_wlc(f, z, force_se_pN=0.0)
    with pytest.raises(ValueError, match="extension_se_nm needs force_se_pN"):
        fit_wlc(f, z, extension_se_nm=2.0)
    with pytest.raises(ValueError, match="fit: unknown"):
        fit_wlc(f, z, fit=("persistence", "kuhn"))
    with pytest.raises(ValueError, match="initial: unknown"):
        fit_wlc(f, z, initial={"persistence_nm": 50.0})
    with pytest.raises(ValueError, match=r"initial\['contour'\]"):
        fit_wlc(f, z, fit=("persistence",))
    with pytest.raises(ValueError, match="force_range_pN"):
        fit_wlc(f, z, force_range_pN=(5.0, 1.0))
    with pytest.raises(ValueError, match="model"):
        fit_wlc(f, z, model="fjc")
    with pytest.raises(TypeError, match="table"):
        fit_wlc_table({"bead": [0]})
    with pytest.raises(ValueError, match="column"):
        fit_wlc_table(pd.DataFrame({"bead": [0], "force_pN": [1.0]}))
