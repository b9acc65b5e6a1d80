"""``stacklab beads`` commands, run with click's CliRunner on tiny simulated files."""

from __future__ import annotations

import click
import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from stacklab.beads import ZLUT
from stacklab.beads.cli import beads, parse_length


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("beads_cli")
    runner = CliRunner()
    result = runner.invoke(
        beads,
        [
            "simulate",
            "-o",
            str(folder / "movie.tif"),
            "--frames",
            "12",
            "--shape",
            "96x192",
            "--beads",
            "2",
            "--z-range",
            "1.5um",
            "--zscan",
            str(folder / "zscan.tif"),
            "--zscan-range",
            "2um",
            "--z-step",
            "100nm",
            "--truth",
            str(folder / "truth.csv"),
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    return folder


def test_parse_length():
    assert parse_length("100nm") == 100.0
    assert parse_length("0.1um") == 100.0
    assert parse_length("0.1µm") == 100.0
    assert parse_length("-5um") == -5000.0
    assert parse_length("1e-7 m") == pytest.approx(100.0)
    assert parse_length("250") == 250.0
    with pytest.raises(click.BadParameter):
        parse_length("10 parsec")


def test_zlut_then_track_csv_and_h5(files):
    runner = CliRunner()
    lut_path = files / "lut.npy"
    res = runner.invoke(
        beads,
        [
            "zlut",
            str(files / "zscan.tif"),
            "--z-step",
            "100nm",
            "--z-start",
            "-2um",
            "-o",
            str(lut_path),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "41 planes from -2000 to 2000 nm" in res.output
    lut = ZLUT.load(lut_path)
    np.testing.assert_allclose(lut.z, np.arange(-2000.0, 2001.0, 100.0))

    res = runner.invoke(
        beads,
        [
            "track",
            str(files / "movie.tif"),
            "--zlut",
            str(lut_path),
            "-o",
            str(files / "xyz.csv"),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "tracked 2 bead(s) over 12 frames (0 NaN rows)" in res.output
    table = pd.read_csv(files / "xyz.csv")
    truth = pd.read_csv(files / "truth.csv")
    assert list(table.columns) == ["frame", "bead", "x", "y", "z", "quality"]
    assert len(table) == 24
    for b in range(2):
        got = table[table.bead == b]
        f0 = truth[truth.frame == 0]
        t = int(f0.bead.iloc[np.argmin(np.hypot(f0.x - got.x.iloc[0], f0.y - got.y.iloc[0]))])
        want = truth[truth.bead == t]
        assert np.max(np.abs(got.x.values - want.x.values)) < 0.02
        assert np.max(np.abs(got.z.values - want.z.values)) < 20.0

    res = runner.invoke(
        beads,
        ["track", str(files / "movie.tif"), "--zlut", str(lut_path), "-o", str(files / "xyz.h5")],
    )
    assert res.exit_code == 0, res.output
    with h5py.File(files / "xyz.h5", "r") as f:
        np.testing.assert_allclose(f["tracks/z"][()], table.z.to_numpy(), rtol=1e-9)


def test_track_with_rois_file(files):
    truth = pd.read_csv(files / "truth.csv")
    f0 = truth[truth.frame == 0]
    (files / "rois.csv").write_text(
        "x,y\n" + "\n".join(f"{x},{y}" for x, y in zip(f0.x, f0.y)) + "\n"
    )
    res = CliRunner().invoke(
        beads,
        [
            "track",
            str(files / "movie.tif"),
            "--rois",
            str(files / "rois.csv"),
            "-o",
            str(files / "xy.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(files / "xy.csv")
    assert table.z.isna().all()  # no look-up table
    assert table.x.notna().all()


def test_errors(files):
    runner = CliRunner()
    res = runner.invoke(
        beads,
        ["zlut", str(files / "zscan.tif"), "--z-step", "10parsec", "-o", str(files / "l.npy")],
    )
    assert res.exit_code == 2 and "not a length" in res.output
    res = runner.invoke(beads, ["track", str(files / "movie.tif"), "-o", str(files / "a.txt")])
    assert res.exit_code == 2 and ".csv" in res.output
    (files / "edge.csv").write_text("x,y\n5,5\n")
    res = runner.invoke(
        beads,
        [
            "track",
            str(files / "movie.tif"),
            "--rois",
            str(files / "edge.csv"),
            "-o",
            str(files / "e.csv"),
        ],
    )
    assert res.exit_code != 0
    assert isinstance(res.exception, ValueError) and "rois" in str(res.exception)
    assert not (files / "e.csv").exists()
