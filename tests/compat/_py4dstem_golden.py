"""Loading the py4DSTEM 0.14.18 golden files (tests/golden/py4dstem, see its README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "py4dstem"


def cases(prefix: str) -> list[str]:
    """Case names (file stems) starting with ``prefix``, sorted; fails when there are none."""
    names = sorted(p.stem for p in GOLDEN.glob(f"{prefix}*.npz"))
    assert names, f"no golden files {prefix}* in {GOLDEN}"
    return names


def load(name: str) -> dict[str, Any]:
    """All arrays of one golden file; 0-d entries become Python scalars, ``'None'`` -> None."""
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as f:
        out: dict[str, Any] = {}
        for key in f.files:
            value = f[key]
            if value.ndim == 0:
                value = value.item()
                if value == "None":
                    value = None
            out[key] = value
    return out


def params(d: dict[str, Any], *skip: str) -> dict[str, Any]:
    """The explicitly passed parameters (``in_*`` minus arrays named in ``skip``) as kwargs."""
    kw = {}
    for key, value in d.items():
        if not key.startswith("in_") or key[3:] in skip:
            continue
        if isinstance(value, np.ndarray):
            value = value.tolist()
        kw[key[3:]] = value
    return kw


def bilinear_shift_reference(frame: np.ndarray, xshift: float, yshift: float) -> np.ndarray:
    """Non-periodic bilinear shift by direct evaluation (independent of stacklab).

    ``out[i, j]`` is the bilinear interpolation of ``frame`` at ``(i - xshift, j - yshift)`` when
    that point lies inside ``[0, Nx - 1] x [0, Ny - 1]``, else 0.
    """
    from scipy.ndimage import map_coordinates

    n, m = frame.shape
    ii, jj = np.mgrid[:n, :m].astype(np.float64)
    src_i, src_j = ii - xshift, jj - yshift
    inside = (src_i >= 0) & (src_i <= n - 1) & (src_j >= 0) & (src_j <= m - 1)
    vals = map_coordinates(frame.astype(np.float64), [src_i, src_j], order=1, mode="nearest")
    return np.where(inside, vals, 0.0)
