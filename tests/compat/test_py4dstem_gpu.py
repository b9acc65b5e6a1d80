"""stacklab.compat.py4dstem on CuPy arrays: same answers as NumPy, results stay on the GPU.

Run with ``pytest -m gpu`` on a machine with a CUDA device (skipped elsewhere).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from stacklab import backend
from stacklab.compat import py4dstem as p4

pytestmark = pytest.mark.gpu


def _golden_helper():
    """tests/compat/_py4dstem_golden.py, loaded by path (pytest uses --import-mode=importlib)."""
    name = "_py4dstem_golden"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


load = _golden_helper().load


def _same(gpu_result, cpu_result, rtol=1e-6, atol=0.0):
    assert backend.is_cupy(gpu_result), type(gpu_result)
    got = backend.to_numpy(gpu_result)
    assert got.dtype == np.asarray(cpu_result).dtype
    np.testing.assert_allclose(got, cpu_result, rtol=rtol, atol=atol)


@pytest.fixture
def cube_f32():
    return load("datacube_diffraction_shift__f32_perpos_fourier")


def test_binning_padding_thinning(cupy):
    d = load("bin_data_diffraction__u16_f2")
    g = p4.DataCube(cupy.asarray(d["in_data"]))
    c = p4.DataCube(d["in_data"])
    for f, args in [
        (p4.bin_data_diffraction, (2,)),
        (p4.bin_data_real, (2,)),
        (p4.thin_data_real, (2,)),
        (p4.swap_RQ, ()),
        (p4.set_scan_shape, (2, 12)),
    ]:
        _same(f(g, *args).data, f(c, *args).data, rtol=0)
    _same(
        p4.pad_data_diffraction(g, pad_factor=1.5).data,
        p4.pad_data_diffraction(c, pad_factor=1.5).data,
        rtol=0,
    )
    _same(p4.bin2D(cupy.asarray(d["in_data"][0, 0]), 3), p4.bin2D(d["in_data"][0, 0], 3), rtol=0)


@pytest.mark.parametrize("bilinear", [False, True])
@pytest.mark.parametrize("periodic", [True, False])
def test_diffraction_shift(cupy, cube_f32, bilinear, periodic):
    d = cube_f32
    args = (d["in_xshifts"], d["in_yshifts"])
    cpu = p4.datacube_diffraction_shift(d["in_data"], *args, periodic=periodic, bilinear=bilinear)
    gpu = p4.datacube_diffraction_shift(
        cupy.asarray(d["in_data"]), *args, periodic=periodic, bilinear=bilinear
    )
    _same(gpu.data, cpu.data, rtol=1e-5, atol=1e-3)


def test_get_shifted_ar_device(cupy):
    d = load("get_shifted_ar__fourier_periodic_s1")
    for bilinear in (False, True):
        for periodic in (True, False):
            cpu = p4.get_shifted_ar(d["in_ar"], 1.5, 2.25, periodic=periodic, bilinear=bilinear)
            gpu = p4.get_shifted_ar(
                d["in_ar"], 1.5, 2.25, periodic=periodic, bilinear=bilinear, device="gpu"
            )
            _same(gpu, cpu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        backend.to_numpy(p4.get_shifted_ar(cupy.asarray(d["in_ar"]), 1.5, 2.25, device="gpu")),
        d["out_shifted"],
        atol=1e-12,
    )


def test_resample(cupy, cube_f32):
    d = cube_f32
    for method in ("bilinear", "fourier"):
        cpu = p4.resample_data_diffraction(d["in_data"], 1.5, method=method)
        gpu = p4.resample_data_diffraction(cupy.asarray(d["in_data"]), 1.5, method=method)
        _same(gpu.data, cpu.data, rtol=1e-5, atol=1e-3)


def test_hot_pixels_and_median_filter(cupy):
    d = load("filter_hot_pixels__u16_ind1")
    cpu, mask_cpu = p4.filter_hot_pixels(d["in_data"], 300.0, return_mask=True)
    gpu, mask_gpu = p4.filter_hot_pixels(cupy.asarray(d["in_data"]), 300.0, return_mask=True)
    _same(mask_gpu, mask_cpu, rtol=0)
    _same(gpu.data, cpu.data, rtol=0)
    m = load("median_filter_masked_pixels__f32_k3")
    cpu = p4.median_filter_masked_pixels(m["in_data"], m["in_mask"])
    gpu = p4.median_filter_masked_pixels(cupy.asarray(m["in_data"]), cupy.asarray(m["in_mask"]))
    _same(gpu.data, cpu.data, rtol=1e-6)


def test_dark_references(cupy):
    d = load("get_darkreference__all_frames_wx3_wy2")
    g = cupy.asarray(d["in_data"])
    cpu = p4.get_darkreference(d["in_data"], 24, width_x=3, width_y=2, side_y="start", rng=1)
    gpu = p4.get_darkreference(g, 24, width_x=3, width_y=2, side_y="start", rng=1)
    _same(gpu, cpu, rtol=1e-12)
    s = p4.get_background_streaks(g, 6, 2, side="start", rng=2)
    _same(s, p4.get_background_streaks(d["in_data"], 6, 2, side="start", rng=2), rtol=1e-12)
    b = load("get_bksbtr_DP__u16")
    _same(
        p4.get_bksbtr_DP(cupy.asarray(b["in_data"]), cupy.asarray(b["in_darkref"]), 2, 5),
        b["out_dp"],
        rtol=0,
    )


def test_maxima_and_interpolation_accept_cupy(cupy):
    d = load("get_maxima_2D__multicorr_all")
    cpu = p4.get_maxima_2D(d["in_ar"], subpixel="multicorr", maxNumPeaks=None)
    gpu = p4.get_maxima_2D(cupy.asarray(d["in_ar"]), subpixel="multicorr", maxNumPeaks=None)
    np.testing.assert_array_equal(gpu, cpu)  # refinement runs on the host; a NumPy table back
    li = load("linear_interpolation_2D__inside")
    vals = p4.linear_interpolation_2D(
        cupy.asarray(li["in_ar"]), cupy.asarray(li["in_x"]), cupy.asarray(li["in_y"])
    )
    _same(vals, li["out_values"], rtol=1e-12)
