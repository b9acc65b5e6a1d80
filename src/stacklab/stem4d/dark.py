"""Dark references: from dark frames, or from the detector edges of the scan (streaks).

Dark references are always floating point (never floor-divided like py4DSTEM's strip means, which
are biased low by half a count) and are subtracted in floating point, so unsigned data never wrap.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np

from .. import backend, engine
from ..backend import get_xp, is_cupy
from ..errors import ShapeError
from ._output import map_cube
from .counting import sample_frames
from .datacube import as_array, check_cube
from .reduce import mean_pattern

__all__ = ["dark_reference", "edge_dark_reference", "streak_background", "subtract_dark"]

logger = logging.getLogger(__name__)


def dark_reference(
    dark_frames: Any,
    *,
    method: Literal["mean", "median"] = "mean",
    chunk: int = 256,
    progress: bool | None = None,
) -> Any:
    """Dark reference from frames recorded without beam.

    Parameters
    ----------
    dark_frames : array-like of shape (..., det_row, det_col) or DataCube
        Dark frames of any numeric dtype (NumPy, CuPy, Dask or file-backed).
    method : {"mean", "median"}
        Pixel-wise mean (block by block) or median (reads all frames into memory; robust to
        cosmic rays).
    chunk, progress
        Block size and progress bar for the mean.

    Returns
    -------
    ndarray of float64, shape (det_row, det_col)
        On the input's device.
    """
    data = as_array(dark_frames, "dark_frames")
    shape = check_cube(data, "dark_frames")
    if method == "mean":
        return mean_pattern(data, chunk=chunk, progress=progress)
    if method != "median":
        raise ValueError(f"method must be 'mean' or 'median', got {method!r}")
    if backend.is_dask(data):
        arr = np.asarray(data.compute())
    elif isinstance(data, np.ndarray) or is_cupy(data):
        arr = data
    else:
        arr = np.asarray(data)
    xp = get_xp(arr)
    return xp.median(arr.reshape(-1, *shape[-2:]).astype(xp.float64), axis=0)


def _strip(block: Any, *, axis: int, width: int, side: str) -> Any:
    xp = get_xp(block)
    sl = slice(0, width) if side == "start" else slice(-width, None)
    part = block[:, sl, :] if axis == 0 else block[:, :, sl]
    return xp.sum(part, axis=0, dtype=xp.float64)


def streak_background(
    cube: Any,
    width: int,
    *,
    axis: Literal[0, 1] = 0,
    side: Literal["start", "end"] = "end",
    n_frames: int | None = None,
    seed: int = 0,
    frames: Any = None,
    chunk: int = 256,
    progress: bool | None = None,
) -> Any:
    """Background streaks estimated from a strip along one detector edge.

    The mean of the first or last ``width`` detector rows (``axis=0``; py4DSTEM's direction 'x')
    or columns (``axis=1``; direction 'y') over the chosen frames gives a profile along the
    other axis, broadcast over the strip axis.

    Parameters
    ----------
    cube : array-like of shape (scan_row, scan_col, det_row, det_col) or DataCube
        The scan (the strip should see no beam).
    width : int
        Strip width in pixels (1 .. size of ``axis``).
    axis : {0, 1}
        Detector axis across which the strip is taken.
    side : {"start", "end"}
        Which edge.
    n_frames : int, optional
        Use a random subset of this many frames (seeded); None uses every frame.
    seed : int
        Seed of the subset (see :func:`~stacklab.stem4d.sample_frames`).
    frames : array of int, optional
        Explicit flat indices of the frames to use.
    chunk, progress
        Block size and progress bar when every frame is used.

    Returns
    -------
    ndarray of float64, shape (det_row, det_col)
    """
    data = as_array(cube)
    shape = check_cube(data)
    det = shape[-2:]
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 (rows) or 1 (columns), got {axis!r}")
    if side not in ("start", "end"):
        raise ValueError(f"side must be 'start' or 'end', got {side!r}")
    if (
        isinstance(width, bool)
        or not isinstance(width, int | np.integer)
        or not 1 <= width <= det[axis]
    ):
        raise ValueError(f"width must be an integer in [1, {det[axis]}], got {width!r}")
    if n_frames is None and frames is None:
        total = engine.reduce_frames(
            _strip, data, chunk=chunk, progress=progress, axis=axis, width=int(width), side=side
        )
        count = math.prod(shape[:-2])
    else:
        sample = sample_frames(data, n_frames or 1, seed=seed, frames=frames)
        total = _strip(sample, axis=axis, width=int(width), side=side)
        count = sample.shape[0]
    xp = get_xp(total)
    profile = xp.sum(total, axis=axis) / (count * width)
    return xp.broadcast_to(profile[None, :] if axis == 0 else profile[:, None], det).copy()


def edge_dark_reference(
    cube: Any,
    *,
    width_rows: int = 0,
    width_cols: int = 0,
    side_rows: Literal["start", "end"] = "end",
    side_cols: Literal["start", "end"] = "end",
    n_frames: int | None = None,
    seed: int = 0,
    frames: Any = None,
    chunk: int = 256,
    progress: bool | None = None,
) -> Any:
    """Dark reference from streaks along both detector edges.

    ``d_rows = streak_background(axis=0, width_rows)`` (a function of the column) and ``d_cols =
    streak_background(axis=1, width_cols)`` (a function of the row) are combined as
    ``d_rows + d_cols - (mean(d_rows) w_rows + mean(d_cols) w_cols) / (w_rows + w_cols)`` so the
    mean level is counted once (py4DSTEM's ``get_darkreference`` combination). A zero width
    disables that direction.

    Returns
    -------
    ndarray of float64, shape (det_row, det_col)
    """
    if not width_rows and not width_cols:
        raise ValueError("give width_rows or width_cols (a positive strip width)")
    kw = {
        "n_frames": n_frames,
        "seed": seed,
        "frames": frames,
        "chunk": chunk,
        "progress": progress,
    }
    parts = []
    if width_rows:
        parts.append(
            (streak_background(cube, width_rows, axis=0, side=side_rows, **kw), width_rows)
        )
    if width_cols:
        parts.append(
            (streak_background(cube, width_cols, axis=1, side=side_cols, **kw), width_cols)
        )
    if len(parts) == 1:
        return parts[0][0]
    (dr, wr), (dc, wc) = parts
    xp = get_xp(dr)
    return dr + dc - (float(xp.mean(dr)) * wr + float(xp.mean(dc)) * wc) / (wr + wc)


def _subtract_kernel(block: Any, *, dark: Any, dtype: Any, clip: bool) -> Any:
    xp = get_xp(block)
    out = block.astype(dtype) - xp.asarray(dark, dtype=dtype)
    if clip:
        out = xp.maximum(out, 0)
    return out


def subtract_dark(
    cube: Any,
    dark: Any,
    *,
    dtype: Any = np.float32,
    clip_negative: bool = False,
    chunk: int = 256,
    out: Any = None,
    progress: bool | None = None,
) -> Any:
    """Subtract a dark reference from every pattern, in floating point.

    Parameters
    ----------
    cube : array-like of shape (..., det_row, det_col) or DataCube
        Raw frames (any numeric dtype).
    dark : array of shape (det_row, det_col)
        Dark reference (float or integer).
    dtype : float dtype
        Output dtype (float32 by default); integer outputs are refused (they would wrap).
    clip_negative : bool
        Set negative results to 0.
    chunk, out, progress
        Frames per block, output target, progress bar.

    Returns
    -------
    array of the cube's shape and ``dtype``
    """
    data = as_array(cube)
    shape = check_cube(data)
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"dtype must be a float dtype (integers would wrap), got {dt}")
    xp = get_xp(data) if is_cupy(data) else np
    d = xp.asarray(dark) if xp is not np else np.asarray(backend.to_numpy(dark))
    if d.dtype.kind not in "biuf":
        raise TypeError(f"dark must be a real numeric array, got dtype {d.dtype}")
    if tuple(d.shape) != shape[-2:]:
        raise ShapeError(f"dark must have the detector shape {shape[-2:]}, got {tuple(d.shape)}")
    return map_cube(
        _subtract_kernel,
        data,
        out=out,
        chunk=chunk,
        progress=progress,
        dark=d.astype(dt),
        dtype=dt,
        clip=bool(clip_negative),
    )
