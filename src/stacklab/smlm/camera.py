"""Camera model: ADU to photoelectrons and photons, read-noise variance, saturation.

``photons = (ADU - offset) * gain / QE`` with ``gain`` in photoelectrons per ADU (e-/ADU) and
``QE`` the quantum efficiency. The fitter works on photoelectrons (``(ADU - offset) * gain``),
which are Poisson distributed, and reports photon numbers divided by ``QE``. An sCMOS camera
adds a per-pixel read-noise variance (:attr:`Camera.variance`, ADU^2), used by the fitter's
sCMOS likelihood.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backend
from ..errors import ShapeError, check_positive

__all__ = ["Camera", "check_offset", "saturated", "to_electrons", "to_photons"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Camera:
    """Camera and optics of a localization movie.

    Attributes
    ----------
    offset : float or ndarray of shape (rows, cols)
        Dark level in ADU (per pixel for sCMOS offset maps).
    gain : float
        Photoelectrons per ADU (e-/ADU), e.g. 0.25.
    qe : float
        Quantum efficiency in (0, 1].
    pixel_size_nm : float
        Pixel size in the sample plane, nm.
    read_noise : float
        Read noise in photoelectrons rms (uniform; informational for CCD/EMCCD, used by the
        offset check).
    variance : ndarray of shape (rows, cols), optional
        sCMOS read-noise variance per pixel in ADU^2; the fitter's likelihood uses it.
    saturation : float, optional
        ADU value at or above which a pixel is saturated. None: the largest value of the
        movie's integer dtype (no check for float movies).
    """

    offset: Any = 100.0
    gain: float = 1.0
    qe: float = 1.0
    pixel_size_nm: float = 100.0
    read_noise: float = 0.0
    variance: Any = None
    saturation: float | None = None

    def __post_init__(self) -> None:
        check_positive(self.gain, "gain")
        check_positive(self.pixel_size_nm, "pixel_size_nm")
        check_positive(self.read_noise, "read_noise", allow_zero=True)
        if not (0.0 < float(self.qe) <= 1.0):
            raise ValueError(f"qe must be in (0, 1], got {self.qe!r}")
        off = np.asarray(backend.to_numpy(self.offset), dtype=float)
        if not np.all(np.isfinite(off)):
            raise ValueError(f"offset must be finite ADU, got {self.offset!r}")
        if off.ndim not in (0, 2):
            raise ShapeError(f"offset must be a number or a (rows, cols) map, got {off.shape}")
        if self.variance is not None:
            var = np.asarray(backend.to_numpy(self.variance), dtype=float)
            if var.ndim != 2 or not np.all(np.isfinite(var)) or np.any(var < 0):
                raise ValueError("variance must be a finite (rows, cols) map of ADU^2 >= 0")

    def check_frame_shape(self, shape: tuple[int, int]) -> None:
        """Raise :class:`ShapeError` if a per-pixel map does not match frames of ``shape``."""
        for name in ("offset", "variance"):
            value = getattr(self, name)
            if value is not None and np.ndim(value) == 2 and tuple(np.shape(value)) != shape:
                raise ShapeError(
                    f"camera {name} map has shape {tuple(np.shape(value))}, frames are {shape}"
                )

    def variance_electrons(self, xp: Any = np) -> Any:
        """Read-noise variance per pixel in photoelectrons^2 (None without a map)."""
        if self.variance is None:
            return None
        return xp.asarray(self.variance, dtype=xp.float64) * float(self.gain) ** 2


def to_electrons(frames: Any, camera: Camera, *, dtype: Any = np.float32) -> Any:
    """Convert ADU to photoelectrons: ``(frames - offset) * gain``.

    Parameters
    ----------
    frames : ndarray of shape (..., rows, cols)
        Camera counts in ADU (any real dtype; integers are widened). Not modified.
    camera : Camera
        Offset (ADU) and gain (e-/ADU).
    dtype : dtype
        Output dtype (float32 by default).

    Returns
    -------
    ndarray of shape (..., rows, cols)
        Photoelectrons, on the input's device.
    """
    xp = backend.get_xp(frames)
    a = xp.asarray(frames)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"frames must be real numbers (ADU), got dtype {a.dtype}")
    camera.check_frame_shape(tuple(a.shape[-2:]))
    dt = xp.dtype(dtype)
    off = xp.asarray(camera.offset, dtype=dt)
    return (a.astype(dt) - off) * dt.type(camera.gain)


def to_photons(frames: Any, camera: Camera, *, dtype: Any = np.float32) -> Any:
    """Convert ADU to photons: ``(frames - offset) * gain / qe``.

    Parameters
    ----------
    frames : ndarray of shape (..., rows, cols)
        Camera counts in ADU. Not modified.
    camera : Camera
        Offset (ADU), gain (e-/ADU) and quantum efficiency.
    dtype : dtype
        Output dtype (float32 by default).

    Returns
    -------
    ndarray of shape (..., rows, cols)
        Photons per pixel, on the input's device.
    """
    return to_electrons(frames, camera, dtype=dtype) / float(camera.qe)


def check_offset(electrons: Any, camera: Camera, *, sample: int = 4) -> float:
    """Raise if the camera offset is clearly too large (the background comes out negative).

    Parameters
    ----------
    electrons : ndarray of shape (n, rows, cols)
        Photoelectrons from :func:`to_electrons`.
    camera : Camera
        The camera used for the conversion.
    sample : int
        Look at every ``sample``-th pixel along each frame axis (speed).

    Returns
    -------
    float
        Median photoelectrons per pixel of the block.

    Raises
    ------
    ValueError
        Naming ``offset``, when the median pixel, or more than 20 % of the pixels, lie more
        than 3 read-noise standard deviations (at least 3 e-) below zero. Between 5 % and 20 %
        a warning is logged.
    """
    xp = backend.get_xp(electrons)
    sub = electrons[..., ::sample, ::sample]
    finite = sub[xp.isfinite(sub)]
    if finite.size == 0:
        return math.nan
    med = float(xp.median(finite))
    noise = float(camera.read_noise)
    if camera.variance is not None:
        noise = max(noise, math.sqrt(float(np.median(camera.variance))) * float(camera.gain))
    limit = -3.0 * max(noise, 1.0)
    neg = float(xp.mean(finite < limit))
    if med < limit or neg > 0.2:
        raise ValueError(
            f"camera offset={_describe(camera.offset)} ADU is too large: after subtracting it the "
            f"median pixel is {med:.1f} photoelectrons and {100 * neg:.0f} % of the pixels are "
            f"below {limit:.1f} (negative photons). Check `offset` (the camera's dark level in "
            f"ADU), `gain` ({camera.gain} e-/ADU) and `read_noise`"
        )
    if neg > 0.05:
        logger.warning(
            "%.0f %% of the pixels are below %.1f photoelectrons after subtracting offset=%s "
            "ADU: the offset may be too large (or set read_noise)",
            100 * neg,
            limit,
            _describe(camera.offset),
        )
    return med


def _describe(offset: Any) -> str:
    if np.ndim(offset) == 0:
        return f"{float(offset):g}"
    return f"map (median {float(np.median(backend.to_numpy(offset))):g})"


def saturated(frames: Any, camera: Camera) -> Any:
    """Boolean mask of saturated pixels (ADU at or above the saturation level).

    Parameters
    ----------
    frames : ndarray of shape (..., rows, cols)
        Camera counts in ADU.
    camera : Camera
        ``saturation`` in ADU; None uses the largest value of an integer dtype.

    Returns
    -------
    ndarray of bool, same shape, or None
        None when there is no saturation level (float data and no ``camera.saturation``).
    """
    xp = backend.get_xp(frames)
    level = camera.saturation
    if level is None:
        if frames.dtype.kind not in "iu":
            return None
        level = np.iinfo(frames.dtype).max
    return xp.asarray(frames) >= level
