"""stacklab.compat.py4dstem.preprocess against py4DSTEM 0.14.18 golden outputs.

Every golden DataCube call records that py4DSTEM returned the cube it was given
(``aux_returned_same_object``) and, for shifts and pixel repairs, overwrote the caller's array
(``aux_input_array_modified_in_place``). Here every call checks the opposite: a new DataCube
comes back and the input array is unchanged.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from stacklab.compat import py4dstem as p4
from stacklab.errors import ShapeError


def _golden_helper():
    """tests/compat/_py4dstem_golden.py, loaded by path (pytest uses --import-mode=importlib)."""
    name = "_py4dstem_golden"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_g = _golden_helper()
cases = _g.cases
load = _g.load
params = _g.params


def run(func, d, *args, **kw):
    """Call ``func(DataCube(in_data), *args, **kw)``; check no mutation and a new cube."""
    data = d["in_data"].copy()
    cube = p4.DataCube(data)
    out = func(cube, *args, **kw)
    res = out[0] if isinstance(out, tuple) else out
    assert isinstance(res, p4.DataCube)
    assert res is not cube  # py4DSTEM: aux_returned_same_object is True
    np.testing.assert_array_equal(data, d["in_data"])  # py4DSTEM may overwrite it
    np.testing.assert_array_equal(cube.data, d["in_data"])
    assert cube.Q_pixel_size == 1.0 and cube.R_pixel_size == 1.0  # calibration untouched
    return out


def check_calibration(res, d):
    if "out_Q_pixel_size" in d:
        assert res.Q_pixel_size == pytest.approx(d["out_Q_pixel_size"], rel=1e-12)
        assert res.R_pixel_size == pytest.approx(d["out_R_pixel_size"], rel=1e-12)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", ["swap_RQ__tiny", "swap_Rxy__tiny", "swap_Qxy__tiny"])
def test_swaps_golden(name):
    d = load(name)
    res = run(getattr(p4, name.split("__")[0]), d)
    assert res.data.shape == tuple(d["out_shape"])
    np.testing.assert_array_equal(res.data, d["out_data"])
    assert res.data.dtype == d["out_data"].dtype


def test_swaps_move_calibration():
    c = p4.Calibration(
        q_pixel_size=(0.1, 0.2), r_pixel_size=(3.0, 4.0), q_units="A^-1", r_units="A"
    )
    cube = p4.DataCube(np.zeros((2, 3, 4, 5)), c)
    rq = p4.swap_RQ(cube)
    assert rq.calibration.q_pixel_size == (3.0, 4.0) and rq.calibration.q_units == "A"
    assert rq.calibration.r_pixel_size == (0.1, 0.2) and rq.calibration.r_units == "A^-1"
    assert p4.swap_Rxy(cube).calibration.r_pixel_size == (4.0, 3.0)
    assert p4.swap_Qxy(cube).calibration.q_pixel_size == (0.2, 0.1)
    assert (rq.R_Nx, rq.R_Ny, rq.Q_Nx, rq.Q_Ny) == (4, 5, 2, 3)


def test_set_scan_shape_golden():
    d = load("set_scan_shape__1x6_to_3x2")
    res = run(p4.set_scan_shape, d, d["in_R_Nx"], d["in_R_Ny"])
    np.testing.assert_array_equal(res.data, d["out_data"])
    assert (res.R_Nx, res.R_Ny) == (3, 2)
    k = np.arange(6)
    np.testing.assert_array_equal(res.data[k // 2, k % 2], d["in_data"][0, k])


def test_set_scan_shape_bad_shape_quirk():
    """QUIRK: py4DSTEM prints a message and returns the cube unchanged; stacklab raises."""
    d = load("set_scan_shape__bad_shape_QUIRK")
    assert "Can't reshape" in d["aux_stdout"]
    np.testing.assert_array_equal(d["out_data"], d["in_data"])  # py4DSTEM: nothing happened
    with pytest.raises(ShapeError, match="scan_shape"):
        p4.set_scan_shape(p4.DataCube(d["in_data"].copy()), d["in_R_Nx"], d["in_R_Ny"])


# ----------------------------------------------------------------------------- binning


@pytest.mark.parametrize("name", [n for n in cases("bin_data_diffraction__") if "QUIRK" not in n])
def test_bin_data_diffraction_golden(name):
    d = load(name)
    kw = {"dtype": d["in_dtype"]} if "in_dtype" in d else {}
    res = run(p4.bin_data_diffraction, d, d["in_bin_factor"], **kw)
    assert res.data.dtype == d["out_data"].dtype
    if d["out_data"].dtype == np.float32:
        np.testing.assert_allclose(res.data, d["out_data"], rtol=1e-6)
    else:
        np.testing.assert_array_equal(res.data, d["out_data"])
    check_calibration(res, d)


def test_bin_data_diffraction_wrap_quirk(caplog):
    """QUIRK: py4DSTEM wraps 4 x 20000 to 14464 in uint16; stacklab widens to hold 80000."""
    d = load("bin_data_diffraction__u16_wrap_QUIRK")
    res = run(p4.bin_data_diffraction, d, 2)
    expected = d["in_data"].astype(np.int64).reshape(1, 2, 2, 2, 2, 2).sum(axis=(3, 5))
    assert expected.max() == 80000
    np.testing.assert_array_equal(res.data, expected)
    assert res.data.dtype == np.uint32 and "do not fit" in caplog.text
    np.testing.assert_array_equal(d["out_data"], (expected % 65536).astype(np.uint16))
    assert not np.array_equal(res.data, d["out_data"])
    with pytest.raises(ValueError):
        p4.bin_data_diffraction(d["in_data"], 2, dtype=np.uint16)  # explicit: never wraps


def test_bin_data_mmap_nonsquare_scan(tmp_path):
    """py4DSTEM's bin_data_mmap fails on non-square scans; here a memmap is binned in blocks."""
    d = load("bin_data_diffraction__u16_f2")
    mm = np.lib.format.open_memmap(
        tmp_path / "cube.npy", mode="w+", dtype=np.uint16, shape=d["in_data"].shape
    )
    mm[:] = d["in_data"]
    res = p4.bin_data_mmap(p4.DataCube(mm), 2)
    assert res.data.dtype == np.float32
    np.testing.assert_array_equal(res.data, d["out_data"].astype(np.float32))
    assert res.Q_pixel_size == 2.0


