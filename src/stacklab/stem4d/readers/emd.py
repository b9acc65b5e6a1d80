"""EMD 1.0 files (HDF5) in the layout py4DSTEM 0.14 / emdfile 0.0.16 read and write.

Layout written by :func:`write_emd` (and read by :func:`read_emd`)::

    /                         attrs emd_group_type="file", version_major=1, version_minor=0, ...
    /<name>_root              attrs emd_group_type="root", python_class="Root"
      /<name>                 attrs emd_group_type="array", python_class="DataCube"
        data                  (scan_row, scan_col, det_row, det_col), attrs units
        dim0 .. dim3          [0, step] per axis, attrs name (Rx, Ry, Qx, Qy) and units
      /metadatabundle         attrs emd_group_type="metadatabundle"
        /calibration          attrs emd_group_type="metadata", python_class="Calibration"
          Q_pixel_size, Q_pixel_units, R_pixel_size, R_pixel_units, QR_flip,
          qx0_mean / qy0_mean (or per-position qx0 / qy0), _root_treepath, _target_paths

py4DSTEM's x is axis 0 (rows), so ``qx0`` is the origin's row. Its calibration has a single Q
pixel size; the separate row/column sizes live in the ``dim2``/``dim3`` vectors, which this
reader prefers, and the full stacklab calibration is also kept as a JSON attribute
``stacklab_calibration`` of the array group. The data are read lazily.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ...errors import FileFormatError, ShapeError
from ...io import H5Stack, atomic_path
from ...io._common import default_chunks, iter_frame_blocks
from ..datacube import Calibration, DataCube, as_array, check_cube

__all__ = ["list_emd_arrays", "read_emd", "write_emd"]

logger = logging.getLogger(__name__)


def _str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _str(value.item())
    return str(value)


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise FileFormatError(f"EMD file not found: {str(path)!r}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"{str(path)!r} is not a readable HDF5/EMD file: {exc}") from exc


def list_emd_arrays(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """Array groups of an EMD 1.0 file: ``{group path: (data shape, python_class)}``."""
    path = Path(path)
    found: dict[str, tuple[tuple[int, ...], str]] = {}
    with _open(path) as f:
        if _str(f.attrs.get("emd_group_type", "")) != "file":
            raise FileFormatError(
                f"{str(path)!r} is not an EMD 1.0 file (root attribute emd_group_type != 'file')"
            )

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group) and _str(obj.attrs.get("emd_group_type", "")) == "array":
                if isinstance(obj.get("data"), h5py.Dataset):
                    found[name] = (
                        tuple(obj["data"].shape),
                        _str(obj.attrs.get("python_class", "")),
                    )

        f.visititems(visit)
    return found


def _dim_step(group: h5py.Group, n: int) -> tuple[float | None, str | None]:
    dset = group.get(f"dim{n}")
    if not isinstance(dset, h5py.Dataset) or dset.shape == () or dset.shape[0] < 2:
        return None, None
    vec = dset[()]
    if vec.dtype.kind not in "iuf":
        return None, None
    step = float(vec[1] - vec[0])
    units = _str(dset.attrs["units"]) if "units" in dset.attrs else None
    return (step if step > 0 else None), units


def _calibration_from(group: h5py.Group) -> Calibration:
    if "stacklab_calibration" in group.attrs:
        try:
            return Calibration.from_dict(json.loads(_str(group.attrs["stacklab_calibration"])))
        except (ValueError, TypeError) as exc:
            logger.warning("ignoring an unreadable stacklab_calibration attribute: %s", exc)
    steps = [_dim_step(group, n) for n in range(4)]
    meta: dict[str, Any] = {}
    root = group.parent
    cal = root.get("metadatabundle/calibration")
    if isinstance(cal, h5py.Group):
        for k, v in cal.items():
            if isinstance(v, h5py.Dataset):
                meta[k] = v[()]
    q = [s for s, _ in steps[2:]]
    r = [s for s, _ in steps[:2]]
    q_size = float(meta.get("Q_pixel_size", 1.0) or 1.0)
    r_size = float(meta.get("R_pixel_size", 1.0) or 1.0)
    q_units = _str(meta["Q_pixel_units"]) if "Q_pixel_units" in meta else (steps[2][1] or "pixels")
    r_units = _str(meta["R_pixel_units"]) if "R_pixel_units" in meta else (steps[0][1] or "pixels")
    origin = None
    if "qx0" in meta and "qy0" in meta and np.ndim(meta["qx0"]) == 2:
        origin = np.stack([np.asarray(meta["qx0"], float), np.asarray(meta["qy0"], float)], axis=-1)
    elif "qx0_mean" in meta and "qy0_mean" in meta:
        try:
            origin = (float(meta["qx0_mean"]), float(meta["qy0_mean"]))
        except (TypeError, ValueError):
            origin = None
    return Calibration(
        q_pixel_size=(q[0] or q_size, q[1] or q_size),
        q_units=q_units,
        r_pixel_size=(r[0] or r_size, r[1] or r_size),
        r_units=r_units,
        q_origin=origin,
    )


def read_emd(path: str | os.PathLike, *, name: str | None = None, lazy: bool = True) -> DataCube:
    """Open a 4D datacube of an EMD 1.0 file (py4DSTEM / emdfile layout).

    Parameters
    ----------
    path : str or path-like
        The ``.h5``/``.emd`` file.
    name : str, optional
        Array group to read: its path inside the file or its last component (e.g.
        ``"datacube"``). None picks the only 4-D array (preferring ``python_class="DataCube"``).
    lazy : bool
        True (default): the data are an :class:`~stacklab.io.H5Stack` read on demand; False:
        read into memory.

    Returns
    -------
    DataCube
        With the calibration of the file.

    Raises
    ------
    FileFormatError
        If the file is missing, not EMD 1.0, or the array is missing/ambiguous (the message lists
        the arrays found).
    """
    path = Path(path)
    arrays = list_emd_arrays(path)
    four = {k: v for k, v in arrays.items() if len(v[0]) == 4}
    if name is not None:
        key = name.strip("/")
        matches = [k for k in arrays if k == key or k.rsplit("/", 1)[-1] == key]
        if len(matches) != 1:
            raise FileFormatError(
                f"{str(path)!r} has {'no' if not matches else 'several'} array named {name!r}; "
                f"arrays: {arrays}"
            )
        key = matches[0]
        if len(arrays[key][0]) != 4:
            raise FileFormatError(
                f"array {key!r} in {str(path)!r} has shape {arrays[key][0]}, not a 4-D datacube"
            )
    else:
        cubes = [k for k, v in four.items() if v[1] == "DataCube"] or list(four)
        if len(cubes) != 1:
            raise FileFormatError(
                f"{str(path)!r} holds {len(cubes)} 4-D arrays; pick one with name=. "
                f"Arrays: {arrays}"
            )
        key = cubes[0]
    with _open(path) as f:
        group = f[key]
        calibration = _calibration_from(group)
    data: Any = H5Stack(path, f"{key}/data")
    if not lazy:
        with data:
            data = data[:]
    return DataCube(
        data,
        calibration,
        name=key.rsplit("/", 1)[-1],
        metadata={"format": "emd", "source": str(path)},
    )


def _meta_item(group: h5py.Group, key: str, value: Any) -> None:
    if isinstance(value, str):
        d = group.create_dataset(key, data=value.encode("utf-8"))
        d.attrs["type"] = b"string"
    elif isinstance(value, bool):
        d = group.create_dataset(key, data=value, dtype=bool)
        d.attrs["type"] = b"bool"
    elif isinstance(value, float | int):
        d = group.create_dataset(key, data=value)
        d.attrs["type"] = b"number"
    else:
        d = group.create_dataset(key, data=np.asarray(value))
        d.attrs["type"] = b"array"


def write_emd(
    path: str | os.PathLike,
    cube: Any,
    *,
    calibration: Calibration | None = None,
    name: str | None = None,
    compression: Any = None,
) -> Path:
    """Write a datacube to an EMD 1.0 file that py4DSTEM (``py4DSTEM.read``) opens.

    Parameters
    ----------
    path : str or path-like
        Destination (written to a temporary name and renamed when complete).
    cube : DataCube or array-like of shape (scan_row, scan_col, det_row, det_col)
        NumPy, CuPy, Dask or lazily read data (copied in blocks of scan rows).
    calibration : Calibration, optional
        Overrides the DataCube's calibration (default: the cube's, or 1 pixel per pixel).
    name : str, optional
        Array name (default: the DataCube's name, or ``"datacube"``).
    compression : optional
        h5py compression of the data (e.g. ``"gzip"``).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    if isinstance(cube, DataCube):
        calibration = calibration or cube.calibration
        name = name or cube.name
    data = as_array(cube)
    shape = check_cube(data, min_ndim=4)
    if len(shape) != 4:
        raise ShapeError(f"cube must be 4-D (scan_row, scan_col, det_row, det_col), got {shape}")
    calibration = calibration or Calibration()
    name = (name or "datacube").strip("/")
    if not name or "/" in name:
        raise ValueError(f"name must be a non-empty group name without '/', got {name!r}")
    cal = calibration
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["emd_group_type"] = "file"
        f.attrs["version_major"] = 1
        f.attrs["version_minor"] = 0
        f.attrs["UUID"] = str(uuid.uuid4())
        f.attrs["authoring_program"] = "stacklab"
        f.attrs["authoring_user"] = ""
        root = f.create_group(f"{name}_root")
        root.attrs["emd_group_type"] = "root"
        root.attrs["python_class"] = "Root"
        grp = root.create_group(name)
        grp.attrs["emd_group_type"] = "array"
        grp.attrs["python_class"] = "DataCube"
        grp.attrs["stacklab_calibration"] = json.dumps(cal.to_dict())
        dt = np.dtype(data.dtype)
        chunks = (1, *default_chunks(shape[1:], dt)) if all(shape) else None
        kw = {"compression": compression} if compression else {}
        dset = grp.create_dataset("data", shape=shape, dtype=dt, chunks=chunks, **kw)
        dset.attrs["units"] = "pixel intensity"
        for start, block in iter_frame_blocks(data):
            dset[start : start + block.shape[0]] = block
        steps = (*cal.r_pixel_size, *cal.q_pixel_size)
        units = (cal.r_units, cal.r_units, cal.q_units, cal.q_units)
        for n, (dim_name, step, unit) in enumerate(zip(("Rx", "Ry", "Qx", "Qy"), steps, units)):
            d = grp.create_dataset(f"dim{n}", data=np.array([0.0, step]))
            d.attrs["name"] = dim_name
            d.attrs["units"] = unit
        bundle = root.create_group("metadatabundle")
        bundle.attrs["emd_group_type"] = "metadatabundle"
        c = bundle.create_group("calibration")
        c.attrs["emd_group_type"] = "metadata"
        c.attrs["python_class"] = "Calibration"
        if cal.q_pixel_size[0] != cal.q_pixel_size[1]:
            logger.warning(
                "py4DSTEM keeps one Q pixel size; writing %g (rows) to its calibration, the "
                "column size %g only to dim3",
                *cal.q_pixel_size,
            )
        _meta_item(c, "Q_pixel_size", float(cal.q_pixel_size[0]))
        _meta_item(c, "Q_pixel_units", cal.q_units)
        _meta_item(c, "R_pixel_size", float(cal.r_pixel_size[0]))
        _meta_item(c, "R_pixel_units", cal.r_units)
        _meta_item(c, "QR_flip", False)
        if cal.q_origin is not None:
            o = np.asarray(cal.q_origin, dtype=np.float64)
            if o.ndim == 1:
                _meta_item(c, "qx0_mean", float(o[0]))
                _meta_item(c, "qy0_mean", float(o[1]))
            else:
                _meta_item(c, "qx0", o[..., 0])
                _meta_item(c, "qy0", o[..., 1])
                _meta_item(c, "qx0_mean", float(o[..., 0].mean()))
                _meta_item(c, "qy0_mean", float(o[..., 1].mean()))
        _meta_item(c, "_root_treepath", "")
        tp = c.create_group("_target_paths")
        tp.attrs["type"] = b"list_of_strings"
        tp.attrs["length"] = 1
        tp.create_dataset("0", data=f"/{name}".encode())
    return path
