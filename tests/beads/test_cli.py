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


@pytest.fixture(scope="module")
def drift_files(tmp_path_factory, lut_fast):
    """A 60-frame movie whose 2 beads drift 10 px in x and 4 px in y, its truth, rois, table."""
    from stacklab.beads import simulate_movie
    from stacklab.io import save_stack

    folder = tmp_path_factory.mktemp("beads_cli_drift")
    n = 60
    t = np.linspace(0.0, 1.0, n)
    drift = np.stack([10.0 * t, 4.0 * t], axis=1)
    frames, truth = simulate_movie(
        n, shape=(96, 200), n_beads=2, drift=drift, xy_jitter=0.3, z_range=(-1500, 1500), seed=7
    )
    save_stack(folder / "drift.tif", frames)
    truth.to_csv(folder / "truth.csv", index=False)
    f0 = truth[truth.frame == 0]
    (folder / "rois.csv").write_text(
        "x,y\n" + "\n".join(f"{x},{y}" for x, y in zip(f0.x, f0.y, strict=True)) + "\n"
    )
    lut_fast.save(folder / "lut.npy")
    return folder


def _track(folder, out, *extra):
    return CliRunner().invoke(
        beads,
        [
            "track",
            str(folder / "drift.tif"),
            "--rois",
            str(folder / "rois.csv"),
            "--zlut",
            str(folder / "lut.npy"),
            "--chunk",
            "6",
            "--no-progress",
            "-o",
            str(folder / out),
            *extra,
        ],
    )


def test_track_follow(drift_files):
    res = _track(drift_files, "follow.csv", "--follow")
    assert res.exit_code == 0, res.output
    assert "tracked 2 bead(s) over 60 frames (0 NaN rows)" in res.output
    res = _track(drift_files, "fixed.csv")
    assert res.exit_code == 0, res.output
    truth = pd.read_csv(drift_files / "truth.csv")
    errs = {}
    for name in ("follow", "fixed"):
        table = pd.read_csv(drift_files / f"{name}.csv")
        assert list(table.columns) == ["frame", "bead", "x", "y", "z", "quality"]
        errs[name] = np.hypot(table.x - truth.x, table.y - truth.y).to_numpy()
    late = truth.frame.to_numpy() >= 50  # 8.5-10 px from the start
    print(
        f"\nCLI, 10 px drift: --follow max xy error {errs['follow'].max():.4f} px, fixed ROIs "
        f"{errs['fixed'][late].max():.4f} px over the last 10 frames"
    )
    assert errs["follow"].max() < 0.01
    assert errs["fixed"][late].max() > 2 * errs["follow"].max()


def test_track_reference(drift_files):
    from stacklab.beads import subtract_reference

    res = _track(drift_files, "plain.csv", "--follow")
    assert res.exit_code == 0, res.output
    res = _track(drift_files, "ref.csv", "--follow", "--reference", "1")
    assert res.exit_code == 0, res.output
    assert "drift of bead(s) [1] subtracted" in res.output
    plain = pd.read_csv(drift_files / "plain.csv")
    got = pd.read_csv(drift_files / "ref.csv")
    pd.testing.assert_frame_equal(
        got, subtract_reference(plain, [1]), check_exact=False, rtol=1e-12
    )
    # the same correction applied to the true positions (tracker precision apart)
    truth = pd.read_csv(drift_files / "truth.csv")
    want = subtract_reference(truth, [1], columns=["x", "y"])
    assert np.ptp(plain[plain.bead == 0].x) > 9.0  # the 10 px ramp ...
    assert np.ptp(want[want.bead == 0].x) < 3.0  # ... is gone, jitter of two beads is left
    np.testing.assert_allclose(got.x, want.x, rtol=0, atol=0.01)
    np.testing.assert_allclose(got.y, want.y, rtol=0, atol=0.01)
    res = _track(drift_files, "both.csv", "--reference", " 0, 1 ")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    ("value", "match"), [("0,7", "not in the table"), ("0,x", "bead ids"), ("", "bead ids")]
)
def test_track_reference_errors(drift_files, value, match):
    res = _track(drift_files, "bad.csv", "--reference", value)
    assert res.exit_code == 2
    assert "--reference" in res.output and match in res.output
    assert not (drift_files / "bad.csv").exists()


