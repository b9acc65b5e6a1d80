"""stacklab.smlm.formats: ThunderSTORM CSV, Picasso HDF5 + YAML, and the YAML subset.

Round trips (values exact in nm, metadata kept), hand-written samples in the layout ThunderSTORM
and Picasso write, and bad files (missing columns, wrong units, truncation, wrong pixel size).
"""

from __future__ import annotations

import math
import textwrap

import h5py
import numpy as np
import pytest

from stacklab.errors import FileFormatError
from stacklab.smlm import formats as fm
from stacklab.smlm.locs import Locs


def make_locs(n=40, seed=0, **extra) -> Locs:
    rng = np.random.default_rng(seed)
    cols = {
        "sigma": rng.uniform(110, 150, n),
        "intensity": rng.uniform(500, 1500, n),
        "offset": rng.uniform(15, 25, n),
        "bkgstd": rng.uniform(4, 5, n),
        "uncertainty": rng.uniform(5, 30, n),
        "loglik": rng.normal(-300, 10, n),
    }
    cols.update(extra)
    return Locs.from_arrays(
        np.sort(rng.integers(0, 100, n)),
        rng.uniform(0, 6300, n),
        rng.uniform(0, 6300, n),
        pixel_size_nm=100.0,
        image_shape=(64, 64),
        n_frames=100,
        **cols,
    )


# ============================================================================================
# ThunderSTORM CSV
# ============================================================================================


def test_csv_round_trip_exact(tmp_path):
    snr = np.linspace(3, 40, 40, dtype=np.float32)  # an extra float32 column (widened, exact)
    locs = make_locs(
        channel=np.arange(40) % 2,
        id=np.arange(1, 41),
        chi2=np.linspace(0, 2, 40),
        snr=snr,
        converged=np.arange(40) % 3 > 0,
    )
    path = tmp_path / "locs.csv"
    locs.save(path)
    back = Locs.load(path, pixel_size_nm=100.0, image_shape=(64, 64), n_frames=100)
    assert back.columns == locs.columns
    assert back.equals(locs)  # rtol 0: float64 written with full precision
    for c in locs.columns:
        np.testing.assert_array_equal(back[c], locs[c])
        assert back.df[c].dtype == locs.df[c].dtype


def test_csv_layout_is_thunderstorm(tmp_path):
    locs = make_locs(n=3)
    path = fm.write_thunderstorm_csv(locs, tmp_path / "ts.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == (
        '"frame","x [nm]","y [nm]","sigma [nm]","intensity [photon]","offset [photon]",'
        '"bkgstd [photon]","uncertainty [nm]","loglik"'
    )
    first = lines[1].split(",")
    assert int(first[0]) == locs.frame[0] + 1  # 1-based frames in the file
    assert float(first[1]) == locs.x_nm[0]
    assert len(lines) == 4


THUNDERSTORM_2D = (
    (
        '"id","frame","x [nm]","y [nm]","sigma [nm]","intensity [photon]","offset [photon]",'
        '"bkgstd [photon]","chi2","uncertainty_xy [nm]"\n'
    )
    + """\
1.0,1.0,5397.248,1042.332,132.5,1023.7,19.84,4.52,1.07,7.12
2.0,1.0,812.5,3321.75,128.0,987.1,20.3,4.48,0.98,7.55
3.0,3.0,2210.0,640.125,140.25,450.0,21.0,4.61,1.2,15.9
"""
)

THUNDERSTORM_3D_PX = (
    (
        '"id","frame","x [px]","y [px]","z [um]","sigma1 [px]","sigma2 [px]","intensity [photon]",'
        '"offset [photon]","bkgstd [photon]","uncertainty [px]"\n'
    )
    + """\
1,5,10.5,20.25,0.125,1.25,1.5,1000,20,4.5,0.07
2,6,30,40.75,-0.25,1.4,1.2,800,19,4.4,0.09
"""
)


def test_read_handwritten_thunderstorm(tmp_path):
    path = tmp_path / "ts2d.csv"
    path.write_text(THUNDERSTORM_2D)
    locs = fm.read_thunderstorm_csv(path)
    assert len(locs) == 3
    assert locs.frame.tolist() == [0, 0, 2]
    assert locs["id"].tolist() == [1, 2, 3]
    np.testing.assert_array_equal(locs.x_nm, [5397.248, 812.5, 2210.0])
    np.testing.assert_array_equal(locs.y_nm, [1042.332, 3321.75, 640.125])
    np.testing.assert_array_equal(locs["uncertainty [nm]"], [7.12, 7.55, 15.9])
    np.testing.assert_array_equal(locs["chi2"], [1.07, 0.98, 1.2])
    assert locs.pixel_size_nm is None


