"""File readers with hand-written fixtures: EMD 1.0, Merlin .mib (+.hdr), EMPAD, Dectris, plain."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from stacklab.errors import FileFormatError, ShapeError
from stacklab.stem4d import (
    Calibration,
    DataCube,
    open_datacube,
    read_arina,
    read_emd,
    read_empad,
    read_mib,
    write_emd,
)

PY4DSTEM_PYTHON = Path("/work/venvs/py4dstem/bin/python")


@pytest.fixture
def frames(rng):
    return rng.integers(0, 60000, size=(35, 12, 10), dtype=np.uint16)


# -- Merlin .mib --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_mib_round_trip_native_endian(tmp_path, rng, dtype, mib_writer):
    info = np.iinfo(dtype)
    data = rng.integers(0, min(info.max, 10**6), size=(12, 6, 7), dtype=dtype)
    path = mib_writer(tmp_path / "scan.mib", data)
    cube = read_mib(path, scan_shape=(3, 4))
    assert cube.shape == (3, 4, 6, 7) and cube.is_lazy
    assert cube.dtype == np.dtype(dtype) and cube.dtype.isnative
    np.testing.assert_array_equal(cube.to_numpy(), data.reshape(3, 4, 6, 7))
    np.testing.assert_array_equal(cube.frame(2, 1), data[2 * 4 + 1])
    np.testing.assert_array_equal(cube[1, 2:4, 3:5], data.reshape(3, 4, 6, 7)[1, 2:4, 3:5])


def test_mib_scan_shape_from_hdr_and_pickle(tmp_path, frames, mib_writer):
    hdr = {"Frames in Acquisition (Number)": "35", "Frames per Trigger (Number)": "7"}
    path = mib_writer(tmp_path / "scan.mib", frames, hdr=hdr, header_bytes=768)
    cube = read_mib(path)
    assert cube.scan_shape == (5, 7)
    assert cube.metadata["hdr"]["Frames per Trigger"] == "7"
    clone = pickle.loads(pickle.dumps(cube.data))  # lazily re-opened (dask.distributed workers)
    np.testing.assert_array_equal(np.asarray(clone), frames.reshape(5, 7, 12, 10))


def test_truncated_mib(tmp_path, frames, caplog, mib_writer):
    path = mib_writer(tmp_path / "scan.mib", frames)
    frame_bytes = 384 + 12 * 10 * 2
    with open(path, "r+b") as fh:
        fh.truncate(30 * frame_bytes + 100)  # 30 complete frames and a partial one
    with pytest.raises(FileFormatError, match="30 complete frame"):
        read_mib(path, scan_shape=(5, 7))
    with caplog.at_level(logging.WARNING):
        cube = read_mib(path, scan_shape=(5, 6), allow_truncated=True)
    assert "truncated" in caplog.text and cube.metadata["truncated"]
    np.testing.assert_array_equal(cube.to_numpy(), frames[:30].reshape(5, 6, 12, 10))
    with pytest.raises(ShapeError, match="scan_shape"):
        read_mib(path, scan_shape=(5, 7), allow_truncated=True)
    # a whole number of frames but fewer than the .hdr announces is truncated too
    with open(path, "r+b") as fh:
        fh.truncate(30 * frame_bytes)
    path.with_suffix(".hdr").write_text("Frames in Acquisition (Number):\t35\n")
    with pytest.raises(FileFormatError, match="35 expected"):
        read_mib(path)


def test_bad_mib_files(tmp_path, mib_writer):
    bad = tmp_path / "bad.mib"
    bad.write_bytes(b"not a merlin file" * 10)
    with pytest.raises(FileFormatError, match="Merlin"):
        read_mib(bad)
    with pytest.raises(FileFormatError, match="not found"):
        read_mib(tmp_path / "missing.mib")
    empty = mib_writer(tmp_path / "one.mib", np.zeros((1, 4, 4), np.uint16))
    with open(empty, "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(FileFormatError, match="no complete frame"):
        read_mib(empty)


# -- EMPAD ----------------------------------------------------------------------------------------


def test_empad_drops_metadata_rows(tmp_path, rng):
    stored = rng.normal(size=(6, 130, 128)).astype("<f4")
    stored[:, 128:] = 1e9  # metadata rows
    path = tmp_path / "scan_x3_y2.raw"
    stored.tofile(path)
    cube = read_empad(path)
    assert cube.shape == (2, 3, 128, 128) and cube.dtype == np.float32
    np.testing.assert_array_equal(cube.to_numpy(), stored[:, :128].reshape(2, 3, 128, 128))
    with pytest.raises(ShapeError, match="scan_shape"):
        read_empad(path, scan_shape=(4, 4))
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) - 8)
    with pytest.raises(FileFormatError, match="truncated"):
        read_empad(path)


# -- Dectris master files ----------------------------------------------------------------------


def _write_arina(folder: Path, data: np.ndarray, per_file: int, compress: bool) -> Path:
    links = []
    for k, start in enumerate(range(0, data.shape[0], per_file)):
        name = f"scan_data_{k + 1:06d}.h5"
        with h5py.File(folder / name, "w") as f:
            kw = {}
            if compress:
                hdf5plugin = pytest.importorskip("hdf5plugin")
                kw = dict(hdf5plugin.Bitshuffle(cname="lz4"))
            f.create_dataset(
                "entry/data/data",
                data=data[start : start + per_file],
                chunks=(1, *data.shape[1:]),
                **kw,
            )
        links.append(name)
    master = folder / "scan_master.h5"
    with h5py.File(master, "w") as f:
        for k, name in enumerate(links):
            f[f"entry/data/data_{k + 1:06d}"] = h5py.ExternalLink(name, "entry/data/data")
        det = f.create_group("entry/instrument/detector")
        det["x_pixel_size"] = 1e-4
        det["y_pixel_size"] = 1e-4
        spec = det.create_group("detectorSpecific")
        spec["nimages"] = data.shape[0]
        mask = np.zeros(data.shape[1:], np.uint32)
        mask[1, 2] = 1
        spec["pixel_mask"] = mask
    return master


@pytest.mark.parametrize("compress", [False, True])
def test_arina_master_file(tmp_path, frames, compress):
    master = _write_arina(tmp_path, frames, per_file=10, compress=compress)
    cube = read_arina(master, scan_shape=(5, 7))
    assert cube.shape == (5, 7, 12, 10)
    np.testing.assert_array_equal(cube.to_numpy(), frames.reshape(5, 7, 12, 10))
    np.testing.assert_array_equal(cube[3, 4], frames[3 * 7 + 4])  # crosses the file boundary
    assert cube.calibration.q_pixel_size == (1e-4, 1e-4)
    assert cube.metadata["pixel_mask"][1, 2] and cube.metadata["pixel_mask"].sum() == 1
    assert open_datacube(master, scan_shape=(5, 7)).shape == cube.shape
    (tmp_path / "scan_data_000002.h5").unlink()
    with pytest.raises(FileFormatError, match="missing"):
        read_arina(master, scan_shape=(5, 7))


# -- EMD 1.0 ------------------------------------------------------------------------------------


def test_emd_round_trip_with_calibration(tmp_path, frames):
    cal = Calibration(
        q_pixel_size=(0.02, 0.025),
        q_units="A^-1",
        r_pixel_size=(1.5, 2.0),
        r_units="nm",
        q_origin=(5.5, 4.25),
    )
    cube = DataCube(frames.reshape(5, 7, 12, 10), cal, name="scan")
    path = write_emd(tmp_path / "scan.emd", cube)
    back = read_emd(path)
    assert back.is_lazy and back.name == "scan"
    assert back.calibration == cal
    np.testing.assert_array_equal(back.to_numpy(), cube.data)
    with h5py.File(path) as f:  # py4DSTEM's layout
        assert f.attrs["emd_group_type"] == "file" and f.attrs["version_major"] == 1
        g = f["scan_root/scan"]
        assert g.attrs["python_class"] == "DataCube" and g.attrs["emd_group_type"] == "array"
        assert [g[f"dim{n}"].attrs["name"] for n in range(4)] == ["Rx", "Ry", "Qx", "Qy"]
        c = f["scan_root/metadatabundle/calibration"]
        assert c["Q_pixel_size"][()] == 0.02 and c["qx0_mean"][()] == 5.5
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_emd_reads_py4dstem_layout_without_stacklab_attributes(tmp_path, frames):
    path = write_emd(
        tmp_path / "p.h5",
        DataCube(frames.reshape(5, 7, 12, 10), Calibration(q_pixel_size=0.5, q_units="A^-1")),
    )
    with h5py.File(path, "r+") as f:
        del f["datacube_root/datacube"].attrs["stacklab_calibration"]
        f.attrs["authoring_program"] = "emdfile"
    back = read_emd(path, name="datacube")
    assert back.calibration.q_pixel_size == (0.5, 0.5) and back.calibration.q_units == "A^-1"
    with pytest.raises(FileFormatError, match="no array named"):
        read_emd(path, name="nothing")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["data"] = np.zeros((2, 2, 3, 3))
    with pytest.raises(FileFormatError, match="EMD"):
        read_emd(plain)


def test_emd_lazy_input_and_bad_shapes(tmp_path, frames):
    src = write_emd(tmp_path / "a.h5", DataCube(frames.reshape(5, 7, 12, 10)))
    lazy = read_emd(src)
    out = write_emd(tmp_path / "b.h5", lazy)  # copied block by block from the lazy cube
    np.testing.assert_array_equal(read_emd(out).to_numpy(), frames.reshape(5, 7, 12, 10))
    with pytest.raises(ShapeError, match="cube"):
        write_emd(tmp_path / "c.h5", frames)


@pytest.mark.slow
@pytest.mark.skipif(not PY4DSTEM_PYTHON.exists(), reason="py4DSTEM reference venv not installed")
def test_py4dstem_reads_our_emd(tmp_path, frames):
    cal = Calibration(
        q_pixel_size=0.5, q_units="A^-1", r_pixel_size=2.0, r_units="nm", q_origin=(5.5, 4.0)
    )
    path = write_emd(tmp_path / "scan.h5", DataCube(frames.reshape(5, 7, 12, 10), cal))
    np.save(tmp_path / "ref.npy", frames.reshape(5, 7, 12, 10))
    code = (
        "import numpy as np, py4DSTEM, sys\n"
        f"d = py4DSTEM.read({str(path)!r})\n"
        f"ref = np.load({str(tmp_path / 'ref.npy')!r})\n"
        "c = d.calibration\n"
        "assert np.array_equal(d.data, ref)\n"
        "assert c.get_Q_pixel_size() == 0.5 and c.get_Q_pixel_units() == 'A^-1'\n"
        "assert c.get_R_pixel_size() == 2.0 and c.get_qx0_mean() == 5.5\n"
        "print('ok')\n"
    )
    res = subprocess.run(
        [str(PY4DSTEM_PYTHON), "-c", code], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]


# -- plain stacks via stacklab.io ----------------------------------------------------------------


def test_open_plain_files(tmp_path, frames, mib_writer):
    import tifffile

    h5 = tmp_path / "stack.h5"
    with h5py.File(h5, "w") as f:
        f["frames"] = frames
    cube = open_datacube(h5, scan_shape=(7, 5))
    assert cube.shape == (7, 5, 12, 10) and cube.is_lazy
    np.testing.assert_array_equal(cube[6, 4], frames[34])
    tif = tmp_path / "stack.tif"
    tifffile.imwrite(tif, frames[:25])
    t = open_datacube(tif)  # 25 frames: square scan inferred
    assert t.shape == (5, 5, 12, 10)
    np.testing.assert_array_equal(t.to_numpy(), frames[:25].reshape(5, 5, 12, 10))
    np.save(tmp_path / "s.npy", frames)
    with pytest.raises(ShapeError, match="scan_shape"):
        open_datacube(tmp_path / "s.npy")
    with pytest.raises(ShapeError, match="scan_shape"):
        open_datacube(h5, scan_shape=(6, 6))
    with pytest.raises(FileFormatError, match="not found"):
        open_datacube(tmp_path / "nothing.mib")
    mib = mib_writer(tmp_path / "m.mib", frames)
    assert open_datacube(mib, scan_shape=(5, 7)).shape == (5, 7, 12, 10)
