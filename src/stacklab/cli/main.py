"""The ``stacklab`` command line.

Commands
--------
``stacklab info``
    Versions, backends (CuPy, GPU, Dask, numba, Zarr) and the registered demo sections.
``stacklab demo``
    Run the demo sections on simulated data, print a table of metrics, write an HTML report.
``stacklab <domain> ...``
    One sub-command group per domain (beads, stem, ptycho, speckle, smlm).

Adding a domain command group
-----------------------------
Write a :func:`click.group` named as in :data:`DOMAIN_COMMANDS` in the domain's ``cli.py``
(e.g. ``stacklab/beads/cli.py`` defining ``beads``) and give it a one-line summary in
:data:`DOMAIN_HELP`. The module is imported only when its command is invoked (``stacklab --help``
stays fast and shows the summary); a module that does not exist is simply not listed. Keep heavy
imports inside the command functions. Raise :mod:`stacklab.errors` exceptions (or ``ValueError``,
``TypeError``, ``OSError``) for bad input: the root group prints them as one ``Error: ...`` line
and exits with status 1 (``stacklab -vv`` or ``--debug`` shows the traceback). Print results with
:func:`click.echo`; tables can use :func:`format_table`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ._group import StacklabGroup, configure_logging

__all__ = ["DOMAIN_COMMANDS", "DOMAIN_HELP", "cli", "demo_table", "format_table", "main"]

logger = logging.getLogger(__name__)

#: Domain command groups, ``name -> "module:attribute"``, imported lazily.
DOMAIN_COMMANDS: dict[str, str] = {
    "beads": "stacklab.beads.cli:beads",
    "stem": "stacklab.stem4d.cli:stem",
    "ptycho": "stacklab.ptycho.cli:ptycho",
    "speckle": "stacklab.speckle.cli:speckle",
    "smlm": "stacklab.smlm.cli:smlm",
}

#: One-line summaries shown by ``stacklab --help`` without importing the domain.
DOMAIN_HELP: dict[str, str] = {
    "beads": "Magnetic-tweezers bead tracking: XYZ of beads from image stacks.",
    "stem": "4D-STEM: clean, count and bin datacubes; find diffraction peaks.",
    "ptycho": "Ptychography: coordinate transforms, forward models, reconstructions.",
    "speckle": "X-ray near-field speckle tracking: wavefront and pixel maps.",
    "smlm": "Single-molecule localization microscopy: localize, correct drift, render.",
}


@click.group(
    "stacklab",
    cls=StacklabGroup,
    lazy_commands=DOMAIN_COMMANDS,
    lazy_help=DOMAIN_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(
    __version__, "--version", prog_name="stacklab", message="%(prog)s %(version)s"
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Show log messages: -v for INFO, -vv for DEBUG and tracebacks of errors.",
)
@click.option("--debug", is_flag=True, help="DEBUG logging and full tracebacks of errors.")
def cli(verbose: int, debug: bool) -> None:
    """stacklab: turn stacks of detector frames into physical measurements.

    Run `stacklab demo --quick` to see every domain measure simulated data with known answers,
    and `stacklab info` to see which backends (GPU, Dask, numba) this installation can use.
    """
    click.get_current_context().call_on_close(configure_logging(verbose, debug=debug))


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[int] = ()
) -> str:
    """Format rows as a plain-text table with columns padded to equal width.

    Parameters
    ----------
    headers : sequence of str
        Column names.
    rows : sequence of sequences
        Cell values (converted with ``str``); each row has ``len(headers)`` cells.
    right : sequence of int
        Indices of right-aligned (numeric) columns.

    Returns
    -------
    str
        Header line followed by one line per row, columns separated by two spaces, no trailing
        spaces.
    """
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


#: Columns of the ``stacklab demo`` table.
DEMO_COLUMNS = ("domain", "metric", "value", "unit", "target", "ok", "seconds")


def demo_table(sections: Sequence[Any]) -> str:
    """Format demo sections as the table printed by ``stacklab demo``.

    Parameters
    ----------
    sections : sequence of stacklab.demo.DemoSection
        Results of :func:`stacklab.demo.run`.

    Returns
    -------
    str
        Columns ``domain, metric, value, unit, target, ok, seconds``; one row per metric, ``ok``
        is ``PASS``, ``FAIL`` or ``-`` (no target), ``seconds`` is the section's wall time.
    """
    from ..report import format_value

    rows = []
    for s in sections:
        for m in s.metrics or ():
            ok = "-" if m.ok is None else ("PASS" if m.ok else "FAIL")
            rows.append(
                (
                    s.domain or s.title,
                    m.name,
                    format_value(m.value),
                    m.unit,
                    m.target,
                    ok,
                    f"{s.seconds:.2f}",
                )
            )
    return format_table(DEMO_COLUMNS, rows, right=(2, 6))


def _headless_matplotlib() -> None:
    """Make sure figures are drawn with Agg (never open a window)."""
    if "matplotlib" not in sys.modules:
        os.environ.setdefault("MPLBACKEND", "Agg")
    elif "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the information as JSON.")
def info(as_json: bool) -> None:
    """Show versions, available backends (CuPy/GPU, Dask, numba, Zarr) and demo sections."""
    import json

    from .. import demo
    from ..report import environment_info
    from ._group import module_exists

    data: dict[str, Any] = environment_info()
    data["dask available"] = _yes(module_exists("dask.array"))
    data["distributed available"] = _yes(module_exists("distributed"))
    data["numba available"] = _yes(module_exists("numba"))
    data["zarr available"] = _yes(module_exists("zarr"))
    data["hdf5plugin available"] = _yes(module_exists("hdf5plugin"))
    try:
        data["demo sections"] = ", ".join(demo.available()) or "none"
    except Exception as exc:  # a broken domain module must not hide the rest of the report
        logger.debug("demo registry failed", exc_info=True)
        data["demo sections"] = f"error ({type(exc).__name__}: {exc})"
    present = [
        name for name, target in DOMAIN_COMMANDS.items() if module_exists(target.partition(":")[0])
    ]
    data["domain commands"] = ", ".join(present) or "none"
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    width = max(len(k) for k in data) + 1
    for key, value in data.items():
        click.echo(f"{key + ':':<{width}} {value}")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("stacklab-demo"),
    show_default=True,
    help="Folder for report.html (created if needed).",
)
@click.option("--quick", is_flag=True, help="Smaller problems: a few seconds per section.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulations.")
@click.option(
    "--only",
    multiple=True,
    metavar="NAME",
    help="Run only this section (repeat, or comma-separate, for several). See `stacklab info`.",
)
@click.option("--no-report", is_flag=True, help="Print the table only; write no HTML report.")
def demo(out: Path, quick: bool, seed: int, only: tuple[str, ...], no_report: bool) -> None:
    """Run every domain on simulated data with known answers and report how close it gets.

    Prints one row per metric (domain, metric, value, unit, target, ok, seconds), writes
    OUT/report.html with figures, and exits with status 1 if any metric misses its target.
    """
    _headless_matplotlib()
    from .. import demo as registry
    from ..report import write_report

    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    start = time.perf_counter()
    sections = registry.run(names or None, quick=quick, seed=seed)
    elapsed = time.perf_counter() - start
    if not sections:
        raise click.ClickException("no demo sections are registered")
    click.echo(demo_table(sections))
    metrics = [m for s in sections for m in s.metrics]
    failed = [(s, m) for s in sections for m in s.metrics if m.ok is False]
    passed = sum(m.ok is True for m in metrics)
    click.echo(
        f"\n{len(sections)} sections, {len(metrics)} metrics: {passed} passed, "
        f"{len(failed)} failed, {len(metrics) - passed - len(failed)} without target "
        f"({elapsed:.1f} s)"
    )
    if not no_report:
        out.mkdir(parents=True, exist_ok=True)
        path = write_report(
            sections, out / "report.html", title=f"stacklab {__version__} demo (seed {seed})"
        )
        click.echo(f"report: {path}")
    if failed:
        which = ", ".join(f"{s.domain}: {m.name}" for s, m in failed)
        raise click.ClickException(f"{len(failed)} metric(s) missed their targets ({which})")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``stacklab`` console script.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default ``sys.argv[1:]``).
    """
    cli.main(args=list(argv) if argv is not None else None, prog_name="stacklab")


if __name__ == "__main__":  # pragma: no cover
    main()
