"""Local maxima of 2-D images with sub-pixel refinement ('pixel', 'poly', 'multicorr').

:func:`find_maxima_2d` finds the pixels that are the maximum of their 3x3 neighbourhood (ties
broken deterministically in raster order, as in electron counting), removes those within
``edge_boundary`` pixels of the border, sorts them by value (descending), filters them with
:func:`filter_maxima` and refines the survivors:

* ``"pixel"``: integer positions and pixel values;
* ``"poly"``: a 3-point parabola along each axis through the raw values,
  ``d = (I[+1] - I[-1]) / (4 I[0] - 2 I[+1] - 2 I[-1])``; the value is the parabola vertex;
* ``"multicorr"``: DFT upsampling (the matrix-multiply DFT of Guizar-Sicairos, Thurman and
  Fienup, Opt. Lett. 33, 156 (2008)) of the image's band-limited interpolant on a grid of
  ``1 / upsample_factor`` pixels spanning 1.5 px around the 'poly' position rounded to half a
  pixel, followed by a 3-point parabola on the upsampled grid (py4DSTEM's scheme).

Positions are ``(row, col)`` in pixels, pixel centres at integers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .. import backend
from ..errors import ShapeError

__all__ = ["Maxima", "filter_maxima", "find_maxima_2d", "upsampled_peak"]

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True, eq=False)
class Maxima:
    """Peaks found in an image.

    Attributes
    ----------
    row, col : ndarray of float64, shape (n,)
        Peak positions in pixels (pixel centres at integers).
    intensity : ndarray of float64, shape (n,)
        Peak values (see ``intensity`` of :func:`find_maxima_2d`).
    """

    row: np.ndarray
    col: np.ndarray
    intensity: np.ndarray

    def __len__(self) -> int:
        return int(self.row.size)

    @property
    def positions(self) -> np.ndarray:
        """``(n, 2)`` array of ``(row, col)``."""
        return np.stack([self.row, self.col], axis=1)

    def to_structured(
        self, names: tuple[str, str, str] = ("row", "col", "intensity")
    ) -> np.ndarray:
        """A NumPy structured array with float fields ``names`` (py4DSTEM uses x, y, intensity)."""
        out = np.zeros(len(self), dtype=[(n, np.float64) for n in names])
        out[names[0]], out[names[1]], out[names[2]] = self.row, self.col, self.intensity
        return out

    def subset(self, keep: Any) -> Maxima:
        """The peaks selected by a boolean mask or index array."""
        return Maxima(self.row[keep], self.col[keep], self.intensity[keep])


def _check_nonneg(value: Any, name: str) -> float:
    if not (isinstance(value, int | float | np.number) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def filter_maxima(
    maxima: Maxima,
    *,
    min_absolute: float = 0.0,
    min_relative: float = 0.0,
    relative_to_peak: int = 0,
    min_spacing: float = 0.0,
    edge_boundary: int = 0,
    shape: tuple[int, int] | None = None,
    max_peaks: int | None = None,
) -> Maxima:
    """Filter a list of peaks (assumed sorted by intensity, descending).

    The filters run in this order:

    1. ``intensity >= min_absolute``;
    2. ``intensity >= min_relative * intensity[relative_to_peak]`` (index into the list left by
       step 1);
    3. spacing, greedily in list order: a peak closer than ``min_spacing`` (Euclidean, strictly
       less) to an earlier *surviving* peak is dropped (dropped peaks suppress nothing);
    4. peaks closer than ``edge_boundary`` pixels to the image border (needs ``shape``:
       kept when ``edge_boundary <= row <= shape[0] - 1 - edge_boundary`` and likewise for
       columns; py4DSTEM accepts this argument and ignores it);
    5. the first ``max_peaks`` (None keeps all).

    Parameters
    ----------
    maxima : Maxima
        Peaks, strongest first.
    min_absolute, min_relative, relative_to_peak, min_spacing, edge_boundary, shape, max_peaks
        See above. Distances in pixels.

    Returns
    -------
    Maxima
    """
    min_absolute = _check_nonneg(min_absolute, "min_absolute")
    min_relative = _check_nonneg(min_relative, "min_relative")
    min_spacing = _check_nonneg(min_spacing, "min_spacing")
    if (
        isinstance(relative_to_peak, bool)
        or not isinstance(relative_to_peak, int | np.integer)
        or relative_to_peak < 0
    ):
        raise ValueError(f"relative_to_peak must be an integer >= 0, got {relative_to_peak!r}")
    if (
        isinstance(edge_boundary, bool)
        or not isinstance(edge_boundary, int | np.integer)
        or edge_boundary < 0
    ):
        raise ValueError(f"edge_boundary must be an integer >= 0, got {edge_boundary!r}")
    if max_peaks is not None and (
        isinstance(max_peaks, bool) or not isinstance(max_peaks, int | np.integer) or max_peaks < 0
    ):
        raise ValueError(f"max_peaks must be None or an integer >= 0, got {max_peaks!r}")
    m = maxima
    if min_absolute > 0:
        m = m.subset(m.intensity >= min_absolute)
    if min_relative > 0 and len(m) > relative_to_peak:
        m = m.subset(m.intensity >= min_relative * m.intensity[relative_to_peak])
    if min_spacing > 0 and len(m) > 1:
        pos = m.positions
        keep = np.ones(len(m), dtype=bool)
        d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)
        limit = min_spacing**2
        for i in range(len(m)):
            if keep[i]:
                keep[i + 1 :] &= d2[i, i + 1 :] >= limit
        m = m.subset(keep)
    if edge_boundary > 0:
        if shape is None:
            raise ValueError("edge_boundary needs the image shape (shape=...)")
        b = edge_boundary
        keep = (
            (m.row >= b) & (m.row <= shape[0] - 1 - b) & (m.col >= b) & (m.col <= shape[1] - 1 - b)
        )
        m = m.subset(keep)
    if max_peaks is not None:
        m = m.subset(slice(0, int(max_peaks)))
    return m


def _local_maxima(img: np.ndarray, edge: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape
    pad = np.full((h + 2, w + 2), -np.inf)
    pad[1:-1, 1:-1] = img
    ok = np.isfinite(img)
    for dy, dx, strict in _NEIGHBOURS:
        nb = pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        ok &= (img > nb) if strict else (img >= nb)
    if edge > 0:
        ok[:edge] = ok[-edge:] = False
        ok[:, :edge] = ok[:, -edge:] = False
    return np.nonzero(ok)


def _parabola(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertex offset and value of the parabola through (-1, a), (0, b), (1, c)."""
    den = 4 * b - 2 * c - 2 * a
    good = np.isfinite(den) & (den > 0)
    safe = np.where(good, den, 1.0)
    d = np.where(good, (c - a) / safe, 0.0)
    d = np.where(np.abs(d) <= 1, d, 0.0)
    value = b + np.where(good, (c - a) ** 2 / (4 * safe), 0.0) * (np.abs(d) > 0)
    return d, value - b


