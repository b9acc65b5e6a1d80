"""Numerical kernels shared by two or more stacklab domains.

Every function works on NumPy or CuPy arrays (the array module is taken from the inputs, results
stay on the input's device), is vectorized over leading frame/batch axes, validates its arguments
and never modifies its inputs. Coordinates are ``(row, col)`` in pixels, pixel centres at integers.

- :mod:`~stacklab.core.peaks`: sub-pixel extrema (parabola, 2-D quadratic).
- :mod:`~stacklab.core.profiles`: radial profiles and binned means.
- :mod:`~stacklab.core.binning`: integer binning of frames.
- :mod:`~stacklab.core.shifts`: Fourier and bilinear sub-pixel shifts.
- :mod:`~stacklab.core.masks`: repair of masked pixels.
- :mod:`~stacklab.core.disks`: radius and sub-pixel centres of bright-field disks in
  diffraction patterns (4D-STEM, ptychography).
"""

from __future__ import annotations

from .binning import bin_frames
from .disks import disk_centres, disk_radius
from .masks import fill_masked
from .peaks import argmax_parabolic, parabolic_vertex, quadratic_peak_2d
from .profiles import bin_mean, radial_profile
from .shifts import bilinear_shift, fourier_shift

__all__ = [
    "argmax_parabolic",
    "bilinear_shift",
    "bin_frames",
    "bin_mean",
    "disk_centres",
    "disk_radius",
    "fill_masked",
    "fourier_shift",
    "parabolic_vertex",
    "quadratic_peak_2d",
    "radial_profile",
]
