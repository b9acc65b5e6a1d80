"""Small helpers shared by the py4DSTEM compat modules: argument checks, random frame draws."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["RandomSource", "check_int", "draw_frames"]

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
