"""Whole-movie tracking: full camera frames, several beads, one table out.

:func:`track_movie` crops a square region of interest (ROI) around every bead in every frame
and tracks all ROIs with :func:`stacklab.beads.track`, block by block through
:func:`stacklab.engine.collect_frames` (so a movie larger than memory, held as a Dask array or a
lazy HDF5/TIFF/Zarr stack, streams through). ROIs are given as centres or boxes, or found in the
first frame by :func:`find_beads`; with ``follow=True`` they are re-centred on their drifting
beads between blocks. The result is a pandas DataFrame with one row per frame and
bead: ``frame, bead, x, y, z, quality`` (``x`` column and ``y`` row in movie pixels, ``z`` in the
look-up table's unit), written to CSV or HDF5 by :func:`save_table`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import engine
from ..backend import get_xp, to_numpy
from ..errors import FileFormatError, ShapeError
from .track import track
from .zlut import ZLUT

__all__ = [
    "TABLE_COLUMNS",
    "find_beads",
    "load_rois",
    "rois_to_boxes",
    "save_table",
    "track_movie",
]

logger = logging.getLogger(__name__)

#: Columns of the table returned by :func:`track_movie`.
TABLE_COLUMNS: tuple[str, ...] = ("frame", "bead", "x", "y", "z", "quality")


def _check_roi_size(roi_size: Any) -> int:
    if isinstance(roi_size, bool) or not isinstance(roi_size, int | np.integer) or roi_size < 8:
        raise ValueError(f"roi_size must be an integer >= 8 px, got {roi_size!r}")
    return int(roi_size)


def rois_to_boxes(
    rois: Any,
    frame_shape: tuple[int, int],
    *,
    roi_size: int = 64,
    edge: Literal["raise", "drop"] = "raise",
) -> tuple[np.ndarray, np.ndarray]:
    """Turn ROI centres or boxes into integer boxes inside the frame.

    Parameters
    ----------
    rois : array of shape (k, 2) or (k, 4)
        Either bead centres ``(x, y)`` = (column, row) in px, each turned into the
        ``roi_size x roi_size`` box centred on it (top-left corner ``round(c - (roi_size - 1) /
        2)``), or boxes ``(top, bottom, left, right)`` in px, ends exclusive, which must all be
        square and of the same size.
    frame_shape : (rows, cols)
        Movie frame shape.
    roi_size : int
        Side of the square ROI for centres, px (default 64); ignored for boxes.
    edge : {"raise", "drop"}
        What to do with a box that extends beyond the frame: raise ``ValueError`` (default), or
        leave that bead out with a :class:`UserWarning`.

    Returns
    -------
    boxes : ndarray of int64, shape (k_kept, 4)
        ``(top, bottom, left, right)``.
    kept : ndarray of int64, shape (k_kept,)
        Indices of the kept rows of ``rois`` (the bead numbers of the table).

    Raises
    ------
    ShapeError
        If ``rois`` is not ``(k, 2)`` or ``(k, 4)`` or is empty.
    ValueError
        For non-square or unequal boxes, non-finite values, or (``edge="raise"``) a box outside
        the frame; also if no ROI is left.
    """
    arr = np.asarray(to_numpy(rois), dtype=np.float64)
    if arr.ndim == 1 and arr.size in (2, 4):
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] not in (2, 4):
        raise ShapeError(
            f"rois must have shape (k, 2) = (x, y) centres or (k, 4) = (top, bottom, left, "
            f"right) boxes, got {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ShapeError("rois is empty: give at least one bead")
    if not np.all(np.isfinite(arr)):
        raise ValueError("rois must be finite")
    if edge not in ("raise", "drop"):
        raise ValueError(f"edge must be 'raise' or 'drop', got {edge!r}")
    rows, cols = (int(s) for s in frame_shape)
    if arr.shape[1] == 2:
        size = _check_roi_size(roi_size)
        top = np.floor(arr[:, 1] - (size - 1) / 2.0 + 0.5).astype(np.int64)
        left = np.floor(arr[:, 0] - (size - 1) / 2.0 + 0.5).astype(np.int64)
        boxes = np.stack([top, top + size, left, left + size], axis=1)
    else:
        if not np.all(arr == np.round(arr)):
            raise ValueError("rois boxes (top, bottom, left, right) must be whole pixels")
        boxes = arr.astype(np.int64)
        heights = boxes[:, 1] - boxes[:, 0]
        widths = boxes[:, 3] - boxes[:, 2]
        bad = np.flatnonzero((heights != widths) | (heights < 8))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"rois[{i}] = {boxes[i].tolist()} is {heights[i]} x {widths[i]} px; ROIs must be "
                "square and at least 8 px (top, bottom, left, right with bottom - top == right "
                "- left)"
            )
        if np.unique(heights).size > 1:
            raise ValueError(
                f"rois boxes must all have the same size, got sides {sorted(set(heights.tolist()))}"
            )
    outside = (boxes[:, 0] < 0) | (boxes[:, 2] < 0) | (boxes[:, 1] > rows) | (boxes[:, 3] > cols)
    if np.any(outside):
        which = np.flatnonzero(outside)
        msg = (
            f"rois {which.tolist()} extend beyond the {rows} x {cols} frame (boxes "
            f"{boxes[which].tolist()} as top, bottom, left, right)"
        )
        if edge == "raise":
            raise ValueError(msg + "; move them inward or pass edge='drop' to leave them out")
        warnings.warn(msg + "; those beads are left out", UserWarning, stacklevel=2)
    kept = np.flatnonzero(~outside)
    if kept.size == 0:
        raise ValueError("no ROI lies inside the frame")
    return boxes[kept], kept


def find_beads(
    frame: Any,
    *,
    roi_size: int = 64,
    n_beads: int | None = None,
    min_distance: int | None = None,
    threshold: float = 5.0,
    min_relative: float = 0.05,
    refine: bool = True,
) -> np.ndarray:
    """Find beads in one frame: centres of bright-field ring patterns away from the edges.

    The absolute deviation from the frame median, smoothed with a Gaussian of ``roi_size / 8``
    px, is large over beads and small over the background. Its local maxima (each the largest
    value within ``min_distance`` px) are beads when they exceed ``threshold`` times the
    background level (the 10th percentile of the smoothed deviation, i.e. of the bead-free part
    of the frame) and ``min_relative`` times the strongest maximum; strongest first. Candidates
    whose ROI would extend beyond the frame are left out (logged). With ``refine`` every centre
    is re-measured with the tracker on its ROI.

    Parameters
    ----------
    frame : ndarray of shape (rows, cols)
        One movie frame (e.g. the first).
    roi_size : int
        ROI side, px (default 64).
    n_beads : int, optional
        Keep at most this many (the strongest).
    min_distance : int, optional
        Minimum distance between beads, px (default ``roi_size // 2``).
    threshold : float
        Detection threshold relative to the background level (default 5).
    min_relative : float
        Detection threshold relative to the strongest bead (default 0.05).
    refine : bool
        Re-measure each centre with :func:`stacklab.beads.track` on its ROI (default True).

    Returns
    -------
    ndarray of float64, shape (k, 2)
        ``(x, y)`` = (column, row) centres, px, strongest first; ``k`` may be 0.

    Raises
    ------
    ShapeError
        If ``frame`` is not 2-D or is smaller than ``roi_size``.
    ValueError
        If ``frame`` holds NaN or inf, or for bad options.
    """
    from scipy import ndimage

    size = _check_roi_size(roi_size)
    img = np.asarray(to_numpy(frame))
    if img.ndim != 2:
        raise ShapeError(f"frame must be 2-D (rows, cols), got shape {img.shape}")
    if min(img.shape) < size:
        raise ShapeError(f"frame {img.shape} is smaller than roi_size={size}")
    if img.dtype.kind not in "fiub":
        raise TypeError(f"frame must hold real numbers, got dtype {img.dtype}")
    img = img.astype(np.float64)
    if not np.all(np.isfinite(img)):
        raise ValueError("frame holds NaN or inf; pick a clean frame to find beads in")
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
    dist = size // 2 if min_distance is None else int(min_distance)
    if dist < 1:
        raise ValueError(f"min_distance must be >= 1, got {min_distance!r}")
    if not (math.isfinite(min_relative) and 0 <= min_relative < 1):
        raise ValueError(f"min_relative must be in [0, 1), got {min_relative!r}")
    dev = ndimage.gaussian_filter(np.abs(img - np.median(img)), size / 8.0)
    floor = max(threshold * np.percentile(dev, 10), min_relative * float(dev.max()))
    peaks = (dev == ndimage.maximum_filter(dev, size=2 * dist + 1)) & (dev > floor)
    r, c = np.nonzero(peaks)
    order = np.argsort(-dev[r, c], kind="stable")
    cand = np.stack([c[order], r[order]], axis=1).astype(np.float64)
    # Non-maximum suppression of plateaus / close peaks, strongest first.
    chosen: list[np.ndarray] = []
    for p in cand:
        if all(np.hypot(*(p - q)) >= dist for q in chosen):
            chosen.append(p)
    centres = np.array(chosen, dtype=np.float64).reshape(-1, 2)
    half = (size - 1) / 2.0
    inside = (
        (np.floor(centres[:, 0] - half + 0.5) >= 0)
        & (np.floor(centres[:, 1] - half + 0.5) >= 0)
        & (np.floor(centres[:, 0] - half + 0.5) + size <= img.shape[1])
        & (np.floor(centres[:, 1] - half + 0.5) + size <= img.shape[0])
    )
    if not np.all(inside):
        logger.info(
            "find_beads: %d candidates too close to the edge left out", int(np.sum(~inside))
        )
    centres = centres[inside]
    if n_beads is not None:
        centres = centres[: int(n_beads)]
    if refine and centres.shape[0]:
        # Two passes: the smoothed-deviation peak can be a few px off a defocused bead.
        for _ in range(2):
            boxes, kept = rois_to_boxes(centres, img.shape, roi_size=size, edge="drop")
            crops = _crop(img[None], boxes).reshape(-1, size, size)
            res = track(crops)
            x = boxes[:, 2] + np.asarray(to_numpy(res.x))
            y = boxes[:, 0] + np.asarray(to_numpy(res.y))
            good = np.isfinite(x) & np.isfinite(y)
            centres = centres[kept]
            centres = np.where(good[:, None], np.stack([x, y], axis=1), centres)
    return centres


def _crop(block: Any, boxes: np.ndarray) -> Any:
    """Crops of shape (n_frames, k, s, s) from frames (n, rows, cols), on the block's device."""
    xp = get_xp(block)
    return xp.stack([block[:, t:b, left:right] for t, b, left, right in boxes], axis=1)


def _track_block(
    block: Any,
    boxes: np.ndarray,
    zluts: Sequence[ZLUT | None],
    track_options: dict,
) -> dict[str, np.ndarray]:
    """Track the ROIs ``boxes`` in a block of frames: x, y, z, quality as float64 (n, k) arrays,
    x and y in movie coordinates."""
    n = block.shape[0]
    k = boxes.shape[0]
    size = int(boxes[0, 1] - boxes[0, 0])
    crops = _crop(block, boxes)  # (n, k, s, s)
    cols = {c: np.empty(n * k) for c in ("x", "y", "z", "quality")}
    if len({id(z) for z in zluts}) == 1:
        res = track(crops.reshape(n * k, size, size), zluts[0], progress=False, **track_options)
        for c in cols:
            cols[c] = np.asarray(to_numpy(getattr(res, c)), dtype=np.float64)
    else:
        for j in range(k):
            res = track(crops[:, j], zluts[j], progress=False, **track_options)
            for c in cols:
                cols[c].reshape(n, k)[:, j] = np.asarray(to_numpy(getattr(res, c)))
    out = {c: v.reshape(n, k) for c, v in cols.items()}
    out["x"] = out["x"] + boxes[None, :, 2]
    out["y"] = out["y"] + boxes[None, :, 0]
    return out


def _block_table(first: int, beads: np.ndarray, cols: dict[str, np.ndarray]) -> Any:
    """Rows (frame, bead, x, y, z, quality) of a block from (n, k) arrays."""
    import pandas as pd

    n, k = cols["x"].shape
    return pd.DataFrame(
        {
            "frame": np.repeat(np.arange(first, first + n, dtype=np.int64), k),
            "bead": np.tile(beads.astype(np.int64), n),
            "x": cols["x"].reshape(-1),
            "y": cols["y"].reshape(-1),
            "z": cols["z"].reshape(-1),
            "quality": cols["quality"].reshape(-1),
        }
    )


def _movie_block(
    block: Any,
    first: int,
    *,
    boxes: np.ndarray,
    beads: np.ndarray,
    zluts: Sequence[ZLUT | None],
    track_options: dict,
) -> Any:
    return _block_table(first, beads, _track_block(block, boxes, zluts, track_options))


def _recentre(
    boxes: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    frame_shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ROIs re-centred on the last finite position of each bead in a block.

    ``x``, ``y`` are (n, k) movie coordinates. Returns the new boxes (a bead without a finite
    position inside its ROI keeps its box; a box that would leave the frame is clipped inside),
    per bead how far (px, largest of the two axes) its position lies from the centre of the new
    box, and the positions used (x, y).
    """
    rows, cols = frame_shape
    size = int(boxes[0, 1] - boxes[0, 0])
    half = (size - 1) / 2.0
    valid = (
        np.isfinite(x)
        & np.isfinite(y)
        & (y >= boxes[None, :, 0] - 0.5)
        & (y <= boxes[None, :, 1] - 0.5)
        & (x >= boxes[None, :, 2] - 0.5)
        & (x <= boxes[None, :, 3] - 0.5)
    )
    has = valid.any(axis=0)
    last = x.shape[0] - 1 - np.argmax(valid[::-1], axis=0)  # last valid frame of each bead
    cols_k = np.arange(x.shape[1])
    cx = np.where(has, x[last, cols_k], boxes[:, 2] + half)
    cy = np.where(has, y[last, cols_k], boxes[:, 0] + half)
    top = np.floor(cy - half + 0.5).astype(np.int64)
    left = np.floor(cx - half + 0.5).astype(np.int64)
    top = np.where(has, np.clip(top, 0, rows - size), boxes[:, 0])
    left = np.where(has, np.clip(left, 0, cols - size), boxes[:, 2])
    new = np.stack([top, top + size, left, left + size], axis=1)
    offset = np.maximum(np.abs(cy - (top + half)), np.abs(cx - (left + half)))
    return new, np.where(has, offset, 0.0), cx, cy


def _track_following(
    movie: Any,
    boxes: np.ndarray,
    beads: np.ndarray,
    zluts: Sequence[ZLUT | None],
    frame_shape: tuple[int, int],
    chunk: int,
    progress: bool | None,
    track_options: dict,
) -> Any:
    """track_movie(follow=True): blocks in order, ROIs re-centred between blocks."""
    import pandas as pd

    size = int(boxes[0, 1] - boxes[0, 0])
    limit = size / 8.0
    boxes = boxes.copy()
    k = boxes.shape[0]
    lost = np.zeros(k, dtype=bool)
    parts = []
    for first, block in engine.iter_blocks(
        movie, chunk=chunk, progress=progress, desc="track_movie"
    ):
        n = block.shape[0]
        cols = {c: np.full((n, k), np.nan) for c in ("x", "y", "z", "quality")}
        live = np.flatnonzero(~lost)
        if live.size:
            got = _track_block(block, boxes[live], [zluts[i] for i in live], track_options)
            for c in cols:
                cols[c][:, live] = got[c]
            new, offset, cx, cy = _recentre(boxes[live], got["x"], got["y"], frame_shape)
            gone = offset > limit
            for j in np.flatnonzero(gone):
                logger.warning(
                    "track_movie: bead %d at (x, y) = (%.1f, %.1f) px is leaving the %d x %d "
                    "frame (its ROI cannot follow it); its rows are NaN from frame %d on",
                    int(beads[live[j]]),
                    float(cx[j]),
                    float(cy[j]),
                    frame_shape[0],
                    frame_shape[1],
                    first + n,
                )
            lost[live[gone]] = True
            keep = ~gone
            boxes[live[keep]] = new[keep]
        parts.append(_block_table(first, beads, cols))
    return pd.concat(parts, ignore_index=True)


def track_movie(
    movie: Any,
    rois: Any = None,
    *,
    roi_size: int = 64,
    zlut: ZLUT | Sequence[ZLUT] | None = None,
    chunk: int = 256,
    edge: Literal["raise", "drop"] = "raise",
    n_beads: int | None = None,
    follow: bool = False,
    progress: bool | None = None,
    **track_options: Any,
) -> Any:
    """Track every bead of a movie of full camera frames into one table.

    Parameters
    ----------
    movie : array of shape (n_frames, rows, cols)
        NumPy, CuPy or Dask array, or a lazy h5py/zarr/TIFF stack (:func:`stacklab.io.open_stack`);
        read ``chunk`` frames at a time, so it may be larger than memory.
    rois : array of shape (k, 2) or (k, 4), optional
        Bead centres ``(x, y)`` or square boxes ``(top, bottom, left, right)`` (see
        :func:`rois_to_boxes`). Default: :func:`find_beads` on the first frame.
    roi_size : int
        ROI side for centres and found beads, px (default 64).
    zlut : ZLUT or sequence of k ZLUT, optional
        One table for all beads or one per ROI (in ``rois`` order, before any ``edge="drop"``);
        without, z is NaN.
    chunk : int
        Frames per block (default 256); with Dask input the array's own frame chunks are used.
    edge : {"raise", "drop"}
        ROIs extending beyond the frame: ``ValueError`` (default) or left out with a warning.
    n_beads : int, optional
        With automatic ROIs, keep at most this many beads.
    follow : bool
        Let the ROIs follow drifting beads (default False: ROIs stay where they are). Before each
        block of ``chunk`` frames every ROI is re-centred, in whole pixels, on its bead's last
        tracked position in the previous block, so a drift of up to a few px per block is
        followed (choose ``chunk`` for that: e.g. 2 px per block). The blocks then run one after
        another, also for a Dask movie (computed block by block in frame order, ``chunk``
        frames at a time rather than by its own chunks; memory stays bounded). See Notes.
    progress : bool, optional
        Progress bar (None: only when interactive).
    **track_options
        Passed to :func:`stacklab.beads.track` (``method``, ``n_iter``...).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TABLE_COLUMNS`: ``frame`` (int), ``bead`` (int, the row of ``rois``),
        ``x``, ``y`` (px, movie coordinates), ``z`` (table unit), ``quality`` (see
        :class:`stacklab.beads.TrackResult`); sorted by frame then bead. Frames holding NaN give
        NaN values for that frame only.

    Notes
    -----
    Without ``follow`` the ROIs stay where they are for the whole movie. The tracker is exact for
    beads up to about 4 px from their ROI centre (64 px ROIs); beyond that its sampling circles
    leave the ROI and the error grows (``quality`` drops), and a bead that drifts tens of px is
    lost. With ``follow=True``:

    * ROIs move by whole pixels between blocks; ``x``, ``y`` stay in movie coordinates, and the
      result depends on ``chunk`` only through where the ROIs were placed (tracker precision).
    * Each ROI is re-centred on the last position of its bead in the block that is finite and
      inside the ROI; a bead without one (e.g. a block of NaN frames) keeps its previous ROI.
    * An ROI that would extend beyond the frame is clipped inside it. When the bead would then
      sit more than ``roi_size / 8`` px off the ROI centre it is leaving the frame: a warning is
      logged once and that bead's rows are NaN from the next block on.

    Raises
    ------
    ShapeError
        For a movie that is not ``(n, rows, cols)`` or is empty, or bad ``rois``.
    ValueError
        For ROIs outside the frame (``edge="raise"``), no bead found, or a wrong number of
        tables.
    """
    shape = getattr(movie, "shape", None)
    if shape is None:
        movie = np.asarray(movie)
        shape = movie.shape
    if len(shape) != 3:
        raise ShapeError(f"movie must be 3-D (n_frames, rows, cols), got shape {tuple(shape)}")
    if 0 in tuple(shape):
        raise ShapeError(f"movie is empty (shape {tuple(shape)})")
    dtype = np.dtype(getattr(movie, "dtype", np.float64))
    if dtype.kind not in "fiub":
        raise TypeError(f"movie must hold real numbers, got dtype {dtype}")
    frame_shape = (int(shape[1]), int(shape[2]))
    if rois is None:
        first = movie[0]
        if hasattr(first, "compute"):
            first = first.compute()
        centres = find_beads(np.asarray(to_numpy(first)), roi_size=roi_size, n_beads=n_beads)
        if centres.shape[0] == 0:
            raise ValueError(
                "no bead found in the first frame; pass rois=(x, y) centres or lower the "
                "find_beads threshold"
            )
        logger.info("track_movie: %d beads found in frame 0", centres.shape[0])
        rois = centres
    boxes, kept = rois_to_boxes(rois, frame_shape, roi_size=roi_size, edge=edge)
    if zlut is None or isinstance(zlut, ZLUT):
        zluts: list[ZLUT | None] = [zlut] * boxes.shape[0]
    else:
        tables = list(zlut)
        n_rois = int(np.atleast_2d(np.asarray(to_numpy(rois))).shape[0])
        if len(tables) != n_rois:
            raise ValueError(f"zlut has {len(tables)} tables but there are {n_rois} rois")
        zluts = [tables[i] for i in kept]
    if follow:
        table = _track_following(
            movie,
            boxes,
            kept,
            zluts,
            frame_shape,
            chunk,
            progress,
            dict(track_options),
        )
        return table.reset_index(drop=True)
    table = engine.collect_frames(
        _movie_block,
        movie,
        chunk=chunk,
        progress=progress,
        boxes=boxes,
        beads=kept,
        zluts=zluts,
        track_options=dict(track_options),
    )
    return table.reset_index(drop=True)


def save_table(table: Any, path: str | os.PathLike, *, key: str = "tracks") -> Path:
    """Write a tracking table atomically as CSV or HDF5 (chosen by the suffix).

    Parameters
    ----------
    table : pandas.DataFrame
        E.g. from :func:`track_movie`.
    path : str or path-like
        ``.csv`` (comma-separated, header line, no index) or ``.h5``/``.hdf5`` (one 1-D dataset
        per column in group ``key``, attribute ``columns`` listing their order).
    key : str
        HDF5 group (default ``"tracks"``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileFormatError
        For any other suffix.
    """
    from ..io import atomic_path, write_hdf5

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
        return path
    if suffix in (".h5", ".hdf5"):
        data = {f"{key}/{c}": np.asarray(table[c].to_numpy()) for c in table.columns}
        write_hdf5(path, data, attrs={key: {"columns": ",".join(map(str, table.columns))}})
        return path
    raise FileFormatError(f"cannot write a table to {str(path)!r}: use a .csv, .h5 or .hdf5 name")


def load_table(path: str | os.PathLike, *, key: str = "tracks") -> Any:
    """Read a table written by :func:`save_table` (CSV, or HDF5 with one dataset per column).

    Parameters
    ----------
    path : str or path-like
        ``.csv`` or ``.h5``/``.hdf5`` file.
    key : str
        HDF5 group (default ``"tracks"``).

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    FileFormatError
        If the file is missing, unreadable, or an HDF5 file lacks the group ``key``.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"table file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                if key not in f:
                    raise FileFormatError(f"{str(path)!r} has no table group {key!r}")
                group = f[key]
                names = (
                    str(group.attrs.get("columns", "")).split(",")
                    if "columns" in group.attrs
                    else list(group)
                )
                return pd.DataFrame({c: group[c][...] for c in names if c})
    except FileFormatError:
        raise
    except Exception as exc:
        raise FileFormatError(f"cannot read table {str(path)!r}: {exc}") from exc
    raise FileFormatError(f"cannot read a table from {str(path)!r}: use a .csv, .h5 or .hdf5 name")


def load_rois(path: str | os.PathLike) -> np.ndarray:
    """Read ROIs from a CSV file with a header line.

    Columns ``x, y`` (centres, px) or ``top, bottom, left, right`` (boxes, px); other columns
    are ignored.

    Parameters
    ----------
    path : str or path-like
        CSV file.

    Returns
    -------
    ndarray of float64, shape (k, 2) or (k, 4)

    Raises
    ------
    FileFormatError
        If the file is missing, unreadable or lacks those columns.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"rois file {str(path)!r} does not exist")
    try:
        df = pd.read_csv(path)
    except Exception as exc:
        raise FileFormatError(f"cannot read rois file {str(path)!r}: {exc}") from exc
    cols = {c.strip().lower(): c for c in df.columns}
    for want in (("top", "bottom", "left", "right"), ("x", "y")):
        if all(w in cols for w in want):
            return df[[cols[w] for w in want]].to_numpy(dtype=np.float64)
    raise FileFormatError(
        f"rois file {str(path)!r} needs columns x, y (centres) or top, bottom, left, right "
        f"(boxes); it has {list(df.columns)}"
    )
