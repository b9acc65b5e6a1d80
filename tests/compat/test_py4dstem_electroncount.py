"""stacklab.compat.py4dstem.electroncount against simulated ground truth.

py4DSTEM 0.14.18's electron counting cannot run (README of tests/golden/py4dstem), so there is
no golden output: the tests use :func:`stacklab.stem4d.simulate.simulate_counting`, whose planted
electrons, dark level and read noise are known.
"""

from __future__ import annotations

import numpy as np
import pytest

from stacklab import backend
from stacklab.compat import py4dstem as p4
from stacklab.errors import BackendError, ShapeError
from stacklab.stem4d.simulate import match_events, simulate_counting

READ_NOISE = 2.5


@pytest.fixture(scope="module")
def scan():
    cube, truth = simulate_counting(
        (5, 7),
        (48, 40),
        electrons_per_frame=15,
        xrays_per_frame=0.3,
        read_noise=READ_NOISE,
        seed=11,
    )
    return cube, truth


def test_calculate_thresholds_known_noise(scan):
    cube, truth = scan
    before = cube.copy()
    tb, tx = p4.calculate_thresholds(cube, truth.dark, Nsamples=20, rng=1)
    np.testing.assert_array_equal(cube, before)
    print(f"background threshold {tb:.3f} (truth {4 * READ_NOISE}), x-ray {tx:.1f}")
    assert tb == pytest.approx(4 * READ_NOISE, rel=0.05)  # noise mean 0, sigma 2.5 after dark
    # x-ray threshold: mean + 10 std of the sampled dark-subtracted values (as documented)
    frames = np.random.default_rng(1).permutation(35)[:20]
    sample = cube.reshape(35, 48, 40)[frames].astype(float) - truth.dark
    assert tx == pytest.approx(sample.mean() + 10 * sample.std(), rel=1e-12)
    assert 100 < tx < 2000  # above a mean electron (100 ADU), below the x-rays (>= 2000 ADU)


def test_calculate_thresholds_nonsquare_scan_uses_every_frame():
    """py4DSTEM indexes frame k as (k // R_Nx, k % R_Ny): wrong (or IndexError) for 2 x 8."""
    cube, truth = simulate_counting((2, 8), (32, 32), electrons_per_frame=5, read_noise=2.0, seed=3)
    tb, tx = p4.calculate_thresholds(cube, truth.dark, Nsamples=16, thresh_xray_Nsigma=7)
    allv = cube.astype(float) - truth.dark
    assert tx == pytest.approx(allv.mean() + 7 * allv.std(), rel=1e-12)
    assert tb == pytest.approx(4 * 2.0, rel=0.06)


def test_calculate_thresholds_params(scan):
    cube, truth = scan
    tb, _, n, edges, popt = p4.calculate_thresholds(cube, truth.dark, return_params=True, rng=2)
    assert edges.shape == (n.size + 1,) and np.all(np.diff(edges) > 0)
    amp, mu, sigma = popt
    assert mu == pytest.approx(0.0, abs=0.2) and sigma == pytest.approx(READ_NOISE, rel=0.05)
    centres = (edges[:-1] + edges[1:]) / 2
    core = np.abs(centres - mu) < sigma
    model = amp * np.exp(-0.5 * ((centres - mu) / sigma) ** 2)
    # the Gaussian describes the noise peak of the histogram (integer data: 1-ADU bins)
    assert np.sum(n[core]) == pytest.approx(np.sum(model[core]), rel=0.1)
    assert tb == pytest.approx(mu + 4 * sigma)


def test_electron_count_pointlist(scan):
    cube, truth = scan
    pla = p4.electron_count(cube, truth.dark, rng=0)  # float dark: py4DSTEM raises here
    assert isinstance(pla, p4.PointListArray) and pla.shape == (5, 7)
    pl = pla.get_pointlist(2, 3)
    assert pl.fields == ("qx", "qy") and pl.dtype["qx"] == np.float64  # sub_pixel=True
    score = match_events(pla.events, truth.electrons)
    print(
        f"electron_count: recall {score.recall:.3f}, precision {score.precision:.3f}, "
        f"rms {score.rms_error:.3f} px"
    )
    assert score.recall > 0.97 and score.precision > 0.97
    assert score.rms_error < 0.3
    # per-position lists agree with the truth's counts
    counts = np.array([[pla[rx, ry].length for ry in range(7)] for rx in range(5)])
    assert np.abs(counts - truth.electrons.counts_per_frame()).max() <= 2


