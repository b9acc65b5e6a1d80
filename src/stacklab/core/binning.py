"""Integer binning of the last two (image) axes of a stack."""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np

from ..backend import get_xp, is_dask
from ..errors import ShapeError

__all__ = ["bin_frames"]

logger = logging.getLogger(__name__)


def _factor_pair(factor: Any) -> tuple[int, int]:
    if isinstance(factor, int | np.integer) and not isinstance(factor, bool):
        pair = (int(factor), int(factor))
    else:
        try:
            pair = tuple(factor)
        except TypeError:
            raise TypeError(
                f"factor must be an int or a pair (fy, fx) of ints, got {factor!r}"
            ) from None
        if len(pair) != 2 or not all(
            isinstance(f, int | np.integer) and not isinstance(f, bool) for f in pair
        ):
            raise TypeError(f"factor must be an int or a pair (fy, fx) of ints, got {factor!r}")
        pair = (int(pair[0]), int(pair[1]))
    if min(pair) < 1:
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    return pair


def _sum_dtype(dtype: np.dtype) -> np.dtype:
    """Accumulator for a sum: integers widen to 64 bit (signed stays signed), floats are kept."""
    if dtype.kind == "b" or dtype.kind == "i":
        return np.dtype(np.int64)
    if dtype.kind == "u":
        return np.dtype(np.uint64)
    if dtype.kind in "fc":
        return dtype
    raise TypeError(f"stack must be numeric, got dtype {dtype}")


def bin_frames(
    stack: Any,
    factor: int | tuple[int, int],
    *,
    dtype: Any = None,
    reduce: Literal["sum", "mean"] = "sum",
) -> Any:
    """Bin the last two axes by integer factors (sum or mean of ``fy x fx`` blocks).

    Trailing rows and columns that do not fill a whole block are dropped (the output covers
    ``stack[..., : (H // fy) * fy, : (W // fx) * fx]``).

    Parameters
    ----------
    stack : ndarray of shape (..., H, W)
        Frames with any leading axes (frames, or a 4-D scan ``(scan_row, scan_col, H, W)``);
        NumPy, CuPy or Dask.
    factor : int or (int, int)
        Bin factor ``f`` for both axes or ``(fy, fx)`` for rows and columns, each >= 1 and no
        larger than the axis.
    dtype : dtype, optional
        Output dtype. For ``reduce="sum"`` the sum is accumulated in the widened default dtype
        and then converted; an integer ``dtype`` too small for the result raises
        ``ValueError`` instead of wrapping around.
    reduce : {"sum", "mean"}, optional
        ``"sum"`` (default): integer data are summed in 64 bit (uint8/16/32/64 -> uint64,
        signed and bool -> int64) so they never wrap; float and complex dtypes are kept.
        ``"mean"``: the block mean; float64 for integer input, float dtypes kept (``dtype``
        must then be a float or complex dtype).

    Returns
    -------
    ndarray of shape (..., H // fy, W // fx)
        On the input's device (a Dask array for Dask input).

    Raises
    ------
    ShapeError
        If ``stack`` is not at least 2-D, is empty, or ``factor`` exceeds an image axis.
    ValueError
        For a bad ``factor`` or ``reduce``, or an integer ``dtype`` that cannot hold the sums.

    Examples
    --------
    >>> import numpy as np
    >>> bin_frames(np.full((1, 4, 4), 65535, dtype=np.uint16), 4)
    array([[[1048560]]], dtype=uint64)
    """
    fy, fx = _factor_pair(factor)
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    if is_dask(stack):
        arr = stack
    else:
        xp = get_xp(stack)
        arr = xp.asarray(stack)
    if arr.ndim < 2 or 0 in arr.shape:
        raise ShapeError(
            f"stack must be a non-empty array of shape (..., H, W), got {tuple(arr.shape)}"
        )
    n_rows, n_cols = arr.shape[-2:]
    if fy > n_rows or fx > n_cols:
        raise ShapeError(
            f"factor {(fy, fx)} is larger than the image axes {(n_rows, n_cols)} of stack"
        )
    in_dtype = np.dtype(arr.dtype)
    acc = _sum_dtype(in_dtype)
    out_rows, out_cols = n_rows // fy, n_cols // fx
    if (out_rows * fy, out_cols * fx) != (n_rows, n_cols):
        logger.debug(
            "bin_frames: trimming %s to %s", (n_rows, n_cols), (out_rows * fy, out_cols * fx)
        )
    trimmed = arr[..., : out_rows * fy, : out_cols * fx]
    if is_dask(trimmed):
        trimmed = trimmed.rechunk({trimmed.ndim - 2: -1, trimmed.ndim - 1: -1})
    blocks = trimmed.reshape(*arr.shape[:-2], out_rows, fy, out_cols, fx)
    axes = (blocks.ndim - 3, blocks.ndim - 1)
    if reduce == "sum":
        out = blocks.sum(axis=axes, dtype=acc)
        if dtype is not None:
            target = np.dtype(dtype)
            if target.kind in "iub" and target != acc and not is_dask(out) and out.size:
                info = np.iinfo(target) if target.kind != "b" else None
                lo, hi = out.min(), out.max()
                if info is None or lo < info.min or hi > info.max:
                    raise ValueError(
                        f"dtype {target} cannot hold the binned sums (range {lo}..{hi})"
                    )
            out = out.astype(target)
        return out
    mean_dtype = in_dtype if in_dtype.kind in "fc" else np.dtype(np.float64)
    if dtype is not None:
        mean_dtype = np.dtype(dtype)
        if mean_dtype.kind not in "fc":
            raise TypeError(
                f"dtype must be a float or complex dtype for reduce='mean', got {dtype}"
            )
    return blocks.mean(axis=axes, dtype=np.result_type(mean_dtype, np.float32)).astype(
        mean_dtype, copy=False
    )
