"""``stacklab ptycho simulate/reconstruct`` (click CliRunner on tiny files) and the demo section."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from stacklab.ptycho.cli import ptycho


def test_simulate_then_reconstruct(tmp_path):
    runner = CliRunner()
    sim = tmp_path / "sim.h5"
    res = runner.invoke(
        ptycho,
        [
            "simulate",
            "-o",
            str(sim),
            "--scan",
            "5",
            "5",
            "--probe-size",
            "32",
            "--step",
            "4",
            "--seed",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output
    with h5py.File(sim, "r") as f:
        assert f["patterns"].shape == (5, 5, 32, 32)
        assert f["positions"].shape == (25, 2)
        assert f["object"].dtype == np.complex64
        assert f.attrs["stacklab_kind"] == "ptycho_simulation"
    out = tmp_path / "rec.h5"
    res = runner.invoke(
        ptycho,
        [
            "reconstruct",
            str(sim),
            "--iterations",
            "15",
            "--method",
            "rpie",
            "-o",
            str(out),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "phase RMS error" in res.output
    with h5py.File(sim, "r") as f:
        obj_shape = f["object"].shape
    with h5py.File(out, "r") as f:
        assert f["object"].shape == obj_shape
        assert f["probe"].shape == (32, 32)
        errors = f["errors"][()]
        obj_err = f["object_errors"][()]
        assert f.attrs["method"] == "rpie"
    assert errors.shape == (15,) and obj_err.shape == (15,)
    assert errors[-1] < errors[0]
    assert obj_err[-1] < 0.05
    # default output name, noisy data, least squares
    noisy = tmp_path / "noisy.h5"
    assert (
        runner.invoke(
            ptycho,
            [
                "simulate",
                "-o",
                str(noisy),
                "--scan",
                "4",
                "4",
                "--probe-size",
                "32",
                "--step",
                "4",
                "--counts",
                "1e4",
            ],
        ).exit_code
        == 0
    )
    res = runner.invoke(ptycho, ["reconstruct", str(noisy), "--iterations", "3"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "noisy_recon.h5").exists()


def test_reconstruct_reports_bad_files(tmp_path):
    runner = CliRunner()
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["patterns"] = np.zeros((4, 8, 8))
    res = runner.invoke(ptycho, ["reconstruct", str(bad)])
    assert res.exit_code != 0
    assert "positions" in str(res.exception)
    noth5 = tmp_path / "x.h5"
    noth5.write_text("not hdf5")
    res = runner.invoke(ptycho, ["reconstruct", str(noth5)])
    assert res.exit_code != 0
    assert "HDF5" in str(res.exception)


def test_demo_section_quick():
    pytest.importorskip("matplotlib")
    from stacklab.ptycho.demo import run_demo

    section = run_demo(quick=True, seed=0)
    assert section.title == "Ptychography"
    assert section.ok
    rms = section.metrics[0]
    assert rms.name == "object phase RMS error" and rms.value <= 0.05
    assert len(section.figures) == 2
    assert section.seconds < 30
