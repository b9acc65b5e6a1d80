"""Multi-page TIFF stacks with tifffile: lazy reading, atomic writing.

:func:`read_tiff` memory-maps a stack stored contiguously and uncompressed (what
:func:`write_tiff` produces) and otherwise returns a :class:`TiffStack` that decodes only the
pages a slice asks for. Pages must all share one shape and dtype.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..errors import FileFormatError
from . import atomic
from ._common import (
    LazyArray,
    as_path,
    host_array,
    is_lazy,
    iter_frame_blocks,
    normalize_index,
    require_exists,
)

__all__ = ["TIFF_SUFFIXES", "TiffStack", "read_tiff", "write_tiff"]

logger = logging.getLogger(__name__)

#: File name endings read and written as TIFF.
TIFF_SUFFIXES = (".tif", ".tiff")

#: Classic TIFF addresses 4 GiB; above this size (with room for tags) BigTIFF is used.
_BIGTIFF_BYTES = 2**32 - 2**25

# Substrings of tifffile log messages that mean the file structure is broken.
_FATAL_WORDS = ("invalid", "failed", "truncat", "corrupt", "out of range", "not a tiff")


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _capture_tifffile_warnings() -> Iterator[_Capture]:
    """Collect tifffile's warnings (it logs, rather than raises, on broken page chains)."""
    tlog = logging.getLogger("tifffile")
    handler = _Capture()
    propagate = tlog.propagate
    tlog.addHandler(handler)
    tlog.propagate = False
    try:
        yield handler
    finally:
        tlog.removeHandler(handler)
        tlog.propagate = propagate


def _broken(path: Path, detail: Any) -> FileFormatError:
    return FileFormatError(
        f"{str(path)!r} is not a readable TIFF (truncated or corrupt?): {detail}"
    )


