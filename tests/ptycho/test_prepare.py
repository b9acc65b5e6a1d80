"""From a recorded 4D-STEM datacube to a reconstruction: prepare_4dstem / reconstruct_4dstem.

Ground truth: a :func:`simulate_dataset` scan (known object, probe, raster positions) recorded by
:func:`record_4dstem` as a detector would: 64 x 88 pixels of 0.6 far-field pixels each, scan
rotation 17 degrees, y flip, beam centre (30.4, 45.7), intensities integrated over every
detector pixel, optionally 1e4 counts per pattern with Poisson noise.

Figures (``pytest tests/ptycho/test_prepare.py -s``; values of this scene):

* beam centre found on the mean pattern within 0.02 px (0.013 noise-free, 0.016 noisy);
* mapped patterns vs the forward model's patterns, relative RMS over the valid pixels: 12.5 %
  overall, 3.2 % inside the bright-field disk. The forward model samples the far field at
  points, a detector integrates over pixels, and the hard aperture edge and the dark-field
  speckle change within a pixel: 9.2 % of the difference is there before any resampling. Vs
  the same intensities integrated over the forward-model pixels: 3.6 % overall, 1.0 % inside
  the disk. Counts are conserved to 1e-4;
* object phase RMS error after 100 rPIE iterations (step 0.3): 0.052 rad noise-free, 0.053
  rad with Poisson noise at 1e4 counts (targets 0.1 / 0.15; a flat object scores 0.255); on the
  forward-model patterns themselves 0.022 rad. Slow spec scan (10x10, 64 px window, 128 x 176
  detector): 0.043-0.044 noise-free, 0.063-0.075 rad noisy (rPIE, ePIE, lsq);
* wrong geometry, 40 iterations: 0.26 rad with the scan rotation 90 degrees off and 0.22 rad
  without the flip, against 0.056 rad with the true geometry.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from stacklab.errors import ShapeError
from stacklab.ptycho import (
    angular_pixel_size,
    aperture_probe,
    make_probe,
    phase_rms_error,
    prepare_4dstem,
    reconstruct,
    reconstruct_4dstem,
    record_4dstem,
    simulate_dataset,
    wavelength,
)
from stacklab.ptycho.cli import ptycho

N = 32  # forward-model window of the simulation
R = 6.0  # aperture radius, far-field pixels


@pytest.fixture(scope="module")
def scene():
    """8x8 raster, step 3 px, defocused probe (diameter ~half the window), detector record."""
    ds = simulate_dataset(
        scan_shape=(8, 8),
        probe_shape=(N, N),
        step=3.0,
        aperture_radius=R,
        defocus_phase=3.0,
        jitter=0.0,
        seed=3,
    )
    return ds, record_4dstem(ds)


@pytest.fixture(scope="module")
def noisy(scene):
    ds, _ = scene
    return record_4dstem(ds, counts=1e4, seed=5)


def _on_sim_grid(rec):
    """prepare_4dstem keywords that put the reconstruction on the simulation's grid."""
    return dict(rec.acquisition, reconstruct_shape=(N, N), pixel_size_m=rec.pixel_size_m)


def _truth_for(ds, positions):
    """The true object and illuminated region cut to a reconstruction whose positions start at 0."""
    oy, ox = ds.positions.min(axis=0).astype(int)
    shape = (int(positions[:, 0].max()) + N + 1, int(positions[:, 1].max()) + N + 1)
    obj = ds.object[oy : oy + shape[0], ox : ox + shape[1]]
    region = ds.illuminated(0.5)[oy : oy + shape[0], ox : ox + shape[1]]
    return obj, region


def _rel(a, b, sel):
    return float(np.sqrt(np.sum(((a - b) * sel) ** 2) / np.sum((b * sel) ** 2)))


# ------------------------------------------------------------------------------------------------
# the detector simulator and the small helpers
# ------------------------------------------------------------------------------------------------