@pytest.mark.parametrize("name", cases("bin_data_real__"))
def test_bin_data_real_golden(name):
    d = load(name)
    res = run(p4.bin_data_real, d, d["in_bin_factor"])
    assert res.data.dtype == d["out_data"].dtype  # uint16 -> uint64 as py4DSTEM, float32 kept
    np.testing.assert_allclose(
        res.data, d["out_data"], rtol=1e-6 if res.data.dtype == np.float32 else 0
    )
    check_calibration(res, d)


@pytest.mark.parametrize("name", cases("thin_data_real__"))
def test_thin_data_real_golden(name):
    d = load(name)
    res = run(p4.thin_data_real, d, d["in_thinning_factor"])
    np.testing.assert_array_equal(res.data, d["out_data"])
    assert res.data.dtype == d["out_data"].dtype
    check_calibration(res, d)


def test_binning_dask_matches_numpy():
    da = pytest.importorskip("dask.array")
    d = load("bin_data_diffraction__u16_f3")
    lazy = da.from_array(d["in_data"], chunks=(3, 5, 24, 20))  # awkward scan chunks
    res = p4.bin_data_diffraction(p4.DataCube(lazy), 3)
    np.testing.assert_array_equal(np.asarray(res.data.compute()).astype(np.uint16), d["out_data"])


# ----------------------------------------------------------------------------- padding


@pytest.mark.parametrize("name", cases("pad_data_diffraction__"))
def test_pad_data_diffraction_golden(name):
    d = load(name)
    res = run(p4.pad_data_diffraction, d, **params(d, "data"))
    assert res.data.dtype == d["out_data"].dtype
    np.testing.assert_array_equal(res.data, d["out_data"])
    check_calibration(res, d)