def test_read_thunderstorm_pixel_and_micron_units(tmp_path):
    path = tmp_path / "ts3d.csv"
    path.write_text(THUNDERSTORM_3D_PX)
    locs = fm.read_thunderstorm_csv(path, pixel_size_nm=160.0)
    np.testing.assert_allclose(locs.x_nm, [10.5 * 160, 30 * 160])
    np.testing.assert_allclose(locs.y_nm, [20.25 * 160, 40.75 * 160])
    np.testing.assert_allclose(locs["z [nm]"], [125.0, -250.0])
    np.testing.assert_allclose(locs["sigma1 [nm]"], [200.0, 224.0])
    np.testing.assert_allclose(locs["uncertainty [nm]"], [0.07 * 160, 0.09 * 160])
    assert locs.frame.tolist() == [4, 5] and locs.pixel_size_nm == 160.0
    with pytest.raises(FileFormatError, match="pixel_size_nm"):
        fm.read_thunderstorm_csv(path)


def test_read_thunderstorm_zero_based_frames(tmp_path):
    path = tmp_path / "zero.csv"
    path.write_text('"frame","x [nm]","y [nm]"\n0,1.5,2.5\n4,3.0,4.0\n')
    with pytest.raises(FileFormatError, match="frame_base"):
        fm.read_thunderstorm_csv(path)
    assert fm.read_thunderstorm_csv(path, frame_base=0).frame.tolist() == [0, 4]
    out = tmp_path / "out.csv"
    fm.write_thunderstorm_csv(fm.read_thunderstorm_csv(path, frame_base=0), out, frame_base=0)
    assert out.read_text().splitlines()[1].startswith("0,")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ('"frame","x [nm]"\n1,2.0\n', "missing column"),
        ('"frame","x [nm]","y [nm]","intensity [ADU]"\n1,2.0,3.0,400\n', "photons"),
        ('"frame","x [nm]","y [nm]"\n1,2.0,abc\n', "non-numeric"),
        ('"frame","x [nm]","y [nm]"\n1,2.0,\n', "empty at data row 1"),
        ('"frame","x [nm]","y [nm]"\n1.5,2.0,3.0\n', "integers"),
    ],
)
def test_bad_csv(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=match):
        fm.read_thunderstorm_csv(path)


def test_truncated_csv(tmp_path):
    path = tmp_path / "cut.csv"
    make_locs().save(path)
    data = path.read_bytes()
    cut = data.rstrip(b"\n")
    cut = cut[: cut.rfind(b",") - 3]  # inside the last line, a few fields short
    path.write_bytes(cut)
    with pytest.raises(FileFormatError, match="truncated"):
        Locs.load(path)


def test_header_only_csv_is_empty(tmp_path):
    path = tmp_path / "none.csv"
    path.write_text('"frame","x [nm]","y [nm]","sigma [nm]"\n')
    locs = fm.read_thunderstorm_csv(path)
    assert len(locs) == 0 and "sigma [nm]" in locs


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(FileFormatError, match="no such file"):
        fm.read_thunderstorm_csv(tmp_path / "nope.csv")
    with pytest.raises(FileFormatError, match="no such file"):
        fm.read_picasso_hdf5(tmp_path / "nope.hdf5")
    with pytest.raises(ValueError, match="unknown localization file type"):
        make_locs().save(tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="unknown localization file type"):
        Locs.load(tmp_path / "x.txt")


def test_failed_write_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.csv"
    make_locs(seed=1).save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("pandas.DataFrame.to_csv", boom)
    with pytest.raises(RuntimeError):
        make_locs(seed=2).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.csv"]


# ============================================================================================
# Picasso HDF5 + YAML
# ============================================================================================


@pytest.mark.parametrize("float_dtype", [np.float32, np.float64])
def test_picasso_round_trip(tmp_path, float_dtype):
    locs = make_locs(
        channel=np.arange(40) % 3, id=np.arange(40), **{"z [nm]": np.linspace(-1, 1, 40)}
    )
    path = tmp_path / "locs.hdf5"
    locs.save(path, float_dtype=float_dtype)
    assert fm.yaml_sidecar(path).is_file()
    back = Locs.load(path)
    assert back.pixel_size_nm == 100.0 and back.image_shape == (64, 64) and back.n_frames == 100
    assert back.columns == locs.columns
    rtol = 1e-15 if float_dtype is np.float64 else 1e-7
    assert back.equals(locs, rtol=rtol)
    for c in ("frame", "channel", "id"):
        np.testing.assert_array_equal(back[c], locs[c])
    if float_dtype is np.float32:
        # float32 storage: every value is the float32 of the pixel value, exactly
        with h5py.File(path) as fh:
            rec = fh["locs"][()]
        assert rec.dtype["x"] == np.float32 and rec.dtype["frame"] == np.uint32
        np.testing.assert_array_equal(back.x_nm, rec["x"].astype(np.float64) * 100.0)


