"""Accept a :class:`~stacklab.smlm.locs.Locs` or a DataFrame with the same column names.

The analysis functions of :mod:`stacklab.smlm` (drift, linking, rendering, metrics) work on the
ThunderSTORM-named columns of :mod:`stacklab.smlm.locs` (``frame``, ``x [nm]``, ``y [nm]``,
``uncertainty [nm]``...). They take either a ``Locs`` or a plain ``pandas.DataFrame`` and give
back the same kind of table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

FRAME = "frame"
X = "x [nm]"
Y = "y [nm]"
SIGMA = "sigma [nm]"
INTENSITY = "intensity [photon]"
OFFSET = "offset [photon]"
UNCERTAINTY = "uncertainty [nm]"


def is_locs(obj: Any) -> bool:
    """True for a :class:`stacklab.smlm.locs.Locs` (without importing it eagerly)."""
    return type(obj).__name__ == "Locs" and hasattr(obj, "df") and hasattr(obj, "pixel_size_nm")


def frame_of(locs: Any, name: str = "locs") -> pd.DataFrame:
    """The DataFrame behind ``locs`` (a Locs' own copy, or the DataFrame itself, not copied)."""
    if is_locs(locs):
        return locs.df
    if isinstance(locs, pd.DataFrame):
        return locs
    raise TypeError(
        f"{name} must be a stacklab.smlm.Locs or a pandas DataFrame, got {type(locs)!r}"
    )


def meta_of(locs: Any) -> dict[str, Any]:
    """``pixel_size_nm``, ``image_shape``, ``n_frames`` of a Locs (or DataFrame ``attrs``)."""
    if is_locs(locs):
        return {
            "pixel_size_nm": locs.pixel_size_nm,
            "image_shape": locs.image_shape,
            "n_frames": locs.n_frames,
        }
    attrs = getattr(locs, "attrs", {}) or {}
    return {k: attrs.get(k) for k in ("pixel_size_nm", "image_shape", "n_frames")}


def columns(
    df: pd.DataFrame, name: str = "locs", *, frame: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """``(frame, x, y)`` arrays (int64, float64, float64) of a table; clear error if missing."""
    need = ([FRAME] if frame else []) + [X, Y]
    missing = [c for c in need if c not in df.columns]
    if missing:
        hint = ""
        if "x_nm" in df.columns or "x" in df.columns:
            hint = " (stacklab uses ThunderSTORM names: 'x [nm]', 'y [nm]')"
        raise ValueError(f"{name} lacks column(s) {missing}{hint}")
    f = np.asarray(df[FRAME], dtype=np.int64) if frame else None
    return f, np.asarray(df[X], dtype=np.float64), np.asarray(df[Y], dtype=np.float64)


def like(original: Any, df: pd.DataFrame, **meta: Any) -> Any:
    """Wrap ``df`` as the same kind of table as ``original`` (Locs keeps its metadata)."""
    if is_locs(original):
        from .locs import Locs

        kw = meta_of(original)
        kw.update({k: v for k, v in meta.items() if k in kw})
        return Locs(df, meta=original.meta, **kw)
    out = df
    out.attrs.update(getattr(original, "attrs", {}) or {})
    return out
