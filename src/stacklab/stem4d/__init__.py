"""4D-STEM preprocessing: clean, count, bin and reshape datacubes; find diffraction peaks.

A 4D-STEM scan is an array ``(scan_row, scan_col, det_row, det_col)``: NumPy or CuPy in memory,
Dask, or read lazily from a file (:func:`open_datacube`). Every function takes such an array or
a :class:`DataCube` (array + :class:`Calibration`), never modifies its input, and works block of
frames by block of frames through :mod:`stacklab.engine`, so the same call runs in memory, on a
file larger than memory, or on a ``dask.distributed`` cluster.

Electron counting
    :func:`count_electrons`, :func:`estimate_thresholds`, :func:`count_block`,
    :class:`ElectronEvents` (sparse events: to/from dense, HDF5), :class:`CountingThresholds`.
Dark references
    :func:`dark_reference`, :func:`streak_background`, :func:`edge_dark_reference`,
    :func:`subtract_dark`.
Bad pixels
    :func:`find_hot_pixels`, :func:`repair_pixels`, :func:`filter_hot_pixels`,
    :func:`local_median`.
Transforms
    :func:`bin_diffraction`, :func:`bin_scan`, :func:`thin_scan`, :func:`shift_patterns`,
    :func:`resample_diffraction`, :func:`pad_diffraction`, :func:`set_scan_shape`.
Reductions
    :func:`mean_pattern`, :func:`max_pattern`, :func:`sum_pattern`, :func:`virtual_image`.
Origin, descan and DPC
    :func:`find_origin`, :func:`estimate_probe_radius`, :func:`fit_origin` (:class:`OriginFit`),
    :func:`center_patterns`, :func:`com_images`, :func:`dpc_rotation` (:class:`DPCRotation`),
    :func:`dpc_phase`.
Backgrounds and peaks
    :func:`polar_background_1d`, :func:`polar_background_2d`, :func:`polar_transform`,
    :func:`find_maxima_2d`, :func:`filter_maxima`, :func:`upsampled_peak`.
Files
    :func:`open_datacube`, :func:`read_emd`, :func:`write_emd`, :func:`read_mib`,
    :func:`read_empad`, :func:`read_arina`.
Simulation
    :mod:`stacklab.stem4d.simulate` (planted electrons, drifting disks, spots) with ground truth.
"""

from __future__ import annotations

from .background import (
    PolarBackground,
    elliptical_radius,
    polar_background_1d,
    polar_background_2d,
    polar_transform,
    subtract_polar_background,
)
from .counting import (
    CountingThresholds,
    ElectronEvents,
    count_block,
    count_electrons,
    estimate_thresholds,
    robust_noise,
    sample_frames,
)
from .dark import dark_reference, edge_dark_reference, streak_background, subtract_dark
from .datacube import Calibration, DataCube, as_array, set_scan_shape
from .hotpix import filter_hot_pixels, find_hot_pixels, local_median, repair_pixels
from .maxima import Maxima, filter_maxima, find_maxima_2d, upsampled_peak
from .origin import (
    DPCRotation,
    OriginFit,
    center_patterns,
    com_images,
    dpc_phase,
    dpc_rotation,
    estimate_probe_radius,
    find_origin,
    fit_origin,
)
from .readers import (
    open_datacube,
    read_arina,
    read_emd,
    read_empad,
    read_mib,
    write_emd,
)
from .reduce import max_pattern, mean_pattern, min_pattern, sum_pattern, virtual_image
from .transforms import (
    bin_diffraction,
    bin_scan,
    pad_diffraction,
    pad_widths,
    resample_diffraction,
    shift_patterns,
    thin_scan,
)

__all__ = [
    "Calibration",
    "CountingThresholds",
    "DPCRotation",
    "DataCube",
    "ElectronEvents",
    "Maxima",
    "OriginFit",
    "PolarBackground",
    "as_array",
    "bin_diffraction",
    "bin_scan",
    "center_patterns",
    "com_images",
    "count_block",
    "count_electrons",
    "dark_reference",
    "dpc_phase",
    "dpc_rotation",
    "edge_dark_reference",
    "elliptical_radius",
    "estimate_probe_radius",
    "estimate_thresholds",
    "filter_hot_pixels",
    "filter_maxima",
    "find_hot_pixels",
    "find_maxima_2d",
    "find_origin",
    "fit_origin",
    "local_median",
    "max_pattern",
    "mean_pattern",
    "min_pattern",
    "open_datacube",
    "pad_diffraction",
    "pad_widths",
    "polar_background_1d",
    "polar_background_2d",
    "polar_transform",
    "read_arina",
    "read_emd",
    "read_empad",
    "read_mib",
    "repair_pixels",
    "resample_diffraction",
    "robust_noise",
    "sample_frames",
    "set_scan_shape",
    "shift_patterns",
    "streak_background",
    "subtract_dark",
    "subtract_polar_background",
    "sum_pattern",
    "thin_scan",
    "upsampled_peak",
    "virtual_image",
    "write_emd",
]
