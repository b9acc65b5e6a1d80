"""HDF5 (also CXI, EMD 1.0, NeXus) reading and writing with h5py.

* :func:`read_hdf5` opens one dataset lazily as an :class:`H5Stack` (frames are read on slicing).
* :func:`write_hdf5` writes several datasets and attributes atomically (temporary file + rename).
* :func:`list_datasets` lists every dataset with its shape and dtype.
* :func:`create_hdf5_dataset` returns an :class:`HDF5Sink`: a dataset written frame block by frame
  block (e.g. as ``out=`` of :func:`stacklab.engine.map_frames`), kept in ``<name>.partial`` while
  it is written, renamed to ``<name>`` when complete, and resumable after an interruption.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import FileFormatError
from . import atomic
from ._common import (
    FrameWindow,
    LazyArray,
    as_path,
    axis0_indices,
    default_chunks,
    host_array,
    is_full_slice,
    is_lazy,
    iter_frame_blocks,
    normalize_index,
    require_exists,
)

__all__ = [
    "HDF5_SUFFIXES",
    "H5Stack",
    "HDF5Sink",
    "create_hdf5_dataset",
    "list_datasets",
    "read_hdf5",
    "write_hdf5",
]

logger = logging.getLogger(__name__)

#: File name endings read and written as HDF5.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".cxi", ".emd", ".nxs")

#: Dataset attribute of a :class:`HDF5Sink` partial file: frames 0..n-1 are complete.
PROGRESS_ATTR = "stacklab_frames_done"


def _open(path: Path, mode: str = "r") -> h5py.File:
    """Open ``path`` with h5py, turning h5py's errors into :class:`FileFormatError`."""
    require_exists(path, "HDF5 file")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise FileFormatError(
            f"{str(path)!r} is not a readable HDF5 file (truncated or corrupt?): {exc}"
        ) from exc


def _datasets(group: h5py.Group) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    found: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = (tuple(obj.shape), obj.dtype)

    group.visititems(visit)
    return found


