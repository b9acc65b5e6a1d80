"""The ``stacklab demo`` speckle section and the benchmark module run and meet their targets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from stacklab.demo import DemoSection


def test_demo_section_quick():
    from stacklab.speckle.demo import run_demo

    section = run_demo(quick=True, seed=0)
    assert isinstance(section, DemoSection)
    assert section.ok, [(m.name, m.value) for m in section.metrics]
    names = [m.name for m in section.metrics]
    assert "pixel-map RMS error" in names and "phase RMS error (piston, tilt removed)" in names
    assert len(section.figures) == 3 and section.seconds > 0


def test_demo_is_registered():
    from stacklab import demo

    assert "speckle" in demo.available()


def _bench():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_speckle.py"
    spec = importlib.util.spec_from_file_location("bench_speckle", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_benchmark_module_protocol():
    bench = _bench()
    assert bench.NAME == "speckle_tracking_128x128x49"
    assert bench.REFERENCE_PACKAGE is None and bench.REFERENCE_CODE is None
    assert bench.baseline is None
    assert bench.REFERENCE_SECONDS_5_ITERATIONS == 13.0
    assert "13 s" in bench.__doc__


@pytest.mark.slow
def test_benchmark_accuracy():
    bench = _bench()
    data = bench.make_data(0)
    assert data["data"].shape == (49, 128, 128) and data["data"].dtype == np.float32
    acc = bench.run_stacklab(data)
    print(acc)
    assert acc["pixel_map_rms_px"] <= 0.05 and acc["phase_rms_rad"] <= 0.05
    assert abs(bench.fitted_defocus_error(data)) < 2.0


@pytest.mark.slow
def test_demo_section_full():
    from stacklab.speckle.demo import run_demo

    section = run_demo(quick=False, seed=0)
    print([(m.name, m.value) for m in section.metrics])
    assert section.ok
