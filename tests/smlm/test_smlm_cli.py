"""``stacklab smlm`` commands (CliRunner on small simulated files) and the demo section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner

from stacklab.cli.main import cli
from stacklab.smlm import load_locs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smlm_cli")
    result = CliRunner().invoke(
        cli,
        [
            "smlm",
            "simulate",
            "-o",
            str(folder / "movie.tif"),
            "--frames",
            "400",
            "--drift",
            "100",
            "--truth",
            str(folder / "truth.csv"),
            "--seed",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    return folder


def run(*args):
    return CliRunner().invoke(cli, ["smlm", *map(str, args)], catch_exceptions=False)


def test_localize_drift_render_frc_link(files):
    out = run(
        "localize", files / "movie.tif", "--pixel-size", 100, "--gain", 0.25, "--offset", 100,
        "-o", files / "locs.csv", "--render", files / "sr.png", "--no-progress",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "localizations in 400 frames" in out.output
    locs = load_locs(files / "locs.csv")
    truth = pd.read_csv(files / "truth.csv")
    assert len(locs) == pytest.approx(len(truth), rel=0.06)
    assert (files / "sr.png").stat().st_size > 1000
    # ThunderSTORM CSV: quoted header, 1-based frames.
    header = (files / "locs.csv").read_text().splitlines()[0]
    assert header.startswith('"frame","x [nm]","y [nm]"')

    out = run("drift", files / "locs.csv", "-o", files / "corr.csv", "--table", files / "d.csv")
    assert out.exit_code == 0, out.output
    drift = pd.read_csv(files / "d.csv")
    assert drift["x [nm]"].iloc[-1] == pytest.approx(100.0, abs=10.0)
    assert abs(drift["y [nm]"].iloc[-1]) < 10.0

    out = run("render", files / "corr.csv", "-o", files / "hist.tif", "--mode", "histogram")
    assert out.exit_code == 0, out.output
    img = tifffile.imread(files / "hist.tif")
    assert img.sum() == pytest.approx(len(locs), rel=0.01)

    out = run("frc", files / "corr.csv", "--curve", files / "frc.csv")
    assert out.exit_code == 0, out.output
    assert "FRC resolution" in out.output and "NeNA precision" in out.output
    nena_nm = float(out.output.split("NeNA precision:")[1].split("nm")[0])
    assert nena_nm == pytest.approx(np.median(locs["uncertainty"]), rel=0.15)

    out = run("link", files / "corr.csv", "-o", files / "linked.csv")
    assert out.exit_code == 0, out.output
    assert len(load_locs(files / "linked.csv")) < len(locs)


def test_localize_multi_emitter(files):
    """--max-emitters 2 keeps every isolated spot and reports the multi-emitter rows."""
    single = run(
        "localize", files / "movie.tif", "--pixel-size", 100, "--gain", 0.25, "--offset", 100,
        "-o", files / "single.csv", "--no-progress",
    )  # fmt: skip
    multi = run(
        "localize", files / "movie.tif", "--pixel-size", 100, "--gain", 0.25, "--offset", 100,
        "--max-emitters", 2, "-o", files / "multi.csv", "--no-progress",
    )  # fmt: skip
    assert single.exit_code == 0 and multi.exit_code == 0, multi.output
    assert "from multi-emitter spots" in multi.output
    n_single, n_multi = len(load_locs(files / "single.csv")), len(load_locs(files / "multi.csv"))
    assert n_single <= n_multi <= 1.1 * n_single
    bad = CliRunner().invoke(
        cli,
        ["smlm", "localize", str(files / "movie.tif"), "--pixel-size", "100",
         "--max-emitters", "0", "-o", str(files / "x.csv")],
    )  # fmt: skip
    assert bad.exit_code != 0 and "--max-emitters" in bad.output


def test_cli_errors_are_one_line(files, tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        cli,
        ["smlm", "localize", str(files / "movie.tif"), "--pixel-size", "100", "--gain", "0.25",
         "--offset", "400", "-o", str(tmp_path / "x.csv"), "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 1
    assert "Error:" in res.output and "offset=400" in res.output
    mixed = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(mixed) as tif:
        tif.write(np.zeros((32, 32), np.uint16))
        tif.write(np.zeros((16, 16), np.uint16))
    res = runner.invoke(
        cli, ["smlm", "localize", str(mixed), "--pixel-size", "100", "-o", str(tmp_path / "y.csv")]
    )
    assert res.exit_code == 1 and "Error:" in res.output and "page" in res.output
    res = runner.invoke(
        cli, ["smlm", "localize", str(mixed), "--pixel-size", "100", "-o", str(tmp_path / "y.txt")]
    )
    assert res.exit_code == 2 and ".csv" in res.output


def test_demo_section_quick():
    from stacklab.demo import DemoSection, available
    from stacklab.smlm.demo import run_demo

    assert "smlm" in available()
    section = run_demo(quick=True, seed=0)
    assert isinstance(section, DemoSection)
    assert section.ok, [(m.name, m.value) for m in section.metrics]
    names = [m.name for m in section.metrics]
    assert "precision of isolated emitters / CRLB" in names
    assert len(section.figures) == 2
