"""Quality metrics of localization tables: NeNA precision, FRC resolution, matching to truth.

* :func:`nena`: nearest-neighbour-based analysis (Endesfelder et al., Histochem. Cell Biol. 141,
  629 (2014)). A molecule on in consecutive frames is localized twice; the distance ``d`` between
  the two localizations has the density ``d / (2 s^2) exp(-d^2 / (4 s^2))`` where ``s`` is the
  localization precision per axis. The nearest neighbour in the next frame of every
  localization is found, and a mixture of that density and a background that grows linearly
  with ``d`` (random pairs) is fitted by maximum likelihood.
* :func:`frc`, :func:`frc_resolution`: Fourier ring correlation of two independent halves of the
  localizations rendered as histograms (Nieuwenhuizen et al., Nat. Methods 10, 557 (2013)); the
  resolution is the inverse of the spatial frequency where the smoothed curve drops below 1/7.
* :func:`match_localizations`: one-to-one matching of localizations to ground truth per frame,
  with recall, precision and position errors.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import optimize, spatial

from ..errors import check_positive
from ._table import columns, frame_of

__all__ = [
    "FRCResult",
    "MatchResult",
    "NeNAResult",
    "frc",
    "frc_resolution",
    "match_localizations",
    "nena",
]

logger = logging.getLogger(__name__)


def _xy(table: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f, x, y = columns(frame_of(table, name), name)
    return f, x, y


def _frame_pairs(
    fa: np.ndarray,
    xa: np.ndarray,
    ya: np.ndarray,
    fb: np.ndarray,
    xb: np.ndarray,
    yb: np.ndarray,
    max_dist: float,
    frame_offset: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest point of set b in frame ``f + frame_offset`` for every point of set a (or -1).

    Frames are separated by a large distance along a third axis, so one k-d tree query finds
    neighbours in the right frame only. Returns (index into b or -1, distance or inf).
    """
    if len(fb) == 0 or len(fa) == 0:
        return np.full(len(fa), -1), np.full(len(fa), np.inf)
    span = max(
        float(np.ptp(np.concatenate([xa, xb]))), float(np.ptp(np.concatenate([ya, yb]))), 1.0
    )
    sep = 4.0 * (span + max_dist) + 1.0
    tree = spatial.cKDTree(np.column_stack([xb, yb, fb * sep]))
    dist, idx = tree.query(
        np.column_stack([xa, ya, (fa + frame_offset) * sep]), k=1, distance_upper_bound=max_dist
    )
    found = np.isfinite(dist)
    return np.where(found, idx, -1), dist


@dataclass(frozen=True)
class MatchResult:
    """Localizations matched one-to-one to true emitters (per frame, mutual nearest neighbours).

    Attributes
    ----------
    loc_index, truth_index : ndarray of shape (m,), int
        Row positions (``iloc``) of matched pairs in the two tables.
    dx_nm, dy_nm : ndarray of shape (m,)
        Localization minus truth, nm.
    recall : float
        Matched true emitters / true emitters.
    precision : float
        Matched localizations / localizations.
    n_locs, n_truth : int
        Table sizes.
    """

    loc_index: np.ndarray
    truth_index: np.ndarray
    dx_nm: np.ndarray
    dy_nm: np.ndarray
    recall: float
    precision: float
    n_locs: int
    n_truth: int

    @property
    def rmse_nm(self) -> float:
        """Root-mean-square error per axis of the matched pairs, nm."""
        if self.dx_nm.size == 0:
            return math.nan
        return float(np.sqrt(0.5 * np.mean(self.dx_nm**2 + self.dy_nm**2)))


def match_localizations(locs: Any, truth: Any, *, max_dist_nm: float = 150.0) -> MatchResult:
    """Match localizations to ground truth in the same frame within ``max_dist_nm``.

    Parameters
    ----------
    locs, truth : Locs or pandas.DataFrame
        Tables with ``frame``, ``x [nm]``, ``y [nm]``.
    max_dist_nm : float
        Largest distance of a match, nm.

    Returns
    -------
    MatchResult
        Pairs are mutual nearest neighbours within the frame (each localization and each true
        emitter used at most once).
    """
    check_positive(max_dist_nm, "max_dist_nm")
    fl, xl, yl = _xy(locs, "locs")
    ft, xt, yt = _xy(truth, "truth")
    near_t, _ = _frame_pairs(fl, xl, yl, ft, xt, yt, max_dist_nm)
    near_l, _ = _frame_pairs(ft, xt, yt, fl, xl, yl, max_dist_nm)
    li = np.nonzero(near_t >= 0)[0]
    ti = near_t[li]
    mutual = near_l[ti] == li
    li, ti = li[mutual], ti[mutual]
    n_l, n_t = len(fl), len(ft)
    return MatchResult(
        li,
        ti,
        xl[li] - xt[ti],
        yl[li] - yt[ti],
        recall=len(ti) / n_t if n_t else math.nan,
        precision=len(li) / n_l if n_l else math.nan,
        n_locs=n_l,
        n_truth=n_t,
    )


