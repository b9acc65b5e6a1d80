"""stacklab.smlm.locs: the localization table (columns, units, selection, concatenation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stacklab.smlm.locs import LENGTH_COLUMNS, REQUIRED_COLUMNS, STANDARD_COLUMNS, Locs


def make_locs(n=50, seed=0, **meta) -> Locs:
    rng = np.random.default_rng(seed)
    meta.setdefault("pixel_size_nm", 100.0)
    return Locs.from_arrays(
        np.sort(rng.integers(0, 20, n)),
        rng.uniform(0, 6400, n),
        rng.uniform(0, 6400, n),
        sigma=rng.uniform(110, 150, n),
        intensity=rng.uniform(500, 1500, n),
        offset=rng.uniform(15, 25, n),
        bkgstd=rng.uniform(4, 5, n),
        uncertainty=rng.uniform(5, 30, n),
        loglik=rng.normal(-300, 10, n),
        **meta,
    )


def test_columns_dtypes_and_order():
    locs = make_locs(n=5)
    assert locs.columns == [
        "frame",
        "x [nm]",
        "y [nm]",
        "sigma [nm]",
        "intensity [photon]",
        "offset [photon]",
        "bkgstd [photon]",
        "uncertainty [nm]",
        "loglik",
    ]
    df = locs.df
    assert df["frame"].dtype == np.int64
    assert all(df[c].dtype == np.float64 for c in locs.columns[1:])
    assert set(REQUIRED_COLUMNS) <= set(STANDARD_COLUMNS)
    assert len(locs) == 5 and "x [nm]" in locs


def test_input_dataframe_not_modified_and_df_is_a_copy():
    raw = pd.DataFrame({"y [nm]": [1.0, 2.0], "frame": [1.0, 0.0], "x [nm]": [3.0, 4.0]})
    before = raw.copy()
    locs = Locs(raw)
    pd.testing.assert_frame_equal(raw, before)
    assert locs.columns == ["frame", "x [nm]", "y [nm]"]
    df = locs.df
    df.loc[0, "x [nm]"] = -1.0
    assert locs.x_nm[0] == 3.0
    assert locs.frame.tolist() == [1, 0]


def test_extra_columns_are_kept():
    chi2 = np.array([0.1], dtype=np.float32)
    locs = Locs({"frame": [0], "x [nm]": [1.0], "y [nm]": [2.0], "chi2": chi2, "group": [7]})
    assert locs.columns == ["frame", "x [nm]", "y [nm]", "chi2", "group"]
    assert locs["group"].tolist() == [7]
    assert locs["chi2"].dtype == np.float64 and locs["chi2"][0] == np.float64(chi2[0])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"frame": [0], "x [nm]": [1.0]}, "lacks column"),
        ({"frame": [0], "x [px]": [1.0], "y [px]": [1.0]}, "from_pixels"),
        ({"frame": [0.5], "x [nm]": [1.0], "y [nm]": [1.0]}, "integers"),
        ({"frame": [-1], "x [nm]": [1.0], "y [nm]": [1.0]}, ">= 0"),
        ({"frame": [0], "x [nm]": [np.nan], "y [nm]": [1.0]}, "non-finite"),
        ({"frame": [0], "x [nm]": [1.0], "y [nm]": [1.0], "intensity [ADU]": [5.0]}, "photons"),
        ({"frame": [0], "x [nm]": [1.0], "y [nm]": [1.0], "sigma [px]": [1.3]}, "sigma"),
    ],
)
def test_invalid_tables(data, match):
    with pytest.raises(ValueError, match=match):
        Locs(data)


def test_invalid_metadata():
    with pytest.raises(ValueError, match="pixel_size_nm"):
        make_locs(pixel_size_nm=0.0)
    with pytest.raises(TypeError, match="pixel_size_nm"):
        make_locs(pixel_size_nm="100 nm")
    with pytest.raises(ValueError, match="image_shape"):
        make_locs(image_shape=(0, 10))
    with pytest.raises(ValueError, match="n_frames"):
        make_locs(n_frames=3)  # frames go up to 19
    with pytest.raises(TypeError, match="column"):
        Locs({"frame": [0], "x [nm]": ["a"], "y [nm]": [1.0]})


def test_pixel_conversion_round_trip():
    locs = make_locs(image_shape=(64, 64), n_frames=20)
    px = locs.to_pixels()
    for c in LENGTH_COLUMNS:
        if c in locs:
            name = c.split(" ")[0]
            np.testing.assert_allclose(px[f"{name} [px]"], locs[c] / 100.0, rtol=1e-15)
    np.testing.assert_array_equal(px["intensity [photon]"], locs["intensity"])
    back = Locs.from_pixels(px, 100.0, image_shape=(64, 64), n_frames=20)
    assert back.equals(locs, rtol=1e-15)
    assert back.columns == locs.columns
    np.testing.assert_allclose(locs.positions_px(), np.column_stack([px["y [px]"], px["x [px]"]]))
    # another pixel size on request
    np.testing.assert_allclose(locs.to_pixels(50.0)["x [px]"], locs.x_nm / 50.0)


def test_pixel_conversion_needs_pixel_size():
    locs = make_locs(pixel_size_nm=None)
    with pytest.raises(ValueError, match="pixel size is unknown"):
        locs.to_pixels()
    with pytest.raises(ValueError, match="both"):
        Locs.from_pixels({"frame": [0], "x [px]": [1.0], "x [nm]": [1.0], "y [px]": [1.0]}, 100.0)


def test_filter_and_select():
    locs = make_locs(n=200)
    sub = locs.filter(frame=(5, 9), uncertainty=(None, 20.0))
    f, u = locs.frame, locs["uncertainty"]
    keep = (f >= 5) & (f <= 9) & (u <= 20.0)
    assert len(sub) == keep.sum() > 0
    np.testing.assert_array_equal(sub.x_nm, locs.x_nm[keep])
    assert sub.pixel_size_nm == 100.0
    sub2 = locs.filter(**{"x [nm]": (1000.0, 2000.0)})
    assert np.all((sub2.x_nm >= 1000) & (sub2.x_nm <= 2000))
    assert len(locs.select(np.arange(3))) == 3
    with pytest.raises(KeyError, match="no column"):
        locs.filter(snr=(1, 2))
    with pytest.raises(ValueError, match="pair"):
        locs.filter(frame=5)
    with pytest.raises(ValueError, match="mask"):
        locs.select(np.ones(3, bool))
    # NaN in a bounded column drops the row
    nan = Locs({"frame": [0, 1], "x [nm]": [1.0, 2.0], "y [nm]": [1.0, 2.0], "chi2": [np.nan, 1]})
    assert nan.filter(chi2=(None, None)).frame.tolist() == [1]


def test_sort_is_stable():
    locs = Locs({"frame": [2, 0, 2, 1], "x [nm]": [1.0, 2.0, 3.0, 4.0], "y [nm]": [0.0] * 4})
    assert locs.sort().x_nm.tolist() == [2.0, 4.0, 1.0, 3.0]


def test_concat_channels_and_sequences():
    a = make_locs(n=10, seed=1, n_frames=20, image_shape=(64, 64))
    b = make_locs(n=7, seed=2, n_frames=30, image_shape=(64, 64))
    both = Locs.concat([a, b])
    assert len(both) == 17 and both.n_frames == 30 and both.image_shape == (64, 64)
    np.testing.assert_array_equal(both.frame, np.concatenate([a.frame, b.frame]))
    seq = Locs.concat([a, b], offset_frames=True)
    np.testing.assert_array_equal(seq.frame, np.concatenate([a.frame, b.frame + 20]))
    assert seq.n_frames == 50
    c = Locs({"frame": [3], "x [nm]": [1.0], "y [nm]": [1.0], "chi2": [0.1]}, pixel_size_nm=100)
    mixed = Locs.concat([a, c])
    assert np.isnan(mixed["sigma"][-1]) and np.isnan(mixed["chi2"][0])


def test_concat_errors():
    a = make_locs(n=3)
    with pytest.raises(ValueError, match="pixel sizes"):
        Locs.concat([a, make_locs(n=3, pixel_size_nm=110.0)])
    with pytest.raises(ValueError, match="image shapes"):
        Locs.concat([make_locs(image_shape=(10, 10)), make_locs(image_shape=(20, 20))])
    with pytest.raises(ValueError, match="at least one"):
        Locs.concat([])
    with pytest.raises(TypeError, match="not Locs"):
        Locs.concat([a, a.df])
    with pytest.raises(ValueError, match="integer column"):
        Locs.concat([a, Locs.from_arrays([0], [1.0], [1.0], channel=[1], pixel_size_nm=100.0)])


def test_empty_and_equals():
    e = Locs.empty(pixel_size_nm=100.0)
    assert len(e) == 0 and e.columns == list(REQUIRED_COLUMNS)
    a = make_locs()
    assert a.equals(make_locs()) and not a.equals(make_locs(seed=1))
    assert not a.equals(a.with_metadata(pixel_size_nm=110.0))
    with pytest.raises(TypeError, match="unknown metadata"):
        a.with_metadata(colour="red")
    assert "50 localizations" in repr(a)
