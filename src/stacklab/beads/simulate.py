"""Simulated bright-field images of micro-spheres with ground truth.

The model is the one used to reason about magnetic-tweezers bead images:

1. **Thin sphere.** A sphere of radius ``R`` and index ``n_bead`` in a medium of index
   ``n_medium`` is a thin transmission screen ``t(r) = exp(i k0 (n_bead - n_medium) d(r))`` with
   ``d(r) = 2 sqrt(R**2 - r**2)`` the chord length and ``k0 = 2 pi / wavelength``. A complex
   ``n_bead`` (positive imaginary part) adds absorption.
2. **Scattered-field spectrum.** The spectrum of ``t - 1`` is a Hankel transform, evaluated by
   Gauss-Legendre quadrature in ``u = cos(theta)`` (``r = R sin(theta)``), which removes the square
   root singularity at the rim. Evaluating the continuous transform at the grid frequencies avoids
   the aliasing of a sampled, sharp-edged sphere.
3. **Imaging.** The plane wave plus the scattered field is low-pass filtered by the objective
   pupil (``|q| <= na / wavelength``), shifted to any sub-pixel ``(x, y)`` by a phase ramp, and
   defocused by ``z`` with the angular-spectrum transfer function
   ``exp(2 pi i z (sqrt((n_medium / wavelength)**2 - q**2) - n_medium / wavelength))``.
4. **Camera.** The intensity ``|u|**2`` is integrated over square pixels (the pixel MTF
   ``sinc(fx) sinc(fy)``, exact because the intensity is band-limited to ``2 na / wavelength``;
   the field is computed on an odd-oversampled grid when that limit is above the pixel Nyquist
   frequency), cropped, and optionally replaced by Poisson photon counts.

The computation runs on a periodic grid ``pad`` times the frame size; the periodic replicas of
the bead form a square lattice about the bead, so each image stays exactly symmetric about the
true bead centre. Intensities are relative to the unscattered background (1.0 far from the bead).

Coordinates: frames-first ``(n_frames, rows, cols)``; ``x`` is the column and ``y`` the row, in
pixels, with pixel centres at integer indices; ``z`` is the defocus in nm (positive: the focal
plane lies ``z`` beyond the bead's equatorial plane along the illumination).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
import scipy.special

from ..errors import ShapeError, check_positive

__all__ = [
    "BeadImages",
    "bead_spectrum",
    "simulate",
    "simulate_movie",
    "simulate_zscan",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BeadImages:
    """Simulated bead frames and their ground truth.

    Attributes
    ----------
    images : ndarray of shape (n_frames, rows, cols)
        The frames (float32 by default). Noise-free: intensity relative to the background (1.0);
        with ``photons``: photon counts (Poisson draws when ``noise=True``).
    x, y : ndarray of float64, shape (n_frames,)
        True bead centre, column and row, in pixels (pixel centres at integer indices).
    z : ndarray of float64, shape (n_frames,)
        True defocus in nm.
    pixel_size_nm : float
        Pixel pitch in the object plane, nm.
    photons : float or None
        Mean photons per background pixel, or None for noise-free relative intensity.
    """

    images: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    pixel_size_nm: float
    photons: float | None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _gauss_legendre_01(n: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return 0.5 * (nodes + 1.0), 0.5 * weights


def bead_spectrum(
    q: Any,
    *,
    radius_nm: float = 1500.0,
    wavelength_nm: float = 550.0,
    n_bead: complex = 1.59,
    n_medium: float = 1.33,
    n_nodes: int = 256,
) -> np.ndarray:
    """Continuous 2-D Fourier transform of the thin-sphere transmission minus one.

    ``T(q) = 2 pi integral_0^R (t(r) - 1) J0(2 pi q r) r dr`` with
    ``t(r) = exp(i k0 (n_bead - n_medium) 2 sqrt(R**2 - r**2))``.

    Parameters
    ----------
    q : array-like of float
        Spatial frequencies (radial), cycles per nm; any shape.
    radius_nm, wavelength_nm : float
        Bead radius and vacuum wavelength, nm.
    n_bead : complex
        Refractive index of the bead (imaginary part > 0 absorbs).
    n_medium : float
        Refractive index of the medium.
    n_nodes : int
        Gauss-Legendre nodes of the quadrature.

    Returns
    -------
    ndarray of complex128, shape of ``q``
        ``T(q)`` in nm**2 (the transform of a dimensionless transmission over an area).
    """
    q = np.asarray(q, dtype=np.float64)
    u, w = _gauss_legendre_01(n_nodes)
    k0 = 2.0 * np.pi / wavelength_nm
    a = 2.0 * k0 * radius_nm * (complex(n_bead) - n_medium)
    # r = R sqrt(1 - u^2), r dr = -R^2 u du; the chord is 2 R u.
    integrand = (np.exp(1j * a * u) - 1.0) * u * w  # (n_nodes,)
    r = radius_nm * np.sqrt(1.0 - u * u)
    flat = q.ravel()
    out = np.empty(flat.shape, dtype=np.complex128)
    step = max(1, 2**22 // n_nodes)
    for s in range(0, flat.size, step):
        j0 = scipy.special.j0(2.0 * np.pi * flat[s : s + step, None] * r[None, :])
        out[s : s + step] = j0 @ integrand
    return (2.0 * np.pi * radius_nm**2) * out.reshape(q.shape)


@functools.lru_cache(maxsize=16)
def _grid_model(
    shape: tuple[int, int],
    oversample: int,
    pixel_size_nm: float,
    radius_nm: float,
    wavelength_nm: float,
    n_bead: complex,
    n_medium: float,
    na: float,
) -> dict[str, np.ndarray]:
    """Frequency grids, pupil-filtered scattered spectrum and axial wavenumber on one grid."""
    mh, mw = shape
    d = pixel_size_nm / oversample
    fy = np.fft.fftfreq(mh, d=d)  # cycles / nm
    fx = np.fft.fftfreq(mw, d=d)
    q = np.hypot(fy[:, None], fx[None, :])
    pupil = q <= na / wavelength_nm
    spec = np.zeros((mh, mw), dtype=np.complex128)
    spec[pupil] = bead_spectrum(
        q[pupil],
        radius_nm=radius_nm,
        wavelength_nm=wavelength_nm,
        n_bead=n_bead,
        n_medium=n_medium,
    )
    kmed = n_medium / wavelength_nm
    # Defocus phase per nm of z, relative to the unscattered wave (evanescent waves are cut by
    # the pupil since na <= n_medium).
    kz = np.where(pupil, np.sqrt(np.maximum(kmed**2 - q**2, 0.0)) - kmed, 0.0)
    # Scattered field on the grid: s = ifft2(S(q_m) / d**2) for the periodic summation.
    spec /= d * d
    return {"fy": fy, "fx": fx, "spec": spec, "kz": 2.0 * np.pi * kz, "pupil": pupil}


def _check_optics(pixel_size_nm, radius_nm, wavelength_nm, n_bead, n_medium, na) -> None:
    check_positive(pixel_size_nm, "pixel_size_nm")
    check_positive(radius_nm, "radius_nm")
    check_positive(wavelength_nm, "wavelength_nm")
    check_positive(n_medium, "n_medium")
    check_positive(na, "na")
    nb = complex(n_bead)
    if not (math.isfinite(nb.real) and math.isfinite(nb.imag)) or nb.real <= 0 or nb.imag < 0:
        raise ValueError(f"n_bead must be finite with real part > 0 and imag >= 0, got {n_bead!r}")
    if na > n_medium:
        raise ValueError(
            f"na={na} exceeds n_medium={n_medium}; the pupil cannot pass evanescent waves"
        )


def _frame_shape(size: Any) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        shape = (int(size), int(size))
    else:
        shape = tuple(int(s) for s in size)
    if len(shape) != 2 or min(shape) < 4:
        raise ValueError(f"size must be an int or (rows, cols) with each >= 4, got {size!r}")
    return shape  # type: ignore[return-value]


def _render(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    shape: tuple[int, int],
    *,
    pixel_size_nm: float,
    radius_nm: float,
    wavelength_nm: float,
    n_bead: complex,
    n_medium: float,
    na: float,
    pad: float,
    chunk: int,
) -> np.ndarray:
    """Noise-free relative intensity, float64 (n, rows, cols)."""
    rows, cols = shape
    # Oversample (odd) so that the intensity bandwidth 2 na / lambda stays below the grid Nyquist.
    need = 4.0 * na * pixel_size_nm / wavelength_nm
    oversample = 1
    while need / oversample >= 1.0:
        oversample += 2
    mh = scipy.fft.next_fast_len(max(math.ceil(pad * rows), rows + 8))
    mw = scipy.fft.next_fast_len(max(math.ceil(pad * cols), cols + 8))
    oy, ox = (mh - rows) // 2, (mw - cols) // 2
    model = _grid_model(
        (mh * oversample, mw * oversample),
        oversample,
        float(pixel_size_nm),
        float(radius_nm),
        float(wavelength_nm),
        complex(n_bead),
        float(n_medium),
        float(na),
    )
    fy, fx, spec, kz = model["fy"], model["fx"], model["spec"], model["kz"]
    p = float(pixel_size_nm)
    k = oversample
    # Pixel MTF on the fine grid (pixel = k fine samples); the fine sample j*k is pixel centre j.
    fyk = np.fft.fftfreq(mh * k)
    fxk = np.fft.rfftfreq(mw * k)
    mtf = np.sinc(fyk * k)[:, None] * np.sinc(fxk * k)[None, :]
    out = np.empty((x.size, rows, cols), dtype=np.float64)
    for s in range(0, x.size, chunk):
        sl = slice(s, s + chunk)
        yy = (y[sl] + oy) * p
        xx = (x[sl] + ox) * p
        ramp_y = np.exp(-2j * np.pi * fy[None, :] * yy[:, None])  # (n, MH)
        ramp_x = np.exp(-2j * np.pi * fx[None, :] * xx[:, None])  # (n, MW)
        field = spec[None] * np.exp(1j * kz[None] * z[sl, None, None])
        field *= ramp_y[:, :, None]
        field *= ramp_x[:, None, :]
        field = scipy.fft.ifft2(field, axes=(-2, -1), overwrite_x=True)
        field += 1.0
        inten = field.real**2 + field.imag**2
        spec_i = scipy.fft.rfft2(inten, axes=(-2, -1))
        spec_i *= mtf
        inten = scipy.fft.irfft2(spec_i, s=(mh * k, mw * k), axes=(-2, -1))
        inten = inten[:, ::k, ::k]
        out[sl] = inten[:, oy : oy + rows, ox : ox + cols]
    np.maximum(out, 0.0, out=out)
    return out


def _as_1d(v: Any, name: str, n: int | None) -> np.ndarray:
    a = np.atleast_1d(np.asarray(v, dtype=np.float64))
    if a.ndim != 1:
        raise ShapeError(f"{name} must be a scalar or 1-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    if n is not None and a.size not in (1, n):
        raise ShapeError(f"{name} has {a.size} values, expected 1 or {n}")
    return a


def simulate(
    n_frames: int | None = None,
    *,
    x: Any = None,
    y: Any = None,
    z: Any = None,
    size: int | tuple[int, int] = 64,
    xy_range: float = 2.0,
    z_range: tuple[float, float] = (-5000.0, 5000.0),
    pixel_size_nm: float = 100.0,
    radius_nm: float = 1500.0,
    wavelength_nm: float = 550.0,
    n_bead: complex = 1.59,
    n_medium: float = 1.33,
    na: float = 1.2,
    photons: float | None = None,
    noise: bool = True,
    pad: float = 2.0,
    seed: int | np.random.Generator | None = None,
    dtype: Any = np.float32,
    chunk: int = 32,
) -> BeadImages:
    """Simulate bright-field images of one bead per frame, with ground truth.

    Parameters
    ----------
    n_frames : int, optional
        Number of frames. Required when none of ``x``, ``y``, ``z`` is an array; otherwise taken
        from them.
    x, y : float or array of shape (n_frames,), optional
        Bead centre, column and row in pixels (pixel centres at integer indices). Default: the
        frame centre ``((cols - 1) / 2, (rows - 1) / 2)`` plus a uniform random offset in
        ``[-xy_range, xy_range]``.
    z : float or array of shape (n_frames,), optional
        Defocus in nm. Default: uniform random in ``z_range``.
    size : int or (rows, cols)
        Frame size in pixels (default 64 x 64).
    xy_range : float
        Half-width of the random xy offsets, px (used only when ``x``/``y`` are None).
    z_range : (float, float) or float
        Range of the random z, nm, as (low, high) or a half-width h meaning (-h, h); used only
        when ``z`` is None.
    pixel_size_nm : float
        Pixel pitch in the object plane, nm (default 100).
    radius_nm : float
        Bead radius, nm (default 1500).
    wavelength_nm : float
        Vacuum wavelength of the illumination, nm (default 550).
    n_bead : complex
        Bead refractive index (default 1.59, polystyrene); a positive imaginary part absorbs.
    n_medium : float
        Medium refractive index (default 1.33, water).
    na : float
        Numerical aperture of the objective, at most ``n_medium`` (default 1.2).
    photons : float, optional
        Mean photons per background pixel. None (default): noise-free relative intensity.
    noise : bool
        With ``photons``, draw Poisson counts (default True) or return the expected counts.
    pad : float
        Size of the periodic computation grid relative to the frame (default 2).
    seed : int or numpy.random.Generator, optional
        Seeds the random positions and the Poisson noise.
    dtype : dtype
        Output image dtype (default float32).
    chunk : int
        Frames computed at once (bounds memory).

    Returns
    -------
    BeadImages
        ``images`` of shape ``(n_frames, rows, cols)`` and the truth ``x``, ``y`` (px), ``z``
        (nm), each of shape ``(n_frames,)``.

    Raises
    ------
    ValueError
        For non-finite or non-positive optics, ``na > n_medium``, inconsistent lengths, or no
        way to tell ``n_frames``.

    Examples
    --------
    >>> sim = simulate(4, seed=0)
    >>> sim.images.shape
    (4, 64, 64)
    """
    _check_optics(pixel_size_nm, radius_nm, wavelength_nm, n_bead, n_medium, na)
    shape = _frame_shape(size)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    lengths = [np.size(v) for v in (x, y, z) if v is not None and np.ndim(v) > 0]
    if n_frames is None:
        if not lengths:
            raise ValueError("n_frames is required when x, y and z are not arrays")
        n_frames = max(lengths)
    if isinstance(n_frames, bool) or not isinstance(n_frames, int | np.integer) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    n = int(n_frames)
    check_positive(xy_range, "xy_range", allow_zero=True)
    if photons is not None:
        check_positive(photons, "photons")
    check_positive(pad, "pad")
    if pad < 1:
        raise ValueError(f"pad must be >= 1, got {pad}")
    rows, cols = shape
    if x is None:
        x = (cols - 1) / 2.0 + rng.uniform(-xy_range, xy_range, n)
    if y is None:
        y = (rows - 1) / 2.0 + rng.uniform(-xy_range, xy_range, n)
    if z is None:
        bounds = np.atleast_1d(np.asarray(z_range, dtype=float))
        if bounds.shape not in ((1,), (2,)):
            raise ValueError(f"z_range must be (low, high) or a half-width in nm, got {z_range!r}")
        lo, hi = (-abs(bounds[0]), abs(bounds[0])) if bounds.size == 1 else bounds
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"z_range must be finite (low, high), got {z_range!r}")
        z = rng.uniform(lo, hi, n)
    xa = np.broadcast_to(_as_1d(x, "x", n), (n,)).copy()
    ya = np.broadcast_to(_as_1d(y, "y", n), (n,)).copy()
    za = np.broadcast_to(_as_1d(z, "z", n), (n,)).copy()
    inten = _render(
        xa,
        ya,
        za,
        shape,
        pixel_size_nm=pixel_size_nm,
        radius_nm=radius_nm,
        wavelength_nm=wavelength_nm,
        n_bead=n_bead,
        n_medium=n_medium,
        na=na,
        pad=pad,
        chunk=max(1, int(chunk)),
    )
    if photons is not None:
        inten *= float(photons)
        if noise:
            inten = rng.poisson(inten).astype(np.float64)
    logger.debug("simulated %d bead frames of %s", n, shape)
    return BeadImages(
        images=inten.astype(dtype, copy=False),
        x=xa,
        y=ya,
        z=za,
        pixel_size_nm=float(pixel_size_nm),
        photons=None if photons is None else float(photons),
    )


def simulate_zscan(
    z: Any,
    *,
    size: int | tuple[int, int] = 64,
    x: float | None = None,
    y: float | None = None,
    **kwargs: Any,
) -> BeadImages:
    """Simulate a calibration z-scan: the bead at a fixed xy, one frame per z.

    Parameters
    ----------
    z : array of shape (m,)
        Defocus of each plane, nm.
    size : int or (rows, cols)
        Frame size in pixels.
    x, y : float, optional
        Bead column and row, px (default: the frame centre ``((cols-1)/2, (rows-1)/2)``).
    **kwargs
        Optics, noise and output options of :func:`simulate` (``pixel_size_nm``, ``radius_nm``,
        ``photons``, ``seed``...).

    Returns
    -------
    BeadImages
        ``m`` frames, ``z`` as given.
    """
    za = _as_1d(z, "z", None)
    rows, cols = _frame_shape(size)
    xv = (cols - 1) / 2.0 if x is None else float(x)
    yv = (rows - 1) / 2.0 if y is None else float(y)
    return simulate(
        za.size, x=np.full(za.size, xv), y=np.full(za.size, yv), z=za, size=size, **kwargs
    )


def _movie_drift(drift: Any, n_frames: int, n_beads: int) -> np.ndarray | None:
    """``drift`` as float64 (n_frames, n_beads, 2), or None."""
    if drift is None:
        return None
    d = np.asarray(drift, dtype=np.float64)
    if d.shape == (n_frames, 2):
        d = np.broadcast_to(d[:, None, :], (n_frames, n_beads, 2))
    if d.shape != (n_frames, n_beads, 2):
        raise ShapeError(
            f"drift must have shape (n_frames, 2) = ({n_frames}, 2) or (n_frames, n_beads, 2) = "
            f"({n_frames}, {n_beads}, 2) as (dx, dy) px, got {d.shape}"
        )
    if not np.all(np.isfinite(d)):
        raise ValueError("drift must be finite")
    return d


def simulate_movie(
    n_frames: int,
    *,
    shape: tuple[int, int] = (128, 256),
    n_beads: int = 3,
    roi_size: int = 64,
    positions: Any = None,
    xy_jitter: float = 1.0,
    z_range: tuple[float, float] = (-3000.0, 3000.0),
    photons: float | None = None,
    drift: Any = None,
    seed: int | np.random.Generator | None = None,
    dtype: Any = np.float32,
    **optics: Any,
) -> tuple[np.ndarray, Any]:
    """Simulate full camera frames holding several beads, with a ground-truth table.

    Each bead is rendered on its own ``2 * roi_size`` patch (the background-subtracted intensity
    tapered to zero over the outer quarter of the patch) and the patches are added to a uniform
    background; beads should therefore be at least ``2 * roi_size`` apart for their images not to
    overlap. With ``drift`` the patch follows the bead (its corner is moved by the rounded drift
    of each frame), so a drifting bead keeps an undistorted image; parts of a patch beyond the
    frame are cut off.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    shape : (int, int)
        Frame shape ``(rows, cols)``.
    n_beads : int
        Number of beads (ignored when ``positions`` is given).
    roi_size : int
        The tracking ROI size the movie is meant for, px; sets the patch size and the margin kept
        from the frame edge.
    positions : array of shape (n_beads, 2), optional
        Mean ``(x, y)`` = (column, row) of each bead, px. Default: on a grid of pitch
        ``roi_size + 16`` px centred in the frame (``ValueError`` if ``n_beads`` do not fit).
    xy_jitter : float
        Standard deviation of the per-frame random xy motion about the mean position, px.
    z_range : (float, float)
        Per-frame z is uniform in this range, nm.
    photons : float, optional
        Mean photons per background pixel (Poisson noise); None for noise-free intensity.
    drift : array of shape (n_frames, 2) or (n_frames, n_beads, 2), optional
        Displacement ``(dx, dy)`` (column, row) in px added to the bead positions of each frame:
        one common drift (stage or thermal drift) or one trajectory per bead. It is part of the
        truth table's ``x``, ``y``. Default: no drift (the movie is then the same as without the
        argument).
    seed : int or numpy.random.Generator, optional
        Random seed.
    dtype : dtype
        Output dtype.
    **optics
        ``pixel_size_nm``, ``radius_nm``, ``wavelength_nm``, ``n_bead``, ``n_medium``, ``na``.

    Returns
    -------
    movie : ndarray of shape (n_frames, rows, cols)
        The frames.
    truth : pandas.DataFrame
        Columns ``frame``, ``bead``, ``x``, ``y`` (px, movie coordinates), ``z`` (nm), one row per
        frame and bead, sorted by frame then bead.

    Raises
    ------
    ShapeError
        For ``positions`` or ``drift`` of the wrong shape.
    ValueError
        For too many beads for the frame or a non-finite ``drift``.

    Examples
    --------
    A linear drift of 20 px along x over 100 frames:

    >>> drift = np.stack([np.linspace(0.0, 20.0, 100), np.zeros(100)], axis=1)
    >>> movie, truth = simulate_movie(100, n_beads=2, drift=drift, seed=0)  # doctest: +SKIP
    """
    import pandas as pd

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rows, cols = (int(s) for s in shape)
    patch = 2 * int(roi_size)
    if positions is None:
        pitch = int(roi_size) + 16
        half = roi_size / 2.0 + 4.0
        n_c = int((cols - 2 * half) // pitch) + 1
        n_r = int((rows - 2 * half) // pitch) + 1
        if n_c < 1 or n_r < 1 or n_c * n_r < n_beads:
            raise ValueError(
                f"a {rows} x {cols} frame holds at most {max(n_c, 0) * max(n_r, 0)} beads "
                f"{pitch} px apart; make shape larger or n_beads smaller"
            )
        xs = (cols - 1) / 2.0 + pitch * (np.arange(n_c) - (n_c - 1) / 2.0)
        ys = (rows - 1) / 2.0 + pitch * (np.arange(n_r) - (n_r - 1) / 2.0)
        grid = np.array([(xv, yv) for yv in ys for xv in xs], dtype=np.float64)[:n_beads]
        positions = grid + rng.uniform(-0.5, 0.5, grid.shape)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ShapeError(f"positions must have shape (n_beads, 2) = (x, y), got {positions.shape}")
    k = positions.shape[0]
    shifts = _movie_drift(drift, n_frames, k)  # (n_frames, k, 2) px
    bg = 1.0
    movie = np.full((n_frames, rows, cols), bg, dtype=np.float64)
    # Taper (1 inside, cosine to 0 over the outer quarter of the patch).
    t = np.ones(patch)
    ramp = patch // 4
    t[:ramp] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    t[-ramp:] = t[:ramp][::-1]
    taper = t[:, None] * t[None, :]
    frames, beads, xs_all, ys_all, zs_all = [], [], [], [], []
    for b in range(k):
        xb = positions[b, 0] + rng.normal(0.0, xy_jitter, n_frames)
        yb = positions[b, 1] + rng.normal(0.0, xy_jitter, n_frames)
        zb = rng.uniform(z_range[0], z_range[1], n_frames)
        if shifts is not None:
            xb = xb + shifts[:, b, 0]
            yb = yb + shifts[:, b, 1]
            centre_x = positions[b, 0] + shifts[:, b, 0]
            centre_y = positions[b, 1] + shifts[:, b, 1]
        else:
            centre_x = np.full(n_frames, positions[b, 0])
            centre_y = np.full(n_frames, positions[b, 1])
        # Patch corner of every frame (fixed without drift), as integers.
        row0 = np.round(centre_y).astype(np.int64) - patch // 2
        col0 = np.round(centre_x).astype(np.int64) - patch // 2
        sim = simulate(
            n_frames,
            x=xb - col0,
            y=yb - row0,
            z=zb,
            size=patch,
            pad=1.5,
            dtype=np.float64,
            **optics,
        )
        contrib = (sim.images - 1.0) * taper
        # Paste the frames that share a patch corner together, clipping the patch to the frame.
        corners, group = np.unique(np.stack([row0, col0], axis=1), axis=0, return_inverse=True)
        for g, (r0, c0) in enumerate(corners.tolist()):
            sel = np.flatnonzero(group.reshape(-1) == g)
            ra, rb = max(r0, 0), min(r0 + patch, rows)
            ca, cb = max(c0, 0), min(c0 + patch, cols)
            if ra >= rb or ca >= cb:
                continue
            movie[sel, ra:rb, ca:cb] += contrib[sel, ra - r0 : rb - r0, ca - c0 : cb - c0]
        frames.append(np.arange(n_frames))
        beads.append(np.full(n_frames, b))
        xs_all.append(xb)
        ys_all.append(yb)
        zs_all.append(zb)
    np.maximum(movie, 0.0, out=movie)
    if photons is not None:
        check_positive(photons, "photons")
        movie = rng.poisson(movie * float(photons)).astype(np.float64)
    truth = pd.DataFrame(
        {
            "frame": np.concatenate(frames),
            "bead": np.concatenate(beads),
            "x": np.concatenate(xs_all),
            "y": np.concatenate(ys_all),
            "z": np.concatenate(zs_all),
        }
    )
    truth = truth.sort_values(["frame", "bead"], kind="stable").reset_index(drop=True)
    return movie.astype(dtype, copy=False), truth
