"""Z look-up tables: calibration from a z-scan and continuous lookup of z from radial profiles.

A :class:`ZLUT` holds the mean radial profile of a bead at each calibration height. The lookup
(:func:`lookup_z`) differs from magtrack's in three ways that make it about 20 times more precise
and free of dead zones:

1. **Profile interpolation between planes.** The table is interpolated along z with a cubic
   spline (in plane-index space, so uneven steps are fine) to ``upsample`` sub-planes per step, so
   a profile is compared with what the bead looks like *between* the calibration planes, not only
   at them.
2. **Scale- and offset-free, noise-weighted match.** Profiles and table rows are compared by a
   weighted Pearson correlation, weights proportional to the radius (the number of pixels a circle
   averages), which ignores illumination level, camera gain and offset.
3. **No dead zones.** The best sub-plane is refined with a parabola through its neighbours; at the
   first and last sub-plane the answer is that plane's z (clamped, never NaN). Every z inside the
   table's range is measurable.

The per-frame quality is the weighted Pearson correlation at the answer (1 = identical shape).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..backend import get_xp, to_numpy
from ..errors import FileFormatError, ShapeError
from ._common import as_frames, finite_frames
from .centers import locate
from .profiles import profile_radii, profile_weights, radial_profiles

__all__ = ["ZLUT", "lookup_z", "make_zlut"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ZLUT:
    """A bead's radial profile at a series of calibration heights.

    Attributes
    ----------
    z : ndarray of float64, shape (m,)
        Heights of the planes, strictly increasing, nm (or any unit; lookups answer in it).
    profiles : ndarray of float64, shape (m, n_bins)
        Mean radial profile at each height; sample ``j`` at radius ``j * bin_width`` px.
    bin_width : float
        Radial spacing of the profile samples, px.
    pixel_size_nm : float or None
        Pixel pitch of the calibration images, nm (informational).
    method : {"interp", "bin"}
        Profile estimator the table was made with (see :mod:`stacklab.beads.profiles`); tracking
        uses the same.
    n_angles : int
        Samples per circle of the ``"interp"`` estimator.
    """

    z: np.ndarray
    profiles: np.ndarray
    bin_width: float = 0.5
    pixel_size_nm: float | None = None
    method: str = "interp"
    n_angles: int = 64
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        z = np.asarray(to_numpy(self.z), dtype=np.float64)
        p = np.asarray(to_numpy(self.profiles), dtype=np.float64)
        if z.ndim != 1 or z.size < 2:
            raise ShapeError(f"zlut z must be 1-D with at least 2 planes, got shape {z.shape}")
        if p.ndim != 2 or p.shape[0] != z.size or p.shape[1] < 2:
            raise ShapeError(
                f"zlut profiles must have shape (m, n_bins) = ({z.size}, n_bins >= 2), "
                f"got {p.shape}"
            )
        if not np.all(np.isfinite(z)) or not np.all(np.diff(z) > 0):
            raise ValueError("zlut z must be finite and strictly increasing")
        if not np.all(np.isfinite(p)):
            raise ValueError("zlut profiles must be finite (no NaN bins)")
        if not (math.isfinite(self.bin_width) and self.bin_width > 0):
            raise ValueError(f"zlut bin_width must be > 0, got {self.bin_width!r}")
        if self.method not in ("interp", "bin"):
            raise ValueError(f"zlut method must be 'interp' or 'bin', got {self.method!r}")
        z.setflags(write=False)
        p.setflags(write=False)
        object.__setattr__(self, "z", z)
        object.__setattr__(self, "profiles", p)
        object.__setattr__(self, "bin_width", float(self.bin_width))
        object.__setattr__(self, "n_angles", int(self.n_angles))
        if self.pixel_size_nm is not None:
            object.__setattr__(self, "pixel_size_nm", float(self.pixel_size_nm))

    @property
    def n_planes(self) -> int:
        """Number of calibration planes ``m``."""
        return int(self.z.size)

    @property
    def n_bins(self) -> int:
        """Number of profile samples per plane."""
        return int(self.profiles.shape[1])

    @property
    def radii(self) -> np.ndarray:
        """Radii of the profile samples, px, shape (n_bins,)."""
        return self.bin_width * np.arange(self.n_bins, dtype=np.float64)

    @property
    def z_range(self) -> tuple[float, float]:
        """``(z[0], z[-1])``: the measurable range."""
        return float(self.z[0]), float(self.z[-1])

    def fine_table(self, upsample: int) -> tuple[np.ndarray, np.ndarray]:
        """The table interpolated to ``upsample`` sub-planes per step, normalised for matching.

        Parameters
        ----------
        upsample : int
            Sub-planes per calibration step (>= 1).

        Returns
        -------
        z_fine : ndarray of shape ((m - 1) * upsample + 1,)
            Heights of the sub-planes (linear in plane index between calibration planes).
        rows : ndarray of shape ((m - 1) * upsample + 1, n_bins)
            Cubic-spline interpolated profiles, weighted, mean-free and of unit norm.
        """
        key = int(upsample)
        if key not in self._cache:
            from scipy.interpolate import CubicSpline

            m = self.n_planes
            u = np.linspace(0.0, m - 1.0, (m - 1) * key + 1)
            u[-1] = m - 1.0
            if m >= 3:
                fine = CubicSpline(np.arange(m, dtype=np.float64), self.profiles, axis=0)(u)
            else:
                fine = self.profiles[0] + u[:, None] * (self.profiles[1] - self.profiles[0])
            z_fine = np.interp(u, np.arange(m, dtype=np.float64), self.z)
            rows = _normalise(np, fine, profile_weights(self.radii))
            z_fine.setflags(write=False)
            rows.setflags(write=False)
            self._cache[key] = (z_fine, rows)
        return self._cache[key]

    # ----------------------------------------------------------------- conversion and files
    def to_magtrack(self) -> np.ndarray:
        """magtrack's Z-LUT layout: row 0 = z, rows 1.. = profiles; shape (1 + n_bins, m)."""
        return np.vstack([self.z[None, :], self.profiles.T])

    @classmethod
    def from_magtrack(
        cls,
        zlut: Any,
        *,
        bin_width: float = 1.0,
        method: Literal["interp", "bin"] = "bin",
        pixel_size_nm: float | None = None,
    ) -> ZLUT:
        """Build a table from magtrack's ``(1 + n_bins, m)`` layout (row 0 = z).

        Planes are sorted by z. magtrack's profiles come from pixel binning with 1 px bins
        (``method="bin"``, ``bin_width=1`` divided by its ``oversample``).
        """
        arr = np.asarray(to_numpy(zlut), dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] < 3:
            raise ShapeError(f"zlut must have shape (1 + n_bins, m), got {arr.shape}")
        order = np.argsort(arr[0], kind="stable")
        return cls(
            z=arr[0, order],
            profiles=arr[1:, order].T,
            bin_width=bin_width,
            method=method,
            pixel_size_nm=pixel_size_nm,
        )

    def _meta(self) -> dict[str, Any]:
        return {
            "bin_width": self.bin_width,
            "pixel_size_nm": self.pixel_size_nm,
            "method": self.method,
            "n_angles": self.n_angles,
            "format": "stacklab.beads.ZLUT/1",
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table atomically.

        ``.h5``/``.hdf5``: datasets ``z`` and ``profiles`` with the settings as attributes.
        Any other suffix (``.npy``, ``.npz``...): an ``.npz`` archive written under exactly the
        given name (:func:`numpy.load` recognises it whatever the suffix).

        Parameters
        ----------
        path : str or path-like
            Destination.

        Returns
        -------
        pathlib.Path
        """
        from ..io import atomic_path, write_hdf5

        path = Path(path)
        if path.suffix.lower() in (".h5", ".hdf5"):
            return write_hdf5(
                path,
                {"z": self.z, "profiles": self.profiles},
                attrs={"/": {"stacklab_zlut": json.dumps(self._meta())}},
            )
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh, z=self.z, profiles=self.profiles, meta=np.asarray(json.dumps(self._meta()))
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, bin_width: float | None = None) -> ZLUT:
        """Read a table written by :meth:`save`, or a magtrack-layout 2-D ``.npy`` array.

        Parameters
        ----------
        path : str or path-like
            ``.npz``/``.npy`` archive or HDF5 file from :meth:`save`; or a plain 2-D ``.npy``
            array in magtrack's layout (row 0 = z), read with :meth:`from_magtrack`.
        bin_width : float, optional
            Profile spacing of a magtrack-layout array (default 1 px, magtrack's).

        Raises
        ------
        FileFormatError
            If the file is missing or holds neither layout.
        """
        path = Path(path)
        if not path.exists():
            raise FileFormatError(f"zlut file {str(path)!r} does not exist")
        if path.suffix.lower() in (".h5", ".hdf5"):
            import h5py

            try:
                with h5py.File(path, "r") as f:
                    meta = json.loads(f.attrs["stacklab_zlut"])
                    z, prof = f["z"][()], f["profiles"][()]
            except (KeyError, OSError) as exc:
                raise FileFormatError(
                    f"{str(path)!r} is not a stacklab z look-up table (needs datasets z, "
                    f"profiles and attribute stacklab_zlut): {exc}"
                ) from exc
            return cls._from_meta(z, prof, meta)
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"cannot read zlut file {str(path)!r}: {exc}") from exc
        if isinstance(data, np.ndarray):
            if data.ndim != 2:
                raise FileFormatError(
                    f"{str(path)!r} holds a {data.ndim}-D array; a magtrack-layout Z-LUT is 2-D "
                    "(row 0 = z, rows 1.. = profiles)"
                )
            return cls.from_magtrack(data, bin_width=1.0 if bin_width is None else bin_width)
        with data:
            missing = {"z", "profiles", "meta"} - set(data.files)
            if missing:
                raise FileFormatError(
                    f"{str(path)!r} lacks {sorted(missing)}; it is not a stacklab z look-up table"
                )
            return cls._from_meta(data["z"], data["profiles"], json.loads(str(data["meta"])))

    @classmethod
    def _from_meta(cls, z: Any, profiles: Any, meta: dict[str, Any]) -> ZLUT:
        return cls(
            z=z,
            profiles=profiles,
            bin_width=meta["bin_width"],
            pixel_size_nm=meta.get("pixel_size_nm"),
            method=meta.get("method", "interp"),
            n_angles=meta.get("n_angles", 64),
        )


def _normalise(xp, p: Any, weights: Any) -> Any:
    """Weighted, mean-free, unit-norm rows (``p`` of shape (..., n_bins)); zero rows stay 0."""
    w = xp.asarray(weights, dtype=xp.float64)
    mean = (p @ w) / xp.sum(w)
    q = (p - mean[..., None]) * xp.sqrt(w)
    norm = xp.sqrt(xp.sum(q * q, axis=-1, keepdims=True))
    return q / xp.where(norm > 0, norm, 1.0)


def lookup_z(
    profiles: Any,
    zlut: ZLUT,
    *,
    upsample: int = 8,
    search: int = 2,
) -> tuple[Any, Any]:
    """z of each radial profile by continuous matching against a look-up table.

    The best calibration plane by weighted Pearson correlation is found first; the spline-
    interpolated table is then searched over ``search`` planes either side at ``upsample``
    sub-planes per step, and the best sub-plane refined with a parabola through its neighbours
    (see the module notes).

    Parameters
    ----------
    profiles : ndarray of shape (n, n_bins)
        Radial profiles made like the table's (same ``bin_width``, ``n_bins``, ``method``).
    zlut : ZLUT
        The look-up table.
    upsample : int
        Sub-planes per calibration step (default 8).
    search : int
        Calibration planes searched either side of the best one (default 2).

    Returns
    -------
    z : ndarray of float64, shape (n,)
        Heights in the table's unit, always within ``zlut.z_range``. NaN for profiles with NaN.
    quality : ndarray of float64, shape (n,)
        Weighted Pearson correlation at the answer, in [-1, 1]; NaN with z.

    Raises
    ------
    ShapeError
        If ``profiles`` does not have ``zlut.n_bins`` samples per row.
    TypeError
        If ``zlut`` is not a :class:`ZLUT`.
    """
    if not isinstance(zlut, ZLUT):
        raise TypeError(
            f"zlut must be a stacklab.beads.ZLUT (see make_zlut, ZLUT.from_magtrack), got "
            f"{type(zlut).__name__}"
        )
    for v, name in ((upsample, "upsample"), (search, "search")):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    xp = get_xp(profiles)
    p = xp.asarray(profiles, dtype=xp.float64)
    single = p.ndim == 1
    if single:
        p = p[None]
    if p.ndim != 2 or p.shape[1] != zlut.n_bins:
        raise ShapeError(
            f"profiles have {p.shape[-1] if p.ndim else 0} bins but zlut has {zlut.n_bins} "
            f"(bin_width {zlut.bin_width} px); make the profiles with the table's settings"
        )
    n = p.shape[0]
    bad = ~xp.all(xp.isfinite(p), axis=1)
    p = xp.where(bad[:, None], 0.0, p)
    z_fine, rows = zlut.fine_table(upsample)
    rows = xp.asarray(rows)
    z_fine = xp.asarray(z_fine)
    n_fine = rows.shape[0]
    pn = _normalise(xp, p, profile_weights(zlut.radii))
    all_scores = pn @ rows.T  # (n, n_fine)
    best = xp.argmax(all_scores[:, ::upsample], axis=1)  # best calibration plane
    half = search * upsample
    width = min(2 * half + 1, n_fine)
    start = xp.clip(best * upsample - half, 0, n_fine - width)
    idx = start[:, None] + xp.arange(width)[None, :]  # (n, width)
    scores = xp.take_along_axis(all_scores, idx, axis=1)
    k = xp.argmax(scores, axis=1)
    r = xp.arange(n)
    kc = xp.clip(k, 1, width - 2)
    a, b, c = scores[r, kc - 1], scores[r, kc], scores[r, kc + 1]
    den = a - 2.0 * b + c
    at_k = idx[r, k]
    interior = (k == kc) & (at_k > 0) & (at_k < n_fine - 1) & (den < 0)
    frac = xp.where(interior, 0.5 * (a - c) / xp.where(interior, den, -1.0), 0.0)
    pos = at_k + frac
    lo = xp.clip(xp.floor(pos).astype(xp.int64), 0, n_fine - 2)
    t = pos - lo
    z = z_fine[lo] * (1.0 - t) + z_fine[lo + 1] * t
    peak = scores[r, k] - xp.where(
        interior, 0.125 * (a - c) ** 2 / xp.where(interior, den, -1.0), 0
    )
    quality = xp.clip(peak, -1.0, 1.0)
    z = xp.where(bad, xp.nan, z)
    quality = xp.where(bad, xp.nan, quality)
    if single:
        return z[0], quality[0]
    return z, quality


def make_zlut(
    zscan: Any,
    z: Any,
    *,
    bin_width: float = 0.5,
    n_bins: int | None = None,
    method: Literal["interp", "bin"] = "interp",
    n_angles: int = 64,
    pixel_size_nm: float | None = None,
    backend: Literal["auto", "numba", "xp"] = "auto",
    **qi_options: Any,
) -> ZLUT:
    """Make a z look-up table from a calibration z-scan of one bead.

    Every frame's bead centre is found (:func:`stacklab.beads.centers.locate`, QI) and its radial
    profile taken there (:func:`stacklab.beads.profiles.radial_profiles`). Frames recorded at
    the same height are averaged into one plane; planes are sorted by z.

    Parameters
    ----------
    zscan : ndarray of shape (n_frames, rows, cols)
        Calibration frames (NumPy or CuPy; integers widened to float32).
    z : array of shape (n_frames,)
        Height of each frame, nm (any unit; lookups answer in it). Repeated values are averaged.
    bin_width : float
        Radial spacing of the profile samples, px (default 0.5).
    n_bins : int, optional
        Profile samples (default: see :func:`stacklab.beads.profiles.profile_radii`).
    method : {"interp", "bin"}
        Profile estimator (default ``"interp"``).
    n_angles : int
        Samples per circle for ``"interp"`` (default 64).
    pixel_size_nm : float, optional
        Recorded in the table.
    backend : {"auto", "numba", "xp"}
        Kernel choice for NumPy data.
    **qi_options
        Passed to :func:`stacklab.beads.centers.qi`.

    Returns
    -------
    ZLUT

    Raises
    ------
    ShapeError
        If ``z`` does not have one value per frame.
    ValueError
        If ``z`` is not finite, or fewer than 2 distinct heights have a usable frame (frames
        holding NaN and frames where no bead is found are left out, with a warning in the log).
    """
    xp, frames = as_frames(zscan, "zscan")
    zz = np.asarray(to_numpy(z), dtype=np.float64).reshape(-1)
    if zz.size != frames.shape[0]:
        raise ShapeError(f"z has {zz.size} values but zscan has {frames.shape[0]} frames")
    if not np.all(np.isfinite(zz)):
        raise ValueError("z must be finite")
    frames, bad = finite_frames(xp, frames)
    x, y = locate(frames, backend=backend, **qi_options)
    prof = radial_profiles(
        frames,
        x,
        y,
        bin_width=bin_width,
        n_bins=n_bins,
        method=method,
        n_angles=n_angles,
        fill_empty=method == "bin",
        backend=backend,
    )
    prof = np.asarray(to_numpy(prof), dtype=np.float64)
    usable = ~np.asarray(to_numpy(bad)) & np.all(np.isfinite(prof), axis=1)
    if not np.all(usable):
        logger.warning(
            "make_zlut: %d of %d z-scan frames left out (NaN/inf pixels, no bead found or "
            "empty profile bins)",
            int(np.sum(~usable)),
            usable.size,
        )
    levels, inverse = np.unique(zz[usable], return_inverse=True)
    if levels.size < 2:
        raise ValueError(
            f"make_zlut needs usable frames at >= 2 distinct heights, got {levels.size}"
        )
    sums = np.zeros((levels.size, prof.shape[1]))
    np.add.at(sums, inverse, prof[usable])
    counts = np.bincount(inverse, minlength=levels.size)
    radii = profile_radii(frames.shape, bin_width=bin_width, n_bins=n_bins)
    return ZLUT(
        z=levels,
        profiles=sums / counts[:, None],
        bin_width=float(radii[1] - radii[0]),
        pixel_size_nm=pixel_size_nm,
        method=method,
        n_angles=n_angles,
    )
