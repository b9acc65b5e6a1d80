"""numba kernels for :func:`stacklab.ptycho.apply_matrix` (sparse matrix times a stack of frames).

The product ``out = frames @ M`` (frames ``(n, S)`` row-major, ``M`` a CSC matrix ``(S, T)``) is
computed on blocks of ``L = 8`` frames (one 256-bit SIMD vector of float32, 512-bit of float64):

1. the block is transposed to pixel-major order, ``tile (S, L)``, by in-register transposes of
   ``L x L`` sub-blocks, so that the ``L`` frames' values of one source pixel form one vector;
2. each target pixel ``t`` is one vector accumulation held in a register,
   ``acc += M.data[k] * tile[M.indices[k]]`` over the entries ``k`` of column ``t`` (a fused
   multiply-add per matrix entry for all ``L`` frames);
3. ``L`` consecutive targets are transposed back in registers and stored as ``L`` row segments
   of ``out``.

Every lane sums its entries in CSC order with fused multiply-adds in the frames' own precision
(float32 input accumulates in float32: with a handful of entries per target pixel the rounding
error is a few float32 ulps).

LLVM does not vectorize these steps from plain loops (an 8-trip lane loop falls to its scalar
epilogue and the register transposes are never formed), so the two vector operations are written
as numba intrinsics that emit LLVM vector IR directly; everything else is ordinary numba code.
The module needs numba; :mod:`stacklab.ptycho.matrix` imports it only when numba is installed.
"""

from __future__ import annotations

import types as pytypes

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["LANES", "apply_csc_blocked", "lanes"]

#: Frames per block. 8 float32 frames fill a 256-bit register; 16 (a 512-bit register) was
#: measured 10-20 % slower on an AVX-512 CPU: twice the streams to read at once and wider
#: shuffles in the transposes. float64 blocks of 8 beat blocks of 4.
LANES = 8
_FLOATS = (types.float32, types.float64)


def lanes(dtype: np.dtype) -> int:
    """Frames per block for a real floating dtype (float32 or float64)."""
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    return LANES


def _row_vector_ptr(context, builder, arr, arrty, row, col, vec):
    """Pointer to the vector ``arr[row, col : col + len(vec)]`` (unit inner stride assumed)."""
    ptr = cgutils.get_item_pointer2(
        context,
        builder,
        arr.data,
        cgutils.unpack_tuple(builder, arr.shape),
        cgutils.unpack_tuple(builder, arr.strides),
        arrty.layout,
        [row, col],
    )
    return builder.bitcast(ptr, vec.as_pointer())


