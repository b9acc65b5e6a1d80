"""z look-up tables: calibration, continuous lookup (no dead zones), files, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stacklab.beads import ZLUT, lookup_z, make_zlut, simulate, simulate_zscan, track
from stacklab.errors import FileFormatError, ShapeError

from .conftest import Z_FAST, rms


def test_make_zlut_shapes(lut_fast):
    assert lut_fast.n_planes == Z_FAST.size
    assert lut_fast.n_bins == 59 and lut_fast.bin_width == 0.5
    np.testing.assert_array_equal(lut_fast.z, Z_FAST)
    assert lut_fast.pixel_size_nm == 100.0
    assert lut_fast.z_range == (-2000.0, 2000.0)
    assert not lut_fast.z.flags.writeable


def test_repeated_and_unsorted_heights_are_averaged_and_sorted(zscan_fast):
    imgs = zscan_fast.images[:5]
    z = Z_FAST[:5]
    order = np.array([4, 2, 0, 3, 1, 2, 2])
    lut = make_zlut(imgs[order], z[order])
    ref = make_zlut(imgs, z)
    np.testing.assert_array_equal(lut.z, z)
    np.testing.assert_allclose(lut.profiles, ref.profiles, rtol=1e-12)


def test_lookup_of_table_rows_returns_their_heights(lut_fast):
    z, q = lookup_z(lut_fast.profiles, lut_fast)
    np.testing.assert_allclose(z, lut_fast.z, atol=0.5)
    np.testing.assert_allclose(q, 1.0, atol=1e-9)
    # scale and offset do not matter
    z2, _ = lookup_z(3.0 * lut_fast.profiles + 7.0, lut_fast)
    np.testing.assert_allclose(z2, z, atol=1e-6)


def test_z_accuracy_noise_free(lut_fast, beads_clean):
    res = track(beads_clean.images, lut_fast)
    err = res.z - beads_clean.z
    assert rms(err) <= 10.0
    assert rms(err) < 3.0  # measured: about 1 nm
    assert np.all(res.quality > 0.99)


def test_z_accuracy_with_noise(lut_fast, beads_noisy):
    res = track(beads_noisy.images, lut_fast)
    assert rms(res.z - beads_noisy.z) < 6.0  # measured: about 1.5 nm


def test_no_dead_zones_at_table_ends(lut_fast):
    z_true = np.array([-2000.0, -1990.0, -1960.0, -1920.0, 1910.0, 1960.0, 1995.0, 2000.0])
    sim = simulate(z_true.size, z=z_true, seed=21)
    res = track(sim.images, lut_fast)
    assert np.all(np.isfinite(res.z))
    np.testing.assert_allclose(res.z, z_true, atol=10.0)


def test_beyond_the_table_is_clamped_with_lower_quality(lut_fast):
    sim = simulate(2, z=[2600.0, 1000.0], seed=22)
    res = track(sim.images, lut_fast)
    assert res.z[0] == lut_fast.z[-1]
    assert res.quality[0] < res.quality[1]


def test_quality_is_low_for_non_beads(lut_fast):
    rng = np.random.default_rng(3)
    z, q = lookup_z(rng.standard_normal((5, lut_fast.n_bins)), lut_fast)
    assert np.all(q < 0.7) and np.all(np.isfinite(z))
    z, q = lookup_z(np.full((1, lut_fast.n_bins), np.nan), lut_fast)
    assert np.isnan(z[0]) and np.isnan(q[0])


def test_mismatched_bins_and_types(lut_fast):
    with pytest.raises(ShapeError, match="bins"):
        lookup_z(np.zeros((3, lut_fast.n_bins - 1)), lut_fast)
    with pytest.raises(TypeError, match="ZLUT"):
        lookup_z(np.zeros((3, 59)), lut_fast.to_magtrack())
    # a table made from larger images than the frames to track
    small = simulate(2, size=48, seed=1)
    with pytest.raises(ShapeError, match="larger images"):
        track(small.images, lut_fast)
    with pytest.raises(ValueError, match="bin_width"):
        track(simulate(1, seed=1).images, lut_fast, bin_width=1.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"z": np.array([1.0, 1.0]), "profiles": np.zeros((2, 4))}, ValueError, "increasing"),
        ({"z": np.array([1.0]), "profiles": np.zeros((1, 4))}, ShapeError, "2 planes"),
        ({"z": np.array([1.0, 2.0]), "profiles": np.zeros((3, 4))}, ShapeError, "profiles"),
        ({"z": np.array([1.0, 2.0]), "profiles": np.full((2, 4), np.nan)}, ValueError, "finite"),
        (
            {"z": np.array([1.0, 2.0]), "profiles": np.zeros((2, 4)), "method": "fft"},
            ValueError,
            "method",
        ),
    ],
)
def test_invalid_tables(kwargs, error, match):
    with pytest.raises(error, match=match):
        ZLUT(**kwargs)


def test_make_zlut_bad_input(zscan_fast):
    imgs = zscan_fast.images[:4]
    with pytest.raises(ShapeError, match="z has"):
        make_zlut(imgs, Z_FAST[:3])
    with pytest.raises(ValueError, match="finite"):
        make_zlut(imgs, [0.0, np.nan, 1.0, 2.0])
    with pytest.raises(ValueError, match="distinct"):
        make_zlut(imgs, [5.0, 5.0, 5.0, 5.0])
    bad = imgs.copy()
    bad[1:] = np.nan
    with pytest.raises(ValueError, match="distinct"):
        make_zlut(bad, Z_FAST[:4])
    with pytest.raises(ShapeError, match="empty"):
        make_zlut(imgs[:0], [])


def test_nan_calibration_frame_is_left_out(zscan_fast, caplog):
    imgs = zscan_fast.images[:6].copy()
    imgs[2, 0, 0] = np.nan
    lut = make_zlut(imgs, Z_FAST[:6])
    assert lut.n_planes == 5 and Z_FAST[2] not in lut.z
    assert "left out" in caplog.text


@pytest.mark.parametrize("name", ["lut.npy", "lut.npz", "lut.h5"])
def test_save_load_roundtrip(lut_fast, tmp_path, name):
    path = lut_fast.save(tmp_path / name)
    assert path.exists()
    back = ZLUT.load(path)
    np.testing.assert_array_equal(back.z, lut_fast.z)
    np.testing.assert_array_equal(back.profiles, lut_fast.profiles)
    assert (back.bin_width, back.method, back.n_angles) == (0.5, "interp", 64)
    assert back.pixel_size_nm == 100.0
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left behind


def test_magtrack_layout(lut_fast, tmp_path):
    arr = lut_fast.to_magtrack()
    assert arr.shape == (1 + lut_fast.n_bins, lut_fast.n_planes)
    back = ZLUT.from_magtrack(arr[:, ::-1], bin_width=0.5, method="interp")
    np.testing.assert_array_equal(back.profiles, lut_fast.profiles)
    np.save(tmp_path / "mt.npy", arr)
    loaded = ZLUT.load(tmp_path / "mt.npy", bin_width=0.5)
    assert loaded.method == "bin" and loaded.n_bins == lut_fast.n_bins


def test_load_errors(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        ZLUT.load(tmp_path / "missing.npy")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(FileFormatError, match="lacks"):
        ZLUT.load(tmp_path / "other.npz")
    np.save(tmp_path / "one_d.npy", np.zeros(3))
    with pytest.raises(FileFormatError, match="2-D"):
        ZLUT.load(tmp_path / "one_d.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(FileFormatError):
        ZLUT.load(tmp_path / "junk.npy")
    meta = json.dumps({"bin_width": 0.5})
    np.savez(tmp_path / "bad.npz", z=np.zeros(2), profiles=np.zeros((2, 3)), meta=meta)
    with pytest.raises(ValueError, match="increasing"):
        ZLUT.load(tmp_path / "bad.npz")


def test_full_range_z_accuracy():
    """Issue target: LUT +-5 um at 100 nm, 1000 noise-free frames, z RMS <= 10 nm, no NaN."""
    z_lut = np.arange(-5000.0, 5050.0, 100.0)
    lut = make_zlut(simulate_zscan(z_lut).images, z_lut)
    sim = simulate(1000, z_range=(-5000.0, 5000.0), seed=31)
    res = track(sim.images, lut)
    assert np.all(np.isfinite(res.z))
    err = rms(res.z - sim.z)
    print(f"full-range z RMS {err:.2f} nm")
    assert err <= 10.0
    noisy = simulate(1000, z_range=(-5000.0, 5000.0), photons=1000.0, seed=32)
    res = track(noisy.images, lut)
    assert np.all(np.isfinite(res.z))
    assert rms(res.z - noisy.z) <= 10.0
