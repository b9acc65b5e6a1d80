"""``stacklab beads``: make z look-up tables, track bead movies, simulate test files.

Commands::

    stacklab beads zlut zscan.tif --z-step 100nm [--z-start -5um] -o lut.npy
    stacklab beads track movie.tif --zlut lut.npy [--rois rois.csv] [--roi-size 64] \
        [--follow] [--reference 0,3] -o xyz.csv
    stacklab beads force xyz.csv --pixel-size 100nm --frame-rate 400 \
        (--extension 2um | --z-surface -2um) [--field-axis x] [--bead-radius 1.4um] -o forces.csv
    stacklab beads wlc forces.csv [forces2.csv ...] [--fit persistence,contour] -o wlc.csv
    stacklab beads simulate -o movie.tif [--zscan zscan.tif] [--truth truth.csv]

Lengths accept a unit: ``100nm``, ``0.1um`` (or ``µm``), ``1e-7m``; a bare number is in nm.
"""

from __future__ import annotations

import logging

import click

from ..cli.options import (
    EXISTING_FILE,
    EXISTING_PATH,
    NEW_FILE,
    LengthType,
    check_suffix,
    chunk_option,
    key_option,
    opened_stack,
    output_option,
    parse_shape,
    progress_option,
    seed_option,
)

__all__ = ["beads", "parse_bead_ids", "parse_length"]

logger = logging.getLogger(__name__)

#: Option type of lengths in nm (a bare number is in nm).
LENGTH = LengthType("nm", "100nm, 0.1um or 1e-7m")


def parse_length(text: str | float, name: str = "length") -> float:
    """Parse a length such as ``"100nm"``, ``"0.1um"`` or ``"1e-7 m"`` into nanometres.

    Parameters
    ----------
    text : str or float
        Number with an optional unit (nm, um/µm, mm, m); a bare number is in nm.
    name : str
        Argument name for the error message.

    Returns
    -------
    float
        The length in nm.

    Raises
    ------
    click.BadParameter
        For an unreadable value or unknown unit.
    """
    return LENGTH.parse(text, name)


def parse_bead_ids(text: str | None, name: str = "--reference") -> list[int] | None:
    """Parse comma-separated bead ids such as ``"0,3"`` (None stays None).

    Parameters
    ----------
    text : str or None
        Non-negative integers separated by commas (spaces allowed).
    name : str
        Option name for the error message.

    Returns
    -------
    list of int or None

    Raises
    ------
    click.BadParameter
        For an empty list or anything that is not a non-negative integer.
    """
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p.isdigit() for p in parts):
        raise click.BadParameter(
            f"expected comma-separated bead ids such as 0,3, got {text!r}", param_hint=name
        )
    return [int(p) for p in parts]


@click.group("beads")
def beads() -> None:
    """Magnetic-tweezers bead tracking: z look-up tables, xyz of every bead in a movie."""


@beads.command("zlut")
@click.argument("zscan", type=EXISTING_PATH)
@click.option("--z-step", type=LENGTH, required=True, help="Height step between frames (100nm).")
@click.option(
    "--z-start", type=LENGTH, default=None, help="Height of the first frame (default: centred)."
)
@key_option()
@click.option("--bin-width", type=float, default=0.5, show_default=True, help="Profile step, px.")
@click.option("--pixel-size", type=LENGTH, default=None, help="Pixel size (recorded), e.g. 100nm.")
@output_option("Table file: .npy/.npz (NumPy archive) or .h5.")
def zlut_command(zscan, z_step, z_start, key, bin_width, pixel_size, output) -> None:
    """Make a z look-up table from a calibration z-scan ZSCAN (one frame per height)."""
    import numpy as np

    from ..io import open_stack
    from .zlut import make_zlut

    if not z_step or z_step == 0:
        raise click.BadParameter("must be non-zero", param_hint="--z-step")
    stack = open_stack(zscan, key)
    n = int(stack.shape[0])
    start = -(n - 1) / 2.0 * z_step if z_start is None else z_start
    z = start + z_step * np.arange(n)
    lut = make_zlut(np.asarray(stack[:]), z, bin_width=bin_width, pixel_size_nm=pixel_size)
    lut.save(output)
    lo, hi = lut.z_range
    click.echo(
        f"z look-up table: {lut.n_planes} planes from {lo:g} to {hi:g} nm, {lut.n_bins} bins of "
        f"{lut.bin_width:g} px -> {output}"
    )


