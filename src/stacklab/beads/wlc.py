"""Worm-like-chain (WLC) force-extension curves of tethers held in magnetic tweezers.

Once the force on a tethered bead is calibrated at several magnet positions
(:func:`stacklab.beads.forces_from_table`), the force-extension curve of the tether gives its
persistence length ``P``, contour length ``L`` and, at high force, its stretch modulus ``S``.

Models
------
With ``x`` the relative extension of the chain backbone and ``f = F P / kB T`` the reduced force,

* **Marko-Siggia** interpolation (Marko & Siggia 1995):
  ``f = g(x) = 1 / (4 (1 - x)^2) - 1/4 + x``;
* **Bouchiat** 7th-order corrected interpolation (Bouchiat et al. 1999, accurate to 0.01 % of
  the exact WLC): ``g(x) = 1 / (4 (1 - x)^2) - 1/4 + x + sum_{i=2..7} a_i x^i`` with
  ``a_2..a_7 = -0.5164228, -2.737418, 16.07497, -38.87607, 39.49944, -14.17718`` as published.

Both reduce to ``F = (3/2) kB T z / (P L)`` at low force. ``g`` increases monotonically on
``[0, 1)`` from 0 to infinity, so it has a unique inverse ``x = g^-1(f)``.

**Extensible** WLC (Odijk 1995; in the Marko-Siggia form of Wang et al. 1997): the backbone
stretches elastically, ``x = z / L - F / S``. The force then appears on both sides of
``F = kB T / P g(z / L - F / S)``, but the *extension as a function of force* is explicit and
monotone, ``z = L (g^-1(F P / kB T) + F / S)``. :func:`wlc_extension` is therefore the primary
form (it is what the fit evaluates); :func:`wlc_force` of the extensible model solves
``x + (kB T / (P S)) g(x) = z / L`` for ``x`` (a monotone equation on ``[0, 1)``, with a solution
for every ``z >= 0``) and returns ``F = kB T / P g(x)``. Both inversions use a vectorized Newton
iteration safeguarded by bisection inside a guaranteed bracket, to machine precision.

Which direction to fit
----------------------
Forces from spectral calibration carry relative errors of a few per cent (``force_se_pN``), an
error that grows steeply into extension at low force, where the curve is flat in ``F``; the
extensions carry small absolute tracking errors (nm). Fitting ``F(z)`` would put the noisy
variable on the wrong side and, for the inextensible model, diverges for points with ``z >= L``.
:func:`fit_wlc` instead fits the **extension as a function of force**, ``z(F) + offset``, by
weighted least squares with the *effective variance* of each point (Orear 1982),

    ``sigma_i^2 = (dz/dF(F_i) * force_se_i)^2 + extension_se_i^2``,

which propagates the force error through the local slope of the model. The weights depend on
the parameters, so they are recomputed at the current estimate and the fit repeated until the
parameters stop changing (a few rounds). ``z(F)`` is finite for every force and every parameter
value, so points close to or beyond ``0.97 L`` (where the inextensible model's ``F(z)`` blows
up) do not break the fit; ``force_range_pN`` can exclude points beyond a model's validity
(e.g. DNA overstretching above about 50 pN).

Units are explicit in every name: forces pN, lengths nm, temperature K, stretch modulus pN.
These are small-data functions: they work on the host (NumPy); CuPy input is copied there.

References
----------
.. [1] J. F. Marko, E. D. Siggia, "Stretching DNA", Macromolecules 28, 8759-8770 (1995).
.. [2] C. Bouchiat, M. D. Wang, J.-F. Allemand, T. Strick, S. M. Block, V. Croquette,
   "Estimating the persistence length of a worm-like chain molecule from force-extension
   measurements", Biophys. J. 76, 409-413 (1999).
.. [3] T. Odijk, "Stiff chains and filaments under tension", Macromolecules 28, 7016-7018 (1995).
.. [4] M. D. Wang, H. Yin, R. Landick, J. Gelles, S. M. Block, "Stretching DNA with optical
   tweezers", Biophys. J. 72, 1335-1346 (1997).
.. [5] J. Orear, "Least squares when both variables have uncertainties", Am. J. Phys. 50,
   912-916 (1982).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import optimize

from ..backend import to_numpy
from ..errors import ShapeError
from .force import _kbt
from .force import _positive_scalar as _scalar

__all__ = [
    "BOUCHIAT_COEFFICIENTS",
    "WLCFit",
    "fit_wlc",
    "fit_wlc_table",
    "wlc_extension",
    "wlc_force",
]

logger = logging.getLogger(__name__)

Model = Literal["bouchiat", "marko_siggia"]

#: Bouchiat et al. (1999) correction coefficients a_2 .. a_7 of ``sum a_i x^i``.
BOUCHIAT_COEFFICIENTS = (-0.5164228, -2.737418, 16.07497, -38.87607, 39.49944, -14.17718)

#: Names of the parameters :func:`fit_wlc` can fit, in their canonical order.
PARAMETERS = ("persistence", "contour", "stretch_modulus", "offset")
_LOG_PARAMETERS = ("persistence", "contour", "stretch_modulus")
_UNITS = {"persistence": "nm", "contour": "nm", "stretch_modulus": "pN", "offset": "nm"}

# lower bound of the Bouchiat polynomial on [0, 1] (its value at x = 1, -0.73252...), made a
# little more negative so that the bracket of the inversion is safe
_POLY_MIN = sum(BOUCHIAT_COEFFICIENTS) - 1e-6

_MAX_NEWTON = 200
_MAX_REWEIGHT = 20


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def _check_model(model: Any) -> str:
    if model not in ("bouchiat", "marko_siggia"):
        raise ValueError(f"model must be 'bouchiat' or 'marko_siggia', got {model!r}")
    return str(model)


def _stretch(stretch_modulus_pN: Any) -> float:
    """Stretch modulus in pN, ``inf`` for the inextensible model (None)."""
    if stretch_modulus_pN is None:
        return math.inf
    try:
        out = float(stretch_modulus_pN)
    except (TypeError, ValueError):
        raise ValueError(
            f"stretch_modulus_pN must be a real number or None, got {stretch_modulus_pN!r}"
        ) from None
    if not out > 0:  # inf is allowed: the inextensible limit
        raise ValueError(f"stretch_modulus_pN must be > 0 (or None), got {stretch_modulus_pN!r}")
    return out


def _array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(to_numpy(value), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of real numbers, got {value!r}") from None
    return arr


def _out(arr: np.ndarray) -> Any:
    return float(arr) if arr.ndim == 0 else arr


# --------------------------------------------------------------------------------------------
# the interpolation formulas and their inversion
# --------------------------------------------------------------------------------------------


def _g(x: np.ndarray, model: str) -> np.ndarray:
    """Reduced force ``F P / kB T`` at relative backbone extension ``x`` in [0, 1)."""
    return _g_dg(x, model, derivative=False)[0]


def _g_dg(
    x: np.ndarray, model: str, *, derivative: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """``g(x)`` and (optionally) ``dg/dx``, which is >= 3/2 on [0, 1) for both models."""
    u = 1.0 - x
    g = x * (2.0 - x) / (4.0 * u * u) + x  # = 1/(4 u^2) - 1/4 + x without cancellation
    dg = 0.5 / (u * u * u) + 1.0 if derivative else None
    if model == "bouchiat":
        # correction x^2 q(x) with q = a_2 + a_3 x + ... + a_7 x^5 (Horner for q and q')
        q = np.zeros_like(x)
        dq = np.zeros_like(x)
        for a in BOUCHIAT_COEFFICIENTS[::-1]:
            if derivative:
                dq = dq * x + q
            q = q * x + a
        x2 = x * x
        g = g + x2 * q
        if derivative:
            dg = dg + 2.0 * x * q + x2 * dq
    return g, dg


def _solve_x(rhs: np.ndarray, c: float, model: str) -> np.ndarray:
    """Solve ``c x + g(x) = rhs`` (``c >= 0``, ``rhs >= 0``) for ``x`` in ``[0, 1)``.

    The left side increases from 0 to infinity, so the root is unique. Newton steps are
    safeguarded by bisection inside the bracket ``[0, 1 - u_hi]``, with ``u_hi`` such that
    ``g(1 - u_hi) >= rhs`` (from ``g(x) >= 1/(4 u^2) - 1/4 + min poly``).
    """
    rhs = np.asarray(rhs, dtype=np.float64)
    lo = np.zeros_like(rhs)
    hi = 1.0 - np.sqrt(0.25 / (rhs + 0.25 - min(_POLY_MIN, 0.0) + 1.0))
    # initial guess: the better of the low-force and high-force asymptotes
    x = np.minimum(rhs / (c + 1.5), 1.0 - np.sqrt(0.25 / (rhs + 0.25)))
    x = np.clip(x, lo, hi)
    for _ in range(_MAX_NEWTON):
        g, dg = _g_dg(x, model)
        phi = c * x + g - rhs
        pos = phi > 0
        hi = np.where(pos, x, hi)
        lo = np.where(pos, lo, x)
        step = phi / (c + dg)
        new = x - step
        outside = ~((new >= lo) & (new <= hi))
        new = np.where(outside, 0.5 * (lo + hi), new)
        change = np.abs(new - x)
        x = new
        if not np.any(change > 4e-15 * np.maximum(x, 1e-300)):  # a few ulp
            break
    else:  # pragma: no cover - the bracket guarantees convergence
        logger.warning("WLC inversion did not converge to machine precision")
    return x


# --------------------------------------------------------------------------------------------
# public model functions
# --------------------------------------------------------------------------------------------


def wlc_force(
    extension_nm: Any,
    *,
    persistence_nm: float,
    contour_nm: float,
    stretch_modulus_pN: float | None = None,
    temperature_K: float = 296.15,
    model: Model = "bouchiat",
) -> Any:
    """Force on a worm-like chain held at a given end-to-end extension.

    Inextensible model: ``F = kB T / P g(z / L)``. Extensible model (``stretch_modulus_pN``
    given): the solution ``F`` of ``F = kB T / P g(z / L - F / S)``, found by inverting the
    monotone ``x + (kB T / (P S)) g(x) = z / L`` (see the module notes).

    Parameters
    ----------
    extension_nm : float or array_like of any shape
        End-to-end extension ``z``, nm, >= 0 (and < ``contour_nm`` for the inextensible model).
    persistence_nm : float
        Persistence length ``P``, nm.
    contour_nm : float
        Contour length ``L``, nm.
    stretch_modulus_pN : float, optional
        Stretch modulus ``S``, pN. None: inextensible chain.
    temperature_K : float
        Temperature, K (``kB T`` = 4.089 pN nm at the default 296.15 K).
    model : {"bouchiat", "marko_siggia"}
        Interpolation formula: Bouchiat et al. (1999) 7th-order corrected (default) or the
        original Marko & Siggia (1995).

    Returns
    -------
    float or ndarray of the shape of ``extension_nm``
        Force, pN (float for scalar input).

    Raises
    ------
    ValueError
        For non-positive parameters, an unknown model, a negative or non-finite extension, or
        an extension >= ``contour_nm`` for the inextensible model (which needs infinite force).
    """
    model = _check_model(model)
    p = _scalar(persistence_nm, "persistence_nm")
    length = _scalar(contour_nm, "contour_nm")
    s = _stretch(stretch_modulus_pN)
    kbt = _kbt(temperature_K)
    z = _array(extension_nm, "extension_nm")
    if z.size and not (np.all(np.isfinite(z)) and np.all(z >= 0)):
        raise ValueError("extension_nm must be finite and >= 0")
    rel = z / length
    if math.isinf(s):
        if z.size and np.max(rel) >= 1.0:
            raise ValueError(
                f"extension_nm reaches {np.max(z):g} nm >= contour_nm ({length:g} nm): the "
                "inextensible WLC needs an infinite force there (give stretch_modulus_pN for "
                "the extensible model)"
            )
        return _out(kbt / p * _g(rel, model))
    c = p * s / kbt  # x + g(x) / c = rel  <=>  c x + g(x) = c rel
    x = _solve_x(c * rel, c, model)
    return _out(kbt / p * _g(x, model))


def _extension_parts(
    force: np.ndarray, p: float, length: float, s: float, kbt: float, model: str
) -> tuple[np.ndarray, np.ndarray]:
    """Backbone extension ``x(F)`` and its derivative ``dx/dF`` (1/pN)."""
    x = _solve_x(force * p / kbt, 0.0, model)
    return x, (p / kbt) / _g_dg(x, model)[1]


def wlc_extension(
    force_pN: Any,
    *,
    persistence_nm: float,
    contour_nm: float,
    stretch_modulus_pN: float | None = None,
    temperature_K: float = 296.15,
    model: Model = "bouchiat",
) -> Any:
    """End-to-end extension of a worm-like chain under a given force (inverse of wlc_force).

    ``z = L (g^-1(F P / kB T) + F / S)``, with ``F / S`` left out for the inextensible model.
    This is the primary form of the extensible model: explicit in the force and monotone.

    Parameters
    ----------
    force_pN : float or array_like of any shape
        Force ``F``, pN, finite and >= 0.
    persistence_nm, contour_nm, stretch_modulus_pN, temperature_K, model
        As in :func:`wlc_force`.

    Returns
    -------
    float or ndarray of the shape of ``force_pN``
        Extension, nm (float for scalar input); below ``contour_nm`` for the inextensible model.

    Raises
    ------
    ValueError
        For non-positive parameters, an unknown model, or negative or non-finite forces.
    """
    model = _check_model(model)
    p = _scalar(persistence_nm, "persistence_nm")
    length = _scalar(contour_nm, "contour_nm")
    s = _stretch(stretch_modulus_pN)
    kbt = _kbt(temperature_K)
    f = _array(force_pN, "force_pN")
    if f.size and not (np.all(np.isfinite(f)) and np.all(f >= 0)):
        raise ValueError("force_pN must be finite and >= 0")
    x, _ = _extension_parts(f, p, length, s, kbt, model)
    return _out(length * (x + f / s))


# --------------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WLCFit:
    """Result of :func:`fit_wlc`.

    Standard errors (``*_se_*``, one standard deviation, statistical only) come from the
    Jacobian of the weighted residuals at the optimum, ``cov = (J^T J)^-1``, multiplied by
    ``reduced_chi2`` when the errors were relative (``absolute_sigma`` False). Parameters that
    were held fixed have standard error 0.

    Attributes
    ----------
    persistence_nm, persistence_se_nm : float
        Persistence length ``P`` and its standard error, nm.
    contour_nm, contour_se_nm : float
        Contour length ``L``, nm.
    stretch_modulus_pN, stretch_modulus_se_pN : float or None
        Stretch modulus ``S``, pN; None for the inextensible model.
    offset_nm, offset_se_nm : float
        Extension offset, nm: the measured extension is ``z(F) + offset_nm`` (0 unless fitted or
        given in ``initial``).
    fitted : tuple of str
        Names of the fitted parameters, the order of ``covariance``.
    covariance : ndarray of shape (n_fitted, n_fitted)
        Covariance of the fitted parameters in their units (nm, nm, pN, nm).
    model : str
        "bouchiat" or "marko_siggia".
    temperature_K : float
        Temperature, K.
    chi2 : float
        ``sum(residuals_nm^2 / sigma_nm^2)``.
    dof : int
        Degrees of freedom, ``n_points - n_fitted``.
    reduced_chi2 : float
        ``chi2 / dof``. With relative force errors (no ``force_se_pN``) its square root
        estimates the relative force error of the data.
    absolute_sigma : bool
        True when ``sigma_nm`` came from the given ``force_se_pN`` / ``extension_se_nm``.
    n_points, n_dropped : int
        Points used, and points dropped (NaN, or outside ``force_range_pN``).
    n_iterations : int
        Rounds of effective-variance re-weighting.
    force_pN, extension_nm : ndarray of shape (n_points,)
        The data used, sorted by force, pN and nm.
    sigma_nm : ndarray of shape (n_points,)
        Effective extension error of each point at the optimum, nm (relative scale when
        ``absolute_sigma`` is False).
    model_extension_nm, residuals_nm : ndarray of shape (n_points,)
        Fitted ``z(F) + offset`` at the data forces and ``extension_nm - model_extension_nm``, nm.
    curve_force_pN, curve_extension_nm : ndarray of shape (200,)
        The fitted curve on a logarithmic force grid spanning the data, for plotting.
    """

    persistence_nm: float
    persistence_se_nm: float
    contour_nm: float
    contour_se_nm: float
    stretch_modulus_pN: float | None
    stretch_modulus_se_pN: float | None
    offset_nm: float
    offset_se_nm: float
    fitted: tuple[str, ...]
    model: str
    temperature_K: float
    chi2: float
    dof: int
    reduced_chi2: float
    absolute_sigma: bool
    n_points: int
    n_dropped: int
    n_iterations: int
    covariance: np.ndarray = field(repr=False)
    force_pN: np.ndarray = field(repr=False)
    extension_nm: np.ndarray = field(repr=False)
    sigma_nm: np.ndarray = field(repr=False)
    model_extension_nm: np.ndarray = field(repr=False)
    residuals_nm: np.ndarray = field(repr=False)
    curve_force_pN: np.ndarray = field(repr=False)
    curve_extension_nm: np.ndarray = field(repr=False)

    def extension(self, force_pN: Any) -> Any:
        """Fitted extension ``z(F) + offset_nm`` (nm) at ``force_pN`` (pN, any shape)."""
        return (
            wlc_extension(
                force_pN,
                persistence_nm=self.persistence_nm,
                contour_nm=self.contour_nm,
                stretch_modulus_pN=self.stretch_modulus_pN,
                temperature_K=self.temperature_K,
                model=self.model,  # type: ignore[arg-type]
            )
            + self.offset_nm
        )

    def force(self, extension_nm: Any) -> Any:
        """Fitted force (pN) at measured extension ``extension_nm`` (nm, offset removed)."""
        return wlc_force(
            np.asarray(extension_nm, dtype=np.float64) - self.offset_nm,
            persistence_nm=self.persistence_nm,
            contour_nm=self.contour_nm,
            stretch_modulus_pN=self.stretch_modulus_pN,
            temperature_K=self.temperature_K,
            model=self.model,  # type: ignore[arg-type]
        )

    def summary(self) -> dict[str, Any]:
        """Return the scalar fields as a dict (for tables and logs)."""
        return {k: v for k, v in self.__dict__.items() if not isinstance(v, np.ndarray)}


def _check_fit_names(fit: Any) -> tuple[str, ...]:
    names = (fit,) if isinstance(fit, str) else tuple(fit)
    if not names:
        raise ValueError("fit must name at least one parameter")
    bad = [n for n in names if n not in PARAMETERS]
    if bad:
        raise ValueError(f"fit: unknown parameter(s) {bad}; choose from {list(PARAMETERS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"fit names a parameter twice: {list(names)}")
    return tuple(n for n in PARAMETERS if n in names)


def _errors(value: Any, name: str, n: int) -> np.ndarray:
    arr = _array(value, name)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ShapeError(f"{name} must be a scalar or have shape ({n},), got {arr.shape}")
    return arr


def fit_wlc(
    force_pN: Any,
    extension_nm: Any,
    *,
    force_se_pN: Any = None,
    extension_se_nm: Any = None,
    fit: Sequence[str] = ("persistence", "contour"),
    model: Model = "bouchiat",
    temperature_K: float = 296.15,
    initial: Mapping[str, float] | None = None,
    force_range_pN: tuple[float, float] | None = None,
) -> WLCFit:
    """Fit a worm-like-chain force-extension curve (extension as a function of force).

    The model of the measured extension is ``z(F; P, L, S) + offset`` (:func:`wlc_extension`),
    fitted by weighted least squares with effective-variance weights
    ``sigma_i^2 = (dz/dF * force_se_i)^2 + extension_se_i^2`` recomputed at the current
    parameters until they converge (see the module notes for why this direction).

    Parameters
    ----------
    force_pN : array_like of shape (n,)
        Measured forces, pN, > 0.
    extension_nm : array_like of shape (n,)
        Measured extensions, nm (any sign when an offset is fitted).
    force_se_pN : float or array_like of shape (n,), optional
        Standard errors of the forces, pN, >= 0 (e.g. ``force_se_pN`` of
        :func:`~stacklab.beads.forces_from_table`). Given (with or without ``extension_se_nm``),
        the errors are absolute and the covariance is not rescaled. None: the force errors are
        assumed proportional to the force (a constant relative error, as from spectral
        calibration) of unknown size, estimated from the scatter: the covariance is scaled by
        the reduced chi-square.
    extension_se_nm : float or array_like of shape (n,), optional
        Standard errors of the extensions, nm, >= 0; needs ``force_se_pN`` (use
        ``force_se_pN=0`` for exact forces).
    fit : sequence of str
        Parameters to fit, any of ``"persistence"``, ``"contour"``, ``"stretch_modulus"``,
        ``"offset"``. Parameters not fitted take their value from ``initial``; a missing
        ``stretch_modulus`` means the inextensible model and a missing ``offset`` means 0.
    model : {"bouchiat", "marko_siggia"}
        Interpolation formula (see :func:`wlc_force`).
    temperature_K : float
        Temperature, K.
    initial : mapping of str to float, optional
        Starting values of fitted parameters and values of fixed ones, keyed by the names above
        (persistence and contour nm, stretch_modulus pN, offset nm). Missing starting values
        are chosen automatically: ``stretch_modulus`` 1000 pN, ``offset`` and ``contour`` by
        linear least squares for each persistence length of a coarse grid (0.5 nm to 5 um),
        keeping the best start.
    force_range_pN : (float, float), optional
        Use only points with ``low <= force <= high``, pN (e.g. to leave out overstretching).

    Returns
    -------
    WLCFit
        Parameters with standard errors, chi-square, residuals and the fitted curve.

    Raises
    ------
    ValueError
        For non-positive (finite) forces, negative errors, zero effective errors, unknown
        parameter names, a non-fitted persistence or contour length missing from ``initial``,
        ``extension_se_nm`` without ``force_se_pN``, or no more points than fitted parameters.
    ShapeError
        For arrays of mismatched or non-1-D shapes.

    Notes
    -----
    Rows where the force, the extension or a given error is NaN are dropped (counted in
    ``n_dropped`` and logged). ``P``, ``L`` and ``S`` are fitted in logarithmic form, so they
    stay positive; their standard errors are converted to linear units (to first order).
    """
    model = _check_model(model)
    kbt = _kbt(temperature_K)
    names = _check_fit_names(fit)
    f_all = _array(force_pN, "force_pN")
    z_all = _array(extension_nm, "extension_nm")
    if f_all.ndim != 1:
        raise ShapeError(f"force_pN must be 1-D, got shape {f_all.shape}")
    n_all = f_all.size
    if z_all.shape != (n_all,):
        raise ShapeError(
            f"extension_nm must have the shape of force_pN ({n_all},), got {z_all.shape}"
        )
    if extension_se_nm is not None and force_se_pN is None:
        raise ValueError(
            "extension_se_nm needs force_se_pN (absolute errors); give force_se_pN=0 for exact "
            "forces, or neither for relative force errors scaled by the reduced chi-square"
        )
    absolute = force_se_pN is not None
    fse_all = _errors(force_se_pN, "force_se_pN", n_all) if absolute else np.abs(f_all)
    zse_all = (
        _errors(extension_se_nm, "extension_se_nm", n_all)
        if extension_se_nm is not None
        else np.zeros(n_all)
    )
    finite = np.isfinite(f_all) & np.isfinite(z_all) & np.isfinite(fse_all) & np.isfinite(zse_all)
    if np.any(f_all[finite] <= 0):
        raise ValueError("force_pN must be > 0 (the WLC force of a stretched tether)")
    if np.any(fse_all[finite] < 0):
        raise ValueError("force_se_pN must be >= 0")
    if np.any(zse_all[finite] < 0):
        raise ValueError("extension_se_nm must be >= 0")
    keep = finite.copy()
    if force_range_pN is not None:
        try:
            low, high = (float(v) for v in force_range_pN)
        except (TypeError, ValueError):
            raise ValueError(
                f"force_range_pN must be a pair (low, high) in pN, got {force_range_pN!r}"
            ) from None
        if not low < high:
            raise ValueError(f"force_range_pN must have low < high, got {force_range_pN!r}")
        keep &= (f_all >= low) & (f_all <= high)
    n_dropped = int(n_all - np.count_nonzero(keep))
    if n_dropped:
        logger.info(
            "fit_wlc: %d of %d points dropped (%d NaN)",
            n_dropped,
            n_all,
            int(n_all - np.count_nonzero(finite)),
        )
    order = np.argsort(f_all[keep], kind="stable")
    f = f_all[keep][order]
    z = z_all[keep][order]
    fse = fse_all[keep][order]
    zse = zse_all[keep][order]
    n, k = f.size, len(names)
    if n <= k:
        raise ValueError(
            f"force_pN/extension_nm have {n} usable point(s) for {k} fitted parameter(s) "
            f"{list(names)}: need more points than parameters"
        )

    # ----- fixed values and starting values
    init = dict(initial or {})
    bad = [key for key in init if key not in PARAMETERS]
    if bad:
        raise ValueError(f"initial: unknown parameter(s) {bad}; choose from {list(PARAMETERS)}")
    for key in ("persistence", "contour"):
        if key not in names and key not in init:
            raise ValueError(f"{key!r} is not fitted, so initial[{key!r}] must give its value")
    for key, value in init.items():
        if key == "offset":
            init[key] = float(value)
            if not math.isfinite(init[key]):
                raise ValueError(f"initial['offset'] must be finite, got {value!r}")
        else:
            init[key] = _scalar(value, f"initial[{key!r}]")
    if "stretch_modulus" in names:
        init.setdefault("stretch_modulus", 1000.0)
    values = {
        "persistence": init.get("persistence", 50.0),
        "contour": init.get("contour", 1.0),
        "stretch_modulus": init.get("stretch_modulus", math.inf),
        "offset": init.get("offset", 0.0),
    }

    values = _start_values(values, names, init, f, z, fse, zse, kbt, model)

    # ----- effective-variance least squares (P, L, S as logarithms)
    def unpack(theta: np.ndarray) -> dict[str, float]:
        vals = dict(values)
        for nm, t in zip(names, theta, strict=True):
            # clipped: a parameter the data do not constrain (e.g. S from low forces only)
            # may run away without overflowing
            vals[nm] = math.exp(min(max(t, -700.0), 700.0)) if nm in _LOG_PARAMETERS else float(t)
        return vals

    cache: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def evaluate(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``_evaluate`` at ``theta``, remembered for the Jacobian call at the same point."""
        key = np.asarray(t, dtype=np.float64).tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = _evaluate(f, unpack(t), kbt, model, names)
        return cache[key]

    theta = np.array(
        [math.log(values[nm]) if nm in _LOG_PARAMETERS else values[nm] for nm in names]
    )
    sig = _sigma(_evaluate(f, values, kbt, model, names)[1], fse, zse)
    n_iter = 0
    while True:
        n_iter += 1
        w = 1.0 / sig

        def residuals(t: np.ndarray, w: np.ndarray = w) -> np.ndarray:
            return (z - evaluate(t)[0]) * w

        def jacobian(t: np.ndarray, w: np.ndarray = w) -> np.ndarray:
            return -evaluate(t)[2] * w[:, None]

        result = optimize.least_squares(
            residuals, theta, jac=jacobian, method="lm", xtol=1e-12, ftol=1e-12, gtol=1e-12
        )
        if not result.success:
            logger.warning("fit_wlc: least squares stopped: %s", result.message)
        change = float(np.max(np.abs(result.x - theta)))
        theta = result.x
        values = unpack(theta)
        model_z, slope, dz = _evaluate(f, values, kbt, model, names)
        sig = _sigma(slope, fse, zse)
        if change < 1e-8:  # relative change of P, L, S; offset in nm
            break
        if n_iter == _MAX_REWEIGHT:
            logger.warning(
                "fit_wlc: effective-variance weights did not settle in %d rounds", n_iter
            )
            break

    # ----- statistics
    resid = z - model_z
    chi2 = float(np.sum((resid / sig) ** 2))
    dof = n - k
    red = chi2 / dof
    jac = dz / sig[:, None]
    cov_t = np.linalg.pinv(jac.T @ jac)
    if not absolute:
        cov_t = cov_t * red
    scale = np.array([values[nm] if nm in _LOG_PARAMETERS else 1.0 for nm in names])
    with np.errstate(over="ignore", invalid="ignore"):
        cov = cov_t * np.outer(scale, scale)
    se = dict.fromkeys(PARAMETERS, 0.0)
    for i, nm in enumerate(names):
        var = cov[i, i]
        se[nm] = float(math.sqrt(var)) if np.isfinite(var) and var >= 0 else math.inf
        rel_se = math.sqrt(max(cov_t[i, i], 0.0)) if nm in _LOG_PARAMETERS else 0.0
        if not math.isfinite(se[nm]) or rel_se > 1.0:
            logger.warning(
                "fit_wlc: %s = %.3g %s is not constrained by the data (standard error %.3g); "
                "fix it through initial= or add data (e.g. high forces for stretch_modulus)",
                nm,
                values[nm],
                _UNITS[nm],
                se[nm],
            )
    extensible = math.isfinite(values["stretch_modulus"])
    curve_f = np.geomspace(f[0], f[-1], 200) if f[-1] > f[0] else np.full(200, f[0])
    x_c, _ = _extension_parts(
        curve_f, values["persistence"], values["contour"], values["stretch_modulus"], kbt, model
    )
    curve_z = values["contour"] * (x_c + curve_f / values["stretch_modulus"]) + values["offset"]
    logger.debug(
        "fit_wlc: %s, chi2/dof %.3g, %d rounds",
        {nm: values[nm] for nm in names},
        red,
        n_iter,
    )
    return WLCFit(
        persistence_nm=float(values["persistence"]),
        persistence_se_nm=se["persistence"],
        contour_nm=float(values["contour"]),
        contour_se_nm=se["contour"],
        stretch_modulus_pN=float(values["stretch_modulus"]) if extensible else None,
        stretch_modulus_se_pN=se["stretch_modulus"] if extensible else None,
        offset_nm=float(values["offset"]),
        offset_se_nm=se["offset"],
        fitted=names,
        model=model,
        temperature_K=float(temperature_K),
        chi2=chi2,
        dof=dof,
        reduced_chi2=red,
        absolute_sigma=absolute,
        n_points=n,
        n_dropped=n_dropped,
        n_iterations=n_iter,
        covariance=cov,
        force_pN=f,
        extension_nm=z,
        sigma_nm=sig,
        model_extension_nm=model_z,
        residuals_nm=resid,
        curve_force_pN=curve_f,
        curve_extension_nm=curve_z,
    )


