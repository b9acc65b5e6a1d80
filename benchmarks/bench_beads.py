"""Benchmark: xyz of 1000 simulated 64 x 64 bead frames, stacklab versus magtrack.

Data (:func:`stacklab.beads.simulate`): 100 nm pixels, 1.5 um polystyrene beads in water, bead
centres uniform within +-2 px of the frame centre, z uniform in +-4.9 um, noise-free float32. The
z look-up tables of both sides come from the same simulated calibration z-scan (101 planes,
-5 um to +5 um in 100 nm steps, bead at the frame centre):

* stacklab: :func:`stacklab.beads.make_zlut` (made outside the timed region; its arrays are in the
  data), then :func:`stacklab.beads.track` - centre of mass, quadrant interpolation, radial
  profile by angular interpolation, spline-interpolated z lookup.
* magtrack: ``stack_to_xyzp(stack, zlut)`` on the same frames in its frames-last layout
  ``(64, 64, 1000)`` (the transposed copy is made in ``make_data``, outside the timed region),
  with its Z-LUT layout ``(1 + 32, 101)``: row 0 the z values, then the radial profiles of the
  calibration frames about the bead centre, 1 px bins as magtrack's ``radial_profile`` makes them.

Accuracy: RMS and largest xy error (px), RMS z error over the frames with a finite z (nm), and the
fraction of frames whose z is NaN (magtrack leaves the planes near both ends of its table NaN).
"""

from __future__ import annotations

import numpy as np

NAME = "beads_xyz"
REFERENCE_PACKAGE = "magtrack"

N_FRAMES = 1000
SIZE = 64
Z_STEP = 100.0
Z_HALF = 5000.0

baseline = None


def make_data(seed: int) -> dict[str, np.ndarray]:
    """Frames ``(1000, 64, 64)`` (and frames-last copy), truth, both sides' look-up tables."""
    from stacklab.beads import make_zlut, simulate, simulate_zscan
    from stacklab.core.profiles import radial_profile

    sim = simulate(N_FRAMES, size=SIZE, z_range=(-Z_HALF + 100.0, Z_HALF - 100.0), seed=seed)
    z_lut = np.arange(-Z_HALF, Z_HALF + Z_STEP / 2, Z_STEP)
    scan = simulate_zscan(z_lut, size=SIZE)
    lut = make_zlut(scan.images, z_lut)
    centre = np.array([(SIZE - 1) / 2.0, (SIZE - 1) / 2.0])
    mt_prof = radial_profile(
        scan.images.astype(np.float64), centre, n_bins=SIZE // 2, bin_width=1.0, rounding="nearest"
    )
    return {
        "stack": sim.images,
        "stack_frames_last": np.ascontiguousarray(np.transpose(sim.images, (1, 2, 0))),
        "truth_x": sim.x,
        "truth_y": sim.y,
        "truth_z": sim.z,
        "zlut_z": lut.z,
        "zlut_profiles": lut.profiles,
        "zlut_bin_width": np.asarray(lut.bin_width),
        "zlut_magtrack": np.vstack([z_lut[None, :], mt_prof.T]),
    }


def _accuracy(x, y, z, data) -> dict[str, float]:
    exy = np.concatenate([x - data["truth_x"], y - data["truth_y"]])
    ez = z - data["truth_z"]
    finite = np.isfinite(ez)
    return {
        "xy_rms_px": float(np.sqrt(np.nanmean(exy**2))),
        "xy_max_px": float(np.nanmax(np.abs(exy))),
        "z_rms_nm": float(np.sqrt(np.mean(ez[finite] ** 2))) if finite.any() else float("nan"),
        "z_nan_fraction": float(1.0 - finite.mean()),
        "n_frames": float(x.size),
    }


def run_stacklab(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Full xyz pipeline of :func:`stacklab.beads.track` with the data's look-up table."""
    from stacklab.beads import ZLUT, track

    lut = ZLUT(
        z=data["zlut_z"], profiles=data["zlut_profiles"], bin_width=float(data["zlut_bin_width"])
    )
    res = track(data["stack"], lut, progress=False)
    return _accuracy(res.x, res.y, res.z, data)


REFERENCE_CODE = """
import numpy as np
import magtrack


def run(data):
    x, y, z, profiles = magtrack.stack_to_xyzp(data["stack_frames_last"], data["zlut_magtrack"])
    exy = np.concatenate([x - data["truth_x"], y - data["truth_y"]])
    ez = z - data["truth_z"]
    finite = np.isfinite(ez)
    return {
        "xy_rms_px": float(np.sqrt(np.nanmean(exy**2))),
        "xy_max_px": float(np.nanmax(np.abs(exy))),
        "z_rms_nm": float(np.sqrt(np.mean(ez[finite] ** 2))) if finite.any() else float("nan"),
        "z_nan_fraction": float(1.0 - finite.mean()),
        "n_frames": float(x.size),
    }
"""
