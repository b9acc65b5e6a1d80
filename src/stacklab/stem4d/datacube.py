"""The 4D-STEM datacube container and helpers shared by the stem4d functions.

A :class:`DataCube` holds an array of shape ``(scan_row, scan_col, det_row, det_col)`` (NumPy,
CuPy, Dask, or a lazily read file dataset) together with its :class:`Calibration`. Every
processing function of :mod:`stacklab.stem4d` is array-first: it takes either a plain array or a
DataCube (whose ``data`` is used) and returns arrays. The DataCube methods are thin conveniences
that call those functions and carry the calibration along (binning by 2 doubles the detector
pixel size, and so on).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .. import backend
from ..errors import ShapeError

__all__ = [
    "Calibration",
    "DataCube",
    "ScanReshaped",
    "as_array",
    "set_scan_shape",
]

logger = logging.getLogger(__name__)


def _pair(value: Any, name: str) -> tuple[float, float]:
    """``value`` (a number or a pair) as a pair of finite positive floats."""
    if isinstance(value, int | float | np.integer | np.floating):
        pair = (float(value), float(value))
    else:
        try:
            pair = tuple(float(v) for v in value)
        except TypeError:
            raise TypeError(
                f"{name} must be a number or a pair (row, col), got {value!r}"
            ) from None
        if len(pair) != 2:
            raise ValueError(f"{name} must be a number or a pair (row, col), got {value!r}")
    if not all(math.isfinite(p) and p > 0 for p in pair):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class Calibration:
    """Pixel sizes, units and origin of a 4D-STEM scan.

    Attributes
    ----------
    q_pixel_size : (float, float)
        Size of one detector pixel along ``(det_row, det_col)`` (qy, qx), in ``q_units``.
    q_units : str
        Unit of the detector pixel size (``"pixels"``, ``"A^-1"``, ``"mrad"``...).
    r_pixel_size : (float, float)
        Step of the scan along ``(scan_row, scan_col)``, in ``r_units``.
    r_units : str
        Unit of the scan step (``"pixels"``, ``"A"``, ``"nm"``...).
    q_origin : (float, float), ndarray of shape (scan_row, scan_col, 2), or None
        ``(row, col)`` of the unscattered beam on the detector in detector pixels, either one
        position for the whole scan or one per scan position; None when unknown.
    """

    q_pixel_size: tuple[float, float] = (1.0, 1.0)
    q_units: str = "pixels"
    r_pixel_size: tuple[float, float] = (1.0, 1.0)
    r_units: str = "pixels"
    q_origin: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "q_pixel_size", _pair(self.q_pixel_size, "q_pixel_size"))
        object.__setattr__(self, "r_pixel_size", _pair(self.r_pixel_size, "r_pixel_size"))
        for name in ("q_units", "r_units"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string, got {getattr(self, name)!r}")
        origin = self.q_origin
        if origin is not None:
            arr = np.asarray(origin, dtype=np.float64)
            if arr.shape[-1:] != (2,) or arr.ndim not in (1, 3):
                raise ShapeError(
                    "q_origin must be (row, col) or an array of shape (scan_row, scan_col, 2), "
                    f"got shape {arr.shape}"
                )
            if not np.all(np.isfinite(arr)):
                raise ValueError("q_origin must be finite")
            object.__setattr__(self, "q_origin", tuple(arr) if arr.ndim == 1 else arr.copy())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Calibration):
            return NotImplemented
        same_origin = (self.q_origin is None and other.q_origin is None) or (
            self.q_origin is not None
            and other.q_origin is not None
            and np.array_equal(np.asarray(self.q_origin), np.asarray(other.q_origin))
        )
        return (
            self.q_pixel_size == other.q_pixel_size
            and self.q_units == other.q_units
            and self.r_pixel_size == other.r_pixel_size
            and self.r_units == other.r_units
            and same_origin
        )

    __hash__ = None  # type: ignore[assignment]

    def scaled_q(self, factor: Any) -> Calibration:
        """Calibration after the detector grid is coarsened by ``factor`` (int or (fy, fx)).

        The detector pixel size is multiplied by the factor and the origin mapped to the new grid
        (pixel centres at integers: ``new = (old - (f - 1) / 2) / f``). A factor < 1 describes
        upsampling.
        """
        fy, fx = _pair(factor, "factor")
        origin = self.q_origin
        if origin is not None:
            o = np.asarray(origin, dtype=np.float64)
            f = np.array([fy, fx])
            o = (o - (f - 1) / 2) / f
            origin = tuple(o) if o.ndim == 1 else o
        return replace(
            self,
            q_pixel_size=(self.q_pixel_size[0] * fy, self.q_pixel_size[1] * fx),
            q_origin=origin,
        )

    def scaled_r(self, factor: Any) -> Calibration:
        """Calibration after the scan is binned or thinned by ``factor`` (int or (fy, fx)).

        A per-position ``q_origin`` is dropped (it no longer matches the scan grid).
        """
        fy, fx = _pair(factor, "factor")
        origin = self.q_origin
        if origin is not None and np.asarray(origin).ndim == 3:
            origin = None
        return replace(
            self,
            r_pixel_size=(self.r_pixel_size[0] * fy, self.r_pixel_size[1] * fx),
            q_origin=origin,
        )

    def shifted_q(self, before: tuple[int, int]) -> Calibration:
        """Calibration after ``before = (rows, cols)`` pixels are added (or removed, negative) at
        the start of the detector axes: the origin moves with the content."""
        if self.q_origin is None:
            return self
        o = np.asarray(self.q_origin, dtype=np.float64) + np.asarray(before, dtype=np.float64)
        return replace(self, q_origin=tuple(o) if o.ndim == 1 else o)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON serializable) of the calibration."""
        origin = self.q_origin
        if origin is not None:
            origin = np.asarray(origin, dtype=np.float64).tolist()
        return {
            "q_pixel_size": list(self.q_pixel_size),
            "q_units": self.q_units,
            "r_pixel_size": list(self.r_pixel_size),
            "r_units": self.r_units,
            "q_origin": origin,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        keys = ("q_pixel_size", "q_units", "r_pixel_size", "r_units", "q_origin")
        return cls(**{k: d[k] for k in keys if k in d and d[k] is not None})


def as_array(cube: Any, name: str = "cube") -> Any:
    """The array behind ``cube`` (a :class:`DataCube` or any array-like) without reading it.

    Raises
    ------
    TypeError
        If ``cube`` has no ``shape``/``dtype`` (not an array).
    """
    if isinstance(cube, DataCube):
        return cube.data
    if isinstance(cube, list | tuple):
        return np.asarray(cube)
    if not (hasattr(cube, "shape") and hasattr(cube, "dtype")):
        raise TypeError(f"{name} must be an array or a DataCube, got {type(cube).__name__}")
    return cube


def check_cube(data: Any, name: str = "cube", *, min_ndim: int = 3) -> tuple[int, ...]:
    """Validate an array of frames ``(..., det_row, det_col)``; return its shape.

    Raises
    ------
    ShapeError
        If it has fewer than ``min_ndim`` axes or is empty.
    TypeError
        If its dtype is not real numeric.
    """
    shape = tuple(int(s) for s in data.shape)
    if len(shape) < min_ndim:
        want = (
            "(scan_row, scan_col, det_row, det_col)" if min_ndim >= 4 else "(..., det_row, det_col)"
        )
        raise ShapeError(f"{name} must have shape {want}, got {len(shape)}-D shape {shape}")
    if 0 in shape:
        raise ShapeError(f"{name} is empty (shape {shape})")
    kind = np.dtype(data.dtype).kind
    if kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {data.dtype}")
    return shape


class ScanReshaped:
    """A lazy 4D view ``(scan_row, scan_col, H, W)`` of a lazily read stack of frames.

    Wraps any frames-first array-like (h5py/zarr dataset, :class:`~stacklab.io.H5Stack`, memmap,
    a reader of this package) whose frames are in raster order. Slicing reads only the frames
    needed. It pickles when ``base`` does (H5Stack and the stem4d readers do).

    Parameters
    ----------
    base : array-like of shape (n_frames, H, W) or (a, b, H, W)
        The frames.
    scan_shape : (int, int)
        New scan shape; ``scan_row * scan_col`` must equal the number of frames.
    """

    def __init__(self, base: Any, scan_shape: Sequence[int]) -> None:
        frame = tuple(int(s) for s in base.shape[-2:])
        n = math.prod(int(s) for s in base.shape[:-2])
        scan = tuple(int(s) for s in scan_shape)
        if len(scan) != 2 or math.prod(scan) != n or min(scan) < 1:
            raise ShapeError(
                f"scan_shape {tuple(scan_shape)} does not hold the {n} frames of the data "
                f"(need scan_row * scan_col == {n})"
            )
        self.base = base
        self._base_scan = tuple(int(s) for s in base.shape[:-2])
        self.shape = (*scan, *frame)
        self.dtype = np.dtype(base.dtype)

    @property
    def ndim(self) -> int:
        """4."""
        return 4

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def _read_flat(self, lo: int, hi: int) -> np.ndarray:
        if len(self._base_scan) == 1:
            return np.asarray(self.base[lo:hi])
        per_row = self._base_scan[1]
        r0, r1 = lo // per_row, -(-hi // per_row)
        rows = np.asarray(self.base[r0:r1]).reshape(-1, *self.shape[2:])
        return rows[lo - r0 * per_row : hi - r0 * per_row]

    def __getitem__(self, index: Any) -> np.ndarray:
        from ..io._common import normalize_index

        index = normalize_index(index, 4)
        index = (*index, *([slice(None)] * (4 - len(index))))
        sel_r = np.arange(self.shape[0])[index[0]]
        sel_c = np.arange(self.shape[1])[index[1]]
        rows, cols = np.atleast_1d(sel_r), np.atleast_1d(sel_c)
        flat = rows[:, None] * self.shape[1] + cols[None, :]
        if flat.size == 0:
            out = np.empty((*flat.shape, *self.shape[2:]), self.dtype)
        else:
            lo, hi = int(flat.min()), int(flat.max()) + 1
            out = self._read_flat(lo, hi)[flat - lo]
        out = out[(slice(None), slice(None), *index[2:])]
        squeeze = tuple(a for a, s in enumerate((sel_r, sel_c)) if np.ndim(s) == 0)
        return out.squeeze(axis=squeeze) if squeeze else out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ScanReshaped({self.base!r}, scan_shape={self.shape[:2]})"


def set_scan_shape(data: Any, scan_shape: Sequence[int]) -> Any:
    """Give a stack of frames (or a 4D cube) a new 2D scan shape, in raster (C) order.

    Parameters
    ----------
    data : array-like of shape (n_frames, H, W) or (a, b, H, W), or DataCube
        NumPy/CuPy/Dask arrays are reshaped (a view where possible); lazily read datasets are
        wrapped in a :class:`ScanReshaped` view (nothing is read).
    scan_shape : (int, int)
        ``(scan_row, scan_col)``; frame ``k`` goes to ``(k // scan_col, k % scan_col)``.

    Returns
    -------
    array-like of shape (scan_row, scan_col, H, W)
        Same kind of array as the input (a DataCube for DataCube input).

    Raises
    ------
    ShapeError
        If ``scan_row * scan_col`` differs from the number of frames (py4DSTEM only prints a
        message and returns the cube unchanged).
    """
    if isinstance(data, DataCube):
        return data.with_data(set_scan_shape(data.data, scan_shape))
    arr = as_array(data, "data")
    shape = check_cube(arr, "data")
    try:
        scan = tuple(int(s) for s in scan_shape)
    except TypeError:
        raise TypeError(f"scan_shape must be a pair of ints, got {scan_shape!r}") from None
    n = math.prod(shape[:-2])
    if len(scan) != 2 or min(scan) < 1 or math.prod(scan) != n:
        raise ShapeError(
            f"scan_shape {tuple(scan_shape)} does not hold the {n} frames of data with shape "
            f"{shape}: need two positive ints with scan_row * scan_col == {n}"
        )
    if isinstance(arr, np.ndarray) or backend.is_cupy(arr) or backend.is_dask(arr):
        return arr.reshape(*scan, *shape[-2:])
    return ScanReshaped(arr, scan)


@dataclass(eq=False)
class DataCube:
    """A 4D-STEM datacube: frames ``(scan_row, scan_col, det_row, det_col)`` plus calibration.

    Parameters
    ----------
    data : array-like of shape (scan_row, scan_col, det_row, det_col)
        NumPy or CuPy array (in memory), Dask array, or a lazily read dataset (h5py/zarr,
        :class:`~stacklab.io.H5Stack`, the stem4d file readers) for files larger than memory.
        Never copied or modified.
    calibration : Calibration, optional
        Pixel sizes, units and origin (default: 1 pixel per pixel).
    name : str
        A label (used as the group name when saved to EMD).
    metadata : dict
        Free-form metadata from the file (detector settings...).

    Notes
    -----
    Methods that transform the data (:meth:`bin_diffraction`, :meth:`bin_scan`...) return a
    **new** DataCube; the original is unchanged (py4DSTEM mutates and returns its argument).
    """

    data: Any
    calibration: Calibration = field(default_factory=Calibration)
    name: str = "datacube"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = as_array(self.data, "data")
        if len(self.data.shape) != 4:
            raise ShapeError(
                "data must have shape (scan_row, scan_col, det_row, det_col), got "
                f"{self.data.ndim}-D shape {tuple(self.data.shape)}; use set_scan_shape for a "
                "stack of frames"
            )
        check_cube(self.data, "data", min_ndim=4)
        if not isinstance(self.calibration, Calibration):
            raise TypeError(
                f"calibration must be a Calibration, got {type(self.calibration).__name__}"
            )
        origin = self.calibration.q_origin
        if origin is not None and np.asarray(origin).ndim == 3:
            if np.asarray(origin).shape[:2] != self.scan_shape:
                raise ShapeError(
                    f"calibration.q_origin has shape {np.asarray(origin).shape}, expected "
                    f"{(*self.scan_shape, 2)} for this scan"
                )

    # -- shape and storage ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(scan_row, scan_col, det_row, det_col)``."""
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def scan_shape(self) -> tuple[int, int]:
        """``(scan_row, scan_col)``."""
        return self.shape[:2]

    @property
    def det_shape(self) -> tuple[int, int]:
        """``(det_row, det_col)``."""
        return self.shape[2:]

    @property
    def n_frames(self) -> int:
        """``scan_row * scan_col``."""
        return self.scan_shape[0] * self.scan_shape[1]

    @property
    def dtype(self) -> np.dtype:
        """Data type of the frames."""
        return np.dtype(self.data.dtype)

    @property
    def nbytes(self) -> int:
        """Size of the data in bytes (whether or not it is in memory)."""
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def storage(self) -> str:
        """``"numpy"``, ``"cupy"``, ``"dask"`` or ``"lazy"`` (read from a file on demand)."""
        if backend.is_cupy(self.data):
            return "cupy"
        if backend.is_dask(self.data):
            return "dask"
        if isinstance(self.data, np.ndarray) and not isinstance(self.data, np.memmap):
            return "numpy"
        return "lazy"

    @property
    def is_lazy(self) -> bool:
        """True when the data are not held in memory (Dask or file-backed)."""
        return self.storage in ("dask", "lazy")

    def __getitem__(self, index: Any) -> Any:
        """Index the data like an array (lazy data are read)."""
        return self.data[index]

    def frame(self, row: int, col: int) -> Any:
        """The diffraction pattern at scan position ``(row, col)`` as an in-memory array."""
        for value, n, what in ((row, self.scan_shape[0], "row"), (col, self.scan_shape[1], "col")):
            if not isinstance(value, int | np.integer) or not -n <= value < n:
                raise IndexError(f"{what}={value!r} is outside the scan (size {n})")
        out = self.data[int(row), int(col)]
        if backend.is_dask(out):
            out = out.compute()
        return out

    def to_numpy(self) -> np.ndarray:
        """All data as a NumPy array (reads a file, computes Dask, copies from the GPU)."""
        return backend.to_numpy(np.asarray(self.data) if self.storage == "lazy" else self.data)

    def with_data(
        self, data: Any, calibration: Calibration | None = None, **changes: Any
    ) -> DataCube:
        """A new DataCube with other data (and optionally calibration, name, metadata)."""
        return DataCube(
            data,
            self.calibration if calibration is None else calibration,
            name=changes.get("name", self.name),
            metadata=dict(changes.get("metadata", self.metadata)),
        )

    def __repr__(self) -> str:
        c = self.calibration
        return (
            f"DataCube(shape={self.shape}, dtype={self.dtype}, storage={self.storage!r}, "
            f"q_pixel_size={c.q_pixel_size} {c.q_units}, r_pixel_size={c.r_pixel_size} "
            f"{c.r_units})"
        )

    # -- reductions ----------------------------------------------------------------------------
    def mean_pattern(self, *, chunk: int = 256, progress: bool | None = None) -> Any:
        """Mean diffraction pattern (det_row, det_col), float64; see :func:`mean_pattern`."""
        from .reduce import mean_pattern

        return mean_pattern(self.data, chunk=chunk, progress=progress)

    def max_pattern(self, *, chunk: int = 256, progress: bool | None = None) -> Any:
        """Maximum diffraction pattern (det_row, det_col); see :func:`max_pattern`."""
        from .reduce import max_pattern

        return max_pattern(self.data, chunk=chunk, progress=progress)

    def virtual_image(self, mask: Any, *, chunk: int = 256, progress: bool | None = None) -> Any:
        """Virtual detector image (scan_row, scan_col); see :func:`virtual_image`."""
        from .reduce import virtual_image

        return virtual_image(self.data, mask, chunk=chunk, progress=progress)

    # -- transforms returning new cubes ----------------------------------------------------------
    def bin_diffraction(self, factor: Any, **kwargs: Any) -> DataCube:
        """Bin the detector axes (sums widened, no wrap-around); see :func:`bin_diffraction`."""
        from .transforms import bin_diffraction

        return self.with_data(
            bin_diffraction(self.data, factor, **kwargs), self.calibration.scaled_q(factor)
        )

    def bin_scan(self, factor: Any, **kwargs: Any) -> DataCube:
        """Bin the scan axes (sums widened); see :func:`bin_scan`."""
        from .transforms import bin_scan

        return self.with_data(
            bin_scan(self.data, factor, **kwargs), self.calibration.scaled_r(factor)
        )

    def thin_scan(self, factor: Any) -> DataCube:
        """Keep every ``factor``-th scan position; see :func:`thin_scan`."""
        from .transforms import thin_scan

        return self.with_data(thin_scan(self.data, factor), self.calibration.scaled_r(factor))

    def set_scan_shape(self, scan_shape: Sequence[int]) -> DataCube:
        """Reshape the scan (raster order); see :func:`set_scan_shape`."""
        return set_scan_shape(self, scan_shape)

    def save(self, path: Any, **kwargs: Any) -> Any:
        """Write to an EMD 1.0 file readable by py4DSTEM; see :func:`write_emd`."""
        from .readers.emd import write_emd

        return write_emd(path, self, **kwargs)
