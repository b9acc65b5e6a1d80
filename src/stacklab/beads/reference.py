"""Drift correction with reference beads stuck to the surface.

In magnetic tweezers the whole sample drifts against the objective (stage creep, thermal
expansion, focus drift) by tens of nm to microns over an experiment. Beads stuck to the surface
move only with that drift, so their mean displacement is the drift, and subtracting it from every
bead leaves the motion of the tethered beads relative to the surface.

:func:`reference_drift` measures the drift from a :func:`stacklab.beads.track_movie` table;
:func:`subtract_reference` returns the corrected table. For ``k`` reference beads with
independent position noise ``sigma`` (and the tethered bead with the same noise), the corrected
position carries noise ``sigma * sqrt(1 + 1/k)``: use several reference beads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["reference_drift", "subtract_reference"]

logger = logging.getLogger(__name__)


def _check_table(table: Any, columns: Sequence[str]) -> tuple[str, ...]:
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    if isinstance(columns, str):
        columns = (columns,)
    cols = tuple(columns)
    if not cols:
        raise ValueError("columns is empty: name at least one column to correct, e.g. 'x'")
    missing = [c for c in ("frame", "bead", *cols) if c not in table.columns]
    if missing:
        raise ValueError(
            f"table lacks column(s) {missing} (needed: frame, bead and columns={list(cols)}); "
            f"it has {list(table.columns)}"
        )
    if table.duplicated(["frame", "bead"]).any():
        raise ValueError("table has more than one row for some (frame, bead) pair")
    return cols


def _check_reference(reference: Any, beads: np.ndarray) -> np.ndarray:
    ref = np.atleast_1d(np.asarray(reference))
    if ref.ndim != 1:
        raise ValueError(
            f"reference must be a bead id or a list of bead ids, got shape {ref.shape}"
        )
    if ref.size == 0:
        raise ValueError("reference is empty: give at least one reference bead id")
    if ref.dtype.kind not in "iu" and not (
        ref.dtype.kind == "f" and np.all(np.isfinite(ref)) and np.all(ref == np.round(ref))
    ):
        raise ValueError(f"reference must hold integer bead ids, got {reference!r}")
    ref = np.unique(ref.astype(np.int64))
    unknown = np.setdiff1d(ref, beads)
    if unknown.size:
        raise ValueError(
            f"reference bead(s) {unknown.tolist()} are not in the table; its beads are "
            f"{beads.tolist()}"
        )
    return ref


def _fit_drift(wide: np.ndarray, max_iter: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Drift (n_frames,) and valid-reference count from reference positions (n_frames, k).

    Model ``wide[t, r] = offset[r] + drift[t]``, fitted by least squares over the finite values
    (alternating: drift = mean over references of ``wide - offset``, offset = mean over frames
    of ``wide - drift``), starting from each bead's own mean. Without NaN the first step is
    already the solution: the mean displacement from each bead's own mean. With gaps the fit
    keeps a reference that is missing in some frames from shifting the drift there. The drift
    is returned with zero mean over the frames where it is defined.
    """
    ok = np.isfinite(wide)
    vals = np.where(ok, wide, 0.0)
    n_ok = ok.sum(axis=0)
    count = ok.sum(axis=1)
    has = count > 0
    offset = vals.sum(axis=0) / np.maximum(n_ok, 1)
    tol = 1e-12 * (1.0 + float(np.max(np.abs(vals), initial=0.0)))
    drift = np.zeros(wide.shape[0])
    for _ in range(max_iter):
        drift = np.where(ok, vals - offset[None, :], 0.0).sum(axis=1) / np.maximum(count, 1)
        new = np.where(ok, vals - drift[:, None], 0.0).sum(axis=0) / np.maximum(n_ok, 1)
        step = float(np.max(np.abs(new - offset), initial=0.0))
        offset = new
        if step <= tol:
            break
    else:
        logger.info("reference_drift: offset fit stopped after %d iterations", max_iter)
    if has.any():
        drift = drift - drift[has].mean()
    return np.where(has, drift, np.nan), count