@dataclass(frozen=True)
class NeNAResult:
    """Result of :func:`nena`.

    Attributes
    ----------
    precision_nm : float
        Localization precision per axis, nm.
    fraction : float
        Fraction of the neighbour distances attributed to repeated localizations.
    distances_nm : ndarray of shape (m,)
        Next-frame nearest-neighbour distances used in the fit, nm.
    """

    precision_nm: float
    fraction: float
    distances_nm: np.ndarray


def _nena_pdf(d: np.ndarray, s: float) -> np.ndarray:
    return d / (2.0 * s * s) * np.exp(-(d * d) / (4.0 * s * s))


def nena(locs: Any, *, max_dist_nm: float = 150.0) -> NeNAResult:
    """Localization precision from nearest neighbours in consecutive frames (NeNA).

    Parameters
    ----------
    locs : Locs or pandas.DataFrame
        Localizations with ``frame``, ``x [nm]``, ``y [nm]``.
    max_dist_nm : float
        Neighbour distances are searched up to this value (about 10x the expected precision).

    Returns
    -------
    NeNAResult
        ``precision_nm`` is NaN when fewer than 20 pairs are found.
    """
    check_positive(max_dist_nm, "max_dist_nm")
    f, x, y = _xy(locs, "locs")
    idx, dist = _frame_pairs(f, x, y, f, x, y, max_dist_nm, frame_offset=1)
    d = dist[idx >= 0]
    if d.size < 20:
        logger.warning("NeNA: only %d next-frame neighbours found; precision is NaN", d.size)
        return NeNAResult(math.nan, math.nan, d)
    dmax = float(max_dist_nm)

    def nll(p: np.ndarray) -> float:
        s, w = math.exp(p[0]), 1.0 / (1.0 + math.exp(-p[1]))
        # Mixture density on [0, dmax]: NeNA peak (renormalized) + linear background.
        norm = 1.0 - math.exp(-(dmax * dmax) / (4.0 * s * s))
        dens = w * _nena_pdf(d, s) / max(norm, 1e-300) + (1.0 - w) * 2.0 * d / dmax**2
        return -float(np.sum(np.log(np.maximum(dens, 1e-300))))

    s0 = float(np.median(d)) / (2.0 * math.sqrt(math.log(2.0)))  # median of the pure NeNA peak
    best = None
    for start in (s0, 0.5 * s0, 2.0 * s0):
        res = optimize.minimize(
            nll, np.array([math.log(max(start, 1e-3)), 2.0]), method="Nelder-Mead"
        )
        if best is None or res.fun < best.fun:
            best = res
    s = math.exp(best.x[0])
    w = 1.0 / (1.0 + math.exp(-best.x[1]))
    return NeNAResult(float(s), float(w), d)


@dataclass(frozen=True)
class FRCResult:
    """Fourier ring correlation curve and resolution.

    Attributes
    ----------
    frequency : ndarray of shape (m,)
        Ring spatial frequency, 1/nm.
    frc : ndarray of shape (m,)
        Correlation per ring.
    frc_smooth : ndarray of shape (m,)
        Curve after a 5-ring moving average (used for the threshold crossing).
    resolution_nm : float
        ``1 / q`` where the smoothed curve first drops below ``threshold`` (linear
        interpolation); NaN if it never does.
    threshold : float
        Threshold (1/7).
    """

    frequency: np.ndarray
    frc: np.ndarray
    frc_smooth: np.ndarray
    resolution_nm: float
    threshold: float


def _histogram(x: np.ndarray, y: np.ndarray, origin: tuple[float, float], pixel: float, n: int):
    ci = np.floor((x - origin[1]) / pixel).astype(np.int64)
    ri = np.floor((y - origin[0]) / pixel).astype(np.int64)
    ok = (ci >= 0) & (ci < n) & (ri >= 0) & (ri < n)
    img = np.bincount(ri[ok] * n + ci[ok], minlength=n * n).astype(np.float64)
    return img.reshape(n, n)


