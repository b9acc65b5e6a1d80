"""Linking localizations across frames: one molecule blinking on for several frames.

Two localizations are linked when they are mutual nearest neighbours within ``max_dist_nm`` in
frames ``f`` and ``f + g`` (``g = 1`` first, then up to ``max_gap + 1`` for molecules missed or
off for ``max_gap`` frames), and neither is linked yet in that direction. Linked localizations
form chains (tracks), which :func:`merge_tracks` averages with inverse-variance weights.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import check_positive
from ._table import INTENSITY, OFFSET, SIGMA, UNCERTAINTY, X, Y, columns, frame_of, like
from .metrics import _frame_pairs

__all__ = ["link", "merge_tracks", "track_ids"]

logger = logging.getLogger(__name__)


def _default_radius(df: pd.DataFrame) -> float:
    if UNCERTAINTY in df and len(df):
        u = np.asarray(df[UNCERTAINTY], dtype=float)
        u = u[np.isfinite(u)]
        if u.size:
            return float(max(5.0 * np.median(u), 1.0))
    return 50.0


def track_ids(locs: Any, *, max_dist_nm: float | None = None, max_gap: int = 0) -> np.ndarray:
    """Label every localization with the id of its track (0, 1, 2, ... in order of first row).

    Parameters
    ----------
    locs : Locs or pandas.DataFrame
        Localizations with ``frame``, ``x [nm]``, ``y [nm]``.
    max_dist_nm : float, optional
        Largest distance between linked localizations, nm (default 5x the median
        ``uncertainty [nm]``, or 50 nm without that column).
    max_gap : int
        Frames a molecule may be missing between two linked localizations.

    Returns
    -------
    ndarray of shape (n,), int64
        Track id per row.
    """
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap!r}")
    df = frame_of(locs)
    radius = _default_radius(df) if max_dist_nm is None else float(max_dist_nm)
    check_positive(radius, "max_dist_nm")
    f, x, y = columns(df)
    n = f.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    has_next = np.zeros(n, dtype=bool)
    has_prev = np.zeros(n, dtype=bool)
    src, dst = [], []
    for gap in range(1, int(max_gap) + 2):
        fwd, _ = _frame_pairs(f, x, y, f, x, y, radius, frame_offset=gap)
        bwd, _ = _frame_pairs(f, x, y, f, x, y, radius, frame_offset=-gap)
        i = np.nonzero(fwd >= 0)[0]
        j = fwd[i]
        keep = (bwd[j] == i) & ~has_next[i] & ~has_prev[j]
        i, j = i[keep], j[keep]
        has_next[i] = True
        has_prev[j] = True
        src.append(i)
        dst.append(j)
    s = np.concatenate(src)
    d = np.concatenate(dst)
    graph = coo_matrix((np.ones(s.size), (s, d)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # Renumber in order of first appearance.
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)
    remap = np.empty_like(order)
    remap[order] = np.arange(order.size)
    return remap[labels].astype(np.int64)


def merge_tracks(locs: Any, ids: np.ndarray) -> Any:
    """Average the localizations of each track.

    Parameters
    ----------
    locs : Locs or pandas.DataFrame
        Localizations (``frame``, ``x [nm]``, ``y [nm]``; optional ``uncertainty [nm]``,
        ``intensity [photon]``, ``offset [photon]``, ``sigma [nm]``).
    ids : ndarray of shape (n,), int
        Track ids from :func:`track_ids`.

    Returns
    -------
    Locs or pandas.DataFrame
        Same kind as ``locs``, one row per track: ``track``, ``frame`` (first), ``last_frame``,
        ``n_locs``, ``x [nm]`` and ``y [nm]`` (inverse-variance weighted means when
        ``uncertainty [nm]`` exists, else plain means), ``uncertainty [nm]`` (of the weighted
        mean), ``intensity [photon]`` (sum), ``offset [photon]`` and ``sigma [nm]`` (means).
    """
    df = frame_of(locs)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.shape != (len(df),):
        raise ValueError(f"ids must have shape ({len(df)},), got {ids.shape}")
    f, x, y = columns(df)
    m = int(ids.max()) + 1 if ids.size else 0
    count = np.bincount(ids, minlength=m).astype(np.float64)
    if UNCERTAINTY in df:
        u = np.asarray(df[UNCERTAINTY], dtype=np.float64)
        w = np.where(np.isfinite(u) & (u > 0), 1.0 / np.maximum(u, 1e-9) ** 2, 0.0)
    else:
        w = np.ones(f.size)
    wsum = np.bincount(ids, weights=w, minlength=m)
    safe = np.where(wsum > 0, wsum, 1.0)
    out = {
        "track": np.arange(m, dtype=np.int64),
        "frame": _group_min(ids, f, m),
        "last_frame": -_group_min(ids, -f, m),
        "n_locs": count.astype(np.int64),
        X: np.bincount(ids, weights=w * x, minlength=m) / safe,
        Y: np.bincount(ids, weights=w * y, minlength=m) / safe,
    }
    if UNCERTAINTY in df:
        out[UNCERTAINTY] = np.where(wsum > 0, 1.0 / np.sqrt(safe), np.nan)
    for col, how in ((INTENSITY, "sum"), (OFFSET, "mean"), (SIGMA, "mean")):
        if col in df:
            s = np.bincount(ids, weights=np.asarray(df[col], float), minlength=m)
            out[col] = s if how == "sum" else s / np.maximum(count, 1.0)
    return like(locs, pd.DataFrame(out))


def _group_min(ids: np.ndarray, values: np.ndarray, m: int) -> np.ndarray:
    out = np.full(m, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(out, ids, values)
    return out


def link(locs: Any, *, max_dist_nm: float | None = None, max_gap: int = 0) -> Any:
    """Link localizations of the same molecule in consecutive frames and merge them.

    Parameters
    ----------
    locs : Locs or pandas.DataFrame
        Localizations (``frame``, ``x [nm]``, ``y [nm]``, optional ``uncertainty [nm]``...).
    max_dist_nm : float, optional
        Linking radius, nm (see :func:`track_ids`).
    max_gap : int
        Frames a molecule may be missing.

    Returns
    -------
    Locs or pandas.DataFrame
        Same kind as ``locs``, one row per track (see :func:`merge_tracks`).
    """
    ids = track_ids(locs, max_dist_nm=max_dist_nm, max_gap=max_gap)
    merged = merge_tracks(locs, ids)
    logger.info("linked %d localizations into %d tracks", len(locs), len(merged))
    return merged
