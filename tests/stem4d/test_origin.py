"""Bright-field disk origin, descan fit, centring, COM images and DPC against simulated truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stacklab.errors import ShapeError
from stacklab.stem4d import Calibration, DataCube
from stacklab.stem4d.origin import (
    center_patterns,
    com_images,
    dpc_phase,
    dpc_rotation,
    estimate_probe_radius,
    find_origin,
    fit_origin,
)
from stacklab.stem4d.simulate import simulate_descan

METHODS = ("com", "disk", "cross_correlation")


def rms(a):
    return float(np.sqrt(np.mean(np.square(a))))


@pytest.fixture(scope="module")
def clean_scan():
    """Noise-free 16x14 scan, odd 47x45 detector, r = 8 px disk, descan + phase object."""
    return simulate_descan((16, 14), (47, 45), noise=False, seed=1)


@pytest.fixture(scope="module")
def noisy_scan():
    """The same scan with Poisson counts (5000 per disk), as uint16."""
    return simulate_descan((16, 14), (47, 45), noise=True, dtype=np.uint16, seed=1)


# -- simulation --------------------------------------------------------------------------------


def test_simulate_descan_truth_is_consistent():
    cube, t = simulate_descan((12, 10), (40, 41), noise=False, rotation_deg=30, flip=True, seed=3)
    assert cube.shape == (12, 10, 40, 41)
    np.testing.assert_allclose(t.origins, t.descan + t.com)
    ii, jj = np.meshgrid(np.arange(12.0), np.arange(10.0), indexing="ij")
    terms = np.stack([np.ones_like(ii), ii, jj, ii**2, ii * jj, jj**2], -1)
    np.testing.assert_allclose(t.descan, terms @ t.coefficients)
    # analytic gradient against fourth-order central differences of the phase
    f = t.phase
    g_r = (f[:-4, 2:-2] - 8 * f[1:-3, 2:-2] + 8 * f[3:-1, 2:-2] - f[4:, 2:-2]) / 12
    g_c = (f[2:-2, :-4] - 8 * f[2:-2, 1:-3] + 8 * f[2:-2, 3:-1] - f[2:-2, 4:]) / 12
    scale = np.abs(t.phase_gradient).max()
    assert np.abs(g_r - t.phase_gradient[2:-2, 2:-2, 0]).max() < 0.01 * scale
    assert np.abs(g_c - t.phase_gradient[2:-2, 2:-2, 1]).max() < 0.01 * scale
    # com = F R(-theta) grad: undo the swap, rotate back
    th = math.radians(30)
    d = t.com[..., ::-1]
    g = np.stack(
        [
            math.cos(th) * d[..., 0] - math.sin(th) * d[..., 1],
            math.sin(th) * d[..., 0] + math.cos(th) * d[..., 1],
        ],
        -1,
    )
    np.testing.assert_allclose(g, t.com_per_gradient * t.phase_gradient, atol=1e-12)
    # the disk holds the counts it should
    np.testing.assert_allclose(t.clean.sum(axis=(-2, -1)), 5000.0, rtol=0.02)


# -- probe radius --------------------------------------------------------------------------------


@pytest.mark.parametrize(("radius", "edge"), [(6.0, 0.5), (9.3, 0.7), (12.0, 1.0)])
def test_estimate_probe_radius_single_pattern(radius, edge):
    cube, t = simulate_descan(
        (1, 1), (61, 58), disk_radius=radius, edge=edge, n_blobs=0, noise=False, seed=0
    )
    r, (row, col) = estimate_probe_radius(cube[0, 0])
    # the integrated intensity of a logistic-edged disk is pi (r**2 + pi**2 w**2 / 3)
    expected = math.sqrt(radius**2 + math.pi**2 * edge**2 / 3)
    print(f"radius {radius}: estimated {r:.4f}, expected {expected:.4f}")
    assert r == pytest.approx(expected, abs=0.03)
    assert row == pytest.approx(t.origins[0, 0, 0], abs=0.01)
    assert col == pytest.approx(t.origins[0, 0, 1], abs=0.01)


def test_estimate_probe_radius_of_cube_is_robust(noisy_scan):
    cube, t = noisy_scan
    hot = cube.copy()
    hot[..., 3, 40] = 60000  # a hot pixel brighter than the disk in every pattern
    r, centre = estimate_probe_radius(hot, mask=np.ones(cube.shape[-2:], bool))
    print(f"radius of the mean pattern: {r:.3f} px")
    assert r == pytest.approx(math.sqrt(64 + math.pi**2 * 0.36 / 3), abs=0.1)
    np.testing.assert_allclose(centre, t.origins.reshape(-1, 2).mean(0), atol=0.1)
    with pytest.raises(ValueError, match="flat"):
        estimate_probe_radius(np.ones((20, 20)))


# -- find_origin ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("scan", "det"), [((12, 12), (48, 48)), ((9, 13), (47, 45)), ((14, 8), (41, 52))]
)
def test_find_origin_noise_free(method, scan, det):
    cube, t = simulate_descan(scan, det, noise=False, seed=7)
    before = cube.copy()
    o = find_origin(cube, method=method)
    assert o.shape == (*scan, 2) and o.dtype == np.float64
    err = rms(o - t.origins)
    print(f"{method} {scan} {det}: rms error {err:.5f} px")
    assert err < 0.01
    np.testing.assert_array_equal(cube, before)


def _fisher_sigma(t, scan, det, eps=1e-3):
    """Cramer-Rao bound (per axis, px) of the disk position from Poisson counts of the model."""
    coef = t.coefficients
    out = []
    for axis in (0, 1):
        step = np.zeros((3, 2))
        step[0, axis] = eps
        plus = simulate_descan(scan, det, noise=False, plane=coef[:3] + step, quadratic=coef[3:])
        minus = simulate_descan(scan, det, noise=False, plane=coef[:3] - step, quadratic=coef[3:])
        deriv = (plus[1].clean - minus[1].clean) / (2 * eps)
        info = (deriv**2 / np.maximum(t.clean, 1e-12)).sum(axis=(-2, -1))
        out.append(np.sqrt(np.mean(1 / info)))
    return float(np.sqrt(np.mean(np.square(out))))


def test_find_origin_reaches_the_poisson_limit(noisy_scan):
    cube, t = noisy_scan
    scan, det = cube.shape[:2], cube.shape[2:]
    crlb = _fisher_sigma(t, scan, det)
    # expected error of the windowed centre of mass: sum w x**2 lambda / (sum w lambda)**2
    window = 10.0
    yy = np.arange(det[0])[:, None] - t.origins[..., 0, None, None]
    xx = np.arange(det[1])[None, :] - t.origins[..., 1, None, None]
    win = np.clip(window + 0.5 - np.hypot(yy, xx), 0, 1) * t.clean
    var_r = (win * yy**2).sum(axis=(-2, -1)) / win.sum(axis=(-2, -1)) ** 2
    var_c = (win * xx**2).sum(axis=(-2, -1)) / win.sum(axis=(-2, -1)) ** 2
    com_limit = math.sqrt((var_r.mean() + var_c.mean()) / 2)
    errors = {
        m: rms(find_origin(cube, method=m, radius=8.0, window=window) - t.origins) for m in METHODS
    }
    print(f"Cramer-Rao {crlb:.4f} px, COM limit {com_limit:.4f} px, errors {errors}")
    assert 0.8 < errors["com"] / com_limit < 1.25
    assert errors["disk"] < 1.5 * crlb
    assert errors["cross_correlation"] < 1.5 * crlb


def _extra_disk(t, det, offset, counts, radius=8.0, edge=0.6):
    """A disk of ``counts`` at ``origins + offset`` in every pattern (one-sided dark field)."""
    c = t.origins + np.asarray(offset)
    yy = np.arange(det[0])[:, None] - c[..., 0, None, None]
    xx = np.arange(det[1])[None, :] - c[..., 1, None, None]
    disk = 1 / (1 + np.exp((np.hypot(yy, xx) - radius) / edge))
    return counts / (math.pi * radius**2) * disk


@pytest.mark.parametrize("method", METHODS)
def test_find_origin_ignores_dark_field_and_background(method):
    det = (64, 61)
    cube, t = simulate_descan((10, 9), det, background=2.0, noise=False, seed=4)
    # a strong Bragg disk on one side only (80 % of the bright field's counts, 8.7 px between
    # the disk edges), which pulls a plain centre of mass by several pixels
    cube = cube + _extra_disk(t, det, (6.0, -24.0), 4000.0)
    plain = rms(np.stack(com_images(cube, origins=(0.0, 0.0)), -1) - t.origins)
    err = rms(find_origin(cube, method=method) - t.origins)
    print(f"{method} with a Bragg disk: rms error {err:.5f} px (whole-pattern COM {plain:.2f})")
    assert err < 0.02
    assert plain > 1.0
    # a symmetric ring of Bragg disks
    cube, t = simulate_descan(
        (10, 9), det, bragg_spacing=22.0, bragg_counts=3000.0, background=2.0, noise=False, seed=4
    )
    assert rms(find_origin(cube, method=method) - t.origins) < 0.02


def test_find_origin_empty_pattern_gives_nan(clean_scan):
    cube, t = clean_scan
    cube = cube.copy()
    cube[2, 3] = 0.0
    for method in METHODS:
        o = find_origin(cube, method=method, radius=8.0)
        assert np.isnan(o[2, 3]).all(), method
        assert (
            rms(
                np.delete(o.reshape(-1, 2), 2 * 14 + 3, 0)
                - np.delete(t.origins.reshape(-1, 2), 2 * 14 + 3, 0)
            )
            < 0.01
        )
    fitted, _, res = fit_origin(o)
    assert np.isfinite(fitted).all() and np.isnan(res[2, 3]).all()
    cr, _ = com_images(cube)
    assert np.isnan(cr[2, 3]) and np.isfinite(np.delete(cr.ravel(), 2 * 14 + 3)).all()


def test_find_origin_datacube_mask_and_reference(clean_scan):
    cube, t = clean_scan
    dc = DataCube(cube, Calibration())
    mask = np.ones(cube.shape[-2:], bool)
    np.testing.assert_allclose(find_origin(dc, mask=mask), find_origin(cube), atol=1e-12)
    # a vacuum-like reference: one centred noise-free pattern
    ref, _ = simulate_descan((1, 1), cube.shape[2:], n_blobs=0, noise=False, seed=1)
    o = find_origin(cube, method="cross_correlation", reference=ref[0, 0])
    assert rms(o - t.origins) < 0.01


# -- fit_origin ----------------------------------------------------------------------------------


def _plane_origins(scan, seed=0, noise=0.02):
    rng = np.random.default_rng(seed)
    coef = np.array([[20.3, 24.1], [0.11, -0.035], [0.04, 0.09]])
    ii, jj = np.meshgrid(np.arange(scan[0]), np.arange(scan[1]), indexing="ij")
    terms = np.stack([np.ones(ii.shape), ii, jj], -1).astype(float)
    return terms @ coef + noise * rng.standard_normal((*scan, 2)), coef, terms


def test_fit_origin_plane_ignores_outliers():
    scan = (20, 23)
    o, coef, terms = _plane_origins(scan)
    rng = np.random.default_rng(1)
    bad = rng.random(scan) < 0.08  # scattered outliers...
    bad[5:10, 12:19] = True  # ...and a strongly diffracting grain (35 positions)
    dirty = o.copy()
    dirty[bad] += rng.uniform(1.5, 4.0, (int(bad.sum()), 2))
    dirty[3, 4] = np.nan  # a failed measurement is skipped
    before = dirty.copy()
    fitted, c, res = fit_origin(dirty)
    np.testing.assert_array_equal(dirty, before)
    plain = fit_origin(dirty, robust=False).coefficients
    e_rob, e_ls = np.abs(c - coef).max(), np.abs(plain - coef).max()
    print(f"plane coefficient error: robust {e_rob:.4f}, least squares {e_ls:.4f}")
    assert c.shape == (3, 2) and fitted.shape == (*scan, 2)
    np.testing.assert_allclose(c[1:], coef[1:], atol=2e-3)
    np.testing.assert_allclose(c[0], coef[0], atol=0.02)
    assert np.abs(plain - coef).max() > 0.1  # the outliers do bias plain least squares
    assert rms(fitted - terms @ coef) < 0.01
    assert np.isnan(res[3, 4]).all() and np.isfinite(fitted).all()
    np.testing.assert_allclose(
        res[~bad & np.isfinite(res[..., 0])], (o - fitted)[~bad & np.isfinite(res[..., 0])]
    )


def test_fit_origin_parabola_and_mask(clean_scan):
    _, t = clean_scan
    _, c, _ = fit_origin(t.descan, model="parabola")
    np.testing.assert_allclose(c, t.coefficients, atol=1e-9)
    o, coef, _ = _plane_origins((12, 15), noise=0.0)
    mask = np.zeros((12, 15), bool)
    mask[:6, :7] = True  # vacuum corner only
    o[~mask] += 5.0
    np.testing.assert_allclose(fit_origin(o, mask=mask).coefficients, coef, atol=1e-9)
    with pytest.raises(ShapeError, match="mask"):
        fit_origin(o, mask=np.zeros((12, 15), bool))
    with pytest.raises(ShapeError, match="mask"):
        fit_origin(o, mask=np.ones((3, 3), bool))
    with pytest.raises(ShapeError, match="origins"):
        fit_origin(o[..., 0])
    with pytest.raises(ValueError, match="model"):
        fit_origin(o, model="cubic")


# -- centring ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [None, (20.25, 23.5)])
def test_center_patterns_moves_every_disk_to_the_target(clean_scan, target):
    cube, t = clean_scan
    before = cube.copy()
    centred = center_patterns(cube, t.origins, target=target)
    np.testing.assert_array_equal(cube, before)
    want = np.array([47 // 2, 45 // 2]) if target is None else np.array(target)
    again = find_origin(centred, method="disk", radius=8.0)
    err = np.abs(again - want).max()
    print(f"target {want}: largest re-measured offset {err:.5f} px")
    assert err < 0.05
    # from measured origins, bilinear interpolation
    measured = find_origin(cube)
    centred = center_patterns(cube, measured, target=target, method="bilinear")
    assert np.abs(find_origin(centred, radius=8.0) - want).max() < 0.05


def test_center_patterns_errors(clean_scan):
    cube, t = clean_scan
    with pytest.raises(ShapeError, match="origins"):
        center_patterns(cube, t.origins[:3])
    with pytest.raises(ShapeError, match="target"):
        center_patterns(cube, t.origins, target=(1.0, 2.0, 3.0))
    bad = t.origins.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="origins"):
        center_patterns(cube, bad)


# -- COM and DPC ---------------------------------------------------------------------------------


def test_com_images_recover_the_deflections(clean_scan):
    cube, t = clean_scan
    before = cube.copy()
    cr, cc = com_images(cube, origins=t.descan)
    np.testing.assert_array_equal(cube, before)
    err = max(np.abs(cr - t.com[..., 0]).max(), np.abs(cc - t.com[..., 1]).max())
    print(f"COM error {err:.2e} px for deflections up to {np.abs(t.com).max():.2f} px")
    assert err < 1e-3
    # default origin: the mean centre of mass; a DataCube's calibrated origin is used
    cr0, cc0 = com_images(cube)
    assert abs(cr0.mean()) < 1e-12 and abs(cc0.mean()) < 1e-12
    dc = DataCube(cube, Calibration(q_origin=t.descan))
    np.testing.assert_allclose(com_images(dc)[0], cr)
    with pytest.raises(ShapeError, match="mask"):
        com_images(cube, mask=np.zeros(cube.shape[-2:], bool))
    with pytest.raises(ShapeError, match="origins"):
        com_images(cube, origins=np.zeros((2, 2)))


@pytest.mark.parametrize(
    ("angle", "flip"), [(17.0, False), (17.0, True), (-63.0, True), (88.0, False)]
)
def test_dpc_rotation_recovers_angle_and_flip(angle, flip):
    _, t = simulate_descan(
        (30, 26), (8, 8), rotation_deg=angle, flip=flip, n_blobs=10, noise=False, seed=5
    )
    rot, f = dpc_rotation(t.com[..., 0], t.com[..., 1])
    print(f"true {angle} {flip}: found {rot:.3f} {f}")
    assert f is flip
    assert rot == pytest.approx(angle, abs=0.1)
    # imposing the wrong flip still returns an angle; the right one is found when imposed
    assert dpc_rotation(t.com[..., 0], t.com[..., 1], flip=flip).rotation_deg == pytest.approx(
        angle, abs=0.1
    )


def test_dpc_phase_recovers_the_phase():
    cube, t = simulate_descan(
        (32, 28),
        (48, 45),
        rotation_deg=17.0,
        flip=True,
        com_per_gradient=2.0,
        n_blobs=10,
        noise=False,
        seed=2,
    )
    cr, cc = com_images(cube, origins=t.descan)
    rot, flip = dpc_rotation(cr, cc)
    phase = dpc_phase(cr, cc, rotation_deg=rot, flip=flip, pixel_scale=1 / t.com_per_gradient)
    corr = np.corrcoef(phase.ravel(), t.phase.ravel())[0, 1]
    err = rms(phase - (t.phase - t.phase.mean()))
    print(f"rotation {rot:.3f} flip {flip}: phase correlation {corr:.5f}, rms error {err:.4f} rad")
    assert corr > 0.999 and err < 0.02 * t.phase.std() * 10
    assert abs(phase.mean()) < 1e-12
    # 180 deg more gives the negative phase; periodic integration is worse at the edges
    flipped = dpc_phase(cr, cc, rotation_deg=rot + 180, flip=flip, pixel_scale=0.5)
    np.testing.assert_allclose(flipped, -phase, atol=1e-9)
    periodic = dpc_phase(cr, cc, rotation_deg=rot, flip=flip, pixel_scale=0.5, mirror=False)
    assert np.corrcoef(periodic.ravel(), t.phase.ravel())[0, 1] < corr
    with pytest.raises(ShapeError, match="com_row"):
        dpc_phase(cr, cc[:, :5])
    bad = cr.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        dpc_phase(bad, cc)


def test_dpc_phase_is_exact_for_periodic_fields_and_regularization_filters():
    rng = np.random.default_rng(3)
    shape = (24, 30)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    spec = np.fft.rfft2(rng.standard_normal(shape)) * np.exp(-(ky**2 + kx**2) / (2 * 0.1**2))
    spec[:, -1] = 0  # no Nyquist content: the spectral derivative is then exact
    spec[shape[0] // 2] = 0
    phase = np.fft.irfft2(spec, s=shape)
    g_r = np.fft.irfft2(2j * np.pi * ky * spec, s=shape)
    g_c = np.fft.irfft2(2j * np.pi * kx * spec, s=shape)
    # detector frame: rotate by -25 deg (dpc_phase rotates by +25)
    t = math.radians(25.0)
    d_r = math.cos(t) * g_r + math.sin(t) * g_c
    d_c = -math.sin(t) * g_r + math.cos(t) * g_c
    got = dpc_phase(d_r / 2, d_c / 2, rotation_deg=25.0, pixel_scale=2.0, mirror=False)
    np.testing.assert_allclose(got, phase - phase.mean(), atol=1e-10)
    eps = 0.01
    reg = dpc_phase(d_r, d_c, rotation_deg=25.0, regularization=eps, mirror=False)
    k2 = ky**2 + kx**2
    want = np.fft.irfft2(spec * k2 / (k2 + eps), s=shape)
    np.testing.assert_allclose(reg, want - want.mean(), atol=1e-10)
    assert np.std(reg) < 0.9 * np.std(phase)


def test_dpc_with_poisson_noise_end_to_end():
    """Noisy specimen scan; the descan is measured on a vacuum scan with the same descan (as
    at the microscope), then COM, rotation and phase come from the specimen scan alone."""
    kw = {"rotation_deg": 17.0, "com_per_gradient": 3.0, "disk_counts": 2e4}
    cube, t = simulate_descan((32, 28), (48, 45), n_blobs=10, seed=8, **kw)
    vacuum, _ = simulate_descan(
        (32, 28), (48, 45), plane=t.coefficients[:3], quadratic=t.coefficients[3:], n_blobs=0,
        seed=9, **kw,
    )  # fmt: skip
    fitted, _, _ = fit_origin(find_origin(vacuum), model="parabola")
    assert rms(fitted - t.descan) < 0.01
    cr, cc = com_images(cube, origins=fitted)
    rot, flip = dpc_rotation(cr, cc)
    phase = dpc_phase(cr, cc, rotation_deg=rot, flip=flip, pixel_scale=1 / 3.0)
    corr = np.corrcoef(phase.ravel(), t.phase.ravel())[0, 1]
    print(f"noisy: rotation {rot:.2f} flip {flip}, phase correlation {corr:.4f}")
    assert not flip and rot == pytest.approx(17.0, abs=2.0)
    assert corr > 0.98
    # fitted on the specimen itself, the descan model also takes up its low-order tilts
    on_specimen, _, _ = fit_origin(find_origin(cube), model="parabola")
    assert 0.05 < rms(on_specimen - t.descan) < 0.5


# -- storage backends ----------------------------------------------------------------------------


def test_dask_input_gives_numpy_results(noisy_scan):
    da = pytest.importorskip("dask.array")
    cube, t = noisy_scan
    lazy = da.from_array(cube, chunks=(5, 4, 20, 45))  # awkward chunks, detector split too
    for method in METHODS:
        ref = find_origin(cube, method=method, chunk=7)
        got = find_origin(lazy, method=method, chunk=7)
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, ref, atol=1e-9)
    ref = com_images(cube, origins=t.descan)
    got = com_images(lazy, origins=t.descan)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-9)
    np.testing.assert_allclose(got[1], ref[1], atol=1e-9)
    centred = center_patterns(lazy, t.origins)
    np.testing.assert_allclose(
        np.asarray(centred.compute()), center_patterns(cube, t.origins), atol=1e-9
    )


def test_file_backed_input(tmp_path, clean_scan):
    h5py = pytest.importorskip("h5py")
    cube, t = clean_scan
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=cube, chunks=(1, 14, 47, 45))
    with h5py.File(path, "r") as f:
        ds = f["data"]
        np.testing.assert_allclose(find_origin(ds, chunk=9), find_origin(cube), atol=1e-12)
        out = center_patterns(ds, t.origins, out=tmp_path / "centred.h5", chunk=20)
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["data"][...], center_patterns(cube, t.origins), atol=1e-9)


def test_argument_errors(clean_scan):
    cube, _ = clean_scan
    with pytest.raises(ShapeError, match="cube"):
        find_origin(cube[0, 0, 0])
    with pytest.raises(ShapeError, match="mask"):
        find_origin(cube, mask=np.ones((4, 4), bool))
    with pytest.raises(ShapeError, match="mask"):
        find_origin(cube, mask=np.zeros(cube.shape[-2:], bool))
    with pytest.raises(ValueError, match="method"):
        find_origin(cube, method="fit")
    with pytest.raises(ValueError, match="threshold"):
        find_origin(cube, threshold=1.5)
    with pytest.raises(ValueError, match="radius"):
        find_origin(cube, radius=-2.0)
    with pytest.raises(ShapeError, match="reference"):
        find_origin(cube, method="cross_correlation", reference=np.ones((5, 5)))
    with pytest.raises(ShapeError, match="com_row"):
        dpc_rotation(np.zeros((3, 3)), np.zeros((3, 3)))


@pytest.mark.gpu
def test_origin_on_gpu(cupy, noisy_scan):
    cube, t = noisy_scan
    g = cupy.asarray(cube)
    for method in METHODS:
        o = find_origin(g, method=method)
        assert type(o).__module__.startswith("cupy")
        np.testing.assert_allclose(o.get(), find_origin(cube, method=method), atol=1e-6)
    fit = fit_origin(cupy.asarray(t.origins))
    assert type(fit.fitted).__module__.startswith("cupy")
    centred = center_patterns(g, t.origins)
    assert type(centred).__module__.startswith("cupy")
    np.testing.assert_allclose(centred.get(), center_patterns(cube, t.origins), atol=1e-6)
    cr, cc = com_images(g, origins=t.descan)
    assert type(cr).__module__.startswith("cupy")
    np.testing.assert_allclose(cr.get(), com_images(cube, origins=t.descan)[0], atol=1e-9)
    phase = dpc_phase(cr, cc, rotation_deg=0.0)
    assert type(phase).__module__.startswith("cupy")
    rot = dpc_rotation(cr, cc)
    assert rot.rotation_deg == pytest.approx(
        dpc_rotation(cr.get(), cc.get()).rotation_deg, abs=1e-6
    )
