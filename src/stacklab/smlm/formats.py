"""Localization files: ThunderSTORM CSV, Picasso HDF5 with its YAML sidecar, and simple YAML.

ThunderSTORM CSV (``.csv``)
    A header of quoted column names with units (``"frame","x [nm]","y [nm]",...``) and one
    row of numbers per localization. ThunderSTORM numbers frames **from 1**; :class:`Locs` from 0,
    so the reader subtracts ``frame_base`` (1) and the writer adds it. Lengths in ``px`` (with
    ``pixel_size_nm``) and ``um`` are converted to nm on reading; intensities must be in photons.

Picasso HDF5 (``.hdf5``/``.h5``) + YAML (``.yaml`` next to it)
    Dataset ``locs``: a compound (record) array with ``frame`` (uint32), ``x``, ``y`` (pixels),
    ``photons``, ``sx``, ``sy`` (pixels), ``bg`` (photons per pixel), ``lpx``, ``lpy`` (pixels)
    and optional ``z`` (nm), ``ellipticity``, ``net_gradient``, ``group``, ``len``...; float32 as
    Picasso writes it. The sidecar is a YAML stream of mappings, one per processing step;
    ``Width``, ``Height``, ``Frames`` and ``Pixelsize`` (nm) are read from it.

YAML
    :func:`read_yaml` / :func:`write_yaml` handle the subset Picasso and stacklab write (PyYAML is
    not a dependency): ``---``-separated documents of ``key: value`` mappings, nested block
    mappings, block and flow sequences of scalars, plain/single-/double-quoted scalars with
    YAML 1.1 resolution of null, booleans, integers and floats (as PyYAML does). Anything else
    (anchors, tags, multi-line scalars) raises :class:`~stacklab.errors.FileFormatError`.

Every writer goes through :func:`stacklab.io.atomic_path`: an interrupted write leaves the old
file (or none), never a truncated one.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import FileFormatError
from ..io.atomic import atomic_path
from .locs import REQUIRED_COLUMNS, STANDARD_COLUMNS, Locs, split_unit

__all__ = [
    "CSV_SUFFIXES",
    "HDF5_SUFFIXES",
    "load_locs",
    "read_picasso_hdf5",
    "read_thunderstorm_csv",
    "read_yaml",
    "save_locs",
    "write_picasso_hdf5",
    "write_thunderstorm_csv",
    "write_yaml",
    "yaml_sidecar",
]

logger = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv",)
HDF5_SUFFIXES = (".hdf5", ".h5")

# ============================================================================================
# YAML subset
# ============================================================================================

_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"}
_FALSE = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N"}
_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$")
_FLOAT = re.compile(
    r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?)$"
)
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")
_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f",
            "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\"}  # fmt: skip


def _resolve(text: str) -> Any:
    """A plain (unquoted) scalar as YAML 1.1 (PyYAML) resolves it."""
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT.match(text):
        return int(text.replace("_", ""))
    if _FLOAT.match(text):
        return float(text.replace("_", ""))
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


def _strip_comment(text: str) -> str:
    """Remove a trailing `` # comment`` from a plain scalar."""
    m = re.search(r"(^|\s)#", text)
    return text[: m.start()].rstrip() if m else text.rstrip()


def _scalar(text: str, where: str) -> Any:
    text = text.strip()
    if not text:
        return None
    if text[0] == "'":
        end = _closing_single(text)
        if end is None or _strip_comment(text[end + 1 :]):
            raise FileFormatError(
                f"{where}: unterminated or malformed single-quoted scalar "
                "(multi-line scalars are not supported)"
            )
        return text[1:end].replace("''", "'")
    if text[0] == '"':
        value, end = _double_quoted(text, where)
        if _strip_comment(text[end + 1 :]):
            raise FileFormatError(f"{where}: text after a double-quoted scalar")
        return value
    if text[0] == "[":
        return _flow_sequence(_strip_comment(text), where)
    if text[0] == "{":
        if _strip_comment(text) == "{}":
            return {}
        raise FileFormatError(f"{where}: flow mappings are not supported")
    if text[0] in "&*!|>%@`":
        raise FileFormatError(f"{where}: YAML feature {text[0]!r} is not supported")
    return _resolve(_strip_comment(text))


