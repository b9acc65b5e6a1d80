"""Force calibration: camera PSD model, exact OU simulator, variance and spectral methods.

Known answers: the closed-form PSD integrates to the exposure-blurred variance (Wong & Halvorsen)
and equals the explicit alias sum; simulated trajectories have the analytic variance and
autocovariances; the spectral fit recovers the simulated force within 4 of its standard errors
(about 1-2 % for 20000 frames), while the variance method is biased by exactly 1 / S(2 pi fc W).
Run with ``-s`` to see the recovered figures.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from stacklab.beads.force import (
    BOLTZMANN_PN_NM_PER_K,
    ForceFit,
    camera_psd,
    drag_coefficient,
    effective_length,
    exposure_variance_factor,
    fit_force_spectrum,
    force_from_variance,
    forces_from_table,
    simulate_fluctuations,
)
from stacklab.errors import ShapeError

KBT = BOLTZMANN_PN_NM_PER_K * 296.15  # pN nm


def _report(label: str, true: float, fit: ForceFit) -> None:
    print(
        f"\n{label}: F true {true:.4g} pN, spectral {fit.force_pN:.4g} +- {fit.force_se_pN:.2g} pN"
        f" ({(fit.force_pN / true - 1) * 100:+.2f} %), variance method {fit.force_variance_pN:.4g}"
        f" pN ({(fit.force_variance_pN / true - 1) * 100:+.1f} %), fc {fit.corner_frequency_hz:.4g}"
        f" Hz, fs {fit.frame_rate_hz:g} Hz, W {fit.exposure_s:.3g} s"
    )


# --------------------------------------------------------------------------------------------
# the PSD model
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fc", [0.5, 40.0, 480.0, 6000.0])
@pytest.mark.parametrize("exposure_fraction", [1.0, 0.3, 0.0])
def test_psd_integrates_to_blurred_variance(fc, exposure_fraction):
    fs, d = 1000.0, 4.0e5
    w = exposure_fraction / fs
    total, _ = integrate.quad(
        lambda f: camera_psd(f, fc, d, frame_rate_hz=fs, exposure_s=w),
        0.0,
        fs / 2,
        limit=400,
        points=[fc] if fc < fs / 2 else None,
    )
    sigma2 = d / (2 * math.pi * fc)
    a = 2 * math.pi * fc * w
    s = 2 / a - 2 * (1 - math.exp(-a)) / a**2 if a > 0 else 1.0  # Wong & Halvorsen 2006
    assert total == pytest.approx(sigma2 * s, rel=1e-7)
    assert exposure_variance_factor(fc, w) == pytest.approx(s, rel=1e-9)  # naive s: cancellation


def test_exposure_variance_factor_limits():
    assert exposure_variance_factor(10.0, 0.0) == 1.0
    assert exposure_variance_factor(1e-9, 1e-3) == pytest.approx(1.0, abs=1e-10)
    a = 2 * math.pi * 1e4 * 1e-2  # fc >> 1/W: S -> 2/a - 2/a^2
    assert exposure_variance_factor(1e4, 1e-2) == pytest.approx(2 / a - 2 / a**2, rel=1e-12)
    # the series branch joins the direct formula smoothly
    fcs = np.array([0.99e-3, 1.01e-3]) / (2 * math.pi)
    s = exposure_variance_factor(fcs, 1.0)
    assert np.all(np.abs(s - (1 - 2 * math.pi * fcs / 3)) < 1e-6)


@pytest.mark.parametrize("fc", [3.0, 200.0, 2500.0])
@pytest.mark.parametrize("exposure_fraction", [1.0, 0.5])
def test_psd_closed_form_equals_alias_sum(fc, exposure_fraction):
    fs, d = 500.0, 2.0e5
    f = np.linspace(0.1, fs / 2, 37)
    w = exposure_fraction / fs
    closed = camera_psd(f, fc, d, frame_rate_hz=fs, exposure_s=w)
    summed = camera_psd(f, fc, d, frame_rate_hz=fs, exposure_s=w, n_aliases=4000)
    np.testing.assert_allclose(closed, summed, rtol=1e-9)


def test_psd_without_exposure_is_aliased_lorentzian():
    # Berg-Sorensen & Flyvbjerg 2004: (2/fs) sigma^2 (1 - r^2) / (1 - 2 r cos(2 pi f/fs) + r^2)
    fs, fc, d = 200.0, 30.0, 1e5
    f = np.linspace(0.5, 99.5, 50)
    r = math.exp(-2 * math.pi * fc / fs)
    sigma2 = d / (2 * math.pi * fc)
    expect = 2 / fs * sigma2 * (1 - r**2) / (1 - 2 * r * np.cos(2 * math.pi * f / fs) + r**2)
    got = camera_psd(f, fc, d, frame_rate_hz=fs, exposure_s=0.0)
    np.testing.assert_allclose(got, expect, rtol=1e-12)
    # far below fc and fs: the continuous Lorentzian 2 D / (4 pi^2 (fc^2 + f^2)) x 2 (one-sided)
    fs_fast = 1e6
    low = camera_psd(np.array([1.0, 10.0]), fc, d, frame_rate_hz=fs_fast, exposure_s=0.0)
    np.testing.assert_allclose(low, d / (math.pi**2 * (fc**2 + np.array([1.0, 100.0]))), rtol=1e-4)


# --------------------------------------------------------------------------------------------
# physics helpers
# --------------------------------------------------------------------------------------------


def test_drag_and_effective_length():
    eta = 0.89e-3
    stokes = 6 * math.pi * eta * 1e-6 * 500.0  # pN s / nm (1 Pa s = 1e-6 pN s/nm^2)
    assert drag_coefficient(500.0, viscosity_pa_s=eta) == pytest.approx(stokes, rel=1e-12)
    assert stokes * 1e-3 == pytest.approx(8.388e-9, rel=1e-3)  # N s / m
    # Faxén at R/h = 1/2: 1 - 9/32 + 1/64 - 45/4096 - 1/512
    q = 0.5
    faxen = 1 - 9 / 16 * q + q**3 / 8 - 45 / 256 * q**4 - q**5 / 16
    assert drag_coefficient(500.0, viscosity_pa_s=eta, height_nm=1000.0) == pytest.approx(
        stokes / faxen, rel=1e-12
    )
    assert drag_coefficient(500.0, height_nm=1e9) == pytest.approx(stokes, rel=1e-6)
    assert effective_length(2000.0) == 2000.0
    assert effective_length(2000.0, direction="parallel", bead_radius_nm=1400.0) == 3400.0
    with pytest.raises(ValueError, match="bead_radius_nm"):
        effective_length(2000.0, direction="parallel")
    with pytest.raises(ValueError, match="height_nm"):
        drag_coefficient(500.0, height_nm=400.0)
    with pytest.raises(ValueError, match="direction"):
        effective_length(2000.0, direction="sideways")


# --------------------------------------------------------------------------------------------
# the simulator
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exposure_fraction", [1.0, 0.25, 0.0])
def test_simulator_moments(exposure_fraction):
    """Variance and lag-1/2 covariances of the frames against the analytic blurred OU values."""
    fs = 400.0
    sim = simulate_fluctuations(
        5.0,
        1500.0,
        frame_rate_hz=fs,
        exposure_s=exposure_fraction / fs,
        bead_radius_nm=500.0,
        n_frames=200_000,
        seed=3,
    )
    x = sim.x_nm
    assert x.shape == (200_000,) and x.dtype == np.float64
    assert sim.stiffness_pN_per_nm == pytest.approx(5.0 / 1500.0)
    assert sim.corner_frequency_hz == pytest.approx(
        sim.stiffness_pN_per_nm / (2 * math.pi * sim.drag_pN_s_per_nm)
    )
    assert sim.variance_nm2 == pytest.approx(KBT / sim.stiffness_pN_per_nm)
    a = 2 * math.pi * sim.corner_frequency_hz * sim.exposure_s
    c = (math.sinh(a / 2) / (a / 2)) ** 2 if a > 0 else 1.0  # covariance of disjoint windows
    r = math.exp(-2 * math.pi * sim.corner_frequency_hz / fs)
    # tau = 2.9 ms, T = 500 s: relative standard error of each moment ~ sqrt(2 tau / T) ~ 0.4 %
    tol = 0.015
    assert np.mean(x) == pytest.approx(0.0, abs=0.02 * math.sqrt(sim.variance_nm2))
    assert np.mean(x * x) == pytest.approx(sim.blurred_variance_nm2, rel=tol)
    assert np.mean(x[1:] * x[:-1]) == pytest.approx(sim.variance_nm2 * c * r, rel=tol)
    assert np.mean(x[2:] * x[:-2]) == pytest.approx(sim.variance_nm2 * c * r * r, rel=3 * tol)
    print(
        f"\nsimulator W = {exposure_fraction:g}/fs: variance {np.mean(x * x):.2f} (expected "
        f"{sim.blurred_variance_nm2:.2f}, unblurred {sim.variance_nm2:.2f}) nm^2"
    )


def test_simulator_seeded_and_drift():
    kw = dict(frame_rate_hz=100.0, bead_radius_nm=1400.0, n_frames=1000)
    a = simulate_fluctuations(2.0, 2000.0, seed=7, **kw).x_nm
    b = simulate_fluctuations(2.0, 2000.0, seed=7, **kw).x_nm
    c = simulate_fluctuations(2.0, 2000.0, seed=8, **kw).x_nm
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    d = simulate_fluctuations(2.0, 2000.0, seed=7, drift_nm_per_s=50.0, **kw).x_nm
    t = np.arange(1000) / 100.0 + 0.005
    np.testing.assert_allclose(d - a, 50.0 * t, atol=1e-9)


# --------------------------------------------------------------------------------------------
# force recovery
# --------------------------------------------------------------------------------------------

CASES = [
    # force pN, extension nm, radius nm, fs Hz, frames: fc ~ 1 Hz, 55 Hz, 460 Hz
    (0.5, 3000.0, 1400.0, 100.0, 65_536),
    (5.0, 1500.0, 500.0, 400.0, 20_000),
    (30.0, 1000.0, 500.0, 1000.0, 20_000),
]


@pytest.mark.parametrize(("force", "length", "radius", "fs", "n"), CASES)
def test_spectral_fit_recovers_force(force, length, radius, fs, n):
    sim = simulate_fluctuations(
        force, length, frame_rate_hz=fs, bead_radius_nm=radius, n_frames=n, seed=11
    )
    fit = fit_force_spectrum(sim.x_nm, length, frame_rate_hz=fs, bead_radius_nm=radius)
    _report(f"F={force} pN, L={length} nm, R={radius} nm, {n} frames", force, fit)
    # the expected statistical error for these frame counts is 1-2 %
    assert fit.force_se_pN / force < 0.025
    assert abs(fit.force_pN - force) < 4 * fit.force_se_pN
    assert abs(fit.corner_frequency_hz - sim.corner_frequency_hz) < (4 * fit.corner_frequency_se_hz)
    assert abs(fit.diffusion_nm2_per_s - sim.diffusion_nm2_per_s) < (4 * fit.diffusion_se_nm2_per_s)
    # the fitted drag agrees with Stokes-Faxén, and everything is consistent
    assert fit.expected_drag_pN_s_per_nm == pytest.approx(sim.drag_pN_s_per_nm, rel=1e-12)
    assert fit.drag_pN_s_per_nm == pytest.approx(sim.drag_pN_s_per_nm, rel=0.08)
    assert fit.force_pN == pytest.approx(
        2 * math.pi * fit.drag_pN_s_per_nm * fit.corner_frequency_hz * length, rel=1e-12
    )
    assert fit.model_variance_nm2 * fit.stiffness_pN_per_nm == pytest.approx(KBT, rel=1e-12)
    assert fit.n_frames == n and fit.n_interpolated == 0


def test_variance_method_bias_and_its_removal():
    """fc ~ fs/2 with W = 1/fs: the camera hides 56 % of the variance (S = 0.44)."""
    force, length, radius, fs = 30.0, 1000.0, 500.0, 1000.0
    sim = simulate_fluctuations(
        force, length, frame_rate_hz=fs, bead_radius_nm=radius, n_frames=20_000, seed=21
    )
    fit = fit_force_spectrum(sim.x_nm, length, frame_rate_hz=fs)
    f_var = force_from_variance(sim.x_nm, length)
    _report("variance-method bias", force, fit)
    s_true = exposure_variance_factor(sim.corner_frequency_hz, 1 / fs)
    print(f"  S(2 pi fc W) = {s_true:.3f}: expected variance-method force {force / s_true:.3g} pN")
    assert f_var == pytest.approx(fit.force_variance_pN, rel=1e-12)
    # the variance method overestimates the force by 1 / S (variance relative error ~ 0.7 %)
    assert f_var / force == pytest.approx(1 / s_true, rel=0.03)
    assert f_var > 2.0 * force
    # the spectral method removes the bias
    assert abs(fit.force_pN - force) < 4 * fit.force_se_pN
    assert abs(fit.force_pN / force - 1) < 0.06
    assert fit.blur_factor == pytest.approx(s_true, rel=0.05)
    assert fit.force_variance_pN * fit.blur_factor == pytest.approx(fit.force_pN, rel=0.06)
    # a short exposure shrinks the bias; the spectral method is right either way
    short = simulate_fluctuations(
        force,
        length,
        frame_rate_hz=fs,
        exposure_s=0.1 / fs,
        bead_radius_nm=radius,
        n_frames=20_000,
        seed=22,
    )
    fit_short = fit_force_spectrum(short.x_nm, length, frame_rate_hz=fs, exposure_s=0.1 / fs)
    _report("exposure 0.1/fs", force, fit_short)
    assert 1.0 < fit_short.force_variance_pN / force < 1.25
    assert abs(fit_short.force_pN - force) < 4 * fit_short.force_se_pN


def test_variance_method_unbiased_at_low_force():
    force, length, radius, fs = 0.5, 3000.0, 1400.0, 100.0  # fc ~ 1 Hz << fs
    sim = simulate_fluctuations(
        force, length, frame_rate_hz=fs, bead_radius_nm=radius, n_frames=65_536, seed=31
    )
    f_var = force_from_variance(sim.x_nm, length)
    print(f"\nlow force: variance method {f_var:.4g} pN for {force} pN")
    # tau = 0.17 s, T = 655 s: relative error sqrt(2 tau / T) ~ 2.3 %; blur bias 1 / S = 1.02
    assert f_var / force == pytest.approx(1.0, abs=0.08)


def test_fix_drag_when_fc_exceeds_frame_rate():
    """fc = 460 Hz at fs = 100 Hz: fc and D are degenerate unless the drag is known."""
    force, length, radius, fs = 30.0, 1000.0, 500.0, 100.0
    sim = simulate_fluctuations(
        force, length, frame_rate_hz=fs, bead_radius_nm=radius, n_frames=20_000, seed=41
    )
    free = fit_force_spectrum(sim.x_nm, length, frame_rate_hz=fs)
    fixed = fit_force_spectrum(
        sim.x_nm, length, frame_rate_hz=fs, bead_radius_nm=radius, fix_drag=True
    )
    _report("fc >> fs, free drag", force, free)
    _report("fc >> fs, fixed drag", force, fixed)
    assert free.force_se_pN / force > 0.1
    assert fixed.fixed_drag and fixed.diffusion_se_nm2_per_s == 0.0
    assert fixed.diffusion_nm2_per_s == pytest.approx(sim.diffusion_nm2_per_s, rel=1e-12)
    assert fixed.force_se_pN / force < 0.02
    assert abs(fixed.force_pN - force) < 4 * fixed.force_se_pN
    assert fixed.force_variance_pN > 7 * force  # variance method: S ~ 2 / (2 pi fc / fs)


def test_parallel_direction_uses_l_plus_r():
    force, length, radius, fs = 4.0, 2000.0, 1400.0, 200.0
    sim = simulate_fluctuations(
        force,
        length,
        frame_rate_hz=fs,
        bead_radius_nm=radius,
        n_frames=20_000,
        direction="parallel",
        seed=51,
    )
    assert sim.stiffness_pN_per_nm == pytest.approx(force / (length + radius))
    kw = dict(frame_rate_hz=fs, bead_radius_nm=radius)
    par = fit_force_spectrum(sim.x_nm, length, direction="parallel", **kw)
    perp = fit_force_spectrum(sim.x_nm, length, **kw)
    _report("parallel", force, par)
    assert abs(par.force_pN - force) < 4 * par.force_se_pN
    assert par.effective_length_nm == length + radius
    assert perp.force_pN == pytest.approx(par.force_pN * length / (length + radius), rel=1e-12)


def test_periodogram_normalisation():
    """Parseval: the one-sided periodogram sums to the variance (odd length: no Nyquist bin)."""
    sim = simulate_fluctuations(5.0, 1500.0, frame_rate_hz=400.0, n_frames=4001, seed=61)
    fit = fit_force_spectrum(sim.x_nm, 1500.0, frame_rate_hz=400.0, detrend="mean")
    df = 400.0 / 4001
    total = np.sum(fit.psd_nm2_per_hz * fit.block_bins) * df
    assert total == pytest.approx(fit.variance_nm2, rel=1e-10)
    assert fit.block_bins.sum() == 2000
    assert fit.frequency_hz.shape == fit.model_nm2_per_hz.shape == fit.psd_se_nm2_per_hz.shape
    assert np.all(np.diff(fit.frequency_hz) > 0)
    # the block-averaged data follow the model: blocks of >= 20 bins within 5 standard errors
    big = fit.block_bins >= 20
    assert big.sum() >= 10
    dev = fit.psd_nm2_per_hz[big] / fit.model_nm2_per_hz[big] - 1
    assert np.all(np.abs(dev) < 5 / np.sqrt(fit.block_bins[big]))
    s = fit.summary()
    assert s["force_pN"] == fit.force_pN and "psd_nm2_per_hz" not in s


# --------------------------------------------------------------------------------------------
# drift, NaN, tables
# --------------------------------------------------------------------------------------------


def test_drift_removal():
    force, length, radius, fs = 5.0, 1500.0, 500.0, 400.0
    sim = simulate_fluctuations(
        force,
        length,
        frame_rate_hz=fs,
        bead_radius_nm=radius,
        n_frames=20_000,
        drift_nm_per_s=20.0,
        seed=71,
    )
    s_blur = exposure_variance_factor(sim.corner_frequency_hz, 1 / fs)
    lin = force_from_variance(sim.x_nm, length)
    mean_only = force_from_variance(sim.x_nm, length, detrend="mean")
    print(f"\ndrift 20 nm/s: linear detrend {lin:.3g} pN, mean only {mean_only:.3g} pN")
    assert lin * s_blur == pytest.approx(force, rel=0.05)
    assert mean_only < 0.2 * force  # 50 s x 20 nm/s of drift swamps the 1 nm^2 fluctuations
    fit = fit_force_spectrum(sim.x_nm, length, frame_rate_hz=fs)
    assert abs(fit.force_pN - force) < 4 * fit.force_se_pN
    # a slow sinusoidal drift: a moving average removes it, and the model accounts for the filter
    t = np.arange(20_000) / fs
    wavy = sim.x_nm + 30.0 * np.sin(2 * math.pi * 0.05 * t)
    window = 401  # 1 s, ~ 340 tau
    ma = fit_force_spectrum(wavy, length, frame_rate_hz=fs, detrend=window)
    _report("moving-average detrend", force, ma)
    assert abs(ma.force_pN - force) < 4 * ma.force_se_pN
    assert force_from_variance(wavy, length, detrend=window) * s_blur == pytest.approx(
        force, rel=0.05
    )


def test_moving_average_transfer_function():
    """``|1 - H|^2`` of the moving-average detrend matches the filtered spectrum of white noise."""
    from scipy import ndimage

    from stacklab.beads.force import _moving_average_gain

    fs, window, seg = 100.0, 31, 4096
    x = np.random.default_rng(5).standard_normal(64 * seg)
    y = (x - ndimage.uniform_filter1d(x, window, mode="reflect")).reshape(64, seg)
    p = np.mean(np.abs(np.fft.rfft(y, axis=1)) ** 2, axis=0) * 2 / (seg * fs)
    f = np.fft.rfftfreq(seg, 1 / fs)
    sel = (f > fs / window) & (f < fs / 2)
    blocks = p[sel][: 16 * (sel.sum() // 16)].reshape(-1, 16).mean(axis=1)
    model = (_moving_average_gain(f[sel], fs, window) * 2 / fs)[: blocks.size * 16]
    model = model.reshape(-1, 16).mean(axis=1)
    # 1024 periodogram values per block: relative standard error 3 % (|1 - H| instead of
    # |1 - H|^2 would be 20 % off)
    np.testing.assert_allclose(blocks, model, rtol=0.14)
    low = (f > 0) & (f < 0.5 * fs / window)
    assert np.all(_moving_average_gain(f[low], fs, window) < 0.3)


def test_nan_frames():
    force, length, fs = 5.0, 1500.0, 400.0
    sim = simulate_fluctuations(force, length, frame_rate_hz=fs, n_frames=20_000, seed=81)
    x = sim.x_nm.copy()
    rng = np.random.default_rng(0)
    lost = rng.choice(np.arange(100, 19_900), size=200, replace=False)
    x[lost] = np.nan
    x[:5] = np.nan  # leading frames are trimmed, not interpolated
    before = x.copy()
    fit = fit_force_spectrum(x, length, frame_rate_hz=fs)
    np.testing.assert_array_equal(x, before)  # input untouched
    assert fit.n_frames == 19_995 and fit.n_interpolated == 200
    assert abs(fit.force_pN - force) < 4 * fit.force_se_pN + 0.01 * force
    clean = force_from_variance(sim.x_nm, length)
    assert force_from_variance(x, length) == pytest.approx(clean, rel=0.02)
    with pytest.raises(ValueError, match="nan_policy"):
        fit_force_spectrum(x, length, frame_rate_hz=fs, nan_policy="raise")
    with pytest.raises(ValueError, match="nan_policy"):
        force_from_variance(x, length, nan_policy="raise")
    gappy = sim.x_nm.copy()
    gappy[::5] = np.nan
    with pytest.warns(UserWarning, match="interpolated"):
        fit_force_spectrum(gappy, length, frame_rate_hz=fs)


def test_forces_from_table():
    fs, px, radius = 200.0, 100.0, 1400.0
    truth = {0: (2.0, 2500.0), 1: (8.0, 1800.0)}
    rows = []
    for bead, (force, length) in truth.items():
        kw = dict(frame_rate_hz=fs, bead_radius_nm=radius, n_frames=8192)
        x = simulate_fluctuations(force, length, direction="parallel", seed=bead, **kw).x_nm
        y = simulate_fluctuations(force, length, seed=10 + bead, **kw).x_nm
        rows.append(
            pd.DataFrame(
                {
                    "frame": np.arange(8192),
                    "bead": bead,
                    "x": 40.0 + x / px,
                    "y": 30.0 + y / px,
                    "z": length + np.random.default_rng(bead).normal(0, 5.0, 8192),
                    "quality": 1.0,
                }
            )
        )
    table = pd.concat(rows).sort_values(["frame", "bead"]).reset_index(drop=True)
    table = table.drop(index=[10, 11, 500])  # lost rows become interpolated frames
    out = forces_from_table(
        table,
        pixel_size_nm=px,
        frame_rate_hz=fs,
        z_surface_nm=0.0,
        field_axis="x",
        bead_radius_nm=radius,
    )
    assert list(out.columns) == [
        "bead",
        "axis",
        "direction",
        "extension_nm",
        "force_pN",
        "force_se_pN",
        "corner_frequency_hz",
        "force_variance_pN",
        "n_frames",
    ]
    assert len(out) == 4
    for row in out.itertuples():
        force, length = truth[row.bead]
        assert row.direction == ("parallel" if row.axis == "x" else "perpendicular")
        assert row.extension_nm == pytest.approx(length, abs=1.0)
        assert abs(row.force_pN - force) < 4 * row.force_se_pN + 0.01 * force
        print(f"\ntable bead {row.bead} {row.axis}: {row.force_pN:.3g} pN (true {force})")
    with pytest.raises(ValueError, match="extension_nm"):
        forces_from_table(table, pixel_size_nm=px, frame_rate_hz=fs, z_surface_nm=5000.0)
    with pytest.raises(ValueError, match="column"):
        forces_from_table(table.drop(columns="z"), pixel_size_nm=px, frame_rate_hz=fs)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def test_input_validation():
    x = simulate_fluctuations(5.0, 1500.0, frame_rate_hz=400.0, n_frames=500, seed=1).x_nm
    with pytest.raises(ValueError, match="extension_nm"):
        force_from_variance(x, -100.0)
    with pytest.raises(ValueError, match="extension_nm"):
        fit_force_spectrum(x, 0.0, frame_rate_hz=400.0)
    with pytest.raises(ValueError, match="force_pN"):
        simulate_fluctuations(-1.0, 1500.0, frame_rate_hz=400.0, n_frames=100)
    with pytest.raises(ValueError, match="n_frames"):
        simulate_fluctuations(1.0, 1500.0, frame_rate_hz=400.0, n_frames=1)
    with pytest.raises(ValueError, match="exposure_s"):
        fit_force_spectrum(x, 1500.0, frame_rate_hz=400.0, exposure_s=0.01)
    with pytest.raises(ValueError, match="frame_rate_hz"):
        fit_force_spectrum(x, 1500.0, frame_rate_hz=0.0)
    with pytest.raises(ValueError, match="temperature_K"):
        force_from_variance(x, 1500.0, temperature_K=-3.0)
    with pytest.raises(ValueError, match="at least 64"):
        fit_force_spectrum(x[:50], 1500.0, frame_rate_hz=400.0)
    with pytest.raises(ValueError, match="at least 10"):
        force_from_variance(x[:5], 1500.0)
    with pytest.raises(ShapeError, match="x_nm"):
        fit_force_spectrum(np.stack([x, x]), 1500.0, frame_rate_hz=400.0)
    with pytest.raises(ValueError, match="bead_radius_nm"):
        fit_force_spectrum(x, 1500.0, frame_rate_hz=400.0, fix_drag=True)
    with pytest.raises(ValueError, match="detrend"):
        force_from_variance(x, 1500.0, detrend=100)
    with pytest.raises(ValueError, match="detrend"):
        fit_force_spectrum(x, 1500.0, frame_rate_hz=400.0, detrend="quadratic")
    with pytest.raises(ValueError, match="f_min_hz"):
        fit_force_spectrum(x, 1500.0, frame_rate_hz=400.0, f_min_hz=150.0, f_max_hz=151.0)
    with pytest.raises(ValueError, match="zero variance"):
        force_from_variance(np.ones(100), 1500.0)
    # integer and float32 input are widened, never modified
    xi = np.round(x * 10).astype(np.int16)
    assert force_from_variance(xi, 1500.0) == pytest.approx(
        force_from_variance(xi.astype(np.float64), 1500.0), rel=1e-12
    )


@pytest.mark.gpu
def test_cupy_input_matches_numpy(cupy):
    sim = simulate_fluctuations(5.0, 1500.0, frame_rate_hz=400.0, n_frames=20_000, seed=91)
    gpu = simulate_fluctuations(
        5.0, 1500.0, frame_rate_hz=400.0, n_frames=20_000, seed=91, device="gpu"
    )
    assert isinstance(gpu.x_nm, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(gpu.x_nm), sim.x_nm)
    x = sim.x_nm.copy()
    x[[100, 2000]] = np.nan
    cpu_fit = fit_force_spectrum(x, 1500.0, frame_rate_hz=400.0)
    gpu_fit = fit_force_spectrum(cupy.asarray(x), 1500.0, frame_rate_hz=400.0)
    assert gpu_fit.force_pN == pytest.approx(cpu_fit.force_pN, rel=1e-9)
    assert gpu_fit.n_interpolated == 2
    for detrend in ("linear", 101):
        assert force_from_variance(cupy.asarray(sim.x_nm), 1500.0, detrend=detrend) == (
            pytest.approx(force_from_variance(sim.x_nm, 1500.0, detrend=detrend), rel=1e-9)
        )


def test_standard_errors_are_calibrated():
    """Over 200 seeds the spread of the fitted forces matches the reported standard error."""
    force, length, fs = 30.0, 1000.0, 1000.0
    fits = [
        fit_force_spectrum(
            simulate_fluctuations(force, length, frame_rate_hz=fs, n_frames=4096, seed=s).x_nm,
            length,
            frame_rate_hz=fs,
        )
        for s in range(200)
    ]
    values = np.array([f.force_pN for f in fits])
    se = np.median([f.force_se_pN for f in fits])
    print(
        f"\n200 fits: mean {values.mean():.4g} pN (true {force}), spread {values.std():.3g}, "
        f"reported se {se:.3g}"
    )
    assert values.std() == pytest.approx(se, rel=0.2)
    assert abs(values.mean() - force) < 4 * values.std() / math.sqrt(200) + 0.005 * force
