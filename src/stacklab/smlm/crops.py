"""Square crops around detected spots, with windows shifted inside the frame at the edges.

A crop of odd size ``s`` is centred on the detected pixel when it fits in the frame; a spot closer
than ``s // 2`` pixels to an edge gets a window shifted to lie inside the frame (so the spot is
off-centre in its crop) and is flagged ``shifted``. Fitting such crops is valid (the model does
not assume a centred spot); the flag lets users discard edge spots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backend
from ..errors import ShapeError

__all__ = ["Crops", "crop_windows", "extract_crops"]


@dataclass(frozen=True)
class Crops:
    """Crops of ``n`` spots (arrays on the frames' device).

    Attributes
    ----------
    data : ndarray of shape (n, size, size)
        Pixel values (dtype of the frames).
    top, left : ndarray of shape (n,), int64
        Frame row and column of each crop's pixel ``(0, 0)``.
    shifted : ndarray of shape (n,), bool
        The window was moved to stay inside the frame (spot near an edge).
    """

    data: Any
    top: Any
    left: Any
    shifted: Any

    def __len__(self) -> int:
        return int(self.data.shape[0])


def crop_windows(
    row: Any, col: Any, size: int, frame_shape: tuple[int, int]
) -> tuple[Any, Any, Any]:
    """Top-left corners of ``size x size`` windows centred on ``(row, col)``, kept in the frame.

    Parameters
    ----------
    row, col : ndarray of shape (n,), int
        Centre pixels.
    size : int
        Odd window size in pixels.
    frame_shape : (int, int)
        ``(rows, cols)`` of the frame.

    Returns
    -------
    top, left : ndarray of shape (n,), int64
    shifted : ndarray of shape (n,), bool
    """
    xp = backend.get_xp(row, col)
    if not isinstance(size, int | np.integer) or size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= 3, got {size!r}")
    rows, cols = (int(s) for s in frame_shape)
    if rows < size or cols < size:
        raise ShapeError(f"frames of shape {(rows, cols)} are smaller than the crop size {size}")
    size = int(size)
    half = size // 2
    r = xp.asarray(row, dtype=xp.int64)
    c = xp.asarray(col, dtype=xp.int64)
    top = xp.clip(r - half, 0, rows - size)
    left = xp.clip(c - half, 0, cols - size)
    shifted = (top != r - half) | (left != c - half)
    return top, left, shifted


def extract_crops(frames: Any, frame: Any, row: Any, col: Any, *, size: int = 7) -> Crops:
    """Cut ``size x size`` crops around spots.

    Parameters
    ----------
    frames : ndarray of shape (n_frames, rows, cols) or (rows, cols)
        Images (a 2-D map, e.g. a variance map, is shared by every spot and ``frame`` is
        ignored). Not modified.
    frame, row, col : ndarray of shape (n,), int
        Frame index (within ``frames``) and centre pixel of each spot.
    size : int
        Odd crop size in pixels (7 or 9 are usual for sigma ~ 1.3 px).

    Returns
    -------
    Crops
        Data of shape (n, size, size), window corners and the edge flag.
    """
    xp = backend.get_xp(frames)
    a = xp.asarray(frames)
    if a.ndim not in (2, 3):
        raise ShapeError(f"frames must have shape (n, rows, cols) or (rows, cols), got {a.shape}")
    top, left, shifted = crop_windows(row, col, size, a.shape[-2:])
    ar = xp.arange(size, dtype=xp.int64)
    ri = top[:, None, None] + ar[None, :, None]
    ci = left[:, None, None] + ar[None, None, :]
    if a.ndim == 2:
        data = a[ri, ci]
    else:
        f = xp.asarray(frame, dtype=xp.int64)
        if f.shape != top.shape:
            raise ShapeError(f"frame must have shape {top.shape}, got {f.shape}")
        if f.size and (int(f.min()) < 0 or int(f.max()) >= a.shape[0]):
            raise ValueError(f"frame indices must be in [0, {a.shape[0]}), got out-of-range values")
        data = a[f[:, None, None], ri, ci]
    return Crops(data, top, left, shifted)