def _evaluate(
    f: np.ndarray, vals: Mapping[str, float], kbt: float, model: str, names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model extension (nm), slope ``dz/dF`` (nm/pN) and ``dz/dtheta`` (n, len(names)).

    ``theta`` holds ``ln P, ln L, ln S`` and ``offset`` for the names given.
    """
    p, length, s = vals["persistence"], vals["contour"], vals["stretch_modulus"]
    x, dxdf = _extension_parts(f, p, length, s, kbt, model)
    h = x + f / s
    z = length * h + vals["offset"]
    slope = length * (dxdf + 1.0 / s)
    cols = []
    for nm in names:
        if nm == "persistence":  # dz/dlnP = L P dx/dP = L P (F / kT) / g'(x) = L F dx/dF
            cols.append(length * f * dxdf)
        elif nm == "contour":
            cols.append(length * h)
        elif nm == "stretch_modulus":
            cols.append(-length * f / s)
        else:
            cols.append(np.ones_like(f))
    jac = np.stack(cols, axis=1) if cols else np.empty((f.size, 0))
    return z, slope, jac


def _sigma(slope: np.ndarray, fse: np.ndarray, zse: np.ndarray) -> np.ndarray:
    """Effective extension error ``sqrt((dz/dF sigma_F)^2 + sigma_z^2)``, nm."""
    sig = np.sqrt((slope * fse) ** 2 + zse**2)
    if np.any(~(sig > 0)):
        raise ValueError(
            "force_se_pN and extension_se_nm give a zero effective error for some point(s); "
            "give a positive extension_se_nm or force_se_pN"
        )
    return sig


def _start_values(
    values: dict[str, float],
    names: tuple[str, ...],
    init: Mapping[str, float],
    f: np.ndarray,
    z: np.ndarray,
    fse: np.ndarray,
    zse: np.ndarray,
    kbt: float,
    model: str,
) -> dict[str, float]:
    """Starting values: for each trial persistence length, contour and offset by weighted
    linear least squares (the model ``L (x + F/S) + offset`` is linear in them); keep the
    trial with the lowest chi-square."""
    solve_l = "contour" in names and "contour" not in init
    solve_off = "offset" in names and "offset" not in init
    if "persistence" in names and "persistence" not in init:
        trials = np.geomspace(0.5, 5000.0, 9)
    else:
        trials = np.array([values["persistence"]])
    s = values["stretch_modulus"]
    best, best_chi2 = dict(values), math.inf
    for p0 in trials:
        vals = dict(values, persistence=float(p0))
        x, dxdf = _extension_parts(f, vals["persistence"], 1.0, s, kbt, model)
        h = x + f / s
        weights = np.ones_like(f)
        for _ in range(2):  # unweighted, then with the weights of the first solution
            w2 = weights**2
            if solve_l and solve_off:
                a = np.stack([h, np.ones_like(h)], axis=1) * weights[:, None]
                sol = np.linalg.lstsq(a, z * weights, rcond=None)[0]
                vals["contour"], vals["offset"] = float(sol[0]), float(sol[1])
            elif solve_l:
                vals["contour"] = float(np.sum(w2 * h * (z - vals["offset"])) / np.sum(w2 * h * h))
            elif solve_off:
                vals["offset"] = float(np.sum(w2 * (z - vals["contour"] * h)) / np.sum(w2))
            if not (math.isfinite(vals["contour"]) and vals["contour"] > 0):
                vals["contour"] = float(max(np.max(np.abs(z)), 1.0))
            sig = np.sqrt((vals["contour"] * (dxdf + 1.0 / s) * fse) ** 2 + zse**2)
            if not np.all(sig > 0):
                break
            weights = 1.0 / sig
        chi2 = float(np.sum(((z - vals["contour"] * h - vals["offset"]) * weights) ** 2))
        if chi2 < best_chi2:
            best, best_chi2 = vals, chi2
    return best


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def fit_wlc_table(
    table: Any,
    *,
    direction: Literal["perpendicular", "parallel", "both"] = "both",
    use_force_se: bool = True,
    **fit_kwargs: Any,
) -> Any:
    """Fit a WLC curve per bead to forces measured at several magnet positions.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`~stacklab.beads.forces_from_table` for several magnet positions
        (concatenated): columns ``bead, extension_nm, force_pN``, ``direction`` unless
        ``direction="both"``, and, if present and ``use_force_se``, ``force_se_pN``. Rows
        with NaN force are dropped.
    direction : {"both", "perpendicular", "parallel"}
        Which force estimates to use: the two axes are independent estimates of the same force,
        so "both" uses every row.
    use_force_se : bool
        Weight by the ``force_se_pN`` column (absolute errors); False (or no such column):
        relative force errors scaled by the reduced chi-square.
    **fit_kwargs
        Passed to :func:`fit_wlc` (``fit``, ``model``, ``temperature_K``, ``initial``,
        ``extension_se_nm`` as a scalar, ``force_range_pN``).

    Returns
    -------
    pandas.DataFrame
        One row per bead: ``bead, n_points, persistence_nm, persistence_se_nm, contour_nm,
        contour_se_nm, stretch_modulus_pN, stretch_modulus_se_pN, offset_nm, offset_se_nm, chi2,
        dof, reduced_chi2`` (``stretch_modulus_*`` NaN for the inextensible model). Beads whose
        fit failed (e.g. too few points) hold NaN, with the reason logged.
    """
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    if direction not in ("both", "perpendicular", "parallel"):
        raise ValueError(
            f"direction must be 'both', 'perpendicular' or 'parallel', got {direction!r}"
        )
    needed = {"bead", "extension_nm", "force_pN"} | (
        {"direction"} if direction != "both" else set()
    )
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(f"table lacks the column(s) {sorted(missing)}")
    if "force_se_pN" in fit_kwargs:
        raise TypeError("fit_wlc_table takes force_se_pN from the table (see use_force_se)")
    rows = table if direction == "both" else table[table["direction"] == direction]
    with_se = use_force_se and "force_se_pN" in rows.columns
    keys = (
        "persistence_nm",
        "persistence_se_nm",
        "contour_nm",
        "contour_se_nm",
        "stretch_modulus_pN",
        "stretch_modulus_se_pN",
        "offset_nm",
        "offset_se_nm",
        "chi2",
        "dof",
        "reduced_chi2",
    )
    out = []
    for bead, group in rows.groupby("bead", sort=True):
        group = group[np.isfinite(group["force_pN"].to_numpy(dtype=np.float64))]
        row: dict[str, Any] = {"bead": bead, "n_points": len(group)}
        try:
            res = fit_wlc(
                group["force_pN"].to_numpy(dtype=np.float64),
                group["extension_nm"].to_numpy(dtype=np.float64),
                force_se_pN=group["force_se_pN"].to_numpy(dtype=np.float64) if with_se else None,
                **fit_kwargs,
            )
        except ValueError as err:
            logger.warning("bead %s: no WLC fit (%s)", bead, err)
            row |= dict.fromkeys(keys, np.nan)
        else:
            row |= {key: getattr(res, key) for key in keys}
            row["n_points"] = res.n_points
            for key in ("stretch_modulus_pN", "stretch_modulus_se_pN"):
                row[key] = np.nan if row[key] is None else row[key]
        out.append(row)
    return pd.DataFrame(out, columns=["bead", "n_points", *keys])
