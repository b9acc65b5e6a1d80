"""Demo section "Ptychography": reconstruct a simulated phase object with known ground truth,
from forward-model patterns and from the same kind of scan as a pixelated detector records it
(scan rotation, flip, off-centre beam, other pixel size)."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..demo import DemoSection, Metric, at_most, new_figure, register
from .prepare import reconstruct_4dstem
from .reconstruct import align_global_phase, phase_rms_error, reconstruct
from .simulate import record_4dstem, simulate_dataset

__all__ = ["run_demo"]

logger = logging.getLogger(__name__)


@register("ptycho", title="Ptychography", order=40)
def run_demo(*, quick: bool, seed: int) -> DemoSection:
    """Simulate a noisy 4D-STEM ptychography scan and reconstruct it (batched least squares).

    Parameters
    ----------
    quick : bool
        A 6x6 scan with 32x32 patterns and 25 iterations instead of 10x10, 64x64 and 100.
    seed : int
        Seed of the simulation.

    Returns
    -------
    DemoSection
        Phase RMS error against the truth (after global phase alignment) with its target,
        final Fourier error, time per iteration; figures of the phase and the error curves.
    """
    if quick:
        kw = dict(scan_shape=(6, 6), probe_shape=(32, 32), step=4.0, aperture_radius=6.0)
        iterations, counts = 25, None
    else:
        kw = dict(scan_shape=(10, 10), probe_shape=(64, 64), step=6.0)
        iterations, counts = 100, 1e4
    ds = simulate_dataset(counts=counts, seed=seed, **kw)
    region = ds.illuminated(0.5)
    start = time.perf_counter()
    res = reconstruct(
        ds.patterns,
        ds.positions,
        ds.probe_guess,
        method="lsq",
        iterations=iterations,
        object_shape=ds.object.shape,
        true_object=ds.object,
        region=region,
        seed=seed,
        progress=False,
    )
    seconds = res_seconds = time.perf_counter() - start
    limit = 0.05 if counts is None else 0.1
    rms = float(res.object_errors[-1])
    det = _detector_case(seed, 50 if quick else 100)
    seconds += det["seconds"]
    metrics = (
        at_most("object phase RMS error", rms, limit, unit="rad"),
        Metric(
            "initial phase RMS error (flat object)", float(_flat_error(ds.object, region)), "rad"
        ),
        Metric("final Fourier error", float(res.errors[-1])),
        Metric("time per iteration", res_seconds / iterations * 1e3, "ms"),
        at_most("detector data: beam centre error", det["centre_error"], 0.1, unit="px"),
        at_most("detector data: object phase RMS error", det["rms"], 0.15, unit="rad"),
    )
    figures = (
        ("reconstructed vs true phase", _phase_figure(res.object, ds.object, region)),
        ("error per iteration", _error_figure(res.errors, res.object_errors)),
    )
    noise = "noise-free" if counts is None else f"Poisson noise, {counts:g} counts per pattern"
    text = (
        f"A {ds.scan_shape[0]}x{ds.scan_shape[1]} raster scan (step {kw['step']:g} px, "
        "jittered) of "
        f"a random phase object (0 to {ds.params['phase_max']:g} rad) with a defocused "
        f"convergent probe, far-field patterns {ds.patterns.shape[-2]}x{ds.patterns.shape[-1]}, "
        f"{noise}. The reconstruction starts from a uniform object and a probe with a 20 % "
        f"defocus error and refines both with {iterations} iterations of mini-batch least "
        "squares.\n\nThe phase error is measured over the well-illuminated area after removing "
        "the global phase, which far-field data cannot determine.\n\n"
        "Detector data: an 8x8 scan (32x32 window, defocused probe) recorded on a 64x88 "
        "detector with another angular pixel size, a 17 degree scan rotation, a flipped y axis "
        "and the beam centre off the detector centre, Poisson noise at 1e4 counts per pattern. "
        "reconstruct_4dstem finds the beam centre on the mean pattern (error "
        f"{det['centre_error']:.3f} px), maps the detector onto the forward model's Fourier grid "
        "(area-averaging sparse matrix), builds the positions and an aperture probe with a 20 % "
        f"defocus error, and runs {det['iterations']} rPIE iterations: phase RMS error "
        f"{det['rms']:.3f} rad (flat object {det['flat']:.3f} rad)."
    )
    return DemoSection(
        title="Ptychography", metrics=metrics, seconds=seconds, figures=figures, text=text
    )


def _detector_case(seed: int, iterations: int) -> dict[str, float]:
    """Reconstruct a small scan from simulated detector data; errors against the truth."""
    n = 32
    ds = simulate_dataset(
        scan_shape=(8, 8),
        probe_shape=(n, n),
        step=3.0,
        aperture_radius=6.0,
        defocus_phase=3.0,
        jitter=0.0,
        seed=seed + 3,
    )
    rec = record_4dstem(ds, counts=1e4, seed=seed + 5)
    oy, ox = ds.positions.min(axis=0).astype(int)
    span = ds.positions.max(axis=0) - ds.positions.min(axis=0)
    shape = (int(span[0]) + n + 1, int(span[1]) + n + 1)
    obj = ds.object[oy : oy + shape[0], ox : ox + shape[1]]
    region = ds.illuminated(0.5)[oy : oy + shape[0], ox : ox + shape[1]]
    start = time.perf_counter()
    res = reconstruct_4dstem(
        rec.cube,
        **rec.acquisition,
        reconstruct_shape=(n, n),
        pixel_size_m=rec.pixel_size_m,
        defocus_m=1.2 * rec.defocus_m,
        iterations=iterations,
        object_shape=obj.shape,
        true_object=obj,
        region=region,
        progress=False,
    )
    seconds = time.perf_counter() - start
    centre = np.asarray(res.params["beam_centre"], dtype=np.float64)
    return {
        "rms": float(res.object_errors[-1]),
        "flat": phase_rms_error(np.ones_like(obj), obj, region),
        "centre_error": float(np.hypot(*(centre - rec.beam_centre))),
        "iterations": iterations,
        "seconds": seconds,
    }


def _flat_error(truth: np.ndarray, region: np.ndarray) -> float:
    from .reconstruct import phase_rms_error

    return phase_rms_error(np.ones_like(truth), truth, region)


def _phase_figure(obj: np.ndarray, truth: np.ndarray, region: np.ndarray):
    fig = new_figure(figsize=(9.0, 3.2))
    aligned = align_global_phase(obj, truth, region)
    rows, cols = np.nonzero(region)
    sl = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    true_phase = np.angle(truth)[sl]
    rec_phase = np.angle(aligned)[sl]
    vmin, vmax = float(true_phase.min()), float(true_phase.max())
    axes = fig.subplots(1, 3)
    for ax, img, title in (
        (axes[0], true_phase, "true phase"),
        (axes[1], rec_phase, "reconstructed phase"),
    ):
        im = ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax)
        ax.set_title(title)
        ax.set_axis_off()
    fig.colorbar(im, ax=axes[:2], label="rad", shrink=0.8)
    diff = np.where(region[sl], np.angle(aligned[sl] * np.conj(truth[sl])), np.nan)
    im2 = axes[2].imshow(diff, cmap="RdBu_r", vmin=-0.3, vmax=0.3)
    axes[2].set_title("difference")
    axes[2].set_axis_off()
    fig.colorbar(im2, ax=axes[2], label="rad", shrink=0.8)
    return fig


def _error_figure(errors: np.ndarray, object_errors: np.ndarray | None):
    fig = new_figure(figsize=(6.4, 3.2))
    ax = fig.subplots()
    it = np.arange(1, len(errors) + 1)
    ax.semilogy(it, errors, label="Fourier error")
    ax.set_xlabel("iteration")
    ax.set_ylabel("Fourier error")
    if object_errors is not None:
        ax2 = ax.twinx()
        ax2.plot(it, object_errors, color="C1", label="phase RMS error")
        ax2.set_ylabel("phase RMS error (rad)")
        ax2.legend(loc="upper right")
    ax.legend(loc="upper center")
    return fig
