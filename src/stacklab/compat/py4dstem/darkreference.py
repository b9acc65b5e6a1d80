"""py4DSTEM ``preprocess.darkreference``: dark references from detector-edge streaks.

Built on :func:`stacklab.stem4d.dark.streak_background`. Differences from py4DSTEM 0.14.18:
the strip mean is the plain mean (py4DSTEM floor-divides, ``sum // width // N_frames``, which
makes every value an integer biased low by about half a count), and the random frames can be
chosen with ``rng=``. With ``rng=None`` the frames are drawn from NumPy's global legacy generator
exactly as py4DSTEM draws them (one permutation per direction), so ``np.random.seed(s)`` before
the call selects the same frames.

Directions: ``'x'`` streaks average ``width`` detector rows (Qx, axis 2) at one edge and give a
function of qy, constant along Qx; ``'y'`` streaks average columns and give a function of qx.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...backend import get_xp
from ...errors import ShapeError
from ...stem4d.dark import streak_background
from ._common import RandomSource, check_int, draw_frames
from ._datacube import as_datacube

__all__ = [
    "get_background_streaks",
    "get_background_streaks_x",
    "get_background_streaks_y",
    "get_bksbtr_DP",
    "get_darkreference",
]

logger = logging.getLogger(__name__)

_AXIS = {"x": 0, "y": 1}


def get_bksbtr_DP(datacube: Any, darkref: Any, Rx: int, Ry: int) -> Any:
    """The diffraction pattern at scan position ``(Rx, Ry)`` minus the dark reference.

    Parameters
    ----------
    datacube : DataCube or ndarray of shape (Rx, Ry, Qx, Qy)
        The cube.
    darkref : ndarray of shape (Q_Nx, Q_Ny)
        Dark reference.
    Rx, Ry : int
        Scan position (axis 0, axis 1).

    Returns
    -------
    ndarray of float64, shape (Q_Nx, Q_Ny)
        ``float64(frame) - float64(darkref)`` (no integer wrap-around), on the cube's device.
    """
    cube = as_datacube(datacube)
    frame = cube.frame(Rx, Ry)
    xp = get_xp(frame)
    dark = xp.asarray(darkref)
    if tuple(dark.shape) != cube.det_shape:
        raise ShapeError(
            f"darkref must have shape (Q_Nx, Q_Ny) = {cube.det_shape}, got {tuple(dark.shape)}"
        )
    return frame.astype(xp.float64) - dark.astype(xp.float64)


def _streaks(
    cube: Any, N_frames: int, width: int, side: str, direction: str, rng: RandomSource
) -> Any:
    if direction not in _AXIS:
        raise ValueError(f"direction must be 'x' or 'y', got {direction!r}")
    if side not in ("start", "end"):
        raise ValueError(f"side must be 'start' or 'end', got {side!r}")
    n_total = cube.R_N
    frames = draw_frames(n_total, check_int(N_frames, "N_frames"), rng)
    logger.debug("streaks %s: frames %s", direction, frames.tolist())
    return streak_background(
        cube.data,
        check_int(width, "width"),
        axis=_AXIS[direction],  # type: ignore[arg-type]
        side=side,  # type: ignore[arg-type]
        frames=None if len(frames) == n_total else np.sort(frames),
        progress=False,
    )


def get_background_streaks(
    datacube: Any,
    N_frames: int,
    width: int,
    side: str = "end",
    direction: str = "x",
    *,
    rng: RandomSource = None,
) -> Any:
    """Background streaks from a strip of ``width`` pixels along one detector edge.

    Parameters
    ----------
    datacube : DataCube or ndarray of shape (Rx, Ry, Qx, Qy)
        The cube (the strip should see no beam).
    N_frames : int
        Number of random frames averaged (all frames when the scan has fewer).
    width : int
        Strip width in pixels.
    side : {"start", "end"}
        Strip at the start or the end of the detector axis.
    direction : {"x", "y"}
        ``"x"``: rows along Qx are averaged, the result varies along Qy; ``"y"``: the converse.
    rng : None, int, Generator or RandomState, keyword-only
        Frame selection (None: NumPy's global legacy generator, as py4DSTEM).

    Returns
    -------
    ndarray of float64, shape (Q_Nx, Q_Ny)
        The streak background (the plain mean, not floor-divided).
    """
    cube = as_datacube(datacube)
    return _streaks(cube, N_frames, width, side, direction, rng)


def get_background_streaks_x(
    datacube: Any, width: int, N_frames: int, side: str = "start", *, rng: RandomSource = None
) -> Any:
    """:func:`get_background_streaks` with ``direction='x'`` (note the argument order)."""
    return get_background_streaks(datacube, N_frames, width, side=side, direction="x", rng=rng)


def get_background_streaks_y(
    datacube: Any, N_frames: int, width: int, side: str = "start", *, rng: RandomSource = None
) -> Any:
    """:func:`get_background_streaks` with ``direction='y'``."""
    return get_background_streaks(datacube, N_frames, width, side=side, direction="y", rng=rng)


def get_darkreference(
    datacube: Any,
    N_frames: int,
    width_x: int = 0,
    width_y: int = 0,
    side_x: str = "end",
    side_y: str = "end",
    *,
    rng: RandomSource = None,
) -> Any:
    """Dark reference from streaks along the detector edges.

    With both widths set, ``dx + dy - (mean(dx) * width_x + mean(dy) * width_y) /
    (width_x + width_y)`` (so the mean level is counted once), where ``dx``/``dy`` are the
    ``'x'``/``'y'`` streak backgrounds of :func:`get_background_streaks`, each from its own
    random draw of ``N_frames`` frames (x first). A width of 0 disables that direction.

    Parameters
    ----------
    datacube : DataCube or ndarray of shape (Rx, Ry, Qx, Qy)
        The cube.
    N_frames : int
        Number of random frames per direction.
    width_x, width_y : int
        Strip widths in pixels (>= 0, not both 0).
    side_x, side_y : {"start", "end"}
        Edges used.
    rng : keyword-only
        Frame selection (see :func:`get_background_streaks`).

    Returns
    -------
    ndarray of float64, shape (Q_Nx, Q_Ny)
    """
    cube = as_datacube(datacube)
    wx = check_int(width_x, "width_x", minimum=0)
    wy = check_int(width_y, "width_y", minimum=0)
    if wx == 0 and wy == 0:
        raise ValueError("width_x and width_y are both 0: set at least one strip width")
    dx = _streaks(cube, N_frames, wx, side_x, "x", rng) if wx else None
    dy = _streaks(cube, N_frames, wy, side_y, "y", rng) if wy else None
    if dy is None:
        return dx
    if dx is None:
        return dy
    xp = get_xp(dx)
    return dx + dy - (float(xp.mean(dx)) * wx + float(xp.mean(dy)) * wy) / (wx + wy)
