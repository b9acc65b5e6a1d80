"""image_transformation_matrix and apply_matrix: golden files, centring, counts, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from stacklab.errors import ShapeError
from stacklab.ptycho import (
    apply_matrix,
    diffraction_to_detector,
    fftshift_coords,
    footprints,
    ifftshift_coords,
    image_transformation_matrix,
    validity_mask,
    wavelength,
)
from stacklab.ptycho import matrix as matrix_module

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ptychography40"


def load_golden(name):
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def golden_names(prefix):
    return sorted(p.stem for p in GOLDEN.glob(f"{prefix}*.npz"))


def build(d, **kwargs):
    """The golden file's matrix, built with stacklab; returns (matrix, affine, pre)."""
    ts = tuple(int(v) for v in d["in_target_shape"])
    if str(d["in_affine"]) == "identity":

        def affine(c):
            return np.asarray(c, dtype=float)

    else:
        affine = diffraction_to_detector(
            float(d["in_lamb"]),
            ts,
            (float(d["in_pixel_size_real_y"]), float(d["in_pixel_size_real_x"])),
            (float(d["in_pixel_size_detector_y"]), float(d["in_pixel_size_detector_x"])),
            float(d["in_cy"]),
            float(d["in_cx"]),
            bool(d["in_flip_y"]),
            float(d["in_scan_rotation_deg"]),
        )
    pre = {"none": None, "ifftshift": ifftshift_coords(ts), "fftshift": fftshift_coords(ts)}[
        str(d["in_pre_transform"])
    ]
    ss = tuple(int(v) for v in d["in_source_shape"])
    return image_transformation_matrix(ss, ts, affine, pre, **kwargs), affine, pre


def canonical(m):
    c = m.tocoo()
    order = np.lexsort((c.col, c.row))
    return c.row[order], c.col[order], c.data[order]


