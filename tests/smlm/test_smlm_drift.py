"""RCC drift, channel registration, linking, rendering, NeNA, FRC on synthetic tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stacklab.smlm import (
    AffineTransform,
    Locs,
    apply_transform,
    correct_drift,
    drift_rcc,
    frc,
    frc_resolution,
    link,
    match_localizations,
    nena,
    register_channels,
    render,
    save_png,
    track_ids,
)


def blinking_table(
    n_frames=2000,
    n_emitters=150,
    sigma=8.0,
    drift=(0.0, 0.0),
    p_on=0.04,
    seed=0,
    field=6000.0,
):
    """Localizations of emitters on in random frames, Gaussian errors of ``sigma`` nm."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, field, (n_emitters, 2))
    on = rng.random((n_frames, n_emitters)) < p_on
    f, e = np.nonzero(on)
    t = f / max(n_frames - 1, 1)
    dx, dy = drift[1] * t, drift[0] * t
    df = pd.DataFrame(
        {
            "frame": f,
            "x [nm]": pos[e, 0] + dx + rng.normal(0, sigma, f.size),
            "y [nm]": pos[e, 1] + dy + rng.normal(0, sigma, f.size),
            "uncertainty [nm]": np.full(f.size, sigma),
            "intensity [photon]": np.full(f.size, 1000.0),
        }
    )
    return df, pos, e


def test_rcc_recovers_linear_drift():
    df, _, _ = blinking_table(drift=(60.0, 80.0))
    res = drift_rcc(df, n_segments=10, n_frames=2000)
    t = np.arange(2000) / 1999
    err = np.hypot(res.x_nm - 80 * t, res.y_nm - 60 * t)
    rms = float(np.sqrt(np.mean(err**2)))
    print(f"RCC on synthetic table: {rms:.2f} nm RMS, residual {res.residual_nm:.2f} nm")
    assert rms < 3.0
    assert res.x_nm[0] == 0.0 and res.n_pairs >= 40
    fixed = correct_drift(df, res)
    np.testing.assert_allclose(fixed["x [nm]"] - df["x [nm]"], -res.x_nm[df["frame"]])
    assert "x [nm]" in res.to_frame()


def test_rcc_follows_a_nonlinear_drift_and_keeps_locs_type():
    df, _, _ = blinking_table(n_frames=3000, n_emitters=200, seed=1)
    t = df["frame"].to_numpy() / 2999
    df["x [nm]"] += 50 * np.sin(2 * np.pi * t)
    locs = Locs(df, n_frames=3000, pixel_size_nm=100.0)
    res = drift_rcc(locs, n_segments=15)
    tt = np.arange(3000) / 2999
    assert np.sqrt(np.mean((res.x_nm - 50 * np.sin(2 * np.pi * tt)) ** 2)) < 5.0
    out = correct_drift(locs, res)
    assert isinstance(out, Locs) and out.n_frames == 3000


def test_rcc_bad_input():
    df, _, _ = blinking_table(n_frames=100, n_emitters=3)
    with pytest.raises(ValueError, match="n_segments"):
        drift_rcc(df, n_segments=1)
    with pytest.raises(ValueError, match="x \\[nm\\]"):
        drift_rcc(df.rename(columns={"x [nm]": "x_nm"}))


def test_register_channels_recovers_an_affine_map():
    rng = np.random.default_rng(2)
    ref = rng.uniform(0, 20000, (300, 2))
    a = np.array([[1.002, 0.003, -140.0], [-0.002, 0.998, 75.0]])  # moving -> reference
    inv = np.linalg.inv(np.vstack([a, [0, 0, 1]]))[:2]
    mov = ref @ inv[:, :2].T + inv[:, 2] + rng.normal(0, 2.0, ref.shape)
    t = register_channels(
        pd.DataFrame({"x [nm]": ref[:, 0], "y [nm]": ref[:, 1]}),
        pd.DataFrame({"x [nm]": mov[:, 0], "y [nm]": mov[:, 1]}),
        max_dist_nm=300.0,
    )
    np.testing.assert_allclose(t.matrix[:, :2], a[:, :2], atol=2e-4)
    np.testing.assert_allclose(t.matrix[:, 2], a[:, 2], atol=3.0)
    assert t.n_matched == 300 and t.rms_nm == pytest.approx(2.0 * math.sqrt(2), rel=0.15)
    moved = apply_transform(pd.DataFrame({"x [nm]": mov[:, 0], "y [nm]": mov[:, 1]}), t)
    assert np.sqrt(np.mean((moved["x [nm]"] - ref[:, 0]) ** 2)) < 3.0
    x, y = AffineTransform.identity().apply([1.0], [2.0])
    assert (x[0], y[0]) == (1.0, 2.0)


def test_linking_merges_blinks_with_inverse_variance_weights():
    # Two molecules, one on in frames 0-3, the other in 2-4 and again (gap) at 6.
    df = pd.DataFrame(
        {
            "frame": [0, 1, 2, 3, 2, 3, 4, 6],
            "x [nm]": [100.0, 102, 98, 101, 500, 503, 497, 501],
            "y [nm]": [100.0, 99, 101, 100, 800, 801, 799, 800],
            "uncertainty [nm]": [5.0, 10, 5, 10, 5, 5, 5, 5],
            "intensity [photon]": [1000.0] * 8,
        }
    )
    ids = track_ids(df, max_dist_nm=20.0)
    np.testing.assert_array_equal(ids, [0, 0, 0, 0, 1, 1, 1, 2])
    ids_gap = track_ids(df, max_dist_nm=20.0, max_gap=1)
    np.testing.assert_array_equal(ids_gap, [0, 0, 0, 0, 1, 1, 1, 1])
    merged = link(df, max_dist_nm=20.0)
    w = np.array([1 / 25, 1 / 100, 1 / 25, 1 / 100])
    assert merged["x [nm]"][0] == pytest.approx(np.sum(w * [100, 102, 98, 101]) / w.sum())
    assert merged["uncertainty [nm]"][0] == pytest.approx(1 / math.sqrt(w.sum()))
    assert merged["intensity [photon]"][1] == 3000.0
    assert list(merged["n_locs"]) == [4, 3, 1]
    assert list(merged["last_frame"]) == [3, 4, 6]