def _closing_single(text: str) -> int | None:
    i = 1
    while i < len(text):
        if text[i] == "'":
            if i + 1 < len(text) and text[i + 1] == "'":
                i += 2
                continue
            return i
        i += 1
    return None


def _double_quoted(text: str, where: str) -> tuple[str, int]:
    out = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return "".join(out), i
        if ch == "\\":
            if i + 1 >= len(text):
                break
            nxt = text[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            size = {"x": 2, "u": 4, "U": 8}.get(nxt)
            if size is None:
                raise FileFormatError(f"{where}: unknown escape \\{nxt}")
            code = text[i + 2 : i + 2 + size]
            try:
                out.append(chr(int(code, 16)))
            except ValueError:
                raise FileFormatError(f"{where}: bad escape \\{nxt}{code}") from None
            i += 2 + size
            continue
        out.append(ch)
        i += 1
    raise FileFormatError(
        f"{where}: unterminated double-quoted scalar (multi-line scalars are not supported)"
    )


def _flow_sequence(text: str, where: str) -> list:
    if not text.endswith("]"):
        raise FileFormatError(f"{where}: unterminated flow sequence")
    inner = text[1:-1].strip()
    if not inner:
        return []
    parts, start, quote, i = [], 0, None, 0
    while i < len(inner):
        ch = inner[i]
        if quote == "'":
            if ch == "'" and inner[i + 1 : i + 2] == "'":
                i += 1
            elif ch == "'":
                quote = None
        elif quote == '"':
            if ch == "\\":
                i += 1
            elif ch == '"':
                quote = None
        elif ch in "'\"" and not inner[start:i].strip():
            quote = ch
        elif ch in "[]{}":
            raise FileFormatError(f"{where}: nested flow collections are not supported")
        elif ch == ",":
            parts.append(inner[start:i])
            start = i + 1
        i += 1
    if quote is not None:
        raise FileFormatError(f"{where}: unterminated quoted item in a flow sequence")
    parts.append(inner[start:])
    return [_scalar(part, where) for part in parts]


def _split_key(body: str, where: str) -> tuple[str, str]:
    """Split ``key: value`` (the key may be quoted)."""
    if body[0] in "'\"":
        if body[0] == "'":
            end = _closing_single(body)
            if end is None:
                raise FileFormatError(f"{where}: unterminated quoted key")
            key = body[1:end].replace("''", "'")
        else:
            key, end = _double_quoted(body, where)
        rest = body[end + 1 :]
        if not rest.startswith(":"):
            raise FileFormatError(f"{where}: expected ':' after the key")
        return key, rest[1:]
    m = re.search(r":(\s|$)", body)
    if m is None:
        raise FileFormatError(f"{where}: expected 'key: value', got {body!r}")
    return body[: m.start()].rstrip(), body[m.end() :]


def _parse_block(lines: list[tuple[int, int, str]], pos: int, indent: int, name: str) -> tuple:
    """Parse the block mapping or sequence at ``indent`` starting at ``pos``: (value, next pos)."""
    first = lines[pos][2]
    if first.startswith("- ") or first == "-":
        items = []
        while pos < len(lines) and lines[pos][1] == indent and lines[pos][2][:1] == "-":
            lineno, _, body = lines[pos]
            if not (body == "-" or body.startswith("- ")):
                break
            items.append(_scalar(body[1:], f"{name} line {lineno}"))
            pos += 1
        return items, pos
    mapping: dict[str, Any] = {}
    while pos < len(lines) and lines[pos][1] == indent:
        lineno, _, body = lines[pos]
        where = f"{name} line {lineno}"
        if body.startswith("- "):
            raise FileFormatError(f"{where}: a sequence item where a key was expected")
        key, rest = _split_key(body, where)
        pos += 1
        rest = rest.strip()
        if _strip_comment(rest) == "" and not rest.startswith(("'", '"')):
            # nested block (deeper indent, or a sequence at the same indent) or null
            if pos < len(lines) and (
                lines[pos][1] > indent
                or (lines[pos][1] == indent and lines[pos][2][:2] in ("- ", "-"))
            ):
                value, pos = _parse_block(lines, pos, lines[pos][1], name)
            else:
                value = None
        else:
            value = _scalar(rest, where)
        if key in mapping:
            raise FileFormatError(f"{where}: duplicate key {key!r}")
        mapping[key] = value
    if pos < len(lines) and lines[pos][1] > indent:
        raise FileFormatError(f"{name} line {lines[pos][0]}: unexpected indentation")
    return mapping, pos


def read_yaml(source: str | os.PathLike | io.TextIOBase, *, name: str | None = None) -> list:
    """Read a YAML stream (the subset described in the module notes).

    Parameters
    ----------
    source : str, path-like or text file
        A path (``str`` without a newline that names a file, or a path object), an open text
        file, or the YAML text itself.
    name : str, optional
        Name used in error messages.

    Returns
    -------
    list
        One item per document: a dict (or a list for a document that is a sequence, or None
        for an empty document).

    Raises
    ------
    FileFormatError
        For constructs outside the subset, tabs in indentation, or malformed lines; the message
        names the line.
    """
    if hasattr(source, "read"):
        text = source.read()
        name = name or getattr(source, "name", "<stream>")
    elif isinstance(source, os.PathLike) or (
        isinstance(source, str) and "\n" not in source and Path(source).is_file()
    ):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"{path}: not a UTF-8 text file ({exc})") from None
        name = name or str(path)
    else:
        text = str(source)
        name = name or "<yaml>"
    docs: list[list[tuple[int, int, str]]] = [[]]
    started = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        stripped = line.lstrip(" ")
        if stripped.startswith("\t") or (line and line[0] == "\t"):
            raise FileFormatError(f"{name} line {lineno}: tabs are not allowed in indentation")
        if not stripped or stripped.startswith("#"):
            continue
        if line.startswith("%"):
            continue  # directives (%YAML 1.1)
        if line == "---" or line.startswith("--- "):
            if started or docs[-1]:
                docs.append([])
            started = True
            rest = line[3:].strip()
            if rest:
                raise FileFormatError(f"{name} line {lineno}: content after '---' not supported")
            continue
        if line == "...":
            continue
        started = True
        docs[-1].append((lineno, len(line) - len(stripped), stripped))
    if not started:
        return []
    out = []
    for lines in docs:
        if not lines:
            out.append(None)
            continue
        if lines[0][1] != 0:
            raise FileFormatError(f"{name} line {lines[0][0]}: document must start unindented")
        if len(lines) == 1 and lines[0][2] in ("{}", "[]"):
            out.append({} if lines[0][2] == "{}" else [])
            continue
        value, pos = _parse_block(lines, 0, 0, name)
        if pos != len(lines):
            raise FileFormatError(f"{name} line {lines[pos][0]}: unexpected content")
        out.append(value)
    return out