def _describe(found: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> str:
    if not found:
        return "(no datasets)"
    return ", ".join(f"{k!r} {shape} {dtype}" for k, (shape, dtype) in found.items())


def list_datasets(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """List every dataset of an HDF5 file.

    Parameters
    ----------
    path : str or path-like
        HDF5 file.

    Returns
    -------
    dict
        ``{key: (shape, dtype)}`` for each dataset, keys as full paths without a leading ``/``
        (e.g. ``"entry/data/data"``), in h5py's visiting order.

    Raises
    ------
    FileFormatError
        If the file is missing, truncated or not HDF5.
    """
    path = as_path(path)
    with _open(path) as f:
        try:
            return _datasets(f)
        except (OSError, RuntimeError, KeyError) as exc:
            raise FileFormatError(f"cannot list the datasets of {str(path)!r}: {exc}") from exc


def _choose_key(f: h5py.File, path: Path, key: str | None, *, min_ndim: int = 3) -> str:
    """The dataset to open: ``key`` if given (checked), else the single >= min_ndim-D one."""
    found = _datasets(f)
    if key is None:
        candidates = [k for k, (shape, _) in found.items() if len(shape) >= min_ndim]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise FileFormatError(
                f"{str(path)!r} has no dataset with >= {min_ndim} dimensions to open as a stack; "
                f"pass key= (datasets: {_describe(found)})"
            )
        raise FileFormatError(
            f"{str(path)!r} has several datasets with >= {min_ndim} dimensions; pass key= one of "
            + ", ".join(repr(k) for k in candidates)
        )
    name = key.strip("/")
    if name not in f:
        raise FileFormatError(
            f"{str(path)!r} has no dataset {key!r}; available: {_describe(found)}"
        )
    obj = f[name]
    if not isinstance(obj, h5py.Dataset):
        inside = {k[len(name) + 1 :]: v for k, v in found.items() if k.startswith(name + "/")}
        raise FileFormatError(
            f"{key!r} in {str(path)!r} is a group, not a dataset; "
            f"datasets in it: {_describe(inside)}"
        )
    return name


class H5Stack(LazyArray):
    """A dataset of an open HDF5 file, read lazily: frames are read only when sliced.

    Behaves like a read-only array for :mod:`stacklab.engine`: it has ``shape``, ``dtype``,
    ``ndim``, ``size``, ``__len__``, ``__getitem__`` (any basic index; integer arrays along
    axis 0 in any order) and ``__array__`` (reads everything). The file stays open until
    :meth:`close` or the end of a ``with`` block. It can be pickled (the copy reopens the file),
    so it also works with ``dask.array.from_array`` on a ``dask.distributed`` cluster.

    Parameters
    ----------
    path : str or path-like
        HDF5 file.
    key : str, optional
        Dataset path inside the file; None picks the only dataset with >= 3 dimensions.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    key : str
        The dataset's path inside the file (no leading ``/``).
    dataset : h5py.Dataset
        The open dataset.
    """

    def __init__(self, path: str | os.PathLike, key: str | None = None) -> None:
        self.path = as_path(path)
        self._file: h5py.File | None = _open(self.path)
        try:
            self.key = _choose_key(self._file, self.path, key)
            self.dataset: h5py.Dataset = self._file[self.key]
        except BaseException:
            self._file.close()
            self._file = None
            raise

    # -- array protocol -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Dataset shape, frames first, e.g. ``(n_frames, rows, cols)``."""
        return tuple(self._ds.shape)

    @property
    def dtype(self) -> np.dtype:
        """Dataset data type."""
        return self._ds.dtype

    @property
    def chunks(self) -> tuple[int, ...] | None:
        """HDF5 chunk shape, or None for a contiguous dataset."""
        return self._ds.chunks

    @property
    def attrs(self) -> dict[str, Any]:
        """The dataset's attributes (a copy)."""
        return dict(self._ds.attrs)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._file is None or not self._file.id.valid

    @property
    def _ds(self) -> h5py.Dataset:
        if self.closed:
            raise ValueError(f"H5Stack of {str(self.path)!r}:{self.key!r} is closed")
        return self.dataset

    def __getitem__(self, index: Any) -> np.ndarray:
        ds = self._ds
        index = normalize_index(index, ds.ndim) if ds.ndim else index
        reorder = None
        if isinstance(index, tuple) and index and not isinstance(index[0], int | slice):
            # h5py wants increasing unique indices: read those, then put them in the asked order.
            sel = axis0_indices(index[0], ds.shape[0])
            if isinstance(sel, np.ndarray):
                uniq, reorder = np.unique(sel, return_inverse=True)
                index = (uniq, *index[1:])
        try:
            out = ds[index]
        except (OSError, RuntimeError) as exc:
            raise FileFormatError(
                f"cannot read {self.key!r}{list(index)} from {str(self.path)!r} "
                f"(truncated or corrupt?): {exc}"
            ) from exc
        if reorder is not None:
            out = out[reorder]
        return out

    def _read_all(self) -> np.ndarray:
        return self[()] if self.ndim == 0 else self[:]

    # -- resources ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None

    def __enter__(self) -> H5Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path), "key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["key"])

    def __repr__(self) -> str:
        if self.closed:
            return f"<H5Stack {str(self.path)!r}:{self.key!r} (closed)>"
        return f"<H5Stack {str(self.path)!r}:{self.key!r} shape={self.shape} dtype={self.dtype}>"


def read_hdf5(path: str | os.PathLike, key: str | None = None) -> H5Stack:
    """Open one dataset of an HDF5 file lazily.

    Parameters
    ----------
    path : str or path-like
        HDF5 / CXI / EMD / NeXus file.
    key : str, optional
        Dataset path inside the file (``"entry/data/data"``; a leading ``/`` is allowed).
        None picks the only dataset with at least 3 dimensions.

    Returns
    -------
    H5Stack
        Lazy array of the dataset's shape (a stack is ``(n_frames, rows, cols)``); close it (or
        use it in a ``with`` block) when done. ``np.asarray(result)`` reads everything.

    Raises
    ------
    FileFormatError
        If the file is missing, truncated or not HDF5, if ``key`` is missing or a group (the
        message lists the datasets), or if ``key`` is None and not exactly one dataset has
        >= 3 dimensions.
    """
    return H5Stack(path, key)


def _compression_kwargs(compression: Any) -> dict[str, Any]:
    if compression is None:
        return {}
    if isinstance(compression, Mapping):  # e.g. hdf5plugin.Blosc(), h5py filter kwargs
        return dict(compression)
    if isinstance(compression, str | int):
        return {"compression": compression}
    raise TypeError(
        f"compression must be None, a filter name ('gzip', 'lzf'), a filter id or an "
        f"hdf5plugin filter, got {compression!r}"
    )


def _prepare(data: Any) -> Any:
    """Host data that h5py can store (lazy arrays are left lazy)."""
    if isinstance(data, str | bytes) or is_lazy(data):
        return data
    arr = host_array(data)
    if arr.dtype.kind == "U":
        return arr.astype(object).astype(h5py.string_dtype())
    return arr


def _write_dataset(f: h5py.File, key: str, data: Any, compression: Any) -> h5py.Dataset:
    name = key.strip("/")
    if not name:
        raise ValueError("dataset keys must be non-empty paths like 'data' or 'entry/data'")
    if name in f:
        del f[name]
    data = _prepare(data)
    kwargs = _compression_kwargs(compression)
    if isinstance(data, str | bytes):
        return f.create_dataset(name, data=data)
    if is_lazy(data):
        shape = tuple(int(s) for s in data.shape)
        if len(shape) == 0:
            return f.create_dataset(name, data=host_array(data[()]))
        if kwargs:
            kwargs.setdefault("chunks", default_chunks(shape, data.dtype) if all(shape) else True)
        ds = f.create_dataset(name, shape=shape, dtype=data.dtype, **kwargs)
        for start, block in iter_frame_blocks(data):
            ds[start : start + block.shape[0]] = block
        return ds
    if data.ndim == 0:
        return f.create_dataset(name, data=data)
    if kwargs and data.size:
        kwargs.setdefault("chunks", default_chunks(data.shape, data.dtype))
    return f.create_dataset(name, data=data, **kwargs)


def _attr_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return json.dumps(value, default=str)
    if value is None:
        return "None"
    if isinstance(value, Path):
        return str(value)
    return host_array(value) if not isinstance(value, str | bytes | int | float) else value


def _apply_attrs(f: h5py.File, attrs: Mapping[str, Mapping[str, Any]] | None) -> None:
    if not attrs:
        return
    for target, values in attrs.items():
        name = target.strip("/")
        if name and name not in f:
            raise ValueError(f"attrs names {target!r}, which is not a dataset or group in the file")
        obj = f[name] if name else f
        for k, v in values.items():
            obj.attrs[k] = _attr_value(v)


def write_hdf5(
    path: str | os.PathLike,
    datasets: Mapping[str, Any],
    *,
    attrs: Mapping[str, Mapping[str, Any]] | None = None,
    compression: Any = None,
    mode: str = "w",
) -> Path:
    """Write datasets (and attributes) to an HDF5 file atomically.

    The file is written under a temporary name in the same folder and renamed over ``path`` only
    once complete, so a failure leaves ``path`` as it was. With ``mode="a"`` the existing file is
    copied to the temporary first and updated there (copy, then rename).

    Parameters
    ----------
    path : str or path-like
        Destination file (its folder must exist).
    datasets : mapping of str to array-like
        ``{key: data}``; keys may contain groups (``"entry/data/data"``). Values are NumPy, CuPy,
        Dask or lazy arrays (copied in blocks of frames, so larger-than-memory stacks work),
        scalars or strings. An existing dataset of the same key is replaced (``mode="a"``).
    attrs : mapping, optional
        ``{key: {name: value}}`` attributes of written datasets/groups; key ``"/"`` is the file
        itself. Dict values are stored as JSON strings.
    compression : str, int or mapping, optional
        ``"gzip"``, ``"lzf"``, an HDF5 filter id or an ``hdf5plugin`` filter (e.g.
        ``hdf5plugin.Blosc()``); chunks are then frames-first, about 1 MiB.
    mode : {"w", "a"}
        ``"w"`` creates a new file; ``"a"`` keeps the existing file's other contents.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FileFormatError
        With ``mode="a"`` if the existing file cannot be read.
    ValueError
        For an unknown ``mode``, empty ``datasets`` or ``attrs`` naming a missing object.
    """
    path = as_path(path)
    if mode not in ("w", "a"):
        raise ValueError(f"mode must be 'w' or 'a', got {mode!r}")
    if not isinstance(datasets, Mapping) or not datasets:
        raise ValueError("datasets must be a non-empty mapping {key: array}")
    with atomic.atomic_path(path) as tmp:
        if mode == "a" and path.exists():
            shutil.copy2(path, tmp)
            f = _open(tmp, "a")
        else:
            f = h5py.File(tmp, "w")
        with f:
            for key, data in datasets.items():
                _write_dataset(f, key, data, compression)
            _apply_attrs(f, attrs)
    return path


class HDF5Sink(LazyArray):
    """A frames-first HDF5 dataset written block by block, finalized atomically, resumable.

    While being written the data live in ``<path>.partial``; every write along axis 0 is flushed
    and the number of leading frames completed is stored in the dataset attribute
    ``stacklab_frames_done``. :meth:`close` renames the partial file to ``path`` once every frame
    has been written (atomically: ``path`` is either absent/old or complete). After a crash or an
    exception, the partial file is kept; ``resume=True`` reopens it and :attr:`completed` tells
    where to continue (see :meth:`map`).

    Use it as ``out=`` of :func:`stacklab.engine.map_frames` (it has ``shape``, ``dtype`` and
    ``__setitem__``), or write blocks yourself with ``sink[i:j] = block``.

    Parameters
    ----------
    path : str or path-like
        Final HDF5 file.
    key : str
        Dataset path inside the file.
    shape : tuple of int
        Dataset shape, frames first ``(n_frames, ...)``.
    dtype : dtype-like
        Dataset data type.
    chunks : tuple of int, optional
        HDF5 chunk shape (default: whole frames, about 1 MiB per chunk).
    compression : str, int or mapping, optional
        As in :func:`write_hdf5`.
    attrs : mapping, optional
        Attributes of the dataset.
    mode : {"w", "a"}
        ``"w"``: the final file holds only this dataset; ``"a"``: the existing ``path`` is copied
        and the dataset added to (or replaced in) it.
    resume : bool
        Continue an existing ``<path>.partial`` with the same key, shape and dtype. With False an
        existing partial file is discarded.

    Attributes
    ----------
    partial_path : pathlib.Path
        Where the data live until :meth:`close` finalizes them.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        key: str,
        shape: tuple[int, ...],
        dtype: Any,
        *,
        chunks: tuple[int, ...] | bool | None = None,
        compression: Any = None,
        attrs: Mapping[str, Any] | None = None,
        mode: str = "w",
        resume: bool = False,
    ) -> None:
        self.path = as_path(path)
        self.key = str(key).strip("/")
        if not self.key:
            raise ValueError("key must be a non-empty dataset path")
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' or 'a', got {mode!r}")
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError as exc:
            raise TypeError(f"shape must be a tuple of ints, got {shape!r}") from exc
        if len(shape) < 1 or shape[0] < 1 or any(s < 0 for s in shape):
            raise ValueError(f"shape must be (n_frames >= 1, ...), got {shape}")
        self._shape = shape
        self._dtype = np.dtype(dtype)
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"folder of {str(self.path)!r} does not exist")
        self._done = np.zeros(shape[0], dtype=bool)
        self._completed = 0
        self._file: h5py.File | None = None
        if self.partial_path.exists() and resume:
            self._file = self._reopen()
        if self._file is None:
            self._file = self._create(chunks, compression, attrs, mode)
        self._ds: h5py.Dataset = self._file[self.key]

    # -- setup -----------------------------------------------------------------------------------
    def _reopen(self) -> h5py.File | None:
        try:
            f = h5py.File(self.partial_path, "r+")
        except OSError as exc:
            logger.warning(
                "cannot reopen %s (%s); starting again from frame 0", self.partial_path, exc
            )
            self.partial_path.unlink()
            return None
        ds = f.get(self.key)
        ok = (
            isinstance(ds, h5py.Dataset)
            and tuple(ds.shape) == self._shape
            and ds.dtype == self._dtype
            and PROGRESS_ATTR in ds.attrs
        )
        if not ok:
            found = _describe(_datasets(f))
            f.close()
            raise FileFormatError(
                f"partial file {str(self.partial_path)!r} does not hold dataset {self.key!r} "
                f"{self._shape} {self._dtype} with progress; it holds {found}. Delete it or pass "
                "resume=False"
            )
        done = int(ds.attrs[PROGRESS_ATTR])
        self._done[:done] = True
        self._completed = done
        logger.info("resuming %s:%s at frame %d of %d", self.path, self.key, done, self._shape[0])
        return f

    def _create(self, chunks: Any, compression: Any, attrs: Any, mode: str) -> h5py.File:
        if self.partial_path.exists():
            logger.info("discarding the old partial file %s", self.partial_path)
            self.partial_path.unlink()
        f = None
        try:
            if mode == "a" and self.path.exists():
                shutil.copy2(self.path, self.partial_path)
                f = _open(self.partial_path, "a")
                if self.key in f:
                    del f[self.key]
            else:
                f = h5py.File(self.partial_path, "w")
            kwargs = _compression_kwargs(compression)
            if chunks is None:
                chunks = default_chunks(self._shape, self._dtype) if all(self._shape) else True
            ds = f.create_dataset(
                self.key, shape=self._shape, dtype=self._dtype, chunks=chunks, **kwargs
            )
            for k, v in (attrs or {}).items():
                ds.attrs[k] = _attr_value(v)
            ds.attrs[PROGRESS_ATTR] = 0
            f.flush()
        except BaseException:
            if f is not None:
                with contextlib.suppress(Exception):
                    f.close()
            self.partial_path.unlink(missing_ok=True)
            raise
        return f

    # -- array protocol --------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Dataset shape ``(n_frames, ...)``."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        """Dataset data type."""
        return self._dtype

    @property
    def n_frames(self) -> int:
        """Length of axis 0."""
        return self._shape[0]

    @property
    def completed(self) -> int:
        """Number of leading frames written so far (where a resumed run continues)."""
        return self._completed

    @property
    def closed(self) -> bool:
        """True once closed (finalized or not)."""
        return self._file is None

    def _check_open(self) -> None:
        if self._file is None:
            raise ValueError(f"HDF5Sink of {str(self.path)!r}:{self.key!r} is closed")

    def __getitem__(self, index: Any) -> np.ndarray:
        self._check_open()
        return self._ds[index]

    def _read_all(self) -> np.ndarray:
        return self[:]

    def __setitem__(self, index: Any, value: Any) -> None:
        self._check_open()
        self._ds[index] = host_array(value)
        frames = self._frames_written(index)
        if frames is not None:
            self._done[frames] = True
            missing = np.flatnonzero(~self._done)
            completed = int(missing[0]) if missing.size else self.n_frames
            if completed != self._completed:
                self._completed = completed
                self._ds.attrs[PROGRESS_ATTR] = completed
        self._file.flush()

    def _frames_written(self, index: Any) -> Any:
        """Frames fully covered by a write at ``index`` (None: not a whole-frame write)."""
        index = normalize_index(index, self.ndim)
        if not index:
            return slice(None)
        if not all(is_full_slice(it, n) for it, n in zip(index[1:], self._shape[1:])):
            return None
        return axis0_indices(index[0], self.n_frames)

    def window(self, start: int | None = None) -> FrameWindow:
        """A writable view of frames ``start:`` (default: from :attr:`completed`)."""
        return FrameWindow(self, self._completed if start is None else start)

    def map(
        self,
        kernel: Callable[..., Any],
        stack: Any,
        *,
        chunk: int = 256,
        frame_ndim: int = 2,
        progress: bool | None = None,
        **params: Any,
    ) -> HDF5Sink:
        """Run :func:`stacklab.engine.map_frames` on the frames not yet written.

        Frames ``completed:`` of ``stack`` are processed by ``kernel`` and written to the same
        frames of this sink, so a resumed sink continues where the previous run stopped.

        Parameters
        ----------
        kernel : callable
            ``kernel(block (n, *frame_shape), **params) -> (n, *self.shape[1:])``.
        stack : array-like
            Input with ``stack.shape[0] == self.n_frames`` (one scan axis).
        chunk, frame_ndim, progress, **params
            As in :func:`stacklab.engine.map_frames`.

        Returns
        -------
        HDF5Sink
            ``self`` (call :meth:`close` or leave the ``with`` block to finalize).
        """
        from .. import engine

        if int(stack.shape[0]) != self.n_frames:
            raise ValueError(
                f"stack has {stack.shape[0]} frames along axis 0, the sink {self.n_frames}"
            )
        start = self._completed
        if start < self.n_frames:
            engine.map_frames(
                kernel,
                FrameWindow(stack, start),
                chunk=chunk,
                frame_ndim=frame_ndim,
                out=self.window(start),
                progress=progress,
                **params,
            )
        return self

    # -- finishing -------------------------------------------------------------------------------
    def close(self, finalize: bool | None = None) -> bool:
        """Close the partial file and, if finished, move it to ``path`` atomically.

        Parameters
        ----------
        finalize : bool or None
            None: finalize only if every frame was written (otherwise keep the partial file for
            ``resume=True`` and log a warning). True: finalize regardless (for writes the sink
            cannot track, e.g. ``sink[:, 0] = ...``). False: only close.

        Returns
        -------
        bool
            True if ``path`` now holds the data.
        """
        if self._file is None:
            return self.path.exists() and not self.partial_path.exists()
        complete = self._completed == self.n_frames
        if finalize is None:
            finalize = complete
        try:
            if finalize:
                del self._ds.attrs[PROGRESS_ATTR]
        finally:
            self._file.close()
            self._file = None
        if not finalize:
            if not complete:
                logger.warning(
                    "%s:%s closed with %d of %d frames written; kept %s (resume=True continues)",
                    self.path,
                    self.key,
                    self._completed,
                    self.n_frames,
                    self.partial_path,
                )
            return False
        atomic.fsync_path(self.partial_path)
        atomic.replace(self.partial_path, self.path)
        logger.debug("finalized %s:%s", self.path, self.key)
        return True

    def discard(self) -> None:
        """Close and delete the partial file; ``path`` is left untouched."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.partial_path.unlink(missing_ok=True)

    def __enter__(self) -> HDF5Sink:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # On an exception the partial file is kept so that a later run can resume.
        self.close(finalize=None if exc_type is None else False)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self._completed}/{self.n_frames} frames"
        return f"<HDF5Sink {str(self.path)!r}:{self.key!r} {self._shape} {self._dtype} ({state})>"


def create_hdf5_dataset(
    path: str | os.PathLike,
    key: str,
    shape: tuple[int, ...],
    dtype: Any,
    *,
    chunks: tuple[int, ...] | bool | None = None,
    compression: Any = None,
    attrs: Mapping[str, Any] | None = None,
    mode: str = "w",
    resume: bool = False,
) -> HDF5Sink:
    """Create (or resume) an HDF5 dataset written frame block by frame block.

    Parameters
    ----------
    path, key, shape, dtype, chunks, compression, attrs, mode, resume
        See :class:`HDF5Sink`.

    Returns
    -------
    HDF5Sink
        Use in a ``with`` block; pass as ``out=`` of :func:`stacklab.engine.map_frames` or call
        :meth:`HDF5Sink.map`.

    Examples
    --------
    >>> with create_hdf5_dataset("out.h5", "data", (n, 64, 64), "float32", resume=True) as sink:
    ...     sink.map(kernel, read_hdf5("in.h5", "frames"))          # doctest: +SKIP
    """
    return HDF5Sink(
        path,
        key,
        shape,
        dtype,
        chunks=chunks,
        compression=compression,
        attrs=attrs,
        mode=mode,
        resume=resume,
    )
