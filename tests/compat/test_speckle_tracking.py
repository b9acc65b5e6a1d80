"""stacklab.compat.speckle_tracking: signatures, layouts, logging, errors, simulated truth.

The golden comparisons with speckle_tracking 2020.1 are in test_speckle_tracking_golden.py; here
the compat functions are checked against the ground truth of :mod:`stacklab.speckle.simulate`
(2D and single-row scans), for their documented API surface, and on CuPy against NumPy.
"""

from __future__ import annotations

import inspect
import logging

import numpy as np
import pytest

from stacklab.compat import speckle_tracking as st
from stacklab.errors import ShapeError
from stacklab.speckle.simulate import simulate

# The documented signatures (speckle_tracking's Python reference) and, for the functions its
# users call between them, the package's own.
SIGNATURES = {
    "make_mask": ["data", "thresh", "mask_gaps"],
    "make_whitefield": ["data", "mask", "verbose"],
    "guess_roi": ["W", "verbose"],
    "fit_defocus": [
        "data", "x_pixel_size", "y_pixel_size", "z", "wav", "mask", "W", "roi", "verbose",
        "kwargs",
    ],
    "fit_thon_rings": [
        "data", "x_pixel_size", "y_pixel_size", "z", "wav", "mask", "W", "roi", "centre",
        "sig", "edge_pix", "window", "rad_range", "verbose", "kwargs",
    ],
    "generate_pixel_map": [
        "shape", "translations", "basis", "x_pixel_size", "y_pixel_size", "z", "defocus_fs",
        "defocus_ss", "dss", "dfs", "verbose",
    ],
    "make_reference": [
        "data", "mask", "W", "dij_n", "pixel_map", "roi", "subpixel", "verbose",
        "minimum_overlap", "sig",
    ],
    "update_pixel_map": [
        "data", "mask", "W", "O", "pixel_map", "n0", "m0", "dij_n", "search_window", "grid",
        "roi", "subpixel", "subsample", "interpolate", "fill_bad_pix", "quadratic_refinement",
        "integrate", "clip", "filter", "verbose", "guess",
    ],
    "calc_error": [
        "data", "mask", "W", "dij_n", "I", "pixel_map", "n0", "m0", "subpixel", "verbose",
    ],
    "integrate_pixel_map": [
        "pixel_map", "weight", "wavelength", "z", "x_pixel_size", "y_pixel_size", "dx", "dy",
        "remove_astigmatism", "maxiter",
    ],
    "make_pixel_translations": ["translations", "basis", "dx", "dy", "verbose"],
    "make_object_map": [
        "data", "mask", "W", "dij_n", "pixel_map", "roi", "subpixel", "verbose",
        "minimum_overlap", "sig",
    ],
}  # fmt: skip

