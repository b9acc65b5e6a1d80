"""CXI files in the layout speckle_tracking users have, and the results group it writes.

Input (paths inside the HDF5 file)::

    /entry_1/data_1/data                              (N, M, L) frames
    /entry_1/instrument_1/detector_1/basis_vectors    (N, 2, 3) metres (ss step, fs step)
    /entry_1/instrument_1/detector_1/distance         focus-to-detector distance z, metres
    /entry_1/instrument_1/detector_1/x_pixel_size     metres (along ss)
    /entry_1/instrument_1/detector_1/y_pixel_size     metres (along fs)
    /entry_1/instrument_1/detector_1/mask             (M, L), optional: bool True = good, or
                                                      integer CXI pixel mask (0 = good)
    /entry_1/instrument_1/source_1/wavelength         metres (or .../energy in joules)
    /entry_1/sample_1/geometry/translation            (N, 3) metres (any sample_* group;
                                                      "translations" is also accepted)

Results of :func:`stacklab.speckle.run` go to the group ``/speckle_tracking`` (mask, whitefield,
roi, defocus, defocus_ss, defocus_fs, dss, dfs, pixel_map, pixel_translations, reference_image,
n0, m0, phase, angles, error_map, error_per_iteration, map_change_per_iteration) in one atomic
rewrite of the file (:func:`stacklab.io.write_hdf5` with ``mode="a"``): the file is left exactly
as it was unless everything is written.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import FileFormatError, ShapeError
from ..io import write_hdf5

__all__ = ["CXIScan", "read_cxi", "write_cxi", "write_results"]

logger = logging.getLogger(__name__)

DATA = "/entry_1/data_1/data"
DETECTOR = "/entry_1/instrument_1/detector_1"
SOURCE = "/entry_1/instrument_1/source_1"
TRANSLATION = "/entry_1/sample_1/geometry/translation"
RESULTS = "speckle_tracking"

_PLANCK_C = 6.62607015e-34 * 299792458.0  # J m


@dataclass(frozen=True)
class CXIScan:
    """A speckle-tracking scan read from a CXI file.

    Attributes
    ----------
    data : ndarray of shape (N, M, L)
        Frames (read into memory).
    translations : ndarray of float64, shape (N, 3)
        Sample positions, metres.
    basis : ndarray of float64, shape (N, 2, 3)
        Detector basis vectors, metres.
    x_pixel_size, y_pixel_size : float
        Pixel size along ss and fs, metres.
    distance : float
        Focus-to-detector distance, metres.
    wavelength : float
        Wavelength, metres.
    mask : ndarray of bool, shape (M, L), or None
        Detector mask (True = good), when the file has one.
    path : pathlib.Path
        The file.
    """

    data: np.ndarray
    translations: np.ndarray
    basis: np.ndarray
    x_pixel_size: float
    y_pixel_size: float
    distance: float
    wavelength: float
    mask: np.ndarray | None
    path: Path


def _missing(path: Path, f: h5py.File, what: str, tried: list[str]) -> FileFormatError:
    found: list[str] = []
    f.visititems(
        lambda name, obj: found.append("/" + name) if isinstance(obj, h5py.Dataset) else None
    )
    listing = ", ".join(found[:20]) + (" ..." if len(found) > 20 else "")
    return FileFormatError(
        f"{path}: missing {what} (looked for {', '.join(tried)}); the file holds: "
        f"{listing or 'no datasets'}"
    )


def _scalar(path: Path, f: h5py.File, key: str, what: str) -> float:
    if key not in f:
        raise _missing(path, f, what, [key])
    value = np.asarray(f[key][()], dtype=float)
    if value.size != 1 or not np.isfinite(value).all():
        raise FileFormatError(f"{path}: {key} ({what}) must be one finite number, got {value!r}")
    return float(value.ravel()[0])


def _find_translations(f: h5py.File) -> list[str]:
    keys = [TRANSLATION, TRANSLATION + "s"]
    entry = f.get("/entry_1")
    if isinstance(entry, h5py.Group):
        for name in sorted(entry):
            if name.startswith("sample_"):
                for leaf in ("translation", "translations"):
                    key = f"/entry_1/{name}/geometry/{leaf}"
                    if key not in keys:
                        keys.append(key)
    return keys


def read_cxi(path: str | os.PathLike) -> CXIScan:
    """Read a speckle-tracking scan from a CXI file (layout in the module docstring).

    Parameters
    ----------
    path : str or path-like
        The CXI (HDF5) file.

    Returns
    -------
    CXIScan
        Frames, geometry and the detector mask.

    Raises
    ------
    FileFormatError
        If the file is missing or not HDF5, or a required dataset is missing (the message names
        it and lists what the file holds).
    ShapeError
        If the translations or basis vectors do not match the number of frames.
    """
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"{path}: not a readable HDF5/CXI file ({exc})") from exc
    with f:
        if DATA not in f or not isinstance(f[DATA], h5py.Dataset):
            raise _missing(path, f, "the frames", [DATA])
        data = np.asarray(f[DATA][()])
        if data.ndim != 3:
            raise ShapeError(f"{path}: {DATA} must be 3-D (N, M, L), got shape {data.shape}")
        n_frames, m, n = data.shape
        bkey = f"{DETECTOR}/basis_vectors"
        if bkey not in f:
            raise _missing(path, f, "the detector basis vectors", [bkey])
        basis = np.asarray(f[bkey][()], dtype=float)
        if basis.shape == (2, 3):
            basis = np.broadcast_to(basis, (n_frames, 2, 3)).copy()
        if basis.shape != (n_frames, 2, 3):
            raise ShapeError(
                f"{path}: {bkey} has shape {basis.shape}; it must be (N, 2, 3) with N = "
                f"{n_frames} frames"
            )
        tkeys = _find_translations(f)
        tkey = next((k for k in tkeys if k in f), None)
        if tkey is None:
            raise _missing(path, f, "the sample translations", tkeys)
        trans = np.asarray(f[tkey][()], dtype=float)
        if trans.ndim != 2 or trans.shape[1] != 3:
            raise ShapeError(f"{path}: {tkey} must have shape (N, 3), got {trans.shape}")
        if trans.shape[0] != n_frames:
            raise ShapeError(
                f"{path}: {tkey} has {trans.shape[0]} translations but {DATA} has {n_frames} "
                "frames; they must match"
            )
        distance = _scalar(path, f, f"{DETECTOR}/distance", "the focus-to-detector distance")
        x_px = _scalar(path, f, f"{DETECTOR}/x_pixel_size", "the ss pixel size")
        y_px = _scalar(path, f, f"{DETECTOR}/y_pixel_size", "the fs pixel size")
        if f"{SOURCE}/wavelength" in f:
            wav = _scalar(path, f, f"{SOURCE}/wavelength", "the wavelength")
        elif f"{SOURCE}/energy" in f:
            wav = _PLANCK_C / _scalar(path, f, f"{SOURCE}/energy", "the photon energy")
        else:
            raise _missing(
                path,
                f,
                "the wavelength or photon energy",
                [f"{SOURCE}/wavelength", f"{SOURCE}/energy"],
            )
        mask = None
        mkey = f"{DETECTOR}/mask"
        if mkey in f:
            raw = np.asarray(f[mkey][()])
            if raw.shape != (m, n):
                raise ShapeError(f"{path}: {mkey} has shape {raw.shape}, frames are {(m, n)}")
            mask = raw.astype(bool) if raw.dtype == bool else raw == 0
    for v, name in ((distance, "distance"), (x_px, "x_pixel_size"), (y_px, "y_pixel_size")):
        if not v > 0:
            raise FileFormatError(f"{path}: {name} must be > 0, got {v}")
    if not wav > 0:
        raise FileFormatError(f"{path}: the wavelength must be > 0, got {wav}")
    return CXIScan(
        data=data,
        translations=trans,
        basis=basis,
        x_pixel_size=x_px,
        y_pixel_size=y_px,
        distance=distance,
        wavelength=wav,
        mask=mask,
        path=path,
    )


def write_cxi(
    path: str | os.PathLike,
    data: Any,
    translations: Any,
    basis: Any,
    x_pixel_size: float,
    y_pixel_size: float,
    distance: float,
    wavelength: float,
    *,
    mask: Any = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a scan in the CXI layout (atomically: a temporary file renamed over ``path``).

    Parameters
    ----------
    path : str or path-like
        Output file.
    data : ndarray of shape (N, M, L)
        Frames.
    translations : ndarray of shape (N, 3)
        Sample positions, metres.
    basis : ndarray of shape (N, 2, 3)
        Detector basis vectors, metres.
    x_pixel_size, y_pixel_size, distance, wavelength : float
        Geometry, metres.
    mask : bool ndarray of shape (M, L), optional
        Written as a bool dataset (True = good).
    extra : dict, optional
        More ``{key: array}`` datasets to write (e.g. ground truth).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise ShapeError(f"data must be (N, M, L), got shape {data.shape}")
    n_frames = data.shape[0]
    trans = np.asarray(translations, dtype=float)
    if trans.shape != (n_frames, 3):
        raise ShapeError(f"translations must have shape ({n_frames}, 3), got {trans.shape}")
    datasets: dict[str, Any] = {
        DATA: data,
        f"{DETECTOR}/basis_vectors": np.asarray(basis, dtype=float),
        f"{DETECTOR}/distance": float(distance),
        f"{DETECTOR}/x_pixel_size": float(x_pixel_size),
        f"{DETECTOR}/y_pixel_size": float(y_pixel_size),
        f"{SOURCE}/wavelength": float(wavelength),
        f"{SOURCE}/energy": _PLANCK_C / float(wavelength),
        TRANSLATION: trans,
    }
    if mask is not None:
        datasets[f"{DETECTOR}/mask"] = np.asarray(mask, dtype=bool)
    for key, value in (extra or {}).items():
        datasets[key] = value
    return write_hdf5(path, datasets, mode="w")


def write_results(path: str | os.PathLike, result: Any, *, group: str = RESULTS) -> Path:
    """Add a :class:`stacklab.speckle.SpeckleResult` to a CXI file under ``/speckle_tracking``.

    The whole file is rewritten through a temporary copy and renamed (:func:`write_hdf5`,
    ``mode="a"``), replacing datasets of the same names; if anything fails the file is left as
    it was.

    Parameters
    ----------
    path : str or path-like
        Existing CXI file (or a new file).
    result : SpeckleResult
        Output of :func:`stacklab.speckle.run`.
    group : str
        HDF5 group for the results (default ``"speckle_tracking"``).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    g = group.strip("/")
    r = result
    datasets = {
        f"{g}/mask": np.asarray(r.mask, dtype=bool),
        f"{g}/whitefield": np.asarray(r.whitefield, dtype=float),
        f"{g}/roi": np.asarray(r.roi, dtype=np.int64),
        f"{g}/defocus": float(r.defocus),
        f"{g}/defocus_ss": float(r.defocus_ss),
        f"{g}/defocus_fs": float(r.defocus_fs),
        f"{g}/dss": float(r.dss),
        f"{g}/dfs": float(r.dfs),
        f"{g}/pixel_map": np.asarray(r.pixel_map, dtype=float),
        f"{g}/pixel_translations": np.asarray(r.dij_n, dtype=float),
        f"{g}/reference_image": np.asarray(r.reference, dtype=float),
        f"{g}/n0": float(r.n0),
        f"{g}/m0": float(r.m0),
        f"{g}/phase": np.asarray(r.phase, dtype=float),
        f"{g}/angles": np.asarray(r.angles, dtype=float),
        f"{g}/error_map": np.asarray(r.error_map, dtype=float),
        f"{g}/error_per_iteration": np.asarray(r.errors, dtype=float),
        f"{g}/map_change_per_iteration": np.asarray(r.map_changes, dtype=float),
    }
    attrs = {
        g: {
            "software": "stacklab.speckle",
            "phase_units": "rad",
            "pixel_map_units": "object pixels ([0] = ss, [1] = fs)",
            "length_units": "m",
        }
    }
    out = write_hdf5(path, datasets, attrs=attrs, mode="a")
    logger.info("results written to %s:/%s", path, g)
    return out
