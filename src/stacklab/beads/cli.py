"""``stacklab beads``: make z look-up tables, track bead movies, simulate test files.

Commands::

    stacklab beads zlut zscan.tif --z-step 100nm [--z-start -5um] -o lut.npy
    stacklab beads track movie.tif --zlut lut.npy [--rois rois.csv] [--roi-size 64] -o xyz.csv
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

__all__ = ["beads", "parse_length"]

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
@progress_option()
@output_option("Table: .csv or .h5 (columns frame, bead, x, y, z, quality).")
def track_command(
    movie, zlut_path, rois_path, roi_size, n_beads, key, chunk, edge, progress, output
) -> None:
    """Track every bead of MOVIE (TIFF, HDF5, NPY, Zarr) into one xyz table."""
    from .movie import load_rois, save_table, track_movie
    from .zlut import ZLUT

    check_suffix(output, (".csv", ".h5", ".hdf5"), "must end in .csv, .h5 or .hdf5")
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
            progress=progress,
        )
    save_table(table, output)
    n_beads_out = int(table["bead"].nunique())
    n_frames = int(table["frame"].nunique())
    n_nan = int(table["x"].isna().sum())
    click.echo(
        f"tracked {n_beads_out} bead(s) over {n_frames} frames ({n_nan} NaN rows) -> {output}"
    )


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
