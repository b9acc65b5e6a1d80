"""Registry of demo sections: each domain shows, on simulated data, that it measures what it should.

A domain registers one function that simulates data with a known answer, runs its pipeline on it,
and returns a :class:`DemoSection` with the figures of merit (:class:`Metric`), optional matplotlib
figures and a short text. ``stacklab demo`` runs every registered section, prints a table and writes
an HTML report (:func:`stacklab.report.write_report`).

Writing a section::

    from stacklab.demo import DemoSection, Metric, at_most, new_figure, register

    @register("beads", title="Bead tracking", order=10)
    def beads_demo(*, quick: bool, seed: int) -> DemoSection:
        ...                                   # simulate with seed, run the pipeline, time it
        return DemoSection(
            title="Bead tracking",
            metrics=(at_most("xy RMS error", rms, 0.01, unit="px"),),
            seconds=elapsed,
            figures=(("z lookup", fig),),
        )

Sections are found by importing the modules listed in :data:`DEMO_MODULES`; a module that does not
exist (a domain not written yet, or left out of an install) is skipped, any other import error is
raised. Figures should be created with :func:`new_figure` (a bare :class:`matplotlib.figure.Figure`,
never pyplot) so that no window opens and no global figure state leaks.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "DEMO_MODULES",
    "DemoSection",
    "Metric",
    "at_least",
    "at_most",
    "available",
    "new_figure",
    "register",
    "run",
]

logger = logging.getLogger(__name__)

#: Modules that register demo sections when imported, in import order.
DEMO_MODULES: tuple[str, ...] = (
    "stacklab.core.demo",
    "stacklab.beads.demo",
    "stacklab.stem4d.demo",
    "stacklab.ptycho.demo",
    "stacklab.speckle.demo",
    "stacklab.smlm.demo",
)


@dataclass(frozen=True)
class Metric:
    """One figure of merit of a demo section.

    Attributes
    ----------
    name : str
        What is measured, e.g. ``"xy RMS error"``.
    value : float
        The measured value.
    unit : str
        Unit of ``value``, e.g. ``"px"`` or ``"nm"`` (empty for dimensionless numbers).
    target : str
        Human-readable acceptance criterion, e.g. ``"<= 0.01"`` (empty when none applies).
    ok : bool or None
        Whether ``value`` meets ``target``; None when no target applies.
    """

    name: str
    value: float
    unit: str = ""
    target: str = ""
    ok: bool | None = None


@dataclass(frozen=True)
class DemoSection:
    """Result of one domain's demo.

    Attributes
    ----------
    title : str
        Heading of the section, e.g. ``"Bead tracking"``.
    metrics : tuple of Metric
        Figures of merit, in display order.
    seconds : float
        Wall time of the domain's work (simulation excluded where the section can separate it), s.
    figures : tuple of (str, matplotlib.figure.Figure)
        ``(caption, figure)`` pairs embedded in the HTML report.
    text : str
        Plain-text explanation (what was simulated, what the numbers mean). Blank lines separate
        paragraphs.
    domain : str
        Registered name of the section (``"core"``, ``"beads"``...). Filled in by :func:`run`;
        sections need not set it.
    """

    title: str
    metrics: tuple[Metric, ...]
    seconds: float
    figures: tuple[tuple[str, Any], ...] = ()
    text: str = ""
    domain: str = ""

    @property
    def ok(self) -> bool:
        """False if any metric has ``ok=False``, else True."""
        return not any(m.ok is False for m in self.metrics)


@dataclass(frozen=True)
class _Entry:
    name: str
    title: str
    order: int
    func: Callable[..., DemoSection]


_REGISTRY: dict[str, _Entry] = {}


def register(
    name: str, *, title: str, order: int = 100
) -> Callable[[Callable[..., DemoSection]], Callable[..., DemoSection]]:
    """Decorator that registers a demo section.

    Parameters
    ----------
    name : str
        Short name used by ``stacklab demo --only NAME`` (e.g. ``"beads"``).
    title : str
        Human-readable title, used when the section fails before returning its own.
    order : int
        Sections run and are reported in ascending ``order`` (ties broken by name).

    Returns
    -------
    callable
        A decorator for ``func(*, quick: bool, seed: int) -> DemoSection``; it returns ``func``
        unchanged.

    Raises
    ------
    ValueError
        If ``name`` is empty or already registered by a different function.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string, got {name!r}")

    def decorator(func: Callable[..., DemoSection]) -> Callable[..., DemoSection]:
        old = _REGISTRY.get(name)
        if old is not None and _qualname(old.func) != _qualname(func):
            raise ValueError(
                f"demo section {name!r} is already registered by {_qualname(old.func)}; "
                f"cannot register {_qualname(func)} under the same name"
            )
        _REGISTRY[name] = _Entry(name=name, title=title, order=int(order), func=func)
        return func

    return decorator