def frc(
    locs_a: Any,
    locs_b: Any,
    *,
    pixel_nm: float = 5.0,
    threshold: float = 1.0 / 7.0,
    smooth: int = 5,
) -> FRCResult:
    """Fourier ring correlation of two localization sets.

    Parameters
    ----------
    locs_a, locs_b : Locs or pandas.DataFrame
        Two independent halves (``x [nm]``, ``y [nm]``; ``frame`` is not used).
    pixel_nm : float
        Histogram pixel size, nm (several times smaller than the expected resolution).
    threshold : float
        FRC threshold (1/7 by default).
    smooth : int
        Width (rings) of the moving average applied before finding the crossing.

    Returns
    -------
    FRCResult
    """
    check_positive(pixel_nm, "pixel_nm")
    _, xa, ya = columns(frame_of(locs_a, "locs_a"), "locs_a", frame=False)
    _, xb, yb = columns(frame_of(locs_b, "locs_b"), "locs_b", frame=False)
    if xa.size == 0 or xb.size == 0:
        raise ValueError("frc needs localizations in both halves")
    xs, ys = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    origin = (float(ys.min()), float(xs.min()))
    extent = max(float(np.ptp(xs)), float(np.ptp(ys))) + pixel_nm
    from scipy import fft

    n = 2 * fft.next_fast_len(math.ceil(max(extent / pixel_nm, 16) / 2), real=True)
    if n > 8192:
        raise ValueError(
            f"pixel_nm={pixel_nm} gives a {n} x {n} image for an extent of {extent:.0f} nm; "
            "use a larger pixel"
        )
    ha = _histogram(xa, ya, origin, pixel_nm, n)
    hb = _histogram(xb, yb, origin, pixel_nm, n)
    # A Tukey window suppresses the edge discontinuity (outer 1/8 of each side).
    win1 = _tukey(n, 0.25)
    win = win1[:, None] * win1[None, :]
    # Real transforms: the half plane, with the columns that stand for two conjugate
    # frequencies counted twice, gives the same ring sums as the full plane.
    fa = fft.rfft2(ha * win, workers=-1)
    fb = fft.rfft2(hb * win, workers=-1)
    qy = np.fft.fftfreq(n)
    qx = np.fft.rfftfreq(n)
    r = np.sqrt(qy[:, None] ** 2 + qx[None, :] ** 2) * n
    ring = np.rint(r).astype(np.int64).ravel()
    weight = np.full(qx.size, 2.0)
    weight[0] = 1.0
    weight[-1] = 1.0  # n is even: the last column is the Nyquist frequency
    weight = np.broadcast_to(weight[None, :], fa.shape).ravel()
    n_rings = n // 2
    keep = ring < n_rings
    ring_k, w_k = ring[keep], weight[keep]
    num = np.bincount(ring_k, w_k * (fa * np.conj(fb)).real.ravel()[keep], minlength=n_rings)
    pa = np.bincount(ring_k, w_k * (np.abs(fa) ** 2).ravel()[keep], minlength=n_rings)
    pb = np.bincount(ring_k, w_k * (np.abs(fb) ** 2).ravel()[keep], minlength=n_rings)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = num / np.sqrt(pa * pb)
    freq = np.arange(n_rings) / (n * pixel_nm)
    sm = _moving_average(curve, smooth)
    res = _crossing(freq, sm, threshold)
    return FRCResult(freq, curve, sm, res, float(threshold))


def _tukey(n: int, alpha: float) -> np.ndarray:
    w = np.ones(n)
    edge = int(alpha * (n - 1) / 2.0)
    if edge > 0:
        t = np.arange(edge) / edge
        ramp = 0.5 * (1.0 - np.cos(np.pi * t))
        w[:edge] = ramp
        w[n - edge :] = ramp[::-1]
    return w


def _moving_average(a: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` rings, ignoring NaN (shorter windows at the ends)."""
    if width <= 1:
        return a.copy()
    ok = np.isfinite(a)
    kernel = np.ones(2 * (width // 2) + 1)
    total = np.convolve(np.where(ok, a, 0.0), kernel, mode="same")
    count = np.convolve(ok.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def _crossing(freq: np.ndarray, curve: np.ndarray, threshold: float) -> float:
    start = 1  # ring 0 (DC) is 1 by construction
    below = np.nonzero(curve[start:] < threshold)[0]
    if below.size == 0:
        return math.nan
    i = int(below[0]) + start
    if i == 0:
        return math.nan
    c0, c1 = curve[i - 1], curve[i]
    t = (c0 - threshold) / (c0 - c1) if c0 != c1 else 0.0
    q = freq[i - 1] + t * (freq[i] - freq[i - 1])
    return float(1.0 / q) if q > 0 else math.nan


def frc_resolution(
    locs: Any,
    *,
    pixel_nm: float = 5.0,
    split: Literal["random", "blocks"] = "random",
    block_frames: int = 50,
    seed: int | None = 0,
    threshold: float = 1.0 / 7.0,
) -> FRCResult:
    """FRC resolution of one localization table split into two halves.

    Parameters
    ----------
    locs : Locs or pandas.DataFrame
        Localizations (``frame``, ``x [nm]``, ``y [nm]``).
    pixel_nm : float
        Histogram pixel size, nm.
    split : {"random", "blocks"}
        ``random``: each localization goes to a random half (repeated localizations of one
        molecule fall in both halves, which makes the estimate optimistic); ``blocks``:
        alternating blocks of ``block_frames`` frames.
    block_frames : int
        Block length for ``split="blocks"``.
    seed : int, optional
        Seed of the random split.
    threshold : float
        FRC threshold.

    Returns
    -------
    FRCResult
    """
    df = frame_of(locs)
    if len(df) < 2:
        raise ValueError("frc_resolution needs at least 2 localizations")
    if split == "random":
        half = np.random.default_rng(seed).random(len(df)) < 0.5
    elif split == "blocks":
        if block_frames < 1:
            raise ValueError(f"block_frames must be >= 1, got {block_frames!r}")
        f, _, _ = columns(df)
        half = (f // int(block_frames)) % 2 == 0
    else:
        raise ValueError(f"split must be 'random' or 'blocks', got {split!r}")
    return frc(df[half], df[~half], pixel_nm=pixel_nm, threshold=threshold)
