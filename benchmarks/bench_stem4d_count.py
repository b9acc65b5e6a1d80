"""Benchmark: electron counting of a 32 x 32 x 128 x 128 uint16 counting-mode scan.

Data (:func:`stacklab.stem4d.simulate.simulate_counting`, seed-controlled): about 55 planted
electrons per frame (Landau-like deposits, Gaussian charge clouds, read noise 2.5 ADU on a
float dark reference), 0.5 x-rays per frame, 12 hot pixels and 4 adjacent hot pairs.

* stacklab: :func:`stacklab.stem4d.count_electrons` (threshold estimation from 40 frames, hot
  pixels detected and masked, x-rays rejected, numba kernel over blocks of frames).
* reference: py4DSTEM 0.14.18's ``electron_count`` cannot run (a float dark reference raises, its
  point-list output uses an old API), so its steps are emulated with its own helpers:
  ``calculate_thresholds`` (40 frames, N_sigma 4 / 10, integer dark as it requires) and, per
  frame, dark subtraction, the two thresholds and ``get_maxima_2D(subpixel='pixel')``.

Accuracy (same code on both sides): recall and precision against the planted electrons (a
detection in the 3 x 3 pixels around the pixel of a planted impact; each impact counts once).
"""

from __future__ import annotations

import numpy as np

NAME = "stem4d_count"
REFERENCE_PACKAGE = "py4dstem"

SIM = dict(
    scan_shape=(32, 32),
    det_shape=(128, 128),
    electrons_per_frame=60.0,
    xrays_per_frame=0.5,
    n_hot=12,
    n_hot_pairs=4,
)

# Impacts are >= 3 px apart, so their 3 x 3 neighbourhoods never overlap: a lookup table with
# the (1-based) index of the impact owning each (frame, pixel), built in make_data, scores the
# detections with one gather.
SCORE_SRC = """
def score(frame, rows, cols, lut, n_true, det_shape=(128, 128)):
    import numpy as np
    h, w = det_shape
    key = (np.asarray(frame, np.int64) * h + np.asarray(rows, np.int64)) * w
    key = key + np.asarray(cols, np.int64)
    owner = lut[key]
    matched = int(np.count_nonzero(np.bincount(owner, minlength=n_true + 1)[1:]))
    n_det = max(len(key), 1)
    return {"recall": matched / n_true, "precision": matched / n_det, "n_events": float(len(key))}
"""
_ns: dict = {}
exec(SCORE_SRC, _ns)
score = _ns["score"]


def make_data(seed: int) -> dict[str, np.ndarray]:
    """The simulated cube, its float dark reference and the scoring table of the impacts."""
    from stacklab.stem4d.simulate import simulate_counting

    cube, truth = simulate_counting(seed=seed, **SIM)
    ev = truth.electrons
    h, w = SIM["det_shape"]
    d = np.arange(-1, 2)
    r = np.broadcast_to(ev.rows[:, None, None] + d[:, None], (ev.n_events, 3, 3)).reshape(-1, 9)
    c = np.broadcast_to(ev.cols[:, None, None] + d[None, :], (ev.n_events, 3, 3)).reshape(-1, 9)
    frame = np.repeat(ev.frame_index()[:, None], 9, axis=1)
    ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    lut = np.zeros(cube.size, dtype=np.uint32)  # 0: no impact nearby
    lut[((frame * h + r) * w + c)[ok]] = np.repeat(np.arange(1, ev.n_events + 1)[:, None], 9, 1)[ok]
    return {"cube": cube, "dark": truth.dark, "lut": lut, "n_true": np.array(ev.n_events)}


def run_stacklab(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Count with stacklab; recall/precision against the planted electrons."""
    from stacklab.stem4d import count_electrons

    ev = count_electrons(data["cube"], data["dark"], progress=False)
    return score(ev.frame_index(), ev.rows, ev.cols, data["lut"], int(data["n_true"]))


REFERENCE_CODE = (
    SCORE_SRC
    + """
import numpy as np
from py4DSTEM.preprocess.electroncount import calculate_thresholds
from py4DSTEM.preprocess.utils import get_maxima_2D


def run(data):
    cube = data["cube"]
    dark = np.rint(data["dark"]).astype(np.int16)  # calculate_thresholds needs an integer dark
    np.random.seed(0)
    thresh_bkgrnd, thresh_xray = calculate_thresholds(
        cube, dark, Nsamples=40, thresh_bkgrnd_Nsigma=4, thresh_xray_Nsigma=10
    )
    frames, rows, cols = [], [], []
    n_col = cube.shape[1]
    for rx in range(cube.shape[0]):
        for ry in range(cube.shape[1]):
            work = cube[rx, ry].astype(np.int16) - dark
            events = (work > thresh_bkgrnd) & (thresh_xray > work)
            maxima = get_maxima_2D(work * events, subpixel="pixel", maxNumPeaks=None)
            frames.append(np.full(len(maxima), rx * n_col + ry))
            rows.append(maxima["x"].astype(np.int64))
            cols.append(maxima["y"].astype(np.int64))
    return score(np.concatenate(frames), np.concatenate(rows), np.concatenate(cols),
                 data["lut"], int(data["n_true"]))
"""
)

baseline = None
