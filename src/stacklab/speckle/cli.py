"""``stacklab speckle``: run the speckle-tracking pipeline on a CXI file, or simulate one.

Commands::

    stacklab speckle run scan.cxi [--defocus 0.4mm] [--iterations 2] [--report report.html]
    stacklab speckle simulate -o scan.cxi [--shape 128x128] [--grid 7x7] [--defocus 0.4mm]

``run`` writes its results under ``/speckle_tracking`` of the CXI file (or of ``--output``) in one
atomic rewrite, and an HTML report (phase, pixel map, reference image, error per iteration);
nothing is written when the run fails. Lengths accept a unit: ``0.4mm``, ``400um`` (or ``µm``),
``55e-6m``; a bare number is in metres.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import click

from ..cli.options import (
    EXISTING_FILE,
    NEW_FILE,
    LengthType,
    output_option,
    progress_option,
    seed_option,
)

__all__ = ["parse_metres", "speckle"]

logger = logging.getLogger(__name__)

#: Option type of lengths in metres (a bare number is in metres).
METRES = LengthType("m", "0.4mm, 400um or 4e-4 (metres)")


def parse_metres(text: str | float, name: str = "length") -> float:
    """Parse ``"0.4mm"``, ``"400um"``, ``"55e-6 m"`` or a bare number (metres) into metres.

    Parameters
    ----------
    text : str or float
        Number with an optional unit (m, mm, um/µm, nm).
    name : str
        Option name for the error message.

    Returns
    -------
    float
        The length in metres.

    Raises
    ------
    click.BadParameter
        For an unreadable value or unknown unit.
    """
    return METRES.parse(text, name)


def _pair(text: str, name: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not AxB (two integers)", param_hint=name) from None
    if a < 1 or b < 1:
        raise click.BadParameter(f"{text!r} must be positive", param_hint=name)
    return a, b


def _parse_roi(text: str | None) -> Any:
    if text is None or text.lower() == "auto":
        return "auto"
    if text.lower() in ("full", "none"):
        return None
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 4:
        raise click.BadParameter(
            f"{text!r} must be 'auto', 'full' or ss0,ss1,fs0,fs1", param_hint="--roi"
        )
    return vals


@click.group("speckle")
def speckle() -> None:
    """X-ray near-field speckle tracking: lens phase and pixel map from a CXI scan."""


@speckle.command("run")
@click.argument("scan", type=EXISTING_FILE)
@click.option(
    "--defocus", type=METRES, default=None, help="Focus-to-sample distance (default: fit)."
)
@click.option(
    "--dz", type=METRES, default=0.0, show_default=True, help="Astigmatism with --defocus."
)
@click.option(
    "--defocus-method",
    type=click.Choice(["registration", "thon"]),
    default="registration",
    show_default=True,
    help="How to fit the defocus when not given.",
)
@click.option("--iterations", type=int, default=2, show_default=True, help="Refinement rounds.")
@click.option("--roi", default="auto", show_default=True, help="auto, full or ss0,ss1,fs0,fs1.")
@click.option("--refine-translations", is_flag=True, help="Also refine the translations.")
@output_option("Write /speckle_tracking here instead of into SCAN.", required=False)
@click.option(
    "--report",
    type=NEW_FILE,
    default=None,
    help="HTML report (default: SCAN with suffix _speckle.html).",
)
@click.option("--no-report", is_flag=True, help="Write no HTML report.")
@click.option("--no-write", is_flag=True, help="Do not write results into a CXI file.")
@progress_option()
def run_command(
    scan,
    defocus,
    dz,
    defocus_method,
    iterations,
    roi,
    refine_translations,
    output,
    report,
    no_report,
    no_write,
    progress,
) -> None:
    """Reconstruct the lens phase, pixel map and reference image of the CXI scan SCAN."""
    from .cxi import read_cxi, write_results
    from .pipeline import run

    roi_value = _parse_roi(roi)
    if iterations < 0:
        raise click.BadParameter("must be >= 0", param_hint="--iterations")
    data = read_cxi(scan)
    click.echo(
        f"{scan}: {data.data.shape[0]} frames of {data.data.shape[1]} x {data.data.shape[2]} "
        f"pixels, z = {data.distance:g} m, wavelength = {data.wavelength:.4g} m"
    )
    start = time.perf_counter()
    res = run(
        data.data,
        data.translations,
        data.basis,
        data.x_pixel_size,
        data.y_pixel_size,
        data.distance,
        data.wavelength,
        mask=data.mask,
        roi=roi_value,
        defocus=defocus,
        dz=dz,
        defocus_method=defocus_method,
        iterations=iterations,
        refine_translations=refine_translations,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    if not no_write:
        target = output if output is not None else scan
        write_results(target, res)
        click.echo(f"results -> {target}:/speckle_tracking")
    if not no_report:
        from .demo import result_section

        path = report if report is not None else scan.with_name(scan.stem + "_speckle.html")
        from ..report import write_report

        write_report(
            [result_section(res, seconds=seconds, name=scan.name)],
            path,
            title=f"stacklab speckle: {scan.name}",
        )
        click.echo(f"report -> {path}")
    errs = ", ".join(f"{e:.4g}" for e in res.errors)
    fin = res.phase[~(res.phase != res.phase)]
    click.echo(
        f"defocus {res.defocus:.6g} m (ss {res.defocus_ss:.6g}, fs {res.defocus_fs:.6g}), "
        f"roi {list(res.roi)}, {res.iterations} iterations, error per iteration [{errs}], "
        f"phase RMS {float((fin - fin.mean()).std()) if fin.size else float('nan'):.4g} rad, "
        f"{seconds:.2f} s"
    )


@speckle.command("simulate")
@output_option("CXI file to write.")
@click.option("--shape", default="128x128", show_default=True, help="Detector MxL (ss x fs).")
@click.option("--grid", default="7x7", show_default=True, help="Scan positions (ss x fs).")
@click.option("--step", type=float, default=3.0, show_default=True, help="Scan step, object px.")
@click.option("--defocus", type=METRES, default="0.4mm", show_default=True, help="Focus-sample.")
@click.option("--dz", type=METRES, default=0.0, show_default=True, help="Astigmatism.")
@click.option("--distance", type=METRES, default="1m", show_default=True, help="Focus-detector.")
@click.option("--aberration", type=float, default=1.2, show_default=True, help="Map RMS, px.")
@click.option("--photons", type=float, default=1e4, show_default=True, help="Peak counts.")
@click.option("--hot", type=int, default=0, show_default=True, help="Hot pixels.")
@click.option("--dead", type=int, default=0, show_default=True, help="Dead pixels.")
@click.option(
    "--truth",
    type=NEW_FILE,
    default=None,
    help="Also write the ground truth (.npz).",
)
@seed_option()
def simulate_command(
    output, shape, grid, step, defocus, dz, distance, aberration, photons, hot, dead, truth, seed
) -> None:
    """Write a simulated speckle-tracking scan (CXI layout) with a known lens aberration."""
    from ..io import write_npz
    from .cxi import write_cxi
    from .simulate import simulate

    sim = simulate(
        _pair(shape, "--shape"),
        _pair(grid, "--grid"),
        step=step,
        defocus=defocus,
        dz=dz,
        distance=distance,
        aberration_px=aberration,
        photons=photons,
        n_hot=hot,
        n_dead=dead,
        seed=seed,
    )
    write_cxi(
        output,
        sim.data,
        sim.translations,
        sim.basis,
        sim.x_pixel_size,
        sim.y_pixel_size,
        sim.distance,
        sim.wavelength,
    )
    click.echo(
        f"scan {sim.data.shape} (defocus {sim.defocus:g} m, dz {sim.dz:g} m, aberration "
        f"{aberration:g} px RMS) -> {output}"
    )
    if truth is not None:
        write_npz(
            truth,
            dict(
                pixel_map=sim.pixel_map,
                phase=sim.phase,
                dij=sim.dij,
                whitefield=sim.whitefield,
                mask=sim.mask,
                reference=sim.reference,
                n0=sim.n0,
                m0=sim.m0,
                defocus=sim.defocus,
                dz=sim.dz,
                dss=sim.dss,
                dfs=sim.dfs,
            ),
        )
        click.echo(f"truth -> {truth}")