def test_picasso_layout(tmp_path):
    locs = make_locs(n=5)
    path = fm.write_picasso_hdf5(locs, tmp_path / "p.hdf5")
    with h5py.File(path) as fh:
        rec = fh["locs"][()]
    assert rec.dtype.names[:9] == fm.PICASSO_FIELDS
    np.testing.assert_allclose(rec["x"], locs.x_nm / 100.0, rtol=1e-7)
    np.testing.assert_allclose(rec["sx"], locs["sigma"] / 100.0, rtol=1e-7)
    np.testing.assert_allclose(rec["lpy"], locs["uncertainty"] / 100.0, rtol=1e-7)
    np.testing.assert_allclose(rec["photons"], locs["intensity"], rtol=1e-7)
    np.testing.assert_allclose(rec["bg"], locs["offset"], rtol=1e-7)
    assert "bkgstd" in rec.dtype.names and "loglik" in rec.dtype.names
    docs = fm.read_yaml(fm.yaml_sidecar(path))
    assert docs[0] == {"Frames": 100, "Height": 64, "Width": 64}
    assert docs[1]["Pixelsize"] == 100.0 and docs[1]["Generated by"].startswith("stacklab")


PICASSO_YAML = """\
Byte Order: <
Camera: Andor Zyla
Data Type: uint16
File: C:/data/run 3/movie.ome.tif
Frames: 2000
Height: 32
Micro-Manager Metadata:
  Andor Zyla-Exposure: '50.0000'
  Andor Zyla-Sensitivity/DynamicRange: 16-bit (high well capacity and low noise)
Width: 48
---
Baseline: 100
Box Size: 7
Fit method: LQ, Gaussian
Gain: 1
Generated by: Picasso Localize
Min. Net Gradient: 5000.0
Pixelsize: 130
Quantum Efficiency: 0.82
ROI: null
Sensitivity: 0.46
"""


def write_picasso_sample(path, n=4, pixelsize_yaml=PICASSO_YAML, sx_equal=False):
    dt = [("frame", "u4"), ("x", "f4"), ("y", "f4"), ("photons", "f4"), ("sx", "f4"),
          ("sy", "f4"), ("bg", "f4"), ("lpx", "f4"), ("lpy", "f4"), ("ellipticity", "f4"),
          ("net_gradient", "f4")]  # fmt: skip
    rec = np.zeros(n, dtype=dt)
    rec["frame"] = np.arange(n) * 3
    rec["x"] = 10.25 + np.arange(n)
    rec["y"] = 20.5 + 2 * np.arange(n)
    rec["photons"] = 1000.0
    rec["sx"] = 1.0
    rec["sy"] = 1.0 if sx_equal else 1.25
    rec["bg"] = 18.5
    rec["lpx"] = 0.05
    rec["lpy"] = 0.0625
    rec["ellipticity"] = 0.2
    rec["net_gradient"] = 6000.0 + np.arange(n)
    with h5py.File(path, "w") as fh:
        fh.create_dataset("locs", data=rec)
    if pixelsize_yaml is not None:
        path.with_suffix(".yaml").write_text(pixelsize_yaml)
    return rec


def test_read_handwritten_picasso(tmp_path):
    path = tmp_path / "movie_locs.hdf5"
    rec = write_picasso_sample(path)
    locs = Locs.load(path)
    assert locs.pixel_size_nm == 130.0
    assert locs.image_shape == (32, 48) and locs.n_frames == 2000
    assert locs.frame.tolist() == [0, 3, 6, 9]
    np.testing.assert_array_equal(locs.x_nm, rec["x"].astype(float) * 130.0)
    np.testing.assert_array_equal(locs.y_nm, rec["y"].astype(float) * 130.0)
    np.testing.assert_allclose(locs["sigma [nm]"], 0.5 * (1.0 + 1.25) * 130.0)
    np.testing.assert_allclose(locs["sigma1 [nm]"], 130.0)
    np.testing.assert_allclose(locs["sigma2 [nm]"], 162.5)
    np.testing.assert_allclose(locs["uncertainty [nm]"], 0.5 * (0.05 + 0.0625) * 130.0, rtol=1e-6)
    np.testing.assert_allclose(locs["intensity [photon]"], 1000.0)
    np.testing.assert_allclose(locs["offset [photon]"], 18.5)
    np.testing.assert_allclose(locs["net_gradient"], [6000, 6001, 6002, 6003])
    assert locs.meta["Generated by"] == "Picasso Localize"
    assert locs.meta["Quantum Efficiency"] == 0.82 and locs.meta["ROI"] is None
    # and back to Picasso: the original fields, unchanged
    out = tmp_path / "again.hdf5"
    locs.save(out)
    with h5py.File(out) as fh:
        again = fh["locs"][()]
    for name in rec.dtype.names:
        np.testing.assert_allclose(again[name], rec[name], rtol=1e-6, err_msg=name)


