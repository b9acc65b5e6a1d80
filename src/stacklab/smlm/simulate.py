"""Simulated localization movies with ground truth: blinking emitters, pixel-integrated PSF, camera.

Model (one state per frame, frames-first ``(n_frames, rows, cols)``, pixel centres at integer
indices, ``x`` = column, ``y`` = row):

* emitters at fixed positions (uniform in the field, ``margin`` pixels from the edges, or given);
* blinking: a discrete-time two-state Markov chain per emitter, ``P(off -> on) = k_on`` and
  ``P(on -> off) = k_off`` per frame, started in its stationary distribution (on with probability
  ``k_on / (k_on + k_off)``); mean on-time ``1 / k_off`` frames;
* an on emitter gives ``photons`` expected photons spread by a Gaussian PSF of sigma ``sigma_px``
  integrated over each pixel's area, on top of ``background`` photons per pixel;
* drift: the sample moves by ``drift_nm`` (total, linear over the movie) or a per-frame table;
* camera: photoelectrons ~ Poisson(QE * expected photons), plus Gaussian read noise (uniform
  ``read_noise`` e- rms or the sCMOS ``variance`` map), ``ADU = electrons / gain + offset``,
  rounded and clipped to the output dtype (saturation).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from ..errors import ShapeError, check_positive
from .camera import Camera

__all__ = ["SimulatedMovie", "blink_states", "render_emitters", "simulate_movie"]

logger = logging.getLogger(__name__)

#: Emitters per pixel^2 in the default simulation (the density of shared/golden/smlmlp: 60
#: emitters in 48 x 48 px, 2.6 on per frame with the default rates).
DEFAULT_DENSITY = 60 / 48**2


@dataclass(frozen=True)
class SimulatedMovie:
    """A simulated movie and its ground truth.

    Attributes
    ----------
    movie : ndarray of shape (n_frames, rows, cols)
        Camera counts (ADU), uint16 by default.
    truth : pandas.DataFrame
        One row per (frame, on emitter): ``frame``, ``emitter``, ``x [nm]``, ``y [nm]`` (true
        position including drift; ``x [nm] = column * pixel_size_nm``), ``x [px]``, ``y [px]``,
        ``intensity [photon]`` (expected photons).
    emitters : ndarray of shape (n_emitters, 2)
        Emitter positions ``(y, x)`` in pixels without drift.
    states : ndarray of shape (n_frames, n_emitters), bool
        On/off state per frame.
    drift_nm : ndarray of shape (n_frames, 2)
        Sample drift ``(dy, dx)`` in nm added to every emitter in each frame.
    camera : Camera
        Camera used (offset, gain, QE, pixel size, noise).
    params : dict
        ``sigma_px``, ``photons``, ``background``, ``k_on``, ``k_off``, ``seed``.
    """

    movie: np.ndarray
    truth: pd.DataFrame
    emitters: np.ndarray
    states: np.ndarray
    drift_nm: np.ndarray
    camera: Camera
    params: dict = field(default_factory=dict)

    @property
    def pixel_size_nm(self) -> float:
        """Pixel size in nm."""
        return float(self.camera.pixel_size_nm)


def blink_states(
    n_frames: int, n_emitters: int, k_on: float, k_off: float, *, rng: np.random.Generator
) -> np.ndarray:
    """On/off states of independent two-state Markov chains, one step per frame.

    Parameters
    ----------
    n_frames, n_emitters : int
        Output shape.
    k_on, k_off : float
        Per-frame switching probabilities off -> on and on -> off, in [0, 1].
    rng : numpy.random.Generator
        Random source.

    Returns
    -------
    ndarray of shape (n_frames, n_emitters), bool
        Started in the stationary distribution (on with probability k_on / (k_on + k_off)).
    """
    for name, v in (("k_on", k_on), ("k_off", k_off)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be a probability per frame in [0, 1], got {v!r}")
    p_on = k_on / (k_on + k_off) if k_on + k_off > 0 else 0.0
    states = np.empty((n_frames, n_emitters), dtype=bool)
    if n_frames == 0:
        return states
    u = rng.random((n_frames, n_emitters))
    states[0] = u[0] < p_on
    # A Markov chain is sequential in time; the loop is over frames with vector work per frame.
    for f in range(1, n_frames):
        prev = states[f - 1]
        states[f] = np.where(prev, u[f] >= k_off, u[f] < k_on)
    return states


def _axis_weights(centre: np.ndarray, start: np.ndarray, n: int, sigma: float) -> np.ndarray:
    edges = start[:, None] + np.arange(n + 1)[None, :] - 0.5
    e = special.erf((edges - centre[:, None]) / (math.sqrt(2.0) * sigma))
    return 0.5 * (e[:, 1:] - e[:, :-1])


def render_emitters(
    shape: tuple[int, int, int],
    frame: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    photons: np.ndarray,
    sigma: float,
) -> np.ndarray:
    """Expected photons of pixel-integrated Gaussian spots in a stack (no background).

    Parameters
    ----------
    shape : (int, int, int)
        ``(n_frames, rows, cols)`` of the output.
    frame : ndarray of shape (m,), int
        Frame of each spot.
    y, x : ndarray of shape (m,)
        Spot centre (row, column) in pixels.
    photons : ndarray of shape (m,)
        Expected photons of each spot.
    sigma : float
        PSF sigma in pixels.

    Returns
    -------
    ndarray of shape ``shape``, float64
        Sum of the spots; each spot is evaluated in a window of ``+-(ceil(5 sigma) + 1)`` px.
    """
    n_frames, rows, cols = shape
    out = np.zeros(n_frames * rows * cols)
    if len(frame) == 0:
        return out.reshape(shape)
    half = math.ceil(5.0 * sigma) + 1
    w = 2 * half + 1
    r0 = np.floor(y).astype(np.int64) - half
    c0 = np.floor(x).astype(np.int64) - half
    wy = _axis_weights(np.asarray(y, float), r0, w, sigma)
    wx = _axis_weights(np.asarray(x, float), c0, w, sigma)
    ri = r0[:, None] + np.arange(w)[None, :]
    ci = c0[:, None] + np.arange(w)[None, :]
    vals = np.asarray(photons, float)[:, None, None] * wy[:, :, None] * wx[:, None, :]
    rr = np.broadcast_to(ri[:, :, None], vals.shape)
    cc = np.broadcast_to(ci[:, None, :], vals.shape)
    inside = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
    ff = np.broadcast_to(np.asarray(frame, np.int64)[:, None, None], vals.shape)
    flat = (ff * rows + rr) * cols + cc
    out += np.bincount(flat[inside], weights=vals[inside], minlength=out.size)
    return out.reshape(shape)


def _drift_table(drift_nm: Any, n_frames: int) -> np.ndarray:
    d = np.asarray(drift_nm, dtype=float)
    if d.shape == (2,):
        t = np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.zeros(n_frames)
        return t[:, None] * d[None, :]
    if d.shape == (n_frames, 2):
        return d.copy()
    raise ShapeError(
        f"drift_nm must be (dy, dx) in nm or have shape ({n_frames}, 2), got {d.shape}"
    )


def simulate_movie(
    n_frames: int = 2000,
    shape: tuple[int, int] = (64, 64),
    *,
    n_emitters: int | None = None,
    density: float = DEFAULT_DENSITY,
    positions: Any = None,
    margin: float = 3.0,
    sigma_px: float = 1.3,
    photons: float | Any = 1000.0,
    background: float = 20.0,
    k_on: float = 0.01,
    k_off: float = 0.25,
    drift_nm: Any = (0.0, 0.0),
    camera: Camera | None = None,
    dtype: Any = np.uint16,
    seed: int | None = 0,
) -> SimulatedMovie:
    """Simulate a blinking single-molecule movie with ground truth.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    shape : (int, int)
        Frame ``(rows, cols)``.
    n_emitters : int, optional
        Number of emitters; default ``round(density * rows * cols)``.
    density : float
        Emitters per pixel^2 when ``n_emitters`` and ``positions`` are not given (default: the
        golden movie's 0.026, about 4 emitters on per 64 x 64 frame at the default rates).
    positions : ndarray of shape (n_emitters, 2), optional
        Emitter positions ``(y, x)`` in pixels (instead of uniform random ones).
    margin : float
        Random positions keep this many pixels from the frame edges.
    sigma_px : float
        PSF sigma in pixels.
    photons : float or ndarray of shape (n_emitters,)
        Expected photons per emitter per on-frame.
    background : float
        Background photons per pixel per frame.
    k_on, k_off : float
        Blinking probabilities per frame (off -> on, on -> off).
    drift_nm : (float, float) or ndarray of shape (n_frames, 2)
        Total linear drift ``(dy, dx)`` over the movie in nm (frame 0 undrifted), or the drift of
        every frame.
    camera : Camera, optional
        Default ``Camera(offset=100, gain=0.25, qe=1, pixel_size_nm=100)``.
    dtype : dtype
        Integer dtype of the movie (values are clipped to its range) or a float dtype.
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    SimulatedMovie
    """
    rows, cols = (int(s) for s in shape)
    if n_frames < 1 or rows < 1 or cols < 1:
        raise ShapeError(f"need n_frames >= 1 and a non-empty shape, got {n_frames}, {shape}")
    check_positive(sigma_px, "sigma_px")
    check_positive(background, "background", allow_zero=True)
    cam = Camera(offset=100.0, gain=0.25, qe=1.0, pixel_size_nm=100.0) if camera is None else camera
    cam.check_frame_shape((rows, cols))
    rng = np.random.default_rng(seed)
    if positions is None:
        n = round(density * rows * cols) if n_emitters is None else int(n_emitters)
        lo_y, hi_y = margin, rows - 1 - margin
        lo_x, hi_x = margin, cols - 1 - margin
        if hi_y < lo_y or hi_x < lo_x:
            raise ValueError(f"margin={margin} leaves no room in frames of shape {shape}")
        pos = np.column_stack([rng.uniform(lo_y, hi_y, n), rng.uniform(lo_x, hi_x, n)])
    else:
        pos = np.asarray(positions, dtype=float).reshape(-1, 2)
        n = pos.shape[0]
    phot = np.broadcast_to(np.asarray(photons, dtype=float), (n,)).copy()
    check_positive(phot, "photons", allow_zero=True)
    states = blink_states(n_frames, n, k_on, k_off, rng=rng)
    drift = _drift_table(drift_nm, n_frames)
    px = float(cam.pixel_size_nm)
    f_idx, e_idx = np.nonzero(states)
    y = pos[e_idx, 0] + drift[f_idx, 0] / px
    x = pos[e_idx, 1] + drift[f_idx, 1] / px
    expected = render_emitters((n_frames, rows, cols), f_idx, y, x, phot[e_idx], sigma_px)
    expected += float(background)
    electrons = rng.poisson(expected * float(cam.qe)).astype(np.float64)
    del expected
    if cam.variance is not None:
        sd = np.sqrt(np.asarray(cam.variance, dtype=float)) * float(cam.gain)
        electrons += rng.standard_normal(electrons.shape) * sd
    elif cam.read_noise > 0:
        electrons += rng.standard_normal(electrons.shape) * float(cam.read_noise)
    adu = electrons / float(cam.gain) + np.asarray(cam.offset, dtype=float)
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        movie = np.clip(np.rint(adu), info.min, info.max).astype(dt)
    else:
        movie = adu.astype(dt)
    truth = pd.DataFrame(
        {
            "frame": f_idx.astype(np.int64),
            "emitter": e_idx.astype(np.int64),
            "x [nm]": x * px,
            "y [nm]": y * px,
            "x [px]": x,
            "y [px]": y,
            "intensity [photon]": phot[e_idx],
        }
    )
    truth.attrs.update(
        {"pixel_size_nm": px, "image_shape": (rows, cols), "n_frames": int(n_frames)}
    )
    params = {
        "sigma_px": float(sigma_px),
        "photons": float(np.mean(phot)) if n else float(np.asarray(photons).mean()),
        "background": float(background),
        "k_on": float(k_on),
        "k_off": float(k_off),
        "seed": seed,
    }
    return SimulatedMovie(movie, truth, pos, states, drift, cam, params)
