"""Drop-in modules that keep the documented API of the packages stacklab replaces.

Each module reproduces the signatures, argument order, array layout and return shapes of one
reference package's documented API (the seeds in ``shared/seeds/``) and translates to stacklab's
frames-first domain packages underneath. Where the documented API and the reference package's
released code disagree, the documented API is followed; where the reference package gives a
physically wrong answer (in-place mutation of inputs, NaN dead zones, transposed windows), the
compat module gives the right one and says so in the docstring.

Modules (import them explicitly; this package imports nothing on its own):

* :mod:`stacklab.compat.magtrack` -- magtrack 1.0.0 (``magtrack.core``): bead tracking in
  frames-last ``(W, W, n_frames)`` stacks, ``x`` = column.
* :mod:`stacklab.compat.smlmlp` -- smlmLP 0.1.20: blink_spatial_psf, blink_temporal_on, Locs.
* :mod:`stacklab.compat.speckle_tracking` -- speckle_tracking 2020.1: (N, M, L) stacks, pixel maps.
* ``stacklab.compat.speckle_tracking``, ``stacklab.compat.py4dstem``,
  ``stacklab.compat.ptychography40``, ``stacklab.compat.smlmlp`` -- the other reference packages,
  where present.
"""

from __future__ import annotations

__all__: list[str] = []