def test_pad_moves_origin():
    cube = p4.DataCube(np.ones((1, 1, 4, 6), np.float32), p4.Calibration(q_origin=(1.5, 2.5)))
    res = p4.pad_data_diffraction(cube, output_size=(7, 9))
    assert res.calibration.q_origin == (2.5, 3.5)
    assert res.data[0, 0, 1:5, 1:7].sum() == 24 and res.data.sum() == 24


# ----------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("name", cases("resample_data_diffraction__f32_bilinear"))
def test_resample_bilinear_golden(name):
    d = load(name)
    res = run(p4.resample_data_diffraction, d, **params(d, "data"))
    assert res.data.dtype == np.float64 and res.data.shape == d["out_data"].shape
    # py4DSTEM divides by fx * fy in float32 for conserve_array_sums (float32 rounding)
    rtol = 1e-7 if d["in_conserve_array_sums"] else 1e-12
    np.testing.assert_allclose(res.data, d["out_data"], rtol=rtol)
    check_calibration(res, d)
    if d["in_conserve_array_sums"]:
        np.testing.assert_allclose(
            res.data.sum(axis=(2, 3)), d["in_data"].astype(float).sum(axis=(2, 3)), rtol=1e-6
        )


@pytest.mark.parametrize(
    "name",
    [
        "resample_data_diffraction__f32_fourier_rf1.5",
        "resample_data_diffraction__f32_fourier_rf1.5_conserve",
        "resample_data_diffraction__f32_fourier_size30x26",
    ],
)
def test_resample_fourier_upsampling_golden(name):
    """Convention: py4DSTEM puts the Nyquist term on one side only; stacklab splits it
    symmetrically, which differs by about 1e-3 of the maximum when upsampling (README)."""
    d = load(name)
    res = run(p4.resample_data_diffraction, d, **params(d, "data"))
    assert res.data.dtype == np.float32 and res.data.shape == d["out_data"].shape
    err = np.abs(res.data - d["out_data"]).max() / np.abs(d["out_data"]).max()
    print(f"{name}: max difference {err:.2e} of the maximum")
    assert err < 2e-3
    check_calibration(res, d)
    if d["in_conserve_array_sums"]:
        np.testing.assert_allclose(
            res.data.sum(axis=(2, 3)), d["in_data"].astype(float).sum(axis=(2, 3)), rtol=1e-5
        )


def test_resample_fourier_downsampling_golden():
    """README: for rf0.75 a symmetric-Nyquist resize agrees with py4DSTEM to about 1e-7."""
    d = load("resample_data_diffraction__f32_fourier_rf0.75")
    res = run(p4.resample_data_diffraction, d, **params(d, "data"))
    assert res.data.shape == d["out_data"].shape == (4, 6, 18, 15)
    err = np.abs(res.data - d["out_data"]).max() / np.abs(d["out_data"]).max()
    assert err < 1e-6


def test_resample_fourier_band_limited_known():
    """Known answer: a band-limited cosine resampled in Fourier space is a finer sampling of it."""
    n = 16
    i = np.arange(n)
    frame = 5 + np.cos(2 * np.pi * 3 * i / n)[:, None] * np.cos(2 * np.pi * 2 * i / n)[None, :]
    res = p4.resample_data_diffraction(frame[None, None], resampling_factor=2.0, method="fourier")
    j = np.arange(2 * n) / 2
    exact = 5 + np.cos(2 * np.pi * 3 * j / n)[:, None] * np.cos(2 * np.pi * 2 * j / n)[None, :]
    np.testing.assert_allclose(res.data[0, 0], exact, atol=1e-12)
    with pytest.raises(ValueError):
        p4.resample_data_diffraction(frame[None, None], 2.0, method="bicubic")


# ----------------------------------------------------------------------------- shifts