def _qualname(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def _is_missing(exc: ModuleNotFoundError, module: str) -> bool:
    """True if ``exc`` says that ``module`` itself (or a parent package of it) does not exist."""
    missing = exc.name or ""
    return bool(missing) and (module == missing or module.startswith(missing + "."))


def available() -> list[str]:
    """Import the modules of :data:`DEMO_MODULES` and return the registered section names.

    A module that does not exist is skipped (logged at DEBUG). A module that exists but fails to
    import, including one whose own imports are missing, raises.

    Returns
    -------
    list of str
        Registered names sorted by ``order`` then name.
    """
    for module in DEMO_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not _is_missing(exc, module):
                raise
            logger.debug("demo module %s not present; skipped", module)
    return [e.name for e in sorted(_REGISTRY.values(), key=lambda e: (e.order, e.name))]


def run(
    names: Iterable[str] | None = None, *, quick: bool = False, seed: int = 0
) -> list[DemoSection]:
    """Run demo sections and return their results.

    A section that raises does not stop the others: it is returned as a failed
    :class:`DemoSection` (a metric ``"section ran"`` with ``ok=False`` and the error as text) and
    the traceback is logged at ERROR level.

    Parameters
    ----------
    names : iterable of str, optional
        Sections to run, in registry order; default all of :func:`available`.
    quick : bool
        Ask sections for a smaller, faster version (a few seconds each).
    seed : int
        Seed passed to every section's simulation.

    Returns
    -------
    list of DemoSection
        One per section run, with ``domain`` set to its registered name.

    Raises
    ------
    ValueError
        If a requested name is not registered.
    """
    known = available()
    if names is None:
        selected = known
    else:
        wanted = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in wanted if n not in _REGISTRY]
        if unknown:
            raise ValueError(
                f"unknown demo section(s) {', '.join(map(repr, unknown))}; "
                f"available: {', '.join(known) or 'none'}"
            )
        selected = [n for n in known if n in wanted]
    results = []
    for name in selected:
        results.append(_run_one(_REGISTRY[name], quick=quick, seed=seed))
    return results


def _run_one(entry: _Entry, *, quick: bool, seed: int) -> DemoSection:
    logger.info("demo %s: running (quick=%s, seed=%d)", entry.name, quick, seed)
    start = time.perf_counter()
    try:
        section = entry.func(quick=quick, seed=seed)
        if not isinstance(section, DemoSection):
            raise TypeError(
                f"demo section {entry.name!r} returned {type(section).__name__}, "
                "expected a DemoSection"
            )
    except Exception as exc:
        elapsed = time.perf_counter() - start
        message = f"{type(exc).__name__}: {exc}"
        logger.error("demo %s failed after %.2f s: %s", entry.name, elapsed, message, exc_info=True)
        return DemoSection(
            title=entry.title,
            metrics=(Metric("section ran", math.nan, target="no error", ok=False),),
            seconds=elapsed,
            text=f"This section failed and produced no results.\n\n{message}",
            domain=entry.name,
        )
    section = replace(section, domain=entry.name, metrics=tuple(section.metrics))
    for m in section.metrics:
        logger.info(
            "demo %s: %s = %s %s (target %s, ok=%s)",
            entry.name,
            m.name,
            m.value,
            m.unit,
            m.target or "-",
            m.ok,
        )
    logger.info("demo %s: done in %.2f s", entry.name, section.seconds)
    return section


def at_most(name: str, value: float, limit: float, *, unit: str = "") -> Metric:
    """Return a :class:`Metric` that is ok when ``value <= limit`` (NaN is never ok).

    Parameters
    ----------
    name : str
        Metric name.
    value : float
        Measured value, in ``unit``.
    limit : float
        Largest acceptable value, in ``unit``.
    unit : str
        Unit label.
    """
    return _bounded(name, value, limit, unit, "<=")


def at_least(name: str, value: float, limit: float, *, unit: str = "") -> Metric:
    """Return a :class:`Metric` that is ok when ``value >= limit`` (NaN is never ok).

    Parameters
    ----------
    name : str
        Metric name.
    value : float
        Measured value, in ``unit``.
    limit : float
        Smallest acceptable value, in ``unit``.
    unit : str
        Unit label.
    """
    return _bounded(name, value, limit, unit, ">=")


def _bounded(name: str, value: float, limit: float, unit: str, op: str) -> Metric:
    """A :class:`Metric` with target ``"<op> limit"``, ok when the comparison holds."""
    value = float(value)
    ok = value <= limit if op == "<=" else value >= limit
    return Metric(name, value, unit, f"{op} {limit:g}", bool(ok))


def new_figure(*, figsize: tuple[float, float] = (6.4, 4.0)) -> Any:
    """Return a new :class:`matplotlib.figure.Figure` that is not managed by pyplot.

    Parameters
    ----------
    figsize : (float, float)
        Width and height in inches.

    Returns
    -------
    matplotlib.figure.Figure
        Draws with the Agg renderer when saved; never opens a window.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install 'stacklab[plot]'``).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is in the test extra
        raise ImportError("demo figures need matplotlib: pip install 'stacklab[plot]'") from exc
    return Figure(figsize=figsize, layout="constrained")
