"""stacklab.compat.speckle_tracking against recorded outputs of speckle_tracking 2020.1.

Golden files: tests/golden/speckle_tracking (see its README.md). Each file holds the exact inputs
(``in_*``) of one package call, its outputs (``out_*``) and, in ``scan_*.npz``, the simulator's
ground truth (``truth_*``).

* ``test_matches_*`` require the package's numbers where its algorithm is deterministic and
  right: float64 outputs to 1e-12, float32 (OpenCL) outputs to 1e-5 relative.
* ``test_differs_*`` document each deliberate difference: they check stacklab against the
  ground truth (or an independent computation in the test) and assert how and where the
  package's recorded answer differs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from stacklab.compat import speckle_tracking as st

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "speckle_tracking"
TAGS = ["2d", "1d"]


def load(name: str) -> dict[str, np.ndarray]:
    path = GOLDEN / name
    if not path.exists():
        pytest.fail(f"golden file missing: {path}")
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def args(d: dict, *names: str) -> list:
    """Copies of ``in_<name>`` (0-d arrays become Python scalars)."""
    out = []
    for k in names:
        v = d["in_" + k]
        out.append(v.item() if v.ndim == 0 else v.copy())
    return out


def assert_unchanged(d: dict, names: tuple[str, ...], values: list) -> None:
    for k, v in zip(names, values):
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, d["in_" + k], err_msg=f"{k} was modified in place")


def interior(shape: tuple[int, int], margin: int = 3) -> np.ndarray:
    """Bool (M, L): pixels at least ``margin`` from the edge (along fs only for M == 1)."""
    m, n = shape
    out = np.zeros(shape, dtype=bool)
    if m == 1:
        out[:, margin : n - margin] = True
    else:
        out[margin : m - margin, margin : n - margin] = True
    return out


def map_rms_error(pixel_map: np.ndarray, truth: np.ndarray, good: np.ndarray) -> float:
    """RMS of (map - truth) over ``good`` pixels after removing the global offset, px."""
    e = (pixel_map - truth)[:, good]
    e = e - e.mean(axis=1, keepdims=True)
    return float(np.sqrt(np.mean(np.sum(e**2, axis=0))))


# ------------------------------------------------------------------------------------------
# geometry: exact
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", TAGS)
def test_matches_make_pixel_translations(tag):
    d = load(f"make_pixel_translations_{tag}.npz")
    names = ("translations", "basis", "dx", "dy")
    a = args(d, *names)
    dij = st.make_pixel_translations(*a, verbose=False)
    assert dij.shape == d["out_dij_n"].shape
    np.testing.assert_allclose(dij, d["out_dij_n"], rtol=0, atol=1e-12)
    assert_unchanged(d, names, a)
    # ... and they are the simulator's true positions.
    np.testing.assert_allclose(dij, load(f"scan_{tag}.npz")["truth_dij"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("astig", [False, True])
def test_matches_generate_pixel_map(tag, astig):
    d = load(f"generate_pixel_map_{tag}.npz")
    names = ("shape", "translations", "basis", "x_pixel_size", "y_pixel_size", "z")
    a = args(d, *names)
    pre = "out_astig_" if astig else "out_"
    if astig:
        u, dij, res = st.generate_pixel_map(
            tuple(a[0]),
            *a[1:],
            float(d["in_astig_defocus_fs"]),
            float(d["in_astig_defocus_ss"]),
            verbose=False,
        )
    else:
        u, dij, res = st.generate_pixel_map(
            tuple(a[0]), *a[1:], float(d["in_defocus_fs"]), verbose=False
        )
    assert u.shape == d[pre + "pixel_map"].shape and u.dtype == np.float64
    np.testing.assert_allclose(u, d[pre + "pixel_map"], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dij, d[pre + "pixel_translations"], rtol=0, atol=1e-12)
    assert set(res) == {"dss", "dfs", "magnification", "magnification_ss", "magnification_fs"}
    for k, v in res.items():
        assert v == pytest.approx(float(d[pre + "res_" + k]), rel=1e-13), k
    assert_unchanged(d, names[1:], a[1:])


# ------------------------------------------------------------------------------------------
# reference image (object map)
# ------------------------------------------------------------------------------------------

OBJECT_NAMES = ("data", "mask", "W", "dij_n", "pixel_map")


@pytest.mark.parametrize("tag", TAGS)
def test_matches_make_object_map_nearest_identity_map(tag):
    """subpixel=False with the identity map (no two pixels of a frame collide): exact."""
    d = load(f"make_object_map_nosubpixel_{tag}.npz")
    a = args(d, *OBJECT_NAMES)
    obj, n0, m0 = st.make_object_map(*a, subpixel=False, verbose=False)
    assert obj.shape == d["out_O"].shape and obj.dtype == np.float64
    np.testing.assert_allclose(obj, d["out_O"], rtol=1e-12, atol=0)
    assert n0 == pytest.approx(float(d["out_n0"]), abs=1e-12)
    assert m0 == pytest.approx(float(d["out_m0"]), abs=1e-12)
    assert_unchanged(d, OBJECT_NAMES, a)
    # make_reference is the documented name of the same function.
    again, *_ = st.make_reference(*a, subpixel=False, verbose=False)
    np.testing.assert_array_equal(again, obj)


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("variant", ["subpixel", "truemap"])
def test_matches_make_object_map_bilinear(tag, variant):
    """subpixel=True: the package's float32 OpenCL splat, to 1e-5, except the last row/column.

    stacklab's bilinear weights clamp points in the last half pixel of the object grid onto the
    edge pixel where the package drops the out-of-grid share; only the last object row and
    column (and the last column of a 1D object) can differ, and only slightly.
    """
    d = load(f"make_object_map_{variant}_{tag}.npz")
    a = args(d, *OBJECT_NAMES)
    obj, n0, m0 = st.make_object_map(*a, subpixel=True, verbose=False)
    ref = d["out_O"]
    assert obj.shape == ref.shape
    assert n0 == pytest.approx(float(d["out_n0"]), abs=1e-12)
    assert m0 == pytest.approx(float(d["out_m0"]), abs=1e-12)
    np.testing.assert_array_equal(obj == -1, ref == -1)
    body = (slice(None), slice(0, -1)) if tag == "1d" else (slice(0, -1), slice(0, -1))
    np.testing.assert_allclose(obj[body], ref[body], rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(obj - ref)) < 0.05
    assert_unchanged(d, OBJECT_NAMES, a)


@pytest.mark.parametrize("tag", TAGS)
def test_differs_make_object_map_nearest_keeps_colliding_pixels(tag):
    """With a distorted map two pixels of one frame can land on one object pixel.

    The package's fancy-index ``+=`` keeps only one of them (2280 values lost in 2D, 27 in 1D);
    stacklab sums them all: it equals an unbuffered ``np.add.at`` accumulation computed here.
    """
    d = load(f"make_object_map_nosubpixel_truemap_{tag}.npz")
    a = args(d, *OBJECT_NAMES)
    data, mask, w, dij, u = a
    obj, n0, m0 = st.make_object_map(*a, subpixel=False, verbose=False)
    assert (n0, m0) == (pytest.approx(float(d["out_n0"])), pytest.approx(float(d["out_m0"])))
    num = np.zeros(obj.shape)
    den = np.zeros(obj.shape)
    for n in range(data.shape[0]):
        ss = np.rint(u[0][mask] - dij[n, 0] + n0).astype(int)
        fs = np.rint(u[1][mask] - dij[n, 1] + m0).astype(int)
        np.add.at(num, (ss, fs), (w.astype(float) * data[n])[mask])
        np.add.at(den, (ss, fs), (w.astype(float) ** 2)[mask])
    expected = np.where(den > 0, num / np.where(den > 0, den, 1), -1.0)
    np.testing.assert_allclose(obj, expected, rtol=1e-12, atol=0)
    # The package lost contributions: its object differs on many pixels.
    n_diff = int(np.sum(~np.isclose(obj, d["out_O"], rtol=1e-9)))
    assert n_diff > (500 if tag == "2d" else 10)
    # Both are estimates of the true object; stacklab's correlates at least as well with it.
    scan = load(f"scan_{tag}.npz")
    k = np.arange(obj.shape[0]) - n0 + float(scan["truth_n0"])
    col = np.arange(obj.shape[1]) - m0 + float(scan["truth_m0"])
    kk, cc = np.meshgrid(np.rint(k).astype(int), np.rint(col).astype(int), indexing="ij")
    truth = scan["truth_object"]
    inside = (kk >= 0) & (kk < truth.shape[0]) & (cc >= 0) & (cc < truth.shape[1]) & (obj > 0)
    ok = inside & (d["out_O"] > 0)
    ours = np.corrcoef(obj[ok], truth[kk[ok], cc[ok]])[0, 1]
    theirs = np.corrcoef(d["out_O"][ok], truth[kk[ok], cc[ok]])[0, 1]
    assert ours >= theirs - 1e-3


# ------------------------------------------------------------------------------------------
# update_pixel_map
# ------------------------------------------------------------------------------------------

UPM_NAMES = ("data", "mask", "W", "O", "pixel_map", "n0", "m0", "dij_n")


def _golden_quadratic(err_quad: np.ndarray):
    """The package's sub-pixel fit, from its recorded error samples.

    Returns ``(stationary, is_min, sampled)``: the stationary point (2, M, L) of the
    least-squares quadratic through the 3 x 3 (or 3-point) errors, whether it is a minimum,
    and whether all samples were valid (the package writes 9999 for invalid ones).
    """
    e = err_quad.astype(np.float64)
    sampled = np.all(err_quad != 9999, axis=0)
    if e.shape[0] == 3:  # single-row detector: parabola along fs
        em, e0, ep = e
        curv = em + ep - 2 * e0
        with np.errstate(divide="ignore", invalid="ignore"):
            off = 0.5 * (em - ep) / curv
        stat = np.stack([np.zeros_like(off), off])
        return stat, curv > 0, sampled
    dy, dx = np.meshgrid([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], indexing="ij")
    dy, dx = dy.ravel(), dx.ravel()
    design = np.stack([dy**2, dx**2, dy, dx, dy * dx, np.ones(9)], axis=1)
    c = np.tensordot(np.linalg.pinv(design), e, axes=(1, 0))
    det = 4 * c[0] * c[1] - c[4] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.stack(
            [(-2 * c[1] * c[2] + c[4] * c[3]) / det, (c[4] * c[2] - 2 * c[0] * c[3]) / det]
        )
    return stat, (det > 0) & (c[0] > 0), sampled & (det != 0)


@pytest.mark.parametrize("tag", TAGS)
def test_matches_update_pixel_map_bilinear(tag):
    """speckle_tracking's subpixel=True search, where its quadratic step is a true minimum.

    Interior good pixels (3 px from the edge) whose recorded quadratic fit has a minimum within
    one pixel: the updated map agrees with the package's to 1e-4 px on >= 99 % of them.
    """
    d = load(f"update_pixel_map_subpixel_{tag}.npz")
    a = args(d, *UPM_NAMES)
    out, res = st.update_pixel_map(*a, search_window=[5, 5], subpixel=True, verbose=False)
    assert_unchanged(d, UPM_NAMES, a)
    mask, pm = d["in_mask"], d["in_pixel_map"]
    ref = d["out_pixel_map"]
    assert out.shape == ref.shape and out.dtype == np.float64
    stat, is_min, sampled = _golden_quadratic(d["out_res_err_quad"])
    np.testing.assert_allclose(
        stat[:, sampled], d["out_res_pixel_shift"][:, sampled], rtol=1e-3, atol=2e-3
    )
    proper = sampled & is_min & (np.max(np.abs(stat), axis=0) <= 1.0)
    sel = mask & interior(mask.shape) & proper
    agree = np.max(np.abs(out - ref), axis=0) < 1e-4
    frac = float(np.mean(agree[sel]))
    print(f"{tag}: {frac:.4f} of {int(sel.sum())} interior pixels agree to 1e-4 px")
    assert sel.sum() > (800 if tag == "2d" else 50)
    assert frac >= 0.99
    assert res["refined"].dtype == bool and res["pixel_shift"].shape == pm.shape
    assert res["error_map"].shape == mask.shape and np.all(res["error_map"][mask] > 0)
    assert res["error"] == pytest.approx(float(res["error_map"].sum()))


@pytest.mark.parametrize("tag", TAGS)
def test_differs_update_pixel_map_checks_the_minimum(tag):
    """The package applies its quadratic step at any stationary point up to 3 px away.

    In 2D it moved 4 pixels to a maximum or saddle of the fitted quadratic and 9 more by more
    than a pixel. stacklab accepts the step only at a minimum within one pixel: none of those
    pixels gets the package's value, and none of them is marked refined where stacklab found
    the same integer shift.
    """
    d = load(f"update_pixel_map_subpixel_{tag}.npz")
    a = args(d, *UPM_NAMES)
    out, res = st.update_pixel_map(*a, search_window=[5, 5], subpixel=True, verbose=False)
    mask, pm, ref = d["in_mask"], d["in_pixel_map"], d["out_pixel_map"]
    stat, is_min, sampled = _golden_quadratic(d["out_res_err_quad"])
    applied = sampled & (np.sum(stat**2, axis=0) < 9) & mask
    wrong = applied & (~is_min | (np.max(np.abs(stat), axis=0) > 1.0))
    if tag == "2d":
        assert int(np.sum(applied & ~is_min)) == 4
        assert int(wrong.sum()) >= 10
    differs = np.max(np.abs(out - ref), axis=0) > 1e-3
    assert np.all(differs[wrong])
    ref_int = np.rint(ref - pm - d["out_res_pixel_shift"])
    ours_int = np.rint(out - pm - np.where(res["refined"][None], res["pixel_shift"], 0.0))
    same_int = np.all(ref_int == ours_int, axis=0) & wrong
    assert not np.any(res["refined"][same_int])


def test_differs_update_pixel_map_zero_object_is_data():
    """An object value of exactly 0 is data, not a missing value.

    The package's integer search skips O == 0: a 6 x 6 block of zeros changes the update of 162
    pixels compared with a block of 1e-6. stacklab gives the same update for both.
    """
    d = load("quirk_zero_object_2d.npz")
    rest = args(d, "pixel_map", "n0", "m0", "dij_n")
    base = args(d, "data", "mask", "W")
    kw = {"search_window": [5, 5], "quadratic_refinement": False, "verbose": False}
    zero, _ = st.update_pixel_map(*base, d["in_O_zero"].copy(), *rest, **kw)
    eps, _ = st.update_pixel_map(*base, d["in_O_eps"].copy(), *rest, **kw)
    np.testing.assert_allclose(zero, eps, rtol=0, atol=1e-9)
    ref_diff = np.max(np.abs(d["out_upm_pixel_map"] - d["out_eps_upm_pixel_map"]), axis=0) > 0
    assert int(ref_diff.sum()) == 162


UPM_VARIANTS = [
    ("", {}, 0.01),
    ("_subpixel", {"subpixel": True}, 0.01),
    ("_filter", {"filter": 1.0, "fill_bad_pix": False, "clip": [-50, 50]}, 0.01),
    # Integer shifts only: nearest (package) and bilinear (stacklab) reading pick different
    # integers where two shifts are nearly tied; both are quantised to whole pixels.
    ("_noquad", {"quadratic_refinement": False}, 0.08),
]


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize(
    ("variant", "kw", "slack"), UPM_VARIANTS, ids=[v[0] or "_default" for v in UPM_VARIANTS]
)
def test_update_pixel_map_variants_move_toward_truth(tag, variant, kw, slack):
    """Every recorded variant: stacklab's single update improves the map as much as the package's.

    RMS error against the true map over interior good pixels, global offset removed (the
    README's figure: 0.745 px -> 0.534 px for the package's default 2D call).
    """
    d = load(f"update_pixel_map{variant}_{tag}.npz")
    truth = load(f"scan_{tag}.npz")["truth_pixel_map"]
    a = args(d, *UPM_NAMES)
    out, _ = st.update_pixel_map(*a, search_window=[5, 5], verbose=False, **kw)
    good = d["in_mask"] & interior(d["in_mask"].shape)
    before = map_rms_error(d["in_pixel_map"], truth, good)
    ref = map_rms_error(d["out_pixel_map"], truth, good)
    ours = map_rms_error(out, truth, good)
    print(f"{tag}{variant}: before {before:.3f}, package {ref:.3f}, stacklab {ours:.3f} px")
    assert ours < 0.85 * before
    assert ours <= ref + slack


# ------------------------------------------------------------------------------------------
# integrate_pixel_map
# ------------------------------------------------------------------------------------------

IPM_SCALARS = ("wavelength", "z", "x_pixel_size", "y_pixel_size", "dx", "dy")


def _remove_low_order_angles(r: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Residual of (2, M, L) angles after a fit of per-axis offsets and a common defocus."""
    _, m, n = r.shape
    i, j = np.indices((m, n), dtype=float)
    g = np.concatenate([good.ravel(), good.ravel()])
    one, nil = np.ones(m * n), np.zeros(m * n)
    design = np.stack([np.r_[one, nil], np.r_[nil, one], np.r_[i.ravel(), j.ravel()]], axis=1)
    coef, *_ = np.linalg.lstsq(design[g], r.reshape(-1)[g], rcond=None)
    return (r.reshape(-1) - design @ coef).reshape(r.shape)