def test_force_command(tmp_path):
    """`beads force` recovers known forces from a table of simulated fluctuations: bead 0
    along the field (pendulum L + R), bead 1 perpendicular, both from one xyz table."""
    from stacklab.beads import simulate_fluctuations

    pixel_nm, fs, n = 100.0, 400.0, 16384
    rows = []
    truth = {0: 4.0, 1: 12.0}
    for bead, force in truth.items():
        along = simulate_fluctuations(
            force,
            2000.0,
            frame_rate_hz=fs,
            n_frames=n,
            bead_radius_nm=1400.0,
            direction="parallel",
            seed=10 + bead,
        )
        across = simulate_fluctuations(
            force, 2000.0, frame_rate_hz=fs, n_frames=n, bead_radius_nm=1400.0, seed=20 + bead
        )
        rows.append(
            pd.DataFrame(
                {
                    "frame": np.arange(n),
                    "bead": bead,
                    "x": 50.0 + along.x_nm / pixel_nm,
                    "y": 80.0 + across.x_nm / pixel_nm,
                    "z": np.full(n, 2000.0),
                    "quality": 1.0,
                }
            )
        )
    pd.concat(rows).sort_values(["frame", "bead"]).to_csv(tmp_path / "xyz.csv", index=False)
    out = tmp_path / "forces.csv"
    args = ["force", str(tmp_path / "xyz.csv"), "--pixel-size", "100nm", "--frame-rate", "400"]
    args += ["--z-surface", "0nm", "--bead-radius", "1.4um", "-o", str(out)]
    res = CliRunner().invoke(beads, args)
    assert res.exit_code == 0, res.output
    assert "bead 1 y (perpendicular)" in res.output
    forces = pd.read_csv(out)
    assert len(forces) == 4
    for row in forces.itertuples():
        assert row.extension_nm == 2000.0
        assert abs(row.force_pN - truth[row.bead]) < 4 * row.force_se_pN, row
        assert row.force_se_pN < 0.06 * truth[row.bead]
    both = CliRunner().invoke(beads, [*args[:-2], "--extension", "2um", "-o", str(out)])
    assert both.exit_code != 0 and "exactly one of --extension and --z-surface" in both.output


def test_wlc_command(tmp_path):
    """`beads wlc` fits a worm-like chain to force tables of several magnet positions."""
    from stacklab.beads import wlc_extension

    rng = np.random.default_rng(4)
    forces = np.geomspace(0.05, 20.0, 24)
    ext = wlc_extension(forces, persistence_nm=50.0, contour_nm=16400.0)
    measured = forces * (1 + 0.03 * rng.standard_normal(forces.size))
    rows = pd.DataFrame(
        {
            "bead": 0,
            "axis": "y",
            "direction": "perpendicular",
            "extension_nm": ext + 5.0 * rng.standard_normal(forces.size),
            "force_pN": measured,
            "force_se_pN": 0.03 * forces,
        }
    )
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    rows.iloc[::2].to_csv(paths[0], index=False)
    rows.iloc[1::2].to_csv(paths[1], index=False)
    out = tmp_path / "wlc.csv"
    res = CliRunner().invoke(beads, ["wlc", *map(str, paths), "-o", str(out)])
    assert res.exit_code == 0, res.output
    fit = pd.read_csv(out).iloc[0]
    assert fit.n_points == 24
    assert abs(fit.persistence_nm - 50.0) < max(3 * fit.persistence_se_nm, 5.0)
    assert abs(fit.contour_nm - 16400.0) < 0.01 * 16400.0
    assert "bead 0: P" in res.output
    bad = CliRunner().invoke(beads, ["wlc", str(paths[0]), "--fit", "colour", "-o", str(out)])
    assert bad.exit_code != 0 and "--fit" in bad.output
