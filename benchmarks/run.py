#!/usr/bin/env python
"""Run stacklab side by side with a reference package (or an in-process baseline) and compare.

Usage::

    python benchmarks/run.py --list
    python benchmarks/run.py NAME [NAME ...] [--reference-venv PATH] [--repeat 3] [--seed 0]
                             [--json OUT]
    python benchmarks/run.py all

A benchmark is a module ``bench_<name>.py`` next to this script (or in ``--bench-dir``) that
defines:

``NAME``
    Benchmark name (``"engine_sum"``), used on the command line (the file stem without
    ``bench_`` works too).
``REFERENCE_PACKAGE``
    Distribution name of the reference package (``"magtrack"``) or None; its version is read
    inside the reference venv and reported.
``make_data(seed) -> dict[str, ndarray]``
    Inputs and ground truth, identical for both sides.
``run_stacklab(data) -> dict[str, float]``
    Does the work with stacklab and returns accuracy figures (e.g. RMS error against truth).
``REFERENCE_CODE``
    Python source (or None) executed in the reference venv; it defines
    ``run(data) -> dict[str, float]`` doing the same work with the reference package.
``baseline(data) -> dict[str, float]`` (optional)
    An in-process baseline (plain NumPy/SciPy), used when no reference venv is given or the
    benchmark has no ``REFERENCE_CODE``.

Each side runs once as a warm-up, then ``--repeat`` times; the best wall time counts. Every call
gets a fresh copy of the data (copied outside the timed region), so a side that modifies its
input in place cannot affect the next call. The reference side runs in a subprocess:
``<venv>/bin/python harness.py reference.py data.npz REPEAT PACKAGE`` in a temporary folder, and
the harness prints one JSON line ``{"seconds": ..., "accuracy": {...}, ...}``.

Output: a CSV table ``name,stacklab_s,reference_s,ratio`` (``ratio = reference_s / stacklab_s``:
above 1 means stacklab is faster), then a CSV table of accuracy figures of both sides
``name,side,source,metric,value``. ``--json OUT`` also writes everything (with the environment) to
a JSON file. The exit status is 1 if a benchmark or its reference failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

#: Written to a temporary file and run with the reference venv's Python.
HARNESS = '''\
"""stacklab benchmark harness: exec reference code, time run(data), print one JSON line."""
import contextlib
import json
import sys
import time

import numpy as np


def main():
    code_path, data_path, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
    package = sys.argv[4] if len(sys.argv) > 4 else ""
    with open(code_path, encoding="utf-8") as fh:
        source = fh.read()
    with np.load(data_path, allow_pickle=False) as npz:
        data = {key: npz[key] for key in npz.files}
    namespace = {"__name__": "stacklab_reference", "__file__": code_path}
    # Anything the reference code prints goes to stderr: stdout carries only the JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        exec(compile(source, code_path, "exec"), namespace)
        run = namespace.get("run")
        if not callable(run):
            raise SystemExit("REFERENCE_CODE must define run(data) -> dict[str, float]")
        result = run({k: v.copy() for k, v in data.items()})
        best = float("inf")
        for _ in range(repeat):
            fresh = {k: v.copy() for k, v in data.items()}
            start = time.perf_counter()
            result = run(fresh)
            best = min(best, time.perf_counter() - start)
    version = None
    if package:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version(package)
        except Exception:
            version = None
    accuracy = {str(k): float(v) for k, v in dict(result or {}).items()}
    print(json.dumps({
        "seconds": best,
        "accuracy": accuracy,
        "package": package or None,
        "version": version,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }))


main()
'''


@dataclass
class Result:
    """Outcome of one benchmark."""

    name: str
    stacklab_s: float | None = None
    reference_s: float | None = None
    ratio: float | None = None
    reference_kind: str = "n/a"  # "reference", "baseline" or "n/a"
    reference_label: str = "n/a"
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def load_benchmarks(bench_dir: Path) -> dict[str, ModuleType]:
    """Import every ``bench_*.py`` in ``bench_dir``; return ``{NAME: module}`` in file order."""
    found: dict[str, ModuleType] = {}
    for path in sorted(Path(bench_dir).glob("bench_*.py")):
        name = f"stacklab_bench_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # so that dataclasses and pickling can find the module
        spec.loader.exec_module(module)
        for attr in ("NAME", "make_data", "run_stacklab"):
            if not hasattr(module, attr):
                raise SystemExit(f"{path}: a benchmark module must define {attr}")
        module.STEM = path.stem[len("bench_") :]
        found[module.NAME] = module
    return found


def select(benchmarks: dict[str, ModuleType], names: Sequence[str]) -> list[ModuleType]:
    """Return the benchmarks named (by NAME or file stem); ``all`` selects every one."""
    if list(names) == ["all"]:
        return list(benchmarks.values())
    chosen = []
    for name in names:
        match = benchmarks.get(name) or next(
            (m for m in benchmarks.values() if m.STEM == name), None
        )
        if match is None:
            raise SystemExit(
                f"unknown benchmark {name!r}; available: {', '.join(benchmarks) or 'none'}"
            )
        chosen.append(match)
    return chosen


def _fresh(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in data.items()}


def _accuracy(result: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in dict(result or {}).items()}


def time_best(
    func: Callable[[dict], Any], data: dict[str, np.ndarray], repeat: int
) -> tuple[float, dict[str, float]]:
    """Warm up once, then return (best wall time of ``repeat`` calls in s, last accuracy)."""
    result = func(_fresh(data))
    best = math.inf
    for _ in range(repeat):
        fresh = _fresh(data)
        start = time.perf_counter()
        result = func(fresh)
        best = min(best, time.perf_counter() - start)
    return best, _accuracy(result)


def venv_python(venv: Path) -> Path:
    """Return the Python interpreter of a virtual environment folder."""
    for candidate in (venv / "bin" / "python", venv / "Scripts" / "python.exe"):
        if candidate.exists():
            return candidate
    raise SystemExit(f"--reference-venv {venv}: no bin/python found (is it a virtual environment?)")


def run_reference(
    module: ModuleType, data: dict[str, np.ndarray], venv: Path, repeat: int, timeout: float
) -> dict[str, Any]:
    """Run ``module.REFERENCE_CODE`` in ``venv`` through the harness; return its parsed JSON."""
    python = venv_python(venv)
    package = getattr(module, "REFERENCE_PACKAGE", None) or ""
    with tempfile.TemporaryDirectory(prefix="stacklab-bench-") as tmp:
        folder = Path(tmp)
        np.savez(folder / "data.npz", **data)
        (folder / "reference.py").write_text(module.REFERENCE_CODE, encoding="utf-8")
        (folder / "harness.py").write_text(HARNESS, encoding="utf-8")
        command = [
            str(python),
            str(folder / "harness.py"),
            str(folder / "reference.py"),
            str(folder / "data.npz"),
            str(repeat),
            package,
        ]
        proc = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=timeout, check=False
        )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"reference run failed with exit status {proc.returncode}:\n{tail}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"reference run printed no JSON result; stdout was {proc.stdout!r}")
    return json.loads(lines[-1])


def run_one(
    module: ModuleType, *, seed: int, repeat: int, venv: Path | None, timeout: float
) -> Result:
    """Run one benchmark: stacklab side, then the reference (venv) or the baseline."""
    result = Result(name=module.NAME)
    data = module.make_data(seed)
    try:
        result.stacklab_s, result.accuracy["stacklab"] = time_best(
            module.run_stacklab, data, repeat
        )
    except Exception as exc:
        result.errors.append(f"stacklab side failed: {type(exc).__name__}: {exc}")
    code = getattr(module, "REFERENCE_CODE", None)
    base = getattr(module, "baseline", None)
    if venv is not None and code:
        package = getattr(module, "REFERENCE_PACKAGE", None) or "reference code"
        result.reference_kind = "reference"
        result.reference_label = f"{package} (venv {venv})"
        try:
            parsed = run_reference(module, data, venv, repeat, timeout)
            result.reference_s = float(parsed["seconds"])
            result.accuracy["reference"] = _accuracy(parsed.get("accuracy"))
            if parsed.get("version"):
                result.reference_label = f"{package} {parsed['version']} (venv {venv})"
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as exc:
            result.errors.append(f"reference side failed: {exc}")
    elif callable(base):
        if venv is not None:
            print(
                f"note: {module.NAME} has no REFERENCE_CODE; using its in-process baseline",
                file=sys.stderr,
            )
        result.reference_kind = "baseline"
        result.reference_label = "in-process baseline"
        try:
            result.reference_s, result.accuracy["baseline"] = time_best(base, data, repeat)
        except Exception as exc:
            result.errors.append(f"baseline failed: {type(exc).__name__}: {exc}")
    if result.stacklab_s and result.reference_s:
        result.ratio = result.reference_s / result.stacklab_s
    return result


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def format_results(results: Sequence[Result]) -> str:
    """Format the timing table and the accuracy table as CSV text."""
    lines = ["name,stacklab_s,reference_s,ratio"]
    for r in results:
        lines.append(f"{r.name},{_num(r.stacklab_s)},{_num(r.reference_s)},{_num(r.ratio)}")
    lines.extend(["", "name,side,source,metric,value"])
    for r in results:
        for side, figures in r.accuracy.items():
            source = "stacklab" if side == "stacklab" else r.reference_label.replace(",", ";")
            for metric, value in figures.items():
                lines.append(f"{r.name},{side},{source},{metric},{value:.6g}")
    return "\n".join(lines)


def environment() -> dict[str, str]:
    """Versions and machine of the stacklab side."""
    try:
        import stacklab

        version = stacklab.__version__
    except ImportError:
        version = "not importable"
    return {
        "stacklab": version,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": str(os.cpu_count()),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the runner."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Time stacklab against a reference package (or a baseline) on the same data.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run, or 'all'")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--reference-venv",
        type=Path,
        metavar="PATH",
        help="virtual environment with the reference package (see benchmarks/README.md)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after a warm-up")
    parser.add_argument("--seed", type=int, default=0, help="seed of make_data")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    parser.add_argument(
        "--bench-dir", type=Path, default=HERE, help="folder holding bench_*.py (default: here)"
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds allowed for the reference run"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    benchmarks = load_benchmarks(args.bench_dir)
    if args.list:
        print("name,file,reference_package,reference_code,baseline")
        for name, module in benchmarks.items():
            print(
                f"{name},bench_{module.STEM}.py,{getattr(module, 'REFERENCE_PACKAGE', None)},"
                f"{'yes' if getattr(module, 'REFERENCE_CODE', None) else 'no'},"
                f"{'yes' if callable(getattr(module, 'baseline', None)) else 'no'}"
            )
        return 0
    if not args.names:
        build_parser().print_usage(sys.stderr)
        print("give benchmark names, 'all', or --list", file=sys.stderr)
        return 2
    venv = args.reference_venv.resolve() if args.reference_venv else None
    results = []
    for module in select(benchmarks, args.names):
        print(f"running {module.NAME} ...", file=sys.stderr)
        results.append(
            run_one(module, seed=args.seed, repeat=args.repeat, venv=venv, timeout=args.timeout)
        )
    print(format_results(results))
    for r in results:
        for error in r.errors:
            print(f"{r.name}: {error}", file=sys.stderr)
    if args.json:
        write_json(
            args.json,
            {
                "environment": environment(),
                "seed": args.seed,
                "repeat": args.repeat,
                "results": [asdict(r) for r in results],
            },
        )
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
