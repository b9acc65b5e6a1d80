"""Tests for stacklab.core.binning.bin_frames: known answers, sum conservation, py4DSTEM golden."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from stacklab import backend
from stacklab.core.binning import bin_frames
from stacklab.errors import ShapeError

_GOLDEN_CANDIDATES = [
    Path(__file__).resolve().parents[1] / "golden" / "py4dstem",
    Path("/work/shared/golden/py4dstem"),
]
GOLDEN = next((p for p in _GOLDEN_CANDIDATES if p.is_dir()), None)
needs_golden = pytest.mark.skipif(GOLDEN is None, reason="py4dstem golden data not found")


def test_uint16_full_scale_does_not_wrap():
    stack = np.full((3, 8, 8), 65535, dtype=np.uint16)
    out = bin_frames(stack, 4)
    assert out.shape == (3, 2, 2)
    assert out.dtype == np.uint64
    assert np.all(out == 16 * 65535)
    signed = bin_frames(np.full((4, 4), -32768, dtype=np.int16), 4)
    assert signed.dtype == np.int64 and signed[0, 0] == -16 * 32768


def test_known_answer_with_trimming_and_rectangular_factor():
    a = np.arange(5 * 7, dtype=np.int32).reshape(5, 7)
    out = bin_frames(a, (2, 3))
    # rows 0..3, cols 0..5 are kept
    expected = np.array(
        [
            [a[0:2, 0:3].sum(), a[0:2, 3:6].sum()],
            [a[2:4, 0:3].sum(), a[2:4, 3:6].sum()],
        ]
    )
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.int64
    mean = bin_frames(a, (2, 3), reduce="mean")
    assert mean.dtype == np.float64
    np.testing.assert_allclose(mean, expected / 6.0)
    np.testing.assert_array_equal(bin_frames(a, 1), a)


def test_leading_axes_float32_and_dtype_option():
    rng = np.random.default_rng(0)
    cube = rng.uniform(size=(2, 3, 8, 6)).astype(np.float32)
    before = cube.copy()
    out = bin_frames(cube, 2)
    assert out.shape == (2, 3, 4, 3) and out.dtype == np.float32
    ref = cube.astype(np.float64).reshape(2, 3, 4, 2, 3, 2).sum(axis=(3, 5))
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    assert np.array_equal(cube, before)
    assert bin_frames(cube, 2, reduce="mean").dtype == np.float32
    assert bin_frames(cube, 2, dtype=np.float64).dtype == np.float64
    u16 = np.full((4, 4), 1000, dtype=np.uint16)
    np.testing.assert_array_equal(bin_frames(u16, 2, dtype=np.uint16), np.full((2, 2), 4000))
    with pytest.raises(ValueError, match="dtype"):
        bin_frames(np.full((4, 4), 30000, dtype=np.uint16), 2, dtype=np.uint16)
    with pytest.raises(TypeError, match="dtype"):
        bin_frames(u16, 2, reduce="mean", dtype=np.int32)


def test_validation():
    with pytest.raises(ShapeError, match="factor"):
        bin_frames(np.zeros((3, 4)), 5)
    with pytest.raises(ValueError, match="factor"):
        bin_frames(np.zeros((4, 4)), 0)
    with pytest.raises(TypeError, match="factor"):
        bin_frames(np.zeros((4, 4)), 1.5)
    with pytest.raises(ShapeError, match="stack"):
        bin_frames(np.zeros(4), 2)
    with pytest.raises(ValueError, match="reduce"):
        bin_frames(np.zeros((4, 4)), 2, reduce="max")


def test_dask_input_matches_numpy():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 60000, size=(10, 13, 11), dtype=np.uint16)
    lazy = da.from_array(stack, chunks=(7, 5, 4))
    out = bin_frames(lazy, (3, 2))
    assert backend.is_dask(out)
    np.testing.assert_array_equal(out.compute(), bin_frames(stack, (3, 2)))


@settings(max_examples=40, deadline=None)
@given(
    data=hnp.arrays(
        dtype=st.sampled_from([np.uint16, np.int32, np.float64]),
        shape=hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=12),
        elements={"min_value": 0, "max_value": 1000},
    ),
    fy=st.integers(1, 4),
    fx=st.integers(1, 4),
)
def test_binning_conserves_sum_of_trimmed_area(data, fy, fx):
    n_rows, n_cols = data.shape[-2:]
    if fy > n_rows or fx > n_cols:
        with pytest.raises(ShapeError):
            bin_frames(data, (fy, fx))
        return
    out = bin_frames(data, (fy, fx))
    trimmed = data[..., : (n_rows // fy) * fy, : (n_cols // fx) * fx]
    assert out.shape == (*data.shape[:-2], n_rows // fy, n_cols // fx)
    np.testing.assert_allclose(
        out.sum(axis=(-2, -1)), trimmed.astype(np.float64).sum(axis=(-2, -1)), rtol=1e-12
    )
    mean = bin_frames(data, (fy, fx), reduce="mean")
    np.testing.assert_allclose(mean * (fy * fx), out, rtol=1e-12)


def _reshape_sum(a, fy, fx, dtype):
    h, w = a.shape[-2:]
    t = a[..., : (h // fy) * fy, : (w // fx) * fx]
    return t.reshape(*a.shape[:-2], h // fy, fy, w // fx, fx).sum(axis=(-3, -1), dtype=dtype)


@pytest.mark.parametrize(
    "dtype, acc",
    [
        (np.uint8, np.uint64),
        (np.uint16, np.uint64),
        (np.uint32, np.uint64),
        (np.uint64, np.uint64),
        (np.int8, np.int64),
        (np.int16, np.int64),
        (np.int32, np.int64),
        (np.int64, np.int64),
        (np.bool_, np.int64),
    ],
)
@pytest.mark.parametrize("factor", [(1, 1), (2, 2), (3, 2), (1, 4), (5, 3)])
def test_strided_integer_path_matches_reshape_sum(dtype, acc, factor):
    """The strided fast path gives the reshape-and-sum's values and dtype, full-scale data."""
    rng = np.random.default_rng(7)
    if dtype is np.bool_:
        stack = rng.random((3, 17, 13)) > 0.5
    else:
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -(2**40)), min(info.max, 2**40)  # no 64-bit wrap in the sums
        stack = rng.integers(lo, hi, size=(3, 17, 13), dtype=dtype, endpoint=True)
        stack[0, :6, :6] = info.max  # full-scale corner: the narrow accumulators must not wrap
        if info.min < 0:
            stack[1, :6, :6] = info.min
    out = bin_frames(stack, factor)
    ref = _reshape_sum(stack, *factor, acc)
    assert out.dtype == acc
    np.testing.assert_array_equal(out, ref)
    mean = bin_frames(stack, factor, reduce="mean")
    ref_mean = _reshape_sum(stack, *factor, np.float64) / (factor[0] * factor[1])
    assert mean.dtype == np.float64
    if dtype not in (np.uint64, np.int64):
        np.testing.assert_array_equal(mean, ref_mean)  # bit-identical to the float64 mean
    else:
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-15)


