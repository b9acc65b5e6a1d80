"""Open any supported 4D-STEM file as a lazy DataCube, choosing the reader from the file."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import h5py

from ...errors import FileFormatError, ShapeError
from ...io import open_stack
from ..datacube import Calibration, DataCube, set_scan_shape

__all__ = ["open_datacube"]

logger = logging.getLogger(__name__)


def _hdf5_kind(path: Path) -> str:
    try:
        with h5py.File(path, "r") as f:
            if str(f.attrs.get("emd_group_type", "")) in ("file", "b'file'"):
                return "emd"
            if isinstance(f.get("entry/data"), h5py.Group) and any(
                k.startswith("data_0") for k in f["entry/data"].keys()
            ):
                return "arina"
    except OSError as exc:
        raise FileFormatError(f"{str(path)!r} is not a readable HDF5 file: {exc}") from exc
    return "hdf5"


def open_datacube(
    path: str | os.PathLike,
    *,
    scan_shape: tuple[int, int] | None = None,
    key: str | None = None,
    **kwargs: Any,
) -> DataCube:
    """Open a 4D-STEM file lazily.

    ``.mib`` → :func:`read_mib`; ``.raw`` → :func:`read_empad`; HDF5 (``.h5``, ``.hdf5``,
    ``.emd``...) → :func:`read_emd` for EMD 1.0 files, :func:`read_arina` for Dectris master
    files, otherwise the dataset ``key`` (or the only >= 3-D dataset) via
    :func:`stacklab.io.read_hdf5`; ``.tif``, ``.zarr``, ``.npy``, ``.npz`` via
    :func:`stacklab.io.open_stack`. A 3-D stack of frames needs ``scan_shape`` (or is taken
    as square when its frame count is a square).

    Parameters
    ----------
    path : str or path-like
        The file (or Zarr folder).
    scan_shape : (int, int), optional
        ``(scan_row, scan_col)``.
    key : str, optional
        Dataset inside an HDF5/Zarr/npz file, or the array name in an EMD file.
    **kwargs
        Passed to the specific reader (e.g. ``allow_truncated=True`` for ``.mib``).

    Returns
    -------
    DataCube

    Raises
    ------
    FileFormatError
        Missing or unreadable files, unknown formats.
    ShapeError
        Scan shapes that do not hold the frames.
    """
    from . import read_arina, read_emd, read_empad, read_mib

    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"file not found: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".mib":
        return read_mib(path, scan_shape=scan_shape, **kwargs)
    if suffix == ".raw":
        return read_empad(path, scan_shape=scan_shape, **kwargs)
    if suffix in (".h5", ".hdf5", ".hdf", ".emd", ".nxs", ".cxi") and path.is_file():
        kind = _hdf5_kind(path)
        if kind == "emd":
            cube = read_emd(path, name=key, **kwargs)
            return cube if scan_shape is None else cube.set_scan_shape(scan_shape)
        if kind == "arina":
            return read_arina(path, scan_shape=scan_shape, **kwargs)
    data = open_stack(path, key=key)
    shape = tuple(int(s) for s in data.shape)
    if len(shape) == 4 and scan_shape is None:
        return DataCube(data, Calibration(), name=path.stem, metadata={"source": str(path)})
    if len(shape) < 3:
        raise ShapeError(f"{str(path)!r} holds a {len(shape)}-D array {shape}, not frames")
    if scan_shape is None:
        n = math.prod(shape[:-2])
        if math.isqrt(n) ** 2 != n:
            raise ShapeError(
                f"{str(path)!r} holds {n} frames; pass scan_shape=(rows, cols) to make a 4D cube"
            )
        scan_shape = (math.isqrt(n), math.isqrt(n))
    return DataCube(
        set_scan_shape(data, scan_shape),
        Calibration(),
        name=path.stem,
        metadata={"source": str(path)},
    )
