"""stacklab.compat.smlmlp against smlmLP 0.1.20's documentation and recorded outputs.

Golden data: tests/golden/smlmlp (README there). The seed's doctest examples run as written.
Where smlmLP is right the outputs are compared with its record (keys, shapes, dtypes, the
autocorrelation image, knot ranges); where it is biased (PSF sigma +8.6 % on the golden movie;
on-time reported as the correlation time) stacklab is checked against the simulation truth and
smlmLP's recorded value against its documented bias.
"""

from __future__ import annotations

import doctest
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from stacklab import backend
from stacklab.compat import smlmlp as sl
from stacklab.errors import BackendError, ShapeError

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "smlmlp"

DOCUMENTED_KEYS = ["ac", "coeffs", "fit", "psf", "sigx", "sigy", "spline", "theta", "tx", "ty"]

# The two examples of the seed page (shared/seeds/smlmlp.txt), verbatim.
SEED_EXAMPLE_1 = """
>>> import numpy as np
>>> channel = np.random.rand(20, 64, 64).astype(np.float32)
>>> psf_sigma, info = blink_spatial_psf([channel], crop_pix=41)
>>> len(psf_sigma)
1
>>> sorted(info.keys())
['ac', 'coeffs', 'fit', 'psf', 'sigx', 'sigy', 'spline', 'theta', 'tx', 'ty']
"""
SEED_EXAMPLE_2 = """
>>> channels = [
...     np.random.rand(20, 64, 64).astype(np.float32),
...     np.random.rand(20, 64, 64).astype(np.float32),
... ]
>>> psf_sigma, info = blink_spatial_psf(
...     channels,
...     crop_pix=31,
...     channels_pixels_nm=[(100.0, 100.0), (110.0, 110.0)],
... )
>>> len(info["psf"])
2
>>> len(info["sigx"])
2
"""


def load(name: str) -> dict[str, np.ndarray]:
    path = GOLDEN / name
    if not path.exists():
        pytest.fail(f"golden file missing: {path}")
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="module")
def spatial():
    return load("blink_spatial_psf.npz")


@pytest.fixture(scope="module")
def temporal():
    return load("blink_temporal_on.npz")


@pytest.fixture(scope="module")
def spatial_run(spatial):
    movie = spatial["in_movie"].copy()
    out = sl.blink_spatial_psf([movie], crop_pix=41, channels_pixels_nm=100.0)
    np.testing.assert_array_equal(movie, spatial["in_movie"])  # input untouched
    return out


def run_examples(text: str, seed: int) -> doctest.TestResults:
    np.random.seed(seed)  # noqa: NPY002 - the seed's examples use the legacy global RNG
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {"blink_spatial_psf": sl.blink_spatial_psf}, "seed", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # uniform noise: "no PSF found"
        runner.run(test)
    return runner.summarize(verbose=False)


def test_seed_doctest_examples():
    r1 = run_examples(SEED_EXAMPLE_1, 20261123)
    assert (r1.failed, r1.attempted) == (0, 5)
    globs_text = "\n>>> import numpy as np" + SEED_EXAMPLE_2
    r2 = run_examples(globs_text, 20261124)
    assert (r2.failed, r2.attempted) == (0, 5)


