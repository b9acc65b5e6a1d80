"""Small helpers shared by the py4DSTEM compat modules: argument checks, random frame draws,
py4DSTEM's Fourier-shift corner convention."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...backend import get_xp, is_dask

__all__ = ["RandomSource", "check_int", "complex_shift_corner", "draw_frames"]

logger = logging.getLogger(__name__)

#: What ``rng=`` accepts: None (NumPy's global legacy generator, as py4DSTEM), an int seed, a
#: ``numpy.random.Generator`` or a ``numpy.random.RandomState``.
RandomSource = None | int | np.integer | np.random.Generator | np.random.RandomState


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``; TypeError/ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def draw_frames(n_frames: int, n: int, rng: RandomSource = None) -> np.ndarray:
    """Flat indices of ``min(n, n_frames)`` distinct frames drawn at random.

    The draw is the first ``n`` entries of a random permutation of ``range(n_frames)``.

    Parameters
    ----------
    n_frames : int
        Number of frames to draw from.
    n : int
        Number of frames wanted (>= 1).
    rng : None, int, numpy.random.Generator or numpy.random.RandomState
        None (default) uses NumPy's global legacy generator exactly as py4DSTEM 0.14.18 does
        (``np.random.shuffle(np.arange(n_frames))``), so ``np.random.seed(s)`` before a call
        reproduces py4DSTEM's frames. An int seeds ``numpy.random.default_rng``.

    Returns
    -------
    ndarray of int64, shape (min(n, n_frames),)
    """
    n = check_int(n, "N_frames / Nsamples")
    if rng is None:
        perm = np.random.permutation(n_frames)  # noqa: NPY002 - py4DSTEM's global legacy draw
    elif isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        perm = np.random.default_rng(int(rng)).permutation(n_frames)
    elif isinstance(rng, np.random.Generator | np.random.RandomState):
        perm = rng.permutation(n_frames)
    else:
        raise TypeError(
            "rng must be None, an int seed, a numpy.random.Generator or RandomState, "
            f"got {type(rng).__name__}"
        )
    return np.asarray(perm[:n], dtype=np.int64)


def complex_shift_corner(shifted: Any, frames: Any, shifts: Any) -> Any:
    """Turn stacklab's Fourier shift into py4DSTEM's (the real part of the complex shift).

    :func:`stacklab.core.shifts.fourier_shift` gives the (Nyquist, Nyquist) corner term of a
    frame with both axes even the factor ``cos(pi dy) cos(pi dx)``; py4DSTEM's
    ``get_shifted_ar`` (the real part of ``ifft2(fft2(f) * exp(-2 pi i (ky dy + kx dx)))``
    with ``fftfreq`` frequencies) gives it ``cos(pi (dy + dx))``. The difference is
    ``sin(pi dy) sin(pi dx) C / (H W)`` times the checkerboard ``(-1)^(i + j)``, with
    ``C = sum f (-1)^(i + j)``; it is subtracted here.

    Parameters
    ----------
    shifted : array of shape (..., H, W)
        stacklab's periodic Fourier shift of ``frames`` (NumPy, CuPy or Dask; float).
    frames : array of shape (..., H, W)
        The frames before the shift.
    shifts : ndarray of shape (2,) or (..., 2)
        ``(dy, dx)`` in pixels (rows, columns), one pair or one per frame.

    Returns
    -------
    array of shape (..., H, W)
        ``shifted`` itself when an axis is odd (no corner term), else a corrected copy.
    """
    h, w = shifted.shape[-2:]
    if h % 2 or w % 2:
        return shifted
    f64 = np.float64
    corner = (
        frames[..., 0::2, 0::2].sum(axis=(-2, -1), dtype=f64)
        + frames[..., 1::2, 1::2].sum(axis=(-2, -1), dtype=f64)
        - frames[..., 0::2, 1::2].sum(axis=(-2, -1), dtype=f64)
        - frames[..., 1::2, 0::2].sum(axis=(-2, -1), dtype=f64)
    )
    s = np.asarray(shifts, dtype=f64)
    weight = np.sin(np.pi * s[..., 0]) * np.sin(np.pi * s[..., 1]) / (h * w)
    xp = np if is_dask(shifted) else get_xp(shifted)
    checker = xp.asarray((-1.0) ** np.add.outer(np.arange(h), np.arange(w)), dtype=shifted.dtype)
    amp = (corner * xp.asarray(weight)).astype(shifted.dtype)
    return shifted - amp[..., None, None] * checker
