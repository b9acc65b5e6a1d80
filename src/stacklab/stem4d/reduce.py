"""Reductions over the scan: mean / max / sum diffraction patterns and virtual images.

Each runs through :mod:`stacklab.engine` block by block, so NumPy, CuPy, Dask (including a
``dask.distributed`` cluster) and file-backed cubes all work with bounded memory.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from .. import engine
from ..backend import get_xp, is_dask
from ..errors import ShapeError
from .datacube import as_array, check_cube

__all__ = ["max_pattern", "mean_pattern", "sum_pattern", "virtual_image"]

logger = logging.getLogger(__name__)


def _sum_kernel(block: Any) -> Any:
    xp = get_xp(block)
    if block.dtype.kind in "ub" and block.dtype.itemsize <= 2 and block.shape[0] <= 65536:
        # exact and faster: 32-bit integer accumulation cannot overflow here
        return xp.sum(block, axis=0, dtype=xp.uint32).astype(xp.float64)
    return xp.sum(block, axis=0, dtype=xp.float64)


def _max_kernel(block: Any) -> Any:
    xp = get_xp(block)
    return xp.max(block, axis=0)


def _min_kernel(block: Any) -> Any:
    xp = get_xp(block)
    return xp.min(block, axis=0)


def _maximum(a: Any, b: Any) -> Any:
    return get_xp(a, b).maximum(a, b)


def _minimum(a: Any, b: Any) -> Any:
    return get_xp(a, b).minimum(a, b)


def sum_pattern(cube: Any, *, chunk: int = 256, progress: bool | None = None) -> Any:
    """Sum of all diffraction patterns.

    Parameters
    ----------
    cube : array-like of shape (scan_row, scan_col, det_row, det_col) or DataCube
        Any stack of frames ``(..., det_row, det_col)``; NumPy, CuPy, Dask or file-backed.
    chunk : int
        Frames per block.
    progress : bool or None
        Progress bar (None: only when interactive).

    Returns
    -------
    ndarray of float64, shape (det_row, det_col)
        On the input's device (NumPy for Dask and file input).
    """
    data = as_array(cube)
    check_cube(data)
    return engine.reduce_frames(_sum_kernel, data, chunk=chunk, progress=progress)


def mean_pattern(cube: Any, *, chunk: int = 256, progress: bool | None = None) -> Any:
    """Mean diffraction pattern over all scan positions.

    Parameters
    ----------
    cube : array-like of shape (scan_row, scan_col, det_row, det_col) or DataCube
        Any stack of frames ``(..., det_row, det_col)``.
    chunk, progress
        As in :func:`sum_pattern`.

    Returns
    -------
    ndarray of float64, shape (det_row, det_col)
    """
    data = as_array(cube)
    shape = check_cube(data)
    return sum_pattern(data, chunk=chunk, progress=progress) / math.prod(shape[:-2])


def max_pattern(cube: Any, *, chunk: int = 256, progress: bool | None = None) -> Any:
    """Pixel-wise maximum over all scan positions, shape (det_row, det_col), input dtype."""
    data = as_array(cube)
    check_cube(data)
    return engine.reduce_frames(_max_kernel, data, merge=_maximum, chunk=chunk, progress=progress)


def min_pattern(cube: Any, *, chunk: int = 256, progress: bool | None = None) -> Any:
    """Pixel-wise minimum over all scan positions, shape (det_row, det_col), input dtype."""
    data = as_array(cube)
    check_cube(data)
    return engine.reduce_frames(_min_kernel, data, merge=_minimum, chunk=chunk, progress=progress)


def _virtual_kernel(block: Any, *, weights: Any) -> Any:
    xp = get_xp(block)
    w = xp.asarray(weights)
    return xp.tensordot(block.astype(xp.float64), w, axes=([1, 2], [0, 1]))


def virtual_image(cube: Any, mask: Any, *, chunk: int = 256, progress: bool | None = None) -> Any:
    """Virtual detector image: the weighted sum of each pattern over a detector mask.

    Parameters
    ----------
    cube : array-like of shape (scan_row, scan_col, det_row, det_col) or DataCube
        The scan.
    mask : array of shape (det_row, det_col)
        Boolean or real weights of the virtual detector.
    chunk, progress
        As in :func:`sum_pattern`.

    Returns
    -------
    ndarray of float64, shape (scan_row, scan_col)
        Computed (NumPy/CuPy); Dask input is computed too.
    """
    data = as_array(cube)
    shape = check_cube(data)
    xp = get_xp(data) if not is_dask(data) else np
    w = xp.asarray(mask)
    if w.shape != shape[-2:]:
        raise ShapeError(f"mask must have shape {shape[-2:]} like the patterns, got {w.shape}")
    w = w.astype(xp.float64)
    out = engine.map_frames(
        _virtual_kernel, data, chunk=chunk, frame_ndim=2, progress=progress, weights=w
    )
    if is_dask(out):
        out = out.compute()
    return out