def _remove_low_order_phase(p: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Residual of a phase after a fit of piston, tilts and common defocus over ``good``."""
    m, n = p.shape
    i, j = np.indices((m, n), dtype=float)
    design = np.stack([np.ones(m * n), i.ravel(), j.ravel(), (i**2 + j**2).ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design[good.ravel()], p.ravel()[good.ravel()], rcond=None)
    return p - (design @ coef).reshape(p.shape)


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a**2)))


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("which", ["", "truemap_"])
def test_matches_integrate_pixel_map_angles(tag, which):
    """The residual ray angles are the package's, up to the removed offsets and defocus.

    The package fits its offsets and defocus with the weight applied to the ss angles only;
    stacklab weights both axes, so the two differ by a fitted offset/defocus term; beyond that
    they agree to 1e-9 of the signal.
    """
    d = load(f"integrate_pixel_map_{tag}.npz")
    pm = d["in_" + which + "pixel_map"].copy() if which else d["in_pixel_map"].copy()
    weight = d["in_weight"].copy()
    scal = [float(d["in_" + k]) for k in IPM_SCALARS]
    phase, angles, res = st.integrate_pixel_map(pm, weight, *scal, maxiter=3000)
    np.testing.assert_array_equal(weight, d["in_weight"])
    np.testing.assert_array_equal(pm, d["in_" + which + "pixel_map"])
    ref = d["out_" + which + "angles"]
    assert angles.shape == ref.shape and phase.shape == pm.shape[1:]
    assert res["angles_forward"].shape == ref.shape
    good = weight > 0
    diff = _remove_low_order_angles(angles - ref, good)
    scale = np.max(np.abs(ref[:, good]))
    assert np.max(np.abs(diff[:, good])) < 1e-9 * scale
    if which:
        # The true map is curl-free: the angles implied by the phase are the angles, away
        # from masked pixels and the detector edge.
        foot = np.ones((3, 3)) if tag == "2d" else np.ones((1, 3))
        core = ndimage.binary_erosion(good, foot, border_value=0)
        forward = res["angles_forward"]
        assert np.max(np.abs(forward - angles)[:, core]) < 0.01 * scale


@pytest.mark.parametrize("tag", TAGS)
def test_differs_integrate_pixel_map_sign_follows_the_documentation(tag):
    """The phase has the documented sign, opposite to the package's output.

    Documented: ``grad Phi' = i Delta_ss - Delta_x (u + n0)``, so ``u = (i, j) + grad(psi)``
    gives ``Phi = -(2 pi Delta_ss dx / (wavelength z)) psi``. The package returns ``+psi``.
    stacklab matches minus the package's phase (up to piston, tilt and defocus and the
    package's coarser integration) and the true aberration better than the package does.
    """
    d = load(f"integrate_pixel_map_{tag}.npz")
    scan = load(f"scan_{tag}.npz")
    scal = [float(d["in_" + k]) for k in IPM_SCALARS]
    good = d["in_weight"] > 0
    phase, _, _ = st.integrate_pixel_map(
        d["in_truemap_pixel_map"].copy(), d["in_weight"].copy(), *scal
    )
    wavelength, z, xps, _, dx, _ = scal
    truth = -2 * np.pi * xps * dx / (wavelength * z) * scan["truth_psi"]
    ours = _remove_low_order_phase(phase, good)
    theirs = _remove_low_order_phase(d["out_truemap_phase"], good)
    truth = _remove_low_order_phase(truth, good)
    err_ours = _rms((ours - truth)[good])
    err_theirs_negated = _rms((-theirs - truth)[good])
    err_theirs_as_is = _rms((theirs - truth)[good])
    print(
        f"{tag}: signal {_rms(truth[good]):.3f} rad; error stacklab {err_ours:.4f}, "
        f"-package {err_theirs_negated:.4f}, package {err_theirs_as_is:.4f}"
    )
    assert err_theirs_as_is > 1.5 * _rms(truth[good])  # the package's sign is the opposite
    assert err_ours < 0.1 * _rms(truth[good])
    assert err_ours <= err_theirs_negated
    # On the updated (noisy) map as well: stacklab's phase is minus the package's.
    phase, _, _ = st.integrate_pixel_map(d["in_pixel_map"].copy(), d["in_weight"].copy(), *scal)
    ours = _remove_low_order_phase(phase, good)
    theirs = _remove_low_order_phase(d["out_phase"], good)
    assert np.corrcoef(ours[good], -theirs[good])[0, 1] > 0.95


# ------------------------------------------------------------------------------------------
# detector: mask, whitefield, region of interest
# ------------------------------------------------------------------------------------------


def _edge(shape: tuple[int, int]) -> np.ndarray:
    return ~interior(shape, margin=1)


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize(("thresh", "key"), [(400, "out_mask"), (50, "out_mask_thresh50")])
def test_matches_make_mask_away_from_the_edges(tag, thresh, key):
    """The package's statistic and threshold: identical on every pixel not on the frame edge."""
    d = load(f"make_mask_{tag}.npz")
    data = d["in_data"].copy()
    mask = st.make_mask(data, thresh=thresh)
    np.testing.assert_array_equal(data, d["in_data"])
    assert mask.shape == d[key].shape and mask.dtype == bool
    if tag == "2d":
        inner = ~_edge(mask.shape)
        np.testing.assert_array_equal(mask[inner], d[key][inner])


@pytest.mark.parametrize("tag", TAGS)
def test_differs_make_mask_finds_exactly_the_bad_pixels(tag):
    """thresh=50 flags exactly the simulated hot and dead pixels; 400 (default) the hot ones.

    The package's zero-padded median filter also flags the four corners of a 2D detector and,
    on a single row, 63 of 64 pixels (all but the dead one).
    """
    d = load(f"make_mask_{tag}.npz")
    scan = load(f"scan_{tag}.npz")
    truth = scan["truth_mask"]
    np.testing.assert_array_equal(st.make_mask(d["in_data"], thresh=50), truth)
    hot_only = np.ones_like(truth)
    hot_only[tuple(scan["truth_hot"].T)] = False
    np.testing.assert_array_equal(st.make_mask(d["in_data"]), hot_only)
    if tag == "2d":
        corners = np.zeros_like(truth)
        corners[[0, 0, -1, -1], [0, -1, 0, -1]] = True
        np.testing.assert_array_equal(d["out_mask_thresh50"], truth & ~corners)
        np.testing.assert_array_equal(d["out_mask"], hot_only & ~corners)
    else:
        assert int(np.sum(~d["out_mask"])) == 63
        assert d["out_mask"][tuple(scan["truth_dead"][0])]


@pytest.mark.parametrize("tag", TAGS)
def test_differs_make_mask_gaps_flags_repeated_pixels_only(tag):
    """mask_gaps flags pixels equal to a neighbour in every frame, and only those.

    The package flags pixels whose signed differences to a neighbour sum to zero over the
    frames: 12 ordinary pixels of the 2D scan. stacklab flags none of them, and flags a
    simulated gap (a column copied from its neighbour, a row of zeros).
    """
    d = load(f"make_mask_{tag}.npz")
    data = d["in_data"]
    plain = st.make_mask(data)
    np.testing.assert_array_equal(st.make_mask(data, mask_gaps=True), plain)
    extra = d["out_mask"] & ~d["out_mask_gaps"]  # what the package's mask_gaps added
    assert int(extra.sum()) == (12 if tag == "2d" else 0)
    assert np.all(plain[extra])
    gap = data.copy()
    gap[:, :, 20] = gap[:, :, 21]
    if tag == "2d":
        gap[:, 15, :] = 0
    flagged = ~st.make_mask(gap, mask_gaps=True) & st.make_mask(gap)
    assert np.all(flagged[:, 20]) and np.all(flagged[:, 21])
    if tag == "2d":
        assert np.all(flagged[15, :])
        assert int(flagged.sum()) == 2 * 32 + 40 - 2
    else:
        assert int(flagged.sum()) == 2


@pytest.mark.parametrize("tag", TAGS)
def test_matches_make_whitefield(tag):
    """Per-pixel median over frames; bad pixels filled by a Gaussian-weighted mean (sigma 4).

    Good pixels are identical; filled pixels agree to 1e-3 (the package truncates its Gaussian
    at 20 sigma, stacklab at 4 sigma).
    """
    d = load(f"make_whitefield_{tag}.npz")
    data, mask = args(d, "data", "mask")
    w = st.make_whitefield(data, mask, verbose=False)
    assert_unchanged(d, ("data", "mask"), [data, mask])
    ref = d["out_W"]
    assert w.shape == ref.shape and w.dtype == ref.dtype == np.float32
    fill = ~mask | (np.median(data, axis=0) == 0)
    np.testing.assert_array_equal(w[~fill], ref[~fill])
    np.testing.assert_allclose(w[fill], ref[fill], rtol=1e-3)
    # 8 % (2D) from the true whitefield in the bright region, as the README says.
    truth = load(f"scan_{tag}.npz")["truth_whitefield"]
    bright = truth > 0.5 * truth.max()
    err = float(np.median(np.abs(w[bright] / truth[bright] - 1)))
    assert err < (0.1 if tag == "2d" else 0.15)


def test_differs_guess_roi_returns_the_box():
    """A uniform bright box at rows 5..14, columns 7..20: stacklab returns its slice.

    The package returns [4, 14, 6, 20], the box moved one pixel toward index 0.
    """
    d = load("guess_roi_box.npz")
    w = d["in_W"].copy()
    roi = st.guess_roi(w, verbose=False)
    np.testing.assert_array_equal(w, d["in_W"])
    assert isinstance(roi, list) and all(isinstance(v, int) for v in roi)
    assert roi == d["param_box_slice"].tolist() == [5, 15, 7, 21]
    assert d["out_roi"].tolist() == [v - 1 for v in roi]


@pytest.mark.parametrize("tag", TAGS)
def test_differs_guess_roi_on_the_scans(tag):
    """The whitefields of the scans: stacklab's box is the half-maximum region of the truth.

    The package returns [1, 28, 3, 35] (2D, its objective describes [2, 29, 4, 36]) and the
    empty row range [0, 0] for the single-row scan.
    """
    d = load(f"guess_roi_{tag}.npz")
    roi = st.guess_roi(d["in_W"].copy(), verbose=False)
    truth = load(f"scan_{tag}.npz")["truth_whitefield"]
    rows = np.flatnonzero(truth.max(axis=1) > 0.5 * truth.max())
    cols = np.flatnonzero(truth.max(axis=0) > 0.5 * truth.max())
    expected = [rows[0], rows[-1] + 1, cols[0], cols[-1] + 1]
    assert np.all(np.abs(np.array(roi) - expected) <= 1), (roi, expected)
    if tag == "1d":
        assert roi[:2] == [0, 1]
        assert d["out_roi"][:2].tolist() == [0, 0]
    else:
        assert d["out_roi"].tolist() == [1, 28, 3, 35]


# ------------------------------------------------------------------------------------------
# calc_error
# ------------------------------------------------------------------------------------------

CE_NAMES = ("data", "mask", "W", "dij_n", "I", "pixel_map", "n0", "m0")


@pytest.mark.parametrize("tag", TAGS)
def test_differs_calc_error_documented_outputs(tag):
    """Three values with the documented formulas, from the same per-entry errors.

    The package returns 8 values. Its residual is ``(data - W I)**2 / norm`` with ``norm[i, j]
    = mean_n (W - data)**2`` (``out_norm``), summed per frame and per pixel. Multiplied back by
    ``norm``, its residuals give stacklab's documented total, per-frame mean and per-pixel mean
    to float32 precision (the package's forward model is float32 OpenCL).
    """
    d = load(f"calc_error_subpixel_{tag}.npz")
    a = args(d, *CE_NAMES)
    out = st.calc_error(*a, subpixel=True, verbose=False)
    assert_unchanged(d, CE_NAMES, a)
    assert isinstance(out, tuple) and len(out) == 3
    total, frame, pixel = out
    mask = d["in_mask"]
    assert isinstance(total, float)
    assert frame.shape == (d["in_data"].shape[0],) and pixel.shape == mask.shape
    resid = d["out_error_residual"]
    eps = resid * d["out_norm"][None]
    valid = resid > 0
    assert total == pytest.approx(float(eps.sum()), rel=1e-6)
    np.testing.assert_allclose(frame, eps.sum(axis=(1, 2)) / valid.sum(axis=(1, 2)), rtol=1e-5)
    n_valid = valid.sum(axis=0)
    np.testing.assert_allclose(
        pixel[mask], eps.sum(axis=0)[mask] / n_valid[mask], rtol=1e-5, atol=1e-9
    )
    assert np.all(pixel[~mask] == 0)
    # The package's own normalised numbers, for the record.
    assert float(d["out_error_total"]) == pytest.approx(float(resid.sum()), rel=1e-9)
    assert float(d["out_error_total"]) < 1e-3 * total


def _nearest_model(d: dict, fs_coordinate: str) -> np.ndarray:
    """W * I at (rint(ss), rint(<fs_coordinate>)), NaN off the grid or where I < 0."""
    u, dij, obj = d["in_pixel_map"], d["in_dij_n"], d["in_I"]
    n0, m0 = float(d["in_n0"]), float(d["in_m0"])
    ss = np.rint(u[0][None] - dij[:, 0, None, None] + n0).astype(int)
    fs = np.rint(u[1][None] - dij[:, 1, None, None] + m0).astype(int)
    col = ss if fs_coordinate == "ss" else fs
    inside = (ss >= 0) & (ss < obj.shape[0]) & (col >= 0) & (col < obj.shape[1])
    val = obj[np.clip(ss, 0, obj.shape[0] - 1), np.clip(col, 0, obj.shape[1] - 1)]
    return np.where(inside & (val >= 0), d["in_W"][None] * val, np.nan)


@pytest.mark.parametrize("tag", TAGS)
def test_differs_calc_error_nearest_reads_ss_and_fs(tag):
    """subpixel=False reads the object at (rint(ss), rint(fs)).

    The package reads (rint(ss), rint(ss)): its recorded forward model is exactly that wrong
    reading, and its error is 7 times (2D) its bilinear one. stacklab's nearest-pixel error is
    its documented total of the right reading, close to the bilinear one.
    """
    d = load(f"calc_error_nosubpixel_{tag}.npz")
    a = args(d, *CE_NAMES)
    total, frame, pixel = st.calc_error(*a, subpixel=False, verbose=False)
    mask, data = d["in_mask"], d["in_data"].astype(float)
    right = _nearest_model(d, "fs")
    valid = mask[None] & ~np.isnan(right)
    eps = np.where(valid, (data - np.where(valid, right, 0)) ** 2, 0)
    assert total == pytest.approx(float(eps.sum()), rel=1e-12)
    np.testing.assert_allclose(frame, eps.sum(axis=(1, 2)) / valid.sum(axis=(1, 2)), rtol=1e-12)
    n_valid = valid.sum(axis=0)
    np.testing.assert_allclose(
        pixel, np.where(n_valid > 0, eps.sum(axis=0) / np.maximum(n_valid, 1), 0), rtol=1e-12
    )
    if tag == "2d":
        wrong = _nearest_model(d, "ss")
        recorded = d["out_res_forward"]
        ok = ~np.isnan(wrong) & mask[None]
        np.testing.assert_allclose(recorded[ok], wrong[ok], rtol=1e-6)
        bilinear_total, *_ = st.calc_error(*a, subpixel=True, verbose=False)
        ref_bilinear = float(load("calc_error_subpixel_2d.npz")["out_error_total"])
        assert float(d["out_error_total"]) > 5 * ref_bilinear
        assert total < 1.5 * bilinear_total


def test_differs_calc_error_zero_object_is_data():
    """A block of object values equal to 0 is data: the error barely changes against 1e-6.

    The package drops every entry whose forward value is 0 (410 entries of the 0 block, and
    its total changes by a third).
    """
    d = load("quirk_zero_object_2d.npz")
    base = args(d, "data", "mask", "W", "dij_n")
    rest = args(d, "pixel_map", "n0", "m0")
    zero = st.calc_error(*base, d["in_O_zero"].copy(), *rest, subpixel=True, verbose=False)
    eps = st.calc_error(*base, d["in_O_eps"].copy(), *rest, subpixel=True, verbose=False)
    assert zero[0] == pytest.approx(eps[0], rel=1e-5)
    np.testing.assert_allclose(zero[2], eps[2], rtol=1e-5)
    a, b = d["out_calc_error_error_residual"], d["out_eps_calc_error_error_residual"]
    dropped = (a == 0) & (b != 0)  # entries the package left out because W * O == 0
    assert int(dropped.sum()) > 100
    ratio = float(d["out_eps_calc_error_error_total"]) / float(d["out_calc_error_error_total"])
    assert ratio > 1.2
