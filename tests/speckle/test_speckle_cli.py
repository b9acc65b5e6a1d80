"""``stacklab speckle simulate`` and ``run`` through click's CliRunner."""

from __future__ import annotations

from types import SimpleNamespace

import click
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from stacklab.speckle.cli import parse_metres, speckle
from stacklab.speckle.demo import map_error


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speckle_cli")
    path = folder / "scan.cxi"
    res = CliRunner().invoke(
        speckle,
        [
            "simulate",
            "-o",
            str(path),
            "--shape",
            "64x64",
            "--grid",
            "5x5",
            "--aberration",
            "1.0",
            "--hot",
            "1",
            "--dead",
            "1",
            "--truth",
            str(folder / "truth.npz"),
            "--seed",
            "5",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "scan (25, 64, 64)" in res.output
    return path


def test_parse_metres():
    assert parse_metres("0.4mm") == pytest.approx(4e-4)
    assert parse_metres("400um") == pytest.approx(4e-4)
    assert parse_metres("400µm") == pytest.approx(4e-4)
    assert parse_metres("55e-6 m") == pytest.approx(55e-6)
    assert parse_metres("1") == 1.0
    with pytest.raises(click.BadParameter):
        parse_metres("3 furlongs")


def test_run_writes_results_and_report(scan_file):
    res = CliRunner().invoke(speckle, ["run", str(scan_file), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "error per iteration" in res.output and "/speckle_tracking" in res.output
    report = scan_file.with_name("scan_speckle.html")
    assert report.exists() and "reference image" in report.read_text()
    truth = np.load(scan_file.with_name("truth.npz"))
    with h5py.File(scan_file) as f:
        g = f["speckle_tracking"]
        assert g["defocus"][()] == pytest.approx(float(truth["defocus"]), rel=0.05)
        r = SimpleNamespace(
            pixel_map=g["pixel_map"][()], roi=tuple(g["roi"][()]), mask=g["mask"][()]
        )
        assert not r.mask[~truth["mask"]].any()
        # fitted defocus: the map carries its small scale error (a defocus term)
        assert map_error(r, truth["pixel_map"]) < 0.15
        assert g["error_per_iteration"].shape == (3,)


def test_run_with_options_and_output(scan_file, tmp_path):
    out = tmp_path / "results.h5"
    before = scan_file.read_bytes()
    res = CliRunner().invoke(
        speckle,
        [
            "run",
            str(scan_file),
            "--defocus",
            "0.4mm",
            "--iterations",
            "1",
            "--roi",
            "4,60,4,60",
            "-o",
            str(out),
            "--no-report",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    with h5py.File(out) as f:
        assert list(f["speckle_tracking/roi"][()]) == [4, 60, 4, 60]
        assert f["speckle_tracking/defocus"][()] == pytest.approx(4e-4)
    assert scan_file.read_bytes() == before


def test_failures_write_nothing(scan_file, tmp_path):
    runner = CliRunner()
    bad = tmp_path / "bad.cxi"
    bad.write_bytes(scan_file.read_bytes())
    with h5py.File(bad, "a") as f:
        del f["/entry_1/instrument_1/detector_1/distance"]
    before = bad.read_bytes()
    res = runner.invoke(speckle, ["run", str(bad), "--no-progress"])
    assert res.exit_code != 0
    assert "distance" in str(res.exception)
    assert bad.read_bytes() == before
    assert not bad.with_name("bad_speckle.html").exists()
    # all-masked detector: clear error, file unchanged
    with h5py.File(bad, "a") as f:
        f["/entry_1/instrument_1/detector_1/distance"] = 1.0
        f["/entry_1/instrument_1/detector_1/mask"] = np.zeros((64, 64), bool)
    before = bad.read_bytes()
    res = runner.invoke(speckle, ["run", str(bad), "--no-progress"])
    assert res.exit_code != 0 and "masked" in str(res.exception)
    assert bad.read_bytes() == before
    res = runner.invoke(speckle, ["run", str(scan_file), "--roi", "1,2,3"])
    assert res.exit_code == 2 and "--roi" in res.output
    res = runner.invoke(speckle, ["run", str(scan_file), "--defocus", "far"])
    assert res.exit_code == 2 and "not a length" in res.output
