"""Readers (and the EMD writer) for 4D-STEM files; all open the data lazily.

* :func:`read_emd` / :func:`write_emd` — EMD 1.0 in py4DSTEM's layout;
* :func:`read_mib` — Quantum Detectors Merlin ``.mib`` (+ ``.hdr``);
* :func:`read_empad` — EMPAD ``.raw``;
* :func:`read_arina` — Dectris master files (bitshuffle/LZ4 via ``hdf5plugin``);
* :func:`open_datacube` — any of these or a plain HDF5/TIFF/Zarr/NumPy stack
  (:func:`stacklab.io.open_stack`), chosen from the file.
"""

from __future__ import annotations

from .arina import read_arina
from .emd import list_emd_arrays, read_emd, write_emd
from .empad import read_empad
from .mib import MibHeader, parse_hdr, read_mib, read_mib_header
from .open import open_datacube

__all__ = [
    "MibHeader",
    "list_emd_arrays",
    "open_datacube",
    "parse_hdr",
    "read_arina",
    "read_emd",
    "read_empad",
    "read_mib",
    "read_mib_header",
    "write_emd",
]