_PLAIN_UNSAFE = re.compile(r"(^[-?:,\[\]{}#&*!|>'\"%@`\s])|(:\s)|(\s#)|(:$)|(\s$)")


def _format_float(v: float) -> str:
    if math.isnan(v):
        return ".nan"
    if math.isinf(v):
        return ".inf" if v > 0 else "-.inf"
    text = repr(float(v))
    if "e" in text:
        mant, exp = text.split("e")
        if "." not in mant:
            mant += ".0"
        if exp[0] not in "+-":
            exp = "+" + exp
        text = f"{mant}e{exp}"
    elif "." not in text:
        text += ".0"
    return text


def _format_str(s: str) -> str:
    if "\n" in s or any(ord(c) < 32 and c != "\t" for c in s):
        body = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        body = "".join(c if ord(c) >= 32 else f"\\x{ord(c):02x}" for c in body)
        return f'"{body}"'
    if s == "" or _PLAIN_UNSAFE.search(s) or not isinstance(_resolve(s), str):
        return "'" + s.replace("'", "''") + "'"
    return s


def _format_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return _format_float(float(v))
    if isinstance(v, str):
        return _format_str(v)
    raise TypeError(f"cannot write {type(v).__name__} {v!r} to YAML (scalars, lists, dicts only)")