def test_picasso_pixel_size_rules(tmp_path):
    path = tmp_path / "p.hdf5"
    write_picasso_sample(path, sx_equal=True)
    assert Locs.load(path, pixel_size_nm=130.0).pixel_size_nm == 130.0
    with pytest.raises(ValueError, match="disagrees with Pixelsize 130"):
        Locs.load(path, pixel_size_nm=100.0)
    with pytest.raises(ValueError, match="pixel_size_nm"):
        Locs.load(path, pixel_size_nm=-5.0)
    # no sidecar: the pixel size must be given
    path.with_suffix(".yaml").unlink()
    with pytest.raises(FileFormatError, match="missing; pass pixel_size_nm"):
        Locs.load(path)
    locs = Locs.load(path, pixel_size_nm=160.0)
    assert locs.pixel_size_nm == 160.0 and locs.image_shape is None
    assert "sigma1 [nm]" not in locs  # sx == sy: one width
    # a sidecar without Pixelsize
    path.with_suffix(".yaml").write_text("Frames: 10\nHeight: 8\nWidth: 8\n")
    with pytest.raises(FileFormatError, match="has no Pixelsize"):
        Locs.load(path)
    path.with_suffix(".yaml").write_text("Pixelsize: -130\n")
    with pytest.raises(FileFormatError, match="Pixelsize"):
        Locs.load(path)


def test_bad_picasso_files(tmp_path):
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as fh:
        fh["movie"] = np.zeros((2, 2))
    with pytest.raises(FileFormatError, match="no dataset 'locs'"):
        fm.read_picasso_hdf5(path, pixel_size_nm=100.0)
    with h5py.File(path, "w") as fh:
        fh["locs"] = np.zeros((3, 2))
    with pytest.raises(FileFormatError, match="compound"):
        fm.read_picasso_hdf5(path, pixel_size_nm=100.0)
    with h5py.File(path, "w") as fh:
        fh["locs"] = np.zeros(3, dtype=[("frame", "u4"), ("x", "f4")])
    with pytest.raises(FileFormatError, match=r"lacks field\(s\) \['y'\]"):
        fm.read_picasso_hdf5(path, pixel_size_nm=100.0)
    path.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(FileFormatError, match="HDF5"):
        fm.read_picasso_hdf5(path, pixel_size_nm=100.0)


def test_truncated_picasso(tmp_path):
    path = tmp_path / "cut.hdf5"
    make_locs(n=2000).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="truncated"):
        Locs.load(path)


def test_picasso_needs_pixel_size(tmp_path):
    locs = make_locs().with_metadata(pixel_size_nm=None)
    with pytest.raises(ValueError, match="pixel_size_nm"):
        locs.save(tmp_path / "x.hdf5")


def test_picasso_without_image_shape(tmp_path):
    locs = make_locs().with_metadata(image_shape=None, n_frames=None)
    path = tmp_path / "x.hdf5"
    locs.save(path)
    docs = fm.read_yaml(fm.yaml_sidecar(path))
    assert docs[0]["Width"] >= math.ceil(locs.x_nm.max() / 100.0)
    assert docs[0]["Frames"] == locs.frame.max() + 1


# ============================================================================================
# YAML subset
# ============================================================================================


def test_read_handwritten_picasso_yaml():
    docs = fm.read_yaml(PICASSO_YAML)
    assert len(docs) == 2
    assert docs[0]["Byte Order"] == "<" and docs[0]["Frames"] == 2000
    assert docs[0]["File"] == "C:/data/run 3/movie.ome.tif"
    assert docs[0]["Micro-Manager Metadata"] == {
        "Andor Zyla-Exposure": "50.0000",
        "Andor Zyla-Sensitivity/DynamicRange": "16-bit (high well capacity and low noise)",
    }
    assert docs[1] == {
        "Baseline": 100,
        "Box Size": 7,
        "Fit method": "LQ, Gaussian",
        "Gain": 1,
        "Generated by": "Picasso Localize",
        "Min. Net Gradient": 5000.0,
        "Pixelsize": 130,
        "Quantum Efficiency": 0.82,
        "ROI": None,
        "Sensitivity": 0.46,
    }


