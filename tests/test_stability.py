"""Stability, holdover and offset events, pure: against allantools, scipy and synthetic truth.

The lab runs (real servers with injected noise, silenced references, steps and frequency changes)
are in test_stability_lab.py.
"""

from __future__ import annotations

import math

import allantools
import numpy as np
import pytest
from scipy.stats import chi2

from timekit.analysis.holdover import Holdover, find_holdover, fmt_duration
from timekit.analysis.interval import IntervalPolicy, ServerEvidence, server_bound
from timekit.analysis.offset_events import find_events
from timekit.analysis.stability import (
    StabilityBound,
    chi2_lower_quantile,
    conservative_edf,
    deviations,
    oadev,
    octave_factors,
    phase_grid,
    stability_bound,
    tdev_numpy,
)
from timekit.analysis.thresholds import Thresholds
from timekit.units import NS_PER_S, PPM

T0_NS = 1_790_000_000 * NS_PER_S


def _times(n: int, step_s: float, jitter_s: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (T0_NS + np.round((np.arange(n) * step_s + rng.uniform(-jitter_s, jitter_s, n)) * NS_PER_S)
            ).astype(np.int64)


def _power_law_phase(n: int, alpha: int, seed: int) -> np.ndarray:
    """Phase noise of slope alpha (2 white PM ... -2 random-walk FM) by integrating white noise."""
    w = np.random.default_rng(seed).normal(size=n)
    return {2: w, 0: np.cumsum(w), -2: np.cumsum(np.cumsum(w))}[alpha] * 1e-6


@pytest.mark.parametrize("alpha", [2, 0, -2])
def test_numpy_oadev_and_tdev_equal_allantools(alpha: int) -> None:
    x = _power_law_phase(4096, alpha, seed=alpha + 5)
    f = octave_factors(len(x))
    taus = f * 0.5
    _, ad, _, _ = allantools.oadev(x, rate=2.0, data_type="phase", taus=taus)
    _, td, _, _ = allantools.tdev(x, rate=2.0, data_type="phase", taus=taus)
    assert np.allclose(oadev(x, 0.5, f), ad, rtol=1e-9, atol=0)
    assert np.allclose(tdev_numpy(x, 0.5, f), td, rtol=1e-9, atol=0)


def test_conservative_edf_is_below_greenhalls_for_every_noise() -> None:
    ratios = [allantools.edf_greenhall(alpha=a, d=2, m=int(m), N=n, overlapping=True, modified=False)
              / conservative_edf(n, int(m))
              for a in (-2, -1, 0, 1, 2) for n in (17, 33, 100, 256, 1000, 5000) for m in octave_factors(n)]
    assert min(ratios) >= 1.0, min(ratios)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 15, 40, 200])
def test_chi2_lower_quantile_against_scipy(df: int) -> None:
    exact = chi2.ppf(0.025, df)
    mine = chi2_lower_quantile(0.025, df)
    if df <= 2:
        assert mine == pytest.approx(exact, rel=1e-9)
    else:  # never above the exact quantile (an upper ADEV bound that is never too low), and close
        assert 0.8 * exact <= mine <= exact * (1 + 1e-9), (mine, exact)


def test_phase_grid_jittered_polling_with_lost_replies() -> None:  # FAULTS H6
    n = 1200
    t = _times(n, 0.25, jitter_s=0.02, seed=1)
    lost = np.random.default_rng(2).choice(np.arange(1, n - 1), 60, replace=False)
    keep = np.setdiff1d(np.arange(n), lost)
    off = 0.3 + 120e-6 * (t - T0_NS) / NS_PER_S  # a clean 120 ppm line
    g = phase_grid(t[keep], off[keep], np.full(keep.size, 1e-4))
    assert g.status == "ok"
    assert g.tau0_s == pytest.approx(0.25, abs=2e-5)
    assert g.n_filled == 60 and len(g.x_s) == n
    assert g.frequency_ppm == pytest.approx(120.0, abs=1e-6)
    assert np.max(np.abs(g.x_s)) < 1e-9  # the line is the mean frequency: no phase noise left


def test_phase_grid_bursts_keep_the_lowest_delay_of_each() -> None:  # FAULTS H6
    t = np.concatenate([(np.array([0, 2, 4, 6]) + 64 * i) for i in range(40)]) * NS_PER_S + T0_NS
    delay = np.tile([3e-4, 1e-4, 2e-4, 4e-4], 40)
    off = np.where(delay == 1e-4, 0.0, 1.0)  # only the lowest-delay sample of a burst is on the line
    g = phase_grid(t.astype(np.int64), off, delay)
    assert g.status == "ok" and g.tau0_s == pytest.approx(64.0) and len(g.x_s) == 40
    assert np.max(np.abs(g.x_s)) < 1e-9


