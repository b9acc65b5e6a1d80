"""Reading and writing stacks of frames: HDF5/CXI/EMD, TIFF, NumPy ``.npy``/``.npz`` and Zarr.

Readers are lazy (frames are read from disk when sliced) and return objects that
:mod:`stacklab.engine` maps over block by block. Writers are atomic: they write to a temporary
name in the same folder and rename it over the destination only when complete.

* :func:`open_stack` / :func:`save_stack` choose the format from the file name.
* :func:`read_hdf5`, :func:`write_hdf5`, :func:`list_datasets`, :func:`create_hdf5_dataset`
  (a resumable chunk-by-chunk sink usable as ``out=`` of :func:`stacklab.engine.map_frames`).
* :func:`read_tiff`, :func:`write_tiff`; :func:`read_npy`, :func:`read_npz`, :func:`write_npy`,
  :func:`write_npz`; :func:`read_zarr`, :func:`write_zarr` (``stacklab[io]`` extra).
* :func:`atomic_path` for writing any other file safely.
"""

from __future__ import annotations

from ._common import FrameWindow
from .atomic import atomic_path
from .hdf5 import (
    HDF5_SUFFIXES,
    H5Stack,
    HDF5Sink,
    create_hdf5_dataset,
    list_datasets,
    read_hdf5,
    write_hdf5,
)
from .npy import read_npy, read_npz, write_npy, write_npz
from .stack import SUFFIXES, file_kind, open_stack, save_stack
from .tiff import TIFF_SUFFIXES, TiffStack, read_tiff, write_tiff
from .zarr_io import ZARR_SUFFIXES, is_zarr_store, read_zarr, write_zarr

__all__ = [
    "HDF5_SUFFIXES",
    "SUFFIXES",
    "TIFF_SUFFIXES",
    "ZARR_SUFFIXES",
    "FrameWindow",
    "H5Stack",
    "HDF5Sink",
    "TiffStack",
    "atomic_path",
    "create_hdf5_dataset",
    "file_kind",
    "is_zarr_store",
    "list_datasets",
    "open_stack",
    "read_hdf5",
    "read_npy",
    "read_npz",
    "read_tiff",
    "read_zarr",
    "save_stack",
    "write_hdf5",
    "write_npy",
    "write_npz",
    "write_tiff",
    "write_zarr",
]