def test_electron_count_datacube_and_conversions(scan):
    cube, truth = scan
    counted = p4.electron_count(cube, truth.dark, output="datacube", rng=0)
    assert counted.dtype == bool and counted.shape == cube.shape
    pla = p4.electron_count(cube, truth.dark, sub_pixel=False, rng=0)
    assert pla.dtype["qx"] == np.int64
    assert counted.sum() == pla.events.n_events
    back = p4.counted_pointlistarray_to_datacube(pla, cube.shape)
    np.testing.assert_array_equal(back, counted)
    round_trip = p4.counted_datacube_to_pointlistarray(counted)
    np.testing.assert_array_equal(
        p4.counted_pointlistarray_to_datacube(round_trip, cube.shape), counted
    )
    pl = round_trip.get_pointlist(1, 6)
    np.testing.assert_array_equal(
        np.sort(pl.data["qx"] * 40 + pl.data["qy"]), np.flatnonzero(counted[1, 6])
    )
    # sub-pixel points go to their nearest pixel
    sub = p4.electron_count(cube, truth.dark, rng=0)
    near = p4.counted_pointlistarray_to_datacube(sub, cube.shape, subpixel=True)
    assert abs(int(near.sum()) - int(counted.sum())) <= 3


def test_electron_count_binned(scan):
    cube, truth = scan
    binned = p4.electron_count(cube, truth.dark, binfactor=2, output="datacube", rng=0)
    assert binned.shape == (5, 7, 24, 20) and binned.dtype == np.uint32
    full = p4.electron_count(cube, truth.dark, output="datacube", rng=0)
    np.testing.assert_array_equal(binned, full.reshape(5, 7, 24, 2, 20, 2).sum(axis=(3, 5)))


def test_electron_count_validation(scan):
    cube, truth = scan
    with pytest.raises(ValueError, match="output"):
        p4.electron_count(cube, truth.dark, output="list")
    with pytest.raises(ShapeError):
        p4.electron_count(cube, truth.dark[:-1], rng=0)
    with pytest.raises(ShapeError):
        p4.electron_count(cube[0], truth.dark)
    with pytest.raises(ValueError):
        p4.calculate_thresholds(cube, truth.dark, thresh_bkgrnd_Nsigma=0)
    with pytest.raises(ShapeError):
        p4.counted_pointlistarray_to_datacube(
            p4.electron_count(cube, truth.dark, rng=0), (7, 5, 48, 40)
        )


def test_torch_bin_without_torch():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 60000, (9, 14)).astype(np.uint16)
    out = p4.torch_bin(a, "cpu", factor=2)
    np.testing.assert_array_equal(out, a[:8].astype(np.int64).reshape(4, 2, 7, 2).sum(axis=(1, 3)))

    class FakeTorchDevice:
        type = "cpu"

    np.testing.assert_array_equal(p4.torch_bin(a, FakeTorchDevice(), 2), out)
    with pytest.raises(ValueError):
        p4.torch_bin(a, "tpu")


@pytest.mark.skipif(backend.gpu_available(), reason="checks the no-GPU error")
def test_electron_count_GPU_without_gpu(scan):
    cube, truth = scan
    with pytest.raises(BackendError):
        p4.electron_count_GPU(cube, truth.dark)


@pytest.mark.gpu
def test_electron_count_GPU_matches_cpu(scan, cupy):
    cube, truth = scan
    cpu = p4.electron_count(cube, truth.dark, output="datacube", rng=0)
    gpu = p4.electron_count_GPU(cube, truth.dark, output="datacube", rng=0)
    np.testing.assert_array_equal(gpu, cpu)
    pla_cpu = p4.electron_count(cube, truth.dark, sub_pixel=False, rng=0)
    pla_gpu = p4.electron_count_GPU(cube, truth.dark, sub_pixel=False, rng=0)
    np.testing.assert_array_equal(pla_gpu.events.rows, pla_cpu.events.rows)
    np.testing.assert_array_equal(pla_gpu.events.offsets, pla_cpu.events.offsets)
    binned = p4.torch_bin(cupy.asarray(cube[0, 0]), "gpu", 2)
    assert backend.is_cupy(binned)
    np.testing.assert_array_equal(cupy.asnumpy(binned), p4.torch_bin(cube[0, 0], "cpu", 2))
