"""Acquisition configuration: cameras and the channels imaged on them.

A :class:`Config` lists the cameras (:class:`CameraConfig`: gain, offset, quantum efficiency,
read noise, exposure, optional sCMOS per-pixel maps) and the channels (:class:`ChannelConfig`:
which camera, which region of its chip, the pixel size in the sample plane, the emission
wavelength). Units are fixed and in the field names or docstrings:

* ``gain`` in photoelectrons per ADU (e-/ADU); ``offset`` (baseline) in ADU;
* ``qe`` dimensionless in (0, 1]; ``read_noise`` in e- rms; ``variance`` maps in ADU^2;
* ``exposure_s`` in seconds; ``pixel_size_nm`` in nm (one value or ``(y, x)``);
* ``roi`` as ``(row0, col0, rows, cols)`` pixels of the camera chip.

So ``photons = (ADU - offset) * gain / qe``. Configurations round-trip through dicts, JSON
(per-pixel maps as nested lists) and YAML (one flat document per camera and per channel,
``kind: camera`` / ``kind: channel``; per-pixel maps cannot go into YAML). Invalid values raise
errors that name the field, e.g. ``cameras[0].gain must be > 0``.

Examples
--------
>>> cfg = Config.single(pixel_size_nm=100.0, gain=0.25, offset=100.0, exposure_s=0.05)
>>> cfg.pixel_sizes()
[(100.0, 100.0)]
>>> Config.from_yaml(cfg.to_yaml()) == cfg
True
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..io.atomic import atomic_path

__all__ = ["CameraConfig", "ChannelConfig", "Config", "channel_pixel_sizes"]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool | str | bytes) or value is None:
        raise TypeError(f"{where} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{where} must be finite, got {value!r}")
    return v


def _pixel_pair(value: Any, where: str) -> tuple[float, float]:
    if isinstance(value, str | bytes) or value is None or isinstance(value, bool):
        raise TypeError(f"{where} must be a number or a (y, x) pair of nm, got {value!r}")
    if np.ndim(value) == 0:
        v = _number(value, where)
        pair = (v, v)
    else:
        items = list(np.asarray(value, dtype=object).ravel())
        if len(items) != 2:
            raise ValueError(f"{where} must be a number or a (y, x) pair of nm, got {value!r}")
        pair = (_number(items[0], where), _number(items[1], where))
    if pair[0] <= 0 or pair[1] <= 0:
        raise ValueError(f"{where} must be > 0 nm, got {value!r}")
    return pair


def channel_pixel_sizes(value: Any, n_channels: int) -> list[tuple[float, float]]:
    """One ``(y, x)`` pixel size in nm per channel, from the forms smlmLP accepts.

    Parameters
    ----------
    value : float, (float, float), or sequence of those
        One size for all channels; one ``(y, x)`` pair for all channels (when ``n_channels``
        is not 2); or one entry (number or pair) per channel. A length-2 sequence with two
        channels is read as one entry per channel.
    n_channels : int
        Number of channels.

    Returns
    -------
    list of (float, float)

    Raises
    ------
    ValueError
        If the length fits neither rule, or a size is not finite and positive.

    Examples
    --------
    >>> channel_pixel_sizes(100.0, 2)
    [(100.0, 100.0), (100.0, 100.0)]
    >>> channel_pixel_sizes([(100.0, 100.0), (110.0, 110.0)], 2)
    [(100.0, 100.0), (110.0, 110.0)]
    """
    if isinstance(n_channels, bool) or not isinstance(n_channels, int | np.integer):
        raise TypeError(f"n_channels must be an integer, got {n_channels!r}")
    if n_channels < 1:
        raise ValueError(f"n_channels must be >= 1, got {n_channels}")
    if np.ndim(value) == 0 and not isinstance(value, Sequence | np.ndarray):
        return [_pixel_pair(value, "channels_pixels_nm")] * n_channels
    items = list(value)
    if len(items) == n_channels:
        return [_pixel_pair(v, f"channels_pixels_nm[{i}]") for i, v in enumerate(items)]
    if len(items) == 2 and all(np.ndim(v) == 0 for v in items):
        return [_pixel_pair(items, "channels_pixels_nm")] * n_channels
    raise ValueError(
        f"channels_pixels_nm must be one size, one (y, x) pair, or one entry per channel "
        f"({n_channels}), got {len(items)} entries"
    )


def _map(value: Any, where: str, *, nonneg: bool = False) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.array(value, dtype=np.float64)  # a copy: the config never aliases caller data
    if arr.ndim != 2 or arr.size == 0:
        raise ShapeError(f"{where} must be a 2-D (rows, cols) map, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where} holds NaN or infinite values")
    if nonneg and np.any(arr < 0):
        raise ValueError(f"{where} must be >= 0")
    arr.setflags(write=False)
    return arr


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and bool(np.array_equal(a, b))
        )
    return a == b


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True, eq=False)
class CameraConfig:
    """One camera.

    Attributes
    ----------
    name : str
        Unique name, referred to by :attr:`ChannelConfig.camera`.
    gain : float
        Photoelectrons per ADU (e-/ADU), > 0.
    offset : float or ndarray of shape (rows, cols)
        Baseline (dark level) in ADU, or a per-pixel map (sCMOS).
    qe : float
        Quantum efficiency in (0, 1].
    read_noise : float
        Read noise in e- rms, >= 0.
    exposure_s : float
        Exposure time per frame in seconds, > 0.
    variance : ndarray of shape (rows, cols), optional
        Per-pixel read-noise variance in ADU^2 (sCMOS).
    shape : (int, int), optional
        Chip size ``(rows, cols)``; per-pixel maps must have this shape.
    """

    name: str = "camera"
    gain: float = 1.0
    offset: float | np.ndarray = 100.0
    qe: float = 1.0
    read_noise: float = 0.0
    exposure_s: float = 0.05
    variance: np.ndarray | None = None
    shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self._validate("camera")

    def _validate(self, where: str) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"{where}.name must be a non-empty string, got {self.name!r}")
        gain = _number(self.gain, f"{where}.gain")
        if gain <= 0:
            raise ValueError(f"{where}.gain must be > 0 e-/ADU, got {self.gain!r}")
        qe = _number(self.qe, f"{where}.qe")
        if not 0 < qe <= 1:
            raise ValueError(f"{where}.qe must be in (0, 1], got {self.qe!r}")
        rn = _number(self.read_noise, f"{where}.read_noise")
        if rn < 0:
            raise ValueError(f"{where}.read_noise must be >= 0 e- rms, got {self.read_noise!r}")
        exp = _number(self.exposure_s, f"{where}.exposure_s")
        if exp <= 0:
            raise ValueError(f"{where}.exposure_s must be > 0 s, got {self.exposure_s!r}")
        if np.ndim(self.offset) == 0 and not isinstance(self.offset, list):
            offset: Any = _number(self.offset, f"{where}.offset")
        else:
            offset = _map(self.offset, f"{where}.offset")
        variance = _map(self.variance, f"{where}.variance", nonneg=True)
        shape = self.shape
        if shape is not None:
            try:
                shape = tuple(int(s) for s in shape)
            except (TypeError, ValueError):
                raise TypeError(f"{where}.shape must be (rows, cols), got {self.shape!r}") from None
            if len(shape) != 2 or min(shape) < 1:
                raise ValueError(f"{where}.shape must be two positive integers, got {self.shape!r}")
        for label, m in (("offset", offset), ("variance", variance)):
            if isinstance(m, np.ndarray):
                if shape is None:
                    shape = m.shape
                elif m.shape != shape:
                    raise ShapeError(
                        f"{where}.{label} map has shape {m.shape}, the chip is {shape}"
                    )
        for name, value in (
            ("gain", gain),
            ("qe", qe),
            ("read_noise", rn),
            ("exposure_s", exp),
            ("offset", offset),
            ("variance", variance),
            ("shape", shape),
        ):
            set_(self, name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CameraConfig):
            return NotImplemented
        return all(_eq(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    __hash__ = None  # type: ignore[assignment]

    @property
    def photons_per_adu(self) -> float:
        """``gain / qe``: photons per ADU above the offset."""
        return self.gain / self.qe

    @property
    def has_maps(self) -> bool:
        """True when the offset or the variance is a per-pixel map."""
        return isinstance(self.offset, np.ndarray) or self.variance is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (maps as nested lists, tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class ChannelConfig:
    """One channel: a region of a camera chip seen through one optical path.

    Attributes
    ----------
    name : str
        Unique name.
    camera : str
        Name of the :class:`CameraConfig` that records it.
    pixel_size_nm : float or (float, float)
        Pixel size in the sample plane, nm; stored as a ``(y, x)`` pair.
    roi : (int, int, int, int), optional
        ``(row0, col0, rows, cols)`` of the chip (the whole chip when None).
    wavelength_nm : float, optional
        Emission wavelength in nm.
    psf_sigma_nm : float, optional
        Expected Gaussian PSF width in nm.
    """

    name: str = "channel0"
    camera: str = "camera"
    pixel_size_nm: float | tuple[float, float] = 100.0
    roi: tuple[int, int, int, int] | None = None
    wavelength_nm: float | None = None
    psf_sigma_nm: float | None = None

    def __post_init__(self) -> None:
        self._validate("channel")

    def _validate(self, where: str) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"{where}.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.camera, str) or not self.camera:
            raise ValueError(f"{where}.camera must be a camera name, got {self.camera!r}")
        set_(self, "pixel_size_nm", _pixel_pair(self.pixel_size_nm, f"{where}.pixel_size_nm"))
        if self.roi is not None:
            try:
                roi = tuple(int(v) for v in self.roi)
            except (TypeError, ValueError):
                raise TypeError(
                    f"{where}.roi must be (row0, col0, rows, cols), got {self.roi!r}"
                ) from None
            if len(roi) != 4 or roi[0] < 0 or roi[1] < 0 or roi[2] < 1 or roi[3] < 1:
                raise ValueError(
                    f"{where}.roi must be (row0 >= 0, col0 >= 0, rows >= 1, cols >= 1), "
                    f"got {self.roi!r}"
                )
            set_(self, "roi", roi)
        for name in ("wavelength_nm", "psf_sigma_nm"):
            v = getattr(self, name)
            if v is not None:
                v = _number(v, f"{where}.{name}")
                if v <= 0:
                    raise ValueError(f"{where}.{name} must be > 0 nm, got {v!r}")
                set_(self, name, v)

    @property
    def pixel_size_scalar_nm(self) -> float:
        """The pixel size as one number (square pixels only)."""
        py, px = self.pixel_size_nm
        if py != px:
            raise ValueError(f"channel {self.name!r} has non-square pixels {self.pixel_size_nm}")
        return py

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class Config:
    """Cameras and channels of an acquisition.

    Attributes
    ----------
    cameras : tuple of CameraConfig
        At least one, unique names.
    channels : tuple of ChannelConfig
        At least one, unique names, each naming an existing camera; a channel's ``roi`` must
        fit in its camera's chip when the chip size is known.
    """

    cameras: tuple[CameraConfig, ...] = field(default_factory=lambda: (CameraConfig(),))
    channels: tuple[ChannelConfig, ...] = field(default_factory=lambda: (ChannelConfig(),))

    def __post_init__(self) -> None:
        cams = (
            tuple(self.cameras) if not isinstance(self.cameras, CameraConfig) else (self.cameras,)
        )
        chans = (
            tuple(self.channels)
            if not isinstance(self.channels, ChannelConfig)
            else (self.channels,)
        )
        if not cams:
            raise ValueError("cameras must list at least one camera")
        if not chans:
            raise ValueError("channels must list at least one channel")
        for i, c in enumerate(cams):
            if not isinstance(c, CameraConfig):
                raise TypeError(f"cameras[{i}] must be a CameraConfig, got {type(c).__name__}")
        for i, c in enumerate(chans):
            if not isinstance(c, ChannelConfig):
                raise TypeError(f"channels[{i}] must be a ChannelConfig, got {type(c).__name__}")
        for label, items in (("cameras", cams), ("channels", chans)):
            names = [c.name for c in items]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{label} names must be unique, repeated: {dup}")
        by_name = {c.name: c for c in cams}
        for i, ch in enumerate(chans):
            cam = by_name.get(ch.camera)
            if cam is None:
                raise ValueError(
                    f"channels[{i}].camera is {ch.camera!r}, not one of the cameras {list(by_name)}"
                )
            if ch.roi is not None and cam.shape is not None:
                r0, c0, nr, nc = ch.roi
                if r0 + nr > cam.shape[0] or c0 + nc > cam.shape[1]:
                    raise ValueError(
                        f"channels[{i}].roi {ch.roi} does not fit camera {cam.name!r} of shape "
                        f"{cam.shape}"
                    )
        object.__setattr__(self, "cameras", cams)
        object.__setattr__(self, "channels", chans)

    # ---------------------------------------------------------------------------------------

    @classmethod
    def single(
        cls,
        *,
        pixel_size_nm: float | tuple[float, float] = 100.0,
        gain: float = 1.0,
        offset: float | np.ndarray = 100.0,
        qe: float = 1.0,
        read_noise: float = 0.0,
        exposure_s: float = 0.05,
        variance: np.ndarray | None = None,
        wavelength_nm: float | None = None,
        psf_sigma_nm: float | None = None,
    ) -> Config:
        """One camera with one channel covering its whole chip (units as in the classes)."""
        cam = CameraConfig(
            gain=gain,
            offset=offset,
            qe=qe,
            read_noise=read_noise,
            exposure_s=exposure_s,
            variance=variance,
        )
        ch = ChannelConfig(
            pixel_size_nm=pixel_size_nm, wavelength_nm=wavelength_nm, psf_sigma_nm=psf_sigma_nm
        )
        return cls((cam,), (ch,))

    def channel(self, key: int | str = 0) -> ChannelConfig:
        """A channel by index or name."""
        if isinstance(key, str):
            for ch in self.channels:
                if ch.name == key:
                    return ch
            raise KeyError(f"no channel {key!r}; channels are {[c.name for c in self.channels]}")
        if isinstance(key, bool) or not isinstance(key, int | np.integer):
            raise TypeError(f"channel key must be an index or a name, got {key!r}")
        if not -len(self.channels) <= key < len(self.channels):
            raise IndexError(f"channel index {key} out of range ({len(self.channels)} channels)")
        return self.channels[key]

    def camera_of(self, channel: int | str = 0) -> CameraConfig:
        """The camera that records a channel (index or name)."""
        name = self.channel(channel).camera
        return next(c for c in self.cameras if c.name == name)

    def pixel_sizes(self) -> list[tuple[float, float]]:
        """``(y, x)`` pixel size in nm of every channel, in order."""
        return [ch.pixel_size_nm for ch in self.channels]

    def to_camera(self, channel: int | str = 0) -> Any:
        """The :class:`stacklab.smlm.camera.Camera` model of one channel.

        Per-pixel maps are cropped to the channel's ``roi``. The channel needs square pixels.
        """
        from .camera import Camera

        ch = self.channel(channel)
        cam = self.camera_of(channel)
        offset, variance = cam.offset, cam.variance
        if ch.roi is not None:
            r0, c0, nr, nc = ch.roi
            if isinstance(offset, np.ndarray):
                offset = offset[r0 : r0 + nr, c0 : c0 + nc]
            if variance is not None:
                variance = variance[r0 : r0 + nr, c0 : c0 + nc]
        return Camera(
            offset=offset,
            gain=cam.gain,
            qe=cam.qe,
            pixel_size_nm=ch.pixel_size_scalar_nm,
            read_noise=cam.read_noise,
            variance=variance,
        )

    # ---------------------------------------------------------------------------------------
    # serialisation
    # ---------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """``{"cameras": [...], "channels": [...]}`` of plain values (JSON-ready)."""
        return {
            "cameras": [c.to_dict() for c in self.cameras],
            "channels": [c.to_dict() for c in self.channels],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        if not isinstance(data, Mapping):
            raise TypeError(f"config must be a mapping, got {type(data).__name__}")
        extra = set(data) - {"cameras", "channels"}
        if extra:
            raise ValueError(f"unknown config keys {sorted(extra)}; expected cameras, channels")
        cams = [
            _build(CameraConfig, d, f"cameras[{i}]") for i, d in enumerate(data.get("cameras", []))
        ]
        chans = [
            _build(ChannelConfig, d, f"channels[{i}]")
            for i, d in enumerate(data.get("channels", []))
        ]
        return cls(tuple(cams), tuple(chans))

    def to_json(self, **kwargs: Any) -> str:
        """JSON text (maps as nested lists); ``kwargs`` go to :func:`json.dumps`."""
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> Config:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config JSON is malformed: {exc}") from None
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        """YAML text: one flat document per camera (``kind: camera``) and per channel.

        Raises
        ------
        ValueError
            If a camera has per-pixel maps (use JSON).
        """
        from .formats import write_yaml

        docs = []
        for cam in self.cameras:
            if cam.has_maps:
                raise ValueError(
                    f"camera {cam.name!r} has per-pixel maps, which YAML config files cannot "
                    "hold; save the config as .json"
                )
            docs.append({"kind": "camera", **cam.to_dict()})
        for ch in self.channels:
            docs.append({"kind": "channel", **ch.to_dict()})
        return write_yaml(docs)

    @classmethod
    def from_yaml(cls, text: str) -> Config:
        """Inverse of :meth:`to_yaml` (documents with ``kind: camera`` or ``kind: channel``)."""
        from .formats import read_yaml

        cams, chans = [], []
        for i, doc in enumerate(read_yaml(text if "\n" in text else text + "\n")):
            if doc is None:
                continue
            if not isinstance(doc, Mapping) or doc.get("kind") not in ("camera", "channel"):
                raise ValueError(f"YAML document {i} needs 'kind: camera' or 'kind: channel'")
            body = {k: v for k, v in doc.items() if k != "kind"}
            (cams if doc["kind"] == "camera" else chans).append(body)
        return cls.from_dict({"cameras": cams, "channels": chans})

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``.json`` or ``.yaml``/``.yml`` (atomically)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = self.to_json()
        elif suffix in (".yaml", ".yml"):
            text = self.to_yaml()
        else:
            raise ValueError(f"config files are .json or .yaml, got {str(path)!r}")
        with atomic_path(path) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Config:
        """Read a ``.json`` or ``.yaml``/``.yml`` config file."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".json", ".yaml", ".yml"):
            raise ValueError(f"config files are .json or .yaml, got {str(path)!r}")
        text = path.read_text(encoding="utf-8")
        return cls.from_json(text) if suffix == ".json" else cls.from_yaml(text)

    def replace_camera(self, name: str, **changes: Any) -> Config:
        """A copy with one camera's fields changed (validated again)."""
        cams = tuple(replace(c, **changes) if c.name == name else c for c in self.cameras)
        if all(c.name != name for c in self.cameras):
            raise KeyError(f"no camera {name!r}")
        return Config(cams, self.channels)


def _build(kind: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise TypeError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(kind)}
    extra = set(data) - known
    if extra:
        raise ValueError(f"{where} has unknown keys {sorted(extra)}; known: {sorted(known)}")
    kw = dict(data)
    for key in ("pixel_size_nm", "roi", "shape"):
        if isinstance(kw.get(key), list):
            kw[key] = tuple(kw[key])
    obj = kind.__new__(kind)
    for f in fields(kind):
        object.__setattr__(obj, f.name, kw.get(f.name, _default(f)))
    obj._validate(where)  # messages name the field, e.g. "cameras[1].gain"
    return obj


def _default(f: Any) -> Any:
    from dataclasses import MISSING

    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"missing field {f.name}")
