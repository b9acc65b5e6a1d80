"""stacklab.compat.ptychography40 against the repository version's golden outputs.

Golden files: tests/golden/ptychography40 (README there). Where the reference is wrong
(``*_BUGGY`` files) the compat layer returns the ``corrected_*`` values and the tests check that
it differs from the recorded bug.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

import stacklab.compat.ptychography40 as p40

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ptychography40"


def load(name):
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def names(prefix):
    return sorted(p.stem for p in GOLDEN.glob(f"{prefix}*.npz"))


SIGNATURES = {
    "wavelength": "(U)",
    "diffraction_to_detector": "(lamb, diffraction_shape, pixel_size_real, pixel_size_detector, "
    "cy, cx, flip_y=False, scan_rotation=0.0)",
    "fftshift_coords": "(reconstruct_shape)",
    "ifftshift_coords": "(reconstruct_shape)",
    "image_transformation_matrix": "(source_shape, target_shape, affine_transformation, "
    "pre_transform=None, post_transform=None)",
    "apply_matrix": "(sources, matrix, target_shape)",
    "shifted_probes": "(probe, bins)",
    "rolled_object_probe_product_cpu": "(obj, probe, shifts, result_out, ifftshift=False)",
    "rolled_object_aggregation_cpu": "(obj_out, updates, shifts, fftshift=False)",
    "rolled_object_probe_product_cuda": "(obj, probe, shifts, result_out, ifftshift=False)",
    "rolled_object_aggregation_cuda": "(obj_out, updates, shifts, fftshift=False)",
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_seed_signatures(name):
    sig = inspect.signature(getattr(p40, name))
    plain = (
        "("
        + ", ".join(
            p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
            for p in sig.parameters.values()
        )
        + ")"
    )
    assert plain == SIGNATURES[name]


def test_wavelength():
    d = load("wavelength__voltages")
    got = [p40.wavelength(float(v)) for v in d["in_voltage_kV"]]
    np.testing.assert_allclose(got, d["out_wavelength_m"], rtol=1e-12)


def _d2d(d, shape=None):
    return p40.diffraction_to_detector(
        lamb=float(d["in_lamb"]),
        diffraction_shape=tuple(d["in_diffraction_shape"]) if shape is None else shape,
        pixel_size_real=(float(d["in_pixel_size_real_y"]), float(d["in_pixel_size_real_x"])),
        pixel_size_detector=(
            float(d["in_pixel_size_detector_y"]),
            float(d["in_pixel_size_detector_x"]),
        ),
        cy=float(d["in_cy"]),
        cx=float(d["in_cx"]),
        flip_y=bool(d["in_flip_y"]),
        scan_rotation=float(d["in_scan_rotation_deg"]),
    )


@pytest.mark.parametrize("name", names("diffraction_to_detector__"))
def test_diffraction_to_detector(name):
    d = load(name)
    out = _d2d(d)(d["in_coords"])
    if name.endswith("_BUGGY"):
        np.testing.assert_allclose(out, d["corrected_coords"], atol=1e-9, rtol=0)
        assert np.max(np.abs(out - d["out_coords"])) > 1.0
    else:
        np.testing.assert_allclose(out, d["out_coords"], atol=1e-9, rtol=0)


def test_diffraction_to_detector_scalar_pixel_sizes():
    d = load("diffraction_to_detector__rot37")
    tr = p40.diffraction_to_detector(
        float(d["in_lamb"]),
        (16, 16),
        float(d["in_pixel_size_real_y"]),
        float(d["in_pixel_size_detector_y"]),
        float(d["in_cy"]),
        float(d["in_cx"]),
        scan_rotation=37.0,
    )
    np.testing.assert_allclose(tr(d["in_coords"]), d["out_coords"], atol=1e-9)


@pytest.mark.parametrize("name", names("shift_coords__"))
def test_shift_coords(name):
    d = load(name)
    shape = tuple(d["in_shape"])
    np.testing.assert_array_equal(p40.fftshift_coords(shape)(d["in_coords"]), d["out_fftshift"])
    np.testing.assert_array_equal(p40.ifftshift_coords(shape)(d["in_coords"]), d["out_ifftshift"])


def _matrix(d):
    ts = tuple(d["in_target_shape"])
    if str(d["in_affine"]) == "identity":

        def affine(c):
            return np.asarray(c, dtype=float)

    else:
        affine = _d2d(d, ts)
    pre = {
        "none": None,
        "ifftshift": p40.ifftshift_coords(ts),
        "fftshift": p40.fftshift_coords(ts),
    }[str(d["in_pre_transform"])]
    return p40.image_transformation_matrix(tuple(d["in_source_shape"]), ts, affine, pre)


def _coo(m):
    c = m.tocoo()
    o = np.lexsort((c.col, c.row))
    return c.row[o], c.col[o], c.data[o]


@pytest.mark.parametrize("name", names("image_transformation_matrix__"))
def test_image_transformation_matrix(name):
    d = load(name)
    m = _matrix(d)
    assert isinstance(m, scipy.sparse.csc_matrix) and m.dtype == np.float32
    assert m.shape == tuple(d["out_shape"])
    row, col, data = _coo(m)
    if "corrected_row" in d:
        np.testing.assert_array_equal(row, d["corrected_row"])
        np.testing.assert_array_equal(col, d["corrected_col"])
        np.testing.assert_allclose(data, d["corrected_data"], rtol=1e-7, atol=0)
    if name.endswith("_BUGGY"):
        same = (
            len(row) == len(d["out_row"])
            and np.array_equal(row, d["out_row"])
            and np.array_equal(col, d["out_col"])
        )
        assert not same
    else:
        np.testing.assert_array_equal(row, d["out_row"])
        np.testing.assert_array_equal(col, d["out_col"])
        np.testing.assert_allclose(data, d["out_data"], rtol=1e-7, atol=0)


def test_post_transform_is_honoured():
    m = p40.image_transformation_matrix(
        (8, 8),
        (8, 8),
        lambda c: np.asarray(c, float) + 0.4,
        post_transform=lambda c: np.floor(c).astype(int),
    )
    np.testing.assert_array_equal(m.toarray(), np.eye(64))


@pytest.mark.parametrize("name", names("apply_matrix__"))
def test_apply_matrix(name):
    d = load(name)
    m = scipy.sparse.csc_matrix(
        (d["in_data"], (d["in_row"], d["in_col"])), shape=tuple(d["in_matrix_shape"])
    )
    out = p40.apply_matrix(
        sources=d["in_sources"], matrix=m, target_shape=tuple(d["in_target_shape"])
    )
    assert out.dtype == d["out_result"].dtype
    np.testing.assert_allclose(
        out, d["out_result"], rtol=float(d["meta_rtol"]), atol=float(d["meta_atol"])
    )


@pytest.mark.parametrize("name", names("shifted_probes__"))
def test_shifted_probes(name):
    d = load(name)
    bins = (
        int(d["in_bins_y"])
        if bool(d["in_bins_given_as_int"])
        else (int(d["in_bins_y"]), int(d["in_bins_x"]))
    )
    out = p40.shifted_probes(d["in_probe"], bins)
    tol = dict(rtol=1e-12, atol=1e-15) if out.dtype == np.complex128 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, d["out_probes"], **tol)


@pytest.mark.parametrize("name", names("rolled_object_probe_product_cpu__"))
def test_rolled_object_probe_product_cpu(name):
    d = load(name)
    out = np.full((len(d["in_shifts"]), *d["in_probe"].shape[2:]), np.nan, np.complex64)
    sub = p40.rolled_object_probe_product_cpu(
        d["in_obj"], d["in_probe"], d["in_shifts"], out, ifftshift=bool(d["in_ifftshift"])
    )
    assert sub.dtype == np.int64
    if "corrected_result" in d:
        np.testing.assert_array_equal(out, d["corrected_result"])
        np.testing.assert_array_equal(sub, d["corrected_subpixel_indices"])
        buggy = d["meta_buggy_rows"]
        np.testing.assert_array_equal(out[~buggy], d["out_result"][~buggy])
        assert all(not np.array_equal(out[i], d["out_result"][i]) for i in np.flatnonzero(buggy))
    else:
        np.testing.assert_array_equal(out, d["out_result"])
        np.testing.assert_array_equal(sub, d["out_subpixel_indices"])


@pytest.mark.parametrize("name", names("rolled_object_aggregation_cpu__"))
def test_rolled_object_aggregation_cpu(name):
    d = load(name)
    obj = d["in_obj"].copy()
    assert (
        p40.rolled_object_aggregation_cpu(
            obj, d["in_updates"], d["in_shifts"], fftshift=bool(d["in_fftshift"])
        )
        is None
    )
    np.testing.assert_array_equal(obj, d["out_obj"])


def test_bad_input_errors():
    from stacklab.errors import ShapeError

    m = p40.image_transformation_matrix((8, 8), (4, 4), lambda c: np.asarray(c, float) * 2)
    with pytest.raises(ShapeError, match="rows"):
        p40.apply_matrix(np.zeros((1, 6, 6)), m, (4, 4))
    with pytest.raises(ValueError, match="pixel_size_detector"):
        p40.diffraction_to_detector(1e-12, (8, 8), 1e-11, 0.0, 4, 4)
    out = np.empty((1, 9, 9), np.complex64)
    with pytest.raises(ShapeError, match="larger than the object"):
        p40.rolled_object_probe_product_cpu(
            np.ones((8, 8), np.complex64),
            np.ones((1, 1, 9, 9), np.complex64),
            np.zeros((1, 2)),
            out,
        )
    with pytest.raises(ValueError, match="NaN"):
        p40.rolled_object_probe_product_cpu(
            np.ones((8, 8), np.complex64),
            np.ones((1, 1, 4, 4), np.complex64),
            np.array([[np.nan, 1.0]]),
            np.empty((1, 4, 4), np.complex64),
        )


@pytest.mark.gpu
def test_cuda_versions_match_cpu(cupy):
    d = load("rolled_object_probe_product_cpu__negative_BUGGY")
    out = cupy.empty((len(d["in_shifts"]), *d["in_probe"].shape[2:]), cupy.complex64)
    sub = p40.rolled_object_probe_product_cuda(
        cupy.asarray(d["in_obj"]), cupy.asarray(d["in_probe"]), cupy.asarray(d["in_shifts"]), out
    )
    np.testing.assert_array_equal(out.get(), d["corrected_result"])
    np.testing.assert_array_equal(sub.get(), d["corrected_subpixel_indices"])
    for name in names("rolled_object_aggregation_cpu__"):
        g = load(name)
        obj = cupy.asarray(g["in_obj"])
        p40.rolled_object_aggregation_cuda(
            obj, cupy.asarray(g["in_updates"]), cupy.asarray(g["in_shifts"]), bool(g["in_fftshift"])
        )
        np.testing.assert_allclose(obj.get(), g["out_obj"], rtol=1e-6, atol=1e-6)
    a = load("apply_matrix__rot37_bin_ifftshift")
    m = scipy.sparse.csc_matrix(
        (a["in_data"], (a["in_row"], a["in_col"])), shape=tuple(a["in_matrix_shape"])
    )
    got = p40.apply_matrix(cupy.asarray(a["in_sources"]), m, tuple(a["in_target_shape"]))
    np.testing.assert_allclose(got.get(), a["out_result"], rtol=1e-5, atol=1e-5)
