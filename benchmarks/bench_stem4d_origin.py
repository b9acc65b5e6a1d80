"""Benchmark: bright-field disk origin of every pattern of a 32 x 32 scan of 96 x 96 patterns.

Data: :func:`stacklab.stem4d.simulate.simulate_descan`, a disk of radius 10 px (0.6 px soft
edge, 2e4 expected counts, Poisson) whose centre follows a plane + quadratic descan plus the
deflections of a phase object, with a ring of Bragg disks (spacing 26 px, 1000 counts each) and a
uniform background of 0.5 counts per pixel; float32. The true disk centre of every pattern is
known.

stacklab: :func:`stacklab.stem4d.find_origin` (``method="com"``: centre of mass iterated within
a circle around each disk, vectorized over the frames of a block; the radius is estimated from
the mean pattern). Reference: py4DSTEM 0.14.18 ``get_origin`` (pattern by pattern: Gaussian
filter and arg-max, then the centre of mass within ``1.2 r`` of it; ``r`` from
``get_probe_size`` of the maximum pattern).

Accuracy: RMS distance (px) between the found and the true disk centres, both sides.
"""

from __future__ import annotations

import numpy as np

NAME = "stem4d_origin"
REFERENCE_PACKAGE = "py4dstem"

SIM = dict(
    disk_radius=10.0,
    disk_counts=2e4,
    background=0.5,
    bragg_spacing=26.0,
    bragg_counts=1000.0,
    dtype=np.float32,
)


def make_data(seed: int) -> dict[str, np.ndarray]:
    """Float32 cube (32, 32, 96, 96) and the true origins (32, 32, 2) as (row, col)."""
    from stacklab.stem4d.simulate import simulate_descan

    cube, truth = simulate_descan((32, 32), (96, 96), seed=seed, **SIM)
    return {"cube": cube, "origins": truth.origins}


def _rms(found: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    d = np.hypot(*(found - truth).reshape(-1, 2).T)
    return {"origin_rms_px": float(np.sqrt(np.mean(d**2)))}


def run_stacklab(data: dict[str, np.ndarray]) -> dict[str, float]:
    """find_origin (windowed centre of mass) on the whole cube."""
    from stacklab.stem4d import find_origin

    return _rms(find_origin(data["cube"], progress=False), data["origins"])


REFERENCE_CODE = """
import numpy as np
import py4DSTEM
from py4DSTEM.process.calibration.origin import get_origin


def run(data):
    dc = py4DSTEM.DataCube(data=data["cube"])
    qx0, qy0, _ = get_origin(dc)  # qx: detector row, qy: column
    found = np.stack([qx0, qy0], axis=-1)
    d = np.hypot(*(found - data["origins"]).reshape(-1, 2).T)
    return {"origin_rms_px": float(np.sqrt(np.mean(d ** 2)))}
"""

baseline = None
