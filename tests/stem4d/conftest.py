"""Fixtures of the stem4d tests: small simulated cubes and hand-written detector files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stacklab.stem4d.simulate import simulate_counting, simulate_diffraction


def write_mib(
    path: Path,
    frames: np.ndarray,
    *,
    header_bytes: int = 384,
    hdr: dict[str, str] | None = None,
) -> Path:
    """Write frames (n, rows, cols) as a Merlin .mib file (big-endian, ASCII headers)."""
    kinds = {
        np.dtype(np.uint8): ("U08", ">u1"),
        np.dtype(np.uint16): ("U16", ">u2"),
        np.dtype(np.uint32): ("U32", ">u4"),
    }
    kind, be = kinds[frames.dtype]
    n, rows, cols = frames.shape
    with open(path, "wb") as fh:
        for i in range(n):
            fields = [
                "MQ1",
                f"{i + 1:06d}",
                f"{header_bytes:05d}",
                "01",
                f"{cols:04d}",
                f"{rows:04d}",
                kind,
                "   1x1",
                "01",
                "2024-01-01 00:00:00.000000",
                "0.001000",
                "0",
                "0",
                "0",
                "1.000000E+1",
            ]
            text = ",".join(fields).encode("ascii")
            fh.write(text + b" " * (header_bytes - len(text)))
            fh.write(frames[i].astype(be).tobytes())
    if hdr is not None:
        lines = [f"{k}:\t{v}" for k, v in hdr.items()]
        path.with_suffix(".hdr").write_text("HDR,\t\n" + "\n".join(lines) + "\nEnd\t\n")
    return path


@pytest.fixture(scope="session")
def counting_cube():
    """A 6x5 scan of 40x48 uint16 frames with x-rays, hot pixels (incl. pairs) and dead pixels."""
    return simulate_counting(
        (6, 5),
        (40, 48),
        electrons_per_frame=15,
        xrays_per_frame=0.6,
        n_hot=3,
        n_hot_pairs=2,
        n_cold=2,
        seed=11,
    )


@pytest.fixture(scope="session")
def diffraction_cube():
    """A 6x7 scan of 48x40 patterns with a drifting disk, Bragg disks and bad pixels."""
    return simulate_diffraction(
        (6, 7), (48, 40), n_hot=3, n_hot_pairs=2, n_cold=2, background=20.0, seed=5
    )


@pytest.fixture
def mib_writer():
    """The .mib writer :func:`write_mib` (fixtures cannot be imported from conftest)."""
    return write_mib
