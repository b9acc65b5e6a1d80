"""EMPAD raw files: float32 little-endian frames of 128 x 130 with 2 metadata rows.

Each stored frame has 130 rows of 128 columns; the last two rows hold metadata and are dropped,
leaving 128 x 128 patterns. The scan shape comes from ``scan_shape=`` or from the file name
(``..._x256_y128.raw`` means 256 scan columns and 128 scan rows).
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FileFormatError, ShapeError
from ..datacube import Calibration, DataCube, set_scan_shape
from ._lazy import MemmapFrames

__all__ = ["EMPAD_FRAME", "read_empad"]

logger = logging.getLogger(__name__)

#: Stored (rows, cols) of one EMPAD frame, metadata rows included.
EMPAD_FRAME = (130, 128)


def read_empad(
    path: str | os.PathLike,
    *,
    scan_shape: tuple[int, int] | None = None,
    dtype: Any = "<f4",
    frame_shape: tuple[int, int] = EMPAD_FRAME,
    metadata_rows: int = 2,
) -> DataCube:
    """Open an EMPAD ``.raw`` file lazily as a DataCube.

    Parameters
    ----------
    path : str or path-like
        The ``.raw`` file.
    scan_shape : (int, int), optional
        ``(scan_row, scan_col)``; default from the file name (``_x<cols>_y<rows>``).
    dtype : dtype
        Stored pixel type (little-endian float32 for the EMPAD; returned native-endian).
    frame_shape : (int, int)
        Stored frame shape ``(rows, cols)`` including the metadata rows.
    metadata_rows : int
        Trailing rows of each stored frame that hold metadata (dropped).

    Returns
    -------
    DataCube
        Lazy data of shape ``(scan_row, scan_col, rows - metadata_rows, cols)``.

    Raises
    ------
    FileFormatError
        If the file is missing or its size is not a whole number of frames.
    ShapeError
        If the scan shape is unknown or does not match the number of frames.
    """
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"EMPAD file not found: {str(path)!r}")
    dt = np.dtype(dtype)
    frame_bytes = math.prod(frame_shape) * dt.itemsize
    size = path.stat().st_size
    n, rem = divmod(size, frame_bytes)
    if rem or n == 0:
        raise FileFormatError(
            f"{str(path)!r} has {size} bytes, not a whole number of {frame_shape} {dt} frames "
            f"({n} complete frame(s) and {rem} extra bytes): truncated or not an EMPAD file"
        )
    if scan_shape is None:
        m = re.search(r"_x(\d+)_y(\d+)", path.name)
        if not m:
            raise ShapeError(
                f"cannot tell the scan shape of {str(path)!r} from its name (no _x<cols>_y<rows>); "
                "pass scan_shape=(rows, cols)"
            )
        scan_shape = (int(m.group(2)), int(m.group(1)))
    scan = tuple(int(s) for s in scan_shape)
    if len(scan) != 2 or min(scan) < 1 or math.prod(scan) != n:
        raise ShapeError(
            f"scan_shape {tuple(scan_shape)} does not match the {n} frames of {str(path)!r}"
        )
    keep = frame_shape[0] - int(metadata_rows)
    if keep < 1:
        raise ValueError(f"metadata_rows={metadata_rows} leaves no data rows of {frame_shape}")
    frames = MemmapFrames(path, n, frame_shape, dt, crop=(slice(0, keep), slice(None)))
    meta = {"format": "empad", "source": str(path)}
    return DataCube(set_scan_shape(frames, scan), Calibration(), name=path.stem, metadata=meta)
