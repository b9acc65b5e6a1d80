"""``stacklab ptycho``: simulate a ptychography scan and reconstruct it.

Files are HDF5, written atomically (:func:`stacklab.io.write_hdf5`):

* ``simulate`` writes ``patterns`` (scan_y, scan_x, py, px) float32 in detector layout,
  ``positions`` (n, 2) in object pixels, ``probe_guess`` (the starting probe), and the ground
  truth ``object`` and ``probe``; the file attributes hold the parameters.
* ``reconstruct`` reads ``patterns``, ``positions`` and ``probe_guess`` (or ``probe``), and writes
  ``object``, ``probe``, ``positions`` and ``errors`` (Fourier error per iteration), plus
  ``object_errors`` (phase RMS against the truth, rad) when the input holds ``object``.
* ``reconstruct-4dstem`` reads a recorded datacube (any file
  :func:`stacklab.cli.options.open_4dstem` opens: the 4D-STEM formats, HDF5, TIFF, Zarr) and
  the acquisition parameters, maps the detector onto the forward-model grid
  (:func:`stacklab.ptycho.prepare_4dstem`) and reconstructs; it writes ``object``, ``probe``,
  ``positions`` (reconstruction pixels), ``errors``, ``pixel_size_m`` (y, x), ``valid``
  (forward-model pixels the detector covers), ``probe_guess`` and ``beam_centre`` (detector
  px), the parameters as JSON in the file attributes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from ..cli.options import (
    EXISTING_FILE,
    EXISTING_PATH,
    QuantityType,
    chunk_option,
    device_option,
    key_option,
    open_4dstem,
    output_option,
    progress_option,
    seed_option,
)

__all__ = ["ptycho"]

logger = logging.getLogger(__name__)


@click.group(name="ptycho")
def ptycho() -> None:
    """Ptychography: simulate 4D-STEM scans and reconstruct object and probe."""


@ptycho.command("simulate")
@output_option("HDF5 file to write.")
@click.option(
    "--scan",
    nargs=2,
    type=int,
    default=(10, 10),
    show_default=True,
    help="Scan positions along y and x.",
)
@click.option(
    "--probe-size",
    type=int,
    default=64,
    show_default=True,
    help="Probe window and pattern size, pixels.",
)
@click.option(
    "--step", type=float, default=6.0, show_default=True, help="Scan step, object pixels."
)
@click.option(
    "--counts",
    type=float,
    default=None,
    help="Mean counts per pattern (Poisson noise); default noise-free.",
)
@click.option(
    "--phase-max", type=float, default=0.9, show_default=True, help="Object phase range, rad."
)
@seed_option()
def simulate_cmd(
    output: Path,
    scan: tuple[int, int],
    probe_size: int,
    step: float,
    counts: float | None,
    phase_max: float,
    seed: int,
) -> None:
    """Simulate a far-field ptychography scan with known object and probe."""
    from ..io import write_hdf5
    from .simulate import simulate_dataset

    ds = simulate_dataset(
        scan_shape=tuple(scan),
        probe_shape=(probe_size, probe_size),
        step=step,
        counts=counts,
        phase_max=phase_max,
        seed=seed,
    )
    attrs = {
        "/": {
            "stacklab_kind": "ptycho_simulation",
            "counts": -1.0 if counts is None else float(counts),
            "params": json.dumps(ds.params),
        }
    }
    write_hdf5(
        output,
        {
            "patterns": ds.patterns,
            "positions": ds.positions,
            "probe_guess": ds.probe_guess,
            "probe": ds.probe,
            "object": ds.object,
        },
        attrs=attrs,
    )
    click.echo(
        f"wrote {output}: {ds.patterns.shape[0]}x{ds.patterns.shape[1]} patterns of "
        f"{probe_size}x{probe_size}, object {ds.object.shape[0]}x{ds.object.shape[1]}, "
        f"{'noise-free' if counts is None else f'{counts:g} counts per pattern'}"
    )


def _read(path: Path, keys: list[str], optional: list[str]) -> dict[str, Any]:
    import h5py

    from ..errors import FileFormatError

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"cannot open {path} as HDF5: {exc}") from exc
    with f:
        out: dict[str, Any] = {}
        for key in keys:
            if key not in f:
                raise FileFormatError(
                    f"{path} has no dataset {key!r} (found: {', '.join(sorted(f.keys()))})"
                )
            out[key] = f[key][()]
        for key in optional:
            if key in f:
                out[key] = f[key][()]
    return out


@ptycho.command("reconstruct")
@click.argument("input_file", type=EXISTING_FILE)
@output_option("Output HDF5 (default: <input>_recon.h5).", required=False)
@click.option("--iterations", type=int, default=100, show_default=True)
@click.option(
    "--method", type=click.Choice(["lsq", "rpie", "epie"]), default="lsq", show_default=True
)
@click.option("--alpha", type=float, default=None, help="Object step/regularisation.")
@click.option("--beta", type=float, default=None, help="Probe step/regularisation.")
@click.option(
    "--step",
    type=float,
    default=1.0,
    show_default=True,
    help="ePIE/rPIE update multiplier (about 0.3 for noisy data).",
)
@click.option("--refine-positions/--no-refine-positions", default=False, show_default=True)
@device_option()
@seed_option()
@progress_option(None, "Progress bar (default: when the terminal is interactive).")
def reconstruct_cmd(
    input_file: Path,
    output: Path | None,
    iterations: int,
    method: str,
    alpha: float | None,
    beta: float | None,
    step: float,
    refine_positions: bool,
    device: str,
    seed: int,
    progress: bool | None,
) -> None:
    """Reconstruct object and probe from INPUT_FILE (as written by ``simulate``)."""
    from ..io import write_hdf5
    from .reconstruct import reconstruct

    data = _read(input_file, ["patterns", "positions"], ["probe_guess", "probe", "object"])
    probe = data.get("probe_guess", data.get("probe"))
    if probe is None:
        from ..errors import FileFormatError

        raise FileFormatError(f"{input_file} has neither 'probe_guess' nor 'probe'")
    truth = data.get("object")
    patterns = data["patterns"]
    object_shape = truth.shape if truth is not None else None

    def report(it: int, err: float) -> None:
        if (it + 1) % max(1, iterations // 10) == 0 or it + 1 == iterations:
            logger.info("iteration %d/%d: error %.4g", it + 1, iterations, err)

    res = reconstruct(
        patterns,
        data["positions"],
        probe,
        method=method,
        iterations=iterations,
        object_shape=object_shape,
        alpha=alpha,
        beta=beta,
        step=step,
        position_refinement=refine_positions,
        true_object=truth,
        seed=seed,
        device=device,
        progress=progress,
        callback=report,
    )
    out = output or input_file.with_name(input_file.stem + "_recon.h5")
    attrs = {
        "/": {
            "stacklab_kind": "ptycho_reconstruction",
            "method": method,
            "iterations": int(iterations),
            "source": str(input_file),
            "params": json.dumps(res.params),
            "seconds": float(res.seconds),
        }
    }
    write_hdf5(out, res.to_dict(), attrs=attrs)
    msg = (
        f"{method}: {iterations} iterations in {res.seconds:.1f} s, "
        f"final error {res.errors[-1]:.4g}"
    )
    if res.object_errors is not None:
        msg += f", phase RMS error {res.object_errors[-1]:.4f} rad"
    click.echo(msg)
    click.echo(f"wrote {out}")


# ------------------------------------------------------------------------------------------------
# reconstruct-4dstem
# ------------------------------------------------------------------------------------------------


@ptycho.command("reconstruct-4dstem")
@click.argument("input_file", type=EXISTING_PATH)
@output_option("Output HDF5 (default: <input>_recon.h5).", required=False)
@key_option()
@click.option(
    "--scan", nargs=2, type=int, default=None, help="Scan ROWS COLS of a 3-D stack of frames."
)
@click.option("--kv", type=float, required=True, help="Acceleration voltage, kV.")
@click.option(
    "--semiconv",
    type=QuantityType("angle", "rad", "25mrad or 0.025rad", bare="mrad"),
    required=True,
    help="Semi-convergence angle (bare numbers in mrad; e.g. 25, 25mrad, 0.025rad).",
)
@click.option(
    "--scan-step",
    type=QuantityType("length", "m", "0.4A or 40pm", bare="a", pair=True),
    required=True,
    help="Scan step, or 'y,x' (bare numbers in angstrom; e.g. 0.4, 0.4A, 40pm).",
)
@click.option(
    "--detector-pixel",
    type=QuantityType("angle", "rad", "0.5mrad", bare="mrad", pair=True),
    default=None,
    help="Angular size of a detector pixel, or 'y,x' (bare numbers in mrad).",
)
@click.option(
    "--camera-length",
    type=QuantityType("length", "m", "0.11m or 110mm"),
    default=None,
    help="Camera length (bare numbers in m), with --pixel-pitch instead of --detector-pixel.",
)
@click.option(
    "--pixel-pitch",
    type=QuantityType("length", "m", "55um", bare="um", pair=True),
    default=None,
    help="Physical detector pixel size (bare numbers in um), with --camera-length.",
)
@click.option(
    "--rotation", type=float, default=0.0, show_default=True, help="Scan rotation, degrees."
)
@click.option("--flip", is_flag=True, help="Flip the detector's y axis.")
@click.option(
    "--beam-centre",
    nargs=2,
    type=float,
    default=None,
    help="Beam centre ROW COL on the detector, px (default: found on the mean pattern).",
)
@click.option(
    "--defocus",
    type=QuantityType("length", "m", "20nm or -15nm", bare="nm"),
    default=0.0,
    show_default=True,
    help="Defocus of the probe guess (bare numbers in nm; e.g. 20nm, -15nm).",
)
@click.option(
    "--shape",
    "grid",
    default=None,
    help="Forward-model grid N or ROWSxCOLS (default: holds every detector angle).",
)
@click.option(
    "--pixel-size",
    type=QuantityType("length", "m", "20pm", bare="pm", pair=True),
    default=None,
    help="Reconstruction pixel size (bare numbers in pm; default from the grid).",
)
@click.option("--iterations", type=int, default=100, show_default=True)
@click.option(
    "--method", type=click.Choice(["rpie", "epie", "lsq"]), default="rpie", show_default=True
)
@click.option(
    "--step",
    type=float,
    default=None,
    help="ePIE/rPIE update multiplier (default 0.3, see reconstruct_4dstem).",
)
@click.option("--refine-positions/--no-refine-positions", default=False, show_default=True)
@chunk_option()
@device_option()
@seed_option()
@progress_option(None, "Progress bar (default: when the terminal is interactive).")
def reconstruct_4dstem_cmd(
    input_file: Path,
    output: Path | None,
    key: str | None,
    scan: tuple[int, int] | None,
    kv: float,
    semiconv: float,
    scan_step: tuple[float, float],
    detector_pixel: tuple[float, float] | None,
    camera_length: float | None,
    pixel_pitch: tuple[float, float] | None,
    rotation: float,
    flip: bool,
    beam_centre: tuple[float, float] | None,
    defocus: float,
    grid: str | None,
    pixel_size: tuple[float, float] | None,
    iterations: int,
    method: str,
    step: float | None,
    refine_positions: bool,
    chunk: int,
    device: str,
    seed: int,
    progress: bool | None,
) -> None:
    """Reconstruct object and probe from a recorded 4D-STEM datacube INPUT_FILE.

    The detector pixels are mapped onto the forward model's far-field grid (scan rotation and
    flip included), positions follow the scan raster; the object comes out in the scan frame.
    """
    from ..io import write_hdf5
    from .prepare import angular_pixel_size, prepare_4dstem
    from .reconstruct import reconstruct

    if detector_pixel is None:
        if camera_length is None or pixel_pitch is None:
            raise click.UsageError("give --detector-pixel, or --camera-length with --pixel-pitch")
        detector_pixel = tuple(angular_pixel_size(pixel_pitch, camera_length))
    elif camera_length is not None or pixel_pitch is not None:
        raise click.UsageError("give --detector-pixel or --camera-length/--pixel-pitch, not both")
    shape = None
    if grid is not None:
        try:
            vals = [int(v) for v in grid.lower().split("x")]
        except ValueError:
            raise click.BadParameter(
                f"{grid!r} is not N or ROWSxCOLS", param_hint="--shape"
            ) from None
        if len(vals) not in (1, 2):
            raise click.BadParameter(f"{grid!r} is not N or ROWSxCOLS", param_hint="--shape")
        shape = (vals[0], vals[-1])
    if int(iterations) < 1:
        raise click.BadParameter("must be >= 1", param_hint="--iterations")
    with open_4dstem(input_file, key=key, scan_shape=scan) as cube:
        prepared = prepare_4dstem(
            cube,
            voltage_kV=kv,
            semiconv_rad=semiconv,
            scan_step_m=scan_step,
            detector_pixel_rad=detector_pixel,
            scan_rotation_deg=rotation,
            flip_y=flip,
            beam_centre=beam_centre,
            reconstruct_shape=shape,
            pixel_size_m=pixel_size,
            defocus_m=defocus,
            chunk=chunk,
            progress=progress,
        )
    click.echo(
        f"beam centre ({prepared.beam_centre[0]:.2f}, {prepared.beam_centre[1]:.2f}) px; grid "
        f"{prepared.reconstruct_shape[0]}x{prepared.reconstruct_shape[1]} of "
        f"{prepared.fourier_pixel_rad.mean() * 1e3:.4g} mrad; pixel "
        f"{prepared.pixel_size_m.mean() * 1e12:.4g} pm; {100 * prepared.valid.mean():.0f}% "
        "of the grid on the detector"
    )
    if step is None:
        step = 0.3 if method in ("rpie", "epie") else 1.0

    def report(it: int, err: float) -> None:
        if (it + 1) % max(1, iterations // 10) == 0 or it + 1 == iterations:
            logger.info("iteration %d/%d: error %.4g", it + 1, iterations, err)

    res = reconstruct(
        prepared.patterns,
        prepared.positions,
        prepared.probe,
        method=method,
        iterations=iterations,
        step=step,
        mask=prepared.valid,
        layout=prepared.layout,
        position_refinement=refine_positions,
        seed=seed,
        device=device,
        progress=progress,
        callback=report,
    )
    source = Path(input_file)
    out = output or source.with_name(source.stem + "_recon.h5")
    params = dict(prepared.params, reconstruct=res.params)
    attrs = {
        "/": {
            "stacklab_kind": "ptycho_reconstruction_4dstem",
            "method": method,
            "iterations": int(iterations),
            "source": str(input_file),
            "pixel_size_m": prepared.pixel_size_m,
            "params": json.dumps(params),
            "seconds": float(res.seconds),
        }
    }
    datasets = dict(res.to_dict())
    datasets.update(
        pixel_size_m=prepared.pixel_size_m,
        valid=prepared.valid,
        probe_guess=prepared.probe,
        beam_centre=prepared.beam_centre,
    )
    write_hdf5(out, datasets, attrs=attrs)
    click.echo(
        f"{method}: {iterations} iterations in {res.seconds:.1f} s, final error "
        f"{res.errors[-1]:.4g}; object {res.object.shape[0]}x{res.object.shape[1]} px"
    )
    click.echo(f"wrote {out}")
