"""Tests of stacklab.backend on NumPy (CuPy cases are marked gpu)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage
import scipy.sparse

from stacklab import backend
from stacklab.errors import BackendError


def test_get_xp_numpy_and_scalars():
    a = np.zeros(3)
    assert backend.get_xp(a, 1.0, None, [1, 2]) is np
    assert backend.get_xp() is np


def test_get_xp_dask_uses_chunk_module():
    da = pytest.importorskip("dask.array")
    assert backend.get_xp(da.zeros((4, 4), chunks=2)) is np


def test_scipy_submodules_for_numpy():
    assert backend.fft(np) is scipy.fft
    assert backend.ndimage(np) is scipy.ndimage
    assert backend.sparse(np) is scipy.sparse


def test_to_numpy_passes_numpy_through_and_computes_dask():
    a = np.arange(6.0)
    assert backend.to_numpy(a) is a
    da = pytest.importorskip("dask.array")
    np.testing.assert_array_equal(backend.to_numpy(da.from_array(a, chunks=4)), a)


def test_resolve_device_cpu_and_errors(monkeypatch):
    monkeypatch.delenv("STACKLAB_DEVICE", raising=False)
    assert backend.resolve_device("cpu") == "cpu"
    assert backend.resolve_device("auto") == ("gpu" if backend.gpu_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        backend.resolve_device("tpu")


def test_env_override(monkeypatch):
    monkeypatch.setenv("STACKLAB_DEVICE", "cpu")
    assert backend.resolve_device("auto") == "cpu"
    assert backend.xp_for_device(None) is np
    monkeypatch.setenv("STACKLAB_DEVICE", "quantum")
    with pytest.raises(ValueError, match="STACKLAB_DEVICE"):
        backend.resolve_device()


def test_gpu_request_without_gpu_is_an_error(monkeypatch):
    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    with pytest.raises(BackendError, match="device='gpu'"):
        backend.resolve_device("gpu")
    monkeypatch.setenv("STACKLAB_DEVICE", "gpu")
    with pytest.raises(BackendError):
        backend.resolve_device("auto")


def test_asarray_on_cpu_keeps_values_and_dtype():
    a = np.arange(5, dtype=np.uint16)
    out = backend.asarray_on(a, "cpu", dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, a)
    assert a.dtype == np.uint16


@pytest.mark.gpu
def test_cupy_namespace_and_mixing_error(cupy):
    import cupyx.scipy.fft

    g = cupy.arange(4.0)
    assert backend.get_xp(g) is cupy
    assert backend.fft(cupy) is cupyx.scipy.fft
    assert backend.is_cupy(g) and not backend.is_cupy(np.arange(2))
    np.testing.assert_array_equal(backend.to_numpy(g), np.arange(4.0))
    with pytest.raises(BackendError, match="argument 1"):
        backend.get_xp(g, np.arange(4.0))
    assert backend.is_cupy(backend.asarray_on(np.arange(3), "gpu"))
    assert backend.is_cupy(backend.asarray_on(g, "auto"))
