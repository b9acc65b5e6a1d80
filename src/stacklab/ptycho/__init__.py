"""Ptychography: detector/object coordinate transforms, forward models and reconstructions.

Frames-first conventions: a stack of patterns is ``(n, rows, cols)``, a 4D scan
``(scan_row, scan_col, det_row, det_col)``, coordinates ``(y, x)``. Scan positions are shifts of
the probe window in object pixels. See :mod:`stacklab.compat.ptychography40` for the drop-in API.
"""

from __future__ import annotations

from .forward import (
    diffraction_intensities,
    exit_waves,
    far_field,
    fourier_shift_probe,
    object_patches,
    rolled_object_aggregation,
    rolled_object_probe_product,
    shifted_probes,
    split_shifts,
)
from .geometry import (
    AffineTransform,
    diffraction_to_detector,
    fftshift_coords,
    footprints,
    ifftshift_coords,
    validity_mask,
)
from .matrix import apply_matrix, image_transformation_matrix
from .physics import wavelength
from .prepare import (
    PtychoInput,
    angular_pixel_size,
    aperture_probe,
    prepare_4dstem,
    reconstruct_4dstem,
)
from .reconstruct import (
    METHODS,
    ReconstructionResult,
    align_global_phase,
    phase_rms_error,
    reconstruct,
)
from .simulate import (
    PtychoDataset,
    Recorded4DSTEM,
    illuminated_region,
    make_object,
    make_probe,
    notebook_scene,
    raster_positions,
    record_4dstem,
    simulate_dataset,
)

__all__ = [
    "METHODS",
    "AffineTransform",
    "PtychoDataset",
    "PtychoInput",
    "ReconstructionResult",
    "Recorded4DSTEM",
    "align_global_phase",
    "angular_pixel_size",
    "aperture_probe",
    "apply_matrix",
    "diffraction_intensities",
    "diffraction_to_detector",
    "exit_waves",
    "far_field",
    "fftshift_coords",
    "footprints",
    "fourier_shift_probe",
    "ifftshift_coords",
    "illuminated_region",
    "image_transformation_matrix",
    "make_object",
    "make_probe",
    "notebook_scene",
    "object_patches",
    "phase_rms_error",
    "prepare_4dstem",
    "raster_positions",
    "reconstruct",
    "reconstruct_4dstem",
    "record_4dstem",
    "rolled_object_aggregation",
    "rolled_object_probe_product",
    "shifted_probes",
    "simulate_dataset",
    "split_shifts",
    "validity_mask",
    "wavelength",
]
