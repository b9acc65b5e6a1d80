"""The whole speckle-tracking reconstruction in one call: :func:`run`.

Steps (each can be given instead of computed):

1. mask (:func:`make_mask`), whitefield (:func:`make_whitefield`), region of interest
   (:func:`guess_roi`);
2. defocus and astigmatism (:func:`fit_defocus_registration` by default, or Thon rings);
3. nominal geometry (:func:`generate_pixel_map`): pixel map and translations in object pixels;
4. a first pixel map from the local shifts between neighbouring frames
   (:func:`estimate_pixel_map`), which has no slowly converging long-wavelength errors;
5. ``iterations`` rounds of reference update (:func:`make_reference`, on a grid ``oversample``
   times finer than the object pixels, with least-squares sweeps) and pixel-map update
   (:func:`update_pixel_map`: window search, checked quadratic refinement, curl-free
   regularisation), optionally translation updates (:func:`update_translations`); the
   normalised error (:func:`calc_error`) is recorded before the first and after every round;
6. the final reference image on the object-pixel grid, and the phase
   (:func:`integrate_pixel_map`).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import to_numpy
from ..errors import ShapeError, check_positive
from ._common import check_mask, check_stack, parse_roi
from .defocus import DefocusFit, fit_defocus_registration, fit_thon_rings
from .error import calc_error
from .mask import make_mask
from .pairs import estimate_pixel_map
from .phase import integrate_pixel_map
from .pixel_map import generate_pixel_map, update_pixel_map, update_translations
from .reference import make_reference
from .whitefield import guess_roi, make_whitefield, update_whitefield

__all__ = ["SpeckleResult", "run"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeckleResult:
    """Result of :func:`run` (NumPy arrays; full detector frames unless stated).

    Attributes
    ----------
    pixel_map : ndarray of float64, shape (2, M, L)
        Refined pixel map ([0] = ss, [1] = fs, object pixels); the nominal map outside the roi.
    dij_n : ndarray of float64, shape (N, 2)
        Translations [ss, fs] in object pixels (refined if asked).
    reference : ndarray of float64, shape (U, V)
        Reference image on the object-pixel grid (NaN where no data).
    n0, m0 : float
        Object offsets of ``reference`` for the full-frame ``pixel_map``.
    phase : ndarray of float64, shape (M, L)
        Lens-aberration phase (rad; piston and tilt removed by default), NaN outside the roi.
    angles : ndarray of float64, shape (2, M, L)
        Residual ray angles (rad), NaN outside the roi.
    mask : ndarray of bool, shape (M, L)
        Good pixels used.
    whitefield : ndarray of float64, shape (M, L)
        Whitefield used.
    roi : tuple of 4 int
        ``(ss0, ss1, fs0, fs1)``.
    defocus, defocus_ss, defocus_fs : float
        Focus-to-sample distances used (m).
    dss, dfs : float
        Object pixel size along ss and fs (m).
    wavelength, distance, x_pixel_size, y_pixel_size : float
        Geometry (m).
    errors : tuple of float
        Normalised residual (:attr:`SpeckleError.normalised`, about 1 for Poisson-limited data)
        of the initial map and after every iteration.
    map_changes : tuple of float
        RMS change of the pixel map (object pixels) at every iteration.
    error_map : ndarray of float64, shape (M, L)
        Mean squared residual per pixel of the final fit (counts**2), NaN outside the roi.
    timings : dict
        Wall time of each step (s).
    defocus_fit : DefocusFit or None
        The defocus fit, when the defocus was fitted.
    """

    pixel_map: np.ndarray
    dij_n: np.ndarray
    reference: np.ndarray
    n0: float
    m0: float
    phase: np.ndarray
    angles: np.ndarray
    mask: np.ndarray
    whitefield: np.ndarray
    roi: tuple[int, int, int, int]
    defocus: float
    defocus_ss: float
    defocus_fs: float
    dss: float
    dfs: float
    wavelength: float
    distance: float
    x_pixel_size: float
    y_pixel_size: float
    errors: tuple[float, ...]
    map_changes: tuple[float, ...]
    error_map: np.ndarray
    timings: dict = field(default_factory=dict)
    defocus_fit: DefocusFit | None = None

    @property
    def iterations(self) -> int:
        """Number of refinement iterations run."""
        return len(self.map_changes)


class _Steps:
    """Progress reporting (tqdm when interactive) and step timing."""

    def __init__(self, total: int, progress: bool | None) -> None:
        if progress is None:
            progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self.bar = None
        if progress:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc="speckle", unit="step", leave=False)
            except ImportError:  # pragma: no cover - tqdm is a core dependency
                self.bar = None
        self.timings: dict[str, float] = {}
        self.t0 = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self.t0
        self.t0 = now
        logger.info("speckle: %s done (%.3f s)", name, self.timings[name])
        if self.bar is not None:
            self.bar.set_postfix_str(name)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(
    data: Any,
    translations: Any,
    basis: Any,
    x_pixel_size: float,
    y_pixel_size: float,
    distance: float,
    wavelength: float,
    *,
    mask: Any = None,
    whitefield: Any = None,
    roi: Any = "auto",
    defocus: float | None = None,
    dz: float = 0.0,
    defocus_method: str = "registration",
    iterations: int = 2,
    oversample: int = 2,
    search_window: int = 3,
    reference_sweeps: int = 4,
    refine_translations: bool = False,
    refine_whitefield: bool | None = None,
    whitefield_rounds: int = 4,
    integrate: bool = True,
    remove: str = "tilt",
    progress: bool | None = None,
    backend: str = "auto",
) -> SpeckleResult:
    """Reconstruct the pixel map, reference image and lens phase of a speckle-tracking scan.

    Parameters
    ----------
    data : ndarray of shape (N, M, L)
        Frames (counts): N frames, M ss rows, L fs columns (NumPy, CuPy or a lazy dataset).
    translations : ndarray of shape (N, 3)
        Sample positions (x, y, z) per frame, metres.
    basis : ndarray of shape (N, 2, 3)
        Detector basis vectors (ss step, fs step) in the lab frame, metres.
    x_pixel_size, y_pixel_size : float
        Detector pixel size along ss and fs, metres.
    distance : float
        Focus-to-detector distance z, metres.
    wavelength : float
        Wavelength, metres.
    mask : bool ndarray of shape (M, L), optional
        Good pixels; default :func:`make_mask` (a given mask is combined with it).
    whitefield : ndarray of shape (M, L), optional
        Default :func:`make_whitefield`.
    roi : "auto", None or sequence of 4 int
        ``"auto"`` (default): :func:`guess_roi`; None: the whole frame.
    defocus : float, optional
        Mean focus-to-sample distance (m); default: fitted with ``defocus_method``.
    dz : float
        Astigmatism (m) used with a given ``defocus``: ``z_ss = defocus + dz``,
        ``z_fs = defocus - dz``.
    defocus_method : {"registration", "thon"}
        How to fit the defocus when it is not given.
    iterations : int
        Reference / pixel-map refinement rounds after the initial estimate (default 2).
    oversample : int
        Reference grid refinement during the iterations (default 2: half object pixels).
    search_window : int
        Window of the pixel-map search in steps of half a reference pixel (default 3).
    reference_sweeps : int
        Least-squares sweeps of every reference update (default 4).
    refine_translations : bool
        Also refine the translations each round (default False).
    refine_whitefield : bool, optional
        Refine the whitefield by least squares against the reference (default: when it was
        estimated from the data, not given).
    whitefield_rounds : int
        Alternating whitefield / reference updates before the first iteration (default 4).
    integrate : bool
        Make every pixel-map update curl-free (default True).
    remove : {"none", "piston", "tilt", "defocus", "astigmatism"}
        Terms removed from the phase (default piston and tilt).
    progress : bool, optional
        Show a progress bar (default: when stderr is a terminal).
    backend : {"auto", "numba", "xp"}
        Kernel choice for NumPy data.

    Returns
    -------
    SpeckleResult
        Maps, reference, phase, geometry and the error per iteration (NumPy arrays).

    Raises
    ------
    ShapeError
        If translations, basis and frames do not match.
    ValueError
        For an all-masked detector, zero whitefield on good pixels, or a failed defocus fit.
    """
    xp, data = check_stack(data)
    n_frames = data.shape[0]
    for v, name in (
        (x_pixel_size, "x_pixel_size"),
        (y_pixel_size, "y_pixel_size"),
        (distance, "distance"),
        (wavelength, "wavelength"),
    ):
        check_positive(v, name)
    t = np.asarray(to_numpy(translations), dtype=float)
    if t.ndim != 2 or t.shape != (n_frames, 3):
        raise ShapeError(
            f"translations must have shape (N, 3) = ({n_frames}, 3) to match data's {n_frames} "
            f"frames, got {t.shape}"
        )
    b = np.asarray(to_numpy(basis), dtype=float)
    if b.shape not in ((n_frames, 2, 3), (2, 3)):
        raise ShapeError(
            f"basis must have shape (N, 2, 3) = ({n_frames}, 2, 3) or (2, 3), got {b.shape}"
        )
    if int(iterations) < 0 or int(oversample) < 1:
        raise ValueError("iterations must be >= 0 and oversample >= 1")
    steps = _Steps(6 + int(iterations), progress)
    try:
        return _run(
            xp,
            data,
            t,
            b,
            x_pixel_size,
            y_pixel_size,
            distance,
            wavelength,
            mask,
            whitefield,
            roi,
            defocus,
            dz,
            defocus_method,
            int(iterations),
            int(oversample),
            int(search_window),
            int(reference_sweeps),
            bool(refine_translations),
            whitefield is None if refine_whitefield is None else bool(refine_whitefield),
            int(whitefield_rounds),
            bool(integrate),
            remove,
            backend,
            steps,
        )
    finally:
        steps.close()


def _smooth_whitefield(xp, W, good, sigma: float = 2.0):
    """Gaussian-smoothed whitefield (normalised convolution over good pixels)."""
    from ..backend import ndimage

    nd = ndimage(xp)
    sig = (0.0, sigma) if W.shape[0] == 1 else sigma
    g = good.astype(xp.float64)
    num = nd.gaussian_filter(xp.where(good, W, 0.0), sig, mode="nearest")
    den = nd.gaussian_filter(g, sig, mode="nearest")
    return xp.where(den > 1e-6, num / xp.where(den > 1e-6, den, 1.0), W)


def _run(
    xp,
    data,
    t,
    b,
    x_pixel_size,
    y_pixel_size,
    distance,
    wavelength,
    mask,
    whitefield,
    roi,
    defocus,
    dz,
    defocus_method,
    iterations,
    oversample,
    search_window,
    sweeps,
    refine_translations,
    refine_whitefield,
    whitefield_rounds,
    integrate,
    remove,
    backend,
    steps,
):
    _, m, n = data.shape
    auto_mask = make_mask(data)
    good = auto_mask if mask is None else auto_mask & check_mask(xp, mask, (m, n))
    if not bool(xp.any(good)):
        raise ValueError("mask has no good pixel: the whole detector is masked")
    steps.done("mask")
    if whitefield is None:
        W = make_whitefield(data, good)
    else:
        W = xp.asarray(whitefield, dtype=xp.float64)
        if W.shape != (m, n):
            raise ShapeError(f"whitefield must have shape {(m, n)} (M, L), got {W.shape}")
    bad_w = good & ~(xp.isfinite(W) & (W > 0))
    if bool(xp.any(bad_w)):
        raise ValueError(
            f"whitefield is zero, negative or NaN on {int(xp.count_nonzero(bad_w))} good "
            "pixel(s); mask them or let make_whitefield fill them"
        )
    if isinstance(roi, str):
        if roi != "auto":
            raise ValueError(f"roi must be 'auto', None or [ss0, ss1, fs0, fs1], got {roi!r}")
        roi_t = tuple(guess_roi(W))
    else:
        roi_t = parse_roi(roi, (m, n))
    s0, s1, f0, f1 = roi_t
    steps.done("whitefield and roi")

    fit = None
    if defocus is None:
        if defocus_method == "registration":
            fit = fit_defocus_registration(
                data, t, b, x_pixel_size, y_pixel_size, distance, good, W, roi_t
            )
        elif defocus_method == "thon":
            fit = fit_thon_rings(
                data, x_pixel_size, y_pixel_size, distance, wavelength, good, W, roi_t
            )
        else:
            raise ValueError(
                f"defocus_method must be 'registration' or 'thon', got {defocus_method!r}"
            )
        z_ss, z_fs = fit.defocus_ss, fit.defocus_fs
    else:
        z_ss, z_fs = float(defocus) + float(dz), float(defocus) - float(dz)
    steps.done("defocus")

    d_r = data[:, s0:s1, f0:f1]
    g_r = good[s0:s1, f0:f1]
    w_r = W[s0:s1, f0:f1]
    if not bool(xp.any(g_r)):
        raise ValueError(f"every pixel of the roi {list(roi_t)} is masked")
    u_nom, dij, info = generate_pixel_map(
        (s1 - s0, f1 - f0), t, b, x_pixel_size, y_pixel_size, distance, z_fs, z_ss
    )
    dij = xp.asarray(dij)
    # A median whitefield keeps an imprint of the speckle of a short scan; the frame-pair
    # estimate uses a smoothed copy, and the whitefield is then refined by least squares.
    u = estimate_pixel_map(d_r, g_r, _smooth_whitefield(xp, w_r, g_r), dij, u_nom, passes=1)
    os_ = oversample
    errors: list[float] = []
    changes: list[float] = []
    if refine_whitefield:
        for _ in range(whitefield_rounds):
            ref = make_reference(d_r, g_r, w_r, dij * os_, u * os_, iterations=2, backend=backend)
            w_r = update_whitefield(d_r, g_r, ref.image, u * os_, ref.n0, ref.m0, dij * os_, W=w_r)
    u = estimate_pixel_map(d_r, g_r, w_r, dij, u, passes=1, refine=True)
    steps.done("initial pixel map")
    ref = make_reference(d_r, g_r, w_r, dij * os_, u * os_, iterations=sweeps, backend=backend)
    errors.append(
        calc_error(d_r, g_r, w_r, dij * os_, ref.image, u * os_, ref.n0, ref.m0).normalised
    )
    for it in range(iterations):
        upd = update_pixel_map(
            d_r,
            g_r,
            w_r,
            ref.image,
            u * os_,
            ref.n0,
            ref.m0,
            dij * os_,
            search_window=search_window,
            integrate=integrate,
            backend=backend,
        )
        shift = upd.shift / os_
        u = u + shift
        changes.append(float(xp.sqrt(xp.mean(shift[:, g_r] ** 2))))
        if refine_whitefield:
            w_r = update_whitefield(d_r, g_r, ref.image, u * os_, ref.n0, ref.m0, dij * os_, W=w_r)
        if refine_translations:
            ref = make_reference(
                d_r, g_r, w_r, dij * os_, u * os_, iterations=sweeps, backend=backend
            )
            tu = update_translations(
                d_r, g_r, w_r, ref.image, u * os_, ref.n0, ref.m0, dij * os_, backend=backend
            )
            step_d = tu.shift / os_
            step_d = step_d - step_d.mean(axis=0)
            dij = dij + step_d
        ref = make_reference(d_r, g_r, w_r, dij * os_, u * os_, iterations=sweeps, backend=backend)
        err = calc_error(d_r, g_r, w_r, dij * os_, ref.image, u * os_, ref.n0, ref.m0)
        errors.append(err.normalised)
        logger.info(
            "speckle iteration %d: error %.4g, map change %.3g px", it + 1, errors[-1], changes[-1]
        )
        steps.done(f"iteration {it + 1}")

    final = make_reference(d_r, g_r, w_r, dij, u, iterations=sweeps, backend=backend)
    err = calc_error(d_r, g_r, w_r, dij, final.image, u, final.n0, final.m0)
    steps.done("reference")
    ph = integrate_pixel_map(
        u,
        w_r * g_r,
        wavelength,
        distance,
        x_pixel_size,
        y_pixel_size,
        info["dss"],
        info["dfs"],
        remove=remove,
    )
    steps.done("phase")

    # Full-frame outputs.
    a_ss = float(to_numpy(u_nom[0, 1, 0] - u_nom[0, 0, 0])) if s1 - s0 > 1 else 1.0
    a_fs = float(to_numpy(u_nom[1, 0, 1] - u_nom[1, 0, 0])) if f1 - f0 > 1 else 1.0
    ii, jj = np.indices((m, n), dtype=float)
    full_map = np.stack([ii * a_ss, jj * a_fs])
    full_map[:, s0:s1, f0:f1] = to_numpy(u) + np.array([s0 * a_ss, f0 * a_fs])[:, None, None]
    phase = np.full((m, n), np.nan)
    phase[s0:s1, f0:f1] = to_numpy(ph.phase)
    angles = np.full((2, m, n), np.nan)
    angles[:, s0:s1, f0:f1] = to_numpy(ph.angles)
    emap = np.full((m, n), np.nan)
    emap[s0:s1, f0:f1] = to_numpy(err.pixel)
    white = np.array(to_numpy(W), dtype=float)
    white[s0:s1, f0:f1] = to_numpy(w_r)
    return SpeckleResult(
        pixel_map=full_map,
        dij_n=np.asarray(to_numpy(dij), dtype=float),
        reference=np.asarray(to_numpy(final.image), dtype=float),
        n0=float(final.n0 - s0 * a_ss),
        m0=float(final.m0 - f0 * a_fs),
        phase=phase,
        angles=angles,
        mask=np.asarray(to_numpy(good), dtype=bool),
        whitefield=white,
        roi=tuple(int(v) for v in roi_t),
        defocus=0.5 * (z_ss + z_fs),
        defocus_ss=z_ss,
        defocus_fs=z_fs,
        dss=float(info["dss"]),
        dfs=float(info["dfs"]),
        wavelength=float(wavelength),
        distance=float(distance),
        x_pixel_size=float(x_pixel_size),
        y_pixel_size=float(y_pixel_size),
        errors=tuple(float(e) for e in errors),
        map_changes=tuple(changes),
        error_map=emap,
        timings=dict(steps.timings),
        defocus_fit=fit,
    )
