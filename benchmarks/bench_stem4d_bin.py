"""Benchmark: detector binning by 2 of a 32 x 32 x 128 x 128 uint16 scan.

Same cube as ``stem4d_count``. stacklab: :func:`stacklab.stem4d.bin_diffraction` (sums widened to
64 bit, never wrapping). Reference: py4DSTEM 0.14.18 ``bin_data_diffraction`` (a 6-D reshape and
sum, cast back to uint16, which wraps for sums above 65535; this cube's sums stay below).

Accuracy: the largest absolute error of 16 sampled binned patterns and the relative error of the
total, against sums computed in ``make_data``.
"""

from __future__ import annotations

import numpy as np

NAME = "stem4d_bin"
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
    idx = data["sample_idx"]
    flat = out.reshape(-1, *out.shape[-2:])
    err = np.abs(flat[idx].astype(np.int64) - data["sample_expected"]).max()
    total = float(flat.sum(dtype=np.float64))
    return {"max_abs_err_sampled": float(err),
            "total_rel_err": abs(total - float(data["total"])) / float(data["total"])}
"""
_ns: dict = {}
exec(ERR_SRC, _ns)
errors = _ns["errors"]


def make_data(seed: int) -> dict[str, np.ndarray]:
    """The cube plus exact binned sums of 16 sampled patterns and the total."""
    from stacklab.stem4d.simulate import simulate_counting

    cube, _ = simulate_counting(seed=seed, **SIM)
    flat = cube.reshape(-1, 128, 128)
    idx = np.random.default_rng(seed).choice(flat.shape[0], 16, replace=False)
    expected = flat[idx].astype(np.int64).reshape(16, 64, 2, 64, 2).sum(axis=(2, 4))
    return {
        "cube": cube,
        "sample_idx": idx,
        "sample_expected": expected,
        "total": np.array(float(cube.sum(dtype=np.float64))),
    }


def run_stacklab(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Bin with stacklab."""
    from stacklab.stem4d import bin_diffraction

    return errors(bin_diffraction(data["cube"], 2, progress=False), data)


REFERENCE_CODE = (
    ERR_SRC
    + """
import py4DSTEM
from py4DSTEM.preprocess.preprocess import bin_data_diffraction


def run(data):
    dc = py4DSTEM.DataCube(data=data["cube"])
    out = bin_data_diffraction(dc, 2)
    return errors(out.data, data)
"""
)

baseline = None