def test_phase_grid_refuses_too_few_and_irregular() -> None:  # FAULTS H6
    assert phase_grid(_times(10, 1.0), np.zeros(10)).status == "too_few"
    t = _times(100, 1.0)
    sparse = np.concatenate([t[:50], t[50::3]])
    g = phase_grid(sparse, np.zeros(sparse.size))
    assert g.status == "irregular" and "empty" in g.reason


def test_white_phase_noise_truth_inside_the_intervals() -> None:
    """ADEV = sqrt(3)·σ/τ and TDEV = σ/sqrt(m) for white phase noise σ: over 20 seeds every τ's 95 %
    interval holds the truth at about its nominal rate, and the bound timekit leans on is never below
    the allantools upper bound."""
    sigma, tau0, hits, total = 1e-3, 0.25, 0, 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        t = _times(600, tau0, jitter_s=0.01, seed=seed)
        off = 0.02 - 30e-6 * (t - T0_NS) / NS_PER_S + rng.normal(0, sigma, t.size)
        g = phase_grid(t, off)
        d = deviations(g)
        assert d is not None and set(d.alpha.tolist()) <= {1, 2}  # identified as phase noise
        m = np.rint(d.tau_s / g.tau0_s)
        for truth, ci in ((math.sqrt(3) * sigma / d.tau_s, d.adev_ci), (sigma / np.sqrt(m), d.tdev_ci)):
            hits += int(np.sum((ci[:, 0] <= truth) & (truth <= ci[:, 1])))
            total += truth.size
        b = stability_bound(g)
        assert b is not None and np.all(b.adev_upper >= d.adev_ci[:, 1] * (1 - 1e-9))
    assert hits / total >= 0.90, f"{hits}/{total}"


def test_stability_bound_extrapolates_and_floors() -> None:  # FAULTS H7
    b = StabilityBound(np.array([1.0, 2.0, 4.0]), np.array([1e-6, 5e-7, 2.5e-7]), sigmas=3.0, floor_ppm=1.0)
    assert b.adev_upper_at(np.array([2.0]))[0] == pytest.approx(5e-7)
    assert b.adev_upper_at(np.array([16.0]))[0] == pytest.approx(2.5e-7 * 2)  # ∝ sqrt(τ) beyond
    assert b.adev_upper_at(np.array([0.5]))[0] == pytest.approx(2e-6)  # ∝ 1/τ below
    beyond = 3 * 1000 * 2.5e-7 * math.sqrt(250)
    assert b.time_error_s(np.array([1000.0]))[0] == pytest.approx(max(1e-3, beyond))
    low = StabilityBound(np.array([1.0]), np.array([1e-12]))
    assert low.time_error_s(np.array([100.0]))[0] == pytest.approx(100 * 1.0 * PPM)  # the 1 ppm floor


def _evidence(stability: StabilityBound | None, followed: bool = True) -> ServerEvidence:
    n = 64
    t = (T0_NS + np.arange(n) * NS_PER_S).astype(np.int64)
    boot = (10 * NS_PER_S + np.arange(n) * NS_PER_S).astype(np.int64)
    raw = boot.copy()
    return ServerEvidence("s", t, boot, np.full(n, 0.01), np.full(n, 1e-4), drift_ppm=0.0, drift_se_ppm=0.001,
                          monotonic_ns=raw.copy() if followed else None, raw_ns=raw, kernel_ppm=0.0,
                          kernel_steady=followed, stability=stability)


@pytest.mark.parametrize("age_s", [2.0, 600.0, 7200.0])
def test_interval_growth_uses_measured_stability_where_supported(age_s: float) -> None:  # FAULTS H7
    """At age A the bound's growth is min(15 ppm·A, max(1 ppm·A, 3·A·ADEV⁺(A))) with the stability, 15 ppm·A
    without it, and 200 ppm·A when the kernel is not followed; the 4σ drift term is on top of all."""
    b = StabilityBound(np.array([1.0, 8.0]), np.array([2e-6, 2e-7]))
    now_rt, now_boot = T0_NS + 63 * NS_PER_S + int(age_s * NS_PER_S), 73 * NS_PER_S + int(age_s * NS_PER_S)
    policy = IntervalPolicy()

    def half(ev: ServerEvidence, **kw: float) -> float:
        sb = server_bound(ev, now_realtime_ns=now_rt, now_boottime_ns=now_boot, policy=policy,
                          now_monotonic_ns=now_boot, now_raw_ns=now_boot)
        assert sb.status == "ok" and sb.half_width_s is not None
        return sb.half_width_s

    drift_term = 4 * 0.001 * PPM * age_s
    base = 1e-4 + 5e-6 + drift_term  # root distance + pair slack + 4 standard errors of drift
    expected = min(15 * PPM * age_s, float(b.time_error_s(np.array([age_s]))[0]))
    assert half(_evidence(b)) == pytest.approx(base + expected, rel=1e-6, abs=1e-9)
    assert half(_evidence(None)) == pytest.approx(base + 15 * PPM * age_s, rel=1e-6, abs=1e-9)
    assert half(_evidence(b, followed=False)) == pytest.approx(base + 200 * PPM * age_s, rel=1e-6, abs=1e-9)