@intrinsic
def _transpose_block(typingctx, src, i0, j0, dst, k0, l0, n_load, n_store):
    """``dst[k0 + c, l0 + r] = src[i0 + r, j0 + c]`` for ``r, c < L``; both C-contiguous 2D.

    Source rows ``r >= n_load`` are read as zeros (and not touched: a partial block of frames);
    only destination rows ``c < n_store`` are written. ``L`` rows are loaded as vectors and
    transposed by ``log2(L)`` butterfly stages of two-vector shuffles (stage ``h`` swaps the
    off-diagonal ``h x h`` blocks of every ``2h x 2h`` block).
    """
    if not (
        isinstance(src, types.Array)
        and isinstance(dst, types.Array)
        and src.ndim == dst.ndim == 2
        and src.layout == dst.layout == "C"
        and src.dtype == dst.dtype
        and src.dtype in _FLOATS
    ):
        return None
    n = LANES
    sig = types.void(
        src, types.intp, types.intp, dst, types.intp, types.intp, types.intp, types.intp
    )

    def codegen(context, builder, signature, args):
        sty, dty = signature.args[0], signature.args[3]
        sarr = context.make_array(sty)(context, builder, args[0])
        darr = context.make_array(dty)(context, builder, args[3])
        i0, j0, k0, l0, n_load, n_store = args[1], args[2], args[4], args[5], args[6], args[7]
        intp = context.get_value_type(types.intp)
        vec = ir.VectorType(context.get_value_type(sty.dtype), n)
        mask_ty = ir.VectorType(ir.IntType(32), n)
        align = sty.dtype.bitwidth // 8

        def load_rows(partial):
            rows = []
            for r in range(n):
                row = builder.add(i0, ir.Constant(intp, r))
                if partial:  # a missing row loads row i0 (always there) and becomes zeros
                    valid = builder.icmp_signed("<", ir.Constant(intp, r), n_load)
                    row = builder.select(valid, row, i0)
                ptr = _row_vector_ptr(context, builder, sarr, sty, row, j0, vec)
                rows.append(builder.load(ptr, align=align))
                if partial:
                    rows[-1] = builder.select(valid, rows[-1], ir.Constant(vec, None))
            return rows, builder.basic_block

        full = builder.icmp_signed(">=", n_load, ir.Constant(intp, n))
        with builder.if_else(full, likely=True) as (whole, part):
            with whole:
                rows_whole, block_whole = load_rows(False)
            with part:
                rows_part, block_part = load_rows(True)
        rows = []
        for a, b in zip(rows_whole, rows_part, strict=True):
            rows.append(builder.phi(vec))
            rows[-1].add_incoming(a, block_whole)
            rows[-1].add_incoming(b, block_part)
        h = n // 2
        while h:
            lo = ir.Constant(mask_ty, [p + n - h if p & h else p for p in range(n)])
            hi = ir.Constant(mask_ty, [p + n if p & h else p + h for p in range(n)])
            new = list(rows)
            for i in range(n):
                if not i & h:
                    new[i] = builder.shuffle_vector(rows[i], rows[i + h], lo)
                    new[i + h] = builder.shuffle_vector(rows[i], rows[i + h], hi)
            rows = new
            h //= 2
        for c in range(n):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(intp, c), n_store)):
                row = builder.add(k0, ir.Constant(intp, c))
                ptr = _row_vector_ptr(context, builder, darr, dty, row, l0, vec)
                builder.store(rows[c], ptr, align=align)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _gather_lanes(typingctx, acc, t, tile, indices, data, k0, k1):
    """``acc[t, :L] = sum(data[k] * tile[indices[k], :L] for k in range(k0, k1))``.

    The sum is one vector register (fused multiply-adds in order of ``k``); ``acc`` and ``tile``
    are C-contiguous 2D arrays with ``L`` columns, ``data`` has their dtype.
    """
    if not (
        isinstance(acc, types.Array)
        and isinstance(tile, types.Array)
        and isinstance(indices, types.Array)
        and isinstance(data, types.Array)
        and acc.ndim == tile.ndim == 2
        and indices.ndim == data.ndim == 1
        and acc.layout == tile.layout == "C"
        and isinstance(indices.dtype, types.Integer)
        and acc.dtype == tile.dtype == data.dtype
        and acc.dtype in _FLOATS
    ):
        return None
    n = LANES
    sig = types.void(acc, types.intp, tile, indices, data, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        aty, _, tty, ity, dty, _, _ = signature.args
        aarr = context.make_array(aty)(context, builder, args[0])
        tarr = context.make_array(tty)(context, builder, args[2])
        iarr = context.make_array(ity)(context, builder, args[3])
        darr = context.make_array(dty)(context, builder, args[4])
        intp = context.get_value_type(types.intp)
        i32 = ir.IntType(32)
        vec = ir.VectorType(context.get_value_type(aty.dtype), n)
        align = aty.dtype.bitwidth // 8
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{n}f{aty.dtype.bitwidth}"
        )
        zero = ir.Constant(intp, 0)
        splat = ir.Constant(ir.VectorType(i32, n), [0] * n)
        total = cgutils.alloca_once(builder, vec)  # promoted to a register by LLVM
        builder.store(ir.Constant(vec, None), total)

        def item(arr, arrty, k):
            return cgutils.get_item_pointer2(
                context,
                builder,
                arr.data,
                cgutils.unpack_tuple(builder, arr.shape),
                cgutils.unpack_tuple(builder, arr.strides),
                arrty.layout,
                [k],
            )

        with cgutils.for_range(builder, args[6], start=args[5], intp=intp) as loop:
            src = builder.load(item(iarr, ity, loop.index))
            if src.type.width < intp.width:
                src = builder.sext(src, intp) if ity.dtype.signed else builder.zext(src, intp)
            elif src.type.width > intp.width:
                src = builder.trunc(src, intp)
            weight = builder.load(item(darr, dty, loop.index))
            weights = builder.insert_element(ir.Constant(vec, ir.Undefined), weight, i32(0))
            weights = builder.shuffle_vector(weights, ir.Constant(vec, ir.Undefined), splat)
            ptr = _row_vector_ptr(context, builder, tarr, tty, src, zero, vec)
            row = builder.load(ptr, align=align)
            builder.store(builder.call(fma, [weights, row, builder.load(total)]), total)
        out = _row_vector_ptr(context, builder, aarr, aty, args[1], zero, vec)
        builder.store(builder.load(total), out, align=align)
        return context.get_dummy_value()

    return sig, codegen


