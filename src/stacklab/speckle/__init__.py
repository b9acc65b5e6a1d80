"""X-ray near-field speckle tracking: lens phase, pixel map and reference image from a scan.

Layouts are speckle_tracking's: a stack is ``(N, M, L)`` = (frames, slow-scan rows ``ss``,
fast-scan columns ``fs``); a pixel map is ``(2, M, L)`` with ``[0]`` the ss and ``[1]`` the fs
object coordinate (object pixels); translations ``dij_n`` are ``(N, 2)`` = [ss, fs] in object
pixels; a region of interest is ``[ss0, ss1, fs0, fs1]``. Physics parameters are in metres and
radians. The forward model is::

    data[n, i, j] = W[i, j] * O(u[0, i, j] - dij_n[n, 0] + n0, u[1, i, j] - dij_n[n, 1] + m0)

Typical use::

    from stacklab import speckle

    scan = speckle.read_cxi("scan.cxi")
    res = speckle.run(scan.data, scan.translations, scan.basis, scan.x_pixel_size,
                      scan.y_pixel_size, scan.distance, scan.wavelength)
    res.phase, res.pixel_map, res.reference, res.errors
    speckle.write_results("scan.cxi", res)              # atomically, under /speckle_tracking

Pieces (NumPy or CuPy arrays; numba kernels on the CPU when installed):

* :func:`simulate` / :class:`SpeckleScan`: scans with a known lens aberration, pixel map,
  defocus, astigmatism, whitefield, bad pixels and Poisson noise.
* :func:`make_mask`, :func:`make_whitefield`, :func:`update_whitefield`, :func:`guess_roi`.
* :func:`fit_thon_rings`, :func:`fit_defocus_registration`, :func:`fit_defocus`
  (:class:`DefocusFit`).
* :func:`generate_pixel_map`, :func:`make_pixel_translations`, :func:`estimate_pixel_map`
  (from frame pairs), :func:`make_reference` (:class:`Reference`), :func:`update_pixel_map`
  (:class:`PixelMapUpdate`), :func:`update_translations`, :func:`regularize_pixel_map`,
  :func:`calc_error` (:class:`SpeckleError`), :func:`forward_model`.
* :func:`integrate_pixel_map` (:class:`PhaseResult`), :func:`integrate_gradient`,
  :func:`remove_terms`.
* :func:`run` / :class:`SpeckleResult`: the whole pipeline with the error per iteration.
* :func:`read_cxi`, :func:`write_cxi`, :func:`write_results`.

Command line: ``stacklab speckle run|simulate`` (:mod:`stacklab.speckle.cli`).
"""

from __future__ import annotations

from .cxi import CXIScan, read_cxi, write_cxi, write_results
from .defocus import DefocusFit, fit_defocus, fit_defocus_registration, fit_thon_rings
from .error import SpeckleError, calc_error, forward_model
from .mask import make_mask
from .pairs import choose_pairs, estimate_pixel_map
from .phase import PhaseResult, integrate_gradient, integrate_pixel_map, remove_terms
from .pipeline import SpeckleResult, run
from .pixel_map import (
    PixelMapUpdate,
    TranslationUpdate,
    generate_pixel_map,
    make_pixel_translations,
    regularize_pixel_map,
    update_pixel_map,
    update_translations,
)
from .reference import Reference, make_reference, object_grid
from .simulate import SpeckleScan, aberration_phase, simulate
from .whitefield import guess_roi, make_whitefield, update_whitefield

__all__ = [
    "CXIScan",
    "DefocusFit",
    "PhaseResult",
    "PixelMapUpdate",
    "Reference",
    "SpeckleError",
    "SpeckleResult",
    "SpeckleScan",
    "TranslationUpdate",
    "aberration_phase",
    "calc_error",
    "choose_pairs",
    "estimate_pixel_map",
    "fit_defocus",
    "fit_defocus_registration",
    "fit_thon_rings",
    "forward_model",
    "generate_pixel_map",
    "guess_roi",
    "integrate_gradient",
    "integrate_pixel_map",
    "make_mask",
    "make_pixel_translations",
    "make_reference",
    "make_whitefield",
    "object_grid",
    "read_cxi",
    "regularize_pixel_map",
    "remove_terms",
    "run",
    "simulate",
    "update_pixel_map",
    "update_translations",
    "update_whitefield",
    "write_cxi",
    "write_results",
]
