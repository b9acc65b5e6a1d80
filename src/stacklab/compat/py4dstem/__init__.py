"""Drop-in replacement for ``py4DSTEM.preprocess`` (the documented API of py4DSTEM 0.14.18).

The functions keep py4DSTEM's names, argument order, defaults and return shapes, and run on
:mod:`stacklab.stem4d` and :mod:`stacklab.core` (NumPy or CuPy arrays; Dask and lazily read
files where the canonical function supports them). The submodules mirror py4DSTEM's layout:
:mod:`~stacklab.compat.py4dstem.darkreference`, :mod:`~stacklab.compat.py4dstem.electroncount`,
:mod:`~stacklab.compat.py4dstem.preprocess`, :mod:`~stacklab.compat.py4dstem.radialbkgrd` and
:mod:`~stacklab.compat.py4dstem.utils`; every public function is also importable from here, as
from ``py4DSTEM.preprocess``.

Axes. py4DSTEM's cubes are ``(Rx, Ry, Qx, Qy)`` with Rx = axis 0 and Qx = axis 2, and in every
2-D array "x" is axis 0 (rows) and "y" axis 1 (columns). stacklab's canonical axes are
``(scan_row, scan_col, det_row, det_col)``: the arrays are laid out identically, only the names
differ (x = row, y = column). Nothing is transposed.

Behaviour that differs from py4DSTEM 0.14.18 on purpose (each function's docstring says how):

* no function modifies its arguments; DataCube functions return a **new**
  :class:`~stacklab.compat.py4dstem.DataCube` (py4DSTEM mutates the cube and returns it);
* integer data are widened instead of wrapping around (binning) or being truncated (shifts,
  median repair), and dark references are true means (py4DSTEM floor-divides);
* where py4DSTEM's result is wrong (non-periodic shifts keeping wrapped content, hot pairs
  missed by ``filter_hot_pixels``, ``edgeBoundary`` ignored by ``filter_2D_maxima``, the
  iterative masking of ``get_1D_polar_background`` that never updates the background,
  under-estimated 'poly' peak intensities) stacklab returns the right answer;
* where the documentation and py4DSTEM's code disagree, the documentation is followed;
* ``verbose``-style printing goes to :mod:`logging`; random frame selections accept ``rng=``
  (default: NumPy's global legacy generator, as py4DSTEM, so ``np.random.seed`` reproduces its
  draws).
"""

from __future__ import annotations

from ._datacube import Calibration, DataCube, as_datacube
from .darkreference import (
    get_background_streaks,
    get_background_streaks_x,
    get_background_streaks_y,
    get_bksbtr_DP,
    get_darkreference,
)
from .electroncount import (
    PointList,
    PointListArray,
    calculate_thresholds,
    counted_datacube_to_pointlistarray,
    counted_pointlistarray_to_datacube,
    electron_count,
    electron_count_GPU,
    torch_bin,
)
from .preprocess import (
    bin_data_diffraction,
    bin_data_mmap,
    bin_data_real,
    datacube_diffraction_shift,
    filter_hot_pixels,
    median_filter_masked_pixels,
    pad_data_diffraction,
    resample_data_diffraction,
    set_scan_shape,
    swap_Qxy,
    swap_RQ,
    swap_Rxy,
    thin_data_real,
)
from .radialbkgrd import get_1D_polar_background, get_2D_polar_background
from .utils import (
    MAXIMA_DTYPE,
    bin2D,
    filter_2D_maxima,
    get_maxima_2D,
    get_shifted_ar,
    linear_interpolation_2D,
    make_Fourier_coords2D,
)

__all__ = [
    "MAXIMA_DTYPE",
    "Calibration",
    "DataCube",
    "PointList",
    "PointListArray",
    "as_datacube",
    "bin2D",
    "bin_data_diffraction",
    "bin_data_mmap",
    "bin_data_real",
    "calculate_thresholds",
    "counted_datacube_to_pointlistarray",
    "counted_pointlistarray_to_datacube",
    "datacube_diffraction_shift",
    "electron_count",
    "electron_count_GPU",
    "filter_2D_maxima",
    "filter_hot_pixels",
    "get_1D_polar_background",
    "get_2D_polar_background",
    "get_background_streaks",
    "get_background_streaks_x",
    "get_background_streaks_y",
    "get_bksbtr_DP",
    "get_darkreference",
    "get_maxima_2D",
    "get_shifted_ar",
    "linear_interpolation_2D",
    "make_Fourier_coords2D",
    "median_filter_masked_pixels",
    "pad_data_diffraction",
    "resample_data_diffraction",
    "set_scan_shape",
    "swap_Qxy",
    "swap_RQ",
    "swap_Rxy",
    "thin_data_real",
    "torch_bin",
]
