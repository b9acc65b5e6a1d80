"""Simulated 4D-STEM data with known answers.

* :func:`simulate_counting` — a counting-mode scan: single electrons (Landau-like or fixed
  deposits spread by a Gaussian charge cloud) on a Gaussian read-noise dark background, plus
  x-rays (large deposits), hot pixels (including adjacent pairs) and cold pixels. The planted
  electrons are returned as :class:`~stacklab.stem4d.ElectronEvents`; :func:`match_events`
  scores a counting result against them.
* :func:`simulate_diffraction` — an integrating-mode scan: a soft central disk whose position
  drifts with the scan position, Bragg disks at known positions, Poisson noise and optional
  hot/cold pixels.
* :func:`simulate_descan` — a bright-field disk following a known descan (plane + quadratic)
  plus the deflections of a known phase object (for origin fitting and DPC).
* :func:`gaussian_spots` — an image of Gaussian spots at known sub-pixel positions.
* :func:`polar_background_image` — a smooth elliptical radial background with bright spots.

Everything is seeded (``seed=``) and returns NumPy arrays plus a truth dataclass.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.special import ndtr

from ..errors import ShapeError
from .counting import ElectronEvents

__all__ = [
    "CountingTruth",
    "DescanTruth",
    "DiffractionTruth",
    "MatchScore",
    "gaussian_spots",
    "match_events",
    "polar_background_image",
    "simulate_counting",
    "simulate_descan",
    "simulate_diffraction",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _shape2(value: Any, name: str) -> tuple[int, int]:
    try:
        shape = tuple(int(s) for s in value)
    except TypeError:
        raise TypeError(f"{name} must be a pair of ints, got {value!r}") from None
    if len(shape) != 2 or min(shape) < 1:
        raise ShapeError(f"{name} must be two positive ints, got {value!r}")
    return shape  # type: ignore[return-value]


def _pixel_fractions(centre: np.ndarray, sigma: float, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Fractions of a 1-D Gaussian of width ``sigma`` in pixels ``round(c) + (-half..half)``.

    Returns (first pixel index (n,), fractions (n, 2*half+1)).
    """
    base = np.rint(centre).astype(np.int64)
    k = np.arange(-half, half + 1)
    edges_lo = (base[:, None] + k - 0.5 - centre[:, None]) / sigma
    edges_hi = edges_lo + 1.0 / sigma
    return base - half, ndtr(edges_hi) - ndtr(edges_lo)


def _render_clouds(
    n_frames: int,
    det: tuple[int, int],
    frame: np.ndarray,
    pos: np.ndarray,
    deposit: np.ndarray,
    sigma: float,
) -> np.ndarray:
    """Sum of Gaussian charge clouds, float64 (n_frames, H, W); clouds are cut at the edges."""
    h, w = det
    out = np.zeros(n_frames * h * w, dtype=np.float64)
    if frame.size == 0:
        return out.reshape(n_frames, h, w)
    half = max(2, math.ceil(4 * sigma))
    r0, fr = _pixel_fractions(pos[:, 0], sigma, half)
    c0, fc = _pixel_fractions(pos[:, 1], sigma, half)
    k = np.arange(2 * half + 1)
    rr = r0[:, None, None] + k[None, :, None]
    cc = c0[:, None, None] + k[None, None, :]
    wts = deposit[:, None, None] * fr[:, :, None] * fc[:, None, :]
    inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    ff = np.broadcast_to(frame[:, None, None], inside.shape)
    flat = (ff * h + rr) * w + cc
    out += np.bincount(flat[inside], weights=wts[inside], minlength=out.size)
    return out.reshape(n_frames, h, w)


def _disk(det: tuple[int, int], centre: Any, radius: float, edge: float) -> np.ndarray:
    """Soft disk (values in [0, 1]) of ``radius`` with a logistic edge of width ``edge`` (px)."""
    yy, xx = np.indices(det, dtype=np.float64)
    c = np.asarray(centre, dtype=np.float64)
    r = np.hypot(yy - c[..., 0, None, None], xx - c[..., 1, None, None])
    return 1.0 / (1.0 + np.exp((r - radius) / max(edge, 1e-6)))


def _random_sites(
    rng: np.random.Generator, det: tuple[int, int], n: int, taken: np.ndarray, margin: int = 0
) -> list[tuple[int, int]]:
    """Up to ``n`` random pixels at Chebyshev distance >= 3 from ``taken`` sites and each other."""
    h, w = det
    sites: list[tuple[int, int]] = []
    tries = 0
    while len(sites) < n and tries < 100 * (n + 1):
        tries += 1
        r = int(rng.integers(margin, h - margin))
        c = int(rng.integers(margin, w - margin))
        if taken[max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3].any():
            continue
        taken[r, c] = True
        sites.append((r, c))
    if len(sites) < n:
        raise ValueError(f"cannot place {n} bad pixels on a {det} detector")
    return sites


