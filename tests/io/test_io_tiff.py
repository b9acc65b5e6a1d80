"""TIFF: memory-mapped and page-by-page lazy reading, atomic writing, broken files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tifffile

from stacklab.errors import FileFormatError
from stacklab.io import TiffStack, read_hdf5, read_tiff, write_hdf5, write_tiff


@pytest.mark.parametrize("fixture", ["u16_stack", "f32_stack"])
def test_round_trip_memmapped(tmp_path, request, fixture):
    a = request.getfixturevalue(fixture)
    path = write_tiff(tmp_path / "a.tif", a)
    r = read_tiff(path)
    assert isinstance(r, np.memmap)  # uncompressed contiguous data: no copy, no decoding
    assert (r.shape, r.dtype) == (a.shape, a.dtype)
    np.testing.assert_array_equal(r, a)
    np.testing.assert_array_equal(r[4], a[4])


@pytest.mark.parametrize("fixture", ["u16_stack", "f32_stack"])
def test_round_trip_compressed_is_page_reader(tmp_path, request, fixture):
    a = request.getfixturevalue(fixture)
    path = write_tiff(tmp_path / "a.tiff", a, compression="zlib")
    with read_tiff(path) as r:
        assert isinstance(r, TiffStack)
        assert (r.shape, r.dtype, r.ndim, r.size, len(r)) == (a.shape, a.dtype, 3, a.size, 9)
        np.testing.assert_array_equal(np.asarray(r), a)
        for index in [2, -1, slice(1, 8, 3), (3, slice(1, 4), 2), (..., 0), [6, 0, 6]]:
            np.testing.assert_array_equal(r[index], a[index], err_msg=repr(index))


def test_page_reader_decodes_only_requested_pages(tmp_path, monkeypatch):
    a = np.arange(40 * 16 * 16, dtype=np.uint16).reshape(40, 16, 16)
    path = write_tiff(tmp_path / "a.tif", a, compression="zlib")
    decoded = []
    original = TiffStack._read_page

    def spy(self, i):
        decoded.append(i)
        return original(self, i)

    monkeypatch.setattr(TiffStack, "_read_page", spy)
    with read_tiff(path) as r:
        assert not isinstance(r, np.ndarray)
        np.testing.assert_array_equal(r[17], a[17])
        np.testing.assert_array_equal(r[30:33], a[30:33])
    assert decoded == [17, 30, 31, 32]


def test_memmap_false_and_pickle(tmp_path, u16_stack):
    path = write_tiff(tmp_path / "a.tif", u16_stack)
    r = read_tiff(path, memmap=False)
    assert isinstance(r, TiffStack)
    copy = pickle.loads(pickle.dumps(r))
    np.testing.assert_array_equal(copy[5], u16_stack[5])
    copy.close()
    r.close()
    with pytest.raises(ValueError, match="closed"):
        r[0]


def test_shapes_are_kept(tmp_path):
    image = np.arange(30, dtype=np.int32).reshape(5, 6)
    scan = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5)
    for name, a in [("image.tif", image), ("scan.tif", scan)]:
        for compression in (None, "zlib"):
            r = read_tiff(write_tiff(tmp_path / name, a, compression=compression))
            assert r.shape == a.shape
            np.testing.assert_array_equal(np.asarray(r), a)
            np.testing.assert_array_equal(r[1], a[1])


def test_narrow_frames_are_not_taken_for_rgb(tmp_path):
    a = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)  # 3 columns, not RGB samples
    with tifffile.TiffFile(write_tiff(tmp_path / "a.tif", a)) as tif:
        assert len(tif.pages) == 4 and tif.pages[0].shape == (5, 3)


def test_bigtiff_and_lazy_source(tmp_path, u16_stack):
    write_hdf5(tmp_path / "src.h5", {"x": u16_stack})
    with read_hdf5(tmp_path / "src.h5", "x") as src:
        path = write_tiff(tmp_path / "big.tif", src, bigtiff=True)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff
    np.testing.assert_array_equal(read_tiff(path), u16_stack)


def test_multiseries_uniform_pages_are_one_stack(tmp_path, u16_stack):
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as w:
        for frame in u16_stack[:4]:
            w.write(frame)  # four separate series of one page each
    with read_tiff(path) as r:
        assert r.shape == (4, 6, 5)
        np.testing.assert_array_equal(np.asarray(r), u16_stack[:4])


@pytest.mark.parametrize("metadata", [{}, None])
def test_varying_page_shapes_name_the_page(tmp_path, metadata):
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as w:
        for shape in [(6, 5), (6, 5), (4, 4), (6, 5)]:
            w.write(np.zeros(shape, np.uint16), metadata=metadata)
    with pytest.raises(FileFormatError, match=r"mixed\.tif.*page 2.*\(4, 4\)"):
        read_tiff(path)


def test_varying_page_dtypes_name_the_page(tmp_path):
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as w:
        w.write(np.zeros((6, 5), np.uint16))
        w.write(np.zeros((6, 5), np.float32))
    with pytest.raises(FileFormatError, match=r"mixed\.tif.*page 1.*float32"):
        read_tiff(path)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_file(tmp_path, truncate_half, compression):
    a = np.arange(20 * 16 * 16, dtype=np.uint16).reshape(20, 16, 16)
    path = write_tiff(tmp_path / "cut.tif", a, compression=compression)
    truncate_half(path)
    with pytest.raises(FileFormatError, match=r"cut\.tif"):
        r = read_tiff(path)
        np.asarray(r)


@pytest.mark.parametrize("keep", [0.25, 0.9, -50])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_anywhere(tmp_path, compression, keep):
    a = np.arange(20 * 16 * 16, dtype=np.uint16).reshape(20, 16, 16)
    path = write_tiff(tmp_path / "cut.tif", a, compression=compression)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if keep > 0 else data[:keep])
    with pytest.raises(FileFormatError, match=r"cut\.tif.*(truncated|beyond the end)"):
        np.asarray(read_tiff(path))


def test_not_a_tiff_and_missing(tmp_path):
    (tmp_path / "text.tif").write_text("not an image")
    with pytest.raises(FileFormatError, match=r"text\.tif"):
        read_tiff(tmp_path / "text.tif")
    with pytest.raises(FileFormatError, match=r"nope\.tif"):
        read_tiff(tmp_path / "nope.tif")


def test_write_rejects_1d(tmp_path):
    with pytest.raises(ValueError, match="stack must have at least 2"):
        write_tiff(tmp_path / "a.tif", np.ones(3))
    assert list(tmp_path.iterdir()) == []