def upsampled_peak(
    spectrum: np.ndarray, estimate: Any, upsample_factor: int = 16
) -> tuple[np.ndarray, float]:
    """Refine a peak position by DFT upsampling of an image's band-limited interpolant.

    Parameters
    ----------
    spectrum : complex ndarray of shape (H, W)
        ``fft2`` of the image (or of a cross-correlation).
    estimate : (float, float)
        Starting ``(row, col)``; rounded to ``1 / upsample_factor`` px.
    upsample_factor : int
        Grid refinement (> 2); the grid has ``ceil(1.5 * upsample_factor)`` points per axis.

    Returns
    -------
    position : ndarray of float64, shape (2,)
        Refined ``(row, col)`` (grid maximum plus a 3-point parabola on the fine grid, unless the
        maximum is on the grid's edge).
    value : float
        Interpolated image value at the fine-grid maximum, parabola-corrected.
    """
    u = int(upsample_factor)
    if u <= 2:
        raise ValueError(f"upsample_factor must be an integer > 2, got {upsample_factor!r}")
    spec = np.asarray(spectrum)
    h, w = spec.shape
    est = np.round(np.asarray(estimate, dtype=np.float64) * u) / u
    n = math.ceil(1.5 * u)
    g = math.trunc(math.ceil(1.5 * u) / 2)
    t = (np.arange(n) - g) / u
    ky = np.fft.ifftshift(np.arange(h)) - h // 2
    kx = np.fft.ifftshift(np.arange(w)) - w // 2
    rows = np.exp(2j * np.pi * np.outer(est[0] + t, ky) / h)  # (n, h)
    cols = np.exp(2j * np.pi * np.outer(kx, est[1] + t) / w)  # (w, n)
    vals = np.real(rows @ spec @ cols) / (h * w)
    i, j = np.unravel_index(int(np.argmax(vals)), vals.shape)
    di = dj = 0.0
    corr = 0.0
    if 0 < i < n - 1 and 0 < j < n - 1:
        d_r, c_r = _parabola(vals[i - 1, j : j + 1], vals[i, j : j + 1], vals[i + 1, j : j + 1])
        d_c, c_c = _parabola(vals[i : i + 1, j - 1], vals[i : i + 1, j], vals[i : i + 1, j + 1])
        di, dj, corr = float(d_r[0]), float(d_c[0]), float(c_r[0] + c_c[0])
    pos = est + (np.array([i, j], dtype=np.float64) - g + np.array([di, dj])) / u
    return pos, float(vals[i, j] + corr)