@pytest.mark.parametrize(
    "name",
    [
        "datacube_diffraction_shift__f32_scalar_fourier",
        "datacube_diffraction_shift__f32_perpos_fourier",
    ],
)
def test_diffraction_shift_fourier_golden(name):
    """The real part of the complex phase-ramp shift, as py4DSTEM (both detector axes even, so
    the (Nyquist, Nyquist) corner convention matters: cos(pi (sx + sy)))."""
    d = load(name)
    res = run(
        p4.datacube_diffraction_shift,
        d,
        d["in_xshifts"],
        d["in_yshifts"],
        periodic=True,
        bilinear=False,
    )
    assert res.data.dtype == np.float32
    scale = np.abs(d["out_data"]).max()
    err = np.abs(res.data - d["out_data"]).max() / scale
    print(f"{name}: max difference {err:.1e} of the maximum (float32 arithmetic)")
    assert err < 1e-6


@pytest.mark.parametrize(
    "name",
    [
        "datacube_diffraction_shift__f32_scalar_bilinear",
        "datacube_diffraction_shift__f32_perpos_bilinear",
    ],
)
def test_diffraction_shift_bilinear_golden(name):
    d = load(name)
    res = run(
        p4.datacube_diffraction_shift,
        d,
        d["in_xshifts"],
        d["in_yshifts"],
        periodic=True,
        bilinear=True,
    )
    assert res.data.dtype == np.float32
    np.testing.assert_allclose(res.data, d["out_data"], rtol=1e-6)


def test_diffraction_shift_matches_get_shifted_ar():
    d = load("datacube_diffraction_shift__f32_perpos_bilinear")
    res = p4.datacube_diffraction_shift(
        d["in_data"], d["in_xshifts"], d["in_yshifts"], bilinear=True
    )
    for rx, ry in [(0, 0), (3, 5), (2, 1)]:
        one = p4.get_shifted_ar(
            d["in_data"][rx, ry], d["in_xshifts"][rx, ry], d["in_yshifts"][rx, ry], bilinear=True
        )
        np.testing.assert_allclose(res.data[rx, ry], one, rtol=1e-6)


@pytest.mark.parametrize(
    "name",
    [
        "datacube_diffraction_shift__f32_perpos_bilinear_nonperiodic",
        "datacube_diffraction_shift__f32_perpos_fourier_nonperiodic",
    ],
)
def test_diffraction_shift_nonperiodic_quirk(name):
    """QUIRK: py4DSTEM's non-periodic shift keeps wrapped content; stacklab lets none in."""
    d = load(name)
    bilinear = bool(d["in_bilinear"])
    res = run(
        p4.datacube_diffraction_shift,
        d,
        d["in_xshifts"],
        d["in_yshifts"],
        periodic=False,
        bilinear=bilinear,
    )
    periodic = p4.datacube_diffraction_shift(
        d["in_data"], d["in_xshifts"], d["in_yshifts"], bilinear=bilinear
    ).data
    worst = 0.0
    for rx, ry in np.ndindex(4, 6):
        sx, sy = d["in_xshifts"][rx, ry], d["in_yshifts"][rx, ry]
        frame = d["in_data"][rx, ry].astype(np.float64)
        # the recorded frame is the periodic py4DSTEM result with round(shift) bands zeroed
        xr, yr = int(np.round(sx)), int(np.round(sy))
        zeroed = np.zeros(frame.shape, bool)
        zeroed[: max(xr, 0)] = True
        zeroed[frame.shape[0] + min(xr, 0) :] = True
        zeroed[:, : max(yr, 0)] = True
        zeroed[:, frame.shape[1] + min(yr, 0) :] = True
        assert np.all(d["out_data"][rx, ry][zeroed] == 0)
        if bilinear:
            # stacklab: 0 wherever the source point lies outside the frame
            ref = _g.bilinear_shift_reference(frame, sx, sy)
            np.testing.assert_allclose(res.data[rx, ry], ref, rtol=1e-6, atol=1e-3)
            np.testing.assert_allclose(
                d["out_data"][rx, ry][~zeroed], periodic[rx, ry][~zeroed], rtol=1e-6
            )
        worst = max(worst, float(np.abs(res.data[rx, ry] - d["out_data"][rx, ry]).max()))
    assert worst > 10  # differs where py4DSTEM kept wrapped content


