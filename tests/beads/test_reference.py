"""Reference-bead drift correction: ground-truth residuals, NaN handling, argument checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter

from stacklab.beads import reference_drift, subtract_reference

from .conftest import rms

N_FRAMES = 20000


def _tables(n_ref, *, n_frames=N_FRAMES, noise=(0.02, 0.02, 5.0), seed=0):
    """A track_movie-like table: bead 0 tethered (its own Brownian-like motion), beads 1..n_ref
    stuck; every bead moves with a common random-walk drift (~0.5 px / 50 nm per 100 frames)
    and carries independent white noise ``noise`` = (x px, y px, z nm).

    Returns the table, the tethered bead's true motion (n_frames, 3) and the common drift."""
    rng = np.random.default_rng(seed)
    k = n_ref + 1
    scale = np.array([0.05, 0.05, 5.0])  # random-walk step per frame: px, px, nm
    drift = np.cumsum(rng.normal(0.0, 1.0, (n_frames, 3)) * scale, axis=0)
    # tethered bead: an Ornstein-Uhlenbeck-like motion (AR(1)), 0.3 px / 40 nm amplitude
    amp = np.array([0.3, 0.3, 40.0])
    e = rng.normal(0.0, 1.0, (n_frames, 3)) * amp * np.sqrt(1 - 0.9**2)
    motion = lfilter([1.0], [1.0, -0.9], e, axis=0)
    mean_pos = np.column_stack(
        [rng.uniform(20, 200, k), rng.uniform(20, 100, k), rng.uniform(-500, 500, k)]
    )
    pos = mean_pos[None] + drift[:, None, :]
    pos[:, 0] += motion
    pos = pos + rng.normal(0.0, 1.0, pos.shape) * np.asarray(noise)
    table = pd.DataFrame(
        {
            "frame": np.repeat(np.arange(n_frames), k),
            "bead": np.tile(np.arange(k), n_frames),
            "x": pos[:, :, 0].reshape(-1),
            "y": pos[:, :, 1].reshape(-1),
            "z": pos[:, :, 2].reshape(-1),
            "quality": np.ones(n_frames * k),
        }
    )
    return table, motion, drift


@pytest.mark.parametrize("n_ref", [1, 2, 4])
def test_residual_noise_is_sigma_sqrt_one_plus_one_over_k(n_ref):
    noise = np.array([0.02, 0.03, 5.0])
    table, motion, drift = _tables(n_ref, noise=noise, seed=n_ref)
    before = table.copy()
    out = subtract_reference(table, list(range(1, n_ref + 1)))
    pd.testing.assert_frame_equal(table, before)  # input untouched
    assert list(out.columns) == list(table.columns) and len(out) == len(table)
    bead = out[out.bead == 0]
    raw = table[table.bead == 0]
    expect = noise * np.sqrt(1.0 + 1.0 / n_ref)
    # relative standard error of an RMS estimated from N independent samples: 1 / sqrt(2 N)
    tol = 5.0 / np.sqrt(2.0 * N_FRAMES)
    for j, c in enumerate("xyz"):
        resid = bead[c].to_numpy() - motion[:, j]
        resid = resid - resid.mean()  # the absolute level is the bead's mean position
        uncorrected = raw[c].to_numpy() - motion[:, j]
        got = rms(resid)
        print(
            f"\n{n_ref} reference bead(s), {c}: residual RMS {got:.4g} (expected "
            f"{expect[j]:.4g} = noise * sqrt(1 + 1/k)), uncorrected "
            f"{rms(uncorrected - uncorrected.mean()):.4g}"
        )
        assert abs(got / expect[j] - 1.0) < tol
        assert rms(uncorrected - uncorrected.mean()) > 10 * got
    # the measured drift is the true drift up to a constant, with noise sigma / sqrt(k)
    measured = reference_drift(table, list(range(1, n_ref + 1)))
    assert list(measured.columns) == ["x", "y", "z", "n_reference"]
    np.testing.assert_array_equal(measured["n_reference"], n_ref)
    for j, c in enumerate("xyz"):
        d = measured[c].to_numpy() - drift[:, j]
        assert abs(rms(d - d.mean()) / (noise[j] / np.sqrt(n_ref)) - 1.0) < tol


