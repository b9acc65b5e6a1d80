"""Iterative far-field ptychography: ePIE, rPIE and a batched least-squares variant.

Model: exit wave ``psi_j(r) = P(r - f_j) O(r + I_j)`` for scan position ``R_j = I_j + f_j``
(integer offset ``I_j`` of the probe window in the object, sub-pixel part ``f_j`` carried by the
probe), far field ``Psi_j = FFT2(psi_j)`` (orthonormal), measured intensity ``|Psi_j|^2``.
Every method replaces the far-field modulus by the measured one, ``Psi'_j = sqrt(I_j) Psi_j /
|Psi_j|``, and updates the object and the probe from ``d_j = IFFT2(Psi'_j) - psi_j``:

* ``"epie"`` (Maiden & Rodenburg 2009): positions one at a time in random order,
  ``O += alpha conj(P) d / max|P|^2``, ``P += beta conj(O) d / max|O|^2``;
* ``"rpie"`` (Maiden, Johnson & Li 2017): ``O += conj(P) d / ((1 - alpha)|P|^2 + alpha max|P|^2)``
  and likewise for the probe (alpha about 0.1-0.2 for the object);
* ``"lsq"``: mini-batches of positions vectorised in one FFT call; the object direction is the
  per-pixel least-squares solution ``sum_j conj(P_j) d_j / (sum_j |P_j|^2 + reg)`` aggregated
  with :func:`~stacklab.ptycho.rolled_object_aggregation`, the probe direction likewise, and the
  two step lengths solve the 2x2 least-squares problem ``min ||d - a P dO - b dP O||^2`` over the
  batch (a simplified LSQ-ML, Odstrcil et al. 2018).

Probe updates start after ``probe_update_start`` iterations; optional position refinement
(after ``position_update_start`` iterations) moves each position along the least-squares
solution of ``d ~ delta . (P grad O)``, clipped to ``max_position_step`` pixels per iteration.
Everything runs on NumPy or CuPy (the device of ``patterns``, or ``device=``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import asarray_on, get_xp, to_numpy
from ..backend import fft as fft_module
from ..errors import ShapeError
from .forward import (
    fourier_shift_probe,
    object_patches,
    rolled_object_aggregation,
    split_shifts,
)

__all__ = [
    "METHODS",
    "ReconstructionResult",
    "align_global_phase",
    "phase_rms_error",
    "reconstruct",
]

logger = logging.getLogger(__name__)

METHODS = ("epie", "rpie", "lsq")
_DEFAULT_ALPHA = {"epie": 1.0, "rpie": 0.15, "lsq": 0.05}
_DEFAULT_BETA = {"epie": 1.0, "rpie": 0.9, "lsq": 0.05}


@dataclass(frozen=True, eq=False)
class ReconstructionResult:
    """Outcome of :func:`reconstruct`.

    Attributes
    ----------
    object : ndarray of shape (ny, nx), complex64
        Reconstructed object transmission (NumPy).
    probe : ndarray of shape (py, px), complex64
        Reconstructed probe (NumPy), same scale as the data.
    positions : ndarray of shape (n, 2), float64
        Final (refined) positions, object pixels.
    errors : ndarray of shape (iterations,), float64
        Fourier-amplitude error per iteration, ``sum (|Psi| - sqrt(I))^2 / sum I`` over all
        positions and valid pixels, accumulated during the sweep.
    object_errors : ndarray of shape (iterations,) or None
        Phase RMS error (rad) against ``true_object`` after global phase alignment, over
        ``region``, per iteration; None without ``true_object``.
    method : str
        ``"epie"``, ``"rpie"`` or ``"lsq"``.
    seconds : float
        Wall time of the iterations, s.
    params : dict
        Parameters used (alpha, beta, batch_size, ...).
    """

    object: np.ndarray
    probe: np.ndarray
    positions: np.ndarray
    errors: np.ndarray
    object_errors: np.ndarray | None
    method: str
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def iterations(self) -> int:
        """Number of iterations run."""
        return len(self.errors)

    def to_dict(self) -> dict[str, Any]:
        """Arrays and scalars as a flat dict (for HDF5 output)."""
        out: dict[str, Any] = {
            "object": self.object,
            "probe": self.probe,
            "positions": self.positions,
            "errors": self.errors,
        }
        if self.object_errors is not None:
            out["object_errors"] = self.object_errors
        return out


def align_global_phase(obj: Any, reference: Any, region: Any = None) -> Any:
    """Multiply ``obj`` by the constant phase factor that best matches ``reference``.

    ``obj * exp(-i angle(sum_region obj conj(reference)))``.

    Parameters
    ----------
    obj, reference : ndarray of shape (ny, nx), complex
        Object estimate and reference.
    region : ndarray of bool, shape (ny, nx), optional
        Pixels to use (default all).

    Returns
    -------
    ndarray of shape (ny, nx)
        ``obj`` with its global phase aligned.
    """
    xp = get_xp(obj, reference)
    prod = obj * xp.conj(reference)
    s = prod[region].sum() if region is not None else prod.sum()
    return obj * xp.exp(-1j * xp.angle(s)).astype(obj.dtype)


def phase_rms_error(obj: Any, reference: Any, region: Any = None) -> float:
    """RMS phase difference (rad) after global phase alignment.

    Parameters
    ----------
    obj, reference : ndarray of shape (ny, nx), complex
        Estimate and truth.
    region : ndarray of bool, shape (ny, nx), optional
        Pixels to evaluate (e.g. the illuminated area).

    Returns
    -------
    float
        ``sqrt(mean(angle(aligned * conj(reference))^2))`` over ``region``.
    """
    xp = get_xp(obj, reference)
    aligned = align_global_phase(obj, reference, region)
    diff = xp.angle(aligned * xp.conj(reference))
    if region is not None:
        diff = diff[region]
    return float(xp.sqrt(xp.mean(diff**2)))


def _progress_bar(total: int, progress: bool | None, desc: str):
    import sys

    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else bool(progress)
    return tqdm(total=total, disable=not show, desc=desc, unit="it", leave=False)


def reconstruct(
    patterns: Any,
    positions: Any,
    probe: Any,
    *,
    method: str = "lsq",
    iterations: int = 100,
    object_shape: tuple[int, int] | None = None,
    object_init: Any = None,
    alpha: float | None = None,
    beta: float | None = None,
    step: float = 1.0,
    batch_size: int | None = None,
    probe_update_start: int = 2,
    position_refinement: bool = False,
    position_update_start: int = 10,
    max_position_step: float = 0.5,
    recentre_probe: bool = True,
    layout: str = "centered",
    mask: Any = None,
    true_object: Any = None,
    region: Any = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> ReconstructionResult:
    """Reconstruct object and probe from far-field diffraction patterns.

    Parameters
    ----------
    patterns : ndarray of shape (n, py, px) or (scan_y, scan_x, py, px)
        Measured intensities on the forward-model grid (e.g. after
        :func:`~stacklab.ptycho.apply_matrix`), non-negative, in counts or any consistent unit.
    positions : ndarray of shape (n, 2)
        Probe window offsets (y, x) in object pixels (see :mod:`stacklab.ptycho.forward`), in
        the order of the flattened patterns.
    probe : ndarray of shape (py, px), complex
        Initial probe, scaled to the data (``sum |P|^2`` about the counts of a pattern).
    method : {"lsq", "rpie", "epie"}
        Update rule (see the module docstring). ``"lsq"`` (default) fits its step lengths and is
        robust to Poisson noise; ``"rpie"``/``"epie"`` converge further on clean data and need
        ``step`` about 0.3 on noisy data.
    iterations : int
        Number of passes over all positions (>= 1).
    object_shape : (int, int), optional
        Object size; default just large enough for all positions.
    object_init : ndarray of shape (ny, nx), optional
        Initial object; default uniform transmission 1.
    alpha, beta : float, optional
        Object and probe step/regularisation parameters; defaults: ePIE 1 and 1; rPIE 0.15 and
        0.9; lsq 0.05 and 0.05 (relative Tikhonov weights of the least-squares directions).
    step : float
        Multiplier of the ePIE/rPIE object and probe updates (0 < step <= 1; about 0.3 averages
        Poisson noise over several overlapping positions). Ignored by ``"lsq"``, whose step
        lengths are fitted.
    batch_size : int, optional
        Positions per mini-batch for ``"lsq"``; default ``max(1, n // 8)``.
    probe_update_start : int
        First iteration (0-based) in which the probe is updated.
    position_refinement : bool
        Refine the positions.
    position_update_start : int
        First iteration in which positions are refined.
    max_position_step : float
        Largest position change per iteration, pixels.
    recentre_probe : bool
        After each iteration with a probe update, shift probe and object together so that the
        probe's intensity centroid stays where it started. Far-field data cannot tell such a
        joint translation (nor, with position refinement, a common shift of all positions,
        which is always removed) from the truth, so without it the pair slowly drifts.
    layout : {"centered", "native"}
        Zero frequency of ``patterns`` at ``shape // 2`` (detector layout) or at index 0.
    mask : ndarray of bool, shape (py, px), optional
        Valid detector pixels (same layout as ``patterns``); invalid ones are left free (e.g.
        :func:`~stacklab.ptycho.validity_mask`).
    true_object : ndarray of shape (ny, nx), optional
        Ground truth; the phase RMS error is then recorded per iteration.
    region : ndarray of bool, shape (ny, nx), optional
        Where to evaluate that error; default the area where the summed intensity of the
        *initial* probe over all positions exceeds half of its maximum.
    seed : int
        Seed of the random position order.
    device : {"cpu", "gpu", "auto"}, optional
        Where to compute; default the device of ``patterns``.
    progress : bool, optional
        Show a progress bar (default: when stderr is a terminal).
    callback : callable, optional
        ``callback(iteration, error)`` after each iteration.

    Returns
    -------
    ReconstructionResult

    Raises
    ------
    ValueError
        For an unknown method, bad parameters, NaN/inf positions or negative intensities.
    ShapeError
        For inconsistent shapes (probe vs patterns, positions vs patterns, probe larger than the
        object).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if int(iterations) != iterations or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    if layout not in ("centered", "native"):
        raise ValueError(f"layout must be 'centered' or 'native', got {layout!r}")
    dev = device if device is not None else ("gpu" if get_xp(patterns) is not np else "cpu")
    pats = asarray_on(patterns, dev)
    xp = get_xp(pats)
    if pats.ndim == 4:
        pats = pats.reshape(-1, *pats.shape[-2:])
    if pats.ndim != 3 or pats.size == 0:
        raise ShapeError(
            f"patterns must have shape (n, py, px) or (sy, sx, py, px), got {tuple(pats.shape)}"
        )
    n, py, px = pats.shape
    pos = np.asarray(to_numpy(positions), dtype=np.float64)
    if pos.shape != (n, 2):
        raise ShapeError(f"positions must have shape ({n}, 2) to match patterns, got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions contains NaN or infinite values")
    probe_x = asarray_on(probe, dev)
    if probe_x.shape != (py, px):
        raise ShapeError(f"probe must have shape {(py, px)} to match patterns, got {probe_x.shape}")
    if not bool(xp.all(xp.isfinite(probe_x))):
        raise ValueError("probe contains NaN or infinite values")
    if bool(xp.any(pats < 0)):
        raise ValueError("patterns contains negative intensities")
    if not bool(xp.all(xp.isfinite(pats))):
        raise ValueError("patterns contains NaN or infinite values")

    int_pos, _ = split_shifts(pos)
    if object_init is not None:
        obj = asarray_on(object_init, dev).astype(xp.complex64, copy=True)
    else:
        if object_shape is None:
            object_shape = (int(int_pos[:, 0].max()) + py + 1, int(int_pos[:, 1].max()) + px + 1)
        obj = xp.ones(tuple(int(v) for v in object_shape), dtype=xp.complex64)
    if obj.ndim != 2 or obj.shape[0] < py or obj.shape[1] < px:
        raise ShapeError(f"probe {(py, px)} is larger than the object {tuple(obj.shape)}")

    amp = xp.sqrt(pats.astype(xp.float32))
    if layout == "centered":
        amp = xp.fft.ifftshift(amp, axes=(-2, -1))
    valid = None
    if mask is not None:
        m = asarray_on(mask, dev).astype(bool)
        if m.shape != (py, px):
            raise ShapeError(f"mask must have shape {(py, px)}, got {tuple(m.shape)}")
        valid = xp.fft.ifftshift(m) if layout == "centered" else m
    total = float(xp.sum(amp**2 if valid is None else (amp**2) * valid))
    total = total if total > 0 else 1.0

    truth = None if true_object is None else asarray_on(true_object, dev)
    if truth is not None and truth.shape != obj.shape:
        raise ShapeError(f"true_object must have shape {tuple(obj.shape)}, got {truth.shape}")
    reg = None
    if truth is not None:
        if region is None:
            inten = xp.broadcast_to(xp.abs(probe_x) ** 2, (n, py, px))
            lit = rolled_object_aggregation(xp.zeros(obj.shape), inten, xp.asarray(int_pos))
            reg = lit >= 0.5 * lit.max()
        else:
            reg = asarray_on(region, dev).astype(bool)

    a = _DEFAULT_ALPHA[method] if alpha is None else float(alpha)
    b = _DEFAULT_BETA[method] if beta is None else float(beta)
    if not 0 < float(step) <= 2:
        raise ValueError(f"step must be in (0, 2], got {step!r}")
    bs = max(1, n // 8) if batch_size is None else int(batch_size)
    if bs < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    state = _State(
        xp=xp,
        fft=fft_module(xp),
        obj=obj,
        probe=probe_x.astype(xp.complex64),
        pos=pos.copy(),
        amp=amp,
        valid=valid,
    )
    rng = np.random.default_rng(seed)
    centroid = pos.mean(axis=0)
    probe_centre = _intensity_centroid(xp, state.probe)
    errors = np.empty(int(iterations))
    obj_errors = np.empty(int(iterations)) if truth is not None else None
    start = time.perf_counter()
    with _progress_bar(int(iterations), progress, f"ptycho {method}") as bar:
        for it in range(int(iterations)):
            update_probe = it >= probe_update_start
            refine = position_refinement and it >= position_update_start
            if method == "lsq":
                err = _lsq_iteration(state, rng, bs, a, b, update_probe, refine, max_position_step)
            else:
                err = _pie_iteration(
                    state,
                    rng,
                    method,
                    a,
                    b,
                    float(step),
                    update_probe,
                    refine,
                    max_position_step,
                )
            if refine:
                # a common translation of all positions is unobservable: pin the centroid
                state.pos -= state.pos.mean(axis=0) - centroid
            if update_probe and recentre_probe:
                _recentre(state, probe_centre)
            errors[it] = err / total
            if obj_errors is not None:
                obj_errors[it] = phase_rms_error(state.obj, truth, reg)
            bar.update(1)
            bar.set_postfix(error=f"{errors[it]:.3g}")
            if callback is not None:
                callback(it, float(errors[it]))
            if not math.isfinite(errors[it]):
                raise FloatingPointError(
                    f"reconstruction diverged at iteration {it} (error {errors[it]}); "
                    "lower alpha/beta or check the probe scale"
                )
    seconds = time.perf_counter() - start
    logger.info(
        "%s: %d iterations in %.2f s, final error %.3g%s",
        method,
        iterations,
        seconds,
        errors[-1],
        "" if obj_errors is None else f", phase RMS {obj_errors[-1]:.3g} rad",
    )
    return ReconstructionResult(
        object=to_numpy(state.obj).astype(np.complex64),
        probe=to_numpy(state.probe).astype(np.complex64),
        positions=state.pos.copy(),
        errors=errors,
        object_errors=obj_errors,
        method=method,
        seconds=seconds,
        params=dict(
            alpha=a,
            beta=b,
            step=float(step),
            batch_size=bs if method == "lsq" else None,
            probe_update_start=probe_update_start,
            position_refinement=position_refinement,
            recentre_probe=recentre_probe,
            position_update_start=position_update_start,
            seed=seed,
        ),
    )


@dataclass(eq=False)
class _State:
    xp: Any
    fft: Any
    obj: Any
    probe: Any
    pos: np.ndarray
    amp: Any
    valid: Any


def _intensity_centroid(xp: Any, probe: Any) -> np.ndarray:
    """Centroid (y, x) of |probe|^2, pixels."""
    inten = xp.abs(probe) ** 2
    total = float(xp.sum(inten))
    yy = xp.arange(probe.shape[0], dtype=xp.float64)
    xx = xp.arange(probe.shape[1], dtype=xp.float64)
    cy = float(xp.sum(inten.sum(axis=1) * yy)) / total
    cx = float(xp.sum(inten.sum(axis=0) * xx)) / total
    return np.array([cy, cx])


def _recentre(state: _State, target: np.ndarray, tol: float = 1e-3) -> None:
    """Shift probe and object together so the probe centroid returns to ``target``."""
    from ..core.shifts import fourier_shift

    xp = state.xp
    delta = target - _intensity_centroid(xp, state.probe)
    if not np.all(np.isfinite(delta)) or np.max(np.abs(delta)) < tol:
        return
    shift = xp.asarray(delta, dtype=xp.float64)
    state.probe = fourier_shift(state.probe, shift, real=False).astype(xp.complex64)
    state.obj = fourier_shift(state.obj, shift, real=False).astype(xp.complex64)


def _split(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ints = np.floor(pos).astype(np.int64)
    return ints, pos - ints


def _probes_for(state: _State, frac: np.ndarray) -> Any:
    """Probe copies shifted by the sub-pixel parts ``frac`` (n, 2); a view when all are 0."""
    xp = state.xp
    if not np.any(frac):
        return state.probe[None]
    return fourier_shift_probe(state.probe, xp.asarray(frac))


def _modulus(state: _State, psi: Any, amp: Any) -> tuple[Any, float]:
    """Return (corrected exit waves - psi, summed squared amplitude error)."""
    xp = state.xp
    f = state.fft
    spec = f.fft2(psi, axes=(-2, -1), norm="ortho")
    mag = xp.abs(spec)
    diff = mag - amp
    if state.valid is not None:
        err = float(xp.sum((diff**2) * state.valid))
        factor = xp.where(state.valid, amp / xp.maximum(mag, 1e-12), 1.0)
    else:
        err = float(xp.sum(diff**2))
        factor = amp / xp.maximum(mag, 1e-12)
    corrected = f.ifft2(spec * factor.astype(xp.float32), axes=(-2, -1), norm="ortho")
    return corrected - psi, err


def _gradients(xp: Any, patch: Any) -> tuple[Any, Any]:
    """Central-difference gradients of complex patches along the last two axes."""
    gy = (xp.roll(patch, -1, axis=-2) - xp.roll(patch, 1, axis=-2)) * 0.5
    gx = (xp.roll(patch, -1, axis=-1) - xp.roll(patch, 1, axis=-1)) * 0.5
    return gy, gx


def _position_step(xp: Any, probes: Any, patches: Any, d: Any, max_step: float) -> np.ndarray:
    """Least-squares position correction (n, 2) from exit-wave residuals ``d``."""
    gy, gx = _gradients(xp, patches)
    ay = probes * gy
    ax = probes * gx
    # interior only: the periodic central difference is wrong on the window border
    sl = (slice(None), slice(1, -1), slice(1, -1))
    ay, ax, dd = ay[sl], ax[sl], d[sl]
    num_y = xp.sum(xp.real(xp.conj(ay) * dd), axis=(-2, -1))
    num_x = xp.sum(xp.real(xp.conj(ax) * dd), axis=(-2, -1))
    den_y = xp.sum(xp.abs(ay) ** 2, axis=(-2, -1))
    den_x = xp.sum(xp.abs(ax) ** 2, axis=(-2, -1))
    step = xp.stack([num_y / xp.maximum(den_y, 1e-20), num_x / xp.maximum(den_x, 1e-20)], -1)
    return np.clip(to_numpy(step).astype(np.float64), -max_step, max_step)


def _pie_iteration(
    state: _State,
    rng: np.random.Generator,
    method: str,
    alpha: float,
    beta: float,
    step: float,
    update_probe: bool,
    refine: bool,
    max_step: float,
) -> float:
    """One sequential ePIE/rPIE sweep over all positions in random order."""
    xp = state.xp
    ny, nx = state.obj.shape
    py, px = state.probe.shape
    err_total = 0.0
    for j in rng.permutation(len(state.pos)):
        ints, frac = _split(state.pos[j : j + 1])
        iy, ix = int(ints[0, 0]) % ny, int(ints[0, 1]) % nx
        inside = iy + py <= ny and ix + px <= nx
        if inside:
            patch = state.obj[iy : iy + py, ix : ix + px]
        else:
            patch = object_patches(state.obj, ints, (py, px))[0]
        shifted = bool(np.any(frac))
        probe = _probes_for(state, frac)[0]
        psi = probe * patch
        d, err = _modulus(state, psi, state.amp[j])
        err_total += err
        p2 = xp.abs(probe) ** 2
        if method == "epie":
            obj_upd = (step * alpha / xp.max(p2)) * xp.conj(probe) * d
        else:
            obj_upd = step * xp.conj(probe) * d / ((1 - alpha) * p2 + alpha * xp.max(p2))
        if update_probe:
            o2 = xp.abs(patch) ** 2
            if method == "epie":
                probe_upd = (step * beta / xp.max(o2)) * xp.conj(patch) * d
            else:
                probe_upd = step * xp.conj(patch) * d / ((1 - beta) * o2 + beta * xp.max(o2))
            if shifted:
                probe_upd = fourier_shift_probe(probe_upd, xp.asarray(-frac))[0]
        if refine:
            state.pos[j] += _position_step(xp, probe[None], patch[None], d[None], max_step)[0]
        new_patch = (patch + obj_upd).astype(xp.complex64)
        if inside:
            state.obj[iy : iy + py, ix : ix + px] = new_patch
        else:
            delta = (new_patch - patch)[None]
            state.obj = rolled_object_aggregation(state.obj, delta, ints)
        if update_probe:
            state.probe = (state.probe + probe_upd).astype(xp.complex64)
    return err_total


def _lsq_iteration(
    state: _State,
    rng: np.random.Generator,
    batch_size: int,
    alpha: float,
    beta: float,
    update_probe: bool,
    refine: bool,
    max_step: float,
) -> float:
    """One sweep of mini-batch least-squares updates (vectorised over each batch)."""
    xp = state.xp
    py, px = state.probe.shape
    n = len(state.pos)
    err_total = 0.0
    order = rng.permutation(n)
    for batch in np.array_split(order, max(1, math.ceil(n / batch_size))):
        ints, frac = _split(state.pos[batch])
        ints_x = xp.asarray(ints)
        shifted = bool(np.any(frac))
        probes = _probes_for(state, frac)  # (nb or 1, py, px)
        patches = object_patches(state.obj, ints_x, (py, px))
        psi = probes * patches
        d, err = _modulus(state, psi, state.amp[xp.asarray(batch)])
        err_total += err
        nb = len(batch)
        probes_b = xp.broadcast_to(probes, (nb, py, px))
        # object direction: per-pixel least squares over the batch
        zeros = xp.zeros(state.obj.shape, dtype=xp.complex64)
        num_o = rolled_object_aggregation(zeros, xp.conj(probes_b) * d, ints_x)
        den_o = rolled_object_aggregation(
            xp.zeros(state.obj.shape, dtype=xp.float32), xp.abs(probes_b) ** 2, ints_x
        )
        d_obj = num_o / (den_o + alpha * xp.max(den_o))
        dir_o = probes * object_patches(d_obj, ints_x, (py, px))
        # probe direction
        if update_probe:
            upd = xp.conj(patches) * d
            if shifted:
                upd = _shift_stack(xp, upd, -frac)
            o2 = xp.abs(patches) ** 2
            den_p = xp.sum(o2, axis=0)
            d_probe = xp.sum(upd, axis=0) / (den_p + beta * xp.max(den_p))
            dp = _probes_like(state, d_probe, frac)
            dir_p = dp * patches
            a_o, a_p = _step_lengths(xp, d, dir_o, dir_p)
        else:
            a_o, _ = _step_lengths(xp, d, dir_o, None)
            a_p = 0.0
        if refine:
            step = _position_step(xp, probes_b, patches, d, max_step)
            state.pos[batch] += step
        state.obj = (state.obj + a_o * d_obj).astype(xp.complex64)
        if update_probe:
            state.probe = (state.probe + a_p * d_probe).astype(xp.complex64)
    return err_total


def _shift_stack(xp: Any, stack: Any, shifts: np.ndarray) -> Any:
    """Shift each frame of ``stack`` (n, py, px) by its own ``shifts`` row (periodic)."""
    from ..core.shifts import fourier_shift

    return fourier_shift(stack, xp.asarray(shifts, dtype=xp.float64), real=False)


def _probes_like(state: _State, probe: Any, frac: np.ndarray) -> Any:
    if not np.any(frac):
        return probe[None]
    return fourier_shift_probe(probe, state.xp.asarray(frac))


def _step_lengths(xp: Any, d: Any, dir_o: Any, dir_p: Any) -> tuple[float, float]:
    """Real step lengths minimising ||d - a dir_o - b dir_p||^2 (clipped to [0, 2])."""
    aoo = float(xp.sum(xp.abs(dir_o) ** 2))
    bo = float(xp.sum(xp.real(xp.conj(dir_o) * d)))
    if dir_p is None:
        return (float(np.clip(bo / aoo, 0.0, 2.0)) if aoo > 0 else 0.0), 0.0
    app = float(xp.sum(xp.abs(dir_p) ** 2))
    aop = float(xp.sum(xp.real(xp.conj(dir_o) * dir_p)))
    bp = float(xp.sum(xp.real(xp.conj(dir_p) * d)))
    mat = np.array([[aoo, aop], [aop, app]])
    rhs = np.array([bo, bp])
    mat += np.eye(2) * 1e-9 * max(np.trace(mat), 1e-30)
    try:
        sol = np.linalg.solve(mat, rhs)
    except np.linalg.LinAlgError:
        sol = np.zeros(2)
    sol = np.clip(np.nan_to_num(sol), 0.0, 2.0)
    return float(sol[0]), float(sol[1])
