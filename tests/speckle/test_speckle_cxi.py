"""CXI reading/writing in speckle_tracking's layout; results written atomically."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from stacklab.errors import FileFormatError, ShapeError
from stacklab.speckle import read_cxi, run, write_cxi, write_results
from stacklab.speckle.cxi import DATA, DETECTOR, SOURCE, TRANSLATION


@pytest.fixture
def cxi_file(tmp_path, scan_small):
    s = scan_small
    path = tmp_path / "scan.cxi"
    write_cxi(
        path,
        s.data,
        s.translations,
        s.basis,
        s.x_pixel_size,
        s.y_pixel_size,
        s.distance,
        s.wavelength,
        mask=s.mask,
    )
    return path


def test_round_trip(cxi_file, scan_small):
    s = scan_small
    scan = read_cxi(cxi_file)
    np.testing.assert_array_equal(scan.data, s.data)
    np.testing.assert_array_equal(scan.translations, s.translations)
    np.testing.assert_array_equal(scan.basis, s.basis)
    np.testing.assert_array_equal(scan.mask, s.mask)
    assert scan.distance == s.distance and scan.wavelength == s.wavelength
    assert scan.x_pixel_size == s.x_pixel_size
    with h5py.File(cxi_file) as f:
        assert f[DATA].shape == (25, 64, 64)
        assert f[f"{SOURCE}/energy"][()] == pytest.approx(1.98644586e-15, rel=1e-6)


def _edit(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)


def test_alternative_layouts(cxi_file, scan_small):
    # energy instead of wavelength, integer CXI mask (0 = good), sample_3 translations, (2, 3)
    def change(f):
        del f[f"{SOURCE}/wavelength"]
        m = f[f"{DETECTOR}/mask"][()]
        del f[f"{DETECTOR}/mask"]
        f[f"{DETECTOR}/mask"] = np.where(m, 0, 7).astype(np.uint32)
        t = f[TRANSLATION][()]
        del f["/entry_1/sample_1"]
        f["/entry_1/sample_3/geometry/translation"] = t
        b = f[f"{DETECTOR}/basis_vectors"][0]
        del f[f"{DETECTOR}/basis_vectors"]
        f[f"{DETECTOR}/basis_vectors"] = b

    _edit(cxi_file, change)
    scan = read_cxi(cxi_file)
    assert scan.wavelength == pytest.approx(1e-10, rel=1e-9)
    np.testing.assert_array_equal(scan.mask, scan_small.mask)
    assert scan.basis.shape == (25, 2, 3)


@pytest.mark.parametrize(
    "key, what",
    [
        (DATA, "frames"),
        (f"{DETECTOR}/basis_vectors", "basis"),
        (f"{DETECTOR}/distance", "distance"),
        (f"{DETECTOR}/x_pixel_size", "pixel size"),
        (TRANSLATION, "translations"),
    ],
)
def test_missing_datasets(cxi_file, key, what):
    _edit(cxi_file, lambda f: f.__delitem__(key))
    with pytest.raises(FileFormatError, match=what) as info:
        read_cxi(cxi_file)
    assert key.split("/")[-1] in str(info.value)


def test_missing_wavelength_and_bad_shapes(cxi_file, tmp_path):
    def no_source(f):
        del f[SOURCE]

    _edit(cxi_file, no_source)
    with pytest.raises(FileFormatError, match="wavelength"):
        read_cxi(cxi_file)
    s_path = tmp_path / "short.cxi"
    rng = np.random.default_rng(0)
    write_cxi(
        s_path, rng.random((5, 8, 8)), np.zeros((5, 3)), np.zeros((5, 2, 3)), 1e-6, 1e-6, 1.0, 1e-10
    )

    def fewer(f):
        t = f[TRANSLATION][()]
        del f[TRANSLATION]
        f[TRANSLATION] = t[:4]

    _edit(s_path, fewer)
    with pytest.raises(ShapeError, match="4 translations"):
        read_cxi(s_path)
    with pytest.raises(FileFormatError, match="no such file"):
        read_cxi(tmp_path / "nope.cxi")
    (tmp_path / "junk.cxi").write_text("not hdf5")
    with pytest.raises(FileFormatError, match="HDF5"):
        read_cxi(tmp_path / "junk.cxi")


def test_write_results_and_atomicity(cxi_file, scan_small, monkeypatch):
    s = read_cxi(cxi_file)
    res = run(
        s.data,
        s.translations,
        s.basis,
        s.x_pixel_size,
        s.y_pixel_size,
        s.distance,
        s.wavelength,
        mask=s.mask,
        defocus=4e-4,
        iterations=1,
        progress=False,
    )
    write_results(cxi_file, res)
    with h5py.File(cxi_file) as f:
        g = f["speckle_tracking"]
        np.testing.assert_array_equal(g["pixel_map"][()], res.pixel_map)
        np.testing.assert_array_equal(g["roi"][()], res.roi)
        assert g["defocus"][()] == res.defocus
        assert g["error_per_iteration"].shape == (2,)
        assert g["reference_image"].shape == res.reference.shape
        assert g.attrs["phase_units"] == "rad"
        assert f[DATA].shape == (25, 64, 64)  # the input is kept
    before = cxi_file.read_bytes()

    import stacklab.io.hdf5 as hdf5

    original = hdf5._write_dataset

    def failing(f, key, data, compression):  # the disk fills up half-way through
        if key.endswith("/phase"):
            raise OSError("No space left on device")
        return original(f, key, data, compression)

    monkeypatch.setattr(hdf5, "_write_dataset", failing)
    with pytest.raises(OSError, match="space"):
        write_results(cxi_file, res)
    assert cxi_file.read_bytes() == before
    assert not list(cxi_file.parent.glob(".*tmp*"))
