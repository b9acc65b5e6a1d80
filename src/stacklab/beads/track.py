"""The xyz pipeline for stacks of single-bead frames: :func:`track`.

Per frame (the default ``method="qi"`` with ``"interp"`` profiles, one fused pass per frame):

1. centre of mass of ``|I - mean|`` (first guess);
2. quadrant interpolation (:func:`stacklab.beads.centers.qi`): ``n_iter - 1`` iterations (two
   correlation steps, then Gauss-Newton) on circles 1 px apart with 8 angles per quadrant;
3. one sampling pass on the profile's circles (``bin_width`` apart, ``n_angles`` per circle) at
   that centre, which gives the radial profile, the symmetry score **and** a last Gauss-Newton
   QI step with the denser samples. The profile is thus taken at the centre before that last
   step, a few thousandths of a pixel away; an angular mean changes only to second order in
   such an offset;
4. z by continuous look-up (:func:`stacklab.beads.zlut.lookup_z`).

Other ``method``/profile choices run :func:`stacklab.beads.centers.locate` then
:func:`stacklab.beads.profiles.radial_profiles`. The stack is processed block by block through
:func:`stacklab.engine.collect_frames`, so NumPy, CuPy, Dask arrays and lazy h5py/zarr/TIFF
stacks all work and memory stays bounded.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .. import engine
from ..backend import call_numba, get_xp, is_dask, to_numpy, use_numba
from ..errors import ShapeError
from ._common import as_frames, finite_frames, numba_kernels
from .centers import (
    _in_frame_xp,
    _ls_step_xp,
    _qi_xp,
    _sample_quadrants_xp,
    center_of_mass,
    locate,
    ls_first,
    qi_arguments,
)
from .profiles import (
    _profile_from_quadrants_xp,
    profile_angles,
    profile_radii,
    profile_weights,
    radial_profiles,
)
from .zlut import ZLUT, lookup_z

__all__ = ["TrackResult", "track"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackResult:
    """Positions, profiles and quality of every frame.

    Attributes
    ----------
    x, y : ndarray of float64, shape (n_frames,)
        Bead centre, column and row, px (pixel centres at integer indices).
    z : ndarray of float64, shape (n_frames,)
        Height in the look-up table's unit (nm); all NaN without a table.
    quality : ndarray of float64, shape (n_frames,)
        With a table: the weighted Pearson correlation of the profile with the table at ``z``
        (1 = perfect match; below about 0.9 the bead is out of range, defocused beyond the table
        or not a bead). Without a table: ``symmetry``.
    symmetry : ndarray of float64, shape (n_frames,)
        Four-quadrant radial symmetry of the image about ``(x, y)`` (1 = perfectly symmetric).
    profiles : ndarray of float64, shape (n_frames, n_bins)
        Radial profile at radii ``radii`` about ``(x, y)``.
    radii : ndarray of float64, shape (n_bins,)
        px.

    Notes
    -----
    Every value of a frame is NaN when the frame holds NaN or inf pixels, has no contrast, or its
    centre estimate left the frame; other frames are unaffected.
    """

    x: Any
    y: Any
    z: Any
    quality: Any
    symmetry: Any
    profiles: Any
    radii: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to_dataframe(self, *, first_frame: int = 0) -> Any:
        """Table with columns ``frame, x, y, z, quality`` (pandas DataFrame, NumPy values)."""
        import pandas as pd

        n = len(self)
        return pd.DataFrame(
            {
                "frame": np.arange(first_frame, first_frame + n, dtype=np.int64),
                "x": to_numpy(self.x),
                "y": to_numpy(self.y),
                "z": to_numpy(self.z),
                "quality": to_numpy(self.quality),
            }
        )


_QI_KEYS = frozenset(
    {
        "n_iter",
        "n_corr",
        "radial_step",
        "min_radius",
        "max_radius",
        "angles_per_quadrant",
        "max_shift",
    }
)


def _check_zlut(zlut: Any, shape: tuple[int, int]) -> ZLUT | None:
    if zlut is None:
        return None
    if not isinstance(zlut, ZLUT):
        raise TypeError(
            f"zlut must be a stacklab.beads.ZLUT (make_zlut, ZLUT.load, ZLUT.from_magtrack), "
            f"got {type(zlut).__name__}"
        )
    limit = min(shape) / 2.0 - 0.5
    if zlut.radii[-1] > limit + 1e-9:
        raise ShapeError(
            f"zlut profiles reach a radius of {zlut.radii[-1]:g} px ({zlut.n_bins} bins of "
            f"{zlut.bin_width:g} px) but frames of {shape[0]} x {shape[1]} px allow at most "
            f"{limit:g} px: the table was made from larger images than these"
        )
    return zlut


def _qi_and_profile(xp, frames, *, bin_width, n_bins, n_angles, backend, qi_options):
    """QI then one pass on the profile circles giving the profile and the last QI step."""
    opts = {"angles_per_quadrant": 8, "radial_step": 1.0, "n_corr": 2, **qi_options}
    n_iter = int(opts.pop("n_iter", 4))
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    radii, cos4, sin4, n_pre, n_corr, max_lag, max_step, first = qi_arguments(
        frames.shape[1:], n_iter=n_iter - 1, **opts
    )
    prof_radii = profile_radii(frames.shape, bin_width=bin_width, n_bins=n_bins)
    cos_a, sin_a = profile_angles(n_angles)
    weights = profile_weights(prof_radii)
    if use_numba(xp, backend):
        return call_numba(
            numba_kernels().track_kernel,
            frames,
            radii,
            cos4,
            sin4,
            n_pre,
            n_corr,
            max_lag,
            max_step,
            first,
            prof_radii,
            cos_a,
            sin_a,
            weights,
            ls_first(prof_radii),
        )
    x0, y0 = center_of_mass(frames, background="mean")
    x, y = _qi_xp(xp, frames, x0, y0, radii, cos4, sin4, n_pre, n_corr, max_lag, max_step, first)
    good = xp.isfinite(x) & xp.isfinite(y)
    bx, by = xp.where(good, x, 0.0), xp.where(good, y, 0.0)
    q = _sample_quadrants_xp(xp, frames, bx, by, prof_radii, cos_a, sin_a)
    prof, sym = _profile_from_quadrants_xp(xp, q, weights)
    dr = float(prof_radii[1] - prof_radii[0])
    sx, sy = _ls_step_xp(xp, q, dr, max_step, ls_first(prof_radii))
    x, y = x + sx, y + sy
    good = good & _in_frame_xp(xp, x, y, frames.shape[1:])
    nan = xp.nan
    return (
        xp.where(good, x, nan),
        xp.where(good, y, nan),
        xp.where(good[:, None], prof, nan),
        xp.where(good, sym, nan),
    )


def _track_block(
    block: Any,
    first: int,
    *,
    zlut: ZLUT | None,
    method: str,
    bin_width: float,
    n_bins: int,
    profile_method: str,
    n_angles: int,
    upsample: int,
    backend: str,
    qi_options: dict,
) -> dict[str, Any]:
    xp, frames = as_frames(block)
    frames, bad = finite_frames(xp, frames)
    if method == "qi" and profile_method == "interp":
        x, y, prof, sym = _qi_and_profile(
            xp,
            frames,
            bin_width=bin_width,
            n_bins=n_bins,
            n_angles=n_angles,
            backend=backend,
            qi_options=qi_options,
        )
    else:
        x, y = locate(frames, method=method, backend=backend, **qi_options)
        if profile_method == "interp":
            prof, sym = radial_profiles(
                frames,
                x,
                y,
                bin_width=bin_width,
                n_bins=n_bins,
                method="interp",
                n_angles=n_angles,
                return_symmetry=True,
                backend=backend,
            )
        else:
            prof = radial_profiles(
                frames,
                x,
                y,
                bin_width=bin_width,
                n_bins=n_bins,
                method="bin",
                fill_empty=True,
                backend=backend,
            )
            sym = xp.full(frames.shape[0], xp.nan)
    if zlut is not None:
        z, quality = lookup_z(prof, zlut, upsample=upsample)
    else:
        z = xp.full(frames.shape[0], xp.nan)
        quality = sym
    lost = bad | ~xp.isfinite(x) | ~xp.isfinite(y)
    nan = xp.nan
    return {
        "x": xp.where(lost, nan, x),
        "y": xp.where(lost, nan, y),
        "z": xp.where(lost, nan, z),
        "quality": xp.where(lost, nan, quality),
        "symmetry": xp.where(lost, nan, sym),
        "profiles": xp.where(lost[:, None], nan, prof),
    }


def track(
    stack: Any,
    zlut: ZLUT | None = None,
    *,
    method: Literal["qi", "auto_conv", "com"] = "qi",
    bin_width: float | None = None,
    n_bins: int | None = None,
    profile_method: Literal["interp", "bin"] | None = None,
    n_angles: int | None = None,
    upsample: int = 8,
    chunk: int = 4096,
    backend: Literal["auto", "numba", "xp"] = "auto",
    progress: bool | None = None,
    **qi_options: Any,
) -> TrackResult:
    """Track x, y (and z with a look-up table) of one bead per frame.

    Parameters
    ----------
    stack : array of shape (n_frames, rows, cols)
        Frames centred roughly on one bead each (within a few px). NumPy, CuPy, Dask, or a lazy
        h5py/zarr/TIFF stack (read ``chunk`` frames at a time). Integers are widened to float32.
    zlut : ZLUT, optional
        Look-up table from :func:`stacklab.beads.make_zlut`; without it ``z`` is NaN. The profile
        settings (``bin_width``, ``n_bins``, ``profile_method``, ``n_angles``) are then taken
        from it.
    method : {"qi", "auto_conv", "com"}
        xy estimator (see :func:`stacklab.beads.centers.locate`); default QI.
    bin_width, n_bins, profile_method, n_angles
        Radial profile settings when there is no table (defaults 0.5 px, see
        :func:`stacklab.beads.profiles.profile_radii`, ``"interp"``, 64). Giving values that
        differ from the table's raises.
    upsample : int
        Sub-planes per table step in the z lookup (default 8).
    chunk : int
        Frames per block (default 4096).
    backend : {"auto", "numba", "xp"}
        ``"auto"``: numba kernels for NumPy data when numba is installed, vectorized code
        otherwise (and always for CuPy).
    progress : bool, optional
        Progress bar (None: only when interactive).
    **qi_options
        QI settings (see :func:`stacklab.beads.centers.qi`): ``n_iter`` (default 4, the last
        one on the profile circles), ``n_corr`` (2), ``radial_step`` (1 px),
        ``angles_per_quadrant`` (8), ``min_radius``, ``max_radius``, ``max_shift`` (3 px).

    Returns
    -------
    TrackResult
        On the stack's device (NumPy for Dask/lazy input).

    Raises
    ------
    ShapeError
        For a stack that is not ``(n, rows, cols)``, is empty, or frames too small for the
        table's profiles ("mismatched bins").
    ValueError
        For profile settings that contradict the table, or bad options.
    TypeError
        For complex data or a ``zlut`` that is not a :class:`ZLUT`.

    Examples
    --------
    >>> from stacklab.beads import simulate, simulate_zscan, make_zlut, track
    >>> import numpy as np
    >>> lut = make_zlut(simulate_zscan(np.arange(-1000, 1001, 100.0)).images,
    ...                 np.arange(-1000, 1001, 100.0))
    >>> sim = simulate(5, z_range=(-900, 900), seed=1)
    >>> res = track(sim.images, lut)
    >>> bool(np.all(np.abs(res.z - sim.z) < 20))
    True
    """
    shape = getattr(stack, "shape", None)
    if shape is None:
        stack = np.asarray(stack)
        shape = stack.shape
    if len(shape) == 2:
        stack = stack[None]
        shape = stack.shape
    if len(shape) != 3:
        raise ShapeError(
            f"stack must be a 3-D array of shape (n_frames, rows, cols), got shape {tuple(shape)}"
        )
    if shape[0] == 0 or 0 in shape:
        raise ShapeError(f"stack is empty (shape {tuple(shape)}); it needs at least 1 frame")
    if min(shape[1:]) < 8:
        raise ShapeError(f"stack frames must be at least 8 x 8 pixels, got {tuple(shape)}")
    zlut = _check_zlut(zlut, tuple(shape[1:]))
    if zlut is not None:
        given = {
            "bin_width": (bin_width, zlut.bin_width),
            "n_bins": (n_bins, zlut.n_bins),
            "profile_method": (profile_method, zlut.method),
            "n_angles": (n_angles, zlut.n_angles),
        }
        for name, (mine, theirs) in given.items():
            if mine is not None and not (
                mine == theirs or (isinstance(mine, float) and math.isclose(mine, theirs))
            ):
                raise ValueError(
                    f"{name}={mine!r} differs from the zlut's {theirs!r}; leave it out to use "
                    "the table's setting"
                )
        bin_width, n_bins = zlut.bin_width, zlut.n_bins
        profile_method, n_angles = zlut.method, zlut.n_angles
    else:
        bin_width = 0.5 if bin_width is None else float(bin_width)
        n_bins = int(profile_radii(shape, bin_width=bin_width, n_bins=n_bins).size)
        profile_method = "interp" if profile_method is None else profile_method
        n_angles = 64 if n_angles is None else int(n_angles)
    if profile_method not in ("interp", "bin"):
        raise ValueError(f"profile_method must be 'interp' or 'bin', got {profile_method!r}")
    kind = getattr(stack, "dtype", np.dtype(float))
    if np.dtype(kind).kind == "c" or np.dtype(kind).kind not in "fiub":
        raise TypeError(f"stack must hold real numbers, got dtype {kind}")
    params = {
        "zlut": zlut,
        "method": method,
        "bin_width": float(bin_width),
        "n_bins": int(n_bins),
        "profile_method": profile_method,
        "n_angles": int(n_angles),
        "upsample": int(upsample),
        "backend": backend,
        "qi_options": dict(qi_options),
    }
    if method not in ("qi", "auto_conv", "com"):
        raise ValueError(f"method must be 'qi', 'auto_conv' or 'com', got {method!r}")
    unknown = set(qi_options) - _QI_KEYS
    if unknown:
        raise TypeError(
            f"track() got unknown options {sorted(unknown)}; QI options are {sorted(_QI_KEYS)}"
        )
    in_memory = isinstance(stack, np.ndarray) or type(stack).__module__.split(".")[0] == "cupy"
    if in_memory and shape[0] <= chunk:
        rows = _track_block(stack, 0, **params)
    else:
        rows = engine.collect_frames(
            _track_block, stack, chunk=int(chunk), progress=progress, **params
        )
    xp = get_xp(rows["x"]) if not is_dask(rows["x"]) else np
    radii = profile_radii(shape, bin_width=float(bin_width), n_bins=int(n_bins))
    logger.debug("tracked %d frames", shape[0])
    return TrackResult(
        x=rows["x"],
        y=rows["y"],
        z=rows["z"],
        quality=rows["quality"],
        symmetry=rows["symmetry"],
        profiles=xp.asarray(rows["profiles"]),
        radii=radii,
    )
