"""Benchmark: apply_matrix on 256 frames of 256 x 256 -> 128 x 128.

The matrix is a realistic detector-to-forward-model transform built by
:func:`stacklab.ptycho.image_transformation_matrix`: 37 degree scan rotation, y flip, about
2.3 detector pixels per target pixel (area averaging, about 7 entries per target pixel) and the
inverse FFT shift, 128 x 128 target. It is built once in ``make_data`` (as an application
precomputes it) and passed as CSC arrays.

* stacklab: :func:`stacklab.ptycho.apply_matrix` on the whole stack (numba gather, parallel over
  frames). With ``STACKLAB_DEVICE=gpu`` the frames are copied to the GPU, transformed there
  (cuSPARSE) and copied back, transfers included in the time.
* baseline: plain ``scipy.sparse``, frame by frame: ``frame.ravel() @ matrix`` for each frame
  (ptychography40's numba path is not available: its PyPI release lacks these tools).

Accuracy: largest absolute difference from a float64 product computed in ``make_data`` (first
16 frames).
"""

from __future__ import annotations

import numpy as np

NAME = "ptycho_apply_matrix"
REFERENCE_PACKAGE = None
REFERENCE_CODE = None

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
