"""Benchmark: apply_matrix on 256 frames of 256 x 256 -> 128 x 128.

The matrix is a realistic detector-to-forward-model transform built by
:func:`stacklab.ptycho.image_transformation_matrix`: 37 degree scan rotation, y flip, about
2.3 detector pixels per target pixel (area averaging, about 7.5 entries per target pixel) and the
inverse FFT shift, 128 x 128 target. It is built once in ``make_data`` (as an application
precomputes it) and passed as CSC arrays.

* stacklab: :func:`stacklab.ptycho.apply_matrix` on the whole stack (numba: blocks of 16 frames
  transposed in registers, one vector multiply-add per matrix entry, parallel over blocks). With
  ``STACKLAB_DEVICE=gpu`` the frames are copied to the GPU, transformed there (cuSPARSE) and
  copied back, transfers included in the time.
* baseline (``python benchmarks/run.py ptycho_apply_matrix``): plain ``scipy.sparse``, frame by
  frame: ``frame.ravel() @ matrix`` for each frame.
* second baseline, ptychography40's numba path (``REFERENCE_CODE``, run with
  ``--reference-venv .venv`` or any venv with numba and SciPy): the repository version's
  ``apply_matrix`` hands CSC matrices to LiberTEM's ``rmatmul``, a serial numba loop over target
  pixels, their matrix entries and then every frame (one strided read per frame), accumulating in
  a target-major ``(T, n)`` array that is transposed at the end. Its PyPI release lacks these tools
  and the repository version needs LiberTEM, so ``REFERENCE_CODE`` is a reimplementation of that
  algorithm (same loop order, ``fastmath`` as there), not the package itself.

``python benchmarks/bench_ptycho_apply_matrix.py [--repeat N]`` times stacklab and both baselines
in one process and prints both ratios.

Accuracy: largest absolute difference from a float64 product computed in ``make_data`` (first
16 frames).
"""

from __future__ import annotations

import numpy as np

NAME = "ptycho_apply_matrix"
REFERENCE_PACKAGE = None

N_FRAMES = 256
SOURCE = (256, 256)
TARGET = (128, 128)


def make_data(seed: int) -> dict[str, np.ndarray]:
    """Random float32 frames, the matrix (CSC arrays) and the float64 reference result."""
    from stacklab.ptycho import (
        diffraction_to_detector,
        ifftshift_coords,
        image_transformation_matrix,
        wavelength,
    )

    rng = np.random.default_rng(seed)
    frames = rng.poisson(20.0, (N_FRAMES, *SOURCE)).astype(np.float32)
    lamb = wavelength(300)
    affine = diffraction_to_detector(
        lamb, TARGET, 1.7e-11, 0.4e-3, 127.3, 128.6, flip_y=True, scan_rotation=37.0
    )
    m = image_transformation_matrix(SOURCE, TARGET, affine, ifftshift_coords(TARGET))
    truth = frames.reshape(N_FRAMES, -1).astype(np.float64) @ m.astype(np.float64)
    return {
        "frames": frames,
        "m_data": m.data,
        "m_indices": m.indices,
        "m_indptr": m.indptr,
        "m_shape": np.array(m.shape),
        "truth": np.asarray(truth).reshape(N_FRAMES, *TARGET),
    }


def _matrix(data):
    import scipy.sparse

    return scipy.sparse.csc_matrix(
        (data["m_data"], data["m_indices"], data["m_indptr"]), shape=tuple(data["m_shape"])
    )


def _errors(out: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    # 16 frames suffice to check the product and keep the check out of the timing
    return {"max_abs_err": float(np.max(np.abs(out[:16] - truth[:16])))}


def run_stacklab(data: dict[str, np.ndarray]) -> dict[str, float]:
    """apply_matrix on the whole stack (on the GPU when STACKLAB_DEVICE=gpu, transfers timed)."""
    import os

    from stacklab.backend import to_numpy
    from stacklab.ptycho import apply_matrix

    matrix = _matrix(data)
    frames = data["frames"]
    if os.environ.get("STACKLAB_DEVICE", "cpu").lower() == "gpu":
        import cupy

        out = to_numpy(apply_matrix(cupy.asarray(frames), matrix, TARGET))
    else:
        out = apply_matrix(frames, matrix, TARGET)
    return _errors(out, data["truth"])


def baseline(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Plain scipy.sparse, one frame at a time."""
    matrix = _matrix(data)
    frames = data["frames"]
    out = np.stack([(f.ravel() @ matrix).reshape(TARGET) for f in frames])
    return _errors(out, data["truth"])


REFERENCE_CODE = """
# Reimplementation of ptychography40's numba path (repository version): for every target pixel,
# for every matrix entry of its CSC column, for every frame, accumulate into (T, n); transpose.
import numba
import numpy as np


@numba.njit(fastmath=True, nogil=True)
def _target_major_product(frames, indptr, indices, data, out_t):
    n = frames.shape[0]
    for t in range(indptr.shape[0] - 1):
        for k in range(indptr[t], indptr[t + 1]):
            s = indices[k]
            w = data[k]
            for i in range(n):
                out_t[t, i] += frames[i, s] * w


def run(data):
    frames = data["frames"]
    flat = frames.reshape(frames.shape[0], -1)
    out_t = np.zeros((int(data["m_shape"][1]), flat.shape[0]), dtype=np.float32)
    _target_major_product(flat, data["m_indptr"], data["m_indices"], data["m_data"], out_t)
    out = out_t.T.copy().reshape(frames.shape[0], *data["truth"].shape[1:])
    truth = data["truth"]
    return {"max_abs_err": float(np.max(np.abs(out[:16] - truth[:16])))}
"""

_REFERENCE_NAMESPACE: dict = {}


def baseline_ptychography40(data: dict[str, np.ndarray]) -> dict[str, float]:
    """ptychography40's numba path (``REFERENCE_CODE``, compiled in this process)."""
    if "run" not in _REFERENCE_NAMESPACE:
        exec(compile(REFERENCE_CODE, f"{__file__}:REFERENCE_CODE", "exec"), _REFERENCE_NAMESPACE)
    return _REFERENCE_NAMESPACE["run"](data)


def main(argv: list[str] | None = None) -> None:
    """Time stacklab against both baselines in this process; print a CSV with both ratios."""
    import argparse
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import time_best

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = make_data(args.seed)
    t_stacklab, acc = time_best(run_stacklab, data, args.repeat)
    print("name,side,seconds,ratio_to_stacklab,max_abs_err")
    print(f"{NAME},stacklab,{t_stacklab:.4g},1,{acc['max_abs_err']:.3g}")
    for side, func in (
        ("scipy per-frame baseline", baseline),
        ("ptychography40 numba path (reimplemented)", baseline_ptychography40),
    ):
        t, acc = time_best(func, data, args.repeat)
        print(f"{NAME},{side},{t:.4g},{t / t_stacklab:.3g},{acc['max_abs_err']:.3g}")


if __name__ == "__main__":
    main()