def test_stuck_bead_corrected_by_itself_is_constant_and_keep_reference():
    table, _, _ = _tables(2, n_frames=50, noise=(0.0, 0.0, 0.0))
    out = subtract_reference(table, 1)
    for c in "xyz":
        ref = out[out.bead == 1][c].to_numpy()
        np.testing.assert_allclose(ref, table[table.bead == 1][c].mean(), rtol=0, atol=1e-9)
        # without noise, both stuck beads give the same drift: bead 2 becomes constant too
        np.testing.assert_allclose(np.ptp(out[out.bead == 2][c]), 0.0, atol=1e-9)
    dropped = subtract_reference(table, [1, 2], keep_reference=False)
    assert dropped.bead.unique().tolist() == [0]
    np.testing.assert_array_equal(dropped.index, table.index[table.bead == 0])
    only_x = subtract_reference(table, [1], columns=["x"])
    pd.testing.assert_series_equal(only_x.y, table.y)
    pd.testing.assert_series_equal(only_x.quality, table.quality)


def test_nan_values_and_frames_without_reference():
    table, motion, drift = _tables(2, n_frames=40, noise=(0.0, 0.0, 0.0), seed=3)
    t = table.copy()
    both = t.frame.isin([5, 6]) & t.bead.isin([1, 2])
    t.loc[both, ["x", "y", "z"]] = np.nan  # no reference in frames 5, 6
    t.loc[(t.frame == 10) & (t.bead == 1), "x"] = np.nan  # one reference left in frame 10
    t.loc[(t.frame >= 20) & (t.bead == 2), "y"] = np.nan  # bead 2 lost half way (y only)
    t.loc[t.bead == 2, "z"] = np.nan  # bead 2 never has z
    out = subtract_reference(t, [1, 2])
    dr = reference_drift(t, [1, 2])
    np.testing.assert_array_equal(dr["n_reference"].to_numpy()[[4, 5, 6, 10]], [2, 0, 0, 1])
    gap = out.frame.isin([5, 6])
    assert out[gap][["x", "y", "z"]].isna().all().all()
    assert out[~gap & (out.bead == 0)][["x", "y", "z"]].notna().all().all()
    # noise-free: in every frame with a reference the tethered bead is its true motion plus a
    # constant, also where a reference is missing (no jump by the difference of bead means)
    bead0 = out[(out.bead == 0) & ~gap]
    frames = bead0.frame.to_numpy()
    for j, c in enumerate("xyz"):
        resid = bead0[c].to_numpy() - motion[frames, j]
        np.testing.assert_allclose(resid, resid[0], rtol=0, atol=1e-8)
        d = dr[c].to_numpy()[frames] - drift[frames, j]
        np.testing.assert_allclose(d, d[0], rtol=0, atol=1e-8)


def test_complete_references_use_each_beads_own_mean():
    table, _, _ = _tables(3, n_frames=200, seed=6)
    dr = reference_drift(table, [1, 2, 3])
    for c in "xyz":
        wide = table[table.bead > 0].pivot(index="frame", columns="bead", values=c).to_numpy()
        np.testing.assert_allclose(
            dr[c].to_numpy(), (wide - wide.mean(axis=0)).mean(axis=1), rtol=0, atol=1e-9
        )


def test_table_order_does_not_matter():
    table, _, _ = _tables(3, n_frames=30, seed=4)
    shuffled = table.sample(frac=1.0, random_state=0)
    a = subtract_reference(table, [1, 3])
    b = subtract_reference(shuffled, [1, 3]).loc[table.index]
    pd.testing.assert_frame_equal(a, b)


def test_errors_name_the_argument():
    table, _, _ = _tables(2, n_frames=10)
    with pytest.raises(ValueError, match=r"reference bead\(s\) \[7\] are not in the table"):
        subtract_reference(table, [1, 7])
    with pytest.raises(ValueError, match="reference is empty"):
        subtract_reference(table, [])
    with pytest.raises(ValueError, match="integer bead ids"):
        subtract_reference(table, [1.5])
    with pytest.raises(ValueError, match=r"table lacks column\(s\) \['z'\]"):
        subtract_reference(table.drop(columns="z"), 1)
    with pytest.raises(ValueError, match="columns is empty"):
        subtract_reference(table, 1, columns=[])
    with pytest.raises(ValueError, match="more than one row"):
        subtract_reference(pd.concat([table, table.iloc[:1]]), 1)
    with pytest.raises(TypeError, match="DataFrame"):
        subtract_reference(table.to_numpy(), 1)