def centroids(m, source_shape):
    """Weight-averaged source (y, x) of each target pixel (NaN where empty)."""
    csc = scipy.sparse.csc_matrix(m, dtype=np.float64)
    sy, sx = np.divmod(np.arange(source_shape[0] * source_shape[1]), source_shape[1])
    w = np.asarray(csc.sum(axis=0)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([(csc.T @ sy) / w, (csc.T @ sx) / w], axis=1), w


MATCH = [
    n for n in golden_names("image_transformation_matrix__") if not n.endswith(("_BUGGY", "_TIES"))
]


@pytest.mark.parametrize("name", [*MATCH, "image_transformation_matrix__up2_ties_TIES"])
def test_matrix_golden(name):
    d = load_golden(name)
    m, _, _ = build(d)
    assert isinstance(m, scipy.sparse.csc_matrix)
    assert m.dtype == np.float32
    assert m.shape == tuple(d["out_shape"])
    row, col, data = canonical(m)
    np.testing.assert_array_equal(row, d["out_row"])
    np.testing.assert_array_equal(col, d["out_col"])
    np.testing.assert_allclose(data, d["out_data"], rtol=1e-7, atol=0)


def test_mapped_points_golden():
    for name in MATCH:
        d = load_golden(name)
        _, affine, pre = build(d)
        centres, _, _ = footprints(tuple(d["in_target_shape"]), affine, pre)
        np.testing.assert_allclose(centres, d["out_mapped"], rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "name",
    [
        "image_transformation_matrix__down3_BUGGY",
        "image_transformation_matrix__ifftshift_odd_d2d_BUGGY",
    ],
)
def test_matrix_corrected_where_reference_is_wrong(name):
    d = load_golden(name)
    m, _, _ = build(d)
    row, col, data = canonical(m)
    np.testing.assert_array_equal(row, d["corrected_row"])
    np.testing.assert_array_equal(col, d["corrected_col"])
    np.testing.assert_allclose(data, d["corrected_data"], rtol=1e-7, atol=0)
    differs = len(row) != len(d["out_row"]) or not np.array_equal(row, d["out_row"])
    assert differs, "the recorded reference bug must not be reproduced"


@pytest.mark.parametrize(
    "name, reference_bias",
    [("down2_BUGGY", 0.5), ("down4_BUGGY", 1.5), ("down3_BUGGY", 1.0)],
)
def test_binned_targets_are_centred(name, reference_bias):
    """Area bins are centred on the mapped point (the reference is offset by (n-1)/2 px)."""
    d = load_golden("image_transformation_matrix__" + name)
    m, affine, pre = build(d)
    ss = tuple(d["in_source_shape"])
    cen, w = centroids(m, ss)
    valid = validity_mask(ss, tuple(d["in_target_shape"]), affine, pre).ravel()
    assert valid.sum() >= 9
    np.testing.assert_allclose(w[w > 0], 1.0, rtol=1e-6)  # weights average
    np.testing.assert_allclose(cen[valid], d["out_mapped"][valid], atol=1e-6)
    ref_bias = (d["out_centroid"] - d["out_mapped"])[valid]
    np.testing.assert_allclose(ref_bias, reference_bias, atol=1e-6)  # what the bug did


def test_rotated_binning_is_centred():
    d = load_golden("image_transformation_matrix__rot37_bin_ifftshift_BUGGY")
    m, affine, pre = build(d)
    ss = tuple(d["in_source_shape"])
    cen, w = centroids(m, ss)
    valid = validity_mask(ss, tuple(d["in_target_shape"]), affine, pre).ravel()
    bias = (cen - d["out_mapped"])[valid]
    print(
        "rot37 binning: mean centroid bias", bias.mean(0), "reference", d["meta_mean_centroid_bias"]
    )
    assert np.all(np.abs(bias.mean(0)) < 0.02)
    assert np.max(np.abs(bias)) < 0.1
    assert np.max(np.abs(d["meta_mean_centroid_bias"])) > 0.8  # the reference's offset
    np.testing.assert_allclose(w[valid], 1.0, rtol=1e-6)


def test_area_average_of_a_linear_ramp_is_exact():
    """Averaging a linear image over a centred footprint returns its value at the centre."""
    ss, ts = (64, 64), (16, 16)
    tr = diffraction_to_detector(wavelength(300), ts, 1e-11, 2.2e-3, 31.7, 32.4, True, 37.0)
    m = image_transformation_matrix(ss, ts, tr, method="area", oversample=8)
    yy, xx = np.mgrid[: ss[0], : ss[1]]
    img = 0.3 * yy - 0.7 * xx + 5.0
    out = apply_matrix(img, m, ts)
    centres, _, _ = footprints(ts, tr)
    expect = (0.3 * centres[:, 0] - 0.7 * centres[:, 1] + 5.0).reshape(ts)
    valid = validity_mask(ss, ts, tr, method="area")
    assert valid.sum() > 50
    np.testing.assert_allclose(out[valid], expect[valid], atol=0.05)


def test_bilinear_interpolates_linear_images_exactly():
    ss, ts = (40, 40), (24, 24)
    tr = diffraction_to_detector(1.0, ts, 1 / 30, 1.0, 19.3, 20.6, False, 20.0)
    m = image_transformation_matrix(ss, ts, tr, method="bilinear")
    yy, xx = np.mgrid[: ss[0], : ss[1]]
    out = apply_matrix(2.0 * yy + 0.5 * xx, m, ts)
    c, _, _ = footprints(ts, tr)
    valid = validity_mask(ss, ts, tr, method="bilinear")
    np.testing.assert_allclose(
        out[valid], (2.0 * c[:, 0] + 0.5 * c[:, 1]).reshape(ts)[valid], atol=1e-4
    )
    with pytest.raises(ValueError, match="post_transform"):
        image_transformation_matrix(ss, ts, tr, post_transform=np.floor, method="bilinear")


@pytest.mark.parametrize("factor", [2, 3])
def test_conserve_counts_integer_binning(factor):
    n = 8
    ss = (n * factor, n * factor)
    tr = diffraction_to_detector(
        1.0,
        (n, n),
        1.0 / (n * factor),
        1.0,
        (n // 2) * factor + (factor - 1) / 2,
        (n // 2) * factor + (factor - 1) / 2,
    )
    m = image_transformation_matrix(ss, (n, n), tr, conserve_counts=True)
    img = np.random.default_rng(0).poisson(5.0, ss).astype(float)
    out = apply_matrix(img, m, (n, n))
    binned = img.reshape(n, factor, n, factor).sum(axis=(1, 3))
    np.testing.assert_allclose(out, binned, rtol=1e-6)  # sums, not means
    assert out.sum() == pytest.approx(img.sum(), rel=1e-6)


def test_conserve_counts_rotated_total():
    """A rotated, non-integer downscale keeps the total of a pattern inside the detector."""
    ss, ts = (96, 96), (32, 32)
    tr = diffraction_to_detector(wavelength(300), ts, 1e-11, 2.3e-3, 47.6, 48.2, False, 65.0)
    yy, xx = np.mgrid[: ss[0], : ss[1]]
    img = np.exp(-((yy - 47.6) ** 2 + (xx - 48.2) ** 2) / (2 * 9.0**2)) * 1000
    m = image_transformation_matrix(ss, ts, tr, conserve_counts=True, oversample=8)
    out = apply_matrix(img, m, ts)
    print("rotated count conservation: relative error", out.sum() / img.sum() - 1)
    assert out.sum() == pytest.approx(img.sum(), rel=2e-3)
    mean_mode = apply_matrix(img, image_transformation_matrix(ss, ts, tr), ts)
    assert mean_mode.sum() < 0.2 * img.sum()  # averages: about 1/7.2 of the counts


def test_odd_target_zero_frequency_lands_on_beam_centre():
    """With ifftshift, target pixel (0, 0) (zero frequency) reads the beam centre (odd sizes)."""
    ss = (31, 31)
    for ts in ((9, 9), (9, 7), (8, 8)):
        psr = (1 / (1.25 * ts[0]), 1 / (1.25 * ts[1]))  # 1.25 detector px per target px
        tr = diffraction_to_detector(1.0, ts, psr, 1.0, 13.0, 17.0)
        m = image_transformation_matrix(ss, ts, tr, ifftshift_coords(ts))
        img = np.zeros(ss)
        img[13, 17] = 1.0
        out = apply_matrix(img, m, ts)
        assert out[0, 0] == 1.0
        assert out.sum() == 1.0


def test_apply_matrix_golden():
    for name in golden_names("apply_matrix__"):
        d = load_golden(name)
        m = scipy.sparse.csc_matrix(
            (d["in_data"], (d["in_row"], d["in_col"])), shape=tuple(d["in_matrix_shape"])
        )
        out = apply_matrix(d["in_sources"], m, tuple(d["in_target_shape"]))
        assert out.dtype == d["out_result"].dtype
        assert out.shape == d["out_result"].shape
        np.testing.assert_allclose(
            out, d["out_result"], rtol=float(d["meta_rtol"]), atol=float(d["meta_atol"])
        )


def test_apply_matrix_equals_scipy_and_dense(rng):
    ss, ts = (33, 29), (12, 14)
    tr = diffraction_to_detector(wavelength(300), ts, 1e-11, 4e-3, 16.0, 14.0, True, 12.0)
    m = image_transformation_matrix(ss, ts, tr, ifftshift_coords(ts))
    stack = rng.standard_normal((2, 3, *ss)).astype(np.float32)
    ref = (stack.reshape(-1, ss[0] * ss[1]) @ m.toarray()).reshape(2, 3, *ts)
    np.testing.assert_allclose(apply_matrix(stack, m, ts), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(apply_matrix(stack, m.toarray(), ts), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(apply_matrix(stack, m.tocsr(), ts), ref, rtol=1e-5, atol=1e-5)
    # complex frames and a single frame
    z = stack[0, 0] + 1j * stack[0, 1]
    np.testing.assert_allclose(apply_matrix(z, m, ts), ref[0, 0] + 1j * ref[0, 1], atol=1e-5)
    many = rng.standard_normal((21, *ss))  # float64: 3 blocks of 8, the last one partial
    ref_many = many.reshape(21, -1) @ m.toarray().astype(np.float64)
    np.testing.assert_allclose(
        apply_matrix(many, m, ts), ref_many.reshape(21, *ts), rtol=1e-12, atol=1e-12
    )


def _random_csc(rng, n_src, n_tgt, density, dtype=np.float32, shuffle=False):
    """A random CSC matrix with empty columns; ``shuffle`` leaves its row indices unsorted."""
    m = scipy.sparse.random(n_src, n_tgt, density=density, format="csc", dtype=dtype, rng=rng)
    m.data += 0.5  # no weights near zero, so that relative errors stay meaningful
    if shuffle:
        indices = m.indices.copy()
        for t in range(n_tgt):
            rng.shuffle(indices[m.indptr[t] : m.indptr[t + 1]])
        m = scipy.sparse.csc_matrix((m.data, indices, m.indptr), shape=m.shape)
    return m


@pytest.mark.skipif(matrix_module.numba is None, reason="numba not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize(
    "n_frames, n_src, n_tgt",
    [(1, 35, 7), (3, 7, 40), (16, 256, 64), (9, 33 * 29, 12 * 14), (40, 19, 33)],
)
@pytest.mark.parametrize("parallel", [False, True])
def test_numba_kernel_matches_scipy(rng, dtype, n_frames, n_src, n_tgt, parallel):
    """The blocked numba kernel equals SciPy's product to the precision of the dtype.

    Sizes cover a single frame, partial blocks of frames, frame and target sizes that are not
    multiples of the block (8 frames), and complex frames (interleaved).
    """
    m = _random_csc(rng, n_src, n_tgt, 0.3, shuffle=n_frames == 9)
    real = np.dtype(dtype).kind == "f"
    frames = rng.standard_normal((n_frames, n_src))
    if not real:
        frames = frames + 1j * rng.standard_normal((n_frames, n_src))
    frames = np.ascontiguousarray(frames.astype(dtype))
    before = frames.copy()
    got = matrix_module._apply_sparse_numba(frames, m, parallel=parallel)
    want = matrix_module._apply_sparse_scipy(frames, m)
    exact = frames.astype(np.complex128) @ m.toarray().astype(np.float64)
    single = np.dtype(dtype) in (np.float32, np.complex64)
    tol = 4e-7 if single else 1e-15
    scale = np.abs(frames).max() * np.abs(m).sum(axis=0).max()  # bound of any output value
    assert got.dtype == want.dtype == dtype
    assert got.shape == (n_frames, n_tgt)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(got, exact, rtol=0, atol=tol * scale)
    assert np.all(got[:, np.diff(m.indptr) == 0] == 0)  # empty columns are exact zeros
    np.testing.assert_array_equal(frames, before)


@pytest.mark.skipif(matrix_module.numba is None, reason="numba not installed")
def test_numba_kernel_int64_indices_and_duplicates(rng):
    """int64 row indices and duplicate entries in a column are summed like SciPy does."""
    m = _random_csc(rng, 50, 30, 0.2)
    dup = scipy.sparse.csc_matrix(
        (
            np.concatenate([m.data, m.data[:40]]),
            (
                np.concatenate([m.tocoo().row, m.tocoo().row[:40]]),
                np.concatenate([m.tocoo().col, m.tocoo().col[:40]]),
            ),
        ),
        shape=m.shape,
    )
    raw = scipy.sparse.csc_matrix(
        (dup.data, dup.indices.astype(np.int64), dup.indptr.astype(np.int64)), shape=m.shape
    )
    frames = rng.standard_normal((20, 50)).astype(np.float32)
    got = matrix_module._apply_sparse_numba(frames, raw)
    np.testing.assert_allclose(got, frames @ dup.toarray(), rtol=1e-5, atol=1e-5)


def test_apply_matrix_refuses_out_of_range_indices(rng):
    """A matrix whose row indices exceed the frame is refused, not read out of bounds."""
    m = _random_csc(rng, 16, 4, 0.5)
    indices = m.indices.copy()
    indices[-1] = 16 + 1000
    bad = scipy.sparse.csc_matrix((m.data, indices, m.indptr), shape=m.shape)
    with pytest.raises(ValueError, match="row indices"):
        apply_matrix(np.ones((20, 4, 4), np.float32), bad, (2, 2))


@pytest.mark.skipif(matrix_module.numba is None, reason="numba not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_register_transpose(dtype):
    """The in-register block transpose moves exactly one lanes x lanes block, at any offset,
    zero-fills missing source rows and writes only the destination rows asked for."""
    import numba

    from stacklab.ptycho._numba_kernels import _transpose_block, lanes

    lanes = lanes(dtype)
    assert lanes == 8

    @numba.njit
    def transpose(src, i0, j0, dst, k0, l0, n_load, n_store):
        _transpose_block(src, i0, j0, dst, k0, l0, n_load, n_store)

    src = np.arange(40 * 37, dtype=dtype).reshape(40, 37)
    for n_load, n_store in [(lanes, lanes), (3, lanes), (lanes, 5), (1, 1)]:
        dst = np.full((35, 30), -1, dtype=dtype)
        transpose(src, 3, 5, dst, 2, 7, n_load, n_store)
        block = src[3 : 3 + lanes, 5 : 5 + lanes].copy()
        block[n_load:] = 0  # rows past n_load read as zeros
        want = np.full_like(dst, -1)
        want[2 : 2 + n_store, 7 : 7 + lanes] = block.T[:n_store]
        np.testing.assert_array_equal(dst, want)
    # a partial block at the end of the source never reads past its last row
    edge = np.arange(3 * 37, dtype=dtype).reshape(3, 37)
    dst = np.zeros((lanes, lanes), dtype=dtype)
    transpose(edge, 0, 0, dst, 0, 0, 3, lanes)
    np.testing.assert_array_equal(dst[:, :3], edge[:, :lanes].T)
    assert not dst[:, 3:].any()


def test_apply_matrix_scipy_fallback(rng, monkeypatch):
    """Without numba, apply_matrix falls back to one SciPy product with the same result."""
    m = _random_csc(rng, 6 * 5, 4 * 3, 0.3)
    frames = rng.standard_normal((2, 5, 6, 5)).astype(np.float32)
    with_numba = apply_matrix(frames, m, (4, 3))
    monkeypatch.setattr(matrix_module, "numba", None)
    without = apply_matrix(frames, m, (4, 3))
    want = (frames.reshape(10, -1).astype(np.float64) @ m.toarray()).reshape(2, 5, 4, 3)
    assert without.dtype == np.float32
    np.testing.assert_allclose(without, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(with_numba, want, rtol=1e-5, atol=1e-5)
    z = frames + 1j * frames[::-1]
    np.testing.assert_allclose(
        apply_matrix(z, m, (4, 3)), want + 1j * want[::-1], rtol=1e-5, atol=1e-5
    )


def test_apply_matrix_widens_integers_and_keeps_input():
    ss = (4, 4)
    m = image_transformation_matrix(ss, (2, 2), lambda c: np.asarray(c, float) * 2 + 0.5)
    frames = np.full((3, *ss), 65535, dtype=np.uint16)
    before = frames.copy()
    out = apply_matrix(frames, m, (2, 2))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 65535.0)
    np.testing.assert_array_equal(frames, before)


def test_matrix_transforms_compose_with_ndimage(rng):
    """An integer upscale (nearest) reproduces scipy.ndimage.zoom(order=0) on a grid."""
    src = rng.standard_normal((8, 8))
    tr = diffraction_to_detector(1.0, (16, 16), 0.125, 1.0, 3.75, 3.75)
    m = image_transformation_matrix((8, 8), (16, 16), tr)
    np.testing.assert_array_equal(apply_matrix(src, m, (16, 16)), np.kron(src, np.ones((2, 2))))
    del scipy.ndimage


@settings(max_examples=25, deadline=None)
@given(
    ty=st.integers(2, 9),
    tx=st.integers(2, 9),
    rot=st.sampled_from([0.0, 90.0, 180.0, 270.0]),
    flip=st.booleans(),
)
def test_permutation_matrices_invert(ty, tx, rot, flip):
    """Exact rotations/flips by multiples of 90 degrees are permutations; ifftshift/fftshift
    compose to the identity."""
    shape = (ty, tx) if rot in (0.0, 180.0) else (ty, ty)
    tr = diffraction_to_detector(
        1.0, shape, (1 / shape[0], 1 / shape[1]), 1.0, shape[0] // 2, shape[1] // 2, flip, rot
    )
    m = image_transformation_matrix(shape, shape, tr)
    w = np.asarray(m.sum(axis=0)).ravel()
    assert np.all((w == 1) | (w == 0))
    ident = lambda c: np.asarray(c, float)  # noqa: E731
    a = image_transformation_matrix(shape, shape, ident, ifftshift_coords(shape))
    b = image_transformation_matrix(shape, shape, ident, fftshift_coords(shape))
    np.testing.assert_array_equal((a @ b).toarray(), np.eye(shape[0] * shape[1]))


def test_apply_matrix_shape_errors():
    m = image_transformation_matrix((8, 8), (4, 4), lambda c: np.asarray(c, float) * 2)
    with pytest.raises(ShapeError, match="source_shape=\\(9, 9\\)"):
        apply_matrix(np.zeros((2, 9, 9)), m, (4, 4))
    with pytest.raises(ShapeError, match="target_shape"):
        apply_matrix(np.zeros((2, 8, 8)), m, (5, 4))
    with pytest.raises(ShapeError, match="at least 2 dimensions"):
        apply_matrix(np.zeros(64), m, (4, 4))


def test_matrix_bad_input():
    ident = lambda c: np.asarray(c, float)  # noqa: E731
    with pytest.raises(ValueError, match="method"):
        image_transformation_matrix((4, 4), (4, 4), ident, method="cubic")
    with pytest.raises(ValueError, match="oversample"):
        image_transformation_matrix((4, 4), (4, 4), ident, oversample=0)
    with pytest.raises(ShapeError, match="source_shape"):
        image_transformation_matrix((4, -4), (4, 4), ident)
    with pytest.raises(ValueError, match="non-finite"):
        image_transformation_matrix((4, 4), (4, 4), lambda c: np.full(np.shape(c), np.nan))
    with pytest.raises(ShapeError, match="affine_transformation"):
        image_transformation_matrix((4, 4), (4, 4), lambda c: np.zeros((3, 2)))


def test_serial_and_parallel_kernels_have_separate_numba_caches():
    # numba keys its disk cache by qualified name, not by compile flags: shared names would make
    # the parallel kernel load the serial binary (or crash) in a later process.
    kernels = pytest.importorskip("stacklab.ptycho._numba_kernels")
    names = {k.py_func.__qualname__ for k in kernels._KERNELS.values()}
    assert len(names) == 2
