"""The ``stacklab demo`` beads section and the benchmark module run and meet their targets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from stacklab.demo import DemoSection


def test_demo_section_quick():
    from stacklab.beads.demo import run_demo

    section = run_demo(quick=True, seed=0)
    assert isinstance(section, DemoSection)
    assert section.ok, [(m.name, m.value) for m in section.metrics]
    names = [m.name for m in section.metrics]
    assert "z RMS error, noise-free" in names
    assert "force error, spectral fit (20 pN)" in names
    assert len(section.figures) == 3
    assert section.seconds > 0


def test_demo_is_registered():
    from stacklab import demo

    assert "beads" in demo.available()


def test_benchmark_module():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_beads.py"
    spec = importlib.util.spec_from_file_location("bench_beads", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.NAME == "beads_xyz" and bench.REFERENCE_PACKAGE == "magtrack"
    data = bench.make_data(0)
    assert data["stack"].shape == (1000, 64, 64) and data["stack"].dtype == np.float32
    assert data["zlut_magtrack"].shape == (33, 101)
    acc = bench.run_stacklab(data)
    assert acc["xy_rms_px"] <= 0.01 and acc["z_rms_nm"] <= 10.0 and acc["z_nan_fraction"] == 0
    compile(bench.REFERENCE_CODE, "reference", "exec")