def test_module_docstrings_run():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = doctest.testmod(sl, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0 and result.attempted >= 8


def assert_like_golden(info: dict, golden: dict, prefix: str, n_channels: int) -> None:
    assert sorted(info) == DOCUMENTED_KEYS
    for key in DOCUMENTED_KEYS:
        ref = golden[f"{prefix}info_{key}"]
        assert len(info[key]) == n_channels == ref.shape[0], key
        for value, r in zip(info[key], ref):
            value = np.asarray(value)
            assert value.shape == r.shape, f"{key}: {value.shape} != {r.shape}"
            assert value.dtype == r.dtype, f"{key}: {value.dtype} != {r.dtype}"


def test_doctest_inputs_match_golden_layout():
    d = load("doctest_examples.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ps1, info1 = sl.blink_spatial_psf([d["in_ex1_channel"]], crop_pix=int(d["in_ex1_crop_pix"]))
        ps2, info2 = sl.blink_spatial_psf(
            list(d["in_ex2_channels"]),
            crop_pix=int(d["in_ex2_crop_pix"]),
            channels_pixels_nm=[tuple(p) for p in d["in_ex2_channels_pixels_nm"]],
        )
    assert len(ps1) == 1 and len(ps2) == 2
    assert_like_golden(info1, d, "out_ex1_", 1)
    assert_like_golden(info2, d, "out_ex2_", 2)
    # uniform noise holds no PSF: NaN (smlmLP returns values on its fit bounds, e.g. 2000 nm)
    assert all(math.isnan(v) for v in ps1 + ps2)
    # knots span the crop in nm with the channel's pixel size: +-15 px x 110 nm
    np.testing.assert_array_equal(
        info2["tx"][1][[0, 3, -4, -1]], d["out_ex2_info_tx"][1][[0, 3, -4, -1]]
    )
    assert info2["tx"][1][0] == -1650.0


def test_spatial_layout_matches_golden(spatial, spatial_run):
    psf_sigma, info = spatial_run
    assert isinstance(psf_sigma, list) and len(psf_sigma) == 1
    assert_like_golden(info, spatial, "out_", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ps21, info21 = sl.blink_spatial_psf([spatial["in_movie"]], crop_pix=21)
    assert_like_golden(info21, spatial, "out_crop21_", 1)
    assert ps21[0] == pytest.approx(float(spatial["truth_sigma_nm"]), rel=0.03)


def test_autocorrelation_image_matches_smlmlp(spatial, spatial_run):
    """Same quantity, same normalisation and orientation; only the background removal differs."""
    _, info = spatial_run
    ours, ref = info["ac"][0], spatial["out_info_ac"][0]
    off = np.ones(ours.shape, bool)
    off[20, 20] = False
    assert np.corrcoef(ours[off], ref[off])[0, 1] > 0.99
    assert ours[off].min() == pytest.approx(0.0, abs=1e-6)
    assert ours[off].max() == pytest.approx(1.0, abs=1e-6)
    assert ours[20, 20] > 1.0  # the zero lag keeps its noise spike, as in smlmLP (1.34)
    np.testing.assert_allclose(ours, ours[::-1, ::-1], atol=1e-5)  # autocorrelations are even


def test_psf_sigma_against_truth_and_smlmlp_bias(spatial, spatial_run):
    psf_sigma, info = spatial_run
    truth = float(spatial["truth_sigma_nm"])
    ref = float(spatial["out_psf_sigma"][0])
    print(f"golden movie: stacklab {psf_sigma[0]:.2f} nm, smlmLP {ref:.2f} nm, truth {truth}")
    assert psf_sigma[0] == pytest.approx(truth, rel=0.03)
    assert psf_sigma[0] == pytest.approx(math.sqrt(info["sigx"][0] * info["sigy"][0]))
    # smlmLP's documented bias: +8.6 % here (+2 to +11 % depending on density and SNR)
    assert ref / truth - 1 == pytest.approx(0.0857, abs=0.005)
    ref_xy = math.sqrt(float(spatial["out_info_sigx"][0]) * float(spatial["out_info_sigy"][0]))
    assert ref == pytest.approx(ref_xy)
    for key in ("sigx", "sigy"):
        assert info[key][0] == pytest.approx(truth, rel=0.05)
    assert 0.0 <= info["theta"][0] < 90.0


def test_psf_fit_and_spline_images(spatial_run):
    _, info = spatial_run
    fit, psf, spline = info["fit"][0], info["psf"][0], info["spline"][0]
    h = fit.shape[0] // 2
    assert fit[h, h] == pytest.approx(1.0)
    # the fit is the pixel-sampled PSF: variance sigma^2 + pixel^2 / 12 along each axis
    s_eff = math.sqrt(info["sigx"][0] * info["sigy"][0]) ** 2 + 100.0**2 / 12
    expected_1px = math.exp(-0.5 * 100.0**2 / s_eff)
    assert np.sqrt(fit[h, h - 1] * fit[h - 1, h]) == pytest.approx(expected_1px, rel=0.02)
    assert np.abs(psf - fit).max() < 0.06
    assert np.abs(spline - psf).max() < 0.01


def test_multichannel_pixel_sizes_scale(spatial):
    """The same movie read with 110 nm pixels has every width 1.1 times larger."""
    movie = spatial["in_movie"]
    ps, info = sl.blink_spatial_psf(
        [movie, movie], crop_pix=21, channels_pixels_nm=[(100.0, 100.0), (110.0, 110.0)]
    )
    assert ps[1] == pytest.approx(1.1 * ps[0], rel=1e-6)
    assert info["tx"][1][0] == pytest.approx(1.1 * info["tx"][0][0])
    ps_b, _ = sl.blink_spatial_psf([movie, movie], crop_pix=21, channels_pixels_nm=100.0)
    assert ps_b[0] == pytest.approx(ps[0]) and ps_b[1] == pytest.approx(ps[0])


# --------------------------------------------------------------------------------------------
# blink_temporal_on
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def temporal_run(temporal):
    return sl.blink_temporal_on(
        [temporal["in_movie"]],
        None,
        psf_sigma_nm=float(temporal["in_psf_sigma_nm"]),
        exposure_ms=float(temporal["in_exposure_ms"]),
        channels_pixels_nm=float(temporal["in_channels_pixels_nm"]),
    )


def test_temporal_layout_matches_golden(temporal, temporal_run):
    on_time, info = temporal_run
    assert isinstance(on_time, float)
    assert sorted(info) == ["ac", "average", "fit", "time"]
    assert len(info["ac"]) == 1
    assert info["ac"][0].shape == temporal["out_info_ac"][0].shape == (149,)
    assert info["ac"][0].dtype == temporal["out_info_ac"].dtype
    for key in ("average", "fit", "time"):
        ref = temporal[f"out_info_{key}"]
        assert info[key].shape == ref.shape and info[key].dtype == ref.dtype, key
    # lags start at one exposure here; smlmLP labels the first lag 0 ms
    np.testing.assert_allclose(info["time"], temporal["out_info_time"] + 50.0)


def test_temporal_autocorrelation_matches_smlmlp(temporal, temporal_run):
    """Normalised like smlmLP (minus the last lag, over the first), the curves agree."""
    _, info = temporal_run
    ours = info["average"].astype(float)
    ours = (ours - ours[-1]) / (ours[0] - ours[-1])
    np.testing.assert_allclose(ours[:12], temporal["out_info_average"][:12], atol=0.04)


def test_on_time_meaning(temporal, temporal_run):
    """stacklab returns the mean on-time; smlmLP returned the correlation time (documented)."""
    on_time, _ = temporal_run
    truth_on = float(temporal["truth_mean_on_ms"])
    ref = float(temporal["out_on_time"])
    print(f"golden movie: stacklab {on_time:.1f} ms, smlmLP {ref:.1f} ms, truth on {truth_on} ms")
    # 300 frames hold a few hundred blinks: +-10 % scatter between movies (README)
    assert on_time == pytest.approx(truth_on, rel=0.25)
    # smlmLP's number is the correlation time: 1.11 x the true one here, 0.92 x the on-time;
    # over its 8 replicate movies 1.01 x the correlation time and 0.84 x the mean on-time.
    assert ref == pytest.approx(float(temporal["truth_corr_time_ms"]), rel=0.15)


def test_on_time_on_long_movie():
    """2000 frames of 64 x 64 (stacklab's simulator, the issue's camera): within 6 % of 1 / k_off
    (10 seeds: 198.4 +- 4.9 ms)."""
    simulate = pytest.importorskip("stacklab.smlm.simulate")
    sim = simulate.simulate_movie(2000, (64, 64), k_on=0.01, k_off=0.25, seed=100)
    on_time, info = sl.blink_temporal_on([sim.movie], 40, 130.0, exposure_ms=50.0)
    corr_ms = -50.0 / math.log(1 - 0.01 - 0.25)
    print(f"2000 frames: on-time {on_time:.1f} ms (truth 200, correlation time {corr_ms:.1f})")
    assert on_time == pytest.approx(200.0, rel=0.06)
    assert abs(on_time - 200.0) < abs(corr_ms - 200.0) / 2  # not the correlation time
    assert info["time"].shape == (40,)


def test_temporal_docstring_example_runs():
    channels = [np.random.default_rng(0).random((50, 32, 32)).astype(np.float32)] * 2
    on_time, info = sl.blink_temporal_on(
        channels,
        crop_fr=10,
        psf_sigma_nm=[120.0, 140.0],
        exposure_ms=25.0,
        channels_pixels_nm=[(100.0, 100.0), (110.0, 110.0)],
    )
    assert isinstance(on_time, float) and len(info["ac"]) == 2 and info["time"].shape == (10,)
    assert info["time"][0] == 25.0


# --------------------------------------------------------------------------------------------
# arguments and devices
# --------------------------------------------------------------------------------------------


def test_bad_arguments(spatial):
    movie = spatial["in_movie"][:30]
    with pytest.raises(ShapeError, match="wrap a single stack"):
        sl.blink_spatial_psf(movie)
    with pytest.raises(ShapeError):
        sl.blink_spatial_psf([movie[0]])
    with pytest.raises(ValueError, match="crop_pix"):
        sl.blink_spatial_psf([movie], crop_pix=3)
    with pytest.raises(TypeError, match="crop_pix"):
        sl.blink_spatial_psf([movie], crop_pix=21.0)
    with pytest.raises(ValueError, match="channels_pixels_nm"):
        sl.blink_spatial_psf([movie], channels_pixels_nm=[100.0, 110.0, 120.0])
    with pytest.raises(ValueError, match="empty"):
        sl.blink_spatial_psf([])
    with pytest.raises(ValueError, match="crop_fr"):
        sl.blink_temporal_on([movie], 30)
    with pytest.raises(ValueError, match="psf_sigma_nm"):
        sl.blink_temporal_on([movie], 5, [100.0, 120.0, 130.0])
    with pytest.raises(ValueError, match="exposure_ms"):
        sl.blink_temporal_on([movie], 5, exposure_ms=0.0)


def test_cuda_without_gpu_raises(spatial):
    if backend.gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BackendError):
        sl.blink_spatial_psf([spatial["in_movie"][:20]], cuda=True)


@pytest.mark.gpu
def test_cuda_matches_cpu(spatial, spatial_run, cupy):
    ps, info = sl.blink_spatial_psf([spatial["in_movie"]], crop_pix=41, cuda=True)
    assert ps[0] == pytest.approx(spatial_run[0][0], rel=1e-9)
    np.testing.assert_allclose(info["ac"][0], spatial_run[1]["ac"][0], rtol=1e-5, atol=1e-6)


def test_reexports():
    assert sl.Config.__module__ == "stacklab.smlm.config"
    assert sl.Locs.__module__ == "stacklab.smlm.locs"
