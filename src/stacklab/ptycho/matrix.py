"""Sparse image transformation matrices: resample whole stacks of frames in one product.

A matrix ``M`` of shape ``(sy * sx, ty * tx)`` maps a flattened source image (detector frame) to a
flattened target image (forward-model grid): ``target_flat = source_flat @ M``. A stack of frames
is flattened to ``(n_frames, sy * sx)`` so that one sparse product transforms every frame; rotation,
scaling, flips, the detector centre and an (inverse) FFT shift are all folded into ``M``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse

from ..backend import call_numba, get_xp, is_cupy, load_kernels, resolve_device
from ..errors import ShapeError
from .geometry import CoordTransform, _shape2, footprints

# numba is an optional accelerator ([fast] extra); ``numba`` is None without it.
_kernels = load_kernels(f"{__package__}._numba_kernels")
numba = None if _kernels is None else _kernels.numba

__all__ = ["apply_matrix", "image_transformation_matrix"]

logger = logging.getLogger(__name__)

_METHODS = ("auto", "nearest", "area", "bilinear")
# Largest number of area samples handled in one vectorized chunk (bounds temporary memory).
_CHUNK_SAMPLES = 1 << 21


def _default_post(coords: np.ndarray) -> np.ndarray:
    """Nearest source index, rounding half to even like :func:`numpy.round`."""
    return np.rint(coords).astype(np.int64)


def image_transformation_matrix(
    source_shape: tuple[int, int],
    target_shape: tuple[int, int],
    affine_transformation: CoordTransform,
    pre_transform: CoordTransform | None = None,
    post_transform: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    method: str = "auto",
    conserve_counts: bool = False,
    oversample: int = 4,
    device: str = "cpu",
) -> Any:
    """Build the sparse matrix that resamples a source image onto a target grid.

    Each target pixel ``t`` has a footprint in source coordinates (see
    :func:`~stacklab.ptycho.geometry.footprints`): centre ``a = affine(pre(t))`` and edge vectors
    ``v_y``, ``v_x``. Its value is read from the source as follows:

    * ``"nearest"``: the source pixel nearest to the centre, ``post_transform(a)``;
    * ``"area"``: the average of the source pixels under the footprint, weighted by overlap
      area (estimated with ``oversample`` sub-samples per source pixel along each edge, centred
      on ``a``; exact for axis-aligned integer binning);
    * ``"bilinear"``: bilinear interpolation at the centre;
    * ``"auto"`` (default): nearest where both edges are shorter than 1.5 source pixels, area
      averaging elsewhere (i.e. when downscaling).

    Source pixels outside the source image are dropped; averages are taken over the in-range
    part, so a target pixel at the detector edge is the mean of what was measured (see
    :func:`~stacklab.ptycho.geometry.validity_mask` to flag such pixels).

    Parameters
    ----------
    source_shape, target_shape : (int, int)
        Shapes (rows, cols) of the source (detector) and target (forward model) images.
    affine_transformation : callable
        Maps (n, 2) float target coordinates (y, x), after ``pre_transform``, to (n, 2) source
        coordinates in pixels; e.g. :func:`~stacklab.ptycho.diffraction_to_detector`.
    pre_transform : callable, optional
        Maps (n, 2) integer target indices to coordinates, e.g.
        :func:`~stacklab.ptycho.ifftshift_coords` to produce the native FFT layout; identity by
        default.
    post_transform : callable, optional
        Maps (n, 2) float source coordinates to integer source indices (nearest and area
        sampling). Default ``numpy.rint`` (round half to even).
    method : {"auto", "nearest", "area", "bilinear"}
        Sampling method, see above.
    conserve_counts : bool
        If True, weights are the fraction of each source pixel's area that the target pixel
        covers (``|det(v_y, v_x)|`` per target pixel), so that a transformed pattern keeps the
        detector's total count (for Poisson likelihoods). If False, each target pixel is the
        average of the source pixels it covers (intensity per pixel preserved).
    oversample : int
        Sub-samples per source pixel along each footprint edge for ``"area"`` (>= 1).
    device : {"cpu", "gpu", "auto"}
        Where the returned matrix lives: a ``scipy.sparse.csc_matrix`` on the CPU, a
        ``cupyx.scipy.sparse.csc_matrix`` on the GPU.

    Returns
    -------
    sparse matrix of shape (sy * sx, ty * tx), float32
        Rows are flat source indices, columns flat target indices (row-major).

    Raises
    ------
    ValueError
        For an unknown method, ``oversample < 1``, a ``post_transform`` with bilinear sampling,
        or a transform that returns non-finite coordinates.
    ShapeError
        For invalid shapes or callables returning arrays of the wrong shape.
    """
    ss = _shape2(source_shape, "source_shape")
    ts = _shape2(target_shape, "target_shape")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if int(oversample) != oversample or oversample < 1:
        raise ValueError(f"oversample must be an integer >= 1, got {oversample!r}")
    if method == "bilinear" and post_transform is not None:
        raise ValueError("post_transform applies to nearest and area sampling, not 'bilinear'")
    post = _default_post if post_transform is None else post_transform
    centres, vy, vx = footprints(ts, affine_transformation, pre_transform)
    if not (np.all(np.isfinite(centres)) and np.all(np.isfinite(vy)) and np.all(np.isfinite(vx))):
        raise ValueError("affine_transformation returned non-finite coordinates")
    n_t = ts[0] * ts[1]
    n_s = ss[0] * ss[1]
    ly = np.hypot(vy[:, 0], vy[:, 1])
    lx = np.hypot(vx[:, 0], vx[:, 1])
    area = np.abs(vy[:, 0] * vx[:, 1] - vy[:, 1] * vx[:, 0])  # source px^2 per target px
    targets = np.arange(n_t, dtype=np.int64)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []

    if method == "bilinear":
        r, c, v = _bilinear_entries(centres, ss)
        if conserve_counts:
            v = v * area[c]
        rows.append(r)
        cols.append(c)
        vals.append(v)
    else:
        if method == "nearest":
            single = np.ones(n_t, dtype=bool)
        elif method == "area":
            single = np.zeros(n_t, dtype=bool)
        else:
            single = (ly < 1.5) & (lx < 1.5)
        if np.any(single):
            src = _post_indices(post, centres[single])
            ok = np.all((src >= 0) & (src < ss), axis=1)
            t_ok = targets[single][ok]
            rows.append(src[ok, 0] * ss[1] + src[ok, 1])
            cols.append(t_ok)
            vals.append(area[t_ok] if conserve_counts else np.ones(len(t_ok)))
        if not np.all(single):
            r, c, v = _area_entries(
                centres,
                vy,
                vx,
                ly,
                lx,
                area,
                targets[~single],
                ss,
                post,
                oversample,
                conserve_counts,
            )
            rows.append(r)
            cols.append(c)
            vals.append(v)

    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    data = np.concatenate(vals) if vals else np.zeros(0)
    mat = scipy.sparse.csc_matrix((data, (row, col)), shape=(n_s, n_t), dtype=np.float64)
    mat.sum_duplicates()
    mat.eliminate_zeros()
    mat = mat.astype(np.float32)
    mat.sort_indices()
    logger.debug(
        "image_transformation_matrix %s -> %s: %d entries, %d empty target pixels",
        ss,
        ts,
        mat.nnz,
        int(np.count_nonzero(np.diff(mat.indptr) == 0)),
    )
    if resolve_device(device) == "gpu":
        import cupyx.scipy.sparse as cusparse

        return cusparse.csc_matrix(mat)
    return mat


def _post_indices(post: Callable[[np.ndarray], np.ndarray], coords: np.ndarray) -> np.ndarray:
    idx = np.asarray(post(coords))
    if idx.shape != coords.shape:
        raise ShapeError(f"post_transform must return shape {coords.shape}, got {idx.shape}")
    return idx.astype(np.int64, copy=False)


def _bilinear_entries(
    centres: np.ndarray, ss: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    base = np.floor(centres)
    frac = centres - base
    base = base.astype(np.int64)
    n = len(centres)
    t = np.arange(n, dtype=np.int64)
    rows, cols, vals = [], [], []
    for dy in (0, 1):
        wy = frac[:, 0] if dy else 1.0 - frac[:, 0]
        for dx in (0, 1):
            wx = frac[:, 1] if dx else 1.0 - frac[:, 1]
            w = wy * wx
            yy = base[:, 0] + dy
            xx = base[:, 1] + dx
            ok = (w > 0) & (yy >= 0) & (yy < ss[0]) & (xx >= 0) & (xx < ss[1])
            rows.append(yy[ok] * ss[1] + xx[ok])
            cols.append(t[ok])
            vals.append(w[ok])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def _area_entries(
    centres: np.ndarray,
    vy: np.ndarray,
    vx: np.ndarray,
    ly: np.ndarray,
    lx: np.ndarray,
    area: np.ndarray,
    tsel: np.ndarray,
    ss: tuple[int, int],
    post: Callable[[np.ndarray], np.ndarray],
    oversample: int,
    conserve: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-weighted entries for target pixels ``tsel`` (centred sub-sample grid)."""
    n_s = ss[0] * ss[1]
    my = np.maximum(oversample, np.ceil(oversample * ly[tsel] - 1e-9)).astype(np.int64)
    mx = np.maximum(oversample, np.ceil(oversample * lx[tsel] - 1e-9)).astype(np.int64)
    rows, cols, vals = [], [], []
    keys = my * (int(mx.max()) + 1) + mx
    for key in np.unique(keys):
        group = tsel[keys == key]
        gy = int(my[keys == key][0])
        gx = int(mx[keys == key][0])
        uy = (np.arange(gy) + 0.5) / gy - 0.5
        ux = (np.arange(gx) + 0.5) / gx - 0.5
        per = gy * gx
        step = max(1, _CHUNK_SAMPLES // per)
        for start in range(0, len(group), step):
            tg = group[start : start + step]
            pos = (
                centres[tg, None, None, :]
                + uy[None, :, None, None] * vy[tg, None, None, :]
                + ux[None, None, :, None] * vx[tg, None, None, :]
            ).reshape(-1, 2)
            src = _post_indices(post, pos)
            tcol = np.repeat(tg, per)
            ok = np.all((src >= 0) & (src < ss), axis=1)
            key_flat = tcol[ok] * n_s + (src[ok, 0] * ss[1] + src[ok, 1])
            uniq, counts = np.unique(key_flat, return_counts=True)
            t_u = uniq // n_s
            s_u = uniq % n_s
            if conserve:
                w = counts * (area[t_u] / per)
            else:
                n_in = np.bincount(tcol[ok], minlength=int(tg.max()) + 1)
                w = counts / n_in[t_u]
            rows.append(s_u)
            cols.append(t_u)
            vals.append(w.astype(np.float64))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


# --------------------------------------------------------------------------------------------
# Applying a matrix


# Below this many multiply-adds (frames x entries) one thread wins (no start-up or contention).
_PARALLEL_MIN_WORK = 1 << 21

_SCRATCH = threading.local()
_SCRATCH_MAX_BYTES = 1 << 28  # buffers larger than this are not kept between calls


def _scratch(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A per-Python-thread scratch array of at least ``shape``, reused between calls.

    Reuse avoids paging in fresh memory on every call (a large share of the time otherwise).
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    cache = getattr(_SCRATCH, "buffers", None)
    if cache is None:
        cache = _SCRATCH.buffers = {}
    buf = cache.get((name, dtype))
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype=dtype)
        if buf.nbytes <= _SCRATCH_MAX_BYTES:
            cache[(name, dtype)] = buf
    return buf[:size].reshape(shape)


def _apply_sparse_scipy(flat: np.ndarray, matrix: Any) -> np.ndarray:
    """``flat @ matrix`` with SciPy (the fallback without numba, and the tests' reference)."""
    csr_t = scipy.sparse.csr_matrix(matrix.T)  # (T, S): one product for the whole stack
    return np.asarray((csr_t @ flat.T).T, dtype=flat.dtype)


def _check_structure(csc: Any) -> None:
    """Refuse a CSC structure the unchecked kernel would read out of bounds with."""
    indptr = csc.indptr
    used = csc.indices[: max(int(indptr[-1]), 0)]
    bad = (
        indptr[0] != 0
        or indptr[-1] > min(len(csc.indices), len(csc.data))
        or np.any(np.diff(indptr) < 0)
        or (used.size > 0 and (used.min() < 0 or used.max() >= csc.shape[0]))
    )
    if bad:
        raise ValueError("matrix is not a valid sparse matrix (CSC pointers or row indices)")


def _apply_sparse_numba(flat: np.ndarray, matrix: Any, parallel: bool | None = None) -> np.ndarray:
    """``flat @ matrix`` with the blocked numba kernel (see :mod:`._numba_kernels`).

    ``flat`` is C-contiguous (n, S) of the result dtype (float32/64 or complex64/128) and
    ``matrix`` a real SciPy sparse (S, T) matrix. Complex frames are viewed as real frames of
    interleaved (re, im) pixels, transformed by ``kron(matrix, I_2)``. ``parallel=None``
    uses threads for stacks of more than one block of frames with enough work.
    """
    if np.iscomplexobj(flat):
        pairs = scipy.sparse.kron(matrix, scipy.sparse.identity(2, format="csc"), format="csc")
        real = flat.view(flat.real.dtype)  # (n, 2 S)
        return _apply_sparse_numba(real, pairs, parallel).view(flat.dtype)
    csc = matrix.tocsc()
    _check_structure(csc)
    n, n_l = flat.shape[0], _kernels.lanes(flat.dtype)
    out = np.empty((n, csc.shape[1]), dtype=flat.dtype)
    n_blocks = -(-n // n_l)
    if parallel is None:
        parallel = n_blocks > 1 and n * csc.nnz >= _PARALLEL_MIN_WORK
    n_workers = min(numba.get_num_threads(), n_blocks) if parallel else 1
    tiles = _scratch("tiles", (n_workers, flat.shape[1], n_l), flat.dtype)
    acc = np.empty((n_workers, n_l, n_l), dtype=flat.dtype)
    data = csc.data.astype(flat.dtype, copy=False)
    args = (flat, csc.indptr, csc.indices, data, out, tiles, acc)
    if n_workers > 1:  # the parallel kernel: one thread at a time (see call_numba)
        call_numba(_kernels.apply_csc_blocked, *args)
    else:
        _kernels.apply_csc_blocked(*args)
    return out


def apply_matrix(sources: Any, matrix: Any, target_shape: tuple[int, int]) -> Any:
    """Apply a transformation matrix to every frame of a stack.

    Parameters
    ----------
    sources : ndarray of shape (..., sy, sx)
        Frames (NumPy or CuPy), any number of leading axes. Integer data are widened to float.
    matrix : sparse matrix or ndarray of shape (sy * sx, ty * tx)
        From :func:`image_transformation_matrix` or equivalent: SciPy sparse, CuPy sparse or
        dense.
    target_shape : (int, int)
        ``(ty, tx)``; the result has shape ``sources.shape[:-2] + target_shape``.

    Returns
    -------
    ndarray of shape (..., ty, tx)
        dtype ``result_type(float32, sources.dtype, matrix.dtype)``, on the device of
        ``sources``.

    Raises
    ------
    ShapeError
        If the matrix does not fit the frame shape or ``target_shape``.

    Notes
    -----
    On the CPU, with numba, blocks of 8 frames are transposed in registers
    to pixel-major order so that each matrix entry costs one vector multiply-add over the block,
    accumulated in a register; blocks run in parallel for large stacks. Each target pixel is
    summed in the frames' precision (float32 frames accumulate in float32, to a few ulps);
    complex frames are transformed as interleaved real and imaginary parts. A single frame,
    a complex matrix, or a missing numba take one SciPy sparse product instead.
    On the GPU it is one cuSPARSE product.
    """
    if getattr(sources, "ndim", 0) < 2:
        raise ShapeError(
            f"sources must have at least 2 dimensions (..., sy, sx), got shape "
            f"{getattr(sources, 'shape', None)}"
        )
    ts = _shape2(target_shape, "target_shape")
    sy, sx = sources.shape[-2:]
    n_src = sy * sx
    mshape = tuple(matrix.shape)
    if len(mshape) != 2 or mshape[0] != n_src:
        raise ShapeError(
            f"matrix has shape {mshape} but sources frames are {sy}x{sx} = {n_src} pixels; "
            f"the matrix must have {n_src} rows (built for source_shape=({sy}, {sx}))"
        )
    if mshape[1] != ts[0] * ts[1]:
        raise ShapeError(
            f"matrix has {mshape[1]} columns but target_shape {ts} has {ts[0] * ts[1]} pixels"
        )
    lead = tuple(sources.shape[:-2])
    rdtype = np.result_type(np.float32, sources.dtype, matrix.dtype)
    if is_cupy(sources):
        return _apply_cupy(sources, matrix, ts, lead, rdtype)
    xp = get_xp(sources)
    flat = np.ascontiguousarray(np.asarray(sources).reshape(-1, n_src), dtype=rdtype)
    if scipy.sparse.issparse(matrix):
        if numba is not None and flat.shape[0] > 1 and matrix.dtype.kind != "c":
            out = _apply_sparse_numba(flat, matrix)
        else:  # numba missing, a complex matrix, or one frame (a faster SciPy mat-vec product)
            out = _apply_sparse_scipy(flat, matrix)
    elif is_cupy(matrix):
        raise TypeError("matrix is on the GPU but sources are NumPy; move one of them")
    else:
        out = np.asarray(flat @ np.asarray(matrix), dtype=rdtype)
    del xp
    return out.reshape(lead + ts)


def _apply_cupy(sources: Any, matrix: Any, ts: tuple[int, int], lead: tuple, rdtype) -> Any:
    import cupy as cp
    import cupyx.scipy.sparse as cusparse

    n_src = sources.shape[-1] * sources.shape[-2]
    flat = cp.asarray(sources, dtype=rdtype).reshape(-1, n_src)
    if scipy.sparse.issparse(matrix):
        matrix = cusparse.csc_matrix(matrix)
    if cusparse.issparse(matrix):
        mt = matrix.T.tocsr()  # (T, S)
        if mt.dtype != rdtype:
            mt = mt.astype(rdtype)
        out = (mt @ cp.ascontiguousarray(flat.T)).T
    else:
        out = flat @ cp.asarray(matrix, dtype=rdtype)
    return cp.ascontiguousarray(out).reshape(lead + ts)