@beads.command("track")
@click.argument("movie", type=EXISTING_PATH)
@click.option(
    "--zlut",
    "zlut_path",
    type=EXISTING_FILE,
    default=None,
    help="z look-up table from `stacklab beads zlut` (without it z is NaN).",
)
@click.option(
    "--rois",
    "rois_path",
    type=EXISTING_FILE,
    default=None,
    help="CSV with x,y centres or top,bottom,left,right boxes (default: find beads).",
)
@click.option("--roi-size", type=int, default=64, show_default=True, help="ROI side, px.")
@click.option("--n-beads", type=int, default=None, help="Keep at most this many found beads.")
@key_option()
@chunk_option()
@click.option(
    "--edge",
    type=click.Choice(["raise", "drop"]),
    default="raise",
    show_default=True,
    help="ROIs beyond the frame edge: error, or leave them out.",
)
@click.option(
    "--follow/--no-follow",
    default=False,
    show_default=True,
    help="Re-centre the ROIs on drifting beads between blocks of --chunk frames.",
)
@click.option(
    "--reference",
    default=None,
    help="Comma-separated ids of beads stuck to the surface (e.g. 0,3): subtract their mean "
    "drift from every bead.",
)
@progress_option()
@output_option("Table: .csv or .h5 (columns frame, bead, x, y, z, quality).")
def track_command(
    movie,
    zlut_path,
    rois_path,
    roi_size,
    n_beads,
    key,
    chunk,
    edge,
    follow,
    reference,
    progress,
    output,
) -> None:
    """Track every bead of MOVIE (TIFF, HDF5, NPY, Zarr) into one xyz table."""
    from .movie import load_rois, save_table, track_movie
    from .reference import subtract_reference
    from .zlut import ZLUT

    check_suffix(output, (".csv", ".h5", ".hdf5"), "must end in .csv, .h5 or .hdf5")
    ref_ids = parse_bead_ids(reference)
    lut = ZLUT.load(zlut_path) if zlut_path is not None else None
    rois = load_rois(rois_path) if rois_path is not None else None
    with opened_stack(movie, key) as stack:
        table = track_movie(
            stack,
            rois,
            roi_size=roi_size,
            zlut=lut,
            chunk=chunk,
            edge=edge,
            n_beads=n_beads,
            follow=follow,
            progress=progress,
        )
    if ref_ids is not None:
        try:
            table = subtract_reference(table, ref_ids)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--reference") from exc
    save_table(table, output)
    n_beads_out = int(table["bead"].nunique())
    n_frames = int(table["frame"].nunique())
    n_nan = int(table["x"].isna().sum())
    note = "" if ref_ids is None else f", drift of bead(s) {ref_ids} subtracted"
    click.echo(
        f"tracked {n_beads_out} bead(s) over {n_frames} frames ({n_nan} NaN rows{note}) -> {output}"
    )


@beads.command("force")
@click.argument("table_path", metavar="TABLE", type=EXISTING_FILE)
@click.option("--pixel-size", type=LENGTH, required=True, help="Camera pixel in the sample, 100nm.")
@click.option("--frame-rate", type=float, required=True, help="Frame rate, Hz.")
@click.option("--extension", type=LENGTH, default=None, help="Tether extension of every bead.")
@click.option(
    "--z-surface",
    type=LENGTH,
    default=None,
    help="z of a bead on the surface: extension = median(z) - this, per bead.",
)
@click.option(
    "--field-axis",
    type=click.Choice(["x", "y"]),
    default="x",
    show_default=True,
    help="Camera axis along the magnetic field.",
)
@click.option("--bead-radius", type=LENGTH, default=None, help="Bead radius, e.g. 1.4um.")
@click.option("--exposure", type=float, default=None, help="Exposure, s (default 1/frame rate).")
@click.option("--temperature", type=float, default=296.15, show_default=True, help="K.")
@click.option("--viscosity", type=float, default=0.89e-3, show_default=True, help="Pa s.")
@click.option(
    "--fix-drag/--fit-drag",
    default=False,
    show_default=True,
    help="Fix the drag from --bead-radius and --viscosity (for corner frequencies near or "
    "above the frame rate).",
)
@click.option("--min-quality", type=float, default=None, help="Treat rows below as lost.")
@output_option("Forces: .csv (bead, axis, force_pN, ...).")
def force_command(
    table_path,
    pixel_size,
    frame_rate,
    extension,
    z_surface,
    field_axis,
    bead_radius,
    exposure,
    temperature,
    viscosity,
    fix_drag,
    min_quality,
    output,
) -> None:
    """Force on every bead of an xyz TABLE from the power spectrum of its fluctuations."""
    from ..io import atomic_path
    from .force import forces_from_table
    from .movie import load_table

    check_suffix(output, (".csv",), "must end in .csv")
    if (extension is None) == (z_surface is None):
        raise click.UsageError("give exactly one of --extension and --z-surface")
    forces = forces_from_table(
        load_table(table_path),
        pixel_size_nm=pixel_size,
        frame_rate_hz=frame_rate,
        extension_nm=extension,
        z_surface_nm=z_surface,
        field_axis=field_axis,
        exposure_s=exposure,
        bead_radius_nm=bead_radius,
        viscosity_pa_s=viscosity,
        temperature_K=temperature,
        fix_drag=fix_drag,
        min_quality=min_quality,
    )
    with atomic_path(output) as tmp:
        forces.to_csv(tmp, index=False)
    for row in forces.itertuples():
        click.echo(
            f"bead {row.bead} {row.axis} ({row.direction}): {row.force_pN:.4g} "
            f"+- {row.force_se_pN:.2g} pN, fc {row.corner_frequency_hz:.3g} Hz, "
            f"L {row.extension_nm:.0f} nm"
        )
    click.echo(f"-> {output}")


