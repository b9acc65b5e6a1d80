"""Accuracy study of the Thon-ring defocus fit over a grid of simulated scans (slow).

Run with ``pytest -m slow tests/speckle/test_thon_study.py -s`` to print the tables.

Ground truth. The simulator's ``defocus_ss`` / ``defocus_fs`` are the geometric focus-to-sample
distances; its lens aberration is a phase of degree 3 and 4 with the least-squares quadratic
removed. Such an aberration still changes the *local* magnification, hence the local Thon-ring
scale, by a few percent RMS over the detector (2 % at ``aberration_px=0.3``, 4.5 % at 0.6, 9 % at
1.2 on 128 x 128 detectors); the rings of the whole frame then mix several scales and no fit of
them can return the geometric defocus better than that spread allows. The tables report the
error against the geometric truth.

Visible rings. ``visible_rings`` counts the ring zeros ``a q**2`` (``a = wav z2 (1 + z2 / z_ax)``)
out to the smallest of: the Nyquist frequency, the frequency where the object's speckle power has
fallen to 1 % of its peak, and the frequency where neighbouring rings come closer than 2 spectrum
pixels; the smaller of the two axes is reported.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest

from stacklab.speckle import fit_thon_rings, simulate

pytestmark = pytest.mark.slow


def visible_rings(scan, sigma: float) -> float:
    """Ring zeros within the visible frequency range, the smaller of the two axes."""
    z2 = scan.distance - scan.defocus
    n = max(scan.data.shape[1:])
    out = []
    for z_ax, px in ((scan.defocus_ss, scan.x_pixel_size), (scan.defocus_fs, scan.y_pixel_size)):
        a_px = scan.wavelength * z2 * (1 + z2 / z_ax) / px**2  # rings per (cycles/px)**2
        stretch = z_ax / scan.defocus
        q_env = math.sqrt(math.log(100.0)) / (2 * math.pi * sigma) * stretch  # 1 % power
        q_vis = min(0.5, q_env, n / (4 * a_px))
        out.append(a_px * q_vis**2)
    return min(out)


def grid_cases() -> list[dict]:
    """The study grid: defocus x astigmatism x aberration x seed, then other settings."""
    base = {"shape": (128, 128), "grid": (7, 7), "pixel_size": 55e-6, "object_sigma": 0.8}
    base["photons"] = 1e4
    cases = []
    for d, dzr, ab, seed in itertools.product(
        [5e-4, 8e-4, 1.2e-3, 2e-3], [0.0, 0.15, -0.3], [0.0, 0.3, 0.6, 1.2], [0, 1]
    ):
        cases.append(dict(base, defocus=d, dz=dzr * d, aberration_px=ab, seed=seed))
    others = [
        {"pixel_size": 75e-6, "defocus": 5e-4},
        {"pixel_size": 75e-6, "defocus": 8e-4},
        {"shape": (96, 96), "defocus": 8e-4},
        {"shape": (192, 192), "defocus": 8e-4},
        {"shape": (192, 192), "defocus": 1.5e-3},
        {"object_sigma": 1.2, "defocus": 5e-4},
        {"object_sigma": 1.2, "defocus": 8e-4},
        {"photons": 1e3, "defocus": 8e-4},
        {"photons": 1e2, "defocus": 8e-4},
        {"photons": 1e2, "defocus": 1.5e-3},
        {"grid": (3, 3), "defocus": 8e-4},
        {"grid": (3, 3), "defocus": 1.5e-3},
    ]
    for kw, dzr in itertools.product(others, (0.0, -0.3)):
        case = dict(base, aberration_px=0.3, seed=2)
        case.update(kw)
        case["dz"] = dzr * case["defocus"]
        cases.append(case)
    return cases


def run_case(case: dict) -> dict:
    scan = simulate(**case)
    vis = visible_rings(scan, case["object_sigma"])
    t0 = time.perf_counter()
    try:
        fit = fit_thon_rings(
            scan.data,
            scan.x_pixel_size,
            scan.y_pixel_size,
            scan.distance,
            scan.wavelength,
            scan.mask,
            scan.whitefield,
        )
        err = (
            100 * (fit.defocus_ss / scan.defocus_ss - 1),
            100 * (fit.defocus_fs / scan.defocus_fs - 1),
        )
        rings, score = fit.details["rings"], fit.details["score"]
    except ValueError:
        err, rings, score = (math.nan, math.nan), -1, math.nan
    return {"case": case, "vis": vis, "err": err, "rings": rings, "score": score,
            "seconds": time.perf_counter() - t0}  # fmt: skip


def print_table(rows: list[dict]) -> None:
    print()
    print(
        f"{'det':>4} {'px':>3} {'sig':>3} {'phot':>5} {'N':>2} {'defocus':>7} {'dz/d':>5} "
        f"{'ab':>3} {'sd':>2} | {'vis':>4} {'fit':>3} {'score':>5} | {'e_ss%':>6} {'e_fs%':>6} "
        f"| {'s':>4}"
    )
    for r in rows:
        c = r["case"]
        print(
            f"{c['shape'][0]:4d} {c['pixel_size'] * 1e6:3.0f} {c['object_sigma']:3.1f} "
            f"{c['photons']:5.0e} {c['grid'][0] * c['grid'][1]:2d} {c['defocus']:7.1e} "
            f"{c['dz'] / c['defocus']:5.2f} {c['aberration_px']:3.1f} {c['seed']:2d} | "
            f"{r['vis']:4.1f} {r['rings']:3d} {r['score']:5.1f} | {r['err'][0]:6.2f} "
            f"{r['err'][1]:6.2f} | {r['seconds']:4.2f}"
        )


def summarize(rows: list[dict], label: str, keep) -> float:
    sel = [r for r in rows if keep(r)]
    worst = [max(abs(r["err"][0]), abs(r["err"][1])) for r in sel]
    failed = sum(1 for w in worst if not math.isfinite(w))
    top = max((w for w in worst if math.isfinite(w)), default=math.nan)
    print(f"{label}: {len(sel)} cases, worst axis error max {top:.2f} %, failures {failed}")
    return top if not failed else math.inf


def test_thon_ring_study():
    rows = [run_case(c) for c in grid_cases()]
    print_table(rows)
    weak = lambda r: r["case"]["aberration_px"] <= 0.6  # noqa: E731
    worst5 = summarize(rows, ">= 5 visible rings, aberration <= 0.6 px", lambda r: weak(r)
                       and r["vis"] >= 5)  # fmt: skip
    worst3 = summarize(rows, "< 5 visible rings, aberration <= 0.6 px", lambda r: weak(r)
                       and r["vis"] < 5)  # fmt: skip
    strong = summarize(rows, "aberration 1.2 px (ring scale spread ~9 % RMS)",
                       lambda r: r["case"]["aberration_px"] > 0.6)  # fmt: skip
    seconds = [r["seconds"] for r in rows if r["case"]["shape"] == (128, 128)]
    print(f"fit time 128 x 128: median {np.median(seconds):.2f} s, max {max(seconds):.2f} s")
    assert worst5 <= 3.0  # acceptance: >= 5 rings within 3 % on both axes
    assert worst3 <= 5.0  # 2 to 5 rings: within 5 % (4.7 % measured, documented)
    assert math.isfinite(strong) and strong <= 20.0  # strong aberration: no failure, bounded


def noise_stacks(rng: np.random.Generator, k: int):
    """Spectra without resolvable rings: (name, data, whitefield, roi)."""
    import scipy.ndimage

    yield "Poisson 64x64x5", rng.poisson(1000.0, size=(5, 64, 64)).astype(float), None, None
    yield "Poisson 128x128x25", rng.poisson(1e4, size=(25, 128, 128)).astype(float), None, None
    yield "Poisson 1x512x8", rng.poisson(1e4, size=(8, 1, 512)).astype(float), None, None
    w = simulate((128, 128), (1, 1), photons=None, seed=k).whitefield * 1e4
    flat = rng.poisson(np.broadcast_to(w, (25, 128, 128))).astype(float)
    yield "whitefield only 128", flat, w, None
    ph = scipy.ndimage.gaussian_filter(rng.standard_normal((160, 160)), 1.0 + k % 3)
    ph = 1 + 0.3 * ph / ph.std()
    frames = np.stack([w * ph[i : i + 128, j : j + 128] for i in range(0, 15, 3)
                       for j in range(0, 15, 3)])  # fmt: skip
    yield "smooth speckle 128", rng.poisson(np.maximum(frames, 0)).astype(float), w, None
    w1 = simulate((1, 512), (1, 1), photons=None, seed=k).whitefield * 1e4
    ph1 = scipy.ndimage.gaussian_filter(rng.standard_normal(600), 1.0 + k % 3)
    ph1 = 1 + 0.3 * ph1 / ph1.std()
    frames1 = np.stack([w1 * ph1[None, i : i + 512] for i in range(0, 24, 3)])
    yield (
        "smooth speckle 1x512",
        rng.poisson(np.maximum(frames1, 0)).astype(float),
        w1,
        [0, 1, 32, 481],
    )
    fine = simulate((128, 128), (5, 5), defocus=2e-5, object_sigma=0.8, seed=k)
    yield "rings too fine (20 um)", fine.data, fine.whitefield, None


def test_thon_ring_score_rejects_noise():
    rng = np.random.default_rng(7)
    scores: dict[str, list[float]] = {}
    for k in range(12):
        for name, data, w, roi in noise_stacks(rng, k):
            try:
                fit = fit_thon_rings(data, 55e-6, 55e-6, 1.0, 1e-10, None, w, roi, min_score=-1e9)
                scores.setdefault(name, []).append(fit.details["score"])
            except ValueError:
                scores.setdefault(name, []).append(-math.inf)
    print()
    for name, values in scores.items():
        print(f"{name:24s} score max {max(values):6.2f} median {np.median(values):6.2f}")
    # min_score = 1.5 keeps a margin of at least 1 (a likelihood ratio of e**10) over noise
    assert max(max(v) for v in scores.values()) < 0.5
