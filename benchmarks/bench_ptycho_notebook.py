"""Benchmark: the "Tools for iterative ptychography" notebook workload (32 patterns).

The scene is the notebook's forward simulation (:func:`stacklab.ptycho.simulate.notebook_scene`):
a 129 x 129 detector pattern, rotated by 65 degrees and shifted, repeated 32 times, and a
25 x 25 object and illumination at 10 pm pixels. Both sides compute, for 32 probe shifts
``(i, i)``, the difference between the detector data transformed to the forward-model grid and
the forward-model intensity ``|FFT(probe * rolled object)|^2``.

* baseline: the notebook's reference path, written here from its formulas: per pattern
  ``scipy.ndimage.shift`` back, ``rotate(-65, reshape=True)``, ``zoom`` to the forward-model pixel
  size and zero-padding; per shift ``np.roll``, product and ``fftshift(fft2(ifftshift(...)))``.
* stacklab: the fast path: one precomputed sparse matrix (built in ``make_data``, as the notebook
  precomputes it; it folds the shift, rotation, scaling and the inverse FFT shift) applied with
  :func:`stacklab.ptycho.apply_matrix`, and :func:`stacklab.ptycho.rolled_object_probe_product`
  with ``ifftshift=True`` followed by one batched FFT in native layout.

``REFERENCE_PACKAGE`` is None: the PyPI release of ptychography40 lacks these tools. The matrix
uses the beam centre where zero frequency really lies in the simulated pattern
(``notebook_scene()["beam_centre"]``; the notebook's ``shape / 2 + shift`` is about 5 detector
pixels off). Accuracy: Pearson correlation between the transformed pattern and the forward-model
intensity at shift (0, 0) (layout-independent), and the RMS of the difference stack.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

NAME = "ptycho_notebook"
REFERENCE_PACKAGE = None
REFERENCE_CODE = None

N_PATTERNS = 32


def make_data(seed: int) -> dict[str, np.ndarray]:
    """Notebook scene, a stack of 32 patterns, shifts (i, i) and the precomputed matrix."""
    from stacklab.ptycho import diffraction_to_detector, ifftshift_coords
    from stacklab.ptycho import image_transformation_matrix as itm
    from stacklab.ptycho.simulate import notebook_scene

    del seed  # the notebook scene is deterministic
    sc = notebook_scene()
    rec_obj = sc["rec_obj"]
    real = sc["real_diffpattern"]
    cy, cx = sc["beam_centre"]
    affine = diffraction_to_detector(
        sc["lamb"],
        rec_obj.shape,
        sc["pixel_size_real"],
        sc["pixel_size_detector"],
        cy,
        cx,
        flip_y=False,
        scan_rotation=sc["scan_rotation"],
    )
    m = itm(real.shape, rec_obj.shape, affine, ifftshift_coords(rec_obj.shape))
    return {
        "rec_obj": rec_obj,
        "rec_illum": sc["rec_illum"],
        "patterns": np.stack((real,) * N_PATTERNS),
        "shifts": np.array([(i, i) for i in range(N_PATTERNS)]),
        "m_data": m.data,
        "m_indices": m.indices,
        "m_indptr": m.indptr,
        "m_shape": np.array(m.shape),
        "lamb": np.array(sc["lamb"]),
        "pixel_size_real": np.array(sc["pixel_size_real"]),
        "pixel_size_detector": np.array(sc["pixel_size_detector"]),
        "scan_rotation": np.array(sc["scan_rotation"]),
        "det_shift": np.array(sc["shift"], dtype=float),
    }


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _reference_forward(illum, obj, shifts) -> np.ndarray:
    out = np.empty((len(shifts), *illum.shape), dtype=np.complex64)
    for i, s in enumerate(shifts):
        rolled = np.roll(obj, (-int(s[0]), -int(s[1])), axis=(0, 1))
        out[i] = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(illum * rolled)))
    return out


def _reference_transform(data, patterns, target_shape) -> np.ndarray:
    lamb = float(data["lamb"])
    rot = float(data["scan_rotation"])
    dy, dx = data["det_shift"]
    pixel_rec = lamb / (target_shape[0] * float(data["pixel_size_real"]))
    zoom = float(data["pixel_size_detector"]) / pixel_rec
    out = np.empty((len(patterns), *target_shape))
    for i, pattern in enumerate(patterns):
        p = scipy.ndimage.shift(pattern, (-dy, -dx))
        p = scipy.ndimage.rotate(p, -rot, reshape=True)
        p = scipy.ndimage.zoom(p, zoom)
        pad = (target_shape[0] - p.shape[0]) / 2
        out[i] = np.pad(p, ((int(np.floor(pad)), int(np.ceil(pad))),) * 2)
    return out


def baseline(data: dict[str, np.ndarray]) -> dict[str, float]:
    """The notebook's scipy.ndimage reference path (compare_ref)."""
    obj, illum = data["rec_obj"], data["rec_illum"]
    matched = _reference_transform(data, data["patterns"], obj.shape)
    fwd = np.abs(_reference_forward(illum, obj, data["shifts"])) ** 2
    diff = matched - fwd
    return {
        "corr_detector_forward": _corr(matched[0], fwd[0]),
        "diff_rms": float(np.sqrt(np.mean(diff**2))),
    }


def run_stacklab(data: dict[str, np.ndarray]) -> dict[str, float]:
    """The fast path with stacklab (compare_fast), precomputed matrix."""
    import scipy.fft
    import scipy.sparse

    from stacklab.ptycho import apply_matrix, rolled_object_probe_product

    obj, illum = data["rec_obj"], data["rec_illum"]
    matrix = scipy.sparse.csc_matrix(
        (data["m_data"], data["m_indices"], data["m_indptr"]), shape=tuple(data["m_shape"])
    )
    transformed = apply_matrix(data["patterns"], matrix, obj.shape)
    prod, _ = rolled_object_probe_product(obj, illum, data["shifts"], ifftshift=True)
    spec = scipy.fft.fft2(prod)
    fwd = spec.real**2 + spec.imag**2
    diff = transformed - fwd
    return {
        "corr_detector_forward": _corr(transformed[0], fwd[0]),
        "diff_rms": float(np.sqrt(np.mean(diff**2))),
    }
