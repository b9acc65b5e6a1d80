"""``stacklab ptycho``: simulate a ptychography scan and reconstruct it.

Files are HDF5, written atomically (:func:`stacklab.io.write_hdf5`):

* ``simulate`` writes ``patterns`` (scan_y, scan_x, py, px) float32 in detector layout,
  ``positions`` (n, 2) in object pixels, ``probe_guess`` (the starting probe), and the ground
  truth ``object`` and ``probe``; the file attributes hold the parameters.
* ``reconstruct`` reads ``patterns``, ``positions`` and ``probe_guess`` (or ``probe``), and writes
  ``object``, ``probe``, ``positions`` and ``errors`` (Fourier error per iteration), plus
  ``object_errors`` (phase RMS against the truth, rad) when the input holds ``object``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from ..cli.options import EXISTING_FILE, device_option, output_option, progress_option, seed_option

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