def test_linking_on_a_blinking_table_recovers_the_on_runs():
    df, _, e = blinking_table(n_frames=500, n_emitters=40, p_on=0.3, seed=3)
    f = df["frame"].to_numpy()
    ids = track_ids(df, max_dist_nm=50.0)
    # Truth: runs of consecutive frames of the same emitter.
    order = np.lexsort((f, e))
    new_run = np.ones(f.size, bool)
    new_run[1:] = (e[order][1:] != e[order][:-1]) | (f[order][1:] != f[order][:-1] + 1)
    assert ids.max() + 1 == pytest.approx(new_run.sum(), rel=0.02)


def test_render_histogram_and_gaussian():
    df = pd.DataFrame(
        {
            "frame": [0, 0, 1],
            "x [nm]": [15.0, 15.0, 55.0],
            "y [nm]": [5.0, 5.0, 95.0],
            "uncertainty [nm]": [3.0, 3.0, 8.0],
        }
    )
    h = render(df, pixel_nm=10.0, mode="histogram", extent=((0, 100), (0, 100)))
    assert h.image.shape == (10, 10) and h.image[0, 1] == 2 and h.image[9, 5] == 1
    g = render(df, pixel_nm=10.0, extent=((0, 100), (0, 100)))
    # Widths are clipped to >= 0.5 px = 5 nm; mass beyond the field's edges is lost.
    phi = stats.norm.cdf
    expected = 2 * phi(5.0 / 5.0) * phi(15.0 / 5.0) + phi(5.0 / 8.0)
    assert g.image.sum() == pytest.approx(expected, rel=1e-4)
    big = render(df, pixel_nm=2.0, extent=((-200, 300), (-200, 300)))
    assert big.image.sum() == pytest.approx(3.0, rel=2e-4)  # windows of +-4 sigma
    # The centroid of a Gaussian blob is the localization.
    one = render(df.iloc[[2]], pixel_nm=1.0, extent=((50, 140), (10, 100)))
    _, cc = np.indices(one.image.shape)
    assert (cc * one.image).sum() / one.image.sum() + 10.5 == pytest.approx(55.0, abs=1e-3)
    locs = Locs(df, pixel_size_nm=100.0, image_shape=(2, 3))
    assert render(locs, pixel_nm=10.0).image.shape == (20, 30)
    with pytest.raises(ValueError, match="pixel_nm"):
        render(df, pixel_nm=1e-6)


def test_save_png(tmp_path):
    img = np.zeros((20, 30), np.float32)
    img[5, 5] = 3.0
    save_png(img, tmp_path / "a.png")
    from matplotlib import image as mpimg

    back = mpimg.imread(tmp_path / "a.png")
    assert back.shape[:2] == (20, 30)


def test_nena_recovers_the_precision():
    df, _, _ = blinking_table(n_frames=2000, n_emitters=150, sigma=8.0, p_on=0.3, seed=4)
    res = nena(df)
    print(f"NeNA {res.precision_nm:.2f} nm (true 8.00), fraction {res.fraction:.3f}")
    assert res.precision_nm == pytest.approx(8.0, rel=0.05)


def test_frc_of_two_noisy_copies_matches_the_analytic_curve():
    """FRC(q) = exp(-4 pi^2 s^2 q^2) for random points localized twice with errors s:
    the 1/7 crossing is at 1/q = 2 pi s / sqrt(ln 7)."""
    rng = np.random.default_rng(5)
    pts = rng.uniform(0, 4000, (100_000, 2))
    s = 10.0
    a = pd.DataFrame({"x [nm]": pts[:, 0] + rng.normal(0, s, len(pts))})
    a["y [nm]"] = pts[:, 1] + rng.normal(0, s, len(pts))
    b = pd.DataFrame({"x [nm]": pts[:, 0] + rng.normal(0, s, len(pts))})
    b["y [nm]"] = pts[:, 1] + rng.normal(0, s, len(pts))
    res = frc(a, b, pixel_nm=5.0)
    expected = 2 * math.pi * s / math.sqrt(math.log(7))
    print(f"FRC resolution {res.resolution_nm:.2f} nm, analytic {expected:.2f} nm")
    assert res.resolution_nm == pytest.approx(expected, rel=0.05)
    df = pd.concat([a, b], ignore_index=True)
    df["frame"] = np.arange(len(df))
    assert frc_resolution(df, pixel_nm=5.0, split="blocks", block_frames=100_000).resolution_nm == (
        pytest.approx(expected, rel=0.05)
    )


def test_match_localizations_counts():
    truth = pd.DataFrame({"frame": [0, 0, 1], "x [nm]": [0.0, 500, 0], "y [nm]": [0.0, 0, 0]})
    locs = pd.DataFrame(
        {"frame": [0, 0, 1, 1], "x [nm]": [10.0, 20, 5, 900], "y [nm]": [0.0, 0, 0, 0]}
    )
    m = match_localizations(locs, truth, max_dist_nm=100.0)
    assert m.recall == pytest.approx(2 / 3) and m.precision == pytest.approx(2 / 4)
    np.testing.assert_array_equal(np.sort(m.loc_index), [0, 2])