def test_diffraction_shift_integer_nonperiodic_exact():
    rng = np.random.default_rng(5)
    data = rng.poisson(50, (2, 3, 16, 12)).astype(np.float32)
    for bilinear in (True, False):
        res = p4.datacube_diffraction_shift(data, 2, -3, periodic=False, bilinear=bilinear)
        exact = np.zeros_like(data)
        exact[..., 2:, :-3] = data[..., :-2, 3:]
        np.testing.assert_allclose(res.data, exact, atol=1e-3)


def test_diffraction_shift_uint16_quirk():
    """QUIRK: py4DSTEM truncates the float result into uint16; stacklab returns float64."""
    d = load("datacube_diffraction_shift__u16_scalar_bilinear_QUIRK")
    res = run(p4.datacube_diffraction_shift, d, 1.3, -0.6, periodic=True, bilinear=True)
    assert res.data.dtype == np.float64
    expected = ndi.shift(
        d["in_data"].astype(np.float64), (0, 0, 1.3, -0.6), order=1, mode="grid-wrap"
    )
    np.testing.assert_allclose(res.data, expected, rtol=1e-12)
    lost = res.data - d["out_data"]  # py4DSTEM truncated toward zero
    assert lost.min() > -1e-6 and lost.max() < 1 + 1e-6
    print(f"uint16 truncation lost {lost.mean():.3f} counts per pixel on average")
    assert 0.4 < lost.mean() < 0.6  # about half a count of bias


def test_diffraction_shift_bad_shapes():
    data = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(ShapeError):
        p4.datacube_diffraction_shift(data, np.zeros((3, 2)), 0.0)


# ----------------------------------------------------------------------------- hot pixels


def _median_of_unmasked(frame, mask, r, c, width=3):
    h = width // 2
    win = frame[max(r - h, 0) : r + h + 1, max(c - h, 0) : c + h + 1]
    ok = ~mask[max(r - h, 0) : r + h + 1, max(c - h, 0) : c + h + 1]
    return np.median(win[ok].astype(np.float64))


@pytest.mark.parametrize("name", cases("filter_hot_pixels__"))
def test_filter_hot_pixels_golden(name):
    """ind_compare=2: py4DSTEM's mask is right. ind_compare=1 (QUIRK): py4DSTEM misses the
    adjacent pair; stacklab finds all six planted pixels (the truth) with no false positive."""
    d = load(name)
    res, mask = run(
        p4.filter_hot_pixels, d, d["in_thresh"], ind_compare=d["in_ind_compare"], return_mask=True
    )
    truth = d["truth_mask"]
    np.testing.assert_array_equal(mask, truth)
    if d["in_ind_compare"] == 1:
        missed = truth & ~d["out_mask"]
        pair = np.zeros_like(truth)
        pair[tuple(d["truth_hot_pair"].T)] = True
        np.testing.assert_array_equal(missed, pair)  # the documented quirk
    else:
        np.testing.assert_array_equal(d["out_mask"], truth)
    # repair: untouched pixels identical to the input; hot ones the median of good neighbours
    assert res.data.dtype == d["in_data"].dtype
    np.testing.assert_array_equal(res.data[..., ~truth], d["in_data"][..., ~truth])
    for rx, ry in [(0, 0), (3, 5)]:
        for r, c in zip(*np.nonzero(truth)):
            want = _median_of_unmasked(d["in_data"][rx, ry], truth, r, c)
            if d["in_data"].dtype.kind == "u":
                want = np.rint(want)
            assert res.data[rx, ry, r, c] == pytest.approx(want, rel=1e-6)
    # hot pixels are gone: repaired values are far below the hot level (Poisson 2000 added)
    assert res.data[..., truth].max() < 1000 < d["in_data"][..., truth].min()


def test_filter_hot_pixels_ind_compare_semantics():
    """ind_compare=k tolerates k hot neighbours: 0 finds isolated pixels only."""
    d = load("filter_hot_pixels__u16_ind2")
    _, mask0 = p4.filter_hot_pixels(d["in_data"], 300.0, ind_compare=0, return_mask=True)
    isolated = np.zeros_like(mask0)
    isolated[tuple(d["truth_hot_isolated"].T)] = True
    np.testing.assert_array_equal(mask0, isolated)
    res = p4.filter_hot_pixels(d["in_data"], 300.0)
    assert isinstance(res, p4.DataCube)
    with pytest.raises(ValueError):
        p4.filter_hot_pixels(d["in_data"], -1.0)


