"""Benchmark: Fourier shift of every pattern of a 32 x 32 x 128 x 128 scan by its own shift.

Same cube as ``stem4d_count``, as float32 (py4DSTEM writes the shifted float64 frames back into
its input array, so both sides get float data). Shifts: U(-3, 3) px per scan position.
stacklab: :func:`stacklab.stem4d.shift_patterns` (batched real FFTs, float32 stays float32).
Reference: py4DSTEM 0.14.18 ``datacube_diffraction_shift(periodic=True, bilinear=False)``
(``get_shifted_ar`` frame by frame, complex128 FFTs).

Accuracy: largest error of 16 sampled patterns relative to their maximum, against float64 shifts
computed in ``make_data``: ``max_rel_err_sampled`` against the band-limited shift with the
Nyquist terms split symmetrically (stacklab's convention, separable and mirror-symmetric: the
(Nyquist, Nyquist) corner term gets ``cos(pi dy) cos(pi dx)``), ``max_rel_err_complex_real``
against the real part of ``ifft2(fft2(f) * ramp)`` (py4DSTEM's convention, ``cos(pi (dy + dx))``
at that corner). Both detector axes are even, so the two references differ (by about 3e-5 of
the maximum on this smooth data, 1e-3 on noisy data); each side is exact against its own
convention only.
"""

from __future__ import annotations

import numpy as np

NAME = "stem4d_shift"
REFERENCE_PACKAGE = "py4dstem"

SIM = dict(
    scan_shape=(32, 32),
    det_shape=(128, 128),
    electrons_per_frame=60.0,
    xrays_per_frame=0.5,
    n_hot=12,
    n_hot_pairs=4,
)

ERR_SRC = """
def errors(out, data):
    import numpy as np
    flat = out.reshape(-1, *out.shape[-2:])[data["sample_idx"]].astype(np.float64)
    ref = data["sample_expected"]
    cplx = data["sample_complex_real"]
    return {"max_rel_err_sampled": float(np.abs(flat - ref).max() / np.abs(ref).max()),
            "max_rel_err_complex_real": float(np.abs(flat - cplx).max() / np.abs(cplx).max())}
"""
_ns: dict = {}
exec(ERR_SRC, _ns)
errors = _ns["errors"]


def make_data(seed: int) -> dict[str, np.ndarray]:
    """Float32 cube, shifts (32, 32, 2) and exact shifts of 16 sampled patterns."""
    from stacklab.stem4d.simulate import simulate_counting

    cube, _ = simulate_counting(seed=seed, **SIM)
    cube = cube.astype(np.float32)
    rng = np.random.default_rng(seed)
    shifts = rng.uniform(-3, 3, (32, 32, 2))
    idx = rng.choice(32 * 32, 16, replace=False)
    flat = cube.reshape(-1, 128, 128)[idx].astype(np.float64)
    s = shifts.reshape(-1, 2)[idx]
    k = np.fft.fftfreq(128)
    ramp = np.exp(
        -2j
        * np.pi
        * (k[None, :, None] * s[:, 0, None, None] + k[None, None, :] * s[:, 1, None, None])
    )
    complex_real = np.real(np.fft.ifft2(np.fft.fft2(flat) * ramp))
    # symmetric Nyquist split: the corner term gets cos(pi dy) cos(pi dx) instead of
    # cos(pi (dy + dx)), i.e. sin(pi dy) sin(pi dx) C / (H W) (-1)^(i + j) more
    cb = (-1.0) ** np.add.outer(np.arange(128), np.arange(128))
    corner = (flat * cb).sum(axis=(-2, -1))
    amp = corner * np.sin(np.pi * s[:, 0]) * np.sin(np.pi * s[:, 1]) / (128 * 128)
    expected = complex_real + amp[:, None, None] * cb
    return {
        "cube": cube,
        "shifts": shifts,
        "sample_idx": idx,
        "sample_expected": expected,
        "sample_complex_real": complex_real,
    }


def run_stacklab(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Shift every pattern with stacklab."""
    from stacklab.stem4d import shift_patterns

    return errors(shift_patterns(data["cube"], data["shifts"], progress=False), data)


REFERENCE_CODE = (
    ERR_SRC
    + """
import py4DSTEM
from py4DSTEM.preprocess.preprocess import datacube_diffraction_shift


def run(data):
    dc = py4DSTEM.DataCube(data=data["cube"])
    s = data["shifts"]
    out = datacube_diffraction_shift(dc, s[..., 0], s[..., 1], periodic=True, bilinear=False)
    return errors(out.data, data)
"""
)

baseline = None
