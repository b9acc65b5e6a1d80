"""The localization pipeline against simulated truth; storage backends; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from tests.smlm._smlm_data import movie

from stacklab.errors import FileFormatError, ShapeError
from stacklab.io import open_stack, write_tiff
from stacklab.smlm import (
    COLUMNS,
    Camera,
    Flag,
    correct_drift,
    drift_rcc,
    localize,
    match_localizations,
    simulate_movie,
)
from stacklab.smlm.demo import precision_vs_crlb


@pytest.fixture(scope="module")
def sim():
    return movie(400, seed=3)


@pytest.fixture(scope="module")
def locs(sim):
    return localize(sim.movie, sim.camera, progress=False)


def test_accuracy_against_truth(sim, locs):
    m = match_localizations(locs, sim.truth, max_dist_nm=150.0)
    _, _, ratio = precision_vs_crlb(locs, sim.truth, m)
    print(f"recall {m.recall:.4f} precision {m.precision:.4f} isolated error/CRLB {ratio:.3f}")
    assert m.recall >= 0.95
    assert m.precision >= 0.95
    assert ratio <= 1.1
    df = locs.df
    assert set(df.columns) == set(COLUMNS)
    assert np.median(df["uncertainty [nm]"]) == pytest.approx(6.45, abs=0.3)
    assert np.median(df["intensity [photon]"]) == pytest.approx(1000.0, rel=0.03)
    assert np.median(df["offset [photon]"]) == pytest.approx(20.0, rel=0.03)
    assert locs.pixel_size_nm == 100.0 and locs.n_frames == 400
    assert locs.image_shape == (64, 64)


def test_chunking_and_storage_do_not_change_the_answer(sim, locs, tmp_path):
    import dask.array as da

    sub = sim.movie[:60]
    ref = localize(sub, sim.camera, progress=False).df
    small = localize(sub, sim.camera, chunk=7, progress=False).df
    lazy = localize(da.from_array(sub, chunks=(7, 64, 64)), sim.camera).df
    path = tmp_path / "movie.tif"
    write_tiff(path, sub, compression="zlib")
    with open_stack(path) as stack:
        from_file = localize(stack, sim.camera, chunk=16, progress=False).df
    for other in (small, lazy, from_file):
        assert len(other) == len(ref)
        np.testing.assert_allclose(other["x [nm]"], ref["x [nm]"], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(other["frame"], ref["frame"])
    np.testing.assert_array_equal(locs.df["frame"].to_numpy()[: len(ref)], ref["frame"])


def test_drift_is_corrected_below_5_nm():
    sim = movie(1000, seed=4, drift=(60.0, 80.0))
    locs = localize(sim.movie, sim.camera, progress=False)
    drift = drift_rcc(locs, n_segments=5)
    err = np.hypot(drift.x_nm - sim.drift_nm[:, 1], drift.y_nm - sim.drift_nm[:, 0])
    rms = float(np.sqrt(np.mean(err**2)))
    print(f"RCC residual drift {rms:.2f} nm RMS (100 nm drift, 1000 frames)")
    assert rms <= 5.0
    fixed = correct_drift(locs, drift)
    truth = sim.truth.copy()
    truth["x [nm]"] -= sim.drift_nm[truth["frame"], 1]
    truth["y [nm]"] -= sim.drift_nm[truth["frame"], 0]
    m = match_localizations(fixed, truth, max_dist_nm=150.0)
    assert m.recall >= 0.95


def test_emitter_at_the_edge_is_localized_and_flagged():
    pos = np.array([[0.3, 20.0], [20.0, 63.0], [31.0, 31.0]])  # (y, x) px
    sim = simulate_movie(30, (64, 64), positions=pos, k_on=1.0, k_off=0.0, seed=5)
    df = localize(sim.movie, sim.camera, progress=False).df
    assert len(df) == 90
    edge = (df["flags"] & int(Flag.EDGE)) != 0
    assert edge.sum() == 60
    m = match_localizations(df, sim.truth, max_dist_nm=100.0)
    assert m.recall == 1.0
    err = np.hypot(m.dx_nm, m.dy_nm)
    assert np.sqrt(np.mean(err**2)) < 4 * np.median(df["uncertainty [nm]"])


def test_saturated_pixels_are_flagged_not_fatal():
    pos = np.array([[20.0, 20.0], [40.0, 40.0]])
    sim = simulate_movie(
        10, (64, 64), positions=pos, photons=np.array([1e3, 3e6]), k_on=1.0, k_off=0.0, seed=6
    )
    assert sim.movie.max() == 65535
    df = localize(sim.movie, sim.camera, progress=False).df
    sat = (df["flags"] & int(Flag.SATURATED)) != 0
    bright = df["x [nm]"] > 3000
    assert sat[bright].all() and not sat[~bright].any()


def test_config_gives_the_camera(sim):
    from stacklab.smlm import Config

    cfg = Config.single(pixel_size_nm=100.0, gain=0.25, offset=100.0)
    a = localize(sim.movie[:30], cfg, progress=False).df
    b = localize(sim.movie[:30], sim.camera, progress=False).df
    np.testing.assert_array_equal(a["x [nm]"], b["x [nm]"])


def test_wrong_offset_is_a_clear_error(sim):
    with pytest.raises(ValueError, match="offset=400"):
        localize(sim.movie[:20], Camera(offset=400.0, gain=0.25), progress=False)


def test_empty_and_dropped_frames(sim):
    ref = localize(sim.movie[:40], sim.camera, progress=False).df
    mov = sim.movie[:40].copy()
    mov[[5, 6, 30]] = 0  # dropped frames (all zeros)
    df = localize(mov, sim.camera, progress=False).df
    assert not np.isin(df["frame"], [5, 6, 30]).any()
    keep = ~np.isin(ref["frame"], [5, 6, 30])
    np.testing.assert_allclose(df["x [nm]"], ref["x [nm]"][keep])
    background_only = simulate_movie(20, (32, 32), n_emitters=0, seed=1)
    out = localize(background_only.movie, background_only.camera, progress=False)
    assert len(out) == 0 and set(out.columns) == set(COLUMNS)


def test_tiff_with_pages_of_different_shapes_is_a_clear_error(tmp_path):
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.zeros((32, 32), np.uint16))
        tif.write(np.zeros((16, 32), np.uint16))
    with pytest.raises(FileFormatError, match="page"):
        open_stack(path)


def test_bad_arguments():
    mov = np.zeros((4, 32, 32), np.uint16)
    with pytest.raises(ShapeError, match="movie"):
        localize(np.zeros((32, 32)), Camera())
    with pytest.raises(ShapeError, match="box"):
        localize(np.zeros((3, 5, 5)), Camera())
    with pytest.raises(ValueError, match="box"):
        localize(mov, Camera(), box=6)
    with pytest.raises(TypeError, match="camera"):
        localize(mov, {"offset": 100})


@pytest.mark.slow
def test_issue_accuracy_figures_full_movie():
    """2000 frames of 64 x 64, the issue's camera and emitters, 100 nm linear drift."""
    sim = simulate_movie(2000, (64, 64), drift_nm=(60.0, 80.0), seed=11)
    locs = localize(sim.movie, sim.camera, progress=False)
    m = match_localizations(locs, sim.truth, max_dist_nm=150.0)
    _, _, ratio = precision_vs_crlb(locs, sim.truth, m)
    drift = drift_rcc(locs, n_segments=10)
    err = np.hypot(drift.x_nm - sim.drift_nm[:, 1], drift.y_nm - sim.drift_nm[:, 0])
    rms = float(np.sqrt(np.mean(err**2)))
    print(
        f"full movie: recall {m.recall:.4f}, precision {m.precision:.4f}, isolated error/CRLB "
        f"{ratio:.3f}, drift residual {rms:.2f} nm RMS"
    )
    assert m.recall >= 0.95 and m.precision >= 0.95
    assert ratio <= 1.1
    assert rms <= 5.0
