"""Drift correction by redundant cross-correlation (RCC) and channel registration by affine fit.

RCC (Wang et al., Opt. Express 22, 15982 (2014)): the localizations are split into ``n``
segments of consecutive frames, each rendered as a histogram (blurred by a Gaussian of
``blur_nm``). Every pair ``i < j`` is cross-correlated (FFT); the sub-pixel peak (3-point
Gaussian fit on each axis) measures ``r_ij = d_j - d_i``, the drift of segment ``j`` relative
to segment ``i``. The ``n (n - 1) / 2`` equations are solved by least squares for the ``n``
segment drifts (``d_0 = 0``); pairs whose residual exceeds ``max_residual_nm`` are dropped and
the system solved again. The segment drifts, placed at the mean frame of each segment, are
interpolated over all frames with a natural cubic spline (exact for linear drift), and shifted
so the drift of frame 0 is 0.

Channel registration (:func:`register_channels`): a translation from the cross-correlation of
the two rendered point sets, then iterated nearest-neighbour matching and a least-squares
affine fit ``(x', y') = A (x, y) + t``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import interpolate, spatial

from ..errors import check_positive
from ._table import X, Y, columns, frame_of, like, meta_of

__all__ = [
    "AffineTransform",
    "DriftResult",
    "apply_transform",
    "correct_drift",
    "drift_rcc",
    "register_channels",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftResult:
    """Drift of the sample per frame (to be subtracted from the localizations).

    Attributes
    ----------
    x_nm, y_nm : ndarray of shape (n_frames,)
        Drift of every frame relative to frame 0, nm.
    segment_frame : ndarray of shape (n_segments,)
        Mean frame of each segment's localizations.
    segment_x_nm, segment_y_nm : ndarray of shape (n_segments,)
        Solved drift of each segment (before the spline), nm, relative to frame 0.
    residual_nm : float
        RMS residual of the pairwise shifts kept in the least-squares solution, nm.
    n_pairs : int
        Pairs kept (of ``n (n - 1) / 2``).
    """

    x_nm: np.ndarray
    y_nm: np.ndarray
    segment_frame: np.ndarray
    segment_x_nm: np.ndarray
    segment_y_nm: np.ndarray
    residual_nm: float
    n_pairs: int

    @property
    def n_frames(self) -> int:
        """Number of frames covered."""
        return int(self.x_nm.size)

    def to_frame(self) -> pd.DataFrame:
        """Table with columns ``frame``, ``x [nm]``, ``y [nm]`` (the drift, nm)."""
        return pd.DataFrame({"frame": np.arange(self.n_frames), X: self.x_nm, Y: self.y_nm})


def _grid(x: np.ndarray, y: np.ndarray, bin_nm: float, pad_nm: float):
    x0 = float(x.min()) - pad_nm
    y0 = float(y.min()) - pad_nm
    cols = math.ceil((float(x.max()) + pad_nm - x0) / bin_nm) + 1
    rows = math.ceil((float(y.max()) + pad_nm - y0) / bin_nm) + 1
    # FFT-friendly sizes.
    from scipy import fft

    return y0, x0, fft.next_fast_len(rows), fft.next_fast_len(cols)


def _histograms(seg, x, y, n_seg, y0, x0, rows, cols, bin_nm) -> np.ndarray:
    ci = np.floor((x - x0) / bin_nm).astype(np.int64)
    ri = np.floor((y - y0) / bin_nm).astype(np.int64)
    ok = (ci >= 0) & (ci < cols) & (ri >= 0) & (ri < rows)
    flat = (seg[ok] * rows + ri[ok]) * cols + ci[ok]
    h = np.bincount(flat, minlength=n_seg * rows * cols).astype(np.float64)
    return h.reshape(n_seg, rows, cols)


def _gauss_peak(c: np.ndarray, i: int, j: int) -> tuple[float, float]:
    """Sub-pixel peak of a Gaussian-like image around its maximum (3-point log fit per axis)."""
    rows, cols = c.shape

    def offset(a: float, b: float, d: float) -> float:
        if min(a, b, d) <= 0:
            den = a - 2 * b + d
            return 0.0 if den >= 0 else 0.5 * (a - d) / den
        la, lb, ld = math.log(a), math.log(b), math.log(d)
        den = la - 2 * lb + ld
        return 0.0 if den >= 0 else 0.5 * (la - ld) / den

    dy = offset(c[(i - 1) % rows, j], c[i, j], c[(i + 1) % rows, j])
    dx = offset(c[i, (j - 1) % cols], c[i, j], c[i, (j + 1) % cols])
    return dy, dx


def _pair_shifts(images: np.ndarray, blur_px: float, max_shift_px: int) -> tuple:
    """Shift (dy, dx) in bins of image j relative to image i for all pairs i < j."""
    from scipy import fft

    n, rows, cols = images.shape
    spec = fft.rfft2(images, axes=(-2, -1), workers=-1)
    qy = np.fft.fftfreq(rows)[:, None]
    qx = np.fft.rfftfreq(cols)[None, :]
    # Blur both images by blur_px: the correlation is blurred by sqrt(2) blur_px.
    spec = spec * np.exp(-2.0 * (math.pi * blur_px) ** 2 * (qy**2 + qx**2))[None]
    ii, jj = np.triu_indices(n, k=1)
    shifts = np.zeros((ii.size, 2))
    peaks = np.zeros(ii.size)
    m = int(max_shift_px)
    for k, (i, j) in enumerate(zip(ii, jj)):  # n (n - 1) / 2 FFTs, a few dozen
        corr = fft.irfft2(spec[j] * np.conj(spec[i]), s=(rows, cols), workers=-1)
        # Search |shift| <= max_shift only (wrapped indices).
        win = np.concatenate([corr[: m + 1], corr[rows - m :]], axis=0)
        win = np.concatenate([win[:, : m + 1], win[:, cols - m :]], axis=1)
        a, b = np.unravel_index(int(np.argmax(win)), win.shape)
        r = a if a <= m else rows - (2 * m + 1 - a)
        c = b if b <= m else cols - (2 * m + 1 - b)
        dy, dx = _gauss_peak(corr, r, c)
        sy = (r if r <= rows // 2 else r - rows) + dy
        sx = (c if c <= cols // 2 else c - cols) + dx
        shifts[k] = (sy, sx)
        peaks[k] = corr[r, c]
    return ii, jj, shifts, peaks


def _solve(n: int, ii, jj, r, keep) -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros((int(keep.sum()), n - 1))
    rows = np.arange(a.shape[0])
    i, j = ii[keep], jj[keep]
    a[rows[j > 0], j[j > 0] - 1] += 1.0
    a[rows[i > 0], i[i > 0] - 1] -= 1.0
    sol, *_ = np.linalg.lstsq(a, r[keep], rcond=None)
    d = np.vstack([np.zeros((1, 2)), sol])
    resid = r - (d[jj] - d[ii])
    return d, resid


def drift_rcc(
    locs: Any,
    *,
    n_segments: int = 10,
    bin_nm: float = 20.0,
    blur_nm: float | None = None,
    max_drift_nm: float = 1000.0,
    max_residual_nm: float | None = None,
    n_frames: int | None = None,
) -> DriftResult:
    """Estimate the drift of a localization table by redundant cross-correlation.

    Parameters
    ----------
    locs : Locs or pandas.DataFrame
        Localizations with ``frame``, ``x [nm]``, ``y [nm]``.
    n_segments : int
        Number of segments of consecutive frames (>= 2); each needs enough localizations of
        the same structures (a few hundred or more).
    bin_nm : float
        Histogram bin size, nm.
    blur_nm : float, optional
        Gaussian blur of each histogram, nm (default ``bin_nm``).
    max_drift_nm : float
        Largest drift between two segments searched for, nm.
    max_residual_nm : float, optional
        Pairs whose residual exceeds this are dropped (default ``max(2 bin_nm, 3 x median
        residual)``).
    n_frames : int, optional
        Frames of the movie (default the table's ``n_frames`` or its last frame + 1).

    Returns
    -------
    DriftResult
    """
    if not isinstance(n_segments, int | np.integer) or n_segments < 2:
        raise ValueError(f"n_segments must be an integer >= 2, got {n_segments!r}")
    check_positive(bin_nm, "bin_nm")
    check_positive(max_drift_nm, "max_drift_nm")
    f, x, y = columns(frame_of(locs))
    ok = np.isfinite(x) & np.isfinite(y)
    f, x, y = f[ok], x[ok], y[ok]
    if f.size < 10 * n_segments:
        raise ValueError(
            f"drift_rcc needs at least {10 * n_segments} localizations for {n_segments} "
            f"segments, got {f.size}"
        )
    total = int(n_frames or meta_of(locs).get("n_frames") or int(f.max()) + 1)
    if f.max() >= total:
        raise ValueError(f"locs has frame {int(f.max())} but n_frames is {total}")
    edges = np.linspace(0, total, n_segments + 1)
    seg = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, n_segments - 1)
    counts = np.bincount(seg, minlength=n_segments)
    if np.any(counts == 0):
        raise ValueError(
            f"segment(s) {np.nonzero(counts == 0)[0].tolist()} of {n_segments} have no "
            "localizations; use fewer segments"
        )
    blur = float(bin_nm if blur_nm is None else blur_nm)
    y0, x0, rows, cols = _grid(x, y, bin_nm, max_drift_nm)
    images = _histograms(seg, x, y, n_segments, y0, x0, rows, cols, bin_nm)
    m = min(math.ceil(max_drift_nm / bin_nm), rows // 2 - 1, cols // 2 - 1)
    ii, jj, shifts, _ = _pair_shifts(images, blur / bin_nm, m)
    r = shifts * bin_nm  # (dy, dx) nm
    keep = np.ones(ii.size, dtype=bool)
    d, resid = _solve(n_segments, ii, jj, r, keep)
    for _ in range(3):
        norm = np.hypot(resid[:, 0], resid[:, 1])
        limit = (
            max(2.0 * bin_nm, 3.0 * float(np.median(norm)))
            if max_residual_nm is None
            else float(max_residual_nm)
        )
        new_keep = norm <= limit
        if new_keep.all() or new_keep.sum() < n_segments - 1 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
        d, resid = _solve(n_segments, ii, jj, r, keep)
    centres = np.bincount(seg, weights=f.astype(float), minlength=n_segments) / counts
    frames = np.arange(total, dtype=float)
    dy = _spline(centres, d[:, 0], frames)
    dx = _spline(centres, d[:, 1], frames)
    dy0, dx0 = dy[0], dx[0]
    kept = np.hypot(resid[keep, 0], resid[keep, 1])
    return DriftResult(
        x_nm=dx - dx0,
        y_nm=dy - dy0,
        segment_frame=centres,
        segment_x_nm=d[:, 1] - dx0,
        segment_y_nm=d[:, 0] - dy0,
        residual_nm=float(np.sqrt(np.mean(kept**2))) if kept.size else math.nan,
        n_pairs=int(keep.sum()),
    )


def _spline(t: np.ndarray, v: np.ndarray, out_t: np.ndarray) -> np.ndarray:
    if t.size < 3:
        slope = (v[-1] - v[0]) / (t[-1] - t[0]) if t[-1] != t[0] else 0.0
        return v[0] + slope * (out_t - t[0])
    spline = interpolate.CubicSpline(t, v, bc_type="natural", extrapolate=True)
    return spline(out_t)


def correct_drift(locs: Any, drift: DriftResult) -> Any:
    """Subtract the drift of each localization's frame (returns a new table).

    Parameters
    ----------
    locs : Locs or pandas.DataFrame
        Localizations with ``frame``, ``x [nm]``, ``y [nm]``.
    drift : DriftResult
        From :func:`drift_rcc`.

    Returns
    -------
    Locs or pandas.DataFrame
        Same kind as ``locs``, with corrected ``x [nm]``, ``y [nm]``.
    """
    df = frame_of(locs)
    f, x, y = columns(df)
    if f.size and (f.min() < 0 or f.max() >= drift.n_frames):
        raise ValueError(
            f"locs has frames {int(f.min())}..{int(f.max())}, the drift covers "
            f"0..{drift.n_frames - 1}"
        )
    out = df.copy()
    out[X] = x - drift.x_nm[f]
    out[Y] = y - drift.y_nm[f]
    return like(locs, out)


@dataclass(frozen=True)
class AffineTransform:
    """Affine map ``(x', y') = matrix[:, :2] @ (x, y) + matrix[:, 2]`` (nm).

    Attributes
    ----------
    matrix : ndarray of shape (2, 3)
        Rows give ``x'`` and ``y'``.
    rms_nm : float
        RMS distance of the matched pairs after the transform, nm.
    n_matched : int
        Pairs used in the last fit.
    """

    matrix: np.ndarray
    rms_nm: float = math.nan
    n_matched: int = 0

    def apply(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Transform coordinates ``x, y`` (nm); returns ``(x', y')``."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        a = self.matrix
        return a[0, 0] * x + a[0, 1] * y + a[0, 2], a[1, 0] * x + a[1, 1] * y + a[1, 2]

    @classmethod
    def identity(cls) -> AffineTransform:
        """The identity transform."""
        return cls(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))


def _fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    design = np.column_stack([src, np.ones(len(src))])
    sol, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return sol.T  # (2, 3)


def register_channels(
    reference: Any,
    moving: Any,
    *,
    max_dist_nm: float = 200.0,
    n_iter: int = 10,
    initial: AffineTransform | None = None,
    bin_nm: float = 20.0,
) -> AffineTransform:
    """Affine transform that maps the ``moving`` channel onto the ``reference`` channel.

    Parameters
    ----------
    reference, moving : Locs or pandas.DataFrame
        Point sets (``x [nm]``, ``y [nm]``), e.g. beads or the localizations of both channels of a
        calibration sample.
    max_dist_nm : float
        Matching radius after the initial translation, nm.
    n_iter : int
        Match-and-fit iterations (the radius shrinks towards 3x the RMS residual).
    initial : AffineTransform, optional
        Starting transform; default a translation from the cross-correlation of the two
        rendered point sets.
    bin_nm : float
        Histogram bin of the initial cross-correlation, nm.

    Returns
    -------
    AffineTransform
        Apply it to the moving channel with :func:`apply_transform`.
    """
    check_positive(max_dist_nm, "max_dist_nm")
    _, rx, ry = columns(frame_of(reference, "reference"), "reference", frame=False)
    _, mx, my = columns(frame_of(moving, "moving"), "moving", frame=False)
    ref = np.column_stack([rx, ry])
    mov = np.column_stack([mx, my])
    ref = ref[np.all(np.isfinite(ref), axis=1)]
    mov = mov[np.all(np.isfinite(mov), axis=1)]
    if len(ref) < 3 or len(mov) < 3:
        raise ValueError("register_channels needs at least 3 points in each channel")
    if initial is None:
        allx = np.concatenate([ref[:, 0], mov[:, 0]])
        ally = np.concatenate([ref[:, 1], mov[:, 1]])
        y0, x0, rows, cols = _grid(allx, ally, bin_nm, max_dist_nm)
        seg = np.concatenate([np.zeros(len(ref), np.int64), np.ones(len(mov), np.int64)])
        images = _histograms(seg, allx, ally, 2, y0, x0, rows, cols, bin_nm)
        m = min(math.ceil(2 * max_dist_nm / bin_nm), rows // 2 - 1, cols // 2 - 1)
        _, _, shifts, _ = _pair_shifts(images, 1.0, m)
        sy, sx = shifts[0] * bin_nm  # moving relative to reference
        matrix = np.array([[1.0, 0.0, -sx], [0.0, 1.0, -sy]])
    else:
        matrix = np.asarray(initial.matrix, dtype=float).copy()
    tree = spatial.cKDTree(ref)
    radius = float(max_dist_nm)
    rms, n_match = math.nan, 0
    for _ in range(int(n_iter)):
        t = AffineTransform(matrix)
        px, py = t.apply(mov[:, 0], mov[:, 1])
        dist, idx = tree.query(np.column_stack([px, py]), k=1, distance_upper_bound=radius)
        ok = np.isfinite(dist)
        # One-to-one: keep the closest moving point of each reference point.
        order = np.argsort(dist[ok])
        cand = np.nonzero(ok)[0][order]
        _, first = np.unique(idx[cand], return_index=True)
        pairs = cand[first]
        if pairs.size < 3:
            raise ValueError(
                f"only {pairs.size} matched points within {radius:g} nm; increase max_dist_nm"
            )
        matrix = _fit_affine(mov[pairs], ref[idx[pairs]])
        px, py = AffineTransform(matrix).apply(mov[pairs, 0], mov[pairs, 1])
        res = np.hypot(px - ref[idx[pairs], 0], py - ref[idx[pairs], 1])
        new_rms = float(np.sqrt(np.mean(res**2)))
        n_match = int(pairs.size)
        radius = max(min(radius, 4.0 * new_rms), 3.0 * new_rms, 1.0)
        if math.isfinite(rms) and abs(new_rms - rms) < 1e-3 * max(rms, 1e-9):
            rms = new_rms
            break
        rms = new_rms
    return AffineTransform(matrix, rms, n_match)


def apply_transform(locs: Any, transform: AffineTransform) -> Any:
    """Return a copy of ``locs`` (Locs or DataFrame) with ``x [nm]``, ``y [nm]`` transformed."""
    df = frame_of(locs)
    _, x, y = columns(df, frame=False)
    out = df.copy()
    out[X], out[Y] = transform.apply(x, y)
    return like(locs, out)
