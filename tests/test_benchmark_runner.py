"""benchmarks/run.py end to end with a tiny fake benchmark and a fake reference venv."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"

FAKE_BENCH = textwrap.dedent(
    '''
    import numpy as np

    NAME = "fake_sum"
    REFERENCE_PACKAGE = "numpy"
    CALLS = {"stacklab": 0, "baseline": 0}


    def make_data(seed):
        rng = np.random.default_rng(seed)
        values = rng.integers(0, 100, size=(5, 4)).astype(np.float64)
        return {"values": values, "truth": values.sum(axis=1)}


    def run_stacklab(data):
        CALLS["stacklab"] += 1
        sums = data["values"].sum(axis=1)
        data["values"][:] = -1.0  # a side that mutates its input must not affect later calls
        return {"max_err": float(np.max(np.abs(sums - data["truth"])))}


    def baseline(data):
        CALLS["baseline"] += 1
        return {"max_err": float(np.max(np.abs(data["values"].sum(axis=1) - data["truth"]))) + 1.0}


    REFERENCE_CODE = """
    import numpy as np
    print("chatter from the reference package")  # must not break the JSON line


    def run(data):
        sums = np.array([sum(row) for row in data["values"]])
        data["values"][:] = 0.0
        return {"max_err": float(np.max(np.abs(sums - data["truth"]))) + 2.0, "rows": len(sums)}
    """
    '''
)


@pytest.fixture
def runner_module(monkeypatch):
    name = "stacklab_benchmarks_run"
    spec = importlib.util.spec_from_file_location(name, RUNNER)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bench_dir(tmp_path):
    folder = tmp_path / "benches"
    folder.mkdir()
    (folder / "bench_fake.py").write_text(FAKE_BENCH)
    yield folder
    sys.modules.pop("stacklab_bench_bench_fake", None)


@pytest.fixture
def fake_venv(tmp_path, monkeypatch):
    """A folder whose bin/python is a symlink to this interpreter (exercises the subprocess)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    # The symlink resolves to the base interpreter, outside this test venv: let it find NumPy.
    paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(dict.fromkeys(paths)))
    return venv


def _tables(out):
    timing, accuracy = out.strip().split("\n\n")
    return [line.split(",") for line in timing.splitlines()], [
        line.split(",") for line in accuracy.splitlines()
    ]


def test_list(runner_module, bench_dir, capsys):
    assert runner_module.main(["--list", "--bench-dir", str(bench_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "name,file,reference_package,reference_code,baseline"
    assert lines[1] == "fake_sum,bench_fake.py,numpy,yes,yes"


def test_baseline_in_process(runner_module, bench_dir, tmp_path, capsys):
    out_json = tmp_path / "result.json"
    code = runner_module.main(
        ["fake_sum", "--bench-dir", str(bench_dir), "--repeat", "2", "--json", str(out_json)]
    )
    assert code == 0
    timing, accuracy = _tables(capsys.readouterr().out)
    assert timing[0] == ["name", "stacklab_s", "reference_s", "ratio"]
    name, stacklab_s, reference_s, ratio = timing[1]
    assert name == "fake_sum"
    assert float(ratio) == pytest.approx(float(reference_s) / float(stacklab_s), rel=1e-2)
    assert accuracy[0] == ["name", "side", "source", "metric", "value"]
    # Fresh data on every call: the mutation in run_stacklab never reaches the next call.
    assert ["fake_sum", "stacklab", "stacklab", "max_err", "0"] in accuracy
    assert ["fake_sum", "baseline", "in-process baseline", "max_err", "1"] in accuracy
    payload = json.loads(out_json.read_text())
    (result,) = payload["results"]
    assert result["reference_kind"] == "baseline"
    assert result["accuracy"]["baseline"]["max_err"] == 1.0
    assert result["ratio"] == pytest.approx(result["reference_s"] / result["stacklab_s"])
    assert payload["repeat"] == 2 and "numpy" in payload["environment"]
    # One warm-up call, then --repeat timed calls, on each side.
    assert sys.modules["stacklab_bench_bench_fake"].CALLS == {"stacklab": 3, "baseline": 3}


def test_reference_venv_subprocess(runner_module, bench_dir, fake_venv, tmp_path, capsys):
    out_json = tmp_path / "ref.json"
    code = runner_module.main(
        [
            "fake",  # the file stem works as well as NAME
            "--bench-dir",
            str(bench_dir),
            "--reference-venv",
            str(fake_venv),
            "--repeat",
            "1",
            "--json",
            str(out_json),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    timing, accuracy = _tables(captured.out)
    assert timing[1][0] == "fake_sum" and timing[1][2] != "n/a"
    reference_rows = [row for row in accuracy if row[1] == "reference"]
    assert {row[3]: row[4] for row in reference_rows} == {"max_err": "2", "rows": "5"}
    import numpy as np

    assert f"numpy {np.__version__}" in reference_rows[0][2]  # version read inside the venv
    result = json.loads(out_json.read_text())["results"][0]
    assert result["reference_kind"] == "reference"
    assert result["reference_s"] > 0 and result["errors"] == []


def test_reference_failure_is_reported(runner_module, bench_dir, fake_venv, capsys):
    text = (bench_dir / "bench_fake.py").read_text()
    (bench_dir / "bench_fake.py").write_text(
        text.replace("def run(data):", "def run(data):\n    raise RuntimeError('ref broke')")
    )
    code = runner_module.main(
        ["fake_sum", "--bench-dir", str(bench_dir), "--reference-venv", str(fake_venv)]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "ref broke" in captured.err
    timing, _ = _tables(captured.out)
    assert timing[1][2] == "n/a" and timing[1][3] == "n/a"


def test_unknown_benchmark_and_bad_venv(runner_module, bench_dir, tmp_path):
    with pytest.raises(SystemExit, match="unknown benchmark 'nope'"):
        runner_module.main(["nope", "--bench-dir", str(bench_dir)])
    with pytest.raises(SystemExit, match="no bin/python"):
        runner_module.main(
            ["fake_sum", "--bench-dir", str(bench_dir), "--reference-venv", str(tmp_path)]
        )
