"""The one place that knows NumPy from CuPy.

It answers five questions and nothing else:

* which array module holds these arrays (:func:`get_xp`),
* which SciPy-like modules go with it (:func:`fft`, :func:`ndimage`, :func:`sparse`, ...),
* how to get a NumPy copy for output (:func:`to_numpy`),
* which device the user asked for (:func:`resolve_device`, :func:`asarray_on`),
* whether a numba kernel or its vectorized ``xp`` twin runs (:func:`use_numba`,
  :func:`load_kernels`, :func:`call_numba`).

CuPy is imported lazily and a GPU is used only when ``cupy.cuda.is_available()`` is true; importing
CuPy alone is not enough. The environment variable ``STACKLAB_DEVICE`` (cpu, gpu or auto)
sets the default device choice.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, Literal

import numpy as np

from .errors import BackendError

__all__ = [
    "Device",
    "asarray_on",
    "call_numba",
    "fft",
    "get_xp",
    "gpu_available",
    "is_cupy",
    "is_dask",
    "load_kernels",
    "ndimage",
    "numba_available",
    "resolve_device",
    "signal",
    "sparse",
    "special",
    "to_numpy",
    "use_numba",
    "xp_for_device",
]

logger = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "gpu"]
_DEVICES = ("auto", "cpu", "gpu")

# numba's default ``workqueue`` threading layer must not be entered by two threads at once.
_NUMBA_LOCK = threading.Lock()


@functools.cache
def _cupy() -> ModuleType | None:
    """Return the cupy module if it imports *and* a CUDA device is usable, else None."""
    try:
        import cupy
    except Exception:  # ImportError, or a broken CUDA install raising at import
        return None
    try:
        if not cupy.cuda.is_available():
            return None
    except Exception:
        return None
    return cupy


def gpu_available() -> bool:
    """Return True when CuPy imports and ``cupy.cuda.is_available()`` reports a device."""
    return _cupy() is not None


def is_cupy(arr: Any) -> bool:
    """Return True if ``arr`` is a CuPy ndarray (without importing CuPy)."""
    return type(arr).__module__.split(".")[0] == "cupy"


def is_dask(arr: Any) -> bool:
    """Return True if ``arr`` is a Dask array (without importing Dask)."""
    return type(arr).__module__.split(".")[0] == "dask" and hasattr(arr, "chunks")


def _module_of(arr: Any) -> ModuleType | None:
    if is_cupy(arr):
        return _cupy() or importlib.import_module("cupy")
    if is_dask(arr):
        return _module_of(arr._meta)
    if isinstance(arr, np.ndarray | np.generic):
        return np
    return None


def get_xp(*arrays: Any) -> ModuleType:
    """Return the array module (``numpy`` or ``cupy``) that holds ``arrays``.

    Scalars, lists and ``None`` are ignored; Dask arrays count as the module of their chunks.

    Parameters
    ----------
    *arrays : array-like
        Arrays that will be combined in one computation.

    Returns
    -------
    module
        ``numpy`` or ``cupy``.

    Raises
    ------
    BackendError
        If NumPy and CuPy arrays are mixed.
    """
    found: set[str] = set()
    module: ModuleType = np
    for i, arr in enumerate(arrays):
        mod = _module_of(arr)
        if mod is None:
            continue
        found.add(mod.__name__)
        module = mod
        if len(found) > 1:
            raise BackendError(
                f"argument {i} is a {mod.__name__} array but earlier arguments are "
                f"{(found - {mod.__name__}).pop()} arrays; move all inputs to one device "
                "(stacklab.backend.asarray_on) before calling"
            )
    return module


def _scipy_submodule(xp: ModuleType, name: str) -> ModuleType:
    if xp is np:
        return importlib.import_module(f"scipy.{name}")
    return importlib.import_module(f"cupyx.scipy.{name}")


def fft(xp: ModuleType) -> ModuleType:
    """Return ``scipy.fft`` for NumPy, ``cupyx.scipy.fft`` for CuPy."""
    return _scipy_submodule(xp, "fft")


def ndimage(xp: ModuleType) -> ModuleType:
    """Return ``scipy.ndimage`` for NumPy, ``cupyx.scipy.ndimage`` for CuPy."""
    return _scipy_submodule(xp, "ndimage")


def sparse(xp: ModuleType) -> ModuleType:
    """Return ``scipy.sparse`` for NumPy, ``cupyx.scipy.sparse`` for CuPy."""
    return _scipy_submodule(xp, "sparse")


def special(xp: ModuleType) -> ModuleType:
    """Return ``scipy.special`` for NumPy, ``cupyx.scipy.special`` for CuPy."""
    return _scipy_submodule(xp, "special")


def signal(xp: ModuleType) -> ModuleType:
    """Return ``scipy.signal`` for NumPy, ``cupyx.scipy.signal`` for CuPy."""
    return _scipy_submodule(xp, "signal")


def to_numpy(arr: Any) -> np.ndarray:
    """Return a NumPy array with the values of ``arr`` (copying from the GPU if needed).

    Dask arrays are computed. NumPy input is returned as is (not copied).
    """
    if is_dask(arr):
        arr = arr.compute()
    if is_cupy(arr):
        return arr.get()
    return np.asarray(arr)


def resolve_device(device: str | None = "auto") -> Literal["cpu", "gpu"]:
    """Turn a device request into ``"cpu"`` or ``"gpu"``.

    Parameters
    ----------
    device : {"auto", "cpu", "gpu"} or None
        ``"auto"`` (or None) picks the GPU when one is usable, unless the environment variable
        ``STACKLAB_DEVICE`` says otherwise.

    Raises
    ------
    ValueError
        For an unknown device name (argument or ``STACKLAB_DEVICE``).
    BackendError
        If ``"gpu"`` is requested and no usable CUDA device is present (no silent CPU fallback).
    """
    if device is None or device == "auto":
        env = os.environ.get("STACKLAB_DEVICE", "auto").strip().lower() or "auto"
        if env not in _DEVICES:
            raise ValueError(f"STACKLAB_DEVICE must be one of {_DEVICES}, got {env!r}")
        if env != "auto":
            return resolve_device(env)
        return "gpu" if gpu_available() else "cpu"
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {_DEVICES}, got {device!r}")
    if device == "gpu" and not gpu_available():
        raise BackendError(
            "device='gpu' was requested but no CUDA device is usable "
            "(install stacklab[gpu] and check cupy.cuda.is_available())"
        )
    return device  # type: ignore[return-value]


def xp_for_device(device: str | None = "auto") -> ModuleType:
    """Return the array module for a device request (see :func:`resolve_device`)."""
    return _cupy() if resolve_device(device) == "gpu" else np  # type: ignore[return-value]


def asarray_on(arr: Any, device: str | None = "auto", dtype: Any = None) -> Any:
    """Return ``arr`` as an array on the requested device (no copy when already there).

    Parameters
    ----------
    arr : array-like
        NumPy, CuPy or anything ``numpy.asarray`` accepts.
    device : {"auto", "cpu", "gpu"}
        ``"auto"`` keeps CuPy input on the GPU and NumPy input on the CPU.
    dtype : dtype, optional
        Convert to this dtype.
    """
    if device in (None, "auto") and (is_cupy(arr) or isinstance(arr, np.ndarray)):
        if "STACKLAB_DEVICE" not in os.environ or os.environ["STACKLAB_DEVICE"] == "auto":
            xp = get_xp(arr)
            return xp.asarray(arr, dtype=dtype)
    target = resolve_device(device)
    if target == "cpu":
        return np.asarray(to_numpy(arr), dtype=dtype)
    cp = _cupy()
    return cp.asarray(arr, dtype=dtype)


def numba_available() -> bool:
    """Return True when numba imports (the ``[fast]`` extra is installed)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def load_kernels(module: str) -> ModuleType | None:
    """Import a module of numba kernels, or return None when numba is not installed.

    Parameters
    ----------
    module : str
        Dotted name of the kernel module, e.g. ``"stacklab.beads._numba_kernels"``.

    Returns
    -------
    module or None
        The imported module (cached by Python after the first call); None without numba. With
        numba installed, an error inside the kernel module is raised, not hidden.
    """
    if not numba_available():
        return None
    return importlib.import_module(module)