def test_record_4dstem_known_answers():
    """Vacuum: the bright-field disk sits at the beam centre with radius semiconv / pixel, and
    the counts of a pattern are the probe's intensity; rotation and flip move a tilted beam."""
    from stacklab.stem4d.origin import estimate_probe_radius

    ds = simulate_dataset(
        scan_shape=(2, 2),
        probe_shape=(N, N),
        step=3.0,
        aperture_radius=R,
        defocus_phase=3.0,
        phase_max=0.0,
        amplitude_min=1.0,
        jitter=0.0,
    )
    rec = record_4dstem(ds, counts=None)
    radius, centre = estimate_probe_radius(rec.cube[0, 0])
    print("vacuum disk radius", round(radius, 3), "centre", np.round(centre, 3))
    assert radius == pytest.approx(rec.semiconv_rad / rec.detector_pixel_rad[0], rel=0.02)
    np.testing.assert_allclose(centre, rec.beam_centre, atol=0.02)
    assert rec.cube[0, 0].sum() == pytest.approx(1.0, rel=1e-3)
    assert rec.semiconv_rad == pytest.approx(R * wavelength(300) / (N * 20e-12))
    # a beam tilt of +4 far-field pixels along y lands where the true transform puts it
    tilt = ds.object * np.exp(2j * np.pi * 4 * np.arange(ds.object.shape[0])[:, None] / N)
    tilted = type(ds)(ds.patterns, ds.positions, ds.probe, tilt, ds.probe_guess, None, ds.params)
    rec_t = record_4dstem(tilted)
    _, c_t = estimate_probe_radius(rec_t.cube[0, 0])
    expected = rec.transform(np.array([[N // 2 + 4.0, N // 2]]))[0]
    np.testing.assert_allclose(c_t, expected, atol=0.05)
    assert np.hypot(*(expected - rec.beam_centre)) > 5


def test_angular_pixel_size_and_aperture_probe():
    np.testing.assert_allclose(angular_pixel_size(55e-6, 0.11), [5e-4, 5e-4])
    np.testing.assert_allclose(angular_pixel_size((55e-6, 110e-6), 0.11), [5e-4, 1e-3])
    lam = wavelength(300)
    dq = 1e-3
    alpha = R * dq
    p = aperture_probe((N, N), wavelength_m=lam, fourier_pixel_rad=dq, semiconv_rad=alpha)
    assert p.dtype == np.complex64 and np.sum(np.abs(p) ** 2) == pytest.approx(1.0, rel=1e-5)
    spec = np.abs(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(p))))
    yy, xx = np.indices((N, N))
    r = np.hypot(yy - N // 2, xx - N // 2)
    inside = spec[r < R - 1]
    assert np.ptp(inside) < 1e-4 * inside.max() and spec[r > R + 1].max() < 1e-5 * inside.max()
    # the defocus matches make_probe's sign: defocus_phase = pi defocus alpha^2 / lambda
    phi = 3.0
    ref = make_probe((N, N), aperture_radius=R, defocus_phase=phi)
    mine = aperture_probe(
        (N, N),
        wavelength_m=lam,
        fourier_pixel_rad=dq,
        semiconv_rad=alpha,
        defocus_m=phi * lam / (np.pi * alpha**2),
    )
    other = aperture_probe(
        (N, N),
        wavelength_m=lam,
        fourier_pixel_rad=dq,
        semiconv_rad=alpha,
        defocus_m=-phi * lam / (np.pi * alpha**2),
    )

    def overlap(a, b):
        return abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b))

    assert overlap(mine, ref) > 0.97 and overlap(other, ref) < 0.9
    # C30: phase (2 pi / lambda) C30 theta^4 / 4 relative to the centre
    c30 = 1e-3
    ab = aperture_probe(
        (N, N),
        wavelength_m=lam,
        fourier_pixel_rad=dq,
        semiconv_rad=alpha,
        aberrations={"C30": c30},
    )
    ph = np.angle(np.fft.fft2(np.fft.ifftshift(ab)))
    theta = 5 * dq  # the far-field pixel (0, 5)
    expected = np.angle(np.exp(1j * (2 * np.pi / lam) * c30 * theta**4 / 4))
    assert abs(expected) > 0.3
    assert np.angle(np.exp(1j * (ph[0, 5] - ph[0, 0]))) == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ValueError, match="aberrations key 'C31'"):
        aperture_probe(
            (N, N),
            wavelength_m=lam,
            fourier_pixel_rad=dq,
            semiconv_rad=alpha,
            aberrations={"C31": 1},
        )