def test_find_holdover_on_a_known_growth() -> None:  # FAULTS H7
    h = find_holdover(lambda t: 1e-4 + 2e-6 * t, 0.01, horizon_s=14_400)
    assert h.seconds == pytest.approx((0.01 - 1e-4) / 2e-6, rel=0.011) and not h.capped
    assert 1e-4 + 2e-6 * h.seconds <= 0.01  # the holdover never overstates: the width holds until then
    capped = find_holdover(lambda t: 1e-4 + 1e-9 * t, 0.01, horizon_s=3600)
    assert capped.seconds == 3600 and capped.capped
    assert find_holdover(lambda t: 0.02, 0.01, horizon_s=3600).seconds == 0.0
    assert find_holdover(lambda t: None, 0.01, horizon_s=3600).seconds is None


def test_fmt_duration_words() -> None:
    assert fmt_duration(12_000) == "3 h 20 min"
    assert fmt_duration(725) == "12 min 5 s" and fmt_duration(42) == "42 s" and fmt_duration(2.5) == "2.5 s"


def test_holdover_thresholds_validate_and_judge() -> None:
    from timekit.analysis.assessment import Assessment
    from timekit.analysis.interval import IntervalEstimate
    from timekit.analysis.verdict import judge

    with pytest.raises(ValueError, match="shorter holdover is worse"):
        Thresholds(warn_holdover_s=60, crit_holdover_s=600)
    with pytest.raises(ValueError, match="positive"):
        Thresholds(warn_holdover_s=-1)
    from timekit.analysis.assessment import ServerAssessment

    iv = IntervalEstimate("synchronized", "ok", T0_NS, T0_NS - 1000, T0_NS + 1000)
    server = ServerAssessment("a", age_s=1.0, offset_s=0.0, delay_s=1e-4, stratum=2, truechimer=True)
    t = Thresholds(warn_holdover_s=3600, crit_holdover_s=600)
    for seconds, capped, status in ((300.0, False, "critical"), (1200.0, False, "warning"),
                                    (7200.0, False, "ok"), (300.0, True, "ok")):
        a = Assessment(T0_NS, (server,), iv, holdover=Holdover(0.01, seconds, capped=capped))
        v = judge(a, t, mode="measure")
        assert v.status == status, (seconds, capped, v.summary)
        perf = " ".join(p.format() for p in v.perfdata)
        assert f"holdover={seconds:.0f}s;3600:;600:;0" in perf
        if status != "ok":
            assert "holdover" in v.summary and "to ±10.000 ms" in v.summary.replace("+/-", "±")