def _emit(mapping: Mapping, indent: int, out: list[str]) -> None:
    pad = " " * indent
    for key, value in mapping.items():
        k = _format_str(str(key))
        if isinstance(value, Mapping):
            if value:
                out.append(f"{pad}{k}:")
                _emit(value, indent + 2, out)
            else:
                out.append(f"{pad}{k}: {{}}")
        elif isinstance(value, list | tuple | np.ndarray):
            items = list(np.asarray(value).tolist()) if isinstance(value, np.ndarray) else value
            if any(isinstance(i, Mapping | list | tuple) for i in items):
                raise TypeError(f"YAML value of {key!r}: nested sequences are not supported")
            out.append(f"{pad}{k}: [{', '.join(_format_scalar(i) for i in items)}]")
        else:
            out.append(f"{pad}{k}: {_format_scalar(value)}")


def write_yaml(
    documents: Iterable[Mapping[str, Any]], path: str | os.PathLike | None = None
) -> str:
    """Write mappings as a YAML stream (one ``---``-separated document each).

    Parameters
    ----------
    documents : iterable of mapping
        Each a mapping of str to scalars (None, bool, int, float, str), lists of scalars
        (written as ``[a, b]``) or nested mappings. Key order is kept.
    path : str or path-like, optional
        File to write (atomically); the text is returned either way.

    Returns
    -------
    str
        The YAML text, readable by :func:`read_yaml` and by PyYAML with the same values.
    """
    out: list[str] = []
    for i, doc in enumerate(documents):
        if not isinstance(doc, Mapping):
            raise TypeError(f"YAML document {i} must be a mapping, got {type(doc).__name__}")
        if i:
            out.append("---")
        if doc:
            _emit(doc, 0, out)
        else:
            out.append("{}")
    text = "\n".join(out) + "\n"
    if path is not None:
        with atomic_path(path) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
    return text


# ============================================================================================
# ThunderSTORM CSV
# ============================================================================================

_LENGTH_UNITS = {"nm": 1.0, "um": 1000.0, "µm": 1000.0, "μm": 1000.0, "px": None}
_TS_ALIASES = {"uncertainty_xy [nm]": "uncertainty [nm]"}


def _last_line_fields(path: Path) -> tuple[int, int, str] | None:
    """(line number, number of fields, text) of the last non-empty line of a CSV file."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 65536))
        tail = fh.read().decode("utf-8", errors="replace")
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    if not lines:
        return None
    with open(path, "rb") as fh:
        n_lines = sum(1 for _ in fh)
    last = lines[-1]
    return n_lines, len(next(csv.reader([last]))), last


def read_thunderstorm_csv(
    path: str | os.PathLike,
    *,
    pixel_size_nm: float | None = None,
    image_shape: tuple[int, int] | None = None,
    n_frames: int | None = None,
    frame_base: int = 1,
) -> Locs:
    """Read a ThunderSTORM CSV file of localizations.

    Parameters
    ----------
    path : str or path-like
        The ``.csv`` file.
    pixel_size_nm : float, optional
        Pixel size in nm: kept as metadata, and needed when the file has lengths in ``px``.
    image_shape, n_frames : optional
        Metadata for the table (ThunderSTORM CSV does not store them).
    frame_base : int
        Number of the first frame in the file (1 for ThunderSTORM, 0 for 0-based exports).

    Returns
    -------
    Locs
        Frames 0-based; lengths in nm.

    Raises
    ------
    FileFormatError
        If the file is missing, empty, truncated (a last line with fewer fields than the
        header), lacks ``frame``/``x``/``y``, has non-numeric values, intensities not in
        photons, or lengths in ``px`` without ``pixel_size_nm``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"no such file: {str(path)!r}")
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise FileFormatError(f"{path}: empty file (no header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{path}: not a valid CSV file ({exc})") from None
    n_fields = len(df.columns)
    last = _last_line_fields(path)
    if last is not None and len(df) and last[1] < n_fields:
        raise FileFormatError(
            f"{path}: line {last[0]} has {last[1]} of {n_fields} fields (truncated file?)"
        )
    rename: dict[str, str] = {}
    for c in list(df.columns):
        if c in _TS_ALIASES and _TS_ALIASES[c] not in df.columns:
            rename[c] = _TS_ALIASES[c]
            continue
        name, unit = split_unit(c)
        if unit is None:
            continue
        target = f"{name} [nm]"
        if unit in _LENGTH_UNITS and unit != "nm":
            factor = _LENGTH_UNITS[unit]
            if factor is None:
                if pixel_size_nm is None:
                    raise FileFormatError(
                        f"{path}: column {c!r} is in pixels; pass pixel_size_nm to convert it"
                    )
                factor = float(pixel_size_nm)
            df[c] = _numeric(df[c], c, path) * factor
            rename[c] = target
        elif name in ("intensity", "offset", "bkgstd") and unit != "photon":
            raise FileFormatError(
                f"{path}: column {c!r} is in {unit!r}; stacklab needs photons "
                "(export from ThunderSTORM with photon units, or convert with the camera gain)"
            )
    df = df.rename(columns=rename)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise FileFormatError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)} "
            "(expected ThunderSTORM names such as 'x [nm]')"
        )
    for c in df.columns:
        if c in STANDARD_COLUMNS:
            df[c] = _numeric(df[c], c, path)
    for c in REQUIRED_COLUMNS:
        bad = df[c].isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise FileFormatError(f"{path}: column {c!r} is empty at data row {row + 1}")
    frames = df["frame"].to_numpy(dtype=np.float64) - float(frame_base)
    if len(frames) and frames.min() < 0:
        raise FileFormatError(
            f"{path}: frame numbers start at {frames.min() + frame_base:g} but frame_base="
            f"{frame_base} (ThunderSTORM numbers frames from 1; use frame_base=0 for 0-based files)"
        )
    df["frame"] = frames
    try:
        return Locs(
            df,
            pixel_size_nm=pixel_size_nm,
            image_shape=image_shape,
            n_frames=n_frames,
        )
    except (TypeError, ValueError) as exc:
        raise FileFormatError(f"{path}: {exc}") from None


