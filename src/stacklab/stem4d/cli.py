"""``stacklab stem``: inspect, count, bin, clean and centre 4D-STEM files from the command line.

Every command reads its input lazily (``.mib``, EMPAD ``.raw``, EMD/HDF5, Dectris master, TIFF,
Zarr, ``.npy``) and processes it block by block, so files larger than memory work. Outputs are
written atomically: event lists as HDF5 (:meth:`ElectronEvents.save`), cubes as EMD 1.0 files
that py4DSTEM can open.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..cli.options import output_option

__all__ = ["stem"]

logger = logging.getLogger(__name__)


def _progress(flag: bool | None) -> bool | None:
    return flag if flag is not None else (True if sys.stderr.isatty() else None)


def _open(path: Path, scan_shape: tuple[int, int] | None, key: str | None) -> Any:
    from .readers import open_datacube

    return open_datacube(path, scan_shape=tuple(scan_shape) if scan_shape else None, key=key)


def _load_dark(spec: str) -> np.ndarray:
    """Dark reference from ``FILE`` or ``FILE:KEY`` (.npy, HDF5, TIFF); stacks are averaged."""
    from ..errors import FileFormatError

    path_s, _, key = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    path = Path(path_s)
    if not path.exists():
        raise FileFormatError(f"dark reference file not found: {path_s!r}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = np.load(path)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        arr = tifffile.imread(path)
    else:
        import h5py

        with h5py.File(path, "r") as f:
            if not key:
                found: list[str] = []
                f.visititems(
                    lambda n, o: (
                        found.append(n) if isinstance(o, h5py.Dataset) and o.ndim >= 2 else None
                    )
                )
                if len(found) != 1:
                    raise FileFormatError(
                        f"{path_s!r} holds {len(found)} image datasets {found}; use FILE:KEY"
                    )
                key = found[0]
            if key not in f:
                raise FileFormatError(f"{path_s!r} has no dataset {key!r}")
            arr = f[key][()]
    arr = np.asarray(arr)
    if arr.ndim > 2:
        arr = arr.reshape(-1, *arr.shape[-2:]).astype(np.float64).mean(axis=0)
    return arr


scan_option = click.option(
    "--scan-shape",
    nargs=2,
    type=click.IntRange(min=1),
    default=None,
    metavar="ROWS COLS",
    help="Scan shape (scan_row scan_col), when the file does not say.",
)
key_option = click.option(
    "--key", default=None, help="Dataset inside an HDF5/Zarr file (or array name in EMD)."
)
chunk_option = click.option(
    "--chunk", type=click.IntRange(min=1), default=256, show_default=True, help="Frames per block."
)
progress_option = click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: when interactive)."
)


@click.group()
def stem() -> None:
    """4D-STEM: inspect, electron-count, bin and clean datacubes."""


@stem.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@scan_option
@key_option
@click.option("--stats", is_flag=True, help="Also read the data: mean/max counts per pattern.")
@chunk_option
@progress_option
def info(
    file: Path,
    scan_shape: tuple[int, int] | None,
    key: str | None,
    stats: bool,
    chunk: int,
    progress: bool | None,
) -> None:
    """Describe FILE: shape, dtype, calibration, storage and format metadata."""
    cube = _open(file, scan_shape, key)
    c = cube.calibration
    rows = [
        ("file", str(file)),
        ("format", cube.metadata.get("format", file.suffix.lstrip(".") or "?")),
        ("scan shape", f"{cube.scan_shape[0]} x {cube.scan_shape[1]}"),
        ("detector shape", f"{cube.det_shape[0]} x {cube.det_shape[1]}"),
        ("dtype", str(cube.dtype)),
        ("size", f"{cube.nbytes / 2**20:.1f} MiB ({cube.storage})"),
        ("detector pixel", f"{c.q_pixel_size[0]:g} x {c.q_pixel_size[1]:g} {c.q_units}"),
        ("scan step", f"{c.r_pixel_size[0]:g} x {c.r_pixel_size[1]:g} {c.r_units}"),
    ]
    if c.q_origin is not None:
        o = np.asarray(c.q_origin)
        rows.append(("origin", f"({o[..., 0].mean():.2f}, {o[..., 1].mean():.2f}) px"))
    if cube.metadata.get("truncated"):
        rows.append(("truncated", "yes (complete frames only)"))
    if stats:
        from .reduce import max_pattern, mean_pattern

        mean = mean_pattern(cube, chunk=chunk, progress=_progress(progress))
        peak = max_pattern(cube, chunk=chunk, progress=_progress(progress))
        rows.append(("mean counts/pattern", f"{float(mean.sum()):.4g}"))
        rows.append(("max pixel value", f"{float(np.max(peak)):.6g}"))
    width = max(len(k) for k, _ in rows) + 1
    for k, v in rows:
        click.echo(f"{k + ':':<{width}} {v}")


@stem.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@output_option("Output HDF5 file with the event list (or the counted cube with --dense).")
@click.option("--dark", default=None, metavar="FILE[:KEY]", help="Dark reference (.npy/.h5/.tif).")
@click.option("--n-sigma", type=float, default=5.0, show_default=True, help="Background threshold.")
@click.option(
    "--xray",
    default="auto",
    show_default=True,
    help="X-ray threshold in ADU, 'auto' (multiple of the electron peak) or 'none'.",
)
@click.option("--xray-factor", type=float, default=5.0, show_default=True)
@click.option("--subpixel", is_flag=True, help="Record 3x3 centroids.")
@click.option("--bin", "binning", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--dense", is_flag=True, help="Write the dense counted cube (EMD) instead.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the frame sample.")
@scan_option
@key_option
@chunk_option
@progress_option
def count(
    file: Path,
    output: Path,
    dark: str | None,
    n_sigma: float,
    xray: str,
    xray_factor: float,
    subpixel: bool,
    binning: int,
    dense: bool,
    seed: int,
    scan_shape: tuple[int, int] | None,
    key: str | None,
    chunk: int,
    progress: bool | None,
) -> None:
    """Electron-count FILE and write the events to OUTPUT."""
    from .counting import count_electrons

    cube = _open(file, scan_shape, key)
    dark_arr = _load_dark(dark) if dark else None
    x: float | str | None
    if xray.lower() == "auto":
        x = "auto"
    elif xray.lower() == "none":
        x = None
    else:
        try:
            x = float(xray)
        except ValueError:
            raise click.BadParameter(
                "must be a number, 'auto' or 'none'", param_hint="--xray"
            ) from None
    events = count_electrons(
        cube,
        dark_arr,
        n_sigma=n_sigma,
        xray=x,
        xray_factor=xray_factor,
        subpixel=subpixel,
        binning=binning,
        seed=seed,
        chunk=chunk,
        progress=_progress(progress),
    )
    th = events.metadata["thresholds"]
    if dense:
        from .datacube import DataCube
        from .readers.emd import write_emd

        counted = events.to_dense(np.uint16 if binning > 1 else np.uint8)
        write_emd(output, DataCube(counted, cube.calibration.scaled_q(binning), name="counted"))
    else:
        events.save(output)
    click.echo(
        f"{events.n_events} electrons in {events.n_frames} patterns "
        f"({events.n_events / max(events.n_frames, 1):.2f} per pattern); "
        f"noise sigma {th['noise_sigma']:.3g} ADU, threshold {th['background']:.3g} ADU, "
        f"x-ray cut {'none' if th['xray'] is None else format(th['xray'], '.4g')} ADU, "
        f"{th['n_hot_pixels']} hot pixel(s) masked"
    )
    click.echo(f"wrote {output}")


def _write_mapped(
    output: Path, cube: Any, kernel: Any, calibration: Any, name: str, **params: Any
) -> None:
    from ._output import LazyMapped
    from .datacube import DataCube
    from .readers.emd import write_emd

    data = cube.data
    if hasattr(data, "compute") and hasattr(data, "chunks"):
        data = np.asarray(data.compute())
    view = LazyMapped(data, kernel, **params)
    write_emd(output, DataCube(view, calibration, name=name))


@stem.command(name="bin")
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@output_option("Output EMD file.")
@click.option(
    "--factor",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Detector bin factor.",
)
@click.option(
    "--scan-factor",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Scan bin factor (in memory after detector binning).",
)
@click.option("--mean", "use_mean", is_flag=True, help="Average instead of summing.")
@click.option("--dtype", default=None, help="Output dtype (default: widened, e.g. uint64).")
@scan_option
@key_option
@chunk_option
@progress_option
def bin_cmd(
    file: Path,
    output: Path,
    factor: int,
    scan_factor: int,
    use_mean: bool,
    dtype: str | None,
    scan_shape: tuple[int, int] | None,
    key: str | None,
    chunk: int,
    progress: bool | None,
) -> None:
    """Bin the detector (and optionally the scan) of FILE into OUTPUT (EMD)."""
    from .datacube import DataCube
    from .readers.emd import write_emd
    from .transforms import _bin_kernel, bin_scan

    cube = _open(file, scan_shape, key)
    if factor > min(cube.det_shape):
        raise click.BadParameter(
            f"larger than the detector {cube.det_shape}", param_hint="--factor"
        )
    reduce = "mean" if use_mean else "sum"
    dt = np.dtype(dtype) if dtype else None
    cal = cube.calibration.scaled_q(factor)
    if scan_factor > 1:
        binned = cube.bin_diffraction(
            factor, dtype=dt, reduce=reduce, chunk=chunk, progress=_progress(progress)
        )
        data = bin_scan(binned.data, scan_factor, reduce=reduce)
        write_emd(output, DataCube(data, cal.scaled_r(scan_factor), name=cube.name))
    else:
        _write_mapped(
            output,
            cube,
            _bin_kernel,
            cal,
            cube.name,
            factor=(factor, factor),
            dtype=dt,
            reduce=reduce,
        )
    out_shape = (
        cube.scan_shape[0] // scan_factor,
        cube.scan_shape[1] // scan_factor,
        cube.det_shape[0] // factor,
        cube.det_shape[1] // factor,
    )
    click.echo(f"binned {cube.shape} -> {out_shape}; wrote {output}")


@stem.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@output_option("Output EMD file with the repaired cube.")
@click.option("--n-sigma", type=float, default=8.0, show_default=True)
@click.option("--threshold", type=float, default=None, help="Absolute excess instead of n-sigma.")
@click.option("--statistic", type=click.Choice(["mean", "max"]), default="mean", show_default=True)
@click.option("--cold", is_flag=True, help="Also repair cold/dead pixels.")
@click.option("--ring2", is_flag=True, help="Compare with the second ring (clusters).")
@click.option(
    "--mask-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also save the bad-pixel mask (.npy).",
)
@scan_option
@key_option
@chunk_option
@progress_option
def hotpix(
    file: Path,
    output: Path,
    n_sigma: float,
    threshold: float | None,
    statistic: str,
    cold: bool,
    ring2: bool,
    mask_out: Path | None,
    scan_shape: tuple[int, int] | None,
    key: str | None,
    chunk: int,
    progress: bool | None,
) -> None:
    """Find hot (and cold) pixels of FILE and write the repaired cube to OUTPUT (EMD)."""
    from ..backend import to_numpy
    from .hotpix import _repair_kernel, find_hot_pixels

    cube = _open(file, scan_shape, key)
    mask = to_numpy(
        find_hot_pixels(
            cube,
            n_sigma=n_sigma,
            threshold=threshold,
            statistic=statistic,
            exclude_neighbours=ring2,
            cold=cold,
            chunk=chunk,
            progress=_progress(progress),
        )
    )
    _write_mapped(
        output,
        cube,
        _repair_kernel,
        cube.calibration,
        cube.name,
        mask=mask,
        method="median",
        size=3,
    )
    if mask_out is not None:
        from ..io import atomic_path

        with atomic_path(mask_out) as tmp, open(tmp, "wb") as fh:
            np.save(fh, mask)
    coords = np.argwhere(mask)
    shown = ", ".join(f"({r}, {c})" for r, c in coords[:20])
    more = f" and {len(coords) - 20} more" if len(coords) > 20 else ""
    click.echo(f"{len(coords)} bad pixel(s) repaired{': ' + shown if shown else ''}{more}")
    click.echo(f"wrote {output}")


@stem.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@output_option("Output HDF5 file: centred cube 'data', 'origins', 'fitted', 'coefficients'.")
@click.option(
    "--method",
    type=click.Choice(["com", "disk", "cross_correlation"]),
    default="com",
    show_default=True,
    help="How the bright-field disk is located in each pattern.",
)
@click.option(
    "--model",
    type=click.Choice(["plane", "parabola", "none"]),
    default="plane",
    show_default=True,
    help="Descan model fitted to the origins ('none': centre on the measured origins).",
)
@click.option("--robust/--no-robust", default=True, show_default=True, help="Robust descan fit.")
@scan_option
@key_option
@chunk_option
@progress_option
def origin(
    file: Path,
    output: Path,
    method: str,
    model: str,
    robust: bool,
    scan_shape: tuple[int, int] | None,
    key: str | None,
    chunk: int,
    progress: bool | None,
) -> None:
    """Find the bright-field disk of every pattern of FILE, fit the descan, centre the patterns."""
    import h5py

    from ..io import atomic_path
    from .origin import center_patterns, find_origin, fit_origin

    cube = _open(file, scan_shape, key)
    found = find_origin(cube, method=method, chunk=chunk, progress=_progress(progress))
    fit = None if model == "none" else fit_origin(found, model=model, robust=robust)
    target = found if fit is None else fit.fitted
    det = tuple(int(n) for n in cube.shape[-2:])
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
        sink = f.create_dataset(
            "data",
            shape=tuple(cube.shape),
            dtype=np.float32,
            chunks=(1, 1, *det),
        )
        center_patterns(cube, target, out=sink, chunk=chunk, progress=_progress(progress))
        f["origins"] = found
        f["fitted"] = target
        if fit is not None:
            f["coefficients"] = fit.coefficients
            f["coefficients"].attrs["terms"] = "1, i, j" + (
                ", i^2, ij, j^2" if model == "parabola" else ""
            )
    spread = np.nanstd(found.reshape(-1, 2), axis=0)
    click.echo(
        f"origins ({method}): mean ({np.nanmean(found[..., 0]):.2f}, "
        f"{np.nanmean(found[..., 1]):.2f}) px, spread ({spread[0]:.3f}, {spread[1]:.3f}) px"
    )
    if fit is not None:
        res = np.sqrt(np.nanmean(np.sum(fit.residuals**2, axis=-1)))
        click.echo(f"descan {model}: RMS residual {res:.3f} px")
    click.echo(f"wrote {output} (centred at ({det[0] // 2}, {det[1] // 2}))")


@stem.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@output_option("Output HDF5 file: 'com_row', 'com_col', 'phase' (rad).")
@click.option(
    "--pixel-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="2 pi x detector pixel (1/A) x scan step (A): COM (px) to phase gradient (rad/step).",
)
@click.option(
    "--descan",
    type=click.Choice(["plane", "parabola", "none"]),
    default="plane",
    show_default=True,
    help="Descan model fitted to the disk origins and removed from the COM.",
)
@click.option(
    "--vacuum",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Scan of the same size without specimen to fit the descan on (recommended: fitted on "
    "the specimen itself, the descan model also absorbs its low-order tilts).",
)
@click.option("--rotation", type=float, default=None, help="Scan rotation, deg (default: fit).")
@click.option("--flip/--no-flip", default=None, help="Detector flip (default: fit).")
@scan_option
@key_option
@chunk_option
@progress_option
def dpc(
    file: Path,
    output: Path,
    pixel_scale: float,
    descan: str,
    vacuum: Path | None,
    rotation: float | None,
    flip: bool | None,
    scan_shape: tuple[int, int] | None,
    key: str | None,
    chunk: int,
    progress: bool | None,
) -> None:
    """Centre-of-mass images of FILE and the DPC phase (rotation found by minimum curl)."""
    from ..io import write_hdf5
    from .origin import com_images, dpc_phase, dpc_rotation, find_origin, fit_origin

    cube = _open(file, scan_shape, key)
    origins = None
    if descan != "none":
        source = cube if vacuum is None else _open(vacuum, scan_shape, key)
        if tuple(source.shape[:2]) != tuple(cube.shape[:2]):
            raise click.BadParameter(
                f"scan {tuple(source.shape[:2])} differs from FILE's {tuple(cube.shape[:2])}",
                param_hint="--vacuum",
            )
        found = find_origin(source, chunk=chunk, progress=_progress(progress))
        origins = fit_origin(found, model=descan).fitted
    com_row, com_col = com_images(cube, origins=origins, chunk=chunk, progress=_progress(progress))
    if rotation is None or flip is None:
        found = dpc_rotation(com_row, com_col, flip=flip)
        rotation = found.rotation_deg if rotation is None else rotation
        flip = found.flip
    phase = dpc_phase(com_row, com_col, rotation_deg=rotation, flip=flip, pixel_scale=pixel_scale)
    write_hdf5(
        output,
        {"com_row": com_row, "com_col": com_col, "phase": phase},
        attrs={"phase": {"rotation_deg": float(rotation), "flip": bool(flip)}},
    )
    click.echo(
        f"COM images {tuple(com_row.shape)}; rotation {rotation:.2f} deg, flip {flip}; phase "
        f"range {float(np.ptp(phase)):.3g} rad -> {output}"
    )
