"""Demo section "Ptychography": reconstruct a simulated phase object with known ground truth."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..demo import DemoSection, Metric, at_most, new_figure, register
from .reconstruct import align_global_phase, reconstruct
from .simulate import simulate_dataset

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
    seconds = time.perf_counter() - start
    limit = 0.05 if counts is None else 0.1
    rms = float(res.object_errors[-1])
    metrics = (
        at_most("object phase RMS error", rms, limit, unit="rad"),
        Metric(
            "initial phase RMS error (flat object)", float(_flat_error(ds.object, region)), "rad"
        ),
        Metric("final Fourier error", float(res.errors[-1])),
        Metric("time per iteration", seconds / iterations * 1e3, "ms"),
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
        "the global phase, which far-field data cannot determine."
    )
    return DemoSection(
        title="Ptychography", metrics=metrics, seconds=seconds, figures=figures, text=text
    )


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
