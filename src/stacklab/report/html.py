"""Write demo/pipeline results as one self-contained HTML file.

The file needs nothing beside itself: the stylesheet is inlined and figures are embedded as
base64 PNG images rendered with matplotlib's Agg renderer (no window is ever opened). All text
coming from sections (titles, metric names, units, captions, explanations, environment values) is
HTML-escaped. The whole document is rendered in memory before anything touches the disk, and it is
then written to a temporary file in the target folder and renamed over ``path``, so a failure (a
figure that cannot be drawn, a full disk, an interrupt) never leaves a partial report behind.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import importlib
import importlib.metadata
import io
import logging
import math
import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["environment_info", "format_value", "render_report", "write_report"]

logger = logging.getLogger(__name__)

_FALLBACK_CSS = "body{font-family:sans-serif;margin:2rem}table{border-collapse:collapse}"
_OK_MARK = {True: ("✓", "ok"), False: ("✗", "bad"), None: ("&ndash;", "na")}

#: Distributions whose versions are listed by :func:`environment_info`, in display order.
_PACKAGES = (
    "numpy",
    "scipy",
    "h5py",
    "pandas",
    "tifffile",
    "dask",
    "distributed",
    "numba",
    "zarr",
    "hdf5plugin",
    "matplotlib",
    "click",
)


def format_value(value: Any) -> str:
    """Format a metric value for display (4 significant digits, integers as integers).

    Parameters
    ----------
    value : float, int or None
        The value to format.

    Returns
    -------
    str
        E.g. ``"0.01234"``, ``"1.235e+06"``, ``"42"``, ``"nan"``; non-numbers as ``str(value)``.
    """
    if isinstance(value, bool) or value is None:
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number) or math.isinf(number):
        return str(number)
    if number == int(number) and abs(number) < 1e6:
        return str(int(number))
    return f"{number:.4g}"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _gpu_info() -> tuple[str, str, str]:
    """Return (cupy version or state, GPU usable yes/no, device description)."""
    from .. import backend

    try:
        cupy = importlib.import_module("cupy")
    except ImportError:
        return "not installed", "no", "none"
    except Exception as exc:  # a broken CUDA install can raise anything at import
        return f"import failed ({type(exc).__name__}: {exc})", "no", "none"
    cupy_version = str(getattr(cupy, "__version__", "unknown"))
    if not backend.gpu_available():
        return cupy_version, "no", "none (cupy.cuda.is_available() is False)"
    try:
        device = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(device.id)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        total = props.get("totalGlobalMem", 0) / 2**30
        runtime = cupy.cuda.runtime.runtimeGetVersion()
        return (
            cupy_version,
            "yes",
            f"{name}, {total:.0f} GiB (device {device.id}, CUDA runtime {runtime})",
        )
    except Exception as exc:  # pragma: no cover - depends on the driver
        return cupy_version, "yes", f"unknown ({type(exc).__name__}: {exc})"


def environment_info() -> dict[str, str]:
    """Describe the software and hardware environment.

    Returns
    -------
    dict of str to str
        Keys, in order: ``stacklab``, ``python``, ``platform``, ``CPU cores``, one per package
        version (numpy, scipy, h5py, pandas, tifffile, dask, distributed, numba, zarr, hdf5plugin,
        matplotlib, click; ``"not installed"`` when absent), ``cupy`` (version or state),
        ``GPU usable`` (``"yes"``/``"no"``, from :func:`stacklab.backend.gpu_available`) and
        ``GPU device`` (name and memory, or ``"none"``).
    """
    from .. import __version__

    info = {
        "stacklab": __version__,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "CPU cores": str(os.cpu_count()),
    }
    for dist in _PACKAGES:
        info[dist] = _version(dist)
    cupy_state, usable, device = _gpu_info()
    info["cupy"] = cupy_state
    info["GPU usable"] = usable
    info["GPU device"] = device
    return info


def _css() -> str:
    try:
        from importlib.resources import files

        return files("stacklab.report").joinpath("style.css").read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError):  # pragma: no cover - only in a broken install
        logger.warning("report stylesheet not found; using a minimal one")
        return _FALLBACK_CSS


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, i = f"sec-{base}", 2
    while slug in used:
        slug, i = f"sec-{base}-{i}", i + 1
    used.add(slug)
    return slug


def _figure_png(figure: Any, caption: str) -> str:
    """Render a matplotlib figure to a base64 PNG string."""
    if not hasattr(figure, "savefig"):
        raise TypeError(
            f"figure {caption!r} must be a matplotlib Figure (with savefig), "
            f"got {type(figure).__name__}"
        )
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _metric_rows(section: Any, *, with_domain: bool, anchor: str) -> list[str]:
    rows = []
    domain = section.domain or section.title
    metrics = tuple(section.metrics) or (None,)
    for metric in metrics:
        cells = []
        if with_domain:
            cells.append(f'<td><a href="#{anchor}">{_esc(domain)}</a></td>')
        if metric is None:
            cells.append('<td colspan="5">(no metrics)</td><td class="na">&ndash;</td>')
        else:
            mark, cls = _OK_MARK.get(metric.ok, _OK_MARK[None])
            cells.extend(
                [
                    f"<td>{_esc(metric.name)}</td>",
                    f'<td class="num">{_esc(format_value(metric.value))}</td>',
                    f"<td>{_esc(metric.unit)}</td>",
                    f"<td>{_esc(metric.target)}</td>",
                    f'<td class="{cls}">{mark}</td>',
                ]
            )
        if with_domain:
            cells.append(f'<td class="num">{float(section.seconds):.2f}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return rows


def render_report(
    sections: Sequence[Any],
    *,
    title: str = "stacklab report",
    environment: dict[str, Any] | None = None,
) -> str:
    """Render sections into the text of a self-contained HTML document.

    Parameters
    ----------
    sections : sequence of stacklab.demo.DemoSection
        Results to report, in display order.
    title : str
        Document title and main heading.
    environment : dict, optional
        Name -> value pairs shown in the environment block; default :func:`environment_info`.

    Returns
    -------
    str
        The HTML document.

    Raises
    ------
    TypeError
        If a figure is not a matplotlib Figure.
    """
    sections = list(sections)
    env = environment_info() if environment is None else dict(environment)
    n_metrics = sum(len(s.metrics) for s in sections)
    failed = [(s, m) for s in sections for m in s.metrics if m.ok is False]
    if failed:
        status = (
            f'<p class="status bad">{len(failed)} of {n_metrics} metrics missed their targets</p>'
        )
    else:
        status = f'<p class="status ok">All {n_metrics} metrics met their targets</p>'
    used: set[str] = set()
    anchors = [_slug(s.domain or s.title, used) for s in sections]
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    total = sum(float(s.seconds) for s in sections)

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>",
        f"<style>\n{_css()}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="meta">Generated {_esc(stamp)} by stacklab {_esc(env.get("stacklab", ""))}; '
        f"{len(sections)} sections, {total:.1f} s of work.</p>",
        status,
        '<h2 id="summary">Summary</h2>',
        "<table>",
        "<thead><tr><th>domain</th><th>metric</th><th>value</th><th>unit</th><th>target</th>"
        "<th>ok</th><th>seconds</th></tr></thead>",
        "<tbody>",
    ]
    for section, anchor in zip(sections, anchors):
        parts.extend(_metric_rows(section, with_domain=True, anchor=anchor))
    parts.extend(["</tbody>", "</table>"])

    for section, anchor in zip(sections, anchors):
        parts.append(f'<section id="{anchor}">')
        parts.append(f"<h2>{_esc(section.title)}</h2>")
        parts.append(
            f'<p class="meta">domain <code>{_esc(section.domain or "-")}</code>, '
            f"{float(section.seconds):.2f} s</p>"
        )
        if section.text:
            paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", str(section.text))]
            parts.append('<div class="text">')
            parts.extend(f"<p>{_esc(p)}</p>" for p in paragraphs if p.strip())
            parts.append("</div>")
        parts.append("<table>")
        parts.append(
            "<thead><tr><th>metric</th><th>value</th><th>unit</th><th>target</th><th>ok</th>"
            "</tr></thead><tbody>"
        )
        parts.extend(_metric_rows(section, with_domain=False, anchor=anchor))
        parts.append("</tbody></table>")
        for caption, figure in section.figures:
            png = _figure_png(figure, str(caption))
            parts.append(
                f'<figure><img src="data:image/png;base64,{png}" alt="{_esc(caption)}">'
                f"<figcaption>{_esc(caption)}</figcaption></figure>"
            )
        parts.append("</section>")

    parts.append('<h2 id="environment">Environment</h2>')
    parts.append('<dl class="env">')
    for key, value in env.items():
        parts.append(f"<dt>{_esc(key)}</dt><dd>{_esc(value)}</dd>")
    parts.extend(["</dl>", "</body>", "</html>", ""])
    return "\n".join(parts)


def write_report(
    sections: Sequence[Any],
    path: str | os.PathLike,
    *,
    title: str = "stacklab report",
    environment: dict[str, Any] | None = None,
) -> Path:
    """Write sections to a self-contained HTML file, atomically.

    Parameters
    ----------
    sections : sequence of stacklab.demo.DemoSection
        Results to report, in display order.
    path : str or path-like
        Output file (e.g. ``"stacklab-demo/report.html"``). Its folder must exist.
    title : str
        Document title and main heading.
    environment : dict, optional
        Name -> value pairs for the environment block; default :func:`environment_info`.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError
        If a figure is not a matplotlib Figure (nothing is written).
    OSError
        If the folder does not exist or is not writable (nothing is written).
    """
    from ..io.atomic import atomic_path

    path = Path(path)
    text = render_report(sections, title=title, environment=environment)
    with atomic_path(path) as tmp:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
    logger.info("report written to %s (%.0f kB)", path, len(text) / 1e3)
    return path