def test_strided_path_pieces_views_and_scan_axes_last():
    """Inputs larger than one piece, non-contiguous views and a transposed 4-D scan."""
    rng = np.random.default_rng(8)
    cube = rng.integers(0, 65536, size=(6, 5, 64, 72), dtype=np.uint16)  # 2.8 MB: 3 pieces
    np.testing.assert_array_equal(bin_frames(cube, 2), _reshape_sum(cube, 2, 2, np.uint64))
    np.testing.assert_array_equal(
        bin_frames(cube, (3, 4), dtype=np.uint32), _reshape_sum(cube, 3, 4, np.uint64)
    )
    assert bin_frames(cube, (3, 4), dtype=np.uint32).dtype == np.uint32
    view = cube[:, ::2, 3:, 1:-1]
    np.testing.assert_array_equal(bin_frames(view, 3), _reshape_sum(view, 3, 3, np.uint64))
    moved = np.moveaxis(cube, (0, 1), (2, 3))  # (64, 72, 6, 5): scan binning as bin_scan does
    got = bin_frames(moved, (2, 1))
    np.testing.assert_array_equal(got, _reshape_sum(moved, 2, 1, np.uint64))
    before = cube.copy()
    bin_frames(cube, 2, reduce="mean")
    np.testing.assert_array_equal(cube, before)


@needs_golden
@pytest.mark.parametrize(
    "name", ["bin2D__f64_13x10_f2.npz", "bin2D__f64_13x10_f3.npz", "bin2D__u16_13x10_f2.npz"]
)
def test_matches_py4dstem_bin2d_golden(name):
    d = np.load(GOLDEN / name, allow_pickle=False)
    got = bin_frames(d["in_array"], int(d["in_factor"]), dtype=np.float64)
    np.testing.assert_allclose(got, d["out_binned"], rtol=1e-12)


@needs_golden
@pytest.mark.parametrize(
    "name", ["bin_data_diffraction__u16_f3.npz", "bin_data_diffraction__f32_f2.npz"]
)
def test_matches_py4dstem_bin_data_diffraction_golden(name):
    d = np.load(GOLDEN / name, allow_pickle=False)
    ref = d["out_data"]
    got = bin_frames(d["in_data"], int(d["in_bin_factor"]), dtype=ref.dtype)
    assert got.dtype == ref.dtype
    np.testing.assert_allclose(got, ref, rtol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="no CUDA device")
def test_cupy_matches_numpy():
    import cupy as cp

    rng = np.random.default_rng(2)
    stack = rng.integers(0, 65536, size=(5, 17, 19), dtype=np.uint16)
    for kw in ({}, {"reduce": "mean"}):
        ref = bin_frames(stack, (4, 3), **kw)
        got = bin_frames(cp.asarray(stack), (4, 3), **kw)
        assert isinstance(got, cp.ndarray) and got.dtype == ref.dtype
        np.testing.assert_allclose(got.get(), ref, rtol=1e-12)
