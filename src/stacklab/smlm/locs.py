"""Localization tables: a pandas DataFrame with ThunderSTORM-compatible columns in nanometres.

A :class:`Locs` holds one row per localization and the metadata needed to go back to pixels
(pixel size, image shape, number of frames). Its columns follow ThunderSTORM's names and units,
so a table written as CSV opens in ThunderSTORM unchanged, and the Picasso HDF5 writer converts
positions to Picasso's pixels:

=========================  =========================================================  ========
column                     meaning                                                    dtype
=========================  =========================================================  ========
``frame``                  frame index, **0-based** (ThunderSTORM files are 1-based)  int64
``x [nm]``, ``y [nm]``     position; ``x = column * pixel``, ``y = row * pixel``      float64
``sigma [nm]``             fitted PSF standard deviation                              float64
``intensity [photon]``     photons in the spot                                        float64
``offset [photon]``        background photons per pixel                               float64
``bkgstd [photon]``        standard deviation of the background, photons per pixel    float64
``uncertainty [nm]``       localization precision (e.g. the Cramér-Rao bound)         float64
``loglik``                 log-likelihood of the fit (optional)                       float64
``channel``, ``id``        channel index and localization id (optional)               int64
=========================  =========================================================  ========

``frame``, ``x [nm]`` and ``y [nm]`` are required; the others are optional. Also standard:
``z [nm]``, the per-axis widths ``sigma1 [nm]`` (x) and ``sigma2 [nm]`` (y) of ThunderSTORM, and
``uncertainty_x [nm]``/``uncertainty_y [nm]``. Any further column (``chi2``, a Picasso
``net_gradient``...) is carried along unchanged (floats widened to float64).

Pixel centres are at integer pixel coordinates, so ``x [nm] / pixel_size_nm`` is the column
index of the pixel centre (the convention of Picasso's ThunderSTORM import; ThunderSTORM itself
puts the image origin at the corner of the first pixel, half a pixel away, and files are read
and written without a shift).

A :class:`Locs` is immutable in practice: every method returns a new table and never changes
the caller's DataFrame.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "FLOAT_COLUMNS",
    "INT_COLUMNS",
    "LENGTH_COLUMNS",
    "REQUIRED_COLUMNS",
    "SHORT_NAMES",
    "STANDARD_COLUMNS",
    "Locs",
]

logger = logging.getLogger(__name__)

#: Columns every table has.
REQUIRED_COLUMNS: tuple[str, ...] = ("frame", "x [nm]", "y [nm]")
#: The standard columns, in the order tables are written.
STANDARD_COLUMNS: tuple[str, ...] = (
    "id",
    "frame",
    "channel",
    "x [nm]",
    "y [nm]",
    "z [nm]",
    "sigma [nm]",
    "sigma1 [nm]",
    "sigma2 [nm]",
    "intensity [photon]",
    "offset [photon]",
    "bkgstd [photon]",
    "uncertainty [nm]",
    "uncertainty_x [nm]",
    "uncertainty_y [nm]",
    "loglik",
)
#: Integer columns.
INT_COLUMNS: tuple[str, ...] = ("frame", "id", "channel")
#: Standard float columns.
FLOAT_COLUMNS: tuple[str, ...] = tuple(c for c in STANDARD_COLUMNS if c not in INT_COLUMNS)
#: Columns holding lengths in nm (converted by :meth:`Locs.to_pixels`).
LENGTH_COLUMNS: tuple[str, ...] = (
    "x [nm]",
    "y [nm]",
    "sigma [nm]",
    "sigma1 [nm]",
    "sigma2 [nm]",
    "uncertainty [nm]",
    "uncertainty_x [nm]",
    "uncertainty_y [nm]",
)
#: Short names accepted by :meth:`Locs.filter` and :meth:`Locs.from_arrays`.
SHORT_NAMES: dict[str, str] = {
    "frame": "frame",
    "id": "id",
    "channel": "channel",
    "x": "x [nm]",
    "y": "y [nm]",
    "z": "z [nm]",
    "sigma": "sigma [nm]",
    "sigma1": "sigma1 [nm]",
    "sigma2": "sigma2 [nm]",
    "intensity": "intensity [photon]",
    "offset": "offset [photon]",
    "bkgstd": "bkgstd [photon]",
    "uncertainty": "uncertainty [nm]",
    "uncertainty_x": "uncertainty_x [nm]",
    "uncertainty_y": "uncertainty_y [nm]",
    "loglik": "loglik",
}

_UNIT = re.compile(r"^(?P<name>.*?)\s*\[(?P<unit>[^\]]*)\]\s*$")


def split_unit(column: str) -> tuple[str, str | None]:
    """Split ``"x [nm]"`` into ``("x", "nm")``; a column without unit gives ``(column, None)``."""
    m = _UNIT.match(str(column))
    if m is None:
        return str(column), None
    return m.group("name"), m.group("unit").strip()


def _check_pixel_size(value: Any, name: str = "pixel_size_nm") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number of nm, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number of nm (square pixels), got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0 nm, got {value!r}")
    return v


def _check_shape(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        rows, cols = (int(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"image_shape must be (rows, cols), got {value!r}") from None
    if rows < 1 or cols < 1 or (rows, cols) != tuple(value):
        raise ValueError(f"image_shape must be two positive integers (rows, cols), got {value!r}")
    return rows, cols


def _check_count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _as_int_column(values: pd.Series, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "b":
        raise TypeError(f"column {name!r} must hold integers, got booleans")
    try:
        f = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"column {name!r} must hold integers, got dtype {arr.dtype}") from None
    bad = ~np.isfinite(f) | (f != np.round(f))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"column {name!r} must hold integers, row {i} is {arr[i]!r}")
    return f.astype(np.int64)


def _as_float_column(values: pd.Series, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "b":
        raise TypeError(f"column {name!r} must hold numbers, got booleans")
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"column {name!r} must hold numbers, got dtype {arr.dtype}") from None


class Locs:
    """A table of localizations in nm, with the metadata to convert it to pixels.

    Parameters
    ----------
    data : pandas.DataFrame or mapping of column name to 1-D array
        One row per localization with at least ``frame``, ``x [nm]`` and ``y [nm]`` (see the
        module table). It is copied; the caller's frame is never modified.
    pixel_size_nm : float, optional
        Camera pixel size in the sample plane, nm (square pixels).
    image_shape : (int, int), optional
        Frame size ``(rows, cols)`` in pixels.
    n_frames : int, optional
        Number of frames of the movie (frames without localizations count too).
    meta : mapping, optional
        Further flat metadata (str -> scalar), saved with the table where the format allows.

    Raises
    ------
    ValueError
        If a required column is missing, a length column is given in other units
        (``x [px]``: use :meth:`from_pixels`), ``frame`` holds non-integers or negatives,
        or positions are not finite.
    TypeError
        If a column cannot be converted to numbers.

    Examples
    --------
    >>> locs = Locs.from_arrays([0, 0, 3], [150.0, 525.0, 75.0], [50.0, 250.0, 1000.0],
    ...                         pixel_size_nm=100.0, intensity=[900.0, 1200.0, 1000.0])
    >>> len(locs), locs.to_pixels()["x [px]"].tolist()
    (3, [1.5, 5.25, 0.75])
    """

    __slots__ = ("_df", "image_shape", "meta", "n_frames", "pixel_size_nm")

    def __init__(
        self,
        data: pd.DataFrame | Mapping[str, Any],
        *,
        pixel_size_nm: float | None = None,
        image_shape: tuple[int, int] | None = None,
        n_frames: int | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        df = pd.DataFrame(data, copy=True) if not isinstance(data, pd.DataFrame) else data.copy()
        self._df = self._validate(df)
        self.pixel_size_nm = _check_pixel_size(pixel_size_nm)
        self.image_shape = _check_shape(image_shape)
        self.n_frames = _check_count(n_frames, "n_frames")
        if meta is not None and not isinstance(meta, Mapping):
            raise TypeError(f"meta must be a mapping of str to scalars, got {type(meta)!r}")
        self.meta = dict(meta or {})
        if self.n_frames is not None and len(self._df) and self._df["frame"].max() >= self.n_frames:
            raise ValueError(
                f"n_frames={self.n_frames} but the table has frame {self._df['frame'].max()} "
                "(frames are 0-based)"
            )

    # ---------------------------------------------------------------------------------------
    # validation and construction
    # ---------------------------------------------------------------------------------------

    @staticmethod
    def _validate(df: pd.DataFrame) -> pd.DataFrame:
        cols = [str(c) for c in df.columns]
        if len(set(cols)) != len(cols):
            dup = sorted({c for c in cols if cols.count(c) > 1})
            raise ValueError(f"duplicate columns {dup}")
        df.columns = cols
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            hint = ""
            others = [c for c in df.columns if split_unit(c)[0] in ("x", "y")]
            if others:
                hint = (
                    f"; found {others}: positions must be in nm (Locs.from_pixels converts "
                    "pixel tables)"
                )
            raise ValueError(f"localization table lacks column(s) {missing}{hint}")
        for c in df.columns:
            name, unit = split_unit(c)
            std = SHORT_NAMES.get(name)
            if unit is not None and std is not None and std != c and std not in df.columns:
                raise ValueError(
                    f"column {c!r} is in {unit!r}; stacklab tables use {std!r} "
                    "(convert lengths to nm and intensities to photons first)"
                )
        out = {}
        for c in df.columns:
            if c in INT_COLUMNS:
                out[c] = _as_int_column(df[c], c)
            elif c in FLOAT_COLUMNS:
                out[c] = _as_float_column(df[c], c)
            else:
                out[c] = np.asarray(df[c])
                if out[c].dtype.kind == "f" and out[c].dtype != np.float64:
                    out[c] = out[c].astype(np.float64)  # exact; keeps file round trips exact
        frame = out["frame"]
        if frame.size and frame.min() < 0:
            raise ValueError(f"column 'frame' must be >= 0 (0-based), got {frame.min()}")
        for c in ("x [nm]", "y [nm]"):
            bad = ~np.isfinite(out[c])
            if np.any(bad):
                raise ValueError(
                    f"column {c!r} holds {int(bad.sum())} non-finite values "
                    f"(first at row {int(np.flatnonzero(bad)[0])}); drop failed fits first"
                )
        order = [c for c in STANDARD_COLUMNS if c in out] + [
            c for c in df.columns if c not in STANDARD_COLUMNS
        ]
        return pd.DataFrame({c: out[c] for c in order})

    @classmethod
    def from_arrays(
        cls,
        frame: Any,
        x_nm: Any,
        y_nm: Any,
        *,
        pixel_size_nm: float | None = None,
        image_shape: tuple[int, int] | None = None,
        n_frames: int | None = None,
        meta: Mapping[str, Any] | None = None,
        **columns: Any,
    ) -> Locs:
        """Build a table from 1-D arrays.

        Parameters
        ----------
        frame : array-like of shape (n,)
            0-based frame indices.
        x_nm, y_nm : array-like of shape (n,)
            Positions in nm (``x`` = column axis).
        pixel_size_nm, image_shape, n_frames, meta
            Metadata, as in :class:`Locs`.
        **columns : array-like of shape (n,)
            Further columns by short name (``sigma``, ``intensity``, ``offset``, ``bkgstd``,
            ``uncertainty``, ``loglik``, ``channel``, ``id``, ``z``...) or full name.

        Returns
        -------
        Locs
        """
        data = {"frame": frame, "x [nm]": x_nm, "y [nm]": y_nm}
        for key, value in columns.items():
            data[SHORT_NAMES.get(key, key)] = value
        arrays = {k: np.asarray(v) for k, v in data.items()}
        sizes = {k: a.shape for k, a in arrays.items()}
        n = arrays["frame"].shape
        if any(a.ndim != 1 or a.shape != n for a in arrays.values()):
            raise ValueError(f"all columns must be 1-D arrays of the same length, got {sizes}")
        return cls(
            arrays,
            pixel_size_nm=pixel_size_nm,
            image_shape=image_shape,
            n_frames=n_frames,
            meta=meta,
        )

    @classmethod
    def from_pixels(
        cls,
        data: pd.DataFrame | Mapping[str, Any],
        pixel_size_nm: float,
        *,
        image_shape: tuple[int, int] | None = None,
        n_frames: int | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Locs:
        """Build a table from one in pixel units (the inverse of :meth:`to_pixels`).

        Parameters
        ----------
        data : DataFrame or mapping
            Columns ``frame``, ``x [px]``, ``y [px]`` and optionally ``sigma [px]``,
            ``sigma1 [px]``, ``sigma2 [px]``, ``uncertainty [px]``, plus any other column.
        pixel_size_nm : float
            Pixel size in nm.
        image_shape, n_frames, meta
            Metadata, as in :class:`Locs`.

        Returns
        -------
        Locs
        """
        px = _check_pixel_size(pixel_size_nm)
        if px is None:
            raise ValueError("from_pixels needs pixel_size_nm")
        df = pd.DataFrame(data, copy=True) if not isinstance(data, pd.DataFrame) else data.copy()
        rename = {}
        for c in LENGTH_COLUMNS:
            name = split_unit(c)[0]
            src = f"{name} [px]"
            if src in df.columns:
                if c in df.columns:
                    raise ValueError(f"table has both {src!r} and {c!r}")
                df[src] = _as_float_column(df[src], src) * px
                rename[src] = c
        return cls(
            df.rename(columns=rename),
            pixel_size_nm=px,
            image_shape=image_shape,
            n_frames=n_frames,
            meta=meta,
        )

    @classmethod
    def empty(cls, **metadata: Any) -> Locs:
        """A table with the required columns and no rows (metadata as in :class:`Locs`)."""
        return cls(
            {"frame": np.zeros(0, np.int64), "x [nm]": np.zeros(0), "y [nm]": np.zeros(0)},
            **metadata,
        )

    def _replace(self, df: pd.DataFrame | None = None, **changes: Any) -> Locs:
        kw = {
            "pixel_size_nm": self.pixel_size_nm,
            "image_shape": self.image_shape,
            "n_frames": self.n_frames,
            "meta": self.meta,
        }
        kw.update(changes)
        return Locs(self._df if df is None else df, **kw)

    def with_metadata(self, **changes: Any) -> Locs:
        """A copy with ``pixel_size_nm``, ``image_shape``, ``n_frames`` or ``meta`` changed."""
        unknown = set(changes) - {"pixel_size_nm", "image_shape", "n_frames", "meta"}
        if unknown:
            raise TypeError(f"unknown metadata {sorted(unknown)}")
        return self._replace(**changes)

    # ---------------------------------------------------------------------------------------
    # access
    # ---------------------------------------------------------------------------------------

    @property
    def df(self) -> pd.DataFrame:
        """The table (a copy: changing it does not change this object)."""
        return self._df.copy()

    @property
    def columns(self) -> list[str]:
        """Column names."""
        return list(self._df.columns)

    def __len__(self) -> int:
        return len(self._df)

    def __contains__(self, column: object) -> bool:
        return column in self._df.columns

    def __getitem__(self, column: str) -> np.ndarray:
        """The values of one column (full or short name) as a NumPy array (a copy)."""
        key = column if column in self._df.columns else SHORT_NAMES.get(column, column)
        if key not in self._df.columns:
            raise KeyError(f"no column {column!r}; columns are {self.columns}")
        return self._df[key].to_numpy(copy=True)

    @property
    def frame(self) -> np.ndarray:
        """0-based frame indices, shape (n,)."""
        return self["frame"]

    @property
    def x_nm(self) -> np.ndarray:
        """x (column direction) in nm, shape (n,)."""
        return self["x [nm]"]

    @property
    def y_nm(self) -> np.ndarray:
        """y (row direction) in nm, shape (n,)."""
        return self["y [nm]"]

    def __repr__(self) -> str:
        px = "?" if self.pixel_size_nm is None else f"{self.pixel_size_nm:g}"
        return f"<Locs: {len(self)} localizations, pixel {px} nm, columns {self.columns}>"

    def equals(self, other: Locs, *, rtol: float = 0.0, atol: float = 0.0) -> bool:
        """True when both tables have the same columns, values (within tolerances) and metadata."""
        if not isinstance(other, Locs) or self.columns != other.columns or len(self) != len(other):
            return False
        if (self.pixel_size_nm, self.image_shape, self.n_frames) != (
            other.pixel_size_nm,
            other.image_shape,
            other.n_frames,
        ):
            return False
        for c in self.columns:
            a, b = self._df[c].to_numpy(), other._df[c].to_numpy()
            if a.dtype.kind in "fc" or b.dtype.kind in "fc":
                if not np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True):
                    return False
            elif not np.array_equal(a, b):
                return False
        return True

    # ---------------------------------------------------------------------------------------
    # units
    # ---------------------------------------------------------------------------------------

    def _pixel(self, pixel_size_nm: float | None) -> float:
        px = _check_pixel_size(pixel_size_nm) if pixel_size_nm is not None else self.pixel_size_nm
        if px is None:
            raise ValueError("the pixel size is unknown: pass pixel_size_nm or set it on the table")
        return px

    def to_pixels(self, pixel_size_nm: float | None = None) -> pd.DataFrame:
        """The table with lengths in pixels.

        Parameters
        ----------
        pixel_size_nm : float, optional
            Pixel size in nm (default: the table's).

        Returns
        -------
        pandas.DataFrame
            ``x [nm]`` becomes ``x [px]`` (the column index of the pixel centre), and likewise
            ``y``, ``sigma``, ``sigma1``, ``sigma2``, ``uncertainty``; other columns are copied.

        Raises
        ------
        ValueError
            If no pixel size is known.
        """
        px = self._pixel(pixel_size_nm)
        df = self._df.copy()
        rename = {}
        for c in LENGTH_COLUMNS:
            if c in df.columns:
                df[c] = df[c] / px
                rename[c] = f"{split_unit(c)[0]} [px]"
        return df.rename(columns=rename)

    def positions_px(self, pixel_size_nm: float | None = None) -> np.ndarray:
        """Positions ``(y, x)`` in pixels, shape (n, 2) (row, column; centres at integers)."""
        px = self._pixel(pixel_size_nm)
        return np.column_stack([self.y_nm / px, self.x_nm / px])

    # ---------------------------------------------------------------------------------------
    # selection and combination
    # ---------------------------------------------------------------------------------------

    def select(self, mask: Any) -> Locs:
        """Rows where the boolean ``mask`` (shape (n,)) is True, or the rows at integer indices."""
        idx = np.asarray(mask)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"mask must have shape ({len(self)},), got {idx.shape}")
            rows = self._df.loc[idx]
        elif idx.dtype.kind in "iu":
            rows = self._df.iloc[idx]
        else:
            raise TypeError(f"mask must be boolean or integer indices, got dtype {idx.dtype}")
        return self._replace(rows.reset_index(drop=True))

    def filter(self, **bounds: tuple[float | None, float | None]) -> Locs:
        """Rows whose columns lie within inclusive bounds.

        Parameters
        ----------
        **bounds : (low, high)
            Per column (short name such as ``uncertainty`` or full name via ``**{"x [nm]": ...}``),
            inclusive limits in the column's unit; ``None`` leaves a side open. Rows with NaN in
            a bounded column are dropped.

        Returns
        -------
        Locs

        Examples
        --------
        >>> locs.filter(frame=(0, 999), uncertainty=(None, 20.0))   # doctest: +SKIP
        """
        keep = np.ones(len(self), dtype=bool)
        for key, lim in bounds.items():
            col = key if key in self._df.columns else SHORT_NAMES.get(key, key)
            if col not in self._df.columns:
                raise KeyError(f"filter: no column {key!r}; columns are {self.columns}")
            try:
                lo, hi = lim
            except (TypeError, ValueError):
                raise ValueError(f"filter: {key} must be a (low, high) pair, got {lim!r}") from None
            values = self._df[col].to_numpy()
            ok = ~pd.isna(values)
            if lo is not None:
                ok &= values >= lo
            if hi is not None:
                ok &= values <= hi
            keep &= ok
        return self.select(keep)

    def sort(self, by: str | Iterable[str] = "frame") -> Locs:
        """Rows sorted (stably) by the given column(s)."""
        keys = [by] if isinstance(by, str) else list(by)
        keys = [k if k in self._df.columns else SHORT_NAMES.get(k, k) for k in keys]
        return self._replace(self._df.sort_values(keys, kind="stable").reset_index(drop=True))

    @classmethod
    def concat(cls, parts: Iterable[Locs], *, offset_frames: bool = False) -> Locs:
        """Stack tables row-wise.

        Parameters
        ----------
        parts : iterable of Locs
            Tables with the same pixel size (or unknown pixel sizes).
        offset_frames : bool
            False: keep frame numbers (e.g. channels of one movie). True: the tables are
            consecutive movies; each one's frames are shifted by the frames of those before it
            (its ``n_frames``, or its last frame + 1 when unknown).

        Returns
        -------
        Locs
            Columns are the union (missing values NaN; integer columns missing in a part raise).
            Metadata: the common pixel size and image shape; ``n_frames`` summed when
            ``offset_frames`` else the maximum; ``meta`` of the first table.

        Raises
        ------
        ValueError
            If no table is given, or pixel sizes or image shapes differ.
        """
        parts = list(parts)
        if not parts:
            raise ValueError("concat needs at least one Locs")
        for i, p in enumerate(parts):
            if not isinstance(p, Locs):
                raise TypeError(f"parts[{i}] is a {type(p).__name__}, not Locs")
        sizes = {p.pixel_size_nm for p in parts if p.pixel_size_nm is not None}
        if len(sizes) > 1:
            raise ValueError(f"cannot concatenate tables with pixel sizes {sorted(sizes)} nm")
        shapes = {p.image_shape for p in parts if p.image_shape is not None}
        if len(shapes) > 1:
            raise ValueError(f"cannot concatenate tables with image shapes {sorted(shapes)}")
        frames = []
        offset = 0
        counts = []
        for p in parts:
            df = p._df.copy()
            if offset_frames:
                df["frame"] = df["frame"] + offset
            frames.append(df)
            n = p.n_frames
            if n is None:
                n = int(p._df["frame"].max()) + 1 if len(p) else 0
                counts.append(None if p.n_frames is None else n)
            else:
                counts.append(n)
            offset += n
        for c in INT_COLUMNS:
            have = [c in df.columns for df in frames]
            if any(have) and not all(have):
                raise ValueError(f"integer column {c!r} is missing from some tables")
        merged = pd.concat(frames, ignore_index=True, sort=False)
        if offset_frames:
            n_frames = None if any(n is None for n in counts) else offset
        else:
            known = [n for n in counts if n is not None]
            n_frames = max(known) if len(known) == len(counts) and known else None
        return cls(
            merged,
            pixel_size_nm=sizes.pop() if sizes else None,
            image_shape=shapes.pop() if shapes else None,
            n_frames=n_frames,
            meta=parts[0].meta,
        )

    # ---------------------------------------------------------------------------------------
    # files
    # ---------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, **kwargs: Any) -> None:
        """Write the table in the format of the suffix (:func:`stacklab.smlm.formats.save_locs`).

        ``.csv``: ThunderSTORM CSV. ``.hdf5``/``.h5``: Picasso HDF5 plus its ``.yaml`` sidecar.
        """
        from .formats import save_locs

        save_locs(self, path, **kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs: Any) -> Locs:
        """Read a table in the format of the suffix (:func:`stacklab.smlm.formats.load_locs`)."""
        from .formats import load_locs

        return load_locs(path, **kwargs)
