"""The demo registry: registration, ordering, failure isolation, module discovery."""

from __future__ import annotations

import logging
import math
import sys
import textwrap

import pytest

from stacklab import demo
from stacklab.demo import DemoSection, Metric, at_least, at_most


@pytest.fixture
def registry(monkeypatch):
    """An empty registry that imports no real demo modules; restored after the test."""
    monkeypatch.setattr(demo, "_REGISTRY", {})
    monkeypatch.setattr(demo, "DEMO_MODULES", ())
    return demo


def _section(title, value, ok=True):
    return DemoSection(
        title=title, metrics=(Metric("error", value, "px", "<= 1", ok),), seconds=0.5
    )


def test_register_and_run_in_order(registry):
    @registry.register("second", title="Second", order=20)
    def second(*, quick, seed):
        return _section("Second", seed + (0.5 if quick else 0.0))

    @registry.register("first", title="First", order=10)
    def first(*, quick, seed):
        return _section("First", 2.0 * seed)

    assert registry.available() == ["first", "second"]
    sections = registry.run(quick=True, seed=3)
    assert [s.domain for s in sections] == ["first", "second"]
    assert [s.title for s in sections] == ["First", "Second"]
    # quick and seed reach the sections.
    assert sections[0].metrics[0].value == 6.0
    assert sections[1].metrics[0].value == 3.5
    # A selection runs only the named sections, still in registry order.
    only = registry.run(["second", "first"], seed=1)
    assert [s.domain for s in only] == ["first", "second"]
    assert [s.domain for s in registry.run("second")] == ["second"]


def test_register_returns_function_and_rejects_clash(registry):
    def a(*, quick, seed):
        return _section("A", 0.0)

    assert registry.register("a", title="A")(a) is a
    registry.register("a", title="A again")(a)  # same function again (module reload): fine

    def b(*, quick, seed):
        return _section("B", 0.0)

    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", title="B")(b)
    with pytest.raises(ValueError, match="name"):
        registry.register("", title="empty")


def test_unknown_name_raises_with_available(registry):
    registry.register("only", title="Only")(lambda *, quick, seed: _section("Only", 0.0))
    with pytest.raises(ValueError, match=r"'nope'.*available: only"):
        registry.run(["nope"])


def test_failing_section_is_reported_not_raised(registry, caplog):
    @registry.register("bad", title="Bad section", order=1)
    def bad(*, quick, seed):
        raise RuntimeError("simulated failure <xyz>")

    @registry.register("good", title="Good section", order=2)
    def good(*, quick, seed):
        return _section("Good section", 0.25)

    with caplog.at_level(logging.ERROR, logger="stacklab.demo"):
        sections = registry.run()
    assert [s.domain for s in sections] == ["bad", "good"]
    failed, fine = sections
    assert failed.title == "Bad section"
    assert not failed.ok
    assert [m.ok for m in failed.metrics] == [False]
    assert math.isnan(failed.metrics[0].value)
    assert "RuntimeError: simulated failure <xyz>" in failed.text
    assert fine.ok and fine.metrics[0].value == 0.25
    records = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(records) == 1
    assert "bad" in records[0].getMessage()
    assert records[0].exc_info is not None  # the traceback is logged


def test_section_returning_wrong_type_fails(registry):
    registry.register("wrong", title="Wrong")(lambda *, quick, seed: {"not": "a section"})
    (section,) = registry.run()
    assert not section.ok
    assert "TypeError" in section.text and "DemoSection" in section.text


def test_available_skips_missing_modules(registry, monkeypatch):
    monkeypatch.setattr(
        demo,
        "DEMO_MODULES",
        ("stacklab.no_such_domain.demo", "stacklab_no_such_package.demo", "stacklab.demo_nope"),
    )
    registry.register("x", title="X")(lambda *, quick, seed: _section("X", 0.0))
    assert registry.available() == ["x"]


def test_available_imports_modules_and_propagates_other_errors(registry, monkeypatch, tmp_path):
    good = "stacklab_testdemo_good_mod"
    bad = "stacklab_testdemo_bad_mod"
    (tmp_path / f"{good}.py").write_text(
        textwrap.dedent(
            """
            from stacklab.demo import DemoSection, Metric, register

            @register("fromfile", title="From a module", order=5)
            def section(*, quick, seed):
                return DemoSection("From a module", (Metric("m", 1.0),), 0.0)
            """
        )
    )
    (tmp_path / f"{bad}.py").write_text("import stacklab_dependency_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        monkeypatch.setattr(demo, "DEMO_MODULES", (good,))
        assert registry.available() == ["fromfile"]
        monkeypatch.setattr(demo, "DEMO_MODULES", (good, bad))
        # The module exists but one of ITS imports is missing: that is a bug, not "absent".
        with pytest.raises(ModuleNotFoundError, match="stacklab_dependency_that_is_not"):
            registry.available()
    finally:
        sys.modules.pop(good, None)
        sys.modules.pop(bad, None)


def test_metric_helpers():
    m = at_most("rms", 0.004, 0.01, unit="px")
    assert (m.value, m.unit, m.target, m.ok) == (0.004, "px", "<= 0.01", True)
    assert at_most("rms", 0.02, 0.01).ok is False
    assert at_most("rms", float("nan"), 0.01).ok is False
    assert at_least("valid fraction", 0.99, 0.95).ok is True
    assert at_least("valid fraction", 0.5, 0.95).ok is False
    assert at_least("x", float("nan"), 0.0).ok is False
    assert Metric("no target", 1.0).ok is None


def test_section_ok_property():
    assert _section("a", 0.0, ok=True).ok
    assert not _section("a", 0.0, ok=False).ok
    assert DemoSection("a", (Metric("n", 1.0, ok=None),), 0.0).ok


def test_new_figure_is_not_pyplot_managed():
    import io

    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = demo.new_figure(figsize=(3.0, 2.0))
    fig.add_subplot().plot([0, 1], [1, 0])
    assert plt.get_fignums() == before  # pyplot does not know it: nothing to close, no window
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    assert tuple(fig.get_size_inches()) == (3.0, 2.0)
