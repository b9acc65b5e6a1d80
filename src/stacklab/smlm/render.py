"""Super-resolved images from localization tables: histograms and Gaussian rendering.

Image axes are ``(row, col) = (y, x)``. Pixel ``(i, j)`` of an image with origin ``(y0, x0)`` and
pixel size ``p`` covers ``[y0 + i p, y0 + (i + 1) p) x [x0 + j p, x0 + (j + 1) p)`` in nm. By
default the field is the camera frame (the table's ``image_shape`` and ``pixel_size_nm``, as
set by :func:`stacklab.smlm.localize`): from ``-pixel/2`` to ``(n - 1/2) pixel`` on each axis,
since camera pixel centres sit at integer multiples of the pixel size.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import special

from ..errors import check_positive
from ._table import UNCERTAINTY, columns, frame_of, meta_of

__all__ = ["SRImage", "render", "save_png"]

logger = logging.getLogger(__name__)

#: Largest number of pixels of a rendered image (guards against a typo in ``pixel_nm``).
MAX_PIXELS = 2**28


@dataclass(frozen=True)
class SRImage:
    """A rendered super-resolved image.

    Attributes
    ----------
    image : ndarray of shape (rows, cols), float32
        Localizations per pixel (histogram) or their Gaussian density integrated over each pixel
        (each localization contributes 1 in total, less what falls outside the field).
    pixel_nm : float
        Pixel size, nm.
    origin_nm : (float, float)
        ``(y0, x0)``: coordinates of the top-left corner of pixel ``(0, 0)``, nm.
    n_locs : int
        Localizations rendered.
    """

    image: np.ndarray
    pixel_nm: float
    origin_nm: tuple[float, float]
    n_locs: int

    @property
    def extent_nm(self) -> tuple[float, float, float, float]:
        """``(left, right, bottom, top)`` for :meth:`matplotlib.axes.Axes.imshow`, nm."""
        y0, x0 = self.origin_nm
        rows, cols = self.image.shape
        return (x0, x0 + cols * self.pixel_nm, y0 + rows * self.pixel_nm, y0)


def _field(locs: Any, x: np.ndarray, y: np.ndarray, extent: Any) -> tuple:
    if extent is not None:
        (y0, y1), (x0, x1) = extent
        return float(y0), float(y1), float(x0), float(x1)
    meta = meta_of(locs)
    shape = meta.get("image_shape")
    cam_px = meta.get("pixel_size_nm")
    if shape is not None and cam_px is not None:
        rows, cols = shape
        return -0.5 * cam_px, (rows - 0.5) * cam_px, -0.5 * cam_px, (cols - 0.5) * cam_px
    if x.size == 0:
        raise ValueError("no localizations and no extent: cannot choose the field to render")
    return float(y.min()), float(y.max()), float(x.min()), float(x.max())


def _axis_weights(centre: np.ndarray, start: np.ndarray, n: int, sigma: np.ndarray) -> np.ndarray:
    edges = start[:, None] + np.arange(n + 1)[None, :]
    e = special.erf((edges - centre[:, None]) / (math.sqrt(2.0) * sigma[:, None]))
    return 0.5 * (e[:, 1:] - e[:, :-1])


def render(
    locs: Any,
    *,
    pixel_nm: float = 10.0,
    mode: Literal["gaussian", "histogram"] = "gaussian",
    sigma_nm: float | None = None,
    min_sigma_px: float = 0.5,
    max_sigma_px: float = 3.0,
    extent: Any = None,
    batch: int = 200_000,
) -> SRImage:
    """Render localizations as an image.

    Parameters
    ----------
    locs : Locs or pandas.DataFrame
        Localizations with ``x [nm]``, ``y [nm]`` (and ``uncertainty [nm]`` for Gaussian
        rendering without ``sigma_nm``). Rows with non-finite values are skipped.
    pixel_nm : float
        Pixel size of the image, nm.
    mode : {"gaussian", "histogram"}
        ``gaussian``: each localization is a Gaussian of its own uncertainty (or ``sigma_nm``)
        integrated over the pixels; ``histogram``: counts per pixel.
    sigma_nm : float, optional
        Gaussian width for every localization, nm (default: its ``uncertainty [nm]``).
    min_sigma_px, max_sigma_px : float
        Gaussian widths are clipped to this range in image pixels (very precise localizations
        stay visible; badly constrained ones do not smear across the image).
    extent : ((y0, y1), (x0, x1)), optional
        Field in nm; default the camera frame (see the module docstring) or the localizations'
        bounding box.
    batch : int
        Localizations rendered at once (bounds temporary memory).

    Returns
    -------
    SRImage
    """
    check_positive(pixel_nm, "pixel_nm")
    if mode not in ("gaussian", "histogram"):
        raise ValueError(f"mode must be 'gaussian' or 'histogram', got {mode!r}")
    df = frame_of(locs)
    _, x, y = columns(df, frame=False)
    y0, y1, x0, x1 = _field(locs, x, y, extent)
    rows = max(1, math.ceil((y1 - y0) / pixel_nm))
    cols = max(1, math.ceil((x1 - x0) / pixel_nm))
    if rows * cols > MAX_PIXELS:
        raise ValueError(
            f"pixel_nm={pixel_nm} gives a {rows} x {cols} image; choose a larger pixel size"
        )
    ok = np.isfinite(x) & np.isfinite(y)
    if mode == "gaussian":
        if sigma_nm is not None:
            check_positive(sigma_nm, "sigma_nm")
            s = np.full(x.shape, float(sigma_nm))
        elif UNCERTAINTY in df:
            s = np.asarray(df[UNCERTAINTY], dtype=np.float64)
        else:
            raise ValueError(f"Gaussian rendering needs sigma_nm= or an {UNCERTAINTY!r} column")
        ok &= np.isfinite(s)
    u = (x[ok] - x0) / pixel_nm  # continuous pixel coordinate, 0 at the left edge
    v = (y[ok] - y0) / pixel_nm
    flat = np.zeros(rows * cols, dtype=np.float64)
    if mode == "histogram":
        ci = np.floor(u).astype(np.int64)
        ri = np.floor(v).astype(np.int64)
        inside = (ci >= 0) & (ci < cols) & (ri >= 0) & (ri < rows)
        flat += np.bincount(ri[inside] * cols + ci[inside], minlength=rows * cols)
    else:
        sp = np.clip(s[ok] / pixel_nm, min_sigma_px, max_sigma_px)
        half = math.ceil(4.0 * float(sp.max())) if sp.size else 1
        w = 2 * half + 1
        for start in range(0, u.size, batch):
            sl = slice(start, start + batch)
            _splat(flat, u[sl], v[sl], sp[sl], w, rows, cols)
    image = flat.reshape(rows, cols).astype(np.float32)
    return SRImage(image, float(pixel_nm), (float(y0), float(x0)), int(ok.sum()))


def _splat(flat, u, v, sp, w, rows, cols) -> None:
    half = w // 2
    c0 = np.floor(u).astype(np.int64) - half
    r0 = np.floor(v).astype(np.int64) - half
    wx = _axis_weights(u, c0.astype(np.float64), w, sp)
    wy = _axis_weights(v, r0.astype(np.float64), w, sp)
    ar = np.arange(w)
    rr = r0[:, None, None] + ar[None, :, None]
    cc = c0[:, None, None] + ar[None, None, :]
    vals = wy[:, :, None] * wx[:, None, :]
    inside = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
    idx = (rr * cols + cc)[inside]
    flat += np.bincount(idx, weights=vals[inside], minlength=flat.size)


def save_png(
    image: SRImage | np.ndarray,
    path: str | os.PathLike,
    *,
    percentile: float = 99.5,
    cmap: str = "hot",
) -> None:
    """Write an image as a PNG (atomically), scaled from 0 to a percentile of the non-zero pixels.

    Parameters
    ----------
    image : SRImage or ndarray of shape (rows, cols)
        The image.
    path : str or path-like
        Output file (``.png``).
    percentile : float
        Pixels above this percentile of the non-zero values are saturated.
    cmap : str
        Matplotlib colour map.
    """
    from matplotlib import image as mpimg

    from ..io import atomic_path

    data = image.image if isinstance(image, SRImage) else np.asarray(image)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    nz = data[data > 0]
    vmax = float(np.percentile(nz, percentile)) if nz.size else 1.0
    with atomic_path(path) as tmp:
        mpimg.imsave(tmp, data, cmap=cmap, vmin=0.0, vmax=vmax if vmax > 0 else 1.0, format="png")