class TiffStack(LazyArray):
    """A multi-page TIFF read lazily: slicing decodes only the pages it selects.

    Parameters
    ----------
    path : pathlib.Path
        The file (kept open until :meth:`close`).
    tif : tifffile.TiffFile
        The open file.
    pages : list of TiffPage or TiffFrame
        The pages in stack order.
    shape : tuple of int
        ``(*leading, *page_shape)``; leading axes enumerate pages in C order.
    dtype : numpy.dtype
        Data type of every page.

    Notes
    -----
    Supports ``shape``, ``dtype``, ``ndim``, ``size``, ``len``, ``np.asarray`` and indexing with
    ints, slices, ellipsis and integer/boolean arrays on the page (frame) axes. Reads are
    serialized by a lock, so it can be shared by threads. Use :func:`read_tiff` to create one.
    """

    def __init__(
        self,
        path: Path,
        tif: tifffile.TiffFile,
        pages: list[Any],
        shape: tuple[int, ...],
        dtype: np.dtype,
    ) -> None:
        self.path = path
        self._tif: tifffile.TiffFile | None = tif
        self._pages = pages
        self._page_shape = tuple(int(s) for s in pages[0].shape)
        self._shape = tuple(int(s) for s in shape)
        self._lead = self._shape[: len(self._shape) - len(self._page_shape)]
        self._dtype = np.dtype(dtype)
        self._lock = threading.Lock()

    @property
    def shape(self) -> tuple[int, ...]:
        """Stack shape, e.g. ``(n_pages, rows, cols)``."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        """Data type of the pages."""
        return self._dtype

    @property
    def n_pages(self) -> int:
        """Number of TIFF pages (frames)."""
        return len(self._pages)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._tif is None

    def _read_page(self, i: int) -> np.ndarray:
        if self._tif is None:
            raise ValueError(f"TiffStack of {str(self.path)!r} is closed")
        try:
            with self._lock:
                page = self._pages[i].asarray()
        except (IndexError, TypeError):
            raise
        except Exception as exc:  # decoders raise many types on corrupt data
            raise _broken(self.path, f"page {i}: {exc}") from exc
        if page.shape != self._page_shape:
            raise _broken(self.path, f"page {i} decoded to shape {page.shape}")
        return page

    def __getitem__(self, index: Any) -> np.ndarray:
        index = normalize_index(index, self.ndim)
        nlead = len(self._lead)
        lead, rest = index[:nlead], index[nlead:]
        grid = np.arange(len(self._pages)).reshape(self._lead)
        sel = np.asarray(grid[lead])
        out = np.empty((*sel.shape, *self._page_shape), dtype=self._dtype)
        flat = out.reshape((-1, *self._page_shape))
        for k, i in enumerate(sel.ravel()):
            flat[k] = self._read_page(int(i))
        if rest:
            out = out[(slice(None),) * sel.ndim + tuple(rest)]
        return out

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._tif is not None:
            with contextlib.suppress(Exception):
                self._tif.close()
            self._tif = None

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> TiffStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = read_tiff(state["path"], memmap=False)
        self.__dict__.update(other.__dict__)
        other._tif = None  # the file now belongs to self; other's __del__ must not close it

    def __repr__(self) -> str:
        return f"<TiffStack {str(self.path)!r} shape={self._shape} dtype={self._dtype}>"


def _check_extent(path: Path, pages: list[Any], size: int) -> None:
    for i, page in enumerate(pages):
        offsets = getattr(page, "dataoffsets", ())
        counts = getattr(page, "databytecounts", ())
        if any(o + c > size for o, c in zip(offsets, counts)):
            raise _broken(path, f"page {i} data end beyond the end of the file ({size} bytes)")


def read_tiff(path: str | os.PathLike, *, memmap: bool = True) -> np.memmap | TiffStack:
    """Open a (multi-page) TIFF stack lazily.

    Parameters
    ----------
    path : str or path-like
        TIFF or BigTIFF file. Every page must have the same shape and dtype.
    memmap : bool
        Memory-map the pixel data when they are stored contiguously and uncompressed (no copy,
        no decoding). False always returns a :class:`TiffStack`.

    Returns
    -------
    numpy.memmap or TiffStack
        Read-only lazy array. A stack written by :func:`write_tiff` (or tifffile) keeps its
        shape, e.g. ``(n_frames, rows, cols)``; other multi-page files are
        ``(n_pages, *page_shape)``, a single page is ``page_shape``.

    Raises
    ------
    FileFormatError
        If the file is missing, not a TIFF, truncated/corrupt (page chain or pixel data past the
        end of the file), or if its pages differ in shape or dtype (the message names the first
        page that differs from page 0).
    """
    path = as_path(path)
    require_exists(path, "TIFF file")
    size = path.stat().st_size
    with _capture_tifffile_warnings() as captured:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:
            raise _broken(path, exc) from exc
        try:
            series = list(tif.series)
            n_pages = len(tif.pages)
        except Exception as exc:
            tif.close()
            raise _broken(path, exc) from exc
    fatal = [r.getMessage() for r in captured.records]
    fatal = [m for m in fatal if any(w in m.lower() for w in _FATAL_WORDS)]
    for record in captured.records:
        if record.getMessage() not in fatal:
            logger.warning("tifffile: %s", record.getMessage())
    if fatal:
        tif.close()
        raise _broken(path, "; ".join(fatal))
    try:
        return _open_series(path, tif, series, n_pages, size, memmap)
    except BaseException:
        tif.close()
        raise


def _open_series(
    path: Path, tif: tifffile.TiffFile, series: list, n_pages: int, size: int, memmap: bool
) -> np.memmap | TiffStack:
    if not series or n_pages == 0:
        raise FileFormatError(f"{str(path)!r} holds no image pages")
    if len(series) == 1:
        s = series[0]
        if memmap and s.dataoffset is not None:
            if s.dataoffset + s.nbytes > size:
                raise _broken(
                    path,
                    f"{s.nbytes} bytes of pixel data at offset {s.dataoffset} end beyond the end "
                    f"of the file ({size} bytes)",
                )
            try:
                mm = tifffile.memmap(path, series=0, mode="r")
            except Exception as exc:
                raise _broken(path, exc) from exc
            tif.close()
            return mm
        pages = list(s.pages)
        shape = tuple(s.shape)
    else:
        pages = list(tif.pages)
        shape = None
    if any(p is None for p in pages):
        raise _broken(path, "a page of the series is missing")
    first = pages[0]
    for i, page in enumerate(pages[1:], start=1):
        if page.shape != first.shape or page.dtype != first.dtype:
            raise FileFormatError(
                f"{str(path)!r}: page {i} has shape {page.shape} {page.dtype}, page 0 has "
                f"{first.shape} {first.dtype}; a stack needs pages of one shape and dtype"
            )
    page_shape = tuple(first.shape)
    k = len(page_shape)
    fits = (
        shape is not None
        and tuple(shape[len(shape) - k :]) == page_shape
        and math.prod(shape[: len(shape) - k]) == len(pages)
    )
    if not fits:
        shape = (len(pages), *page_shape)
    _check_extent(path, pages, size)
    return TiffStack(path, tif, pages, shape, np.dtype(first.dtype))


def _page_iter(data: Any, page_shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    for _, block in iter_frame_blocks(data):
        yield from block.reshape((-1, *page_shape))


def write_tiff(
    path: str | os.PathLike,
    stack: Any,
    *,
    bigtiff: bool | None = None,
    compression: str | None = None,
    photometric: str = "minisblack",
    **tifffile_kwargs: Any,
) -> Path:
    """Write an image or a stack of frames to a (multi-page) TIFF atomically.

    Parameters
    ----------
    path : str or path-like
        Destination file (its folder must exist).
    stack : array-like
        ``(rows, cols)`` image or ``(n_frames, rows, cols)`` (any leading axes) stack: NumPy,
        CuPy, Dask or a lazy array (written page by page, so it need not fit in memory).
    bigtiff : bool or None
        BigTIFF format; None (auto) uses it when the data exceed about 4 GiB.
    compression : str, optional
        tifffile compression (``"zlib"``, ``"zstd"``...). None writes uncompressed contiguous
        data, which :func:`read_tiff` memory-maps.
    photometric : str
        ``"minisblack"`` stores every trailing 2-D frame as a grey page (no RGB guessing);
        pass ``"rgb"`` for colour images with samples last.
    **tifffile_kwargs
        Passed to :func:`tifffile.imwrite` (e.g. ``metadata``, ``resolution``).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = as_path(path)
    lazy = is_lazy(stack) and not isinstance(stack, np.memmap)
    if not lazy:
        stack = host_array(stack)
    shape = tuple(int(s) for s in stack.shape)
    dtype = np.dtype(stack.dtype)
    if len(shape) < 2:
        raise ValueError(f"stack must have at least 2 dimensions (rows, cols), got shape {shape}")
    if bigtiff is None:
        bigtiff = math.prod(shape) * dtype.itemsize > _BIGTIFF_BYTES
    kwargs = dict(tifffile_kwargs)
    kwargs.setdefault("photometric", photometric)
    with atomic.atomic_path(path) as tmp:
        if lazy and len(shape) > 2:
            k = 3 if kwargs["photometric"] in ("rgb", "RGB") else 2
            data = _page_iter(stack, shape[len(shape) - k :])
            tifffile.imwrite(
                tmp,
                data,
                shape=shape,
                dtype=dtype,
                bigtiff=bigtiff,
                compression=compression,
                **kwargs,
            )
        else:
            data = host_array(stack[...]) if lazy else stack
            tifffile.imwrite(tmp, data, bigtiff=bigtiff, compression=compression, **kwargs)
    return path