def _numeric(values: pd.Series, column: str, path: Path) -> pd.Series:
    try:
        return pd.to_numeric(values)
    except (TypeError, ValueError):
        raise FileFormatError(f"{path}: column {column!r} holds non-numeric values") from None


def write_thunderstorm_csv(locs: Locs, path: str | os.PathLike, *, frame_base: int = 1) -> Path:
    """Write a table as ThunderSTORM CSV (quoted header, frames from ``frame_base``).

    Parameters
    ----------
    locs : Locs
        The table; every column is written (standard ones first), floats with full precision
        (a read gives back the same float64 values).
    path : str or path-like
        Destination ``.csv`` (written atomically).
    frame_base : int
        Number written for the first frame (1 for ThunderSTORM).

    Returns
    -------
    pathlib.Path
    """
    if not isinstance(locs, Locs):
        raise TypeError(f"locs must be a Locs table, got {type(locs).__name__}")
    df = locs.df
    df["frame"] = df["frame"] + int(frame_base)
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    return path


# ============================================================================================
# Picasso HDF5 + YAML
# ============================================================================================

#: Picasso fields of a localization, in the order Picasso writes them.
PICASSO_FIELDS = ("frame", "x", "y", "photons", "sx", "sy", "bg", "lpx", "lpy")
#: Extra Locs columns stored under another field name in Picasso files.
_EXTRA_FIELD = {"bkgstd [photon]": "bkgstd", "z [nm]": "z"}


def yaml_sidecar(path: str | os.PathLike) -> Path:
    """The ``.yaml`` metadata file that goes with a Picasso ``.hdf5`` file."""
    return Path(path).with_suffix(".yaml")


def _find(info: list, key: str) -> Any:
    """The value of ``key`` in the last YAML document that has it (None if absent)."""
    value = None
    for doc in info:
        if isinstance(doc, Mapping) and key in doc:
            value = doc[key]
    return value


