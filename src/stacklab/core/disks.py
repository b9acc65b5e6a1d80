"""Bright-field disks: radius and sub-pixel centre of the bright disk in diffraction patterns.

A convergent beam puts its unscattered part in a bright disk on the detector (4D-STEM,
electron ptychography, any convergent-beam diffraction). Two measurements of that disk are
shared by the domains that need them:

- :func:`disk_radius`: radius and centre of the disk in one (e.g. mean) pattern, from the
  integrated intensity of the connected bright region (robust to hot pixels and to a blurred
  edge);
- :func:`disk_centres`: the disk centre in every frame of a block, by correlating the frames
  with a soft disk template, both edge-sharpened, and refining the correlation peak by DFT
  upsampling, vectorized over frames.

Positions are ``(row, col)`` in detector pixels with pixel centres at integers. Patterns and
frames are NumPy or CuPy arrays (the array module comes from the input; results stay on its
device); inputs are never modified.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from .. import backend
from ..backend import get_xp, is_cupy
from ..errors import ShapeError, check_ndim

__all__ = ["disk_centres", "disk_radius"]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# argument checks (also used by stacklab.stem4d.origin)
# ------------------------------------------------------------------------------------------------


def _weights(mask: Any, det: tuple[int, int], xp: Any, name: str = "mask") -> Any:
    """``mask`` (bool or real weights of shape ``det``) as float64 on ``xp``; None stays None."""
    if mask is None:
        return None
    m = np.asarray(backend.to_numpy(mask)) if xp is np else xp.asarray(mask)
    if tuple(m.shape) != tuple(det):
        raise ShapeError(f"{name} must have the detector shape {tuple(det)}, got {tuple(m.shape)}")
    if m.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be boolean or real weights, got dtype {m.dtype}")
    m = m.astype(xp.float64)
    if not bool(xp.all(xp.isfinite(m))) or bool(xp.any(m < 0)):
        raise ValueError(f"{name} must be finite and >= 0")
    if not bool(xp.any(m > 0)):
        raise ShapeError(f"{name} selects no detector pixels (all False / zero)")
    return m


def _fraction(value: Any, name: str) -> float:
    """``value`` as a float in (0, 1); TypeError/ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a number in (0, 1), got {value!r}")
    if not (0 < float(value) < 1):
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


