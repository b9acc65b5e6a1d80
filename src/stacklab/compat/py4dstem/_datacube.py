"""A :class:`stacklab.stem4d.DataCube` with py4DSTEM's attribute names.

py4DSTEM's axes are ``(Rx, Ry, Qx, Qy)`` with Rx = axis 0 and Qx = axis 2; stacklab's canonical
axes are ``(scan_row, scan_col, det_row, det_col)``. The arrays are laid out identically, only
the names differ: ``R_Nx = scan_row``, ``R_Ny = scan_col``, ``Q_Nx = det_row``,
``Q_Ny = det_col``, and a py4DSTEM "x" coordinate is a row index.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...stem4d.datacube import Calibration
from ...stem4d.datacube import DataCube as _CanonicalDataCube

__all__ = ["Calibration", "DataCube", "as_datacube"]

logger = logging.getLogger(__name__)


class DataCube(_CanonicalDataCube):
    """4D-STEM data ``(Rx, Ry, Qx, Qy)`` with py4DSTEM's names, on stacklab's DataCube.

    Construct it like the canonical one, ``DataCube(data, calibration=None, name=...)``; the
    ``data`` array is wrapped without copying. Every function of
    :mod:`stacklab.compat.py4dstem` returns a **new** DataCube and leaves its argument (and the
    array inside it) unchanged, unlike py4DSTEM 0.14.18, which mutates and returns its argument.

    Attributes
    ----------
    data : ndarray of shape (R_Nx, R_Ny, Q_Nx, Q_Ny)
        The frames (NumPy, CuPy, Dask or a lazily read dataset).
    calibration : stacklab.stem4d.Calibration
        Pixel sizes per axis (``q_pixel_size = (Qx, Qy)``, ``r_pixel_size = (Rx, Ry)``).
    """

    def __init__(
        self,
        data: Any,
        calibration: Calibration | None = None,
        name: str = "datacube",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            data,
            Calibration() if calibration is None else calibration,
            name=name,
            metadata={} if metadata is None else dict(metadata),
        )

    # -- py4DSTEM names ------------------------------------------------------------------------
    @property
    def R_Nx(self) -> int:
        """Scan size along axis 0 (``scan_row``)."""
        return self.shape[0]

    @property
    def R_Ny(self) -> int:
        """Scan size along axis 1 (``scan_col``)."""
        return self.shape[1]

    @property
    def Q_Nx(self) -> int:
        """Detector size along axis 2 (``det_row``)."""
        return self.shape[2]

    @property
    def Q_Ny(self) -> int:
        """Detector size along axis 3 (``det_col``)."""
        return self.shape[3]

    @property
    def R_N(self) -> int:
        """Number of scan positions, ``R_Nx * R_Ny``."""
        return self.R_Nx * self.R_Ny

    @property
    def Q_pixel_size(self) -> float:
        """Detector pixel size along Qx (axis 2), as py4DSTEM's single Q calibration.

        The per-axis pair is ``calibration.q_pixel_size``; py4DSTEM keeps one value and updates
        it with the Qx factor only (e.g. after resampling to a non-square size).
        """
        return float(self.calibration.q_pixel_size[0])

    @property
    def R_pixel_size(self) -> float:
        """Scan step along Rx (axis 0); the pair is ``calibration.r_pixel_size``."""
        return float(self.calibration.r_pixel_size[0])

    @property
    def Q_pixel_units(self) -> str:
        """Unit of :attr:`Q_pixel_size`."""
        return self.calibration.q_units

    @property
    def R_pixel_units(self) -> str:
        """Unit of :attr:`R_pixel_size`."""
        return self.calibration.r_units

    def with_data(
        self, data: Any, calibration: Calibration | None = None, **changes: Any
    ) -> DataCube:
        """A new compat DataCube with other data (and optionally calibration, name, metadata)."""
        return DataCube(
            data,
            self.calibration if calibration is None else calibration,
            name=changes.get("name", self.name),
            metadata=dict(changes.get("metadata", self.metadata)),
        )

    def __repr__(self) -> str:
        return "py4dstem." + super().__repr__()


def as_datacube(datacube: Any, name: str = "datacube") -> DataCube:
    """The argument as a compat :class:`DataCube` (no data copy).

    Accepts a compat DataCube (returned as is), a canonical :class:`stacklab.stem4d.DataCube`
    (re-wrapped, same calibration), or a 4-D array ``(Rx, Ry, Qx, Qy)``.

    Raises
    ------
    TypeError
        For anything else (the message names ``name``).
    """
    if isinstance(datacube, DataCube):
        return datacube
    if isinstance(datacube, _CanonicalDataCube):
        return DataCube(
            datacube.data, datacube.calibration, name=datacube.name, metadata=datacube.metadata
        )
    if hasattr(datacube, "shape") and hasattr(datacube, "dtype"):
        return DataCube(datacube)
    if isinstance(datacube, list | tuple):
        return DataCube(np.asarray(datacube))
    raise TypeError(
        f"{name} must be a DataCube or a 4-D array (Rx, Ry, Qx, Qy), got {type(datacube).__name__}"
    )
