"""CuPy and NumPy give the same speckle-tracking results (run with -m gpu on a CUDA machine)."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.speckle import (
    calc_error,
    estimate_pixel_map,
    integrate_pixel_map,
    make_mask,
    make_reference,
    make_whitefield,
    run,
    update_pixel_map,
    update_translations,
    update_whitefield,
)

pytestmark = pytest.mark.gpu


def _np(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def test_mask_whitefield(cupy, scan_small):
    s = scan_small
    d = cupy.asarray(s.data)
    m = make_mask(d)
    assert isinstance(m, cupy.ndarray)
    np.testing.assert_array_equal(_np(m), make_mask(s.data))
    w = make_whitefield(d, m)
    np.testing.assert_allclose(_np(w), make_whitefield(s.data, s.mask), rtol=1e-6)


def test_reference_update_error(cupy, scan_small):
    s = scan_small
    args = (s.data, s.mask, s.whitefield, 2 * s.dij, 2 * s.pixel_map)
    cargs = tuple(cupy.asarray(a) for a in args)
    a = make_reference(*args, iterations=3, backend="xp")
    b = make_reference(*cargs, iterations=3)
    assert isinstance(b.image, cupy.ndarray)
    np.testing.assert_allclose(_np(b.image), a.image, rtol=1e-9, atol=1e-12, equal_nan=True)
    u = 2 * s.pixel_map + 0.3
    ua = update_pixel_map(
        s.data,
        s.mask,
        s.whitefield,
        a.image,
        u,
        a.n0,
        a.m0,
        2 * s.dij,
        integrate=True,
        filter=1.0,
        backend="xp",
    )
    ub = update_pixel_map(
        cargs[0],
        cargs[1],
        cargs[2],
        b.image,
        cupy.asarray(u),
        b.n0,
        b.m0,
        cargs[3],
        integrate=True,
        filter=1.0,
    )
    np.testing.assert_allclose(_np(ub.pixel_map), ua.pixel_map, atol=1e-6)
    ea = calc_error(s.data, s.mask, s.whitefield, 2 * s.dij, a.image, u, a.n0, a.m0)
    eb = calc_error(cargs[0], cargs[1], cargs[2], cargs[3], b.image, cupy.asarray(u), b.n0, b.m0)
    assert eb.total == pytest.approx(ea.total, rel=1e-9)
    ta = update_translations(
        s.data, s.mask, s.whitefield, a.image, u, a.n0, a.m0, 2 * s.dij, backend="xp"
    )
    tb = update_translations(
        cargs[0], cargs[1], cargs[2], b.image, cupy.asarray(u), b.n0, b.m0, cargs[3]
    )
    np.testing.assert_allclose(_np(tb.dij_n), ta.dij_n, atol=1e-6)
    wa = update_whitefield(s.data, s.mask, a.image, u, a.n0, a.m0, 2 * s.dij, W=s.whitefield)
    wb = update_whitefield(
        cargs[0], cargs[1], b.image, cupy.asarray(u), b.n0, b.m0, cargs[3], W=cargs[2]
    )
    np.testing.assert_allclose(_np(wb), wa, rtol=1e-9)


def test_pairs_and_phase(cupy, scan_small):
    s = scan_small
    a = estimate_pixel_map(s.data, s.mask, s.whitefield, s.dij)
    b = estimate_pixel_map(
        cupy.asarray(s.data), cupy.asarray(s.mask), cupy.asarray(s.whitefield), cupy.asarray(s.dij)
    )
    assert isinstance(b, cupy.ndarray)
    np.testing.assert_allclose(_np(b), a, atol=2e-3)  # float32 local fits
    pa = integrate_pixel_map(
        a, s.whitefield, s.wavelength, s.distance, s.x_pixel_size, s.y_pixel_size, s.dss, s.dfs
    )
    pb = integrate_pixel_map(
        cupy.asarray(a),
        cupy.asarray(s.whitefield),
        s.wavelength,
        s.distance,
        s.x_pixel_size,
        s.y_pixel_size,
        s.dss,
        s.dfs,
    )
    np.testing.assert_allclose(_np(pb.phase), pa.phase, atol=1e-6)


def test_pipeline_on_gpu(cupy, scan_small):
    s = scan_small
    a = run(
        s.data,
        s.translations,
        s.basis,
        s.x_pixel_size,
        s.y_pixel_size,
        s.distance,
        s.wavelength,
        defocus=s.defocus,
        progress=False,
    )
    b = run(
        cupy.asarray(s.data),
        s.translations,
        s.basis,
        s.x_pixel_size,
        s.y_pixel_size,
        s.distance,
        s.wavelength,
        defocus=s.defocus,
        progress=False,
    )
    assert isinstance(b.pixel_map, np.ndarray)  # results are NumPy
    np.testing.assert_allclose(b.pixel_map, a.pixel_map, atol=5e-3)
    ok = np.isfinite(a.phase)
    np.testing.assert_allclose(b.phase[ok], a.phase[ok], atol=5e-3)
