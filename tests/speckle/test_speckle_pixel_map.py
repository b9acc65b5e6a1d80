"""update_pixel_map, update_translations, estimate_pixel_map and regularize_pixel_map."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.speckle import (
    estimate_pixel_map,
    make_reference,
    regularize_pixel_map,
    update_pixel_map,
    update_translations,
)
from stacklab.speckle.pixel_map import _refine

from .conftest import map_rms


@pytest.fixture(scope="module")
def ref2(scan_clean):
    s = scan_clean
    return make_reference(s.data, None, s.whitefield, 2 * s.dij, 2 * s.pixel_map, iterations=6)


@pytest.mark.parametrize("backend", ["numba", "xp"])
def test_recovers_a_known_offset(scan_clean, ref2, backend):
    # Reference from the true map; a map displaced by (0.3, -0.2) object px is moved back.
    s = scan_clean
    off = np.array([0.3, -0.2])[:, None, None]
    upd = update_pixel_map(
        s.data,
        None,
        s.whitefield,
        ref2.image,
        2 * (s.pixel_map + off),
        ref2.n0,
        ref2.m0,
        2 * s.dij,
        search_window=5,
        backend=backend,
    )
    inner = (slice(None), slice(6, -6), slice(6, -6))
    shift = upd.shift[inner] / 2
    np.testing.assert_allclose(np.median(shift, axis=(1, 2)), [-0.3, 0.2], atol=0.02)
    assert map_rms(upd.pixel_map / 2, s.pixel_map) < 0.05
    assert upd.refined[6:-6, 6:-6].mean() > 0.95
    assert np.nanmean(upd.error_map) == pytest.approx(upd.error)


def test_numba_and_xp_agree(scan_small):
    s = scan_small
    ref = make_reference(s.data, s.mask, s.whitefield, s.dij, s.pixel_map)
    args = (s.data, s.mask, s.whitefield, ref.image, s.pixel_map + 0.4, ref.n0, ref.m0, s.dij)
    a = update_pixel_map(*args, search_window=3, backend="numba")
    b = update_pixel_map(*args, search_window=3, backend="xp")
    np.testing.assert_allclose(a.error_map, b.error_map, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(a.pixel_map, b.pixel_map, atol=1e-9)
    np.testing.assert_array_equal(a.refined, b.refined)


def test_quadratic_refinement_checks_for_a_minimum():
    y, x = np.meshgrid([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], indexing="ij")
    bowl = (y - 0.3) ** 2 + 2 * (x + 0.2) ** 2 + 5.0  # true minimum at (0.3, -0.2)
    saddle = (y - 0.3) ** 2 - 2 * (x + 0.2) ** 2 + 5.0
    cap = -bowl
    surf = np.stack([bowl, saddle, cap]).reshape(3, 9)
    pos, valid, all_nan = _refine(np, surf, 3, 3, True)
    np.testing.assert_allclose(pos[0], [1.3, 0.8], atol=1e-12)  # index units (centre 1)
    assert list(valid) == [True, False, False] and not all_nan.any()
    # rejected points stay at the best sample
    assert np.all(pos[1] == np.round(pos[1])) and np.all(pos[2] == np.round(pos[2]))
    # 1D profiles: parabola, checked
    prof = np.array([[3.0, 1.0, 2.0], [1.0, 2.0, 1.5], [np.nan, np.nan, np.nan]])
    p1, v1, n1 = _refine(np, prof, 1, 3, True)
    assert p1[0, 1] == pytest.approx(1 + 0.5 * (3 - 2) / (3 + 2 - 2))
    assert list(v1) == [True, False, False] and list(n1) == [False, False, True]


def test_window_clip_filter_integrate(scan_small):
    s = scan_small
    ref = make_reference(s.data, s.mask, s.whitefield, s.dij, s.pixel_map)
    noisy = s.pixel_map + np.random.default_rng(2).normal(scale=0.6, size=s.pixel_map.shape)
    args = (s.data, s.mask, s.whitefield, ref.image, noisy, ref.n0, ref.m0, s.dij)
    raw = update_pixel_map(*args, quadratic_refinement=False)
    assert np.abs(raw.shift).max() >= 1
    sh = raw.shift[:, s.mask]
    assert np.all(sh == np.round(sh))  # integer shifts only (masked pixels are filled)
    clipped = update_pixel_map(*args, clip=(-0.1, 0.1))
    assert np.abs(clipped.shift).max() <= 0.1 + 1e-12
    smooth = update_pixel_map(*args, filter=2.0)
    assert np.std(np.diff(smooth.shift[0], axis=0)) < np.std(np.diff(raw.shift[0], axis=0))
    cf = update_pixel_map(*args, integrate=True)
    # a curl-free field has (nearly) symmetric cross derivatives
    gy_x = np.gradient(cf.shift[0], axis=1)[4:-4, 4:-4]
    gx_y = np.gradient(cf.shift[1], axis=0)[4:-4, 4:-4]
    assert np.sqrt(np.mean((gy_x - gx_y) ** 2)) < 0.2 * np.sqrt(np.mean(gy_x**2) + 1e-12) + 1e-3
    roi = update_pixel_map(*args, roi=[10, 30, 12, 40])
    assert np.all(roi.shift[:, :10] == 0) and np.all(roi.shift[:, :, 40:] == 0)
    assert np.isnan(roi.error_map[:10]).all()


def test_one_dimensional_update(scan_1d):
    s = scan_1d
    ref = make_reference(s.data, None, s.whitefield, 2 * s.dij, 2 * s.pixel_map, iterations=4)
    off = np.array([0.0, 0.25])[:, None, None]
    upd = update_pixel_map(
        s.data, None, s.whitefield, ref.image, 2 * (s.pixel_map + off), ref.n0, ref.m0, 2 * s.dij
    )
    assert np.all(upd.shift[0] == 0)
    assert np.median(upd.shift[1, 0, 20:-20]) / 2 == pytest.approx(-0.25, abs=0.03)


def test_update_translations_recovers_errors(scan_clean, ref2):
    s = scan_clean
    rng = np.random.default_rng(1)
    err = rng.normal(scale=0.3, size=s.dij.shape)
    dij = 2 * (s.dij + err)
    for _ in range(2):  # a second pass polishes the sub-pixel (quadratic) estimate
        tu = update_translations(
            s.data, None, s.whitefield, ref2.image, 2 * s.pixel_map, ref2.n0, ref2.m0, dij
        )
        dij = tu.dij_n
    got = tu.dij_n / 2 - s.dij
    assert np.sqrt(np.mean(got**2)) < 0.01
    assert tu.refined.all() and tu.error.shape == (25,)


def test_estimate_pixel_map_from_pairs(scan_small):
    s = scan_small
    u = estimate_pixel_map(s.data, s.mask, s.whitefield, s.dij)
    good = s.mask.copy()
    good[:6] = good[-6:] = False
    good[:, :6] = good[:, -6:] = False
    assert map_rms(u, s.pixel_map, good) < 0.05
    u1 = estimate_pixel_map(s.data, s.mask, s.whitefield, s.dij, passes=1)
    assert map_rms(u1, s.pixel_map, good) > map_rms(u, s.pixel_map, good)


def test_estimate_pixel_map_1d(scan_1d):
    s = scan_1d
    u = estimate_pixel_map(s.data, None, s.whitefield, s.dij)
    assert np.all(u[0] == 0)
    e = (u - s.pixel_map)[1, 0, 20:-20]
    assert np.std(e) < 0.05


def test_regularize_removes_curl_and_fills():
    ii, jj = np.indices((40, 48), dtype=float)
    psi = 0.002 * (ii - 20) ** 3 / 10 + 0.01 * (jj - 24) ** 2
    gy, gx = np.gradient(psi)
    # rotated gradient of a stream function that vanishes on the border: pure curl
    a, b = np.pi * 2 / 39, np.pi * 2 / 47
    stream = np.sin(a * ii) * np.sin(b * jj)
    curl = 0.3 * np.stack(
        [b * np.sin(a * ii) * np.cos(b * jj), -a * np.cos(a * ii) * np.sin(b * jj)]
    )
    curl /= np.abs(curl).max() / 0.3
    del stream
    u = np.stack([ii + gy, jj + gx]) + curl
    mask = np.ones((40, 48), bool)
    mask[10, 10] = False
    u_bad = u.copy()
    u_bad[:, 10, 10] = 99.0
    out = regularize_pixel_map(u_bad, mask, curl_free=True)
    target = np.stack([ii + gy, jj + gx])
    inner = (slice(None), slice(3, -3), slice(3, -3))
    before = np.sqrt(np.mean((u - target)[inner] ** 2))
    after_c = out - target
    after_c = after_c - after_c.mean(axis=(1, 2), keepdims=True)
    assert np.sqrt(np.mean(after_c[inner] ** 2)) < 0.25 * before
    assert abs(out[0, 10, 10] - target[0, 10, 10]) < 0.3