def _apply_csc_blocked_impl(src, indptr, indices, data, out, tiles, acc):  # pragma: no cover
    """``out = src @ M`` for ``M = csc(data, indices, indptr)``; see the module docstring.

    ``src (n, S)`` and ``out (n, T)`` C-contiguous, ``tiles (n_workers, S, L)`` and
    ``acc (n_workers, L, L)`` scratch of the same dtype. Worker ``w`` handles the blocks of ``L``
    frames ``w, w + n_workers, ...``; a last partial block is read with zero-filled lanes.
    """
    n, n_s = src.shape
    n_t = out.shape[1]
    n_workers, _, n_l = tiles.shape
    n_blocks = (n + n_l - 1) // n_l
    s_full = n_s - n_s % n_l
    for w in numba.prange(n_workers):
        tile = tiles[w]
        res = acc[w]
        for b in range(w, n_blocks, n_workers):
            i0 = b * n_l
            m = min(n_l, n - i0)
            for s0 in range(0, s_full, n_l):
                _transpose_block(src, i0, s0, tile, s0, 0, m, n_l)
            for s in range(s_full, n_s):
                for j in range(m):
                    tile[s, j] = src[i0 + j, s]
                for j in range(m, n_l):
                    tile[s, j] = 0
            for t0 in range(0, n_t, n_l):
                t1 = min(n_t, t0 + n_l)
                for t in range(t0, t1):
                    _gather_lanes(res, t - t0, tile, indices, data, indptr[t], indptr[t + 1])
                if t1 - t0 == n_l:
                    _transpose_block(res, 0, 0, out, i0, t0, n_l, m)
                else:
                    for j in range(m):
                        for t in range(t0, t1):
                            out[i0 + j, t] = res[t - t0, j]


def _compiled(parallel: bool):
    """Compile one variant under its own name.

    numba's on-disk cache is keyed by the function's qualified name and source line, not by the
    compile flags: two ``njit(..., cache=True)`` of the same function would share (and corrupt)
    one cache entry, so each variant is a copy of the function with a distinct ``__qualname__``.
    """
    impl = _apply_csc_blocked_impl
    copy = pytypes.FunctionType(impl.__code__, impl.__globals__, impl.__name__, impl.__defaults__)
    copy.__qualname__ = f"{impl.__qualname__}_{'parallel' if parallel else 'serial'}"
    copy.__module__ = impl.__module__
    return numba.njit(copy, parallel=parallel, cache=True, nogil=True)


_KERNELS = {parallel: _compiled(parallel) for parallel in (False, True)}


def apply_csc_blocked(
    src: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    out: np.ndarray,
    tiles: np.ndarray,
    acc: np.ndarray,
) -> None:
    """Write ``src @ M`` into ``out`` for the CSC matrix ``M = (data, indices, indptr)``.

    Parameters
    ----------
    src : ndarray of shape (n, S), float32 or float64, C-contiguous
        Flattened frames.
    indptr, indices : ndarray of int
        CSC structure of ``M`` (``T + 1`` column pointers, row indices in ``[0, S)``).
    data : ndarray, dtype of ``src``
        Matrix entries.
    out : ndarray of shape (n, T), dtype of ``src``, C-contiguous
        Result, overwritten.
    tiles : ndarray of shape (n_workers, S, L), dtype of ``src``
        Scratch, ``L = lanes(src.dtype)``; ``n_workers > 1`` runs the workers in parallel.
    acc : ndarray of shape (n_workers, L, L), dtype of ``src``
        Scratch.
    """
    _KERNELS[tiles.shape[0] > 1](src, indptr, indices, data, out, tiles, acc)