def read_picasso_hdf5(
    path: str | os.PathLike, *, pixel_size_nm: float | None = None, dataset: str = "locs"
) -> Locs:
    """Read a Picasso localization file (``.hdf5`` and its ``.yaml`` sidecar).

    Parameters
    ----------
    path : str or path-like
        The ``.hdf5`` file; metadata is read from the ``.yaml`` file of the same name.
    pixel_size_nm : float, optional
        Pixel size in nm. Needed when the sidecar has no ``Pixelsize``; when both are given
        they must agree (to 1e-6).
    dataset : str
        Name of the compound dataset (``locs`` for localizations).

    Returns
    -------
    Locs
        Positions, widths and precisions converted from pixels to nm; ``photons`` ->
        ``intensity [photon]``, ``bg`` -> ``offset [photon]``; ``sigma [nm]`` and
        ``uncertainty [nm]`` are the means of the x and y values (which are also kept as
        ``sigma1 [nm]``/``sigma2 [nm]``, ``uncertainty_x [nm]``/``uncertainty_y [nm]`` where they
        differ); other fields are kept under their own names. Metadata from the sidecar:
        ``image_shape`` = (Height, Width), ``n_frames`` = Frames, and the remaining scalar keys
        of the last document in ``meta``.

    Raises
    ------
    FileFormatError
        If the file is missing, not HDF5 or truncated, lacks the dataset or the fields
        ``frame``, ``x``, ``y``, or no pixel size is known.
    ValueError
        If ``pixel_size_nm`` disagrees with the sidecar's ``Pixelsize``.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"no such file: {str(path)!r}")
    try:
        with h5py.File(path, "r") as fh:
            if dataset not in fh:
                raise FileFormatError(
                    f"{path}: no dataset {dataset!r} (found {sorted(fh.keys())}); "
                    "not a Picasso localization file"
                )
            ds = fh[dataset]
            if not isinstance(ds, h5py.Dataset) or ds.dtype.names is None:
                raise FileFormatError(f"{path}: {dataset!r} is not a compound (record) dataset")
            rec = ds[()]
    except FileFormatError:
        raise
    except OSError as exc:
        raise FileFormatError(
            f"{path}: cannot read as HDF5 (truncated or not HDF5: {exc})"
        ) from None
    names = rec.dtype.names
    missing = [f for f in ("frame", "x", "y") if f not in names]
    if missing:
        raise FileFormatError(f"{path}: dataset {dataset!r} lacks field(s) {missing}; has {names}")

    side = yaml_sidecar(path)
    info: list = []
    if side.is_file():
        info = [d for d in read_yaml(side) if isinstance(d, Mapping)]
    file_px = _find(info, "Pixelsize")
    if file_px is not None:
        try:
            file_px = float(file_px)
        except (TypeError, ValueError):
            raise FileFormatError(f"{side}: Pixelsize {file_px!r} is not a number") from None
        if not (math.isfinite(file_px) and file_px > 0):
            raise FileFormatError(f"{side}: Pixelsize must be > 0 nm, got {file_px!r}")
    if pixel_size_nm is not None:
        given = float(pixel_size_nm)
        if not (math.isfinite(given) and given > 0):
            raise ValueError(f"pixel_size_nm must be finite and > 0, got {pixel_size_nm!r}")
        if file_px is not None and abs(given - file_px) > 1e-6 * file_px:
            raise ValueError(
                f"pixel_size_nm={given:g} disagrees with Pixelsize {file_px:g} nm in {side}"
            )
        px = given
    elif file_px is not None:
        px = file_px
    else:
        where = f"{side} has no Pixelsize" if side.is_file() else f"{side} is missing"
        raise FileFormatError(f"{path}: {where}; pass pixel_size_nm to read it")

    cols: dict[str, np.ndarray] = {}
    used = set()

    def take(name: str) -> np.ndarray:
        used.add(name)
        return np.asarray(rec[name], dtype=np.float64)

    cols["frame"] = np.asarray(rec["frame"]).astype(np.int64)
    used.add("frame")
    cols["x [nm]"] = take("x") * px
    cols["y [nm]"] = take("y") * px
    if "z" in names:
        cols["z [nm]"] = take("z")
    for a, b, mean_name, first, second in (
        ("sx", "sy", "sigma [nm]", "sigma1 [nm]", "sigma2 [nm]"),
        ("lpx", "lpy", "uncertainty [nm]", "uncertainty_x [nm]", "uncertainty_y [nm]"),
    ):
        if a in names and b in names:
            va, vb = take(a) * px, take(b) * px
            same = np.array_equal(va, vb, equal_nan=True)
            cols[mean_name] = va if same else 0.5 * (va + vb)
            if not same:
                cols[first], cols[second] = va, vb
    if "photons" in names:
        cols["intensity [photon]"] = take("photons")
    if "bg" in names:
        cols["offset [photon]"] = take("bg")
    inverse = {v: k for k, v in _EXTRA_FIELD.items()}
    for name in names:
        if name in used:
            continue
        cols[inverse.get(name, name)] = np.asarray(rec[name])
    meta = {}
    if info:
        meta = {
            k: v
            for k, v in info[-1].items()
            if k not in ("Pixelsize", "Width", "Height", "Frames")
            and not isinstance(v, Mapping | list)
        }
    width, height, frames = (_find(info, k) for k in ("Width", "Height", "Frames"))
    shape = (int(height), int(width)) if width is not None and height is not None else None
    try:
        return Locs(
            cols,
            pixel_size_nm=px,
            image_shape=shape,
            n_frames=int(frames) if frames is not None else None,
            meta=meta,
        )
    except (TypeError, ValueError) as exc:
        raise FileFormatError(f"{path}: {exc}") from None


def write_picasso_hdf5(
    locs: Locs,
    path: str | os.PathLike,
    *,
    float_dtype: Any = np.float32,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write a table as a Picasso localization file (``.hdf5`` + ``.yaml`` sidecar).

    Parameters
    ----------
    locs : Locs
        The table; it must know its pixel size. Standard columns become Picasso fields
        (``x``, ``y``, ``sx``, ``sy``, ``lpx``, ``lpy`` in pixels; ``photons``, ``bg``;
        ``z`` in nm); other columns are stored as fields of their own name.
    path : str or path-like
        Destination ``.hdf5``; the sidecar is written next to it with suffix ``.yaml``.
    float_dtype : dtype
        Float type of the fields (float32 as Picasso; float64 keeps every digit).
    info : mapping, optional
        Extra keys for the sidecar's stacklab document (scalars or lists of scalars).

    Returns
    -------
    pathlib.Path
        The ``.hdf5`` path.

    Raises
    ------
    ValueError
        If the table has no pixel size, or frames do not fit in uint32.
    """
    import h5py

    if not isinstance(locs, Locs):
        raise TypeError(f"locs must be a Locs table, got {type(locs).__name__}")
    px = locs.pixel_size_nm
    if px is None:
        raise ValueError("write_picasso_hdf5 needs a table with pixel_size_nm (Picasso uses px)")
    fdt = np.dtype(float_dtype)
    if fdt.kind != "f":
        raise TypeError(f"float_dtype must be a float type, got {fdt}")
    df = locs.df
    frame = df["frame"].to_numpy()
    if len(frame) and frame.max() >= 2**32:
        raise ValueError("frame numbers do not fit Picasso's uint32 field")
    fields: dict[str, np.ndarray] = {"frame": frame.astype(np.uint32)}
    done = {"frame"}

    def put(name: str, values: np.ndarray) -> None:
        fields[name] = np.asarray(values, dtype=fdt)

    put("x", df["x [nm]"].to_numpy() / px)
    put("y", df["y [nm]"].to_numpy() / px)
    done |= {"x [nm]", "y [nm]"}
    if "intensity [photon]" in df:
        put("photons", df["intensity [photon]"].to_numpy())
        done.add("intensity [photon]")
    for mean_name, first, second, a, b in (
        ("sigma [nm]", "sigma1 [nm]", "sigma2 [nm]", "sx", "sy"),
        ("uncertainty [nm]", "uncertainty_x [nm]", "uncertainty_y [nm]", "lpx", "lpy"),
    ):
        if first in df and second in df:
            put(a, df[first].to_numpy() / px)
            put(b, df[second].to_numpy() / px)
            done |= {first, second}
            if mean_name in df:
                mean = 0.5 * (df[first].to_numpy() + df[second].to_numpy())
                if not np.allclose(mean, df[mean_name].to_numpy(), equal_nan=True):
                    fields[mean_name] = df[mean_name].to_numpy().astype(fdt)
                done.add(mean_name)
        elif mean_name in df:
            put(a, df[mean_name].to_numpy() / px)
            put(b, df[mean_name].to_numpy() / px)
            done.add(mean_name)
    if "offset [photon]" in df:
        put("bg", df["offset [photon]"].to_numpy())
        done.add("offset [photon]")
    absent = [f for f in PICASSO_FIELDS if f not in fields]
    if absent:
        logger.warning(
            "Picasso fields %s are missing from the table; Picasso may need them", absent
        )
    for c in df.columns:
        if c in done:
            continue
        name = _EXTRA_FIELD.get(c, c)
        values = df[c].to_numpy()
        fields[name] = values.astype(fdt) if values.dtype.kind == "f" else values
    if any(v.dtype.kind == "O" for v in fields.values()):
        bad = [k for k, v in fields.items() if v.dtype.kind == "O"]
        raise TypeError(f"columns {bad} hold Python objects; HDF5 needs numbers")
    order = [f for f in PICASSO_FIELDS if f in fields] + [
        f for f in fields if f not in PICASSO_FIELDS
    ]
    fields = {k: fields[k] for k in order}
    rec = np.empty(len(df), dtype=[(k, v.dtype) for k, v in fields.items()])
    for k, v in fields.items():
        rec[k] = v

    if locs.image_shape is not None:
        height, width = locs.image_shape
    else:
        height = math.ceil(df["y [nm]"].max() / px + 0.5) if len(df) else 1
        width = math.ceil(df["x [nm]"].max() / px + 0.5) if len(df) else 1
        logger.info("image shape unknown; writing Width=%d, Height=%d from the data", width, height)
    n_frames = (
        locs.n_frames if locs.n_frames is not None else int(frame.max()) + 1 if len(frame) else 0
    )
    from .. import __version__

    movie_doc = {"Frames": int(n_frames), "Height": int(height), "Width": int(width)}
    ours: dict[str, Any] = {"Generated by": f"stacklab {__version__}", "Pixelsize": float(px)}
    for k, v in {**locs.meta, **dict(info or {})}.items():
        if k not in ours and k not in movie_doc:
            ours[str(k)] = v
    path = Path(path)
    side = yaml_sidecar(path)
    if side == path:
        raise ValueError(f"path must not end in .yaml, got {str(path)!r}")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            fh.create_dataset("locs", data=rec)
    write_yaml([movie_doc, ours], side)
    return path


