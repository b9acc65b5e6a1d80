"""``stacklab smlm``: localize movies, correct drift, link, render, measure resolution, simulate.

Commands::

    stacklab smlm localize movie.tif --pixel-size 100 --gain 0.25 --offset 100 -o locs.csv \\
        [--render sr.png]
    stacklab smlm drift locs.csv -o corrected.csv [--segments 10] [--table drift.csv]
    stacklab smlm link locs.csv -o linked.csv [--max-dist 30] [--max-gap 1]
    stacklab smlm render locs.csv -o sr.png [--pixel 10] [--mode gaussian|histogram]
    stacklab smlm frc locs.csv [--pixel 5]
    stacklab smlm simulate -o movie.tif [--frames 2000] [--drift 100] [--truth truth.csv]

Lengths are in nm, the gain in photoelectrons per ADU, the offset in ADU. Localization files
are ThunderSTORM CSV (``.csv``) or Picasso HDF5 (``.hdf5``/``.h5`` with a ``.yaml`` sidecar).
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from ..cli.options import (
    EXISTING_FILE,
    EXISTING_PATH,
    NEW_FILE,
    check_suffix,
    chunk_option,
    device_option,
    key_option,
    opened_stack,
    output_option,
    parse_shape,
    progress_option,
    seed_option,
    write_csv,
)

__all__ = ["smlm"]

logger = logging.getLogger(__name__)

_LOCS_SUFFIXES = (".csv", ".hdf5", ".h5")
#: ``--pixel-size`` of the commands that read localization files.
_pixel_size_option = click.option(
    "--pixel-size", type=float, default=None, help="nm (for files in pixels)."
)


def _check_locs_path(path: Path, hint: str) -> None:
    check_suffix(
        path, _LOCS_SUFFIXES, "must end in .csv (ThunderSTORM) or .hdf5/.h5 (Picasso)", hint
    )


def _load(path: Path, pixel_size: float | None):
    from .formats import load_locs

    kwargs = {"pixel_size_nm": pixel_size} if pixel_size is not None else {}
    return load_locs(path, **kwargs)


def _write_image(sr, output: Path) -> None:
    import numpy as np

    from .render import save_png

    suffix = output.suffix.lower()
    if suffix == ".png":
        save_png(sr, output)
    elif suffix in (".tif", ".tiff", ".npy", ".h5", ".hdf5"):
        from ..io import save_stack

        save_stack(output, np.asarray(sr.image, dtype=np.float32)[None])
    else:
        raise click.BadParameter("must end in .png, .tif, .npy or .h5", param_hint="--output")


@click.group("smlm")
def smlm() -> None:
    """Single-molecule localization microscopy: localize, correct drift, render, FRC."""


@smlm.command("localize")
@click.argument("movie", type=EXISTING_PATH)
@click.option("--pixel-size", type=float, required=True, help="Pixel size in the sample, nm.")
@click.option("--gain", type=float, default=1.0, show_default=True, help="Photoelectrons/ADU.")
@click.option("--offset", type=float, default=0.0, show_default=True, help="Dark level, ADU.")
@click.option("--qe", type=float, default=1.0, show_default=True, help="Quantum efficiency.")
@click.option(
    "--sigma", type=float, default=None, help="PSF sigma, nm (default 1.3 camera pixels)."
)
@click.option("--fit-sigma", is_flag=True, help="Fit the PSF sigma of every spot.")
@click.option(
    "--method",
    type=click.Choice(["mle", "lsq"]),
    default="mle",
    show_default=True,
    help="Poisson maximum likelihood or least squares.",
)
@click.option("--box", type=int, default=7, show_default=True, help="Crop size, px (odd).")
@click.option(
    "--max-emitters",
    type=click.IntRange(1, 5),
    default=1,
    show_default=True,
    help="Fit up to this many emitters per spot (dense frames; MLE only).",
)
@click.option(
    "--multi-p-value",
    type=float,
    default=1e-6,
    show_default=True,
    help="Significance of each extra emitter (likelihood-ratio test).",
)
@click.option(
    "--fpr",
    type=float,
    default=1e-6,
    show_default=True,
    help="Detection false-positive probability per pixel (Gaussian noise).",
)
@click.option("--threshold", type=float, default=None, help="Detection threshold in noise SDs.")
@click.option(
    "--background",
    type=click.Choice(["none", "temporal", "spatial"]),
    default="none",
    show_default=True,
    help="Background removed before detection.",
)
@key_option()
@chunk_option()
@device_option(("cpu", "gpu", "auto"))
@progress_option()
@output_option("Localizations: .csv (ThunderSTORM) or .hdf5 (Picasso).")
@click.option(
    "--render",
    "render_path",
    type=NEW_FILE,
    default=None,
    help="Also write a super-resolved image (.png, .tif).",
)
@click.option("--render-pixel", type=float, default=10.0, show_default=True, help="nm.")
def localize_command(
    movie, pixel_size, gain, offset, qe, sigma, fit_sigma, method, box, max_emitters,
    multi_p_value, fpr, threshold, background, key, chunk, device, progress, output, render_path,
    render_pixel,
) -> None:  # fmt: skip
    """Localize every spot of MOVIE (TIFF, HDF5, NPY, Zarr; camera counts in ADU)."""
    import numpy as np

    from .camera import Camera
    from .pipeline import Flag, localize

    _check_locs_path(output, "--output")
    camera = Camera(offset=offset, gain=gain, qe=qe, pixel_size_nm=pixel_size)
    sigma_px = 1.3 if sigma is None else float(sigma) / float(pixel_size)
    with opened_stack(movie, key) as stack:
        locs = localize(
            stack,
            camera,
            sigma_px=sigma_px,
            fit_sigma=fit_sigma,
            method=method,
            box=box,
            max_emitters=max_emitters,
            multi_p_value=multi_p_value,
            fpr=fpr,
            k=threshold,
            background=background,
            chunk=chunk,
            device=device,
            progress=progress,
        )
    locs.save(output)
    df = locs.df
    flags = df["flags"].to_numpy() if len(df) else np.zeros(0, dtype=np.int32)
    n_edge = int(np.count_nonzero(flags & int(Flag.EDGE)))
    n_sat = int(np.count_nonzero(flags & int(Flag.SATURATED)))
    n_bad = int(np.count_nonzero(flags & int(Flag.NOT_CONVERGED | Flag.AT_BOUND)))
    n_multi = int(np.count_nonzero(flags & int(Flag.MULTI)))
    med = float(np.median(df["uncertainty [nm]"])) if len(df) else float("nan")
    multi = f", {n_multi} from multi-emitter spots" if max_emitters > 1 else ""
    click.echo(
        f"{len(df)} localizations in {locs.n_frames} frames (median precision {med:.1f} nm; "
        f"flagged: {n_edge} edge, {n_sat} saturated, {n_bad} not converged/at bound{multi}) "
        f"-> {output}"
    )
    if render_path is not None:
        from .render import render

        sr = render(locs, pixel_nm=render_pixel)
        _write_image(sr, render_path)
        click.echo(f"super-resolved image {sr.image.shape} at {render_pixel:g} nm -> {render_path}")


@smlm.command("drift")
@click.argument("locs_path", type=EXISTING_FILE)
@click.option("--segments", type=int, default=10, show_default=True, help="RCC segments.")
@click.option("--bin", "bin_nm", type=float, default=20.0, show_default=True, help="Bin, nm.")
@click.option("--max-drift", type=float, default=1000.0, show_default=True, help="nm.")
@_pixel_size_option
@output_option("Drift-corrected localizations (.csv or .hdf5).", required=False)
@click.option(
    "--table",
    "table_path",
    type=NEW_FILE,
    default=None,
    help="CSV of the drift per frame (frame, x [nm], y [nm]).",
)
def drift_command(locs_path, segments, bin_nm, max_drift, pixel_size, output, table_path) -> None:
    """Estimate the drift of LOCS_PATH by redundant cross-correlation (RCC) and correct it."""
    import numpy as np

    from .drift import correct_drift, drift_rcc

    if output is not None:
        _check_locs_path(output, "--output")
    locs = _load(locs_path, pixel_size)
    drift = drift_rcc(locs, n_segments=segments, bin_nm=bin_nm, max_drift_nm=max_drift)
    size = np.hypot(drift.x_nm, drift.y_nm)
    click.echo(
        f"drift over {drift.n_frames} frames: x {drift.x_nm[-1]:+.1f} nm, y {drift.y_nm[-1]:+.1f} "
        f"nm at the end (largest {float(size.max()):.1f} nm); RCC residual "
        f"{drift.residual_nm:.2f} nm over {drift.n_pairs} pairs"
    )
    if table_path is not None:
        write_csv(drift.to_frame(), table_path)
        click.echo(f"drift table -> {table_path}")
    if output is not None:
        correct_drift(locs, drift).save(output)
        click.echo(f"corrected localizations -> {output}")


@smlm.command("link")
@click.argument("locs_path", type=EXISTING_FILE)
@click.option("--max-dist", type=float, default=None, help="Linking radius, nm.")
@click.option("--max-gap", type=int, default=0, show_default=True, help="Missing frames.")
@_pixel_size_option
@output_option("Merged localizations (.csv or .hdf5).")
def link_command(locs_path, max_dist, max_gap, pixel_size, output) -> None:
    """Merge localizations of one molecule in consecutive frames (blinks) of LOCS_PATH."""
    from .linking import link

    _check_locs_path(output, "--output")
    locs = _load(locs_path, pixel_size)
    merged = link(locs, max_dist_nm=max_dist, max_gap=max_gap)
    merged.save(output)
    click.echo(f"{len(locs)} localizations -> {len(merged)} linked molecules -> {output}")


@smlm.command("render")
@click.argument("locs_path", type=EXISTING_FILE)
@click.option("--pixel", type=float, default=10.0, show_default=True, help="Image pixel, nm.")
@click.option(
    "--mode", type=click.Choice(["gaussian", "histogram"]), default="gaussian", show_default=True
)
@click.option("--sigma", type=float, default=None, help="Gaussian width, nm (default: CRLB).")
@_pixel_size_option
@output_option("Image: .png (scaled colour) or .tif/.npy/.h5 (float values).")
def render_command(locs_path, pixel, mode, sigma, pixel_size, output) -> None:
    """Render the localizations of LOCS_PATH as a super-resolved image."""
    from .render import render

    locs = _load(locs_path, pixel_size)
    sr = render(locs, pixel_nm=pixel, mode=mode, sigma_nm=sigma)
    _write_image(sr, output)
    click.echo(f"{sr.n_locs} localizations, image {sr.image.shape} at {pixel:g} nm -> {output}")


@smlm.command("frc")
@click.argument("locs_path", type=EXISTING_FILE)
@click.option("--pixel", type=float, default=5.0, show_default=True, help="FRC pixel, nm.")
@click.option(
    "--split", type=click.Choice(["random", "blocks"]), default="random", show_default=True
)
@click.option("--block-frames", type=int, default=50, show_default=True)
@seed_option()
@_pixel_size_option
@click.option(
    "--curve",
    type=NEW_FILE,
    default=None,
    help="CSV of the FRC curve (frequency [1/nm], frc, frc_smooth).",
)
def frc_command(locs_path, pixel, split, block_frames, seed, pixel_size, curve) -> None:
    """FRC resolution and NeNA precision of LOCS_PATH."""
    import pandas as pd

    from .metrics import frc_resolution, nena

    locs = _load(locs_path, pixel_size)
    res = frc_resolution(locs, pixel_nm=pixel, split=split, block_frames=block_frames, seed=seed)
    ne = nena(locs)
    click.echo(f"FRC resolution: {res.resolution_nm:.1f} nm (threshold 1/7, {split} halves)")
    click.echo(f"NeNA precision: {ne.precision_nm:.2f} nm ({ne.distances_nm.size} pairs)")
    if curve is not None:
        table = pd.DataFrame(
            {"frequency [1/nm]": res.frequency, "frc": res.frc, "frc_smooth": res.frc_smooth}
        )
        write_csv(table, curve)
        click.echo(f"FRC curve -> {curve}")


@smlm.command("simulate")
@output_option("Movie file (.tif, .h5, .npy), uint16 ADU.")
@click.option("--frames", type=int, default=2000, show_default=True)
@click.option("--shape", default="64x64", show_default=True, help="Frame ROWSxCOLS.")
@click.option("--emitters", type=int, default=None, help="Number of emitters.")
@click.option("--photons", type=float, default=1000.0, show_default=True)
@click.option("--background", type=float, default=20.0, show_default=True, help="Photons/px.")
@click.option("--sigma", type=float, default=1.3, show_default=True, help="PSF sigma, px.")
@click.option("--drift", type=float, default=0.0, show_default=True, help="Total x drift, nm.")
@click.option("--pixel-size", type=float, default=100.0, show_default=True, help="nm.")
@click.option("--gain", type=float, default=0.25, show_default=True, help="e-/ADU.")
@click.option("--offset", type=float, default=100.0, show_default=True, help="ADU.")
@click.option("--truth", type=NEW_FILE, default=None)
@seed_option()
def simulate_command(
    output, frames, shape, emitters, photons, background, sigma, drift, pixel_size, gain,
    offset, truth, seed,
) -> None:  # fmt: skip
    """Write a simulated blinking movie (and optionally the true positions as CSV)."""
    from ..io import save_stack
    from .camera import Camera
    from .simulate import simulate_movie

    rows, cols = parse_shape(shape)
    camera = Camera(offset=offset, gain=gain, pixel_size_nm=pixel_size)
    sim = simulate_movie(
        frames,
        (rows, cols),
        n_emitters=emitters,
        sigma_px=sigma,
        photons=photons,
        background=background,
        drift_nm=(0.0, drift),
        camera=camera,
        seed=seed,
    )
    save_stack(output, sim.movie)
    click.echo(
        f"movie {sim.movie.shape} ({len(sim.truth)} emitter-frames, {len(sim.emitters)} "
        f"emitters) -> {output}"
    )
    if truth is not None:
        write_csv(sim.truth, truth)
        click.echo(f"truth ({len(sim.truth)} rows) -> {truth}")