def _bilinear(img: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    h, w = img.shape
    r = np.clip(r, 0, h - 1)
    c = np.clip(c, 0, w - 1)
    r0 = np.clip(np.floor(r).astype(np.int64), 0, h - 2) if h > 1 else np.zeros(r.shape, np.int64)
    c0 = np.clip(np.floor(c).astype(np.int64), 0, w - 2) if w > 1 else np.zeros(c.shape, np.int64)
    fr, fc = r - r0, c - c0
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    return (
        img[r0, c0] * (1 - fr) * (1 - fc)
        + img[r1, c0] * fr * (1 - fc)
        + img[r0, c1] * (1 - fr) * fc
        + img[r1, c1] * fr * fc
    )


def find_maxima_2d(
    image: Any,
    *,
    subpixel: Literal["pixel", "poly", "multicorr"] = "poly",
    upsample_factor: int = 16,
    sigma: float = 0.0,
    min_absolute: float = 0.0,
    min_relative: float = 0.0,
    relative_to_peak: int = 0,
    min_spacing: float = 0.0,
    edge_boundary: int = 1,
    max_peaks: int | None = None,
    intensity: Literal["refined", "pixel", "interpolated"] = "refined",
    spectrum: Any = None,
) -> Maxima:
    """Find and refine the local maxima of an image.

    Parameters
    ----------
    image : ndarray of shape (H, W)
        Real image (NumPy or CuPy; computed on the host). NaN pixels are never maxima.
    subpixel : {"pixel", "poly", "multicorr"}
        Refinement (see the module docstring).
    upsample_factor : int
        Fine-grid factor for ``"multicorr"`` (> 2).
    sigma : float
        Gaussian smoothing (px, ``scipy.ndimage.gaussian_filter`` defaults) before the search;
        0 for none. Positions and intensities then refer to the smoothed image.
    min_absolute, min_relative, relative_to_peak, min_spacing, max_peaks
        Filters applied after detection and before refinement (see :func:`filter_maxima`).
        ``max_peaks=None`` (default) keeps every peak (py4DSTEM's default is 1).
    edge_boundary : int
        Maxima in the first/last ``edge_boundary`` rows/columns are discarded (at least 1, so
        the refinement always has neighbours).
    intensity : {"refined", "pixel", "interpolated"}
        Reported value: the refined peak value (parabola vertex or upsampled maximum, the
        default), the integer pixel's value, or the bilinear interpolation of the image at the
        refined position (py4DSTEM's 'poly' value, which underestimates peaks).
    spectrum : complex ndarray of shape (H, W), optional
        Precomputed ``fft2`` of the (smoothed) image for ``"multicorr"``.

    Returns
    -------
    Maxima
        Sorted by reported intensity, descending.
    """
    if subpixel not in ("pixel", "poly", "multicorr"):
        raise ValueError(f"subpixel must be 'pixel', 'poly' or 'multicorr', got {subpixel!r}")
    if intensity not in ("refined", "pixel", "interpolated"):
        raise ValueError(
            f"intensity must be 'refined', 'pixel' or 'interpolated', got {intensity!r}"
        )
    img = np.asarray(backend.to_numpy(image))
    if img.ndim != 2 or min(img.shape) < 3:
        raise ShapeError(f"image must be 2-D with at least 3x3 pixels, got shape {img.shape}")
    if img.dtype.kind not in "biuf":
        raise TypeError(f"image must be real, got dtype {img.dtype}")
    img = img.astype(np.float64)
    sigma = _check_nonneg(sigma, "sigma")
    if sigma > 0:
        from scipy.ndimage import gaussian_filter

        img = gaussian_filter(img, sigma)
    edge = max(1, int(edge_boundary))
    r, c = _local_maxima(img, edge)
    vals = img[r, c]
    order = np.argsort(-vals, kind="stable")
    m = Maxima(r[order].astype(np.float64), c[order].astype(np.float64), vals[order])
    m = filter_maxima(
        m,
        min_absolute=min_absolute,
        min_relative=min_relative,
        relative_to_peak=relative_to_peak,
        min_spacing=min_spacing,
        max_peaks=max_peaks,
    )
    if subpixel == "pixel" or len(m) == 0:
        return m
    ri, ci = m.row.astype(np.int64), m.col.astype(np.int64)
    dr, cr = _parabola(img[ri - 1, ci], img[ri, ci], img[ri + 1, ci])
    dc, cc = _parabola(img[ri, ci - 1], img[ri, ci], img[ri, ci + 1])
    row, col = m.row + dr, m.col + dc
    value = m.intensity + cr + cc
    if subpixel == "multicorr":
        spec = np.fft.fft2(img) if spectrum is None else np.asarray(backend.to_numpy(spectrum))
        if spec.shape != img.shape:
            raise ShapeError(f"spectrum must have the image shape {img.shape}, got {spec.shape}")
        row, col, value = row.copy(), col.copy(), value.copy()
        for k in range(len(m)):
            start = np.round(np.array([row[k], col[k]]) * 2) / 2
            pos, val = upsampled_peak(spec, start, upsample_factor)
            row[k], col[k], value[k] = pos[0], pos[1], val
    if intensity == "pixel":
        value = m.intensity
    elif intensity == "interpolated":
        value = _bilinear(img, row, col)
    order = np.argsort(-value, kind="stable")
    return Maxima(row[order], col[order], value[order])