def _positive(value: Any, name: str) -> float:
    """``value`` as a finite float > 0; TypeError/ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return float(value)


def _sharpen(value: Any) -> float:
    if isinstance(value, bool) or not (
        isinstance(value, int | float | np.number) and 0 <= float(value) <= 4
    ):
        raise ValueError(f"sharpen must be a number in [0, 4], got {value!r}")
    return float(value)


def _upsample(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 3:
        raise ValueError(f"upsample must be an integer > 2, got {value!r}")
    return int(value)


# ------------------------------------------------------------------------------------------------
# templates, filters and batched peak refinement
# ------------------------------------------------------------------------------------------------


def _soft_disk(shape: tuple[int, int], centre: Any, radius: float, edge: float) -> np.ndarray:
    """Soft disk of shape ``shape`` (0..1, logistic edge of ``edge`` px, NumPy float64).

    ``0.5 (1 - tanh((r - radius) / (2 edge)))`` with ``r`` the distance to ``centre``
    ``(row, col)``; ``centre=None`` centres it on pixel (0, 0) of the periodic grid (for
    correlation templates).
    """
    h, w = shape
    if centre is None:
        dy = np.minimum(np.arange(h), h - np.arange(h)).astype(np.float64)[:, None]
        dx = np.minimum(np.arange(w), w - np.arange(w)).astype(np.float64)[None, :]
    else:
        dy = np.arange(h, dtype=np.float64)[:, None] - centre[0]
        dx = np.arange(w, dtype=np.float64)[None, :] - centre[1]
    r = np.hypot(dy, dx)
    return 0.5 * (1.0 - np.tanh((r - radius) / (2.0 * max(edge, 1e-3))))


def _laplacian_symbol(xp: Any, h: int, w: int) -> Any:
    """Spectrum of the 5-point negative Laplacian on the ``rfft2`` grid (H, W // 2 + 1).

    Multiplying a cross-power spectrum by it correlates the finite-difference gradients of the
    two images instead of the images (edge sharpening).
    """
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    sym = (2 * np.sin(np.pi * ky)) ** 2 + (2 * np.sin(np.pi * kx)) ** 2
    return xp.asarray(sym)


def _upsampled_peaks(spec: Any, shape: tuple[int, int], coarse: Any, upsample: int) -> Any:
    """Refine correlation peaks of many frames at once by DFT upsampling.

    The band-limited interpolant of every frame's correlation, given by its half spectrum
    ``spec (n, H, W // 2 + 1)`` (``rfft2``), is evaluated on a grid of ``1 / upsample`` px
    spanning 1.5 px around the integer peak ``coarse (n, 2)`` with two batched matrix products
    (the matrix-multiply DFT of Guizar-Sicairos, Thurman & Fienup, Opt. Lett. 33, 156 (2008)),
    and the grid maximum is refined by a 3-point parabola along each axis.

    Returns
    -------
    array of float64, shape (n, 2)
        Peak ``(row, col)`` in pixels (periodic, within 1 px of ``coarse``).
    """
    xp = get_xp(spec)
    h, w = shape
    wh = spec.shape[-1]
    m = math.ceil(1.5 * upsample)
    g = m // 2
    t = xp.asarray((np.arange(m) - g) / upsample)
    ky = xp.asarray(np.fft.fftfreq(h) * h)
    kx = xp.arange(wh, dtype=xp.float64)
    # weights of the half spectrum: kx and -kx both stand for the positive bins
    wx = np.full(wh, 2.0)
    wx[0] = 1.0
    if w % 2 == 0:
        wx[-1] = 1.0
    wx = xp.asarray(wx)
    pos_r = coarse[:, 0:1] + t[None, :]  # (n, m)
    pos_c = coarse[:, 1:2] + t[None, :]
    rows = xp.exp((2j * math.pi / h) * pos_r[:, :, None] * ky[None, None, :])  # (n, m, H)
    cols = xp.exp((2j * math.pi / w) * kx[None, :, None] * pos_c[:, None, :])  # (n, Wh, m)
    cols = cols * wx[None, :, None]
    vals = xp.real(rows @ (spec @ cols)) / (h * w)  # (n, m, m)
    n = vals.shape[0]
    flat = xp.argmax(vals.reshape(n, -1), axis=1)
    i, j = flat // m, flat % m
    ic = xp.clip(i, 1, m - 2)
    jc = xp.clip(j, 1, m - 2)
    idx = xp.arange(n)

    def vertex(a: Any, b: Any, c: Any, inside: Any) -> Any:
        den = 2 * b - a - c
        ok = inside & (den > 0)
        d = xp.where(ok, (c - a) / (2 * xp.where(ok, den, 1.0)), 0.0)
        return xp.clip(d, -0.5, 0.5)

    di = vertex(vals[idx, ic - 1, j], vals[idx, ic, j], vals[idx, ic + 1, j], i == ic)
    dj = vertex(vals[idx, i, jc - 1], vals[idx, i, jc], vals[idx, i, jc + 1], j == jc)
    off = xp.stack([i - g + di, j - g + dj], axis=-1) / upsample
    return coarse + off


def _correlation_peaks(data: Any, ref_spec: Any, upsample: int) -> Any:
    """Sub-pixel peak (n, 2) of the periodic correlation of ``data (n, H, W)`` with a reference.

    ``ref_spec (H, W // 2 + 1)`` is the conjugate ``rfft2`` of the reference (times any filter),
    so the peak sits at the shift that best maps the reference onto each frame (periodic, in
    ``[0, H) x [0, W)`` up to the sub-pixel offset). The FFTs use scipy.fft's current number of
    workers (callers may wrap the call in ``scipy.fft.set_workers``).
    """
    xp = get_xp(data)
    fft = backend.fft(xp)
    h, w = data.shape[-2:]
    spec = fft.rfft2(data, axes=(-2, -1)) * ref_spec
    corr = fft.irfft2(spec, s=(h, w), axes=(-2, -1))
    n = data.shape[0]
    flat = xp.argmax(corr.reshape(n, -1), axis=1)
    coarse = xp.stack([flat // w, flat % w], axis=-1).astype(xp.float64)
    return _upsampled_peaks(spec, (h, w), coarse, upsample)


def _disk_spectrum(
    xp: Any, shape: tuple[int, int], radius: float, edge: float, sharpen: float
) -> Any:
    """Conjugate ``rfft2`` of the soft-disk template centred on pixel (0, 0), times the
    Laplacian symbol to the power ``sharpen``: shape (H, W // 2 + 1), complex128 on ``xp``."""
    h, w = shape
    symbol = _laplacian_symbol(xp, h, w) ** float(sharpen)
    template = xp.asarray(_soft_disk(shape, None, radius, edge))
    return xp.conj(backend.fft(xp).rfft2(template)) * symbol


# ------------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------------


def disk_centres(
    frames: Any,
    radius: float,
    *,
    edge: float = 1.5,
    sharpen: float = 1.0,
    upsample: int = 16,
    weights: Any = None,
) -> Any:
    """Sub-pixel centre of a bright disk of known radius in every frame of a block.

    Each frame (times ``weights``) is correlated, periodically, with a soft disk of radius
    ``radius`` and logistic edge ``edge`` px; the cross-power spectrum is multiplied by the
    symbol of the 5-point negative Laplacian to the power ``sharpen``, which correlates the
    finite-difference gradients of frame and template (``sharpen=1``): uniform and linear
    backgrounds and contrast inside the disk then do not move the peak. The integer peak of
    every frame is refined on a ``1 / upsample`` px grid by the matrix-multiply DFT
    (Guizar-Sicairos et al., Opt. Lett. 33, 156 (2008)), batched over frames, then by a
    3-point parabola. Costs two FFTs of the block and two small matrix products per frame.

    Parameters
    ----------
    frames : ndarray of shape (n, det_row, det_col)
        Block of frames, NumPy or CuPy (other array-likes are read into NumPy); any real
        dtype (integers are widened to float64).
    radius : float
        Disk radius of the template, detector px.
    edge : float
        Edge width of the template, px. Wider than the real edge acts as a low-pass filter
        (1.5 px suits Poisson-noisy disks with sub-pixel edges).
    sharpen : float
        Power of the Laplacian symbol, in [0, 4]: 1 correlates gradients, 0 is the plain
        correlation (the matched filter, slightly more precise with Poisson noise and no
        background).
    upsample : int
        Refinement factor of the correlation peak (> 2).
    weights : ndarray of shape (det_row, det_col), optional
        Detector weights (bool or real >= 0) applied to every frame; masked pixels read as zero.

    Returns
    -------
    ndarray of float64, shape (n, 2)
        ``(row, col)`` of the disk centre in every frame, detector px, wrapped into
        ``[-0.5, det_row - 0.5) x [-0.5, det_col - 0.5)``; NaN for a frame with no positive
        total. On the device of ``frames``.

    Raises
    ------
    ShapeError
        If ``frames`` is not a non-empty 3-D array, or ``weights`` does not match the frames
        (or selects nothing).
    TypeError
        For a non-real dtype or non-numeric parameters.
    ValueError
        For a non-positive ``radius`` or ``edge``, ``sharpen`` outside [0, 4], ``upsample``
        not an integer > 2, or negative / non-finite ``weights``.

    Examples
    --------
    >>> from stacklab.core.disks import _soft_disk
    >>> frame = _soft_disk((40, 40), (17.3, 21.8), 7.0, 0.5)
    >>> disk_centres(frame[None], 7.0).round(2)
    array([[17.3, 21.8]])
    """
    if not (isinstance(frames, np.ndarray) or is_cupy(frames)):
        frames = np.asarray(backend.to_numpy(frames))
    check_ndim(frames, "frames", 3)
    if frames.dtype.kind not in "biuf":
        raise TypeError(f"frames must hold real numbers, got dtype {frames.dtype}")
    xp = get_xp(frames)
    h, w = (int(s) for s in frames.shape[-2:])
    radius = _positive(radius, "radius")
    edge = _positive(edge, "edge")
    sharpen = _sharpen(sharpen)
    upsample = _upsample(upsample)
    wts = _weights(weights, (h, w), xp, "weights")
    data = frames.astype(xp.float64)
    if wts is not None:
        data = data * wts
    ref_spec = _disk_spectrum(xp, (h, w), radius, edge, sharpen)
    pos = _correlation_peaks(data, ref_spec, upsample)
    size = xp.asarray([h, w], dtype=xp.float64)
    empty = ~(data.sum(axis=(-2, -1)) > 0)
    return xp.where(empty[:, None], xp.nan, (pos + 0.5) % size - 0.5)


def disk_radius(
    pattern: Any,
    *,
    threshold: float = 0.5,
    mask: Any = None,
    name: str = "pattern",
) -> tuple[float, tuple[float, float]]:
    """Radius and centre of the bright disk of one diffraction pattern.

    The disk is the connected region above ``background + threshold * (level - background)``
    that holds the pattern's brightest point (3x3 median-filtered, so single hot pixels do not
    count), holes filled. ``level`` is the median inside the disk (a quarter radius in from its
    edge), ``background`` the median outside it (4 px out); both are refined three times. The
    radius comes from the integrated intensity, ``sqrt(A / pi)`` with ``A = sum((pattern -
    background) / (level - background))`` over the disk grown by 4 px: unlike a threshold
    contour it counts the soft edge fully and does not change when the disk is blurred (e.g.
    by descan in a mean pattern). A soft edge adds to the area: a logistic edge of width ``w``
    (``0.5 (1 - tanh((r - R) / (2 w)))``) gives ``sqrt(R**2 + pi**2 w**2 / 3)``. The centre is
    the centre of mass of ``pattern - background`` there (an elliptic disk is measured as well
    as a round one).

    Parameters
    ----------
    pattern : ndarray of shape (det_row, det_col)
        One pattern (e.g. the mean over a scan), NumPy or CuPy (read into host memory), any
        real dtype; must be finite.
    threshold : float
        Level that delimits the disk, as a fraction between background and disk level, in
        (0, 1).
    mask : ndarray of shape (det_row, det_col), optional
        Pixels to use (True / weight > 0); others are ignored (e.g. a beam stop or bad pixels).
    name : str
        Name of ``pattern`` in error messages (for callers that pass a derived pattern).

    Returns
    -------
    radius : float
        Disk radius, detector px.
    centre : (float, float)
        ``(row, col)`` of the disk centre, detector px.

    Raises
    ------
    ShapeError
        If ``pattern`` is not a non-empty 2-D array, or for a bad ``mask``.
    ValueError
        If ``pattern`` is not finite or is flat (no disk brighter than its background), or
        ``threshold`` is outside (0, 1).

    Examples
    --------
    A disk of radius 9 px with a 0.7 px logistic edge (expected radius ``sqrt(81 + pi**2
    0.49 / 3) = 9.09``):

    >>> from stacklab.core.disks import _soft_disk
    >>> r, (row, col) = disk_radius(_soft_disk((48, 52), (20.3, 27.6), 9.0, 0.7))
    >>> round(r, 1), round(row, 2), round(col, 2)
    (9.1, 20.3, 27.6)
    """
    from scipy import ndimage

    threshold = _fraction(threshold, "threshold")
    p = backend.to_numpy(pattern)
    if p.ndim != 2 or p.size == 0:
        raise ShapeError(f"{name} must be a 2-D pattern (det_row, det_col), got shape {p.shape}")
    if p.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {p.dtype}")
    p = p.astype(np.float64, copy=False)
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be finite")
    use = np.ones(p.shape, bool)
    if mask is not None:
        use = _weights(backend.to_numpy(mask), p.shape, np) > 0
    smooth = ndimage.median_filter(np.where(use, p, np.median(p[use])), size=3, mode="nearest")
    low = float(np.percentile(smooth[use], 10))
    top = float(smooth[use].max())
    if not top > low:
        raise ValueError(f"{name} is flat: no bright-field disk to measure")
    peak = np.unravel_index(int(np.argmax(np.where(use, smooth, -np.inf))), p.shape)
    level, background = top, low
    for _ in range(3):
        above = (smooth > background + threshold * (level - background)) & use
        labels, _ = ndimage.label(above)
        disk = ndimage.binary_fill_holes(labels == labels[peak])
        depth = max(1, round(math.sqrt(disk.sum() / math.pi) / 4))
        inner = ndimage.binary_erosion(disk, iterations=depth) & use
        grown = ndimage.binary_dilation(disk, iterations=4)
        outside = use & ~grown
        level = float(np.median(p[inner])) if inner.any() else top
        background = float(np.median(p[outside])) if outside.any() else low
        if not level > background:
            raise ValueError(f"{name} has no disk brighter than its background")
    region = grown & use
    excess = np.where(region, p - background, 0.0)
    area = float(excess.sum()) / (level - background)
    radius = math.sqrt(max(area, 0.0) / math.pi)
    total = float(excess.sum())
    yy, xx = np.indices(p.shape, dtype=np.float64)
    centre = (float((excess * yy).sum() / total), float((excess * xx).sum() / total))
    logger.debug("disk radius %.3f px at (%.3f, %.3f)", radius, *centre)
    return radius, centre
