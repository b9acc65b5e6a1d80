"""Electron counting: thresholds, the counting kernel and the sparse event list.

Algorithm (per frame, vectorized over blocks of frames):

1. subtract the dark reference (float32) and mask bad pixels;
2. an *event* is a pixel whose value ``v`` satisfies ``background < v <= xray`` and that is
   the maximum of its 3x3 neighbourhood, with deterministic tie-breaking: ``v`` must be
   **strictly** greater than the neighbours that come before it in raster order (up-left, up,
   up-right, left) and **greater or equal** to those after it (right, down-left, down,
   down-right). A plateau of equal values therefore gives one event, at its first pixel in raster
   order;
3. optionally the sub-pixel centroid of the positive dark-subtracted values in the 3x3
   neighbourhood is recorded, and coordinates are binned.

The thresholds come from :func:`estimate_thresholds`: the read-noise mean and sigma are estimated
from the *core* of the histogram of sampled dark-subtracted frames (median and MAD, refined by
iterative 3-sigma clipping), so electrons, x-rays and hot pixels in the tails do not inflate them
(py4DSTEM fits a histogram whose step x-rays inflate). The x-ray threshold is a multiple of the
median single-electron peak. Hot pixels, i.e. pixels that fire in a large fraction of frames
compared with their neighbours, are masked.

Events are stored in :class:`ElectronEvents`: per-frame offsets plus ``rows``/``cols`` (and
optional sub-pixel positions), convertible to and from a dense counted cube and saved to HDF5.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import backend, engine
from ..backend import get_xp, is_cupy, is_dask
from ..errors import FileFormatError, ShapeError
from .datacube import DataCube, as_array, check_cube

__all__ = [
    "CountingThresholds",
    "ElectronEvents",
    "count_block",
    "count_electrons",
    "estimate_thresholds",
    "robust_noise",
    "sample_frames",
]

logger = logging.getLogger(__name__)

_EVENTS_FORMAT = "stacklab.ElectronEvents"
_EVENTS_VERSION = 1

# Neighbour offsets (dy, dx) with the comparison used for tie-breaking: True = strict (>).
_NEIGHBOURS = (
    (-1, -1, True),
    (-1, 0, True),
    (-1, 1, True),
    (0, -1, True),
    (0, 1, False),
    (1, -1, False),
    (1, 0, False),
    (1, 1, False),
)


# ------------------------------------------------------------------------------------------------
# The sparse event list
# ------------------------------------------------------------------------------------------------


def _shape_tuple(value: Any, name: str, ndim: int | None = None) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in value)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of ints, got {value!r}") from None
    if (ndim is not None and len(shape) != ndim) or not shape or min(shape) < 1:
        want = f"{ndim} " if ndim else ""
        raise ShapeError(f"{name} must be {want}positive ints, got {tuple(value)}")
    return shape


@dataclass(frozen=True, eq=False)
class ElectronEvents:
    """Counted electrons of a scan as a compact sparse list.

    Events of frame ``k`` (flat raster index of the scan position) are
    ``rows[offsets[k]:offsets[k+1]]``, ``cols[...]`` (and ``subpixel[...]``), in raster order
    within the frame.

    Attributes
    ----------
    offsets : ndarray of int64, shape (n_frames + 1,)
        Start of each frame's events; ``offsets[0] == 0`` and ``offsets[-1] == n_events``.
    rows, cols : ndarray of int32, shape (n_events,)
        Detector pixel of each event (``0 <= rows < det_shape[0]``...).
    scan_shape : tuple of int
        Scan shape, usually ``(scan_row, scan_col)``; ``n_frames = prod(scan_shape)``.
    det_shape : (int, int)
        Detector shape the coordinates refer to (after any counting binning).
    subpixel : ndarray of float32, shape (n_events, 2), or None
        Sub-pixel ``(row, col)`` centroids in the same pixel units (pixel centres at integers).
    metadata : dict
        Thresholds and parameters of the counting run (JSON-serializable values).
    """

    offsets: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    scan_shape: tuple[int, ...]
    det_shape: tuple[int, int]
    subpixel: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        scan = _shape_tuple(self.scan_shape, "scan_shape")
        det = _shape_tuple(self.det_shape, "det_shape", 2)
        object.__setattr__(self, "scan_shape", scan)
        object.__setattr__(self, "det_shape", det)
        offsets = np.asarray(backend.to_numpy(self.offsets), dtype=np.int64)
        rows = np.asarray(backend.to_numpy(self.rows), dtype=np.int32)
        cols = np.asarray(backend.to_numpy(self.cols), dtype=np.int32)
        n_frames = math.prod(scan)
        if offsets.shape != (n_frames + 1,):
            raise ShapeError(
                f"offsets must have shape ({n_frames + 1},) for scan_shape {scan}, "
                f"got {offsets.shape}"
            )
        if rows.ndim != 1 or cols.shape != rows.shape:
            raise ShapeError(
                f"rows and cols must be 1-D of equal length, got {rows.shape} and {cols.shape}"
            )
        if offsets[0] != 0 or offsets[-1] != rows.size or np.any(np.diff(offsets) < 0):
            raise ValueError(
                f"offsets must start at 0, be non-decreasing and end at n_events={rows.size}"
            )
        if rows.size and (
            rows.min() < 0 or cols.min() < 0 or rows.max() >= det[0] or cols.max() >= det[1]
        ):
            raise ValueError(f"event coordinates fall outside det_shape {det}")
        sub = self.subpixel
        if sub is not None:
            sub = np.asarray(backend.to_numpy(sub), dtype=np.float32)
            if sub.shape != (rows.size, 2):
                raise ShapeError(f"subpixel must have shape ({rows.size}, 2), got {sub.shape}")
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "cols", cols)
        object.__setattr__(self, "subpixel", sub)
        object.__setattr__(self, "metadata", dict(self.metadata))

    # -- basic properties -----------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        """Number of scan positions."""
        return self.offsets.size - 1

    @property
    def n_events(self) -> int:
        """Total number of events."""
        return int(self.rows.size)

    def __len__(self) -> int:
        return self.n_events

    def __repr__(self) -> str:
        sub = ", subpixel" if self.subpixel is not None else ""
        return (
            f"ElectronEvents({self.n_events} events, scan_shape={self.scan_shape}, "
            f"det_shape={self.det_shape}{sub})"
        )

    def frame_index(self) -> np.ndarray:
        """Flat scan index of every event, int64 of shape (n_events,)."""
        return np.repeat(np.arange(self.n_frames, dtype=np.int64), np.diff(self.offsets))

    def counts_per_frame(self) -> np.ndarray:
        """Number of events per scan position, int64 of shape ``scan_shape``."""
        return np.diff(self.offsets).reshape(self.scan_shape)

    def _flat(self, index: Any) -> int:
        if isinstance(index, tuple):
            if len(index) != len(self.scan_shape):
                raise IndexError(f"index {index} does not match scan_shape {self.scan_shape}")
            for i, n in zip(index, self.scan_shape):
                if not -n <= int(i) < n:
                    raise IndexError(f"index {index} is outside scan_shape {self.scan_shape}")
            return int(
                np.ravel_multi_index(
                    tuple(int(i) % n for i, n in zip(index, self.scan_shape)), self.scan_shape
                )
            )
        k = int(index)
        if not -self.n_frames <= k < self.n_frames:
            raise IndexError(f"frame {k} is outside the {self.n_frames} frames")
        return k % self.n_frames

    def frame(self, index: int | tuple[int, ...]) -> dict[str, np.ndarray]:
        """Events of one scan position (flat index or ``(scan_row, scan_col)``).

        Returns
        -------
        dict
            ``{"row": (k,), "col": (k,)}`` plus ``"subpixel": (k, 2)`` when recorded.
        """
        k = self._flat(index)
        sl = slice(int(self.offsets[k]), int(self.offsets[k + 1]))
        out = {"row": self.rows[sl], "col": self.cols[sl]}
        if self.subpixel is not None:
            out["subpixel"] = self.subpixel[sl]
        return out

    def sum_pattern(self) -> np.ndarray:
        """Total counts per detector pixel, int64 of shape ``det_shape``."""
        flat = self.rows.astype(np.int64) * self.det_shape[1] + self.cols
        return np.bincount(flat, minlength=math.prod(self.det_shape)).reshape(self.det_shape)

    # -- dense conversion -------------------------------------------------------------------------
    def to_dense(self, dtype: Any = np.uint16, *, frames_per_block: int = 4096) -> np.ndarray:
        """The counted cube: number of events per pixel of every frame.

        Parameters
        ----------
        dtype : dtype
            Integer (or bool) dtype of the result (default uint16). A dtype too small for the
            largest count raises instead of wrapping around.
        frames_per_block : int
            Frames filled per vectorized step (bounds temporary memory).

        Returns
        -------
        ndarray of shape (*scan_shape, det_row, det_col)
        """
        dtype = np.dtype(dtype)
        if dtype.kind not in "biuf":
            raise TypeError(f"dtype must be numeric, got {dtype}")
        n_pix = math.prod(self.det_shape)
        out = np.zeros((self.n_frames, n_pix), dtype=dtype)
        limit = 1 if dtype.kind == "b" else (np.iinfo(dtype).max if dtype.kind in "iu" else None)
        step = max(1, int(frames_per_block))
        for f0 in range(0, self.n_frames, step):
            f1 = min(f0 + step, self.n_frames)
            e0, e1 = int(self.offsets[f0]), int(self.offsets[f1])
            if e1 == e0:
                continue
            local = np.repeat(
                np.arange(f1 - f0, dtype=np.int64), np.diff(self.offsets[f0 : f1 + 1])
            )
            flat = local * n_pix + self.rows[e0:e1].astype(np.int64) * self.det_shape[1]
            flat += self.cols[e0:e1]
            counts = np.bincount(flat, minlength=(f1 - f0) * n_pix)
            if limit is not None and counts.max() > limit:
                raise ValueError(
                    f"dtype {dtype} cannot hold {int(counts.max())} events in one pixel; "
                    "use a wider dtype"
                )
            out[f0:f1] = counts.reshape(f1 - f0, n_pix).astype(dtype)
        return out.reshape(*self.scan_shape, *self.det_shape)

    @classmethod
    def from_dense(
        cls, counted: Any, *, chunk: int = 256, progress: bool | None = None
    ) -> ElectronEvents:
        """Build the event list of a dense counted cube (inverse of :meth:`to_dense`).

        A pixel holding ``n > 1`` counts gives ``n`` events at that pixel.

        Parameters
        ----------
        counted : array-like of shape (*scan_shape, det_row, det_col) or DataCube
            Non-negative integer or boolean counts; NumPy, CuPy, Dask or file-backed.
        chunk, progress
            As in :func:`stacklab.engine.collect_frames`.

        Raises
        ------
        ValueError
            If ``counted`` holds negative or non-integer values.
        """
        data = as_array(counted, "counted")
        shape = check_cube(data, "counted")
        if np.dtype(data.dtype).kind == "f":
            logger.debug("from_dense: float counts are checked to be whole numbers")
        rows = engine.collect_frames(_dense_kernel, data, chunk=chunk, progress=progress)
        scan_shape, det = shape[:-2], shape[-2:]
        frame = np.asarray(backend.to_numpy(rows["frame"]), dtype=np.int64)
        offsets = np.zeros(math.prod(scan_shape) + 1, dtype=np.int64)
        np.cumsum(np.bincount(frame, minlength=math.prod(scan_shape)), out=offsets[1:])
        return cls(offsets, rows["row"], rows["col"], scan_shape, det)

    # -- binning ----------------------------------------------------------------------------------
    def binned(self, factor: int) -> ElectronEvents:
        """Events on a detector grid coarsened by an integer ``factor`` (remainder dropped)."""
        if isinstance(factor, bool) or not isinstance(factor, int | np.integer) or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor!r}")
        f = int(factor)
        det = (self.det_shape[0] // f, self.det_shape[1] // f)
        if min(det) < 1:
            raise ShapeError(f"factor {f} is larger than det_shape {self.det_shape}")
        r, c = self.rows // f, self.cols // f
        keep = (r < det[0]) & (c < det[1])
        frame = self.frame_index()[keep]
        offsets = np.zeros_like(self.offsets)
        np.cumsum(np.bincount(frame, minlength=self.n_frames), out=offsets[1:])
        sub = None
        if self.subpixel is not None:
            sub = (self.subpixel[keep] - (f - 1) / 2.0) / f
        meta = dict(self.metadata, binning=int(self.metadata.get("binning", 1)) * f)
        return ElectronEvents(offsets, r[keep], c[keep], self.scan_shape, det, sub, meta)

    # -- files ------------------------------------------------------------------------------------
    def save(
        self, path: str | os.PathLike, *, group: str = "events", compression: Any = "gzip"
    ) -> Any:
        """Write the events to an HDF5 file atomically (temporary name, then rename).

        Layout: group ``group`` with attributes ``format`` (``"stacklab.ElectronEvents"``),
        ``version``, ``scan_shape``, ``det_shape``, ``metadata`` (JSON) and datasets
        ``offsets``, ``rows``, ``cols`` and optionally ``subpixel``.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        import h5py

        from ..io import atomic_path

        path = os.fspath(path)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            g = f.create_group(group)
            g.attrs["format"] = _EVENTS_FORMAT
            g.attrs["version"] = _EVENTS_VERSION
            g.attrs["scan_shape"] = np.asarray(self.scan_shape, dtype=np.int64)
            g.attrs["det_shape"] = np.asarray(self.det_shape, dtype=np.int64)
            g.attrs["metadata"] = json.dumps(self.metadata, default=_json_default)
            kw = {"compression": compression} if compression else {}
            g.create_dataset("offsets", data=self.offsets, **kw)
            g.create_dataset("rows", data=self.rows, **kw)
            g.create_dataset("cols", data=self.cols, **kw)
            if self.subpixel is not None:
                g.create_dataset("subpixel", data=self.subpixel, **kw)
        from pathlib import Path

        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, group: str = "events") -> ElectronEvents:
        """Read events written by :meth:`save`.

        Raises
        ------
        FileFormatError
            If the file is missing, not HDF5, or ``group`` is not an event list.
        """
        import h5py

        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileFormatError(f"event file not found: {path!r}")
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise FileFormatError(f"{path!r} is not a readable HDF5 file: {exc}") from exc
        with f:
            g = f.get(group)
            if not isinstance(g, h5py.Group) or g.attrs.get("format") != _EVENTS_FORMAT:
                raise FileFormatError(
                    f"{path!r} has no electron event list in group {group!r} "
                    f"(groups: {list(f.keys())})"
                )
            version = int(g.attrs.get("version", 0))
            if version > _EVENTS_VERSION:
                raise FileFormatError(
                    f"{path!r}: event list version {version} is newer than this stacklab "
                    f"({_EVENTS_VERSION})"
                )
            try:
                return cls(
                    g["offsets"][()],
                    g["rows"][()],
                    g["cols"][()],
                    tuple(int(s) for s in g.attrs["scan_shape"]),
                    tuple(int(s) for s in g.attrs["det_shape"]),
                    g["subpixel"][()] if "subpixel" in g else None,
                    json.loads(g.attrs.get("metadata", "{}")),
                )
            except (KeyError, ValueError, ShapeError) as exc:
                raise FileFormatError(f"{path!r}: corrupt event list: {exc}") from exc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in event metadata")