# ============================================================================================
# dispatch
# ============================================================================================


def _suffix(path: str | os.PathLike) -> str:
    return Path(path).suffix.lower()


def save_locs(locs: Locs, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Write a table in the format given by the suffix.

    ``.csv``: :func:`write_thunderstorm_csv`; ``.hdf5``/``.h5``: :func:`write_picasso_hdf5`.
    Keyword arguments go to the writer.

    Raises
    ------
    ValueError
        For another suffix.
    """
    suffix = _suffix(path)
    if suffix in CSV_SUFFIXES:
        return write_thunderstorm_csv(locs, path, **kwargs)
    if suffix in HDF5_SUFFIXES:
        return write_picasso_hdf5(locs, path, **kwargs)
    raise ValueError(
        f"unknown localization file type {suffix!r} for {str(path)!r}: use .csv (ThunderSTORM) "
        "or .hdf5 (Picasso)"
    )


def load_locs(path: str | os.PathLike, **kwargs: Any) -> Locs:
    """Read a table in the format given by the suffix (``.csv`` or ``.hdf5``/``.h5``).

    Keyword arguments go to :func:`read_thunderstorm_csv` or :func:`read_picasso_hdf5`.
    """
    suffix = _suffix(path)
    if suffix in CSV_SUFFIXES:
        return read_thunderstorm_csv(path, **kwargs)
    if suffix in HDF5_SUFFIXES:
        return read_picasso_hdf5(path, **kwargs)
    raise ValueError(
        f"unknown localization file type {suffix!r} for {str(path)!r}: use .csv (ThunderSTORM) "
        "or .hdf5 (Picasso)"
    )
