"""Benchmark: per-frame sums of a 2000 x 128 x 128 float32 stack.

stacklab: :func:`stacklab.engine.map_frames` with a kernel that sums whole blocks of frames at
once. Baseline / reference: a plain Python loop calling ``frame.sum()`` once per frame. Accuracy:
largest absolute difference from float64 sums computed in one vectorized call.

This benchmark needs no reference package; ``REFERENCE_CODE`` is the same Python loop, so
``--reference-venv`` with any venv that has NumPy exercises the subprocess path.
"""

from __future__ import annotations

import numpy as np

NAME = "engine_sum"
REFERENCE_PACKAGE = None

N_FRAMES = 2000
FRAME_SHAPE = (128, 128)


def make_data(seed: int) -> dict[str, np.ndarray]:
    """Return a float32 stack ``(2000, 128, 128)`` and its float64 per-frame sums ``(2000,)``."""
    rng = np.random.default_rng(seed)
    stack = rng.standard_normal((N_FRAMES, *FRAME_SHAPE), dtype=np.float32)
    truth = stack.sum(axis=(1, 2), dtype=np.float64)
    return {"stack": stack, "truth": truth}


def _sum_kernel(block: np.ndarray) -> np.ndarray:
    return block.sum(axis=(1, 2), dtype=np.float64)


def _errors(sums: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {"max_abs_err": float(np.max(np.abs(sums - truth))), "n_frames": float(sums.size)}


def run_stacklab(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-frame sums with the engine; returns the error against the vectorized truth."""
    from stacklab import engine

    sums = engine.map_frames(_sum_kernel, data["stack"], chunk=256, progress=False)
    return _errors(sums, data["truth"])


def baseline(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-frame sums in a Python loop (what the engine replaces)."""
    stack = data["stack"]
    sums = np.empty(stack.shape[0])
    for i in range(stack.shape[0]):
        sums[i] = stack[i].sum(dtype=np.float64)
    return _errors(sums, data["truth"])


REFERENCE_CODE = """
import numpy as np


def run(data):
    stack = data["stack"]
    sums = np.empty(stack.shape[0])
    for i in range(stack.shape[0]):
        sums[i] = stack[i].sum(dtype=np.float64)
    error = float(np.max(np.abs(sums - data["truth"])))
    return {"max_abs_err": error, "n_frames": float(sums.size)}
"""
