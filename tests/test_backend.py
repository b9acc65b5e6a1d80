"""Tests of stacklab.backend on NumPy (CuPy cases are marked gpu)."""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import time
import types

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


def test_use_numba_choices():
    have = backend.numba_available()
    assert backend.use_numba(np) is have
    assert backend.use_numba(np, "xp") is False
    assert backend.use_numba(np, "vectorized", name="impl", xp_name="vectorized") is False
    with pytest.raises(ValueError, match=r"backend must be 'auto', 'numba' or 'xp', got 'gpu'"):
        backend.use_numba(np, "gpu")
    with pytest.raises(ValueError, match=r"impl must be 'auto', 'numba' or 'vectorized'"):
        backend.use_numba(np, "xp", name="impl", xp_name="vectorized")


def test_use_numba_refuses_device_arrays():
    fake_cupy = types.ModuleType("cupy")
    assert backend.use_numba(fake_cupy, "auto") is False
    assert backend.use_numba(fake_cupy, "xp") is False
    with pytest.raises(BackendError, match=r"impl='numba' needs NumPy \(CPU\) arrays"):
        backend.use_numba(fake_cupy, "numba", name="impl", xp_name="vectorized")


def test_numba_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` raise ImportError
    assert backend.numba_available() is False
    assert backend.load_kernels("stacklab.beads._numba_kernels") is None
    assert backend.use_numba(np, "auto") is False
    with pytest.raises(ImportError, match=r"backend='numba' needs numba"):
        backend.use_numba(np, "numba")


def test_load_kernels_with_numba():
    pytest.importorskip("numba")
    assert backend.numba_available() is True
    assert backend.use_numba(np, "numba") is True
    kernels = backend.load_kernels("stacklab.beads._numba_kernels")
    assert callable(kernels.track_kernel)
    with pytest.raises(ImportError):
        backend.load_kernels("stacklab.no_such_kernels")


def test_call_numba_serialises_worker_threads():
    active, peak, guard = [0], [0], threading.Lock()

    def kernel(x):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.005)
        with guard:
            active[0] -= 1
        return 2 * x

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        out = list(pool.map(lambda x: backend.call_numba(kernel, x), range(16)))
    assert out == [2 * x for x in range(16)]
    assert peak[0] == 1
    with backend._NUMBA_LOCK:  # the main thread calls directly, without the lock
        assert backend.call_numba(kernel, 3) == 6