def test_yaml_scalars_and_sequences():
    text = textwrap.dedent(
        """\
        %YAML 1.1
        ---
        # a comment
        a: 1.0e-05
        b: 1e5
        c: yes
        d: 'it''s: quoted'
        e: "tab\\tand \\u00b5m"
        f: [1, 2.5, 'x, y', null]
        g:
        - 3
        - four
        h: .inf
        i: -.inf
        j: .nan
        k: ~
        l: 1_000
        m: plain # trailing comment
        n: {}
        'on': off
        ...
        """
    )
    (doc,) = fm.read_yaml(text)
    assert doc["a"] == 1e-5 and doc["b"] == "1e5" and doc["c"] is True
    assert doc["d"] == "it's: quoted" and doc["e"] == "tab\tand µm"
    assert doc["f"] == [1, 2.5, "x, y", None] and doc["g"] == [3, "four"]
    assert doc["h"] == math.inf and doc["i"] == -math.inf and math.isnan(doc["j"])
    assert doc["k"] is None and doc["l"] == 1000 and doc["m"] == "plain" and doc["n"] == {}
    assert doc["on"] is False


def test_yaml_round_trip_and_pyyaml_agreement(tmp_path):
    docs = [
        {"Frames": 2000, "Height": 64, "Width": 64, "nested": {"a": 1, "b": "two"}},
        {
            "Generated by": "stacklab 0.1.0",
            "Pixelsize": 100.0,
            "tiny": 1e-12,
            "big": 1e20,
            "neg": -3,
            "flag": False,
            "none": None,
            "yes": "yes",
            "colon": "a: b",
            "hash": "x #y",
            "empty": "",
            "lead": " space",
            "number text": "1.5",
            "list": [1.0, "b", True],
            "newline": "two\nlines",
            "nan": float("nan"),
        },
        {},
    ]
    text = fm.write_yaml(docs, tmp_path / "info.yaml")
    assert (tmp_path / "info.yaml").read_text() == text
    back = fm.read_yaml(tmp_path / "info.yaml")
    assert len(back) == 3 and back[2] == {}

    def same(a, b):
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list | tuple):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return a == b and type(a) is type(b)

    assert same(back[:2], docs[:2])
    yaml = pytest.importorskip("yaml")
    theirs = list(yaml.safe_load_all(text))
    assert same(theirs[:2], docs[:2]) and theirs[2] == {}
    # and what PyYAML writes (Picasso's writer), we read the same way; PyYAML folds strings
    # with line breaks over several lines, which the subset does not read (an error says so)
    single_line = [docs[0], {k: v for k, v in docs[1].items() if k != "newline"}]
    dumped = yaml.dump_all(single_line, default_flow_style=False)
    assert same(fm.read_yaml(dumped), list(yaml.safe_load_all(dumped)))
    with pytest.raises(FileFormatError, match="multi-line"):
        fm.read_yaml(yaml.dump({"newline": "two\nlines"}))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a: &anchor 1\n", "not supported"),
        ("a: !!str 1\n", "not supported"),
        ("a: |\n  block\n", "not supported"),
        ("a: 'open\n", "single-quoted"),
        ('a: "open\n', "double-quoted"),
        ("a: 1\n\tb: 2\n", "tabs"),
        ("a: 1\n  b: 2\n", "indentation"),
        ("just text\n", "key: value"),
        ("a: 1\na: 2\n", "duplicate key"),
        ("a: [1, [2]]\n", "nested flow"),
        ("a: {b: 1}\n", "flow mappings"),
    ],
)
def test_yaml_errors(text, match):
    with pytest.raises(FileFormatError, match=match):
        fm.read_yaml(text)


def test_yaml_writer_rejects_unsupported():
    with pytest.raises(TypeError, match="cannot write"):
        fm.write_yaml([{"a": object()}])
    with pytest.raises(TypeError, match="nested sequences"):
        fm.write_yaml([{"a": [[1, 2]]}])
    with pytest.raises(TypeError, match="mapping"):
        fm.write_yaml([[1, 2]])


def test_empty_yaml():
    assert fm.read_yaml("") == []
    assert fm.read_yaml("# only a comment\n") == []
