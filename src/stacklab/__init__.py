"""stacklab: turn stacks of detector frames into physical measurements.

Domains: :mod:`stacklab.speckle` (X-ray speckle tracking), :mod:`stacklab.beads` (magnetic-tweezers
bead tracking), :mod:`stacklab.stem4d` (4D-STEM preprocessing), :mod:`stacklab.ptycho`
(ptychography), :mod:`stacklab.smlm` (single-molecule localization microscopy). Shared pieces:
:mod:`stacklab.backend` (NumPy/CuPy), :mod:`stacklab.engine` (chunked and distributed work),
:mod:`stacklab.io` (lazy readers, atomic writers), :mod:`stacklab.core` (shared kernels).
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
