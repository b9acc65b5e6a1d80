"""Benchmark: hot-pixel detection and repair of a 32 x 32 x 128 x 128 uint16 scan.

Same cube as ``stem4d_count`` (12 isolated hot pixels and 4 adjacent hot pairs, about 800 ADU
above the dark level in every frame). stacklab: :func:`stacklab.stem4d.filter_hot_pixels`
(detection against the median of the 8 neighbours in the mean pattern of all 1024 frames, as
py4DSTEM; median repair of every frame from unmasked neighbours). For an in-memory integer cube
this is one pass that copies the cube into the output while summing it, then an in-place repair
of the bad pixels only. ``N_FRAMES = 128`` would detect from 128 evenly spaced frames instead
(same pixels here, hot pixels being a property of the detector).

Reference: py4DSTEM 0.14.18 ``filter_hot_pixels(thresh=200, ind_compare=2)``
(order-statistic test, then a Python loop over frames x hot pixels); ``ind_compare=2`` so that it
does the same job, finding the adjacent pairs as well (its default 1 misses them and then loops
over 12 instead of 20 pixels).

Accuracy: fraction of the planted hot pixels found, number of false detections, and the mean
excess of the repaired pixels over their neighbours in the mean pattern (ADU, ideally about 0).
"""

from __future__ import annotations

import numpy as np

NAME = "stem4d_hotpix"
REFERENCE_PACKAGE = "py4dstem"

#: Frames summarized for the detection (None: all 1024, as py4DSTEM does; an int: evenly spaced).
N_FRAMES = None

SIM = dict(
    scan_shape=(32, 32),
    det_shape=(128, 128),
    electrons_per_frame=60.0,
    xrays_per_frame=0.5,
    n_hot=12,
    n_hot_pairs=4,
)

ERR_SRC = """
def errors(repaired, mask, data):
    import numpy as np
    truth = data["hot_mask"]
    h, w = truth.shape
    rr, cc = np.nonzero(truth)
    d = np.arange(-1, 2)
    r = np.clip(rr[:, None, None] + d[:, None], 0, h - 1)
    c = np.clip(cc[:, None, None] + d[None, :], 0, w - 1)
    flat = repaired.reshape(-1, h * w)[data["sample_idx"]]
    win = flat[:, (r * w + c).reshape(-1)].reshape(len(data["sample_idx"]), len(rr), 9)
    win = win.astype(np.float64).mean(axis=0)  # (hot pixel, 3x3) means over the sample
    excess = float(np.mean(win[:, 4] - np.median(np.delete(win, 4, axis=1), axis=1)))
    return {"hot_found": float((mask & truth).sum() / truth.sum()),
            "false_hot": float((mask & ~truth).sum()),
            "repaired_excess_adu": excess}
"""
_ns: dict = {}
exec(ERR_SRC, _ns)
errors = _ns["errors"]


def make_data(seed: int) -> dict[str, np.ndarray]:
    """The cube, the planted hot-pixel mask and 64 sampled frame indices for scoring."""
    from stacklab.stem4d.simulate import simulate_counting

    cube, truth = simulate_counting(seed=seed, **SIM)
    idx = np.random.default_rng(seed).choice(32 * 32, 64, replace=False)
    return {"cube": cube, "hot_mask": truth.hot_mask, "sample_idx": idx}


def run_stacklab(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Detect and repair with stacklab."""
    from stacklab.stem4d import filter_hot_pixels

    repaired, mask = filter_hot_pixels(data["cube"], n_frames=N_FRAMES, progress=False)
    return errors(repaired, mask, data)


REFERENCE_CODE = (
    ERR_SRC
    + """
import py4DSTEM
from py4DSTEM.preprocess.preprocess import filter_hot_pixels

IND_COMPARE = 2  # compare with the 3rd brightest neighbour: finds the adjacent pairs too


def run(data):
    dc = py4DSTEM.DataCube(data=data["cube"])
    out, mask = filter_hot_pixels(dc, 200.0, ind_compare=IND_COMPARE, return_mask=True)
    return errors(out.data, mask, data)
"""
)

baseline = None
