"""Exceptions raised by stacklab.

Every error subclasses a builtin (``ValueError``, ``TypeError``, ``OSError``) so callers that
already catch those keep working, and every message names the offending argument or file.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "FileFormatError",
    "ShapeError",
    "StacklabError",
    "check_finite",
    "check_ndim",
    "check_positive",
]


class StacklabError(Exception):
    """Base class of all stacklab errors."""


class ShapeError(StacklabError, ValueError):
    """An array argument has the wrong number of dimensions, shape or is empty."""


class BackendError(StacklabError, TypeError):
    """Arrays from different array libraries were mixed, or a requested device is unavailable."""


class FileFormatError(StacklabError, OSError):
    """A file is missing, truncated, or lacks the expected dataset/key."""


def check_ndim(arr, name: str, ndim: int | tuple[int, ...]) -> None:
    """Raise :class:`ShapeError` unless ``arr.ndim`` is ``ndim`` (or one of them) and non-empty.

    Parameters
    ----------
    arr : array-like with ``ndim``, ``shape`` and ``size``
        The argument to check.
    name : str
        The argument's name, quoted in the message.
    ndim : int or tuple of int
        Allowed numbers of dimensions.
    """
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    got = getattr(arr, "ndim", None)
    if got not in allowed:
        want = " or ".join(str(n) for n in allowed)
        raise ShapeError(f"{name} must be a {want}-D array, got {got}-D with shape {_shape(arr)}")
    if arr.size == 0:
        raise ShapeError(f"{name} is empty (shape {tuple(arr.shape)})")


def check_positive(value, name: str, *, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` unless every element of ``value`` is finite and > 0 (or >= 0)."""
    import numpy as np

    arr = np.asarray(value, dtype=float)
    bad = ~np.isfinite(arr) | ((arr < 0) if allow_zero else (arr <= 0))
    if np.any(bad):
        rel = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {rel}, got {value!r}")


def check_finite(value, name: str) -> None:
    """Raise ``ValueError`` if ``value`` holds NaN or infinity."""
    import numpy as np

    if not np.all(np.isfinite(np.asarray(value, dtype=float))):
        raise ValueError(f"{name} must be finite, got {value!r}")


def _shape(arr) -> tuple[int, ...] | None:
    shape = getattr(arr, "shape", None)
    return tuple(shape) if shape is not None else None
