"""Origin of the diffraction patterns: bright-field disk, descan, centring, COM and DPC.

The calibration that follows preprocessing of every 4D-STEM scan:

1. :func:`find_origin` measures the centre of the unscattered (bright-field) disk in every
   pattern, to a small fraction of a pixel: ``"com"`` (centre of mass iterated within a circle
   around the previous estimate, blind to dark-field scattering outside it), ``"disk"``
   (correlation with an edge-sharpened disk template, refined by DFT upsampling) or
   ``"cross_correlation"`` (against the mean pattern, refined the same way);
   :func:`estimate_probe_radius` gives the disk radius and centre of one (mean) pattern.
2. :func:`fit_origin` models the descan, a smooth (plane or parabola) function of the scan
   position, by robust least squares, so specimen-induced beam tilts and outliers do not bias
   it.
3. :func:`center_patterns` shifts every pattern so that its origin lands on a common target.
4. :func:`com_images` gives the centre-of-mass shift of every pattern relative to its origin,
   :func:`dpc_rotation` the rotation (and flip) between detector and scan axes (minimum curl)
   and :func:`dpc_phase` the specimen phase by Fourier integration of the COM field
   (differential phase contrast).

Cubes are ``(scan_row, scan_col, det_row, det_col)`` (any leading scan axes work) as NumPy,
CuPy, Dask or file-backed arrays, or :class:`~stacklab.stem4d.DataCube`; the per-pattern work
runs block by block through :func:`~stacklab.stem4d._output.map_cube`, vectorized over the
frames of a block. Inputs are never modified. Positions are ``(row, col)`` in detector pixels
with pixel centres at integers; results stay on the input's device (NumPy for Dask and file
input).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal, NamedTuple

import numpy as np

from .. import backend
from ..backend import get_xp, is_cupy, is_dask
from ..core.disks import (
    _correlation_peaks,
    _fraction,
    _laplacian_symbol,
    _positive,
    _sharpen,
    _upsample,
    _weights,
    disk_centres,
    disk_radius,
)
from ..errors import ShapeError
from ._output import map_cube
from .datacube import DataCube, as_array, check_cube
from .reduce import mean_pattern
from .transforms import _fft_workers, shift_patterns

__all__ = [
    "DPCRotation",
    "OriginFit",
    "center_patterns",
    "com_images",
    "dpc_phase",
    "dpc_rotation",
    "estimate_probe_radius",
    "find_origin",
    "fit_origin",
]

logger = logging.getLogger(__name__)

#: Iterations of the windowed centre of mass stop when no estimate moves more than this (px).
_COM_TOL = 1e-4


# ------------------------------------------------------------------------------------------------
# argument checks
# ------------------------------------------------------------------------------------------------


def _pair(value: Any, name: str) -> np.ndarray:
    arr = np.asarray(backend.to_numpy(value), dtype=np.float64)
    if arr.shape != (2,):
        raise ShapeError(f"{name} must be a pair (row, col), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def _host(a: Any) -> np.ndarray:
    """A NumPy copy of a NumPy/CuPy/Dask array."""
    if is_dask(a):
        a = a.compute()
    return np.asarray(backend.to_numpy(a))


def _computed(a: Any) -> Any:
    return a.compute() if is_dask(a) else a


# ------------------------------------------------------------------------------------------------
# kernels (a block of frames (n, H, W) in memory, NumPy or CuPy)
# ------------------------------------------------------------------------------------------------


def _centre_of_mass(m: Any) -> tuple[Any, Any, Any]:
    """Total ``(n,)`` and centre ``(row, col)`` of non-negative weights ``m (n, H, W)``."""
    xp = get_xp(m)
    h, w = m.shape[-2:]
    total = m.sum(axis=(-2, -1))
    ok = total > 0
    safe = xp.where(ok, total, 1.0)
    row = m.sum(axis=-1) @ xp.arange(h, dtype=xp.float64) / safe
    col = m.sum(axis=-2) @ xp.arange(w, dtype=xp.float64) / safe
    return total, xp.where(ok, row, xp.nan), xp.where(ok, col, xp.nan)


def _windowed_com(data: Any, row: Any, col: Any, window: float, max_iter: int) -> tuple[Any, Any]:
    """Iterate the centre of mass of ``data (n, H, W)`` within a circle of radius ``window``.

    The circle has a 1 px linear edge (so the estimate is a continuous function of the data) and
    is re-centred on the last estimate until no estimate moves more than ``_COM_TOL`` px. Only
    the detector box that holds every frame's circle is read. Frames with no weight inside the
    circle (or a NaN estimate) keep their previous estimate.
    """
    xp = get_xp(data)
    h, w = data.shape[-2:]
    for _ in range(max_iter):
        ok = xp.isfinite(row) & xp.isfinite(col)
        if not bool(xp.any(ok)):
            break
        r0 = max(0, math.floor(float(xp.min(row[ok])) - window - 1))
        r1 = min(h, math.ceil(float(xp.max(row[ok])) + window + 2))
        c0 = max(0, math.floor(float(xp.min(col[ok])) - window - 1))
        c1 = min(w, math.ceil(float(xp.max(col[ok])) + window + 2))
        if r1 <= r0 or c1 <= c0:
            break
        yy = xp.arange(r0, r1, dtype=xp.float64)[None, :, None]
        xx = xp.arange(c0, c1, dtype=xp.float64)[None, None, :]
        dist = xp.sqrt((yy - row[:, None, None]) ** 2 + (xx - col[:, None, None]) ** 2)
        win = xp.clip(window + 0.5 - dist, 0.0, 1.0)
        total, r_new, c_new = _centre_of_mass(data[:, r0:r1, c0:c1] * win)
        keep = ~(total > 0)
        r_new = xp.where(keep, row, r_new + r0)
        c_new = xp.where(keep, col, c_new + c0)
        moved = xp.maximum(xp.abs(r_new - row), xp.abs(c_new - col))
        row, col = r_new, c_new
        if not bool(xp.any(moved > _COM_TOL)):
            break
    return row, col


def _prepared(block: Any, weights: Any) -> Any:
    xp = get_xp(block)
    data = block.astype(xp.float64)
    if weights is not None:
        data = data * xp.asarray(weights)
    return data


def _com_origin_kernel(
    block: Any, *, weights: Any, smooth: int, window: float, max_iter: int
) -> Any:
    """Kernel of ``find_origin(method="com")``: (n, 2) disk centres.

    The first estimate is the brightest pixel of each frame after a ``smooth x smooth`` box
    filter (the densest bright region: the bright-field disk, not a hot pixel or a smaller or
    dimmer Bragg disk); the windowed centre of mass takes it from there.
    """
    xp = get_xp(block)
    data = _prepared(block, weights)
    ndi = backend.ndimage(xp)
    local = ndi.uniform_filter(data, size=(1, smooth, smooth), mode="constant")
    w = data.shape[-1]
    flat = xp.argmax(local.reshape(data.shape[0], -1), axis=1)
    row = (flat // w).astype(xp.float64)
    col = (flat % w).astype(xp.float64)
    row, col = _windowed_com(data, row, col, window, max_iter)
    empty = ~(data.sum(axis=(-2, -1)) > 0)
    return xp.where(empty[:, None], xp.nan, xp.stack([row, col], axis=-1))


def _disk_kernel(
    block: Any, *, weights: Any, radius: float, edge: float, sharpen: float, upsample: int
) -> Any:
    """Kernel of ``find_origin(method="disk")``: (n, 2) disk centres in [-0.5, H - 0.5).

    :func:`stacklab.core.disks.disk_centres` with ``FFT_WORKERS`` FFT threads.
    """
    with _fft_workers(get_xp(block)):
        return disk_centres(
            block, radius, edge=edge, sharpen=sharpen, upsample=upsample, weights=weights
        )


def _xcorr_kernel(
    block: Any,
    *,
    weights: Any,
    ref_spec: Any,
    upsample: int,
    start: Any,
    window: float,
    max_iter: int,
) -> Any:
    """Kernel of ``find_origin(method="cross_correlation")``: (n, 4) shifts and windowed COMs.

    Columns 0-1: shift of each frame relative to the reference, wrapped to [-H/2, H/2);
    columns 2-3: centre of mass within ``window`` of ``start + shift``.
    """
    xp = get_xp(block)
    data = _prepared(block, weights)
    h, w = block.shape[-2:]
    with _fft_workers(xp):
        pos = _correlation_peaks(data, xp.asarray(ref_spec), upsample)
    size = xp.asarray([h, w], dtype=xp.float64)
    shift = (pos + size / 2) % size - size / 2
    shift = xp.where(~(data.sum(axis=(-2, -1)) > 0)[:, None], xp.nan, shift)
    guess = xp.asarray(start)[None, :] + shift
    row, col = _windowed_com(data, guess[:, 0], guess[:, 1], window, max_iter)
    return xp.concatenate([shift, xp.stack([row, col], axis=-1)], axis=-1)


def _com_kernel(block: Any, *, weights: Any) -> Any:
    """Kernel of :func:`com_images`: (n, 2) centre of mass of every frame."""
    xp = get_xp(block)
    _, row, col = _centre_of_mass(_prepared(block, weights))
    return xp.stack([row, col], axis=-1)


# ------------------------------------------------------------------------------------------------
# probe radius and origins
# ------------------------------------------------------------------------------------------------


def estimate_probe_radius(
    pattern_or_cube: Any,
    *,
    threshold: float = 0.5,
    mask: Any = None,
    chunk: int = 256,
    progress: bool | None = None,
) -> tuple[float, tuple[float, float]]:
    """Radius and centre of the bright-field disk of a (mean) diffraction pattern.

    The disk is the connected region above ``background + threshold * (level - background)``
    that holds the pattern's brightest point (3x3 median-filtered, so single hot pixels do not
    count), holes filled. ``level`` is the median inside the disk (a quarter radius in from its
    edge), ``background`` the median outside it (4 px out). The radius comes from the
    integrated intensity, ``sqrt(A / pi)`` with ``A = sum((pattern - background) / (level -
    background))`` over the disk grown by 4 px: unlike a threshold contour it counts the soft
    edge fully and does not change when the disk is blurred (e.g. by descan in a mean
    pattern). A soft edge adds to the area: a logistic edge of width ``w`` gives
    ``sqrt(r**2 + pi**2 w**2 / 3)``. The centre is the centre of mass of ``pattern -
    background`` there. The measurement is :func:`stacklab.core.disks.disk_radius`; this
    function adds the mean pattern of a cube.

    Parameters
    ----------
    pattern_or_cube : array of shape (det_row, det_col), or a cube / DataCube
        One pattern, or a cube ``(..., det_row, det_col)`` whose mean pattern is used (one pass
        over the data).
    threshold : float
        Level that delimits the disk, as a fraction between background and disk level, in (0, 1).
    mask : array of shape (det_row, det_col), optional
        Pixels to use (True / weight > 0); others are ignored (e.g. a beam stop or bad pixels).
    chunk, progress
        Frames per block and progress bar for the mean pattern of a cube.

    Returns
    -------
    radius : float
        Disk radius, detector px.
    centre : (float, float)
        ``(row, col)`` of the disk centre, detector px.

    Raises
    ------
    ShapeError
        For a bad ``mask`` or an empty input.
    ValueError
        If the pattern is flat (no disk).
    """
    threshold = _fraction(threshold, "threshold")
    data = as_array(pattern_or_cube, "pattern_or_cube")
    if len(data.shape) > 2:
        check_cube(data, "pattern_or_cube")
        p = _host(mean_pattern(data, chunk=chunk, progress=progress))
    else:
        if len(data.shape) != 2 or 0 in tuple(data.shape):
            raise ShapeError(
                "pattern_or_cube must be a pattern (det_row, det_col) or a cube "
                f"(..., det_row, det_col), got shape {tuple(data.shape)}"
            )
        p = _host(data).astype(np.float64)
    return disk_radius(p, threshold=threshold, mask=mask, name="pattern_or_cube")


def find_origin(
    cube: Any,
    *,
    method: Literal["com", "disk", "cross_correlation"] = "com",
    mask: Any = None,
    radius: float | None = None,
    threshold: float = 0.5,
    window: float | None = None,
    edge: float = 1.5,
    sharpen: float | None = None,
    reference: Any = None,
    upsample: int = 16,
    max_iter: int = 30,
    chunk: int = 256,
    progress: bool | None = None,
) -> Any:
    """Sub-pixel centre of the bright-field disk in every diffraction pattern.

    Parameters
    ----------
    cube : array-like of shape (scan_row, scan_col, det_row, det_col) or DataCube
        Any stack of patterns ``(..., det_row, det_col)``: NumPy, CuPy, Dask or file-backed.
        Hot pixels should be repaired first (:func:`~stacklab.stem4d.repair_pixels`) or masked.
    method : {"com", "disk", "cross_correlation"}
        ``"com"``: from the brightest region of each pattern (box filter of about the disk
        radius), the centre of mass within a circle of radius ``window`` around the last
        estimate, iterated to convergence (a fixed point at the disk centre for any background
        symmetric about it; dark-field scattering outside the circle is ignored).
        ``"disk"``: correlation with a soft disk of radius ``radius`` (edge ``edge`` px), both
        edge-sharpened (``sharpen``: their finite-difference gradients are correlated, which
        ignores smooth backgrounds and contrast inside the disk), peak refined by DFT
        upsampling (:func:`~stacklab.stem4d.upsampled_peak`, batched over frames; the kernel is
        :func:`stacklab.core.disks.disk_centres`).
        ``"cross_correlation"``: the same correlation (not sharpened by default) against
        ``reference`` (default: the mean pattern within ``window`` of its disk) gives each
        pattern's shift; the common offset from shifts to disk centres is the median difference
        of the windowed centres of mass (as for ``"com"``) and the shifts, so the result does
        not depend on the shape or blur of the reference.
        The correlation methods are the most precise with Poisson noise (about 1.4x the
        Cramer-Rao bound, ``"com"`` about 1.5x) but see structure up to about twice the disk
        radius (plus a few edge widths) from the centre: with Bragg disks closer than ~8 px to
        the bright-field edge ``"com"`` is the least biased.
    mask : array of shape (det_row, det_col), optional
        Detector pixels to use (bool, or real weights >= 0). Masked pixels read as zero, so keep
        the mask symmetric about the disk or away from it.
    radius : float, optional
        Bright-field disk radius in detector px. None: :func:`estimate_probe_radius` of the mean
        pattern (one extra pass over the data).
    threshold : float
        Passed to :func:`estimate_probe_radius` (level that delimits the disk in the mean
        pattern), in (0, 1).
    window : float, optional
        Radius of the circle of the windowed centre of mass, px (1 px soft edge). Default
        ``radius + max(2, radius / 5)``: the whole disk, not the neighbouring Bragg disks.
    edge : float
        Edge width of the ``"disk"`` template, px. Wider than the real edge acts as a low-pass
        filter (1.5 px gave the best precision on Poisson-noisy disks with 0.6 px edges).
    sharpen : float, optional
        Edge sharpening of the correlation methods: the cross-power spectrum is multiplied by
        the symbol of the 5-point negative Laplacian to this power: 1 correlates the
        finite-difference gradients (immune to uniform and linear backgrounds and to contrast
        inside the disk), 0 is the plain correlation (the matched filter, slightly more precise
        with Poisson noise, and the better choice for a blurred reference such as the mean
        pattern of a scan with much descan). Default 1 for ``"disk"``, 0 for
        ``"cross_correlation"``.
    reference : array of shape (det_row, det_col), optional
        Reference pattern of ``"cross_correlation"`` (e.g. a vacuum pattern); default the mean
        pattern.
    upsample : int
        Refinement factor of the correlation peak (> 2): grid of ``1 / upsample`` px.
    max_iter : int
        Largest number of windowed centre-of-mass iterations.
    chunk, progress
        Frames per block; progress bar.

    Returns
    -------
    ndarray of float64, shape (scan_row, scan_col, 2)
        ``(row, col)`` of the disk centre in every pattern, detector px (NaN for a pattern with
        no counts). NumPy for NumPy, Dask and file input; CuPy for CuPy input.

    Raises
    ------
    ShapeError
        If ``cube`` is not a stack of 2-D patterns, or ``mask`` / ``reference`` do not match
        the detector (or the mask selects nothing).
    ValueError
        For an unknown ``method`` or out-of-range parameters.
    """
    if method not in ("com", "disk", "cross_correlation"):
        raise ValueError(f"method must be 'com', 'disk' or 'cross_correlation', got {method!r}")
    data = as_array(cube)
    shape = check_cube(data)
    det = shape[-2:]
    threshold = _fraction(threshold, "threshold")
    upsample = _upsample(upsample)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    xp = np if is_dask(data) or not is_cupy(data) else get_xp(data)
    weights = _weights(mask, det, xp)
    mean = None
    centre = None
    if radius is None or (method == "cross_correlation" and reference is None):
        mean = mean_pattern(data, chunk=chunk, progress=progress)
        est_r, centre = estimate_probe_radius(mean, threshold=threshold, mask=mask)
        radius = est_r if radius is None else radius
    radius = _positive(radius, "radius")
    window = radius + max(2.0, radius / 5) if window is None else _positive(window, "window")
    run = {"chunk": chunk, "progress": progress, "weights": weights}
    h, w = det
    if method == "com":
        out = map_cube(
            _com_origin_kernel,
            data,
            smooth=max(3, 2 * round(radius / 2) + 1),
            window=window,
            max_iter=int(max_iter),
            **run,
        )
        return _computed(out)
    if sharpen is None:
        sharpen = 1.0 if method == "disk" else 0.0
    sharpen = _sharpen(sharpen)
    if method == "disk":
        out = map_cube(
            _disk_kernel,
            data,
            radius=radius,
            edge=_positive(edge, "edge"),
            sharpen=sharpen,
            upsample=upsample,
            **run,
        )
        return _computed(out)
    symbol = _laplacian_symbol(xp, h, w) ** sharpen
    # cross-correlation against a reference pattern
    if reference is None:
        ref = _host(mean)
    else:
        ref = _host(reference).astype(np.float64)
        if ref.shape != det:
            raise ShapeError(f"reference must have the detector shape {det}, got {ref.shape}")
        if not np.all(np.isfinite(ref)):
            raise ValueError("reference must be finite")
        _, centre = estimate_probe_radius(ref, threshold=threshold, mask=mask)
    if weights is not None:
        ref = ref * backend.to_numpy(weights)
    ref = ref * np.clip(window + 0.5 - _distance(det, centre), 0.0, 1.0)
    ref_spec = xp.conj(backend.fft(xp).rfft2(xp.asarray(ref))) * symbol
    out = map_cube(
        _xcorr_kernel,
        data,
        ref_spec=ref_spec,
        upsample=upsample,
        start=xp.asarray(centre, dtype=xp.float64),
        window=window,
        max_iter=int(max_iter),
        **run,
    )
    out = _computed(out)
    oxp = get_xp(out)
    shift = out[..., :2]
    com = out[..., 2:]
    diff = backend.to_numpy(com - shift).reshape(-1, 2)
    offset = np.nanmedian(diff, axis=0) if np.isfinite(diff).any() else np.asarray(centre)
    logger.debug("cross_correlation: reference centre %s, offset %s", centre, offset)
    return shift + oxp.asarray(offset)


def _distance(det: tuple[int, int], centre: Any) -> np.ndarray:
    yy = np.arange(det[0], dtype=np.float64)[:, None] - centre[0]
    xx = np.arange(det[1], dtype=np.float64)[None, :] - centre[1]
    return np.hypot(yy, xx)


# ------------------------------------------------------------------------------------------------
# descan model
# ------------------------------------------------------------------------------------------------


class OriginFit(NamedTuple):
    """Result of :func:`fit_origin` (unpacks as ``fitted, coefficients, residuals``).

    Attributes
    ----------
    fitted : ndarray of float64, shape (scan_row, scan_col, 2)
        The model origin ``(row, col)`` at every scan position, detector px.
    coefficients : ndarray of float64, shape (n_terms, 2)
        Coefficients for ``(row, col)`` of the terms ``[1, i, j]`` (plane) or ``[1, i, j, i**2,
        i*j, j**2]`` (parabola) of the scan indices ``(i, j)``: detector px, px per scan step...
    residuals : ndarray of float64, shape (scan_row, scan_col, 2)
        ``origins - fitted`` (NaN where the origin was NaN).
    """

    fitted: Any
    coefficients: Any
    residuals: Any


_TERMS = {"plane": 3, "parabola": 6}


def _design(scan: tuple[int, int], n_terms: int) -> np.ndarray:
    ii, jj = np.meshgrid(
        np.arange(scan[0], dtype=np.float64), np.arange(scan[1], dtype=np.float64), indexing="ij"
    )
    cols = [np.ones_like(ii), ii, jj, ii * ii, ii * jj, jj * jj][:n_terms]
    return np.stack(cols, axis=-1).reshape(-1, n_terms)


def _weighted_lstsq(a: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    sw = np.sqrt(w)[:, None]
    scale = np.sqrt((a**2 * w[:, None]).sum(axis=0))
    scale[scale == 0] = 1.0
    coef, *_ = np.linalg.lstsq(a * sw / scale, y * sw, rcond=None)
    return coef / scale[:, None]


def fit_origin(
    origins: Any,
    *,
    model: Literal["plane", "parabola"] = "plane",
    mask: Any = None,
    robust: bool = True,
    max_iter: int = 50,
) -> OriginFit:
    """Fit the descan: origins as a smooth (plane or parabola) function of scan position.

    Both origin components are fitted with the same design matrix by least squares. With
    ``robust=True`` the fit is iteratively reweighted on the length of the 2-D residual of
    each scan position: Huber weights (``k = 1.345 sigma``) for 5 iterations, then Tukey's
    bisquare (``c = 4.685 sigma``, which gives outliers zero weight) until the coefficients
    stop changing, with ``sigma = median(|residual|) / 1.1774`` (the median of the length of a
    2-D Gaussian residual of per-axis sigma). Scan positions whose origin is moved by the
    specimen (strong crystals, edges) therefore do not bias the descan.

    Parameters
    ----------
    origins : array of shape (scan_row, scan_col, 2)
        ``(row, col)`` origins, detector px (e.g. from :func:`find_origin`); NaN entries are
        ignored.
    model : {"plane", "parabola"}
        ``o(i, j) = a0 + a1 i + a2 j`` or with ``a3 i**2 + a4 i j + a5 j**2`` added, with
        ``(i, j)`` the scan indices.
    mask : array of bool, shape (scan_row, scan_col), optional
        Scan positions to fit (e.g. vacuum); the model is evaluated everywhere.
    robust : bool
        Robust reweighting (True) or plain least squares.
    max_iter : int
        Largest number of reweighting iterations.

    Returns
    -------
    OriginFit
        ``(fitted, coefficients, residuals)`` on the device of ``origins``.

    Raises
    ------
    ShapeError
        If ``origins`` or ``mask`` have the wrong shape, or fewer scan positions than model
        terms are usable (e.g. an empty ``mask``).
    ValueError
        For an unknown ``model``.
    """
    if model not in _TERMS:
        raise ValueError(f"model must be 'plane' or 'parabola', got {model!r}")
    xp = get_xp(origins) if is_cupy(origins) else np
    o = _host(origins).astype(np.float64)
    if o.ndim != 3 or o.shape[-1] != 2 or 0 in o.shape:
        raise ShapeError(f"origins must have shape (scan_row, scan_col, 2), got {o.shape}")
    scan = o.shape[:2]
    valid = np.all(np.isfinite(o), axis=-1)
    if mask is not None:
        m = _host(mask)
        if m.shape != scan:
            raise ShapeError(f"mask must have the scan shape {scan}, got {m.shape}")
        valid &= m.astype(bool)
    n_terms = _TERMS[model]
    a_all = _design(scan, n_terms)
    use = valid.ravel()
    if int(use.sum()) < n_terms:
        raise ShapeError(
            f"mask and origins leave {int(use.sum())} usable scan positions, fewer than the "
            f"{n_terms} terms of model={model!r}"
        )
    a = a_all[use]
    y = o.reshape(-1, 2)[use]
    w = np.ones(len(y))
    coef = _weighted_lstsq(a, y, w)
    if robust:
        for it in range(int(max_iter)):
            r = np.hypot(*(y - a @ coef).T)
            sigma = max(float(np.median(r)) / 1.1774, 1e-9 * (1.0 + float(np.abs(y).max())))
            if it < 5:
                w = np.minimum(1.0, 1.345 * sigma / np.maximum(r, 1e-300))
            else:
                u = r / (4.685 * sigma)
                w = np.where(u < 1, (1 - u**2) ** 2, 0.0)
            if np.count_nonzero(w) < n_terms:
                break
            new = _weighted_lstsq(a, y, w)
            change = float(np.abs(new - coef).max())
            coef = new
            if it >= 5 and change < 1e-10 * (1.0 + float(np.abs(coef).max())):
                break
        logger.debug(
            "fit_origin: %d of %d positions with weight < 0.5", int((w < 0.5).sum()), w.size
        )
    fitted = (a_all @ coef).reshape(*scan, 2)
    residuals = o - fitted
    return OriginFit(xp.asarray(fitted), xp.asarray(coef), xp.asarray(residuals))


# ------------------------------------------------------------------------------------------------
# centring
# ------------------------------------------------------------------------------------------------


def center_patterns(
    cube: Any,
    origins: Any,
    *,
    target: Any = None,
    method: Literal["fourier", "bilinear"] = "fourier",
    periodic: bool = False,
    fill: float = 0.0,
    dtype: Any = None,
    out: Any = None,
    chunk: int = 256,
    progress: bool | None = None,
) -> Any:
    """Shift every pattern so that its origin lands on ``target``.

    Parameters
    ----------
    cube : array-like of shape (scan_row, scan_col, det_row, det_col) or DataCube
        NumPy, CuPy, Dask or file-backed patterns.
    origins : array of shape (scan_row, scan_col, 2) or (2,)
        ``(row, col)`` of the origin of every pattern (or one for all), detector px: typically
        the ``fitted`` descan of :func:`fit_origin`, or :func:`find_origin` itself.
    target : (float, float), optional
        Where the origins go, detector px. Default the detector centre ``(H // 2, W // 2)``
        (the zero frequency of ``fftshift``).
    method : {"fourier", "bilinear"}
        Interpolation of :func:`~stacklab.stem4d.shift_patterns`.
    periodic : bool
        False (default): what leaves the detector is lost and ``fill`` enters; True: it
        wraps around.
    fill : float
        Value entering from outside for ``periodic=False``.
    dtype : dtype, optional
        Output dtype (integers rounded and clipped); default float.
    out : None, path or array-like
        Output target (see :func:`~stacklab.stem4d.shift_patterns`).
    chunk, progress
        Frames per block; progress bar.

    Returns
    -------
    array of the cube's shape
        Centred patterns (lazy Dask array for Dask input; ``out`` when given).

    Raises
    ------
    ShapeError
        If ``origins`` is neither ``(2,)`` nor one pair per scan position, or ``target`` is not
        a pair.
    """
    data = as_array(cube)
    shape = check_cube(data)
    h, w = shape[-2:]
    tgt = np.array([h // 2, w // 2], np.float64) if target is None else _pair(target, "target")
    o = _host(origins).astype(np.float64)
    if o.shape != (2,) and o.shape != (*shape[:-2], 2):
        raise ShapeError(
            f"origins must have shape (2,) or {(*shape[:-2], 2)} (one (row, col) per scan "
            f"position), got {o.shape}"
        )
    if not np.all(np.isfinite(o)):
        raise ValueError("origins must be finite (fit_origin fills positions with NaN origins)")
    return shift_patterns(
        data,
        tgt - o,
        method=method,
        periodic=periodic,
        fill=fill,
        dtype=dtype,
        chunk=chunk,
        out=out,
        progress=progress,
    )


# ------------------------------------------------------------------------------------------------
# centre of mass and differential phase contrast
# ------------------------------------------------------------------------------------------------


def com_images(
    cube: Any,
    *,
    origins: Any = None,
    mask: Any = None,
    chunk: int = 256,
    progress: bool | None = None,
) -> tuple[Any, Any]:
    """Centre-of-mass shift of every pattern relative to its origin (the DPC signal).

    Parameters
    ----------
    cube : array-like of shape (scan_row, scan_col, det_row, det_col) or DataCube
        Background-free patterns (a uniform background pulls the centre of mass toward the
        detector centre; subtract it or use ``mask``).
    origins : array of shape (scan_row, scan_col, 2) or (2,), optional
        ``(row, col)`` origin of every pattern, detector px: the fitted descan
        (:func:`fit_origin`), so only the specimen's deflection remains. None: the
        ``q_origin`` of a DataCube's calibration if set, else the mean centre of mass over the
        scan (the images then have zero mean).
    mask : array of shape (det_row, det_col), optional
        Detector weights (bool or real >= 0), e.g. a disk around the bright field.
    chunk, progress
        Frames per block; progress bar.

    Returns
    -------
    com_row, com_col : ndarrays of float64, shape (scan_row, scan_col)
        Shift of the centre of mass along detector rows and columns, detector px (NaN for
        patterns with no counts). On the input's device (NumPy for Dask and file input).

    Raises
    ------
    ShapeError
        For a bad ``mask`` (including one that selects nothing) or ``origins`` shape.
    """
    if origins is None and isinstance(cube, DataCube):
        origins = cube.calibration.q_origin
    data = as_array(cube)
    shape = check_cube(data)
    xp = np if is_dask(data) or not is_cupy(data) else get_xp(data)
    weights = _weights(mask, shape[-2:], xp)
    com = _computed(map_cube(_com_kernel, data, chunk=chunk, progress=progress, weights=weights))
    cxp = get_xp(com)
    if origins is None:
        flat = com.reshape(-1, 2)
        ok = cxp.all(cxp.isfinite(flat), axis=-1)
        if not bool(cxp.any(ok)):
            raise ValueError("cube has no pattern with counts: no centre of mass")
        ref = flat[ok].mean(axis=0)
    else:
        ref = cxp.asarray(_host(origins).astype(np.float64))
        if ref.shape != (2,) and ref.shape != com.shape:
            raise ShapeError(
                f"origins must have shape (2,) or {tuple(com.shape)}, got {tuple(ref.shape)}"
            )
    rel = com - ref
    return rel[..., 0], rel[..., 1]


class DPCRotation(NamedTuple):
    """Result of :func:`dpc_rotation` (unpacks as ``rotation_deg, flip``).

    Attributes
    ----------
    rotation_deg : float
        Rotation that turns detector-frame COM vectors into the scan frame, degrees in
        (-90, 90] (see :func:`dpc_phase` for the convention; ``rotation_deg + 180`` fits as
        well and gives the opposite sign of the phase).
    flip : bool
        Whether the detector's row/col components must be swapped before the rotation.
    """

    rotation_deg: float
    flip: bool


def _com_pair(com_row: Any, com_col: Any, min_size: int) -> tuple[Any, Any, Any]:
    xp = get_xp(com_row, com_col)
    r = xp.asarray(com_row, dtype=xp.float64)
    c = xp.asarray(com_col, dtype=xp.float64)
    if r.ndim != 2 or r.shape != c.shape:
        raise ShapeError(
            "com_row and com_col must be 2-D arrays (scan_row, scan_col) of one shape, got "
            f"{tuple(r.shape)} and {tuple(c.shape)}"
        )
    if min(r.shape) < min_size:
        raise ShapeError(
            f"com_row needs at least {min_size} x {min_size} scan positions, got {tuple(r.shape)}"
        )
    return xp, r, c


def _to_scan_frame(xp: Any, r: Any, c: Any, rotation_deg: float, flip: bool) -> tuple[Any, Any]:
    if flip:
        r, c = c, r
    t = math.radians(rotation_deg)
    return math.cos(t) * r - math.sin(t) * c, math.sin(t) * r + math.cos(t) * c


def _central(f: Any, axis: int) -> Any:
    """Fourth-order central difference of ``f (R, C)`` along ``axis`` at the points at least
    2 px from every edge, shape (R - 4, C - 4).

    The discrete curl of a sampled gradient field is then zero up to ``O(h**4)`` terms (a
    second-order stencil leaves ``O(h**2)`` terms that bias the rotation by ~0.1 deg for
    features a few scan steps wide)."""
    if axis == 0:
        return (f[:-4, 2:-2] - 8 * f[1:-3, 2:-2] + 8 * f[3:-1, 2:-2] - f[4:, 2:-2]) / 12
    return (f[2:-2, :-4] - 8 * f[2:-2, 1:-3] + 8 * f[2:-2, 3:-1] - f[2:-2, 4:]) / 12


def dpc_rotation(com_row: Any, com_col: Any, *, flip: bool | None = None) -> DPCRotation:
    """Rotation (and flip) between detector and scan axes that makes the COM field curl-free.

    The deflection of the beam is the gradient of the specimen phase, so in the scan frame its
    curl vanishes. With the detector field ``d`` (swapped first when ``flip``), rotated by
    ``t``, the curl is ``cos(t) A + sin(t) B`` with ``A = curl(d)`` and ``B = div(d)``
    (fourth-order central differences at the scan positions 2 steps from the edges), so its
    mean square is a quadratic form in ``(cos t, sin t)``: the minimising ``t`` is the
    eigenvector of the smallest eigenvalue of ``[[<AA>, <AB>], [<AB>, <BB>]]`` (exact, no
    search). The flip whose minimum curl, relative to the trace of that matrix, is smaller
    wins. ``t`` and ``t + 180`` deg have the same curl (they give phases of opposite sign);
    the one in (-90, 90] is returned.

    Parameters
    ----------
    com_row, com_col : arrays of shape (scan_row, scan_col)
        COM shifts from :func:`com_images` (at least 5 x 5 positions; non-finite entries
        are left out).
    flip : bool, optional
        Impose the flip (None: decide from the data).

    Returns
    -------
    DPCRotation
        ``(rotation_deg, flip)``.

    Raises
    ------
    ShapeError
        For arrays of different or too small shapes.
    ValueError
        If the field has no finite curl/divergence samples.
    """
    xp, r, c = _com_pair(com_row, com_col, 5)
    options = (False, True) if flip is None else (bool(flip),)
    best = None
    for f in options:
        dr, dc = (c, r) if f else (r, c)
        a = _central(dc, 0) - _central(dr, 1)
        b = _central(dr, 0) + _central(dc, 1)
        ok = xp.isfinite(a) & xp.isfinite(b)
        if not bool(xp.any(ok)):
            raise ValueError("com_row/com_col have no finite neighbourhoods to differentiate")
        a, b = backend.to_numpy(a[ok]), backend.to_numpy(b[ok])
        q = np.array([[a @ a, a @ b], [a @ b, b @ b]]) / a.size
        vals, vecs = np.linalg.eigh(q)
        ratio = float(vals[0] / max(vals.sum(), 1e-300))
        t = math.degrees(math.atan2(vecs[1, 0], vecs[0, 0]))
        t = (t + 90.0) % 180.0 - 90.0
        if t == -90.0:
            t = 90.0
        logger.debug("dpc_rotation flip=%s: %.3f deg, relative curl %.3g", f, t, ratio)
        if best is None or ratio < best[0]:
            best = (ratio, t, f)
    return DPCRotation(float(best[1]), bool(best[2]))


def dpc_phase(
    com_row: Any,
    com_col: Any,
    *,
    rotation_deg: float = 0.0,
    flip: bool = False,
    pixel_scale: float = 1.0,
    regularization: float = 0.0,
    mirror: bool = True,
) -> Any:
    """Specimen phase from the COM field by Fourier (inverse-gradient) integration.

    The detector-frame shifts are turned into the scan-frame phase gradient, ``g =
    pixel_scale * R(t) F d`` with ``d = (com_row, com_col)``, ``F`` the swap of the two
    components when ``flip`` and ``R(t) = [[cos t, -sin t], [sin t, cos t]]`` acting on
    ``(row, col)`` vectors (``t = rotation_deg``, as found by :func:`dpc_rotation`). The phase
    whose gradient is closest to ``g`` in the least-squares sense is
    ``phase_k = (k_r g_r,k + k_c g_c,k) / (2 pi i (|k|**2 + regularization))`` (real FFTs),
    computed on the field mirrored into a ``(2 scan_row, 2 scan_col)`` grid (``mirror=True``),
    which makes it periodic without edge jumps.

    Parameters
    ----------
    com_row, com_col : arrays of shape (scan_row, scan_col)
        COM shifts relative to the origin (:func:`com_images`), detector px; must be finite.
    rotation_deg : float
        Rotation from detector to scan frame, degrees.
    flip : bool
        Swap the detector components before rotating.
    pixel_scale : float
        Phase gradient, rad per scan step, per detector pixel of COM shift. With calibrated
        axes: ``2 pi * q_pixel_size [1/A] * r_pixel_size [A]`` (the COM shift ``q`` of an
        electron is ``grad(phase) / (2 pi)``). 1 gives the phase in units of that product.
    regularization : float
        Added to ``|k|**2`` (k in cycles per scan step): damps the lowest spatial frequencies
        (noise integrates into long-range ramps). 0 for exact integration.
    mirror : bool
        Mirror the field (True) or treat it as periodic (False).

    Returns
    -------
    ndarray of float64, shape (scan_row, scan_col)
        Phase, rad (for a calibrated ``pixel_scale``), zero mean. On the input's device.

    Raises
    ------
    ShapeError
        For arrays of different or too small shapes.
    ValueError
        For non-finite COM values or a negative ``regularization``.
    """
    xp, r, c = _com_pair(com_row, com_col, 2)
    if not (bool(xp.all(xp.isfinite(r))) and bool(xp.all(xp.isfinite(c)))):
        raise ValueError("com_row and com_col must be finite (fill NaN positions first)")
    if not (math.isfinite(regularization) and regularization >= 0):
        raise ValueError(f"regularization must be finite and >= 0, got {regularization!r}")
    scale = float(pixel_scale)
    if not math.isfinite(scale) or scale == 0:
        raise ValueError(f"pixel_scale must be finite and non-zero, got {pixel_scale!r}")
    gr, gc = _to_scan_frame(xp, r, c, float(rotation_deg), bool(flip))
    gr, gc = gr * scale, gc * scale
    n_r, n_c = gr.shape
    if mirror:
        # even extension of the phase: its row-gradient is odd along rows, even along columns
        gr = xp.concatenate([gr, -gr[::-1]], axis=0)
        gr = xp.concatenate([gr, gr[:, ::-1]], axis=1)
        gc = xp.concatenate([gc, gc[::-1]], axis=0)
        gc = xp.concatenate([gc, -gc[:, ::-1]], axis=1)
    h, w = gr.shape
    fft = backend.fft(xp)
    ky = xp.asarray(np.fft.fftfreq(h))[:, None]
    kx = xp.asarray(np.fft.rfftfreq(w))[None, :]
    k2 = ky**2 + kx**2 + float(regularization)
    k2[0, 0] = 1.0
    spec = (ky * fft.rfft2(gr) + kx * fft.rfft2(gc)) / (2j * math.pi * k2)
    spec[0, 0] = 0.0
    phase = fft.irfft2(spec, s=(h, w))[:n_r, :n_c]
    return phase - phase.mean()