def use_numba(
    xp: ModuleType, backend: str = "auto", *, name: str = "backend", xp_name: str = "xp"
) -> bool:
    """Decide between a numba kernel (``True``) and its vectorized ``xp`` twin (``False``).

    Parameters
    ----------
    xp : module
        Array module of the data (:func:`get_xp`); numba runs on NumPy arrays only.
    backend : str
        ``"auto"`` uses numba for NumPy data when it is installed, ``"numba"`` requires it,
        ``xp_name`` (``"xp"`` by default) always uses the vectorized code.
    name : str
        Name of the caller's argument, used in error messages.
    xp_name : str
        The caller's name for the vectorized choice (e.g. ``"vectorized"``).

    Returns
    -------
    bool
        True when the numba kernel should run.

    Raises
    ------
    ValueError
        For a choice other than ``"auto"``, ``"numba"`` or ``xp_name``.
    BackendError
        If ``"numba"`` is asked for with device (CuPy) arrays.
    ImportError
        If ``"numba"`` is asked for and numba is not installed.
    """
    if backend not in ("auto", "numba", xp_name):
        raise ValueError(f"{name} must be 'auto', 'numba' or {xp_name!r}, got {backend!r}")
    if backend == xp_name:
        return False
    if xp is not np:
        if backend == "numba":
            raise BackendError(
                f"{name}='numba' needs NumPy (CPU) arrays; got device arrays "
                f"(use {name}={xp_name!r} or 'auto' on the GPU)"
            )
        return False
    available = numba_available()
    if backend == "numba" and not available:
        raise ImportError(f"{name}='numba' needs numba: pip install 'stacklab[fast]'")
    return available


def call_numba(kernel: Callable[..., Any], *args: Any) -> Any:
    """Call a parallel numba kernel; calls from threads other than the main one are serialised.

    numba's default ``workqueue`` threading layer must not be entered by two threads at once
    (Dask's threaded scheduler would do that); the kernels are parallel themselves, so one call
    at a time loses nothing. Calls from the main thread run directly.

    Parameters
    ----------
    kernel : callable
        The compiled kernel.
    *args
        Its arguments.

    Returns
    -------
    object
        What the kernel returns.
    """
    if threading.current_thread() is threading.main_thread():
        return kernel(*args)
    with _NUMBA_LOCK:
        return kernel(*args)
