"""Physical constants and formulas for electron ptychography."""

from __future__ import annotations

import math

import numpy as np
import scipy.constants as const

__all__ = ["wavelength"]


def wavelength(voltage_kV: float | np.ndarray) -> float | np.ndarray:
    """Relativistic de Broglie wavelength of an electron accelerated through ``voltage_kV``.

    ``lambda = h c / sqrt(T^2 + 2 T m_0 c^2)`` with kinetic energy ``T = e U`` (CODATA values
    from :mod:`scipy.constants`).

    Parameters
    ----------
    voltage_kV : float or ndarray
        Acceleration voltage in kilovolts (> 0). Arrays are evaluated element-wise.

    Returns
    -------
    float or ndarray
        Wavelength in metres, a float for scalar input, an array of the input's shape otherwise.

    Raises
    ------
    ValueError
        If any voltage is not finite or not positive.

    Examples
    --------
    >>> round(wavelength(300) * 1e12, 6)  # pm
    1.968749
    """
    arr = np.asarray(voltage_kV, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"voltage_kV must be finite and > 0 (kilovolts), got {voltage_kV!r}")
    e = const.elementary_charge
    h = const.Planck
    c = const.speed_of_light
    m0 = const.electron_mass
    kinetic = e * arr * 1000.0  # J
    lam = h * c / np.sqrt(kinetic**2 + 2.0 * kinetic * m0 * c**2)
    if arr.ndim == 0:
        # Scalar path in plain Python floats, the operation order of the textbook formula.
        t = e * float(arr) * 1000.0
        return h * c / math.sqrt(t**2 + 2 * t * m0 * (c**2))
    return lam
