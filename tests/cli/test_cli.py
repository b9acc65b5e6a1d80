"""The ``stacklab`` command: info, demo, help everywhere, one-line errors, lazy domain groups."""

from __future__ import annotations

import json
import logging
import sys
import textwrap

import click
import numpy as np
import pytest
from click.testing import CliRunner

import stacklab
from stacklab import demo as demo_registry
from stacklab.cli._group import LazyGroup, module_exists
from stacklab.cli.main import DEMO_COLUMNS, cli, demo_table, format_table, main
from stacklab.demo import DemoSection, Metric
from stacklab.errors import ShapeError


@pytest.fixture
def runner():
    return CliRunner()


def _all_command_paths(group, ctx, prefix=()):
    """Every command path reachable from ``group`` (domain groups are imported here)."""
    paths = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"listed command {name!r} cannot be loaded"
        path = (*prefix, name)
        paths.append(path)
        if isinstance(command, click.Group):
            sub_ctx = click.Context(command, info_name=name, parent=ctx)
            paths.extend(_all_command_paths(command, sub_ctx, path))
    return paths


def test_help_of_every_command(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    assert "demo" in result.stdout and "info" in result.stdout
    ctx = click.Context(cli, info_name="stacklab")
    paths = _all_command_paths(cli, ctx)
    assert ("demo",) in paths and ("info",) in paths
    for path in paths:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: stacklab " + " ".join(path) in result.stdout


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"stacklab {stacklab.__version__}"


def test_info_lists_versions_backends_and_demos(runner):
    result = runner.invoke(cli, ["info"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    lines = dict(line.split(":", 1) for line in out.splitlines())
    lines = {k.strip(): v.strip() for k, v in lines.items()}
    assert lines["stacklab"] == stacklab.__version__
    assert lines["numpy"] == np.__version__
    assert lines["python"].startswith(".".join(map(str, sys.version_info[:2])))
    assert lines["GPU usable"] in ("yes", "no")
    for key in (
        "scipy",
        "cupy",
        "GPU device",
        "dask available",
        "numba available",
        "zarr available",
        "hdf5plugin available",
        "distributed available",
    ):
        assert key in lines
    assert "core" in lines["demo sections"].split(", ")

    as_json = runner.invoke(cli, ["info", "--json"])
    assert as_json.exit_code == 0
    data = json.loads(as_json.stdout)
    assert data["numpy"] == np.__version__ and "GPU usable" in data


def test_demo_quick_core_writes_report(runner, tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(cli, ["demo", "--quick", "--only", "core", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == list(DEMO_COLUMNS)
    rows = [line for line in lines[1:] if line.startswith("core ")]
    assert len(rows) >= 3 and all(row.split()[-2] == "PASS" for row in rows)
    assert any("shift RMS error" in row for row in rows)
    assert f"report: {out / 'report.html'}" in result.stdout
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Core kernels and engine" in html
    assert "<img" in html and "data:image/png;base64," in html


def test_verbose_shows_info_logs_and_restores_logging(runner, tmp_path):
    logger = logging.getLogger("stacklab")
    level, handlers = logger.level, list(logger.handlers)
    quiet = runner.invoke(cli, ["demo", "--quick", "--only", "core", "--no-report"])
    assert quiet.exit_code == 0
    assert "INFO" not in quiet.stderr
    loud = runner.invoke(cli, ["-v", "demo", "--quick", "--only", "core", "--no-report"])
    assert loud.exit_code == 0
    assert "INFO stacklab.demo: demo core: running" in loud.stderr
    assert not (tmp_path / "stacklab-demo").exists()
    # Running the CLI in-process leaves the logging configuration as it was.
    assert logger.level == level and logger.handlers == handlers


@pytest.fixture
def fake_demos(monkeypatch):
    """Replace the demo registry by two fake sections, one of which misses its target."""
    monkeypatch.setattr(demo_registry, "_REGISTRY", {})
    monkeypatch.setattr(demo_registry, "DEMO_MODULES", ())

    @demo_registry.register("good", title="Good <section>", order=1)
    def good(*, quick, seed):
        return DemoSection("Good <section>", (Metric("rms", 0.5, "px", "<= 1", True),), 0.01)

    @demo_registry.register("bad", title="Bad", order=2)
    def bad(*, quick, seed):
        return DemoSection("Bad", (Metric("rms", 2.0, "px", "<= 1", False),), 0.02)


def test_demo_exits_nonzero_when_a_metric_fails(runner, tmp_path, fake_demos):
    result = runner.invoke(cli, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "PASS" in result.stdout
    assert result.stderr.strip() == "Error: 1 metric(s) missed their targets (bad: rms)"
    html = (tmp_path / "report.html").read_text(encoding="utf-8")  # report written anyway
    assert "Good &lt;section&gt;" in html and "1 of 2 metrics missed" in html
    # --only with commas and repeats selects sections.
    only = runner.invoke(cli, ["demo", "--no-report", "--only", "good,good", "--only", "good"])
    assert only.exit_code == 0, only.output
    assert "bad" not in only.stdout


def test_demo_failing_section_is_reported(runner, tmp_path, monkeypatch):
    monkeypatch.setattr(demo_registry, "_REGISTRY", {})
    monkeypatch.setattr(demo_registry, "DEMO_MODULES", ())

    @demo_registry.register("crash", title="Crash")
    def crash(*, quick, seed):
        raise ZeroDivisionError("no data")

    result = runner.invoke(cli, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "crash" in result.stdout and "FAIL" in result.stdout
    assert "ERROR stacklab.demo: demo crash failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert "ZeroDivisionError: no data" in (tmp_path / "report.html").read_text()


def test_unknown_demo_name_is_one_line_error(runner):
    result = runner.invoke(cli, ["demo", "--only", "no-such-domain", "--no-report"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: unknown demo section(s) 'no-such-domain'; available:")


@pytest.mark.parametrize(
    "exc",
    [
        ShapeError("stack must be a 3-D array,\n got 2-D"),
        ValueError("bad value"),
        TypeError("bad type"),
        FileNotFoundError(2, "No such file or directory", "missing.h5"),
        ImportError("needs the dask extra"),
    ],
)
def test_errors_are_one_line(runner, monkeypatch, exc):
    @click.command("boom")
    def boom():
        """Raise an error."""
        raise exc

    monkeypatch.setitem(cli.commands, "boom", boom)
    result = runner.invoke(cli, ["boom"])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.stderr
    if isinstance(exc, ShapeError):
        assert lines[0] == "Error: stack must be a 3-D array, got 2-D"

    # -vv and --debug let the exception through (CliRunner records it; a terminal shows it).
    for flags in (["-vv"], ["--debug"]):
        loud = runner.invoke(cli, [*flags, "boom"])
        assert loud.exit_code == 1
        assert loud.exception is exc


def test_bugs_are_not_hidden(runner, monkeypatch):
    @click.command("bug")
    def bug():
        """Raise a programming error."""
        raise KeyError("internal")

    monkeypatch.setitem(cli.commands, "bug", bug)
    result = runner.invoke(cli, ["bug"])
    assert isinstance(result.exception, KeyError)


def test_main_entry_point_exit_code(monkeypatch, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"stacklab {stacklab.__version__}"
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--only", "no-such-domain", "--no-report"])
    assert stop.value.code == 1
    assert capsys.readouterr().err.startswith("Error: unknown demo section")


def test_lazy_group_loads_only_on_use(runner, tmp_path, monkeypatch):
    pkg = "stacklab_testcli_lazy"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / pkg / "present.py").write_text(
        textwrap.dedent(
            """
            import click

            @click.group()
            def grp():
                '''Loaded group help.'''

            @grp.command()
            @click.argument("n", type=int)
            def double(n):
                '''Print 2 n.'''
                click.echo(2 * n)

            not_a_command = 3
            """
        )
    )
    (tmp_path / pkg / "broken.py").write_text("import stacklab_testcli_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    group = LazyGroup(
        name="root",
        lazy_commands={
            "present": f"{pkg}.present:grp",
            "absent": f"{pkg}.absent:grp",
            "nopkg": "stacklab_testcli_no_such_package.cli:grp",
            "broken": f"{pkg}.broken:grp",
            "wrong": f"{pkg}.present:not_a_command",
        },
        lazy_help={"present": "Summary without importing."},
    )
    try:
        assert module_exists(f"{pkg}.present") and not module_exists(f"{pkg}.absent")
        result = runner.invoke(group, ["--help"])
        assert result.exit_code == 0
        assert "present" in result.stdout and "Summary without importing." in result.stdout
        assert "absent" not in result.stdout and "nopkg" not in result.stdout
        assert f"{pkg}.present" not in sys.modules  # --help did not import it
        assert runner.invoke(group, ["present", "double", "21"]).stdout == "42\n"
        assert f"{pkg}.present" in sys.modules
        missing = runner.invoke(group, ["absent"])
        assert missing.exit_code == 2 and "No such command 'absent'" in missing.stderr
        broken = runner.invoke(group, ["broken"])
        assert isinstance(broken.exception, ModuleNotFoundError)
        wrong = runner.invoke(group, ["wrong"])
        assert isinstance(wrong.exception, TypeError)
        with pytest.raises(ValueError, match="module:attribute"):
            LazyGroup(name="x", lazy_commands={"a": "no_colon"})
    finally:
        for name in [m for m in sys.modules if m.startswith(pkg)]:
            del sys.modules[name]


def test_format_table_and_demo_table():
    text = format_table(["a", "num"], [["xx", 1.5], ["y", 10]], right=(1,))
    assert text.splitlines() == ["a   num", "xx  1.5", "y    10"]
    sections = [
        DemoSection(
            "T",
            (Metric("rms", 0.0123456, "px", "<= 0.1", True), Metric("n", 3.0)),
            1.0,
            domain="dom",
        )
    ]
    lines = demo_table(sections).splitlines()
    assert lines[1].split() == ["dom", "rms", "0.01235", "px", "<=", "0.1", "PASS", "1.00"]
    assert lines[2].split() == ["dom", "n", "3", "-", "1.00"]
