"""Benchmark: apply_matrix on 256 frames of 256 x 256 -> 128 x 128.

The matrix is a realistic detector-to-forward-model transform built by
:func:`stacklab.ptycho.image_transformation_matrix`: 37 degree scan rotation, y flip, about
2.3 detector pixels per target pixel (area averaging, about 7.5 entries per target pixel) and the
inverse FFT shift, 128 x 128 target. It is built once in ``make_data`` (as an application
precomputes it) and passed as CSC arrays.

* stacklab: :func:`stacklab.ptycho.apply_matrix` on the whole stack (numba: blocks of 8 frames
  transposed in registers, one vector multiply-add per matrix entry, parallel over blocks). With
  ``STACKLAB_DEVICE=gpu`` the frames are copied to the GPU, transformed there (cuSPARSE) and
  copied back, transfers included in the time.
* reference (``--reference-venv`` of a venv with ``pip install libertem``): ptychography40's
  numba path. The repository version of ``ptychography40``'s ``apply_matrix`` flattens the frames
  and, for a SciPy CSC or CSR matrix, returns ``rmatmul(flat, matrix)`` from LiberTEM
  (``libertem.common.numba``); ``REFERENCE_CODE`` makes exactly that call to the installed
  LiberTEM. ptychography40 itself is not installed: its PyPI release predates these tools.
* baseline (no venv): plain ``scipy.sparse``, ``frames.reshape(n, -1) @ matrix``, one SciPy call
  for the whole stack (what ptychography40's ``apply_matrix`` computes for any other matrix type).

``python benchmarks/bench_ptycho_apply_matrix.py [--repeat N]`` also times, in one process, two
other ways of using SciPy: frame by frame (``frame.ravel() @ matrix``) and SciPy's fastest form,
a CSR product with frames already stored pixel-major (``(T, S) @ (S, n)``, data laid out in
advance and the layout not counted: a lower bound for SciPy, not a drop-in).

Accuracy: largest absolute difference from a float64 product computed in ``make_data`` (first
16 frames).
"""

from __future__ import annotations

import numpy as np

NAME = "ptycho_apply_matrix"
REFERENCE_PACKAGE = "libertem"

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
    """Plain scipy.sparse: one product for the whole stack."""
    frames = data["frames"]
    out = (frames.reshape(frames.shape[0], -1) @ _matrix(data)).reshape(-1, *TARGET)
    return _errors(out, data["truth"])


def _scipy_per_frame(data: dict[str, np.ndarray]) -> dict[str, float]:
    """scipy.sparse frame by frame."""
    matrix = _matrix(data)
    out = np.stack([(f.ravel() @ matrix).reshape(TARGET) for f in data["frames"]])
    return _errors(out, data["truth"])


def _scipy_pixel_major(data: dict[str, np.ndarray]):
    """SciPy's fastest product, ``(T, S) @ (S, n)`` on frames laid out pixel-major beforehand."""
    frames = data["frames"]
    matrix_t = _matrix(data).T.tocsr()
    pixel_major = np.ascontiguousarray(frames.reshape(frames.shape[0], -1).T)

    def run(_: dict[str, np.ndarray]) -> dict[str, float]:
        out = (matrix_t @ pixel_major).T.reshape(-1, *TARGET)
        return _errors(out, data["truth"])

    return run


REFERENCE_CODE = """
# ptychography40 (repository version) apply_matrix for a SciPy CSC matrix: flatten the frames,
# LiberTEM's numba rmatmul, reshape. The matrix is rebuilt from the same CSC arrays.
import numpy as np
import scipy.sparse
from libertem.common.numba import rmatmul


def run(data):
    frames = data["frames"]
    matrix = scipy.sparse.csc_matrix(
        (data["m_data"], data["m_indices"], data["m_indptr"]), shape=tuple(data["m_shape"])
    )
    flat = frames.reshape((-1, int(np.prod(frames.shape[-2:]))))
    out = rmatmul(flat, matrix).reshape(frames.shape[0], *data["truth"].shape[1:])
    truth = data["truth"]
    return {"max_abs_err": float(np.max(np.abs(out[:16] - truth[:16])))}
"""


def main(argv: list[str] | None = None) -> None:
    """Time stacklab against the SciPy forms in this process; print a CSV with the ratios."""
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
        ("scipy one product (baseline)", baseline),
        ("scipy frame by frame", _scipy_per_frame),
        ("scipy CSR on pixel-major frames (layout not timed)", _scipy_pixel_major(data)),
    ):
        t, acc = time_best(func, data, args.repeat)
        print(f"{NAME},{side},{t:.4g},{t / t_stacklab:.3g},{acc['max_abs_err']:.3g}")


if __name__ == "__main__":
    main()