@pytest.mark.parametrize(
    "name", [n for n in cases("median_filter_masked_pixels__") if "QUIRK" not in n]
)
def test_median_filter_masked_pixels_golden(name):
    """Close to py4DSTEM (which repairs from partly repaired data and includes bad pixels in the
    window); stacklab gives the median of the good pixels of the centred window."""
    d = load(name)
    mask = d["in_mask"]
    k = d["in_kernel_width"]
    res = run(p4.median_filter_masked_pixels, d, mask, kernel_width=k)
    np.testing.assert_array_equal(res.data[..., ~mask], d["out_data"][..., ~mask])
    for rx, ry in [(0, 0), (1, 4), (3, 5)]:
        for r, c in zip(*np.nonzero(mask)):
            want = _median_of_unmasked(d["in_data"][rx, ry], mask, r, c, k)
            if d["in_data"].dtype.kind == "u":
                want = np.rint(want)
            assert res.data[rx, ry, r, c] == pytest.approx(want, rel=1e-6)
    diff = np.abs(res.data[..., mask].astype(float) - d["out_data"][..., mask].astype(float))
    print(
        f"{name}: repaired pixels differ from py4DSTEM by median {np.median(diff):.2f}, "
        f"max {diff.max():.1f} counts"
    )
    assert np.median(diff) < 10  # both are local medians of ~100-count data


def test_median_filter_even_kernel_quirk():
    """QUIRK: py4DSTEM's even kernel is off-centre ([q-2, q+2)); stacklab refuses it."""
    d = load("median_filter_masked_pixels__u16_k4_QUIRK")
    with pytest.raises(ValueError, match="kernel_width"):
        p4.median_filter_masked_pixels(d["in_data"], d["in_mask"], kernel_width=4)
    # py4DSTEM's (2,3) pixel... its window reaches 2 px before but 1 px after the pixel:
    r, c = 5, 15
    window = d["in_data"][0, 0, r - 2 : r + 2, c - 2 : c + 2].astype(float)
    assert d["out_data"][0, 0, r, c] == np.floor(np.median(window))


def test_median_filter_bad_mask():
    data = np.zeros((1, 1, 4, 4))
    with pytest.raises(ShapeError):
        p4.median_filter_masked_pixels(data, np.zeros((3, 4), bool))
    with pytest.raises(TypeError):
        p4.median_filter_masked_pixels(data, np.zeros((4, 4)))


# ----------------------------------------------------------------------------- the DataCube


def test_datacube_names_and_adapters():
    from stacklab.stem4d.datacube import DataCube as CanonicalDataCube

    data = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5)
    cube = p4.DataCube(data)
    assert (cube.R_Nx, cube.R_Ny, cube.Q_Nx, cube.Q_Ny, cube.R_N) == (2, 3, 4, 5, 6)
    assert cube.data is data  # wrapped, not copied
    assert cube.Q_pixel_units == "pixels" and "py4dstem" in repr(cube)
    canonical = CanonicalDataCube(data, p4.Calibration(q_pixel_size=(0.5, 0.25)))
    wrapped = p4.as_datacube(canonical)
    assert isinstance(wrapped, p4.DataCube) and wrapped.data is data
    assert wrapped.Q_pixel_size == 0.5 and wrapped.calibration.q_pixel_size == (0.5, 0.25)
    assert p4.as_datacube(cube) is cube
    binned = p4.bin_data_diffraction(canonical, 2)  # canonical cubes are accepted too
    assert isinstance(binned, p4.DataCube) and binned.calibration.q_pixel_size == (1.0, 0.5)
    with pytest.raises(TypeError):
        p4.as_datacube("cube")
    with pytest.raises(ShapeError):
        p4.DataCube(np.zeros((3, 4, 5)))
