"""NumPy vs CuPy: the same calls on the GPU give the CPU's answers (run with -m gpu)."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.ptycho import (
    apply_matrix,
    diffraction_intensities,
    diffraction_to_detector,
    ifftshift_coords,
    image_transformation_matrix,
    reconstruct,
    rolled_object_aggregation,
    rolled_object_probe_product,
    shifted_probes,
    wavelength,
)

pytestmark = pytest.mark.gpu


def test_rolled_product_and_aggregation(cupy, rng):
    obj = (rng.standard_normal((20, 18)) + 1j * rng.standard_normal((20, 18))).astype(np.complex64)
    probes = (rng.standard_normal((3, 2, 7, 6)) + 0j).astype(np.complex64)
    shifts = rng.uniform(-25, 25, (30, 2))
    for ifft in (False, True):
        a, sa = rolled_object_probe_product(obj, probes, shifts, ifftshift=ifft)
        b, sb = rolled_object_probe_product(
            cupy.asarray(obj), cupy.asarray(probes), cupy.asarray(shifts), ifftshift=ifft
        )
        assert isinstance(b, cupy.ndarray)
        np.testing.assert_array_equal(b.get(), a)
        np.testing.assert_array_equal(sb.get(), sa)
        ca = rolled_object_aggregation(obj, a, np.floor(shifts).astype(int), fftshift=ifft)
        cb = rolled_object_aggregation(
            cupy.asarray(obj), b, cupy.asarray(np.floor(shifts).astype(int)), fftshift=ifft
        )
        np.testing.assert_allclose(cb.get(), ca, rtol=1e-5, atol=1e-5)


def test_matrix_on_gpu(cupy, rng):
    ss, ts = (64, 64), (24, 24)
    tr = diffraction_to_detector(wavelength(300), ts, 1e-11, 3e-3, 31.0, 33.0, True, 30.0)
    m_cpu = image_transformation_matrix(ss, ts, tr, ifftshift_coords(ts))
    m_gpu = image_transformation_matrix(ss, ts, tr, ifftshift_coords(ts), device="gpu")
    stack = rng.random((10, *ss), dtype=np.float32)
    ref = apply_matrix(stack, m_cpu, ts)
    for m in (m_cpu, m_gpu):
        got = apply_matrix(cupy.asarray(stack), m, ts)
        assert isinstance(got, cupy.ndarray)
        np.testing.assert_allclose(got.get(), ref, rtol=1e-5, atol=1e-6)


def test_shifted_probes_and_intensities(cupy, rng):
    probe = (rng.standard_normal((12, 12)) + 1j * rng.standard_normal((12, 12))).astype(
        np.complex128
    )
    for method in ("spline", "fourier"):
        a = shifted_probes(probe, (2, 3), method=method)
        b = shifted_probes(cupy.asarray(probe), (2, 3), method=method)
        np.testing.assert_allclose(b.get(), a, rtol=1e-9, atol=1e-9)
    obj = np.exp(1j * rng.uniform(0, 1, (30, 30)))
    pos = np.array([[1.0, 2.0], [4.5, 3.25]])
    a = diffraction_intensities(obj, probe, pos)
    b = diffraction_intensities(cupy.asarray(obj), cupy.asarray(probe), cupy.asarray(pos))
    np.testing.assert_allclose(b.get(), a, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", ["rpie", "lsq"])
def test_reconstruct_on_gpu(cupy, small_scan, method):
    ds = small_scan
    kw = dict(method=method, iterations=20, object_shape=ds.object.shape, true_object=ds.object)
    cpu = reconstruct(ds.patterns, ds.positions, ds.probe_guess, **kw)
    gpu = reconstruct(cupy.asarray(ds.patterns), ds.positions, ds.probe_guess, **kw)
    assert isinstance(gpu.object, np.ndarray)
    np.testing.assert_allclose(gpu.errors[:3], cpu.errors[:3], rtol=0.05)
    assert gpu.object_errors[-1] <= 0.05
    assert abs(gpu.object_errors[-1] - cpu.object_errors[-1]) < 0.01
