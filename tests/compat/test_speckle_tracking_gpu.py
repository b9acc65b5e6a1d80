"""stacklab.compat.speckle_tracking on CuPy arrays: results stay on the GPU and match NumPy.

Run with ``pytest -m gpu`` on a machine with a CUDA device (skipped otherwise).
"""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.compat import speckle_tracking as st
from stacklab.speckle.simulate import simulate

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", params=["2d", "1d"])
def scan(request):
    if request.param == "2d":
        return simulate(
            (40, 44), (4, 4), defocus=1e-3, aberration_px=1.0, n_hot=2, n_dead=2, seed=5
        )
    return simulate((1, 80), (1, 8), defocus=1e-3, aberration_px=1.0, n_hot=1, n_dead=1, seed=5)


def _both(cupy, *arrays):
    return [cupy.asarray(a) for a in arrays]


def _check(cupy, gpu, cpu, rtol=1e-9, atol=1e-9):
    assert isinstance(gpu, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(gpu), cpu, rtol=rtol, atol=atol)


def test_geometry_and_reference(cupy, scan):
    t, b = _both(cupy, scan.translations, scan.basis)
    u_g, dij_g, _ = st.generate_pixel_map(
        scan.data.shape[1:], t, b, scan.x_pixel_size, scan.y_pixel_size, scan.distance,
        scan.defocus, verbose=False,
    )  # fmt: skip
    u, dij, _ = st.generate_pixel_map(
        scan.data.shape[1:], scan.translations, scan.basis, scan.x_pixel_size,
        scan.y_pixel_size, scan.distance, scan.defocus, verbose=False,
    )  # fmt: skip
    _check(cupy, u_g, u)
    _check(cupy, dij_g, dij)
    _check(cupy, st.make_pixel_translations(t, b, scan.dss, scan.dfs), dij)
    data_g, mask_g, w_g = _both(cupy, scan.data, scan.mask, scan.whitefield)
    for subpixel in (False, True):
        obj_g, n0_g, m0_g = st.make_object_map(
            data_g, mask_g, w_g, dij_g, u_g, subpixel=subpixel, verbose=False
        )
        obj, n0, m0 = st.make_object_map(
            scan.data, scan.mask, scan.whitefield, dij, u, subpixel=subpixel, verbose=False
        )
        _check(cupy, obj_g, obj)
        assert (n0_g, m0_g) == (pytest.approx(n0), pytest.approx(m0))


def test_updates_and_phase(cupy, scan):
    u, dij, geo = st.generate_pixel_map(
        scan.data.shape[1:], scan.translations, scan.basis, scan.x_pixel_size,
        scan.y_pixel_size, scan.distance, scan.defocus, verbose=False,
    )  # fmt: skip
    obj, n0, m0 = st.make_object_map(
        scan.data, scan.mask, scan.whitefield, dij, u, subpixel=True, verbose=False
    )
    args = (scan.data, scan.mask, scan.whitefield, obj, u, n0, m0, dij)
    args_g = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    kw = {"search_window": 5, "filter": 1.0, "verbose": False}
    new_g, res_g = st.update_pixel_map(*args_g, **kw)
    new, res = st.update_pixel_map(*args, **kw)
    _check(cupy, new_g, new, rtol=1e-7, atol=1e-7)
    _check(cupy, res_g["error_map"], res["error_map"], rtol=1e-7, atol=1e-9)
    dij_g, _ = st.update_translations(*args_g, verbose=False)
    dij_c, _ = st.update_translations(*args, verbose=False)
    _check(cupy, dij_g, dij_c, rtol=1e-7, atol=1e-7)
    weight = scan.whitefield * scan.mask
    scal = (scan.wavelength, scan.distance, scan.x_pixel_size, scan.y_pixel_size)
    ph_g, ang_g, r_g = st.integrate_pixel_map(
        cupy.asarray(new), cupy.asarray(weight), *scal, geo["dss"], geo["dfs"]
    )
    ph, ang, r = st.integrate_pixel_map(new, weight, *scal, geo["dss"], geo["dfs"])
    _check(cupy, ph_g, ph, rtol=1e-6, atol=1e-6)
    _check(cupy, ang_g, ang, rtol=1e-6, atol=1e-12)
    _check(cupy, r_g["angles_forward"], r["angles_forward"], rtol=1e-6, atol=1e-12)


def test_detector_and_error(cupy, scan):
    data_g = cupy.asarray(scan.data)
    for kw in ({}, {"thresh": 50, "mask_gaps": True}):
        m_g = st.make_mask(data_g, **kw)
        assert isinstance(m_g, cupy.ndarray)
        np.testing.assert_array_equal(cupy.asnumpy(m_g), st.make_mask(scan.data, **kw))
    w_g = st.make_whitefield(data_g, cupy.asarray(scan.mask), verbose=False)
    w = st.make_whitefield(scan.data, scan.mask, verbose=False)
    _check(cupy, w_g, w, rtol=1e-6, atol=1e-6)
    assert st.guess_roi(w_g, verbose=False) == st.guess_roi(w, verbose=False)
    u, dij, _ = st.generate_pixel_map(
        scan.data.shape[1:], scan.translations, scan.basis, scan.x_pixel_size,
        scan.y_pixel_size, scan.distance, scan.defocus, verbose=False,
    )  # fmt: skip
    obj, n0, m0 = st.make_object_map(
        scan.data, scan.mask, scan.whitefield, dij, u, subpixel=True, verbose=False
    )
    args = (scan.data, scan.mask, scan.whitefield, dij, obj, u, n0, m0)
    args_g = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    for subpixel in (False, True):
        tot_g, fr_g, px_g = st.calc_error(*args_g, subpixel=subpixel, verbose=False)
        tot, fr, px = st.calc_error(*args, subpixel=subpixel, verbose=False)
        assert tot_g == pytest.approx(tot, rel=1e-9)
        _check(cupy, fr_g, fr)
        _check(cupy, px_g, px)
