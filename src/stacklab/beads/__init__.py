"""Magnetic-tweezers bead tracking: x, y, z of beads from stacks of frames.

Frames-first canonical API: a stack is ``(n_frames, rows, cols)``; ``x`` is the column and ``y``
the row of the bead centre in pixels (pixel centres at integer indices); ``z`` is in the look-up
table's unit (nm). NumPy, CuPy, Dask and lazy HDF5/TIFF/Zarr stacks are accepted; integer images
are widened to float32; inputs are never modified.

Typical use::

    from stacklab import beads

    lut = beads.make_zlut(zscan, z_nm)                 # calibration z-scan, one bead
    res = beads.track(stack, lut)                      # res.x, res.y, res.z, res.quality
    table = beads.track_movie(movie, zlut=lut)         # frame, bead, x, y, z, quality
    table = beads.subtract_reference(table, [0, 3])    # minus the drift of surface beads 0, 3
    forces = beads.forces_from_table(table, pixel_size_nm=100, frame_rate_hz=400,
                                     z_surface_nm=-2000, bead_radius_nm=1400)  # pN per bead
    beads.save_table(table, "xyz.csv")

Pieces:

* :func:`simulate`, :func:`simulate_zscan`, :func:`simulate_movie`: bead images with ground
  truth (thin-sphere angular-spectrum model, pixel MTF, Poisson noise).
* :func:`center_of_mass`, :func:`auto_conv`, :func:`qi` (true quadrant interpolation),
  :func:`locate`: xy estimators.
* :func:`radial_profiles`, :func:`fft_profiles`: z signatures.
* :class:`ZLUT`, :func:`make_zlut`, :func:`lookup_z`: z look-up with profile interpolation
  between planes and no dead zones.
* :func:`track` / :class:`TrackResult`: the xyz pipeline for single-bead stacks.
* :func:`track_movie`, :func:`find_beads`, :func:`rois_to_boxes`, :func:`save_table`,
  :func:`load_rois`: whole movies with several beads (``follow=True``: ROIs follow drifting
  beads).
* :func:`subtract_reference`, :func:`reference_drift`: drift correction with reference beads
  stuck to the surface.
* :func:`fit_force_spectrum` / :class:`ForceFit`, :func:`force_from_variance`,
  :func:`forces_from_table`, :func:`simulate_fluctuations`: the force on a tethered bead from
  its lateral fluctuations (power spectrum corrected for camera blur and aliasing).
* :func:`wlc_force`, :func:`wlc_extension`, :func:`fit_wlc` / :class:`WLCFit`,
  :func:`fit_wlc_table`: worm-like-chain force-extension curves (Marko-Siggia, Bouchiat,
  extensible) fitted to forces measured at several magnet positions.

Command line: ``stacklab beads zlut|track|force|wlc|simulate`` (:mod:`stacklab.beads.cli`).
"""

from __future__ import annotations

from .centers import auto_conv, center_of_mass, locate, qi
from .force import (
    ForceFit,
    fit_force_spectrum,
    force_from_variance,
    forces_from_table,
    simulate_fluctuations,
)
from .movie import find_beads, load_rois, load_table, rois_to_boxes, save_table, track_movie
from .profiles import fft_profiles, profile_radii, radial_profiles
from .reference import reference_drift, subtract_reference
from .simulate import BeadImages, simulate, simulate_movie, simulate_zscan
from .track import TrackResult, track
from .wlc import WLCFit, fit_wlc, fit_wlc_table, wlc_extension, wlc_force
from .zlut import ZLUT, lookup_z, make_zlut

__all__ = [
    "ZLUT",
    "BeadImages",
    "ForceFit",
    "TrackResult",
    "WLCFit",
    "auto_conv",
    "center_of_mass",
    "fft_profiles",
    "find_beads",
    "fit_force_spectrum",
    "fit_wlc",
    "fit_wlc_table",
    "force_from_variance",
    "forces_from_table",
    "load_rois",
    "load_table",
    "locate",
    "lookup_z",
    "make_zlut",
    "profile_radii",
    "qi",
    "radial_profiles",
    "reference_drift",
    "rois_to_boxes",
    "save_table",
    "simulate",
    "simulate_fluctuations",
    "simulate_movie",
    "simulate_zscan",
    "subtract_reference",
    "track",
    "track_movie",
    "wlc_extension",
    "wlc_force",
]
