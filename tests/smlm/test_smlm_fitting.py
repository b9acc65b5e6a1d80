"""Per-spot MLE of the pixel-integrated Gaussian: exact recovery, CRLB, twin agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats
from tests.smlm._smlm_data import spots

from stacklab.errors import ShapeError
from stacklab.smlm import fit_spots, psf_model
from stacklab.smlm.fitting import initial_guess


def test_psf_model_integrates_the_gaussian():
    """Sum of the model minus background = photons times the erf mass inside the crop."""
    p = np.array([3.2, 2.7, 1000.0, 5.0, 1.3])
    mu = psf_model((7, 7), p)
    inside_x = 0.5 * (
        special.erf((6.5 - 3.2) / (math.sqrt(2) * 1.3))
        - special.erf((-0.5 - 3.2) / (math.sqrt(2) * 1.3))
    )
    inside_y = 0.5 * (
        special.erf((6.5 - 2.7) / (math.sqrt(2) * 1.3))
        - special.erf((-0.5 - 2.7) / (math.sqrt(2) * 1.3))
    )
    assert mu.shape == (7, 7)
    np.testing.assert_allclose(mu.sum() - 5.0 * 49, 1000.0 * inside_x * inside_y, rtol=1e-12)
    # Pixel (2, 3) holds the integral over [1.5, 2.5] x [2.5, 3.5].
    ey = 0.5 * (
        special.erf((2.5 - 2.7) / (math.sqrt(2) * 1.3))
        - special.erf((1.5 - 2.7) / (math.sqrt(2) * 1.3))
    )
    ex = 0.5 * (
        special.erf((3.5 - 3.2) / (math.sqrt(2) * 1.3))
        - special.erf((2.5 - 3.2) / (math.sqrt(2) * 1.3))
    )
    assert mu[2, 3] == pytest.approx(5.0 + 1000.0 * ey * ex, rel=1e-12)


@pytest.mark.parametrize("fit_sigma", [False, True])
@pytest.mark.parametrize("method", ["mle", "lsq"])
def test_noise_free_fit_is_exact(fit_sigma, method):
    truth = np.array([[3.3, 2.6, 800.0, 12.0, 1.2], [2.8, 3.45, 2500.0, 3.0, 1.5]])
    crops = psf_model((9, 9), truth)
    sigma = truth[:, 4] if not fit_sigma else 1.4
    res = fit_spots(crops, sigma=sigma, fit_sigma=fit_sigma, method=method, tol=1e-8)
    assert res.converged.all()
    np.testing.assert_allclose(res.params[:, :2], truth[:, :2], atol=1e-6)
    np.testing.assert_allclose(res.params[:, 2:4], truth[:, 2:4], rtol=1e-5)
    np.testing.assert_allclose(res.sigma, truth[:, 4], atol=1e-6)
    assert np.isnan(res.crlb[:, 4]).all() != fit_sigma


def test_precision_matches_crlb_on_poisson_spots():
    crops, truth = spots(3000)
    res = fit_spots(crops, sigma=1.3)
    err = res.params[:, :2] - truth[:, :2]
    ratio = np.sqrt(np.mean(err**2)) / np.sqrt(np.mean(res.crlb[:, :2] ** 2))
    bias = np.abs(err.mean(axis=0)) / (err.std(axis=0) / np.sqrt(len(err)))
    print(f"MLE precision / CRLB = {ratio:.4f}, CRLB {np.mean(res.crlb[:, 0]) * 100:.2f} nm")
    assert 0.95 < ratio < 1.05
    assert np.all(bias < 4)
    assert res.converged.all()
    assert abs(res.photons.mean() / 1000.0 - 1) < 0.01
    assert abs(res.background.mean() / 20.0 - 1) < 0.01


def test_free_sigma_recovers_sigma_and_crlb():
    crops, _ = spots(3000)
    res = fit_spots(crops, sigma=1.0, fit_sigma=True)
    assert res.sigma.mean() == pytest.approx(1.3, abs=0.01)
    # The scatter of the fitted sigma matches its CRLB.
    assert np.std(res.sigma) / np.sqrt(np.mean(res.crlb[:, 4] ** 2)) == pytest.approx(1, abs=0.08)


def test_crlb_without_background_is_sigma_over_sqrt_n():
    """Bright spot, no background, crop >> PSF: CRLB_x -> sqrt(s^2 + 1/12) / sqrt(N).

    (The 1/12 is the pixel's variance; the exact bound of the pixelated PSF is within 1 %.)
    """
    p = np.array([[7.0, 7.0, 1e4, 1e-3, 1.3]])
    crops = psf_model((15, 15), p)
    res = fit_spots(crops, sigma=1.3, tol=1e-8)
    expected = math.sqrt(1.3**2 + 1 / 12) / math.sqrt(1e4)
    assert res.crlb[0, 0] == pytest.approx(expected, rel=0.01)
    assert res.crlb[0, 2] == pytest.approx(math.sqrt(1e4), rel=0.01)  # photons: Poisson


def test_loglik_is_the_poisson_log_likelihood():
    crops, _ = spots(50)
    res = fit_spots(crops, sigma=1.3)
    mu = psf_model((7, 7), res.params)
    expected = stats.poisson.logpmf(crops.astype(np.int64), mu).sum(axis=(1, 2))
    np.testing.assert_allclose(res.loglik, expected, rtol=1e-9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"fit_sigma": True},
        {"method": "lsq"},
        {"variance": np.linspace(0.5, 4.0, 49).reshape(7, 7)},
    ],
)
def test_numba_and_vectorized_twins_agree(kwargs):
    crops, _ = spots(400, seed=5)
    a = fit_spots(crops, impl="numba", **kwargs)
    b = fit_spots(crops, impl="vectorized", **kwargs)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a.crlb, b.crlb, rtol=1e-7, equal_nan=True)
    np.testing.assert_allclose(a.loglik, b.loglik, rtol=1e-9)
    np.testing.assert_array_equal(a.iterations, b.iterations)
    np.testing.assert_array_equal(a.converged, b.converged)


def test_initial_guess_matches_the_kernel_guess():
    """The numba kernel computes the starting point itself; it must equal initial_guess."""
    crops, _ = spots(200, seed=2)
    one_step_a = fit_spots(crops, impl="numba", max_iter=1)
    one_step_b = fit_spots(crops, init=initial_guess(crops, 1.3), impl="numba", max_iter=1)
    np.testing.assert_allclose(one_step_a.params, one_step_b.params, rtol=1e-12, atol=1e-12)


def test_scmos_variance_is_unbiased_and_costs_precision():
    rng = np.random.default_rng(8)
    crops, truth = spots(2000, seed=8)
    var = rng.uniform(1.0, 30.0, (7, 7))
    noisy = crops + rng.standard_normal(crops.shape) * np.sqrt(var)
    with_var = fit_spots(noisy.astype(np.float32), variance=var)
    plain = fit_spots(crops)
    err = with_var.params[:, :2] - truth[:, :2]
    ratio = np.sqrt(np.mean(err**2)) / np.sqrt(np.mean(with_var.crlb[:, :2] ** 2))
    assert 0.93 < ratio < 1.07
    assert np.mean(with_var.crlb[:, 0]) > 1.02 * np.mean(plain.crlb[:, 0])


def test_spot_at_crop_edge_is_flagged_at_bound():
    p = np.array([[6.4, 3.0, 1000.0, 20.0, 1.3]])  # centre near the last column
    crops = psf_model((7, 7), p)
    res = fit_spots(crops, sigma=1.3)
    assert res.x[0] == pytest.approx(6.4, abs=1e-3)
    assert not res.at_bound[0]
    far = np.array([[9.0, 3.0, 1000.0, 20.0, 1.3]])  # outside the crop: x stops on its bound
    res = fit_spots(psf_model((7, 7), far), sigma=1.3)
    assert res.at_bound[0]


def test_empty_and_bad_input():
    res = fit_spots(np.zeros((0, 7, 7), np.float32))
    assert len(res) == 0 and res.params.shape == (0, 5)
    with pytest.raises(ShapeError, match="crops"):
        fit_spots(np.zeros((7, 7)))
    with pytest.raises(ValueError, match="sigma"):
        fit_spots(np.ones((2, 7, 7)), sigma=0.0)
    with pytest.raises(ValueError, match="method"):
        fit_spots(np.ones((2, 7, 7)), method="chi2")
    with pytest.raises(ShapeError, match="variance"):
        fit_spots(np.ones((2, 7, 7)), variance=np.ones((5, 5)))


def test_input_not_modified_and_blank_crop_survives():
    crops, _ = spots(20, seed=1)
    crops = crops.copy()
    crops[3] = 0.0  # an empty crop: no crash, a finite answer
    before = crops.copy()
    res = fit_spots(crops)
    np.testing.assert_array_equal(crops, before)
    assert np.all(np.isfinite(res.params))