def reference_drift(
    table: Any,
    reference: int | Sequence[int],
    *,
    columns: Sequence[str] = ("x", "y", "z"),
) -> Any:
    """Drift of every frame, measured as the mean displacement of reference beads.

    Each reference bead's displacement is its position minus its own mean over the movie (NaN
    values ignored); the drift of a frame is the mean of the displacements of the reference beads
    that are valid (finite) in that frame, NaN where none is. When a reference bead is missing
    (NaN) in some frames, its own mean is replaced by a least-squares offset (model: position =
    bead offset + common drift, fitted over all valid values), so that the frames where it is
    missing do not jump by the difference of the beads' means; without missing values the two
    are the same. The drift has zero mean over the frames where it is defined.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per frame and bead with columns ``frame``, ``bead`` and ``columns``, e.g. from
        :func:`stacklab.beads.track_movie`.
    reference : int or sequence of int
        Bead id(s) (``bead`` column) of beads stuck to the surface.
    columns : sequence of str
        Columns to measure (default ``("x", "y", "z")``).

    Returns
    -------
    pandas.DataFrame
        Index ``frame`` (every frame of the table, sorted), one float64 column per entry of
        ``columns``, in that column's unit (``x``, ``y`` px and ``z`` nm for a track_movie
        table), and ``n_reference``: how many reference beads were valid in ``x`` (the first of
        ``columns``) in that frame.

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    ValueError
        For missing columns, duplicate (frame, bead) rows, an empty ``reference`` or bead ids
        not in the table.
    """
    import pandas as pd

    cols = _check_table(table, columns)
    beads = np.unique(table["bead"].to_numpy())
    ref = _check_reference(reference, beads)
    frames = np.unique(table["frame"].to_numpy())
    sub = table[table["bead"].isin(ref)]
    fi = np.searchsorted(frames, sub["frame"].to_numpy())
    bi = np.searchsorted(ref, sub["bead"].to_numpy())
    out = {}
    count0 = None
    for c in cols:
        wide = np.full((frames.size, ref.size), np.nan)
        wide[fi, bi] = sub[c].to_numpy(dtype=np.float64)
        out[c], count = _fit_drift(wide)
        if count0 is None:
            count0 = count
    out["n_reference"] = count0
    drift = pd.DataFrame(out, index=pd.Index(frames, name="frame"))
    logger.debug(
        "reference_drift: %d reference beads over %d frames", int(ref.size), int(frames.size)
    )
    return drift


def subtract_reference(
    table: Any,
    reference: int | Sequence[int],
    *,
    columns: Sequence[str] = ("x", "y", "z"),
    keep_reference: bool = True,
) -> Any:
    """Correct every bead for the drift measured on reference beads.

    For each frame the mean displacement of the reference beads (see :func:`reference_drift`)
    is subtracted from ``columns`` of every bead. Positions keep their units (``x``, ``y`` px in
    movie coordinates, ``z`` in the look-up table's unit, nm) and their absolute level: a bead
    that moves only with the drift ends up constant at its own mean position. Frames in which no
    reference bead is valid become NaN in ``columns`` for every bead.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per frame and bead with columns ``frame``, ``bead`` and ``columns``, e.g. from
        :func:`stacklab.beads.track_movie` (``frame, bead, x, y, z, quality``); other columns
        are carried over unchanged.
    reference : int or sequence of int
        Bead id(s) (``bead`` column) of beads stuck to the surface. With ``k`` of them the
        corrected positions carry the position noise of one bead times ``sqrt(1 + 1/k)``.
    columns : sequence of str
        Columns to correct (default ``("x", "y", "z")``); each is corrected with the drift
        measured in the same column.
    keep_reference : bool
        Keep the reference beads' rows (corrected as well) in the result (default True) or
        leave them out.

    Returns
    -------
    pandas.DataFrame
        A new table with the same columns, row order and index (less the reference rows with
        ``keep_reference=False``); ``columns`` become float64. ``table`` is not modified.

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    ValueError
        For missing columns, duplicate (frame, bead) rows, an empty ``reference`` or bead ids
        not in the table.

    Examples
    --------
    >>> table = track_movie(movie, zlut=lut)  # doctest: +SKIP
    >>> corrected = subtract_reference(table, [0, 3])  # doctest: +SKIP
    """
    cols = _check_table(table, columns)
    drift = reference_drift(table, reference, columns=cols)
    ref = _check_reference(reference, np.unique(table["bead"].to_numpy()))
    fi = np.searchsorted(drift.index.to_numpy(), table["frame"].to_numpy())
    out = table.copy()
    for c in cols:
        out[c] = table[c].to_numpy(dtype=np.float64) - drift[c].to_numpy()[fi]
    if not keep_reference:
        out = out[~out["bead"].isin(ref)]
    n_lost = int(np.sum(drift["n_reference"].to_numpy() == 0))
    if n_lost:
        logger.info("subtract_reference: %d frames without a valid reference bead are NaN", n_lost)
    return out