# ------------------------------------------------------------------------------------------------
# prepare_4dstem: beam centre, mapping, positions, grid
# ------------------------------------------------------------------------------------------------


def test_beam_centre_and_pattern_mapping(scene, noisy):
    ds, rec = scene
    p = prepare_4dstem(rec.cube, **_on_sim_grid(rec), defocus_m=rec.defocus_m, progress=False)
    err = np.hypot(*(p.beam_centre - rec.beam_centre))
    err_noisy = np.hypot(
        *(prepare_4dstem(noisy.cube, **_on_sim_grid(noisy)).beam_centre - rec.beam_centre)
    )
    assert p.patterns.shape == (64, N, N) and p.patterns.dtype == np.float32
    assert p.layout == "centered" and p.reconstruct_shape == (N, N)
    truth = ds.patterns.reshape(-1, N, N)
    # the same intensities integrated over the forward-model pixels (an ideal detector there)
    dq = wavelength(300) / (N * rec.pixel_size_m)
    np.testing.assert_allclose(p.fourier_pixel_rad, [dq, dq], rtol=1e-12)
    integrated = record_4dstem(
        ds,
        detector_shape=(N, N),
        detector_pixel_rad=dq,
        beam_centre=(N // 2, N // 2),
        scan_rotation_deg=0.0,
        flip_y=False,
        subsample=5,
    ).cube.reshape(-1, N, N)
    v = p.valid
    yy, xx = np.indices((N, N))
    disk = np.hypot(yy - N // 2, xx - N // 2) < R - 1.5
    figures = {
        "vs forward model, valid": _rel(p.patterns, truth, v),
        "vs forward model, disk": _rel(p.patterns, truth, disk),
        "vs pixel-integrated, valid": _rel(p.patterns, integrated, v),
        "vs pixel-integrated, disk": _rel(p.patterns, integrated, disk),
        "integration alone, valid": _rel(integrated, truth, v),
    }
    print(
        f"\nbeam centre error {err:.3f} px (noisy {err_noisy:.3f}); valid {v.mean():.3f};",
        "relative RMS",
        {k: round(val, 4) for k, val in figures.items()},
    )
    assert err < 0.1 and err_noisy < 0.1
    assert figures["vs pixel-integrated, valid"] < 0.05
    assert figures["vs pixel-integrated, disk"] < 0.02
    assert figures["vs forward model, disk"] < 0.05
    assert figures["vs forward model, valid"] < 0.15
    # counts are conserved, and the corners the rotated detector misses are invalid
    assert p.patterns.sum() == pytest.approx(rec.cube.sum(), rel=1e-3)
    assert 0.9 < v.mean() < 1.0 and v[disk].all()
    # without count conservation a target pixel is the mean of detector pixels: (0.6)^2 of it
    q = prepare_4dstem(
        rec.cube, **_on_sim_grid(rec), beam_centre=p.beam_centre, count_conserving=False
    )
    inner = (p.patterns[:, disk]).sum()
    assert (q.patterns[:, disk]).sum() / inner == pytest.approx(0.36, rel=0.01)
    # the probe guess holds the patterns' mean intensity
    assert np.sum(np.abs(p.probe) ** 2) == pytest.approx(
        (p.patterns * v).sum(axis=(1, 2)).mean(), rel=1e-4
    )


def test_positions_follow_the_scan(scene):
    ds, rec = scene
    p = prepare_4dstem(rec.cube, **_on_sim_grid(rec), beam_centre=rec.beam_centre)
    np.testing.assert_array_equal(p.positions, ds.positions - ds.positions.min(axis=0))
    # rotation and flip act on the patterns only: the object is in the scan frame
    kw = dict(_on_sim_grid(rec), scan_rotation_deg=-40.0, flip_y=False)
    q = prepare_4dstem(rec.cube, **kw, beam_centre=rec.beam_centre)
    np.testing.assert_array_equal(q.positions, p.positions)
    # anisotropic step and another pixel size: (i step_y / dx, j step_x / dx)
    kw = dict(_on_sim_grid(rec), scan_step_m=(60e-12, 45e-12), pixel_size_m=25e-12)
    s = prepare_4dstem(rec.cube, **kw, beam_centre=rec.beam_centre)
    i, j = np.divmod(np.arange(64), 8)
    np.testing.assert_allclose(s.positions, np.stack([i * 2.4, j * 1.8], axis=1), atol=1e-9)
    np.testing.assert_allclose(s.pixel_size_m, [25e-12, 25e-12])


def test_default_grid_holds_every_detector_angle(scene):
    _, rec = scene
    p = prepare_4dstem(rec.cube, **rec.acquisition, beam_centre=rec.beam_centre)
    n = p.reconstruct_shape[0]
    assert p.reconstruct_shape == (n, n) and n % 2 == 0
    np.testing.assert_allclose(p.fourier_pixel_rad, rec.detector_pixel_rad, rtol=1e-12)
    np.testing.assert_allclose(p.pixel_size_m, wavelength(300) / (n * rec.detector_pixel_rad))
    sy, sx = rec.cube.shape[2:]
    corners = np.array([[-0.5, -0.5], [-0.5, sx - 0.5], [sy - 0.5, -0.5], [sy - 0.5, sx - 0.5]])
    reach = np.abs(p.transform.inverse()(corners) - n // 2).max()
    print(f"\ndefault grid {n}x{n}, detector reach {reach:.2f} px, valid {p.valid.mean():.3f}")
    assert reach + 0.5 <= n // 2 <= reach + 4.5  # holds them, and not many more
    assert 0.3 < p.valid.mean() < 0.8
    # the pixel size alone fixes the grid so that the far-field pixel is just under a detector's
    q = prepare_4dstem(
        rec.cube, **rec.acquisition, beam_centre=rec.beam_centre, pixel_size_m=20e-12
    )
    assert q.reconstruct_shape == (54, 54)
    assert q.fourier_pixel_rad[0] <= rec.detector_pixel_rad[0]


def test_detector_mask(scene):
    _, rec = scene
    good = np.ones(rec.cube.shape[2:], bool)
    good[:, 44:46] = False  # two dead columns through the disk
    kw = dict(_on_sim_grid(rec), beam_centre=rec.beam_centre)
    p = prepare_4dstem(rec.cube, **kw, detector_mask=good)
    ref = prepare_4dstem(rec.cube, **kw)
    bad = rec.cube.copy()
    bad[..., ~good] = 1e6
    q = prepare_4dstem(bad, **kw, detector_mask=good)
    lost = ref.valid & ~p.valid
    print(f"\ndead columns invalidate {lost.sum()} of {ref.valid.sum()} target pixels")
    assert 20 < lost.sum() < 200
    np.testing.assert_array_equal(q.patterns[:, p.valid], p.patterns[:, p.valid])
    np.testing.assert_array_equal(p.patterns[:, p.valid], ref.patterns[:, p.valid])


def test_dask_and_hdf5_input_match_numpy(scene, noisy, tmp_path):
    da = pytest.importorskip("dask.array")
    _, rec = scene
    kw = _on_sim_grid(rec)
    ref = prepare_4dstem(rec.cube, **kw, chunk=7)
    lazy = da.from_array(rec.cube, chunks=(3, 5, -1, -1))
    d = prepare_4dstem(lazy, **kw, chunk=7)
    assert isinstance(d.patterns, np.ndarray)
    np.testing.assert_allclose(d.beam_centre, ref.beam_centre, atol=1e-9)
    np.testing.assert_allclose(d.patterns, ref.patterns, rtol=1e-6, atol=1e-9)
    # counts as uint16 in an HDF5 file, read block by block (integers are widened)
    counts = noisy.cube.astype(np.uint16)
    assert np.array_equal(counts, noisy.cube)
    path = tmp_path / "cube.h5"
    with h5py.File(path, "w") as f:
        f["data"] = counts
    ref16 = prepare_4dstem(counts, **kw)
    with h5py.File(path, "r") as f:
        h = prepare_4dstem(f["data"], **kw, chunk=7)
    np.testing.assert_allclose(h.beam_centre, ref16.beam_centre, atol=1e-9)
    np.testing.assert_allclose(h.patterns, ref16.patterns, rtol=1e-6, atol=1e-9)
    assert h.patterns.sum() == pytest.approx(float(counts.sum()), rel=1e-3)


def test_bad_parameters_name_the_argument(scene):
    _, rec = scene
    kw = dict(_on_sim_grid(rec), beam_centre=rec.beam_centre)
    cube = rec.cube
    cases = [
        (dict(voltage_kV=-300), ValueError, "voltage_kV"),
        (dict(semiconv_rad=0.0), ValueError, "semiconv_rad"),
        (dict(scan_step_m=(1e-11, 2e-11, 3e-11)), ValueError, "scan_step_m"),
        (dict(detector_pixel_rad=np.nan), ValueError, "detector_pixel_rad"),
        (dict(scan_rotation_deg=np.inf), ValueError, "scan_rotation_deg"),
        (dict(beam_centre=(1.0,)), ValueError, "beam_centre"),
        (dict(beam_centre=(300.0, 10.0)), ValueError, "beam_centre"),
        (dict(aberrations={"Cs": 1e-3}), ValueError, "aberrations key 'Cs'"),
        (dict(detector_mask=np.ones((3, 3), bool)), ShapeError, "detector_mask"),
        (dict(method="cubic"), ValueError, "method"),
        (dict(semiconv_rad=0.08), ValueError, "does not reach the aperture edge"),
        (dict(beam_centre=(5.0, 45.0)), ValueError, "does not reach the aperture edge"),
        (dict(defocus_m=60e-9), ValueError, "not sampled finely enough to hold the probe"),
        (dict(scan_step_m=0.7e-9), ValueError, "scan_step_m"),
        (dict(reconstruct_shape=(12, 12), pixel_size_m=None), ValueError, "reconstruct_shape"),
        (dict(pixel_size_m=100e-12), ValueError, "pixel_size_m"),
        (dict(reconstruct_shape=(8, 8)), ValueError, "bright-field disk is only 1.5"),
    ]
    for change, exc, match in cases:
        with pytest.raises(exc, match=match):
            prepare_4dstem(cube, **{**kw, **change})
    with pytest.raises(ShapeError, match="cube"):
        prepare_4dstem(cube[0], **kw)
    # the measured disk radius (found beam centre) contradicts semiconv / detector pixel
    found = {**kw, "beam_centre": None}
    with pytest.raises(ValueError, match=r"measures 10\.0 px in radius .* gives 20\.0 px"):
        prepare_4dstem(cube, **{**found, "semiconv_rad": 2 * rec.semiconv_rad})
    with pytest.raises(ValueError, match="check semiconv_rad and detector_pixel_rad"):
        prepare_4dstem(cube, **{**found, "detector_pixel_rad": 1.6 * rec.detector_pixel_rad})
    with pytest.raises(ValueError, match="mask is set by reconstruct_4dstem"):
        reconstruct_4dstem(cube, **kw, mask=np.ones((N, N), bool))


# ------------------------------------------------------------------------------------------------
# reconstruction from detector data
# ------------------------------------------------------------------------------------------------


def _recon(rec, ds, iterations=100, **kw):
    obj, region = _truth_for(ds, ds.positions - ds.positions.min(axis=0))
    res = reconstruct_4dstem(
        rec.cube,
        **{**_on_sim_grid(rec), **kw},
        defocus_m=1.2 * rec.defocus_m,  # the guess: 20 % defocus error
        iterations=iterations,
        object_shape=obj.shape,
        true_object=obj,
        region=region,
        progress=False,
    )
    return res, obj, region


@pytest.mark.parametrize("noise", [False, True])
def test_reconstruct_4dstem_end_to_end(scene, noisy, noise):
    ds, rec = scene
    data = noisy if noise else rec
    res, obj, region = _recon(data, ds)
    flat = phase_rms_error(np.ones_like(obj), obj, region)
    # the same reconstruction on the forward-model patterns (no detector in between)
    p = prepare_4dstem(data.cube, **_on_sim_grid(data), defocus_m=1.2 * data.defocus_m)
    scale = ds.patterns.sum(axis=(2, 3)).mean() / (p.patterns * p.valid).sum(axis=(1, 2)).mean()
    direct = reconstruct(
        ds.patterns,
        p.positions,
        p.probe * np.float32(np.sqrt(scale)),
        method="rpie",
        step=0.3,
        iterations=100,
        object_shape=obj.shape,
        true_object=obj,
        region=region,
    )
    print(
        f"\n{'Poisson 1e4' if noise else 'noise-free'}: phase RMS per iteration",
        {i + 1: round(float(res.object_errors[i]), 4) for i in (0, 9, 29, 99)},
        f"flat {flat:.3f}, on forward-model patterns {direct.object_errors[-1]:.4f}",
    )
    assert res.params["pixel_size_m"] == [data.pixel_size_m] * 2
    assert res.object.shape == obj.shape and res.errors.shape == (100,)
    assert res.object_errors[-1] <= (0.15 if noise else 0.1)
    assert res.object_errors[-1] < 0.4 * flat
    assert phase_rms_error(res.object, obj, region) == pytest.approx(
        res.object_errors[-1], rel=1e-5
    )


def test_wrong_geometry_is_worse(scene):
    """The pipeline is not blind to the geometry: a 90 degree rotation error or a missing flip
    gives a clearly worse object than the true geometry."""
    ds, rec = scene
    errors = {}
    for name, change in [
        ("true", {}),
        ("rotation +90", {"scan_rotation_deg": rec.scan_rotation_deg + 90}),
        ("no flip", {"flip_y": False}),
    ]:
        res, _, _ = _recon(rec, ds, iterations=40, beam_centre=rec.beam_centre, **change)
        errors[name] = float(res.object_errors[-1])
    print("\nphase RMS after 40 iterations:", {k: round(v, 4) for k, v in errors.items()})
    assert errors["true"] < 0.1
    assert errors["rotation +90"] > 2 * errors["true"]
    assert errors["no flip"] > 2 * errors["true"]


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------


def test_cli_reconstruct_4dstem(scene, tmp_path):
    ds, rec = scene
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        f["data"] = rec.cube
    out = tmp_path / "recon.h5"
    args = [
        "reconstruct-4dstem",
        str(path),
        "--kv",
        "300",
        "--semiconv",
        f"{rec.semiconv_rad * 1e3:.6f}",
        "--scan-step",
        "60pm",
        "--detector-pixel",
        f"{rec.detector_pixel_rad[0] * 1e3:.6f}mrad",
        "--rotation",
        "17",
        "--flip",
        "--defocus",
        f"{rec.defocus_m * 1e9:.4f}nm",
        "--shape",
        "32",
        "--pixel-size",
        "0.2A",
        "--iterations",
        "30",
        "-o",
        str(out),
        "--no-progress",
    ]
    runner = CliRunner()
    res = runner.invoke(ptycho, args)
    assert res.exit_code == 0, res.output
    assert "beam centre (30.4" in res.output and "wrote" in res.output
    with h5py.File(out, "r") as f:
        obj = f["object"][()]
        np.testing.assert_allclose(f["pixel_size_m"][()], [20e-12, 20e-12])
        np.testing.assert_allclose(f.attrs["pixel_size_m"], [20e-12, 20e-12])
        assert f["probe"].shape == (N, N) and f["valid"].dtype == bool
        assert f["positions"].shape == (64, 2) and f["errors"].shape == (30,)
        np.testing.assert_allclose(f["positions"][()][1], [0, 3])
        assert f.attrs["stacklab_kind"] == "ptycho_reconstruction_4dstem"
    truth, region = _truth_for(ds, np.array([[0, 0], [21, 21]]))
    assert phase_rms_error(obj, truth, region) < 0.1
    # the same with camera length + pixel pitch, and the default output name
    pitch = rec.detector_pixel_rad[0] * 0.1
    alt = [a for a in args if a not in ("-o", str(out))]
    i = alt.index("--detector-pixel")
    alt[i : i + 2] = ["--camera-length", "100mm", "--pixel-pitch", f"{pitch * 1e6:.6f}um"]
    alt[alt.index("--iterations") + 1] = "2"
    res = runner.invoke(ptycho, alt)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "scan_recon.h5").exists()
    # inconsistent parameters and bad units: one clear message
    bad = [*args, "--beam-centre", "30.4", "45.7"]
    bad[bad.index("--semiconv") + 1] = "80"
    res = runner.invoke(ptycho, bad)
    assert res.exit_code != 0 and "does not reach the aperture edge" in str(res.exception)
    bad = list(args)
    bad[bad.index("--scan-step") + 1] = "0.6 furlong"
    res = runner.invoke(ptycho, bad)
    assert res.exit_code == 2 and "--scan-step" in res.output
    no_pixel = [a for a in args if a not in ("--detector-pixel",)]
    no_pixel.remove(f"{rec.detector_pixel_rad[0] * 1e3:.6f}mrad")
    res = runner.invoke(ptycho, no_pixel)
    assert res.exit_code == 2 and "--detector-pixel" in res.output


def test_cli_units():
    """The units the reconstruct-4dstem options accept (shared stacklab.cli.options parser)."""
    from functools import partial

    from stacklab.cli.options import parse_quantity

    length = partial(parse_quantity, kind="length", unit="m", examples="0.4A")
    angle = partial(parse_quantity, kind="angle", unit="rad", examples="25mrad")
    for text, metres in [("0.4", 0.4e-10), ("0.4A", 0.4e-10), ("0.4\u00c5", 0.4e-10)]:
        assert length(text, "--scan-step", bare="a") == pytest.approx(metres)
    assert length("40pm", "x", bare="a") == pytest.approx(0.4e-10)
    assert length("20nm", "x", bare="a") == pytest.approx(20e-9)
    assert length("55\u00b5m", "x", bare="um") == pytest.approx(55e-6)
    assert angle("25", "x", bare="mrad") == pytest.approx(0.025)
    assert angle("0.025rad", "x", bare="mrad") == pytest.approx(0.025)
    import click

    with pytest.raises(click.BadParameter, match="not a value with a unit"):
        angle("25deg", "--semiconv", bare="mrad")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rpie", "epie", "lsq"])
@pytest.mark.parametrize("counts", [None, 1e4])
def test_spec_scan_100_iterations(method, counts):
    """The reconstruction spec scan (10x10 positions, 64x64 window, step 6 px, probe filling
    half the window) recorded on a 128 x 176 detector: phase RMS <= 0.1 rad noise-free, <= 0.15
    rad at 1e4 counts (measured: 0.04-0.05 and 0.06-0.08 rad)."""
    n = 64
    ds = simulate_dataset(scan_shape=(10, 10), probe_shape=(n, n), step=6.0, jitter=0.0, seed=0)
    rec = record_4dstem(ds, detector_shape=(128, 176), beam_centre=(60.8, 91.4), counts=counts)
    obj, region = _truth_for(ds, ds.positions - ds.positions.min(axis=0))
    res = reconstruct_4dstem(
        rec.cube,
        **rec.acquisition,
        reconstruct_shape=(n, n),
        pixel_size_m=rec.pixel_size_m,
        defocus_m=1.2 * rec.defocus_m,
        method=method,
        iterations=100,
        object_shape=obj.shape,
        true_object=obj,
        region=region,
        progress=False,
    )
    centre_err = np.hypot(*(np.asarray(res.params["beam_centre"]) - rec.beam_centre))
    print(
        f"\n{method} counts={counts}: beam centre error {centre_err:.3f} px, phase RMS",
        {i + 1: round(float(res.object_errors[i]), 4) for i in (9, 29, 99)},
        f"flat {phase_rms_error(np.ones_like(obj), obj, region):.3f}",
    )
    assert centre_err < 0.1
    assert res.object_errors[-1] <= (0.1 if counts is None else 0.15)


@pytest.mark.gpu
def test_prepare_on_gpu_matches_cpu(scene, cupy):
    _, rec = scene
    kw = dict(_on_sim_grid(rec))
    ref = prepare_4dstem(rec.cube, **kw)
    gpu = prepare_4dstem(cupy.asarray(rec.cube), **kw)
    assert isinstance(gpu.patterns, cupy.ndarray)
    np.testing.assert_allclose(gpu.beam_centre, ref.beam_centre, atol=1e-6)
    np.testing.assert_allclose(cupy.asnumpy(gpu.patterns), ref.patterns, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(gpu.probe, ref.probe, rtol=1e-5, atol=1e-8)