def _bad_pixels(
    rng: np.random.Generator,
    det: tuple[int, int],
    n_hot: int,
    n_hot_pairs: int,
    n_cold: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks (hot, hot pairs only, cold) with every site 3 px from the others."""
    taken = np.zeros(det, dtype=bool)
    hot = np.zeros(det, dtype=bool)
    pairs = np.zeros(det, dtype=bool)
    cold = np.zeros(det, dtype=bool)
    for r, c in _random_sites(rng, det, n_hot, taken):
        hot[r, c] = True
    for r, c in _random_sites(rng, det, n_hot_pairs, taken, margin=1):
        dr, dc = ((0, 1), (1, 0))[int(rng.integers(2))]
        r2, c2 = min(r + dr, det[0] - 1), min(c + dc, det[1] - 1)
        if (r2, c2) == (r, c):
            r2, c2 = r - dr, c - dc
        hot[r, c] = hot[r2, c2] = True
        pairs[r, c] = pairs[r2, c2] = True
        taken[max(r2 - 2, 0) : r2 + 3, max(c2 - 2, 0) : c2 + 3] = True
    for r, c in _random_sites(rng, det, n_cold, taken):
        cold[r, c] = True
    return hot, pairs, cold


# ------------------------------------------------------------------------------------------------
# counting-mode simulation
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CountingTruth:
    """Ground truth of :func:`simulate_counting`.

    Attributes
    ----------
    electrons : ElectronEvents
        The planted electrons: ``rows``/``cols`` the pixel holding the impact point,
        ``subpixel`` the exact ``(row, col)`` impact point (pixel centres at integers).
    deposits : ndarray of float64, shape (n_electrons,)
        Energy deposited by each electron, ADU.
    xrays : ElectronEvents
        Positions of the x-ray hits (not electrons; a counter should reject them).
    dark : ndarray of float64, shape (det_row, det_col)
        Mean dark level of every pixel, ADU (hot-pixel excess not included).
    read_noise : float
        Gaussian read-noise sigma, ADU.
    hot_mask, hot_pair_mask, cold_mask : ndarray of bool, shape (det_row, det_col)
        Hot pixels (all, including pairs), the pixels of adjacent hot pairs, dead/cold pixels.
    pattern : ndarray of float64, shape (det_row, det_col)
        Probability map of the electron impact points (sums to 1).
    deposit_mean : float
        Mean single-electron deposit, ADU.
    """

    electrons: ElectronEvents
    deposits: np.ndarray
    xrays: ElectronEvents
    dark: np.ndarray
    read_noise: float
    hot_mask: np.ndarray
    hot_pair_mask: np.ndarray
    cold_mask: np.ndarray
    pattern: np.ndarray
    deposit_mean: float


def _events_from(
    frame: np.ndarray, pos: np.ndarray, scan: tuple[int, ...], det: tuple[int, int]
) -> tuple[ElectronEvents, np.ndarray]:
    order = np.lexsort((pos[:, 1], pos[:, 0], frame))
    frame, pos = frame[order], pos[order]
    n_frames = math.prod(scan)
    offsets = np.zeros(n_frames + 1, dtype=np.int64)
    np.cumsum(np.bincount(frame, minlength=n_frames), out=offsets[1:])
    pix = np.clip(np.rint(pos).astype(np.int64), 0, np.array(det) - 1)
    return ElectronEvents(offsets, pix[:, 0], pix[:, 1], scan, det, pos.astype(np.float32)), order


def simulate_counting(
    scan_shape: tuple[int, int] = (8, 8),
    det_shape: tuple[int, int] = (64, 64),
    *,
    electrons_per_frame: float = 20.0,
    pattern: str | np.ndarray = "disk",
    deposit: str = "landau",
    deposit_mean: float = 100.0,
    landau_width: float = 0.12,
    cloud_sigma: float = 0.35,
    read_noise: float = 2.5,
    dark_level: float = 100.0,
    dark_spread: float = 5.0,
    xrays_per_frame: float = 0.0,
    xray_deposit: tuple[float, float] = (2000.0, 6000.0),
    n_hot: int = 0,
    n_hot_pairs: int = 0,
    hot_level: float = 800.0,
    n_cold: int = 0,
    min_separation: int = 3,
    dtype: Any = np.uint16,
    seed: int = 0,
) -> tuple[np.ndarray, CountingTruth]:
    """Simulate a counting-mode 4D-STEM scan with planted electrons.

    Impact points are drawn from ``pattern`` (a Poisson number per frame), thinned to a hard-core
    distance (Matérn type II: of two impacts closer than ``min_separation`` pixels, Chebyshev
    distance of their pixels, the one with the larger random mark is removed, so the planted
    electrons are resolvable and coincidence loss is not scored), and x-ray hits take priority
    over electrons. Each electron deposits energy as a 2-D Gaussian charge cloud integrated over
    the pixels; the frame is ``dark + clouds + N(0, read_noise)`` rounded to ``dtype`` (clipped to
    its range, never wrapped).

    Parameters
    ----------
    scan_shape : (int, int)
        ``(scan_row, scan_col)``; non-square shapes are fine.
    det_shape : (int, int)
        ``(det_row, det_col)``.
    electrons_per_frame : float
        Mean number of impacts per frame before hard-core thinning.
    pattern : "disk", "uniform" or ndarray of shape det_shape
        Impact probability map: a bright central disk (radius ``min(det)/6``) on a weak uniform
        background, uniform, or a user map (non-negative).
    deposit : {"landau", "fixed"}
        Landau-like (Moyal, width ``landau_width * deposit_mean``, clipped to 0.3-4x the mean)
        or fixed deposits.
    deposit_mean : float
        Mean deposit per electron, ADU.
    landau_width : float
        Relative scale of the Moyal distribution.
    cloud_sigma : float
        Charge-cloud sigma, px.
    read_noise : float
        Gaussian read noise, ADU.
    dark_level, dark_spread : float
        Mean and pixel-to-pixel spread of the dark level, ADU.
    xrays_per_frame : float
        Mean number of x-ray hits per frame (uniform over the detector).
    xray_deposit : (float, float)
        Range of x-ray deposits, ADU (uniform).
    n_hot, n_hot_pairs, n_cold : int
        Isolated hot pixels, adjacent hot pairs (horizontal or vertical) and dead pixels (0 ADU).
    hot_level : float
        Mean excess of a hot pixel, ADU (Poisson-fluctuating in every frame).
    min_separation : int
        Hard-core distance of impacts, px (>= 1).
    dtype : dtype
        Output dtype (uint16 by default).
    seed : int
        Random seed.

    Returns
    -------
    cube : ndarray of shape (scan_row, scan_col, det_row, det_col)
    truth : CountingTruth
    """
    scan = _shape2(scan_shape, "scan_shape")
    det = _shape2(det_shape, "det_shape")
    if deposit not in ("landau", "fixed"):
        raise ValueError(f"deposit must be 'landau' or 'fixed', got {deposit!r}")
    for value, name in (
        (deposit_mean, "deposit_mean"),
        (cloud_sigma, "cloud_sigma"),
        (read_noise, "read_noise"),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    if electrons_per_frame < 0 or xrays_per_frame < 0:
        raise ValueError("electrons_per_frame and xrays_per_frame must be >= 0")
    if min_separation < 1:
        raise ValueError(f"min_separation must be >= 1, got {min_separation}")
    rng = np.random.default_rng(seed)
    n_frames = math.prod(scan)
    h, w = det

    if isinstance(pattern, str):
        if pattern == "disk":
            p = 0.1 + _disk(det, ((h - 1) / 2, (w - 1) / 2), min(det) / 6, 0.7)
        elif pattern == "uniform":
            p = np.ones(det)
        else:
            raise ValueError(f"pattern must be 'disk', 'uniform' or an array, got {pattern!r}")
    else:
        p = np.asarray(pattern, dtype=np.float64)
        if p.shape != det:
            raise ShapeError(f"pattern must have shape {det}, got {p.shape}")
        if np.any(p < 0) or not np.all(np.isfinite(p)) or p.sum() <= 0:
            raise ValueError("pattern must be finite, non-negative and not all zero")
    p = p / p.sum()

    # impacts: electrons (mark in [0, 1)) and x-rays (mark -1: always kept)
    n_e = rng.poisson(electrons_per_frame, n_frames)
    e_frame = np.repeat(np.arange(n_frames), n_e)
    e_pix = rng.choice(h * w, size=e_frame.size, p=p.ravel())
    e_pos = np.stack([e_pix // w, e_pix % w], axis=1) + rng.uniform(-0.5, 0.5, (e_frame.size, 2))
    n_x = rng.poisson(xrays_per_frame, n_frames)
    x_frame = np.repeat(np.arange(n_frames), n_x)
    x_pos = np.stack(
        [rng.uniform(-0.5, h - 0.5, x_frame.size), rng.uniform(-0.5, w - 0.5, x_frame.size)], axis=1
    )
    frame = np.concatenate([e_frame, x_frame])
    pos = np.concatenate([e_pos, x_pos])
    marks = np.concatenate([rng.random(e_frame.size), -np.ones(x_frame.size)])
    pix = np.clip(np.rint(pos).astype(np.int64), 0, np.array(det) - 1)
    keep = np.ones(frame.size, dtype=bool)
    size = 2 * min_separation - 1
    step = 256
    for f0 in range(0, n_frames, step):
        f1 = min(f0 + step, n_frames)
        sel = np.flatnonzero((frame >= f0) & (frame < f1))
        img = np.full((f1 - f0, h, w), np.inf)
        np.minimum.at(img, (frame[sel] - f0, pix[sel, 0], pix[sel, 1]), marks[sel])
        low = ndimage.minimum_filter(img, size=(1, size, size), mode="constant", cval=np.inf)
        keep[sel] = low[frame[sel] - f0, pix[sel, 0], pix[sel, 1]] >= marks[sel]
        # two impacts on one pixel: keep only the lower mark
    dup = np.zeros(frame.size, dtype=bool)
    flat = (frame * h + pix[:, 0]) * w + pix[:, 1]
    order = np.lexsort((marks, flat))
    same = np.flatnonzero(flat[order][1:] == flat[order][:-1]) + 1
    dup[order[same]] = True
    keep &= ~dup
    is_x = marks < 0
    e_keep = keep & ~is_x
    x_keep = keep & is_x

    n_ek = int(e_keep.sum())
    if deposit == "fixed":
        dep = np.full(n_ek, float(deposit_mean))
    else:
        from scipy.stats import moyal

        scale = landau_width * deposit_mean
        loc = deposit_mean - scale * (np.euler_gamma + math.log(2))
        dep = moyal.rvs(loc=loc, scale=scale, size=n_ek, random_state=rng)
        dep = np.clip(dep, 0.3 * deposit_mean, 4 * deposit_mean)
    x_dep = rng.uniform(xray_deposit[0], xray_deposit[1], int(x_keep.sum()))

    signal = _render_clouds(
        n_frames,
        det,
        np.concatenate([frame[e_keep], frame[x_keep]]),
        np.concatenate([pos[e_keep], pos[x_keep]]),
        np.concatenate([dep, x_dep]),
        cloud_sigma,
    )
    hot, pairs, cold = _bad_pixels(rng, det, n_hot, n_hot_pairs, n_cold)
    dark = dark_level + dark_spread * rng.standard_normal(det)
    data = signal
    data += dark
    data += read_noise * rng.standard_normal(data.shape)
    if hot.any():
        data[:, hot] += rng.poisson(hot_level, (n_frames, int(hot.sum())))
    if cold.any():
        data[:, cold] = 0.0
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        data = np.clip(np.rint(data), info.min, info.max)
    cube = data.astype(dt).reshape(*scan, h, w)

    electrons, order = _events_from(frame[e_keep], pos[e_keep], scan, det)
    xrays, _ = _events_from(frame[x_keep], pos[x_keep], scan, det)
    truth = CountingTruth(
        electrons=electrons,
        deposits=dep[order],
        xrays=xrays,
        dark=dark,
        read_noise=float(read_noise),
        hot_mask=hot,
        hot_pair_mask=pairs,
        cold_mask=cold,
        pattern=p,
        deposit_mean=float(deposit_mean),
    )
    logger.debug("simulate_counting: %d electrons, %d x-rays", electrons.n_events, xrays.n_events)
    return cube, truth


@dataclass(frozen=True)
class MatchScore:
    """Result of :func:`match_events`.

    Attributes
    ----------
    recall : float
        Fraction of planted electrons matched by a detected event.
    precision : float
        Fraction of detected events that match a distinct planted electron.
    n_true, n_detected, n_matched : int
        Planted electrons, detected events, one-to-one matches.
    rms_error : float
        RMS distance of matched pairs, px (sub-pixel positions when both have them).
    """

    recall: float
    precision: float
    n_true: int
    n_detected: int
    n_matched: int
    rms_error: float


def match_events(
    detected: ElectronEvents, truth: ElectronEvents, *, tolerance: float = 1.0
) -> MatchScore:
    """Score detected events against planted ones, frame by frame.

    Each detected event is paired with the nearest planted electron of the same frame within
    ``tolerance`` pixels (Euclidean, using sub-pixel positions where available, else pixel
    indices); each planted electron is matched at most once.

    Parameters
    ----------
    detected, truth : ElectronEvents
        Same ``scan_shape`` and ``det_shape``.
    tolerance : float
        Largest matching distance, px.

    Returns
    -------
    MatchScore
    """
    from scipy.spatial import cKDTree

    if detected.scan_shape != truth.scan_shape or detected.det_shape != truth.det_shape:
        raise ShapeError(
            f"detected {detected.scan_shape}/{detected.det_shape} and truth "
            f"{truth.scan_shape}/{truth.det_shape} describe different scans"
        )

    def coords(ev: ElectronEvents) -> np.ndarray:
        yx = (
            ev.subpixel.astype(np.float64)
            if ev.subpixel is not None
            else np.stack([ev.rows, ev.cols], 1).astype(np.float64)
        )
        # frames far apart so that no match crosses frames
        sep = 10.0 * (max(ev.det_shape) + tolerance + 1)
        return np.column_stack([ev.frame_index() * sep, yx])

    n_t, n_d = truth.n_events, detected.n_events
    if n_t == 0 or n_d == 0:
        return MatchScore(
            recall=1.0 if n_t == 0 else 0.0,
            precision=1.0 if n_d == 0 else 0.0,
            n_true=n_t,
            n_detected=n_d,
            n_matched=0,
            rms_error=math.nan,
        )
    t_xyz = coords(truth)
    d_xyz = coords(detected)
    dist, idx = cKDTree(t_xyz).query(d_xyz, k=1, distance_upper_bound=tolerance)
    ok = np.isfinite(dist)
    # one-to-one: among detections claiming the same planted electron keep the closest
    order = np.lexsort((dist[ok], idx[ok]))
    claimed = idx[ok][order]
    first = np.ones(claimed.size, dtype=bool)
    first[1:] = claimed[1:] != claimed[:-1]
    n_match = int(first.sum())
    d_used = dist[ok][order][first]
    return MatchScore(
        recall=n_match / n_t,
        precision=n_match / n_d,
        n_true=n_t,
        n_detected=n_d,
        n_matched=n_match,
        rms_error=float(np.sqrt(np.mean(d_used**2))) if d_used.size else math.nan,
    )


# ------------------------------------------------------------------------------------------------
# integrating-mode diffraction
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DiffractionTruth:
    """Ground truth of :func:`simulate_diffraction`.

    Attributes
    ----------
    centers : ndarray of float64, shape (scan_row, scan_col, 2)
        ``(row, col)`` of the central disk in every pattern, px.
    shifts : ndarray of float64, shape (scan_row, scan_col, 2)
        ``centers - mean(centers)``: the shift that moves each pattern's disk away from the mean
        position (apply ``-shifts`` to align).
    bragg : ndarray of float64, shape (n_peaks, 2)
        Bragg-disk positions relative to the central disk, px.
    clean : ndarray of float64, shape (scan_row, scan_col, det_row, det_col)
        Expected counts before noise and bad pixels.
    hot_mask, hot_pair_mask, cold_mask : ndarray of bool, shape (det_row, det_col)
        Bad pixels planted.
    """

    centers: np.ndarray
    shifts: np.ndarray
    bragg: np.ndarray
    clean: np.ndarray
    hot_mask: np.ndarray
    hot_pair_mask: np.ndarray
    cold_mask: np.ndarray


def simulate_diffraction(
    scan_shape: tuple[int, int] = (6, 7),
    det_shape: tuple[int, int] = (48, 40),
    *,
    disk_radius: float = 5.0,
    disk_counts: float = 2000.0,
    drift: float = 2.0,
    bragg_spacing: float | None = 14.0,
    bragg_counts: float = 400.0,
    background: float = 2.0,
    noise: bool = True,
    n_hot: int = 0,
    n_hot_pairs: int = 0,
    hot_level: float = 2000.0,
    n_cold: int = 0,
    dtype: Any = np.uint16,
    seed: int = 0,
) -> tuple[np.ndarray, DiffractionTruth]:
    """Simulate an integrating-mode scan: a drifting central disk plus Bragg disks.

    Parameters
    ----------
    scan_shape, det_shape : (int, int)
        Scan and detector shapes (any, including non-square and odd).
    disk_radius : float
        Radius of the central and Bragg disks, px (soft edge, 0.7 px).
    disk_counts : float
        Expected total counts in the central disk.
    drift : float
        The central disk moves linearly over the scan by up to ``drift`` px along each axis
        (plus a small random jitter), so each pattern has a known sub-pixel shift.
    bragg_spacing : float or None
        Spacing of a square lattice of Bragg disks around the central one (first ring of 4), px;
        None for none.
    bragg_counts : float
        Expected total counts per Bragg disk.
    background : float
        Uniform background counts per pixel.
    noise : bool
        Poisson noise (else the expectation, rounded for integer dtypes).
    n_hot, n_hot_pairs, n_cold, hot_level
        Bad pixels: ``hot_level`` extra counts (Poisson) in every frame; cold pixels read 0.
    dtype : dtype
        Output dtype (uint16 by default, float32 allowed).
    seed : int
        Random seed.

    Returns
    -------
    cube : ndarray of shape (scan_row, scan_col, det_row, det_col)
    truth : DiffractionTruth
    """
    scan = _shape2(scan_shape, "scan_shape")
    det = _shape2(det_shape, "det_shape")
    rng = np.random.default_rng(seed)
    h, w = det
    sr, sc = np.meshgrid(
        np.linspace(-0.5, 0.5, scan[0]), np.linspace(-0.5, 0.5, scan[1]), indexing="ij"
    )
    centre0 = np.array([(h - 1) / 2 + 0.3, (w - 1) / 2 - 0.2])
    centers = np.stack([centre0[0] + drift * sr, centre0[1] + drift * sc], axis=-1)
    centers = centers + rng.uniform(-0.25, 0.25, centers.shape)
    bragg = (
        np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float64) * bragg_spacing
        if bragg_spacing
        else np.zeros((0, 2))
    )
    area = math.pi * disk_radius**2
    clean = background + disk_counts / area * _disk(det, centers, disk_radius, 0.7)
    for off in bragg:
        clean = clean + bragg_counts / area * _disk(det, centers + off, disk_radius, 0.7)
    clean = clean.reshape(*scan, h, w)
    data = rng.poisson(clean).astype(np.float64) if noise else clean.copy()
    hot, pairs, cold = _bad_pixels(rng, det, n_hot, n_hot_pairs, n_cold)
    if hot.any():
        data[..., hot] += rng.poisson(hot_level, (*scan, int(hot.sum())))
    if cold.any():
        data[..., cold] = 0.0
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        data = np.clip(np.rint(data), info.min, info.max)
    truth = DiffractionTruth(
        centers=centers,
        shifts=centers - centers.reshape(-1, 2).mean(axis=0),
        bragg=bragg,
        clean=clean,
        hot_mask=hot,
        hot_pair_mask=pairs,
        cold_mask=cold,
    )
    return data.astype(dt), truth


# ------------------------------------------------------------------------------------------------
# images for peak finding and backgrounds
# ------------------------------------------------------------------------------------------------


def gaussian_spots(
    shape: tuple[int, int],
    positions: Any,
    amplitudes: Any,
    sigma: float = 1.5,
    *,
    background: float = 0.0,
) -> np.ndarray:
    """Image of isotropic Gaussian spots at sub-pixel positions.

    Parameters
    ----------
    shape : (int, int)
        Image shape.
    positions : array of shape (n, 2)
        ``(row, col)`` of the spot centres, px.
    amplitudes : array of shape (n,)
        Peak values.
    sigma : float
        Spot sigma, px.
    background : float
        Constant added everywhere.

    Returns
    -------
    ndarray of float64, shape ``shape``
    """
    shape = _shape2(shape, "shape")
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    amp = np.broadcast_to(np.asarray(amplitudes, dtype=np.float64), pos.shape[:1])
    yy, xx = np.indices(shape, dtype=np.float64)
    out = np.full(shape, float(background))
    for (r, c), a in zip(pos, amp):
        out += a * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * sigma**2))
    return out


def elliptical_radius(shape: tuple[int, int], ellipse: Any) -> np.ndarray:
    """Elliptical radius of every pixel for ``ellipse = (row0, col0, a, b, theta)``.

    ``u = dr cos(theta) + dc sin(theta)``, ``v = -dr sin(theta) + dc cos(theta)`` with
    ``dr, dc`` the offsets from the centre along rows and columns; ``r = sqrt(u**2 +
    (v a / b)**2)``, i.e. the radius measured along the ``a`` axis, which makes ``theta`` from the
    row axis toward the column axis.
    """
    r0, c0, a, b, theta = (float(v) for v in ellipse)
    yy, xx = np.indices(_shape2(shape, "shape"), dtype=np.float64)
    dr, dc = yy - r0, xx - c0
    u = dr * math.cos(theta) + dc * math.sin(theta)
    v = -dr * math.sin(theta) + dc * math.cos(theta)
    return np.sqrt(u**2 + (v * a / b) ** 2)


def polar_background_image(
    shape: tuple[int, int] = (64, 60),
    ellipse: Any = (31.3, 29.6, 1.0, 0.85, 0.6),
    *,
    n_spots: int = 12,
    spot_counts: float = 3000.0,
    noise: bool = True,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A diffraction-like image: smooth elliptical radial background plus bright spots.

    The background is ``800 exp(-r / 6) + 20 + 150 exp(-(r - 11)**2 / 2.88)`` at the elliptical
    radius ``r`` (:func:`elliptical_radius`); ``n_spots`` Gaussian spots (sigma 0.8 px) sit on
    rings at r = 7, 15 and 22.

    Returns
    -------
    image : ndarray of float64, shape ``shape``
        Background + spots (+ Poisson noise).
    background : ndarray of float64, shape ``shape``
        The true background.
    """
    rng = np.random.default_rng(seed)
    r = elliptical_radius(shape, ellipse)
    bg = 800 * np.exp(-r / 6) + 20 + 150 * np.exp(-((r - 11) ** 2) / (2 * 1.2**2))
    r0, c0, a, b, theta = (float(v) for v in ellipse)
    radii = np.array([7.0, 15.0, 22.0])[np.arange(n_spots) % 3]
    phi = rng.uniform(0, 2 * math.pi, n_spots)
    u, v = radii * np.cos(phi), radii * np.sin(phi) * b / a
    rows = r0 + u * math.cos(theta) - v * math.sin(theta)
    cols = c0 + u * math.sin(theta) + v * math.cos(theta)
    spots = gaussian_spots(
        shape, np.stack([rows, cols], 1), spot_counts / (2 * math.pi * 0.64), 0.8
    )
    img = bg + spots
    if noise:
        img = rng.poisson(img).astype(np.float64)
    return img, bg


# ------------------------------------------------------------------------------------------------
# descan and differential phase contrast
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DescanTruth:
    """Ground truth of :func:`simulate_descan`.

    Attributes
    ----------
    origins : ndarray of float64, shape (scan_row, scan_col, 2)
        ``(row, col)`` of the bright-field disk centre in every pattern, detector px:
        ``descan + com``.
    descan : ndarray of float64, shape (scan_row, scan_col, 2)
        The smooth descan part, ``terms(i, j) @ coefficients`` with ``terms = [1, i, j, i**2,
        i*j, j**2]`` of the scan indices ``(i, j)``, detector px.
    coefficients : ndarray of float64, shape (6, 2)
        Descan coefficients for ``(row, col)`` in the order of ``terms``.
    com : ndarray of float64, shape (scan_row, scan_col, 2)
        Beam deflection by the specimen in the detector frame, detector px.
    phase : ndarray of float64, shape (scan_row, scan_col)
        Phase of the specimen at every scan position, rad.
    phase_gradient : ndarray of float64, shape (scan_row, scan_col, 2)
        ``(d phase / d scan_row, d phase / d scan_col)``, rad per scan pixel (exact).
    rotation_deg : float
        Rotation that turns detector-frame vectors into the scan frame (see
        :func:`~stacklab.stem4d.origin.dpc_rotation`).
    flip : bool
        Whether detector row/col components are swapped before that rotation.
    com_per_gradient : float
        Detector px of deflection per rad / scan px of phase gradient.
    clean : ndarray of float64, shape (scan_row, scan_col, det_row, det_col)
        Expected counts before noise.
    """

    origins: np.ndarray
    descan: np.ndarray
    coefficients: np.ndarray
    com: np.ndarray
    phase: np.ndarray
    phase_gradient: np.ndarray
    rotation_deg: float
    flip: bool
    com_per_gradient: float
    clean: np.ndarray


def simulate_descan(
    scan_shape: tuple[int, int] = (16, 14),
    det_shape: tuple[int, int] = (48, 45),
    *,
    disk_radius: float = 8.0,
    edge: float = 0.6,
    disk_counts: float = 5000.0,
    background: float = 0.0,
    plane: Any = None,
    quadratic: Any = None,
    phase_amplitude: float = 1.0,
    n_blobs: int = 6,
    blob_sigma: float = 2.5,
    com_per_gradient: float = 1.0,
    rotation_deg: float = 0.0,
    flip: bool = False,
    bragg_spacing: float | None = None,
    bragg_counts: float = 1000.0,
    noise: bool = True,
    dtype: Any = np.float64,
    seed: int = 0,
) -> tuple[np.ndarray, DescanTruth]:
    """Simulate a scan whose bright-field disk follows a known descan plus specimen tilts.

    The disk centre at scan index ``(i, j)`` is ``descan(i, j) + com(i, j)``: ``descan`` is a
    plane plus a small quadratic term of the scan indices, ``com`` the deflection by a phase
    object (a sum of ``n_blobs`` Gaussian blobs, seeded), ``com = com_per_gradient * F R(-theta)
    grad(phase)`` with ``R`` the rotation by ``rotation_deg`` acting on ``(row, col)`` vectors
    (``R(t) = [[cos t, -sin t], [sin t, cos t]]``) and ``F`` the swap of the two components when
    ``flip``; so ``grad(phase) = R(theta) F com / com_per_gradient`` (the convention of
    :func:`~stacklab.stem4d.origin.dpc_phase`).

    Parameters
    ----------
    scan_shape, det_shape : (int, int)
        ``(scan_row, scan_col)`` and ``(det_row, det_col)``; any, including non-square and odd.
    disk_radius : float
        Radius of the bright-field disk, detector px.
    edge : float
        Width of its logistic edge, px.
    disk_counts : float
        Expected counts in the disk (also in every Bragg disk, times ``bragg_counts /
        disk_counts``).
    background : float
        Uniform background, counts per pixel.
    plane : array of shape (3, 2), optional
        Descan coefficients of ``[1, i, j]`` for ``(row, col)``, px and px per scan step.
        Default: the disk starts about 1.5 px off the detector centre and drifts by 3 px along
        rows and 2 px along columns over the scan.
    quadratic : array of shape (3, 2), optional
        Coefficients of ``[i**2, i*j, j**2]`` (default: a curvature of 0.5 px over the scan).
    phase_amplitude : float
        Peak phase of a blob, rad (blob amplitudes are uniform in 0.5-1 times it).
    n_blobs : int
        Number of Gaussian blobs of the phase object (0 for none).
    blob_sigma : float
        Blob width, scan px.
    com_per_gradient : float
        Deflection in detector px per rad / scan px of phase gradient.
    rotation_deg, flip
        Orientation of the detector relative to the scan (see above).
    bragg_spacing : float or None
        Spacing of a first ring of 4 Bragg disks (rotated lattice, moving with the central
        disk), px; None for none.
    bragg_counts : float
        Expected counts per Bragg disk.
    noise : bool
        Poisson noise (else the expectation).
    dtype : dtype
        Output dtype (float64 by default; integer dtypes are rounded and clipped).
    seed : int
        Random seed.

    Returns
    -------
    cube : ndarray of shape (scan_row, scan_col, det_row, det_col)
    truth : DescanTruth
    """
    scan = _shape2(scan_shape, "scan_shape")
    det = _shape2(det_shape, "det_shape")
    rng = np.random.default_rng(seed)
    h, w = det
    nr, nc = scan
    if plane is None:
        plane = [
            [(h - 1) / 2 - 1.3, (w - 1) / 2 + 0.9],
            [3.0 / max(nr - 1, 1), 0.6 / max(nr - 1, 1)],
            [-0.8 / max(nc - 1, 1), 2.0 / max(nc - 1, 1)],
        ]
    if quadratic is None:
        quadratic = [
            [0.5 / max(nr - 1, 1) ** 2, -0.3 / max(nr - 1, 1) ** 2],
            [0.2 / max(nr * nc - 1, 1), 0.0],
            [-0.2 / max(nc - 1, 1) ** 2, 0.4 / max(nc - 1, 1) ** 2],
        ]
    plane = np.asarray(plane, dtype=np.float64)
    quadratic = np.asarray(quadratic, dtype=np.float64)
    if plane.shape != (3, 2):
        raise ShapeError(f"plane must have shape (3, 2), got {plane.shape}")
    if quadratic.shape != (3, 2):
        raise ShapeError(f"quadratic must have shape (3, 2), got {quadratic.shape}")
    coef = np.concatenate([plane, quadratic])
    ii, jj = np.meshgrid(
        np.arange(nr, dtype=np.float64), np.arange(nc, dtype=np.float64), indexing="ij"
    )
    terms = np.stack([np.ones_like(ii), ii, jj, ii * ii, ii * jj, jj * jj], axis=-1)
    descan = terms @ coef

    phase = np.zeros(scan)
    grad = np.zeros((*scan, 2))
    for _ in range(int(n_blobs)):
        r0, c0 = rng.uniform(-0.5, nr - 0.5), rng.uniform(-0.5, nc - 0.5)
        amp = phase_amplitude * rng.uniform(0.5, 1.0)
        g = amp * np.exp(-((ii - r0) ** 2 + (jj - c0) ** 2) / (2 * blob_sigma**2))
        phase += g
        grad[..., 0] -= g * (ii - r0) / blob_sigma**2
        grad[..., 1] -= g * (jj - c0) / blob_sigma**2
    t = math.radians(rotation_deg)
    rot_inv = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])  # R(-t)
    com = com_per_gradient * grad @ rot_inv.T
    if flip:
        com = com[..., ::-1].copy()
    origins = descan + com

    area = math.pi * disk_radius**2
    clean = background + disk_counts / area * _disk(det, origins, disk_radius, edge)
    if bragg_spacing:
        a = 0.3
        for k in range(4):
            phi = a + k * math.pi / 2
            off = bragg_spacing * np.array([math.sin(phi), math.cos(phi)])
            clean = clean + bragg_counts / area * _disk(det, origins + off, disk_radius, edge)
    data = rng.poisson(clean).astype(np.float64) if noise else clean.copy()
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        data = np.clip(np.rint(data), info.min, info.max)
    truth = DescanTruth(
        origins=origins,
        descan=descan,
        coefficients=coef,
        com=com,
        phase=phase,
        phase_gradient=grad,
        rotation_deg=float(rotation_deg),
        flip=bool(flip),
        com_per_gradient=float(com_per_gradient),
        clean=clean,
    )
    return data.astype(dt), truth