DEFAULTS = {
    ("make_mask", "thresh"): 400,
    ("make_mask", "mask_gaps"): False,
    ("make_whitefield", "verbose"): True,
    ("fit_thon_rings", "sig"): 10,
    ("fit_thon_rings", "edge_pix"): 5,
    ("fit_thon_rings", "window"): 30,
    ("update_pixel_map", "subpixel"): False,
    ("update_pixel_map", "quadratic_refinement"): True,
    ("update_pixel_map", "fill_bad_pix"): True,
    ("calc_error", "subpixel"): False,
    ("integrate_pixel_map", "remove_astigmatism"): False,
    ("integrate_pixel_map", "maxiter"): 3000,
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_documented_signature(name):
    func = getattr(st, name)
    assert name in st.__all__
    params = inspect.signature(func).parameters
    assert list(params) == SIGNATURES[name]
    for (fname, pname), value in DEFAULTS.items():
        if fname == name:
            assert params[pname].default == value, pname
    assert func.__doc__ and "Returns" in func.__doc__


# ------------------------------------------------------------------------------------------
# simulated scans
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scan2d():
    return simulate((48, 48), (5, 5), defocus=1e-3, aberration_px=1.0, n_hot=2, n_dead=2, seed=3)


@pytest.fixture(scope="module")
def scan1d():
    return simulate((1, 96), (1, 9), defocus=1e-3, aberration_px=1.0, n_hot=1, n_dead=1, seed=3)


def _geometry(scan):
    return st.generate_pixel_map(
        scan.data.shape[1:],
        scan.translations,
        scan.basis,
        scan.x_pixel_size,
        scan.y_pixel_size,
        scan.distance,
        scan.defocus,
        verbose=False,
    )


def _map_error(u, scan):
    e = (u - scan.pixel_map)[:, scan.mask]
    e = e - e.mean(axis=1, keepdims=True)
    return float(np.sqrt(np.mean(np.sum(e**2, axis=0))))


def _remove_low_order(p):
    m, n = p.shape
    i, j = np.indices((m, n), dtype=float)
    design = np.stack([np.ones(m * n), i.ravel(), j.ravel(), (i**2 + j**2).ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, p.ravel(), rcond=None)
    return p - (design @ coef).reshape(p.shape)


@pytest.mark.parametrize("which", ["scan2d", "scan1d"])
def test_pipeline_recovers_simulated_aberration(which, request):
    """Geometry -> reference -> 5 pixel-map updates -> phase, against the simulator's truth."""
    scan = request.getfixturevalue(which)
    u, dij, res = _geometry(scan)
    np.testing.assert_allclose(dij, scan.dij, atol=1e-12)
    assert res["dss"] == pytest.approx(scan.dss)
    data = scan.data.copy()
    before = _map_error(u, scan)
    for _ in range(5):
        obj, n0, m0 = st.make_object_map(
            data, scan.mask, scan.whitefield, dij, u, subpixel=True, verbose=False
        )
        u, _ = st.update_pixel_map(
            data, scan.mask, scan.whitefield, obj, u, n0, m0, dij, search_window=5,
            verbose=False,
        )  # fmt: skip
    np.testing.assert_array_equal(data, scan.data)
    after = _map_error(u, scan)
    phase, angles, _ = st.integrate_pixel_map(
        u,
        scan.whitefield * scan.mask,
        scan.wavelength,
        scan.distance,
        scan.x_pixel_size,
        scan.y_pixel_size,
        res["dss"],
        res["dfs"],
    )
    err = _remove_low_order(phase) - _remove_low_order(scan.phase)
    signal = float(np.sqrt(np.mean(_remove_low_order(scan.phase) ** 2)))
    rel = float(np.sqrt(np.mean(err**2))) / signal
    print(f"{which}: map error {before:.3f} -> {after:.3f} px, phase error {rel:.3f} of signal")
    assert after < 0.5 * before
    assert rel < 0.35
    assert angles.shape == u.shape


@pytest.mark.parametrize("which", ["scan2d", "scan1d"])
def test_update_translations_recovers_shifts(which, request):
    """Translations perturbed by up to 1 px are pulled back toward the truth."""
    scan = request.getfixturevalue(which)
    rng = np.random.default_rng(7)
    obj, n0, m0 = st.make_object_map(
        scan.data, scan.mask, scan.whitefield, scan.dij, scan.pixel_map, subpixel=True,
        verbose=False,
    )  # fmt: skip
    wrong = scan.dij + rng.uniform(-1, 1, scan.dij.shape)
    if scan.data.shape[1] == 1:
        wrong[:, 0] = scan.dij[:, 0]  # a single row has no ss information
    frozen = wrong.copy()
    new, res = st.update_translations(
        scan.data, scan.mask, scan.whitefield, obj, scan.pixel_map, n0, m0, wrong,
        search_window=5, verbose=False,
    )  # fmt: skip
    np.testing.assert_array_equal(wrong, frozen)
    assert new.shape == scan.dij.shape and res["error"].shape == (scan.dij.shape[0],)
    before = np.sqrt(np.mean((wrong - scan.dij) ** 2))
    after = np.sqrt(np.mean((new - scan.dij) ** 2))
    print(f"{which}: translation error {before:.3f} -> {after:.3f} px")
    assert after < 0.2 * before


def test_make_object_map_minimum_overlap_and_roi(scan2d):
    scan = scan2d
    u, dij, _ = _geometry(scan)
    full, *_ = st.make_object_map(scan.data, scan.mask, scan.whitefield, dij, u, verbose=False)
    strict, *_ = st.make_object_map(
        scan.data, scan.mask, scan.whitefield, dij, u, minimum_overlap=10, verbose=False
    )
    assert np.all((strict == -1) >= (full == -1))
    assert np.sum(strict == -1) > np.sum(full == -1)
    kept = strict != -1
    np.testing.assert_array_equal(strict[kept], full[kept])
    roi = [8, 40, 8, 40]
    sub, *_ = st.make_object_map(
        scan.data, scan.mask, scan.whitefield, dij, u, roi=roi, verbose=False
    )
    assert sub.shape[0] < full.shape[0] and sub.shape[1] < full.shape[1]


def test_verbose_logs_and_never_prints(scan1d, caplog, capsys):
    scan = scan1d
    with caplog.at_level(logging.INFO, logger="stacklab.compat.speckle_tracking"):
        u, dij, _ = _geometry(scan)
        assert not caplog.records
        st.make_object_map(scan.data, scan.mask, scan.whitefield, dij, u, verbose=True)
    assert any("reference" in r.getMessage() for r in caplog.records)
    assert capsys.readouterr().out == ""


def test_errors_name_the_argument(scan2d):
    scan = scan2d
    u, dij, _ = _geometry(scan)
    with pytest.raises(ShapeError, match="data"):
        st.make_object_map(scan.data[0], scan.mask, scan.whitefield, dij, u)
    with pytest.raises(ShapeError, match="pixel_map"):
        st.make_object_map(scan.data, scan.mask, scan.whitefield, dij, u[:, :10])
    with pytest.raises(ShapeError, match="dij_n"):
        st.make_object_map(scan.data, scan.mask, scan.whitefield, dij[:3], u)
    with pytest.raises(ShapeError, match="O"):
        st.update_pixel_map(scan.data, scan.mask, scan.whitefield, np.ones(5), u, 0, 0, dij)
    with pytest.raises(ValueError, match="search_window"):
        st.update_pixel_map(
            scan.data, scan.mask, scan.whitefield, np.ones((60, 60)), u, 0, 0, dij,
            search_window=[1, 2, 3],
        )  # fmt: skip


# ------------------------------------------------------------------------------------------
# defocus
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def astigmatic():
    """A 128 x 128 scan with defocus 1 mm and astigmatism 0.1 mm (z_ss 1.1 mm, z_fs 0.9 mm)."""
    return simulate((128, 128), (4, 4), defocus=1e-3, dz=1e-4, aberration_px=0.5, seed=2)


@pytest.fixture(scope="module")
def row_scan():
    """A single-row (1, 512) scan of 8 frames, defocus 1 mm."""
    return simulate((1, 512), (1, 8), defocus=1e-3, aberration_px=0.5, seed=2)


@pytest.mark.parametrize("which", ["astigmatic", "row_scan"])
def test_fit_thon_rings_finds_the_defocus(which, request):
    scan = request.getfixturevalue(which)
    data = scan.data.copy()
    roi = st.guess_roi(scan.whitefield, verbose=False)
    out = st.fit_thon_rings(
        data, scan.x_pixel_size, scan.y_pixel_size, scan.distance, scan.wavelength, scan.mask,
        scan.whitefield, roi, verbose=False,
    )  # fmt: skip
    np.testing.assert_array_equal(data, scan.data)
    assert isinstance(out, tuple) and len(out) == 3
    defocus, dz, res = out
    print(f"{which}: defocus {defocus:.5g} (true {scan.defocus}), dz {dz:.3g} (true {scan.dz})")
    assert defocus == pytest.approx(scan.defocus, rel=0.05)
    assert dz == pytest.approx(scan.dz, abs=3e-5)
    assert res["defocus_ss"] == pytest.approx(defocus + dz)
    assert res["defocus_fs"] == pytest.approx(defocus - dz)
    assert res["thon_display"].ndim == 2 and np.isfinite(res["bd"])
    again = st.fit_defocus(
        data, scan.x_pixel_size, scan.y_pixel_size, scan.distance, scan.wavelength, scan.mask,
        scan.whitefield, roi, verbose=False,
    )  # fmt: skip
    assert again[:2] == (defocus, dz)


@pytest.mark.parametrize("which", ["astigmatic", "scan1d"])
def test_fit_defocus_registration_finds_the_defocus(which, request):
    scan = request.getfixturevalue(which)
    defocus, res = st.fit_defocus_registration(
        scan.data, scan.x_pixel_size, scan.y_pixel_size, scan.distance, scan.wavelength,
        scan.mask, scan.whitefield, None, scan.basis, scan.translations, verbose=False,
    )  # fmt: skip
    print(f"{which}: registration defocus {defocus:.5g} (true {scan.defocus})")
    assert defocus == pytest.approx(scan.defocus, rel=0.02)
    assert res["defocus_ss"] == pytest.approx(scan.defocus_ss, rel=0.03)
    assert res["defocus_fs"] == pytest.approx(scan.defocus_fs, rel=0.03)
    assert res["astigmatism"] == pytest.approx(scan.dz, abs=0.05 * scan.defocus)