def _events_series(seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    n = 240
    t = _times(n, 0.25)
    x = (t - T0_NS) / NS_PER_S
    truth = 0.02 + 50e-6 * x + np.where(x > 30, 80e-6 * (x - 30), 0) + np.where(x > 45, 0.05, 0)
    off = truth + rng.uniform(-50e-6, 50e-6, n)
    off[100] += 0.01  # a spike at 25 s
    d = np.full(n, 2e-4) + rng.uniform(0, 1e-5, n)
    return t, off, d, d / 2 + 1e-4


@pytest.mark.parametrize("seed", range(5))
def test_events_named_with_their_size_and_instant(seed: int) -> None:  # FAULTS H3, H4, H5
    t, off, d, hw = _events_series(seed)
    scan = find_events("s", t, off, d, hw)
    got = [(e.kind, (e.t_ns - T0_NS) / NS_PER_S, e) for e in scan.events]
    assert [k for k, _, _ in got] == ["spike", "frequency_change", "step"], scan.reason
    (_, t_spike, spike), (_, t_freq, freq), (_, t_step, step) = got
    assert t_spike == pytest.approx(25.0) and spike.size == pytest.approx(0.01, abs=1e-4)
    assert t_freq == pytest.approx(30.0, abs=1.0) and freq.lo is not None and freq.hi is not None
    assert freq.lo <= 80.0 <= freq.hi and freq.size == pytest.approx(80.0, abs=10.0)
    assert t_step == pytest.approx(45.0, abs=0.3) and step.size == pytest.approx(0.05, abs=2e-4)


def test_no_event_on_a_clean_line_nor_on_noise_the_bars_do_not_cover() -> None:  # FAULTS H1
    t, off, d, hw = _events_series(0)
    x = (t - T0_NS) / NS_PER_S
    clean = 0.02 + 50e-6 * x + np.random.default_rng(1).uniform(-50e-6, 50e-6, x.size)
    assert find_events("s", t, clean, d, hw).events == ()
    noisy = 0.02 + 50e-6 * x + np.random.default_rng(2).normal(0, 3e-3, x.size)
    scan = find_events("s", t, noisy, d, hw)
    assert scan.events == () and scan.status == "dishonest_bars"


def _leap_series(n: int = 480) -> tuple[dict[str, object], int]:
    """Four references around the leap second ending 2017-01-01: a, b step it; c, d smear it over 120 s."""
    from dataclasses import dataclass

    @dataclass
    class S:
        t_local_ns: np.ndarray
        offset_s: np.ndarray
        root_distance_s: np.ndarray
        leap: np.ndarray

    leap_ref = 1_483_228_800 * NS_PER_S
    t = (T0_NS + np.arange(n) * (NS_PER_S // 2)).astype(np.int64)
    x = (t - t[n // 8]) / NS_PER_S  # the leap at the 60th sample (30 s in)
    base = (leap_ref - int(t[n // 8])) / NS_PER_S
    li = (x < 0).astype(np.int8)
    rd = np.full(n, 1e-4)
    step = base - 30e-6 * x - np.where(x >= 0, 1.0, 0.0)
    smear = base - 30e-6 * x - np.clip(x / 120, 0, 1)
    return {"a": S(t, step, rd, li), "b": S(t, step + 2e-6, rd, li), "c": S(t, smear, rd, li),
            "d": S(t, smear - 2e-6, rd, li)}, leap_ref


@pytest.mark.parametrize("until", [120, 480])
def test_leap_split_named_mid_smear_and_not_after(until: int) -> None:  # FAULTS H8
    from timekit.analysis.leap_events import explain_leap

    full, leap_ref = _leap_series()
    series = {k: type(v)(*(np.asarray(getattr(v, f))[:until] for f in ("t_local_ns", "offset_s",  # type: ignore[call-arg]
                                                                         "root_distance_s", "leap")))
              for k, v in full.items()}
    split = explain_leap(series, ())  # announced by the leap indicator alone
    assert split is not None and split.leap_ns == leap_ref and split.insert
    got = {r.server: (r.behaviour, r.size_s) for r in split.readings}
    assert got["a"][0] == got["b"][0] == "stepped" and got["a"][1] == pytest.approx(-1.0, abs=1e-3)
    if until == 120:  # 30 s into the 120 s smear: a quarter of the second
        assert split.split and got["c"][0] == "smearing" and got["c"][1] == pytest.approx(-0.246, abs=0.01)
        assert "a, b stepped it" in split.words and "c, d smear it" in split.words and "; " not in split.words
    else:
        assert not split.split and got["c"][0] == got["d"][0] == "smeared"


def test_no_leap_in_play_without_an_announcement_or_a_known_one_near() -> None:
    from timekit.analysis.leap_events import explain_leap
    from timekit.collectors.leap_seconds import known_leaps, parse_leap_list

    full, leap_ref = _leap_series()
    quiet = {k: type(v)(v.t_local_ns, v.offset_s, v.root_distance_s, np.zeros_like(v.leap))  # type: ignore[attr-defined,call-arg]
             for k, v in full.items()}
    assert explain_leap(quiet, ()) is None
    assert explain_leap(quiet, (leap_ref,)) is not None  # the system's list knows it
    assert explain_leap(quiet, (leap_ref + 400 * 86_400 * NS_PER_S,)) is None  # a year off: not this one
    listed = parse_leap_list("2272060800\t10\t# 1 Jan 1972\n3644697600\t36\t# 1 Jul 2015\n"
                             "3692217600\t37\t# 1 Jan 2017\n#@\t3991593600\n")
    assert listed == ((3644697600 - 2_208_988_800) * NS_PER_S, leap_ref)
    assert leap_ref in known_leaps() or known_leaps() == ()  # tzdata's list, where installed
