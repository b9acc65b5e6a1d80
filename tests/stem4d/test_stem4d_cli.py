"""``stacklab stem`` commands on tiny files, through click's CliRunner."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from stacklab.stem4d import DataCube, ElectronEvents, read_emd, write_emd
from stacklab.stem4d.cli import stem
from stacklab.stem4d.simulate import match_events, simulate_counting


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stemcli")
    cube, truth = simulate_counting((4, 5), (32, 36), n_hot=2, n_hot_pairs=1, seed=6)
    path = write_emd(folder / "scan.h5", DataCube(cube))
    np.save(folder / "dark.npy", truth.dark)
    return folder, path, cube, truth


def run(*args):
    res = CliRunner().invoke(stem, [str(a) for a in args], catch_exceptions=False)
    return res


def test_info(files):
    _, path, _, _ = files
    res = run("info", path, "--stats")
    assert res.exit_code == 0, res.output
    assert "4 x 5" in res.output and "32 x 36" in res.output and "uint16" in res.output
    assert "mean counts/pattern" in res.output


def test_count_writes_events(files):
    folder, path, _, truth = files
    out = folder / "events.h5"
    res = run(
        "count", path, "-o", out, "--dark", folder / "dark.npy", "--subpixel", "--no-progress"
    )
    assert res.exit_code == 0, res.output
    assert "electrons in 20 patterns" in res.output
    events = ElectronEvents.load(out)
    score = match_events(events, truth.electrons)
    assert score.recall >= 0.99 and score.precision >= 0.99
    dense = folder / "counted.h5"
    assert (
        run(
            "count", path, "-o", dense, "--dark", folder / "dark.npy", "--dense", "--bin", "2"
        ).exit_code
        == 0
    )
    counted = read_emd(dense)
    assert counted.shape == (4, 5, 16, 18) and counted.calibration.q_pixel_size == (2.0, 2.0)
    assert int(counted.to_numpy().sum()) > 0.99 * truth.electrons.n_events


def test_bin_and_hotpix(files):
    folder, path, cube, truth = files
    out = folder / "binned.h5"
    res = run("bin", path, "-o", out, "--factor", "2")
    assert res.exit_code == 0, res.output
    b = read_emd(out)
    assert b.dtype == np.uint64 and b.calibration.q_pixel_size == (2.0, 2.0)
    ref = cube.reshape(4, 5, 16, 2, 18, 2).sum(axis=(3, 5), dtype=np.uint64)
    np.testing.assert_array_equal(b.to_numpy(), ref)
    assert (
        run("bin", path, "-o", folder / "b2.h5", "--factor", "2", "--scan-factor", "2").exit_code
        == 0
    )
    assert read_emd(folder / "b2.h5").shape == (2, 2, 16, 18)
    res = run("hotpix", path, "-o", folder / "clean.h5", "--mask-out", folder / "mask.npy")
    assert res.exit_code == 0, res.output
    mask = np.load(folder / "mask.npy")
    np.testing.assert_array_equal(mask, truth.hot_mask)
    assert f"{int(truth.hot_mask.sum())} bad pixel(s) repaired" in res.output
    clean = read_emd(folder / "clean.h5").to_numpy()
    assert clean[..., mask].max() < cube[..., mask].min()


def test_errors_are_reported(files):
    folder, path, _, _ = files
    res = CliRunner().invoke(
        stem, ["count", str(path), "-o", str(folder / "x.h5"), "--xray", "lots"]
    )
    assert res.exit_code != 0 and "--xray" in res.output
    res = CliRunner().invoke(
        stem, ["bin", str(path), "-o", str(folder / "x.h5"), "--factor", "100"]
    )
    assert res.exit_code != 0 and "--factor" in res.output
    res = CliRunner().invoke(
        stem,
        ["count", str(path), "-o", str(folder / "x.h5"), "--dark", str(folder / "missing.npy")],
    )
    assert res.exit_code != 0
    assert "dark reference file not found" in str(res.exception)


def test_origin_and_dpc_commands(tmp_path):
    """`stem origin` centres a descanned cube (re-measured origins at the detector centre) and
    `stem dpc` finds the scan rotation and a phase correlated with the true one."""
    import h5py

    from stacklab.stem4d import find_origin
    from stacklab.stem4d.simulate import simulate_descan

    cube, truth = simulate_descan((12, 10), (40, 38), rotation_deg=17.0, noise=False, seed=3)
    path = write_emd(tmp_path / "scan.h5", DataCube(cube.astype(np.float32)))
    out = tmp_path / "centred.h5"
    res = run("origin", path, "-o", out, "--model", "none", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output
    with h5py.File(out, "r") as f:
        centred = f["data"][()]
        np.testing.assert_allclose(f["origins"][()], truth.origins, atol=0.01)
    again = find_origin(centred)
    np.testing.assert_allclose(again, np.broadcast_to([20.0, 19.0], again.shape), atol=0.01)
    res = run("origin", path, "-o", tmp_path / "plane.h5", "--model", "plane", "--no-progress")
    assert res.exit_code == 0 and "descan plane: RMS residual" in res.output

    coef = truth.coefficients
    vacuum, _ = simulate_descan(
        (12, 10), (40, 38), plane=coef[:3], quadratic=coef[3:], n_blobs=0, noise=False, seed=3
    )
    vac_path = write_emd(tmp_path / "vacuum.h5", DataCube(vacuum.astype(np.float32)))
    res = run("dpc", path, "-o", tmp_path / "dpc.h5", "--vacuum", vac_path, "--descan", "parabola")
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "dpc.h5", "r") as f:
        assert abs(f["phase"].attrs["rotation_deg"] - 17.0) < 0.5
        assert not f["phase"].attrs["flip"]
        phase = f["phase"][()]
    assert np.corrcoef(phase.ravel(), truth.phase.ravel())[0, 1] > 0.98