def _dense_kernel(block: Any, first: int) -> dict[str, Any]:
    xp = get_xp(block)
    if block.dtype.kind == "b":
        counts = block.astype(xp.int64)
    else:
        counts = block
        if block.dtype.kind in "if":
            if bool(xp.any(block < 0)):
                raise ValueError("counted must not hold negative values")
            if block.dtype.kind == "f" and bool(xp.any(block != xp.floor(block))):
                raise ValueError("counted must hold whole numbers of events")
        counts = counts.astype(xp.int64)
    f, r, c = xp.nonzero(counts)
    n = counts[f, r, c]
    if n.size and bool(xp.any(n > 1)):
        f, r, c = xp.repeat(f, n), xp.repeat(r, n), xp.repeat(c, n)
    return {
        "frame": backend.to_numpy(f).astype(np.int64) + first,
        "row": backend.to_numpy(r).astype(np.int32),
        "col": backend.to_numpy(c).astype(np.int32),
    }


# ------------------------------------------------------------------------------------------------
# Noise and thresholds
# ------------------------------------------------------------------------------------------------


def robust_noise(
    values: Any, *, clip: float = 3.0, n_iter: int = 5, max_samples: int = 1 << 15
) -> tuple[float, float]:
    """Mean and standard deviation of the Gaussian core of a sample.

    Starts from the median and ``1.4826 * MAD`` and refines them by iterative ``clip``-sigma
    clipping with the truncation correction of a normal distribution, so a minority of large
    values (electrons, x-rays, hot pixels) in the tails does not change the result.

    Parameters
    ----------
    values : array-like
        Samples (any shape; NaN and infinities are ignored), e.g. dark-subtracted pixel values.
    clip : float
        Clipping half-width in sigmas (default 3).
    n_iter : int
        Clipping iterations.
    max_samples : int
        Larger inputs are subsampled with an even stride to this many values (the relative
        precision of sigma is then about ``1 / sqrt(2 * max_samples)``, 0.4 %).

    Returns
    -------
    (float, float)
        ``(mean, sigma)`` of the core, in the units of ``values``.

    Raises
    ------
    ValueError
        If there are no finite values or their core has zero spread.
    """
    from scipy.special import erf

    v = np.asarray(backend.to_numpy(values)).ravel()
    if v.size > max_samples:  # a deterministic, evenly spread subsample is plenty
        v = v[:: -(-v.size // max_samples)]
    v = v.astype(np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("values holds no finite samples to estimate the noise from")
    mu = float(np.median(v))
    sigma = 1.4826 * float(np.median(np.abs(v - mu)))
    if sigma == 0:
        lo, hi = np.percentile(v, [15.865, 84.135])
        sigma = (hi - lo) / 2
    if sigma == 0:
        raise ValueError(
            "the noise of the data has zero spread (constant frames?); pass thresholds explicitly"
        )
    # std of a standard normal truncated to [-clip, clip]
    k = clip
    phi = math.exp(-k * k / 2) / math.sqrt(2 * math.pi)
    mass = float(erf(k / math.sqrt(2)))
    shrink = math.sqrt(1 - 2 * k * phi / mass)
    for _ in range(n_iter):
        core = v[np.abs(v - mu) < clip * sigma]
        if core.size < 10:
            break
        new_mu, new_sigma = float(core.mean()), float(core.std()) / shrink
        if new_sigma <= 0:
            break
        done = abs(new_sigma - sigma) <= 1e-6 * sigma and abs(new_mu - mu) <= 1e-6 * sigma
        mu, sigma = new_mu, new_sigma
        if done:
            break
    return mu, sigma


@dataclass(frozen=True, eq=False)
class CountingThresholds:
    """Thresholds of an electron-counting run, in dark-subtracted ADU.

    Attributes
    ----------
    background : float
        Lower threshold: a pixel must exceed it to be an event (``noise_mean + n_sigma *
        noise_sigma`` when estimated).
    xray : float
        Upper threshold: events above it are rejected as x-rays (``inf``: no rejection).
    noise_mean, noise_sigma : float
        Mean and sigma of the read noise after dark subtraction.
    electron_peak : float
        Median peak value of single-electron events in the sampled frames (NaN if none).
    hot_mask : ndarray of bool, shape (det_row, det_col), or None
        Pixels found to fire in most frames (masked during counting).
    n_samples : int
        Number of frames the estimate used.
    """

    background: float
    xray: float = math.inf
    noise_mean: float = math.nan
    noise_sigma: float = math.nan
    electron_peak: float = math.nan
    hot_mask: np.ndarray | None = None
    n_samples: int = 0

    def __post_init__(self) -> None:
        if not math.isfinite(self.background):
            raise ValueError(f"background threshold must be finite, got {self.background}")
        if not self.xray > self.background:
            raise ValueError(
                f"xray threshold ({self.xray}) must be larger than the background threshold "
                f"({self.background})"
            )

    def to_dict(self) -> dict[str, Any]:
        """The scalar fields as a JSON-friendly dict (without the mask)."""
        return {
            "background": float(self.background),
            "xray": float(self.xray) if math.isfinite(self.xray) else None,
            "noise_mean": float(self.noise_mean),
            "noise_sigma": float(self.noise_sigma),
            "electron_peak": float(self.electron_peak),
            "n_hot_pixels": 0 if self.hot_mask is None else int(np.count_nonzero(self.hot_mask)),
            "n_samples": int(self.n_samples),
        }


def sample_frames(cube: Any, n: int, *, seed: int = 0, frames: Any = None) -> Any:
    """Read a reproducible random selection of frames.

    Parameters
    ----------
    cube : array-like of shape (..., det_row, det_col) or DataCube
        NumPy, CuPy, Dask or file-backed stack.
    n : int
        Number of frames (all frames if the stack has fewer).
    seed : int
        Seed of ``numpy.random.default_rng``; the frames are
        ``sorted(rng.choice(n_frames, n, replace=False))``.
    frames : array of int, optional
        Explicit flat frame indices (overrides ``n`` and ``seed``).

    Returns
    -------
    ndarray of shape (k, det_row, det_col)
        In memory, on the input's device (NumPy for Dask/file input).
    """
    data = as_array(cube)
    shape = check_cube(data)
    scan, det = shape[:-2], shape[-2:]
    n_frames = math.prod(scan)
    if frames is None:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(n_frames, size=min(int(n), n_frames), replace=False))
    else:
        idx = np.asarray(frames, dtype=np.int64).ravel()
        if idx.size == 0 or idx.min() < 0 or idx.max() >= n_frames:
            raise ValueError(f"frames must be indices in [0, {n_frames}), got {frames!r}")
    multi = np.unravel_index(idx, scan)
    if is_dask(data):
        return np.asarray(data.vindex[multi].compute())
    if isinstance(data, np.ndarray) or is_cupy(data):
        return data.reshape(n_frames, *det)[idx]
    out = [np.asarray(data[tuple(int(m[i]) for m in multi)]) for i in range(idx.size)]
    return np.stack(out)


def _check_dark(dark: Any, det_shape: tuple[int, int], xp: Any) -> Any:
    if dark is None:
        return None
    if isinstance(dark, DataCube):
        raise TypeError("dark must be a 2-D array (det_row, det_col), got a DataCube")
    d = backend.to_numpy(dark) if xp is np else xp.asarray(dark)
    d = xp.asarray(d)
    if d.dtype.kind not in "biuf":
        raise TypeError(f"dark must be a real numeric array, got dtype {d.dtype}")
    if d.ndim == 0:
        d = xp.full(det_shape, float(d), dtype=xp.float32)
    if tuple(d.shape) != tuple(det_shape):
        raise ShapeError(
            f"dark must have the detector shape {tuple(det_shape)}, got {tuple(d.shape)}"
        )
    d = d.astype(xp.float32)
    if not bool(xp.all(xp.isfinite(d))):
        raise ValueError("dark must be finite (no NaN or inf)")
    return d


def _check_mask(mask: Any, det_shape: tuple[int, int], xp: Any, name: str = "mask") -> Any:
    if mask is None:
        return None
    m = xp.asarray(backend.to_numpy(mask) if xp is np else mask)
    if m.dtype != bool:
        raise TypeError(f"{name} must be a boolean array (True = bad pixel), got dtype {m.dtype}")
    if tuple(m.shape) != tuple(det_shape):
        raise ShapeError(f"{name} must have shape {tuple(det_shape)}, got {tuple(m.shape)}")
    return m


def estimate_thresholds(
    cube: Any,
    dark: Any = None,
    *,
    n_sigma: float = 5.0,
    xray: float | str | None = "auto",
    xray_factor: float = 5.0,
    n_samples: int = 40,
    seed: int = 0,
    frames: Any = None,
    mask: Any = None,
    hot_pixels: bool = True,
    hot_fraction: float = 0.3,
) -> CountingThresholds:
    """Estimate counting thresholds (and hot pixels) from a sample of frames.

    Parameters
    ----------
    cube : array-like of shape (scan_row, scan_col, det_row, det_col) or DataCube
        Raw frames (any numeric dtype; NumPy, CuPy, Dask or file-backed).
    dark : array of shape (det_row, det_col), optional
        Dark reference in ADU (float or integer; converted to float32). None: zero.
    n_sigma : float
        Background threshold in noise sigmas above the noise mean (default 5).
    xray : float, "auto" or None
        Upper threshold in dark-subtracted ADU; ``"auto"`` (default): ``noise_mean +
        xray_factor * (median electron peak - noise_mean)``; None: no x-ray rejection.
    xray_factor : float
        Multiple of the median single-electron peak above which an event is an x-ray.
    n_samples : int
        Frames sampled (see :func:`sample_frames`).
    seed : int
        Seed of the frame selection.
    frames : array of int, optional
        Explicit flat indices of the frames to sample.
    mask : bool array of shape (det_row, det_col), optional
        Known bad pixels (True), excluded from the statistics.
    hot_pixels : bool
        Detect hot pixels: pixels above the background threshold in a fraction of the sampled
        frames that exceeds the median fraction of their 8 neighbours by more than
        ``hot_fraction``.
    hot_fraction : float
        See ``hot_pixels`` (default 0.3).

    Returns
    -------
    CountingThresholds

    Raises
    ------
    ValueError
        For non-positive ``n_sigma``/``xray_factor`` or constant data.
    ShapeError
        If ``dark`` or ``mask`` does not have the detector shape.
    """
    for value, name in ((n_sigma, "n_sigma"), (xray_factor, "xray_factor")):
        if not (isinstance(value, int | float | np.number) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not 0 < hot_fraction <= 1:
        raise ValueError(f"hot_fraction must be in (0, 1], got {hot_fraction!r}")
    data = as_array(cube)
    shape = check_cube(data)
    det = shape[-2:]
    sample = sample_frames(data, n_samples, seed=seed, frames=frames)
    xp = get_xp(sample)
    d = _check_dark(dark, det, xp)
    m = _check_mask(mask, det, xp)
    work = sample.astype(xp.float32)
    if d is not None:
        work = work - d
    good = work if m is None else work[:, ~m]
    mu, sigma = robust_noise(good)
    background = mu + float(n_sigma) * sigma

    hot = None
    if hot_pixels and work.shape[0] >= 4:
        from .hotpix import local_median

        firing = xp.mean(work > background, axis=0, dtype=xp.float64)
        excess = firing - local_median(firing, exclude_neighbours=False)
        hot = backend.to_numpy(excess > hot_fraction)
        if m is not None:
            hot &= ~backend.to_numpy(m)
        if hot.any():
            logger.info("estimate_thresholds: %d hot pixel(s) fire in most frames", hot.sum())
        else:
            hot = None
    full_mask = _merge_masks(m, hot, xp)

    peak = math.nan
    ev = count_block(work, None, background=background, mask=full_mask)
    if ev["row"].size:
        peaks = work[ev["frame"], ev["row"], ev["col"]]
        peak = float(np.median(backend.to_numpy(peaks)))
    if xray == "auto":
        xray_thr = mu + float(xray_factor) * (peak - mu) if math.isfinite(peak) else math.inf
        if not math.isfinite(peak):
            logger.warning("estimate_thresholds: no electrons in the sampled frames; no x-ray cut")
    elif xray is None:
        xray_thr = math.inf
    elif isinstance(xray, int | float | np.number):
        xray_thr = float(xray)
    else:
        raise ValueError(f"xray must be a number, 'auto' or None, got {xray!r}")
    result = CountingThresholds(
        background=background,
        xray=xray_thr,
        noise_mean=mu,
        noise_sigma=sigma,
        electron_peak=peak,
        hot_mask=hot,
        n_samples=int(work.shape[0]),
    )
    logger.info("counting thresholds: %s", result.to_dict())
    return result


def _merge_masks(a: Any, b: Any, xp: Any) -> Any:
    if a is None and b is None:
        return None
    if a is None:
        return xp.asarray(b)
    if b is None:
        return a
    return a | xp.asarray(b)


# ------------------------------------------------------------------------------------------------
# Counting kernels
# ------------------------------------------------------------------------------------------------


def _count_vectorized(
    work: Any,
    dark: Any,
    mask: Any,
    background: float,
    xray: float,
    *,
    subpixel: bool,
    peaks: bool = False,
) -> dict[str, Any]:
    """Array-module (NumPy/CuPy) counting of a float32 block ``(n, H, W)``."""
    xp = get_xp(work)
    img = work.astype(xp.float32)
    if dark is not None:
        img = img - dark
    if mask is not None:
        img = xp.where(mask, xp.float32(-xp.inf), img)
    n, h, w = img.shape
    pad = xp.full((n, h + 2, w + 2), -xp.inf, dtype=xp.float32)
    pad[:, 1:-1, 1:-1] = img
    ev = img > xp.float32(background)
    if math.isfinite(xray):
        ev &= img <= xp.float32(xray)
    for dy, dx, strict in _NEIGHBOURS:
        nb = pad[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        ev &= (img > nb) if strict else (img >= nb)
    f, r, c = xp.nonzero(ev)
    out: dict[str, Any] = {"frame": f, "row": r, "col": c}
    if peaks:
        out["peak"] = img[f, r, c]
    if subpixel:
        d = xp.arange(-1, 2)
        patch = pad[
            f[:, None, None], (r + 1)[:, None, None] + d[:, None], (c + 1)[:, None, None] + d
        ]
        wts = xp.maximum(patch, 0).astype(xp.float64)
        total = wts.sum(axis=(1, 2))
        total = xp.where(total > 0, total, 1.0)
        sr = r + (wts * d[:, None]).sum(axis=(1, 2)) / total
        sc = c + (wts * d[None, :]).sum(axis=(1, 2)) / total
        out["subpixel"] = xp.stack([sr, sc], axis=1).astype(xp.float32)
    return out


_NUMBA_KERNELS: list[Any] = []


def _numba_kernel() -> Any:
    """The compiled CPU kernels (:mod:`._numba_kernels`), or None without numba."""
    if not _NUMBA_KERNELS:
        try:
            from . import _numba_kernels as kernels
        except ImportError:  # pragma: no cover - numba is in the fast extra
            kernels = None
        if kernels is not None and not kernels.LITTLE_ENDIAN:  # pragma: no cover
            kernels = None
        _NUMBA_KERNELS.append(kernels)
    return _NUMBA_KERNELS[0]


def _count_numba(
    block: np.ndarray, dark: Any, mask: Any, background: float, xray: float, subpixel: bool
) -> dict[str, Any]:
    kernel = _numba_kernel()
    h, w = block.shape[1:]
    if block.dtype.kind not in "iuf" or block.dtype.itemsize > 8:
        block = block.astype(np.float32)
    block = np.ascontiguousarray(block)
    d = np.zeros((h, w), np.float32) if dark is None else np.ascontiguousarray(dark, np.float32)
    bad = np.zeros((h, w), np.bool_) if mask is None else np.ascontiguousarray(mask, np.bool_)
    xr = np.float32(xray) if math.isfinite(xray) else np.float32(np.inf)
    # conservative pre-test: float32(raw) - dark > background implies raw > dark + background - 1
    edge = np.floor(d.astype(np.float64) + float(background)) - 2.0
    if block.dtype.kind in "iu":
        info = np.iinfo(block.dtype)
        # in the data's type where it can hold every limit (faster compare), else int64
        lt = block.dtype if edge.min() >= info.min else np.dtype(np.int64)
        lim = np.clip(edge, np.iinfo(lt).min, info.max).astype(lt)
        lim[bad] = info.max
    else:
        lim = (edge - 1e-3 * np.abs(edge)).astype(block.dtype)
        lim[bad] = np.inf
    deff = d.copy()
    deff[bad] = np.inf
    return kernel.count_events(block, deff, lim, float(background), float(xr), bool(subpixel))


def count_block(
    frames: Any,
    dark: Any = None,
    *,
    background: float,
    xray: float = math.inf,
    mask: Any = None,
    subpixel: bool = False,
    method: str = "auto",
) -> dict[str, Any]:
    """Find electron events in a block of frames (the counting kernel).

    Parameters
    ----------
    frames : ndarray of shape (n, det_row, det_col)
        Raw frames, NumPy or CuPy, any real dtype (never modified).
    dark : ndarray of shape (det_row, det_col), optional
        Dark reference (float32 is used for the subtraction).
    background, xray : float
        Thresholds in dark-subtracted ADU: events satisfy ``background < v <= xray``.
    mask : bool ndarray of shape (det_row, det_col), optional
        Bad pixels (True): never events and ignored as neighbours.
    subpixel : bool
        Also return 3x3 centroids of the positive dark-subtracted values.
    method : {"auto", "numba", "array"}
        ``"numba"``: compiled CPU loop (NumPy input; a vectorized candidate scan of each row,
        then the few candidates tested; threads over frames for large blocks, see
        :mod:`stacklab.stem4d._numba_kernels`); ``"array"``: vectorized NumPy/CuPy code;
        ``"auto"``: numba for NumPy input when installed, else the array code. Both give
        identical events.

    Returns
    -------
    dict of arrays
        ``"frame"`` (index within the block), ``"row"``, ``"col"`` (n_events,), plus
        ``"subpixel"`` (n_events, 2) float32 when requested; in frame, then raster order.
    """
    if method not in ("auto", "numba", "array"):
        raise ValueError(f"method must be 'auto', 'numba' or 'array', got {method!r}")
    xp = get_xp(frames)
    if frames.ndim != 3:
        raise ShapeError(f"frames must have shape (n, det_row, det_col), got {frames.shape}")
    use_numba = method == "numba" or (method == "auto" and xp is np and _numba_kernel() is not None)
    if use_numba:
        if xp is not np:
            raise ValueError("method='numba' needs NumPy frames (CuPy input: use method='array')")
        if _numba_kernel() is None:
            raise ImportError("method='numba' needs numba: pip install 'stacklab[fast]'")
        return _count_numba(frames, dark, mask, background, xray, subpixel)
    return _count_vectorized(frames, dark, mask, background, xray, subpixel=subpixel)


def _collect_kernel(block: Any, first: int, **params: Any) -> dict[str, Any]:
    binning = params.pop("binning")
    det = params.pop("det_shape")
    out = count_block(block, **params)
    out = {k: backend.to_numpy(v) for k, v in out.items()}
    out["frame"] = out["frame"].astype(np.int64) + first
    out["row"] = out["row"].astype(np.int32)
    out["col"] = out["col"].astype(np.int32)
    if binning > 1:
        r, c = out["row"] // binning, out["col"] // binning
        keep = (r < det[0] // binning) & (c < det[1] // binning)
        out = {k: v[keep] for k, v in out.items()}
        out["row"], out["col"] = r[keep], c[keep]
        if "subpixel" in out:
            out["subpixel"] = ((out["subpixel"] - (binning - 1) / 2.0) / binning).astype(np.float32)
    return out


def count_electrons(
    cube: Any,
    dark: Any = None,
    *,
    thresholds: CountingThresholds | None = None,
    n_sigma: float = 5.0,
    xray: float | str | None = "auto",
    xray_factor: float = 5.0,
    n_samples: int = 40,
    seed: int = 0,
    mask: Any = None,
    hot_pixels: bool = True,
    subpixel: bool = False,
    binning: int = 1,
    chunk: int = 256,
    method: str = "auto",
    progress: bool | None = None,
) -> ElectronEvents:
    """Count electrons in every frame of a scan.

    Parameters
    ----------
    cube : array-like of shape (scan_row, scan_col, det_row, det_col) or DataCube
        Raw frames (any real dtype; uint16 near 65535 is fine). NumPy, CuPy, Dask (also on a
        ``dask.distributed`` cluster) or file-backed; processed ``chunk`` frames at a time.
        A stack ``(n_frames, det_row, det_col)`` is accepted too (scan_shape ``(n_frames,)``).
    dark : array of shape (det_row, det_col), optional
        Dark reference in ADU, float or integer (subtracted in float32). None: no subtraction.
    thresholds : CountingThresholds, optional
        Use these thresholds instead of estimating them (the estimate arguments are ignored).
    n_sigma, xray, xray_factor, n_samples, seed, hot_pixels
        Passed to :func:`estimate_thresholds`.
    mask : bool array of shape (det_row, det_col), optional
        Bad pixels (True) never give events (merged with any detected hot pixels).
    subpixel : bool
        Record sub-pixel 3x3 centroids.
    binning : int
        Coarsen the event coordinates by this factor (detector remainder dropped).
    chunk : int
        Frames per block.
    method : {"auto", "numba", "array"}
        Kernel implementation (see :func:`count_block`).
    progress : bool or None
        Progress bar (None: only when interactive).

    Returns
    -------
    ElectronEvents
        Host (NumPy) arrays; ``metadata`` holds the thresholds.

    Raises
    ------
    ShapeError
        For a cube that is not ``(..., det_row, det_col)`` or a dark/mask of the wrong shape.
    ValueError
        For bad thresholds or binning.
    """
    data = as_array(cube)
    shape = check_cube(data)
    scan, det = shape[:-2], shape[-2:]
    if isinstance(binning, bool) or not isinstance(binning, int | np.integer) or binning < 1:
        raise ValueError(f"binning must be a positive integer, got {binning!r}")
    if binning > min(det):
        raise ShapeError(f"binning={binning} is larger than the detector {det}")
    if thresholds is None:
        thresholds = estimate_thresholds(
            data,
            dark,
            n_sigma=n_sigma,
            xray=xray,
            xray_factor=xray_factor,
            n_samples=n_samples,
            seed=seed,
            mask=mask,
            hot_pixels=hot_pixels,
        )
    elif not isinstance(thresholds, CountingThresholds):
        raise TypeError(f"thresholds must be CountingThresholds, got {type(thresholds).__name__}")
    xp = np if (is_dask(data) or not is_cupy(data)) else get_xp(data)
    d = _check_dark(dark, det, xp)
    m = _merge_masks(_check_mask(mask, det, xp), thresholds.hot_mask, xp)
    rows = engine.collect_frames(
        _collect_kernel,
        data,
        chunk=chunk,
        progress=progress,
        dark=d,
        mask=m,
        background=float(thresholds.background),
        xray=float(thresholds.xray),
        subpixel=bool(subpixel),
        method=method,
        binning=int(binning),
        det_shape=tuple(det),
    )
    n_frames = math.prod(scan)
    frame = np.asarray(rows["frame"], dtype=np.int64)
    offsets = np.zeros(n_frames + 1, dtype=np.int64)
    np.cumsum(np.bincount(frame, minlength=n_frames), out=offsets[1:])
    det_out = (det[0] // binning, det[1] // binning)
    meta = {
        "thresholds": thresholds.to_dict(),
        "binning": int(binning),
        "dark_subtracted": dark is not None,
        "n_masked_pixels": 0 if m is None else int(backend.to_numpy(m).sum()),
    }
    events = ElectronEvents(
        offsets,
        rows["row"],
        rows["col"],
        scan,
        det_out,
        rows.get("subpixel") if subpixel else None,
        meta,
    )
    logger.info(
        "counted %d electrons in %d frames (%.2f per frame)",
        events.n_events,
        n_frames,
        events.n_events / n_frames,
    )
    return events