@beads.command("wlc")
@click.argument("force_tables", metavar="FORCES...", nargs=-1, required=True, type=EXISTING_FILE)
@click.option(
    "--fit",
    "fit_names",
    default="persistence,contour",
    show_default=True,
    help="Free parameters: persistence, contour, stretch_modulus, offset (comma-separated).",
)
@click.option(
    "--model",
    type=click.Choice(["bouchiat", "marko_siggia"]),
    default="bouchiat",
    show_default=True,
)
@click.option("--contour", type=LENGTH, default=None, help="Contour length (start or fixed).")
@click.option("--persistence", type=LENGTH, default=None, help="Persistence length.")
@click.option("--temperature", type=float, default=296.15, show_default=True, help="K.")
@output_option("Fit per bead: .csv.")
def wlc_command(force_tables, fit_names, model, contour, persistence, temperature, output) -> None:
    """Fit a worm-like chain to the forces of `beads force` tables (one per magnet position)."""
    import pandas as pd

    from ..io import atomic_path
    from .wlc import PARAMETERS, fit_wlc_table

    check_suffix(output, (".csv",), "must end in .csv")
    names = tuple(n.strip() for n in fit_names.split(",") if n.strip())
    unknown = sorted(set(names) - set(PARAMETERS))
    if unknown or not names:
        raise click.BadParameter(
            f"unknown parameter(s) {unknown}; choose from {list(PARAMETERS)}", param_hint="--fit"
        )
    initial = {k: v for k, v in (("contour", contour), ("persistence", persistence)) if v}
    table = pd.concat([pd.read_csv(p) for p in force_tables], ignore_index=True)
    fits = fit_wlc_table(
        table, fit=names, model=model, temperature_K=temperature, initial=initial or None
    )
    with atomic_path(output) as tmp:
        fits.to_csv(tmp, index=False)
    for row in fits.itertuples():
        click.echo(
            f"bead {row.bead}: P {row.persistence_nm:.1f} +- {row.persistence_se_nm:.1f} nm, "
            f"L {row.contour_nm:.0f} +- {row.contour_se_nm:.0f} nm ({row.n_points} points)"
        )
    click.echo(f"-> {output}")


@beads.command("simulate")
@output_option("Movie file (.tif, .h5, .npy).")
@click.option("--frames", type=int, default=100, show_default=True, help="Movie frames.")
@click.option("--shape", default="128x256", show_default=True, help="Frame ROWSxCOLS.")
@click.option("--beads", "n_beads", type=int, default=3, show_default=True, help="Beads.")
@click.option("--roi-size", type=int, default=64, show_default=True, help="ROI side, px.")
@click.option("--photons", type=float, default=None, help="Photons per background pixel.")
@click.option(
    "--z-range", type=LENGTH, default="3um", show_default=True, help="Movie z within +-this."
)
@click.option(
    "--zscan",
    type=NEW_FILE,
    default=None,
    help="Also write a calibration z-scan of one ROI-sized bead here.",
)
@click.option("--z-step", type=LENGTH, default="100nm", show_default=True, help="z-scan step.")
@click.option(
    "--zscan-range", type=LENGTH, default="5um", show_default=True, help="z-scan within +-this."
)
@click.option("--truth", type=NEW_FILE, default=None)
@seed_option()
def simulate_command(
    output,
    frames,
    shape,
    n_beads,
    roi_size,
    photons,
    z_range,
    zscan,
    z_step,
    zscan_range,
    truth,
    seed,
) -> None:
    """Write a simulated bead movie (and optionally a z-scan and the true positions)."""
    import numpy as np

    from ..io import save_stack
    from .movie import save_table
    from .simulate import simulate_movie, simulate_zscan

    rows, cols = parse_shape(shape)
    movie, table = simulate_movie(
        frames,
        shape=(rows, cols),
        n_beads=n_beads,
        roi_size=roi_size,
        z_range=(-abs(z_range), abs(z_range)),
        photons=photons,
        seed=seed,
    )
    save_stack(output, movie)
    click.echo(f"movie {movie.shape} -> {output}")
    if truth is not None:
        save_table(table, truth)
        click.echo(f"truth ({len(table)} rows) -> {truth}")
    if zscan is not None:
        half = abs(zscan_range)
        z = np.arange(-half, half + 0.5 * abs(z_step), abs(z_step))
        scan = simulate_zscan(z, size=roi_size, photons=photons, seed=seed + 1)
        save_stack(zscan, scan.images)
        click.echo(
            f"z-scan {scan.images.shape} from {z[0]:g} to {z[-1]:g} nm -> {zscan} "
            f"(stacklab beads zlut {zscan.name} --z-step {abs(z_step):g}nm --z-start {z[0]:g}nm)"
        )
