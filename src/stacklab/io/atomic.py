"""Atomic file replacement: write to a temporary name in the same folder, then rename.

Every stacklab writer goes through :func:`atomic_path`, so an interrupted or failing write never
leaves a half-written file at the destination: either the old file (if any) is still there, or the
complete new one is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "fsync_path", "temp_name"]

logger = logging.getLogger(__name__)


def temp_name(path: str | os.PathLike, tag: str = "tmp") -> Path:
    """Return a fresh hidden sibling name of ``path``: ``<dir>/.<name>.<tag>-<random>``.

    Parameters
    ----------
    path : str or path-like
        The destination file or folder.
    tag : str
        A word describing the temporary (``"tmp"``, ``"old"``).

    Returns
    -------
    pathlib.Path
        A path in the same folder as ``path`` that does not exist yet.
    """
    path = Path(path)
    while True:
        candidate = path.with_name(f".{path.name}.{tag}-{secrets.token_hex(4)}")
        if not candidate.exists():
            return candidate


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file (or every file of a folder tree) and its folder to the storage device.

    Parameters
    ----------
    path : str or path-like
        A regular file or a folder (e.g. a Zarr store).
    """
    path = Path(path)
    if path.is_dir():
        for root, _dirs, files in os.walk(path):
            for name in files:
                _fsync_file(Path(root) / name)
            _fsync_dir(Path(root))
    else:
        _fsync_file(path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Make a rename durable; not supported on every platform/file system (e.g. Windows).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move ``src`` over ``dst`` (files: one atomic ``os.replace``; folders: swap then delete).

    Parameters
    ----------
    src : str or path-like
        The complete new file or folder (already flushed).
    dst : str or path-like
        The destination; replaced if it exists.
    """
    src, dst = Path(src), Path(dst)
    if src.is_dir() and dst.exists():
        # os.replace cannot replace a non-empty folder: move the old one aside first, so that
        # at every moment either the old or the new store is at ``dst``.
        old = temp_name(dst, "old")
        os.replace(dst, old)
        try:
            os.replace(src, dst)
        except BaseException:
            os.replace(old, dst)
            raise
        _remove(old)
    else:
        os.replace(src, dst)
    _fsync_dir(dst.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path`` atomically.

    The temporary is ``<dir>/.<name>.tmp-<random>`` in the same folder as ``path`` (so the final
    rename never crosses file systems). When the ``with`` block ends normally, the temporary (a
    file, or a folder such as a Zarr store) is flushed to disk with ``fsync`` and renamed over
    ``path`` with :func:`os.replace`. When the block raises (including ``KeyboardInterrupt``), the
    temporary is removed and ``path`` is left exactly as it was.

    Parameters
    ----------
    path : str or path-like
        The destination file or folder. Its parent folder must exist.

    Yields
    ------
    pathlib.Path
        The temporary path; the caller creates it.

    Raises
    ------
    FileNotFoundError
        If the parent folder of ``path`` does not exist, or the block did not create the
        temporary.

    Examples
    --------
    >>> with atomic_path("result.npy") as tmp:          # doctest: +SKIP
    ...     with open(tmp, "wb") as fh:
    ...         np.save(fh, data)
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} missing")
    tmp = temp_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the writer of {str(path)!r} did not create {str(tmp)!r}")
        fsync_path(tmp)
        replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    logger.debug("wrote %s", path)
