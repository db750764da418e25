"""The TrueTime interval math (analysis.interval), on synthetic evidence with a known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timekit.analysis.clock_state import PAIR_SLACK_NS
from timekit.analysis.interval import (
    IntervalPolicy,
    ServerEvidence,
    compute_interval,
)
from timekit.units import NS_PER_S

PAIR_SLACK_S = PAIR_SLACK_NS / NS_PER_S  # a (realtime, boottime) pair is not one instant

R0 = 1_795_671_931_000_000_000  # a realtime instant (2026)
B0 = 5_000 * NS_PER_S  # boottime at R0 (the host booted 5000 s earlier)
REALTIME_MINUS_BOOT = R0 - B0


def ev(name: str, offsets: list[float], ages_s: list[float], hw: float = 1e-4, *, now_boot: int = B0,
       drift_ppm: float | None = None, drift_se_ppm: float | None = None, leap: int = 0,
       step_ns: int = 0) -> ServerEvidence:
    """Evidence taken `ages_s` before boottime `now_boot`; `step_ns` = how far the wall clock was
    stepped after these samples (so their realtime stamps are that much off the current mapping)."""
    boot = np.array([now_boot - round(a * NS_PER_S) for a in ages_s], dtype=np.int64)
    return ServerEvidence(name, boot + REALTIME_MINUS_BOOT - step_ns, boot, np.array(offsets, dtype=float),
                          np.full(len(offsets), hw), np.full(len(offsets), leap, dtype=np.int8),
                          drift_ppm=drift_ppm, drift_se_ppm=drift_se_ppm)


def now(boot_ns: int = B0) -> dict[str, int]:
    return {"now_realtime_ns": boot_ns + REALTIME_MINUS_BOOT, "now_boottime_ns": boot_ns}


def test_one_fresh_sample_exact_arithmetic() -> None:
    est = compute_interval([ev("a", [0.010], [2.0])], **now(), policy=IntervalPolicy(max_drift_ppm=200))
    # half-width = 100 µs root distance + 200 ppm × 2 s (400 µs) + 5 µs pair uncertainty = 505 µs
    half = 100e-6 + 200e-6 * 2.0 + PAIR_SLACK_S
    assert est.earliest_ns == R0 + math.floor((0.010 - half) * NS_PER_S)
    assert est.latest_ns == R0 + math.ceil((0.010 + half) * NS_PER_S)
    assert est.status == "synchronized" and est.single_source and "unverifiable" in est.reason
    assert est.uncertainty_s == pytest.approx(half, abs=1e-9)


def test_drift_correction_moves_the_centre_and_adds_its_uncertainty() -> None:
    # local clock gains 100 ppm: 10 s after a sample saying +10 ms the reference is ahead by 9 ms
    est = compute_interval([ev("a", [0.010], [10.0], drift_ppm=100.0, drift_se_ppm=1.0)], **now(),
                           policy=IntervalPolicy(max_drift_ppm=50))
    centre = ((est.earliest_ns - R0) + (est.latest_ns - R0)) / 2  # type: ignore[operator]
    assert centre == pytest.approx(0.009 * NS_PER_S, abs=2)
    # growth: (50 ppm + 4 × 1 ppm) × 10 s = 540 µs, plus 100 µs and 5 µs
    assert est.uncertainty_s == pytest.approx(100e-6 + 54e-6 * 10 + PAIR_SLACK_S, abs=1e-9)


def test_samples_of_one_server_intersect_and_an_old_regime_is_dropped() -> None:
    # three samples agree on +10 ms (the newest the widest); an older one says +210 ms (before a step)
    e = ev("a", [0.210, 0.0100, 0.0101, 0.0099], [30.0, 3.0, 2.0, 1.0], hw=2e-4)
    est = compute_interval([e], **now(), policy=IntervalPolicy(max_drift_ppm=10))
    (b,) = est.servers
    assert b.n_used == 3 and "older ones disagree" in b.reason
    lo = max(o - (2e-4 + 10e-6 * a + PAIR_SLACK_S) for o, a in [(0.01, 3), (0.0101, 2), (0.0099, 1)])
    hi = min(o + (2e-4 + 10e-6 * a + PAIR_SLACK_S) for o, a in [(0.01, 3), (0.0101, 2), (0.0099, 1)])
    assert (b.lo_s, b.hi_s) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))


def test_wall_clock_step_since_the_evidence_is_corrected_and_reported_unknown() -> None:  # C1, C2
    # the wall clock was stepped 1 s forward after the sample: the reference is now 1 s "behind" us
    est = compute_interval([ev("a", [0.010], [1.0], step_ns=NS_PER_S)], **now())
    assert est.status == "unknown" and "stepped +1.000000 s" in est.reason
    centre_s = ((est.earliest_ns - R0) + (est.latest_ns - R0)) / 2 / NS_PER_S  # type: ignore[operator]
    assert centre_s == pytest.approx(0.010 - 1.0, abs=1e-6)


def test_status_ages_from_synchronized_to_free_running_to_unknown() -> None:  # Q5
    policy = IntervalPolicy(max_drift_ppm=100, fresh_s=300, void_after_s=3 * 3600)
    fresh = compute_interval([ev("a", [0.0], [299.0])], **now(), policy=policy)
    aged = compute_interval([ev("a", [0.0], [7200.0])], **now(), policy=policy)
    void = compute_interval([ev("a", [0.0], [3 * 3600 + 1.0])], **now(), policy=policy)
    assert fresh.status == "synchronized"
    assert aged.status == "free_running"
    # 2 h old: bound = root distance + 100 ppm × 7200 s = 0.72 s (+ 100 µs + 5 µs)
    assert aged.uncertainty_s == pytest.approx(1e-4 + 0.72 + PAIR_SLACK_S, abs=1e-9)
    assert void.status == "unknown" and void.earliest_ns is None and void.uncertainty_s is None  # Q1


def test_no_evidence_is_unknown_without_an_interval() -> None:  # Q1
    est = compute_interval([], **now())
    assert (est.status, est.earliest_ns, est.latest_ns) == ("unknown", None, None)
    assert "no usable evidence" in est.reason


def test_evidence_from_the_boottime_future_is_a_causality_breach() -> None:  # Q6
    est = compute_interval([ev("a", [0.0], [-5.0])], **now())
    assert est.status == "unknown" and est.servers[0].status == "causality_breach"


def test_root_distance_over_the_limit_is_not_evidence() -> None:  # N26
    est = compute_interval([ev("a", [0.0], [1.0], hw=2.0)], **now(), policy=IntervalPolicy())
    assert est.status == "unknown" and est.servers[0].status == "stale"


def test_falseticker_among_four_is_excluded() -> None:  # Q3
    good = [ev(n, [0.0101], [1.0]) for n in ("a", "b", "c")]
    est = compute_interval([*good, ev("liar", [2.5], [1.0])], **now())
    assert est.selection is not None and est.selection.falsetickers == ("liar",)
    assert est.latest_ns - R0 < 0.011 * NS_PER_S  # type: ignore[operator]


def test_no_majority_gives_no_interval() -> None:  # Q4
    est = compute_interval([ev(n, [x], [1.0]) for n, x in zip("abcd", [0.0, 1.0, 2.0, 3.0], strict=True)],
                           **now())
    assert est.status == "unknown" and est.earliest_ns is None and "no majority" in est.reason


def test_pending_leap_second_near_midnight_widens_by_one_second() -> None:  # C14
    midnight_boot = B0 + (86_400 * NS_PER_S - R0 % (86_400 * NS_PER_S))  # boottime at the next UTC midnight
    near = compute_interval([ev("a", [0.0], [1.0], now_boot=midnight_boot - NS_PER_S // 2, leap=1)],
                            **now(midnight_boot - NS_PER_S // 2))
    far = compute_interval([ev("a", [0.0], [1.0], leap=1)], **now())
    assert near.uncertainty_s == pytest.approx(far.uncertainty_s + 1.0, abs=1e-9)  # type: ignore[operator]
    assert "leap second" in near.reason and "leap second" not in far.reason


@pytest.mark.parametrize("kw", [{"max_drift_ppm": -1.0}, {"max_drift_ppm": 1e6}, {"max_drift_ppm": math.nan},
                                {"fresh_s": 0.0}, {"fresh_s": 10.0, "void_after_s": 5.0},
                                {"max_root_distance_s": 17.0}])
def test_absurd_policies_are_rejected(kw: dict[str, float]) -> None:  # Q7
    with pytest.raises(ValueError):
        IntervalPolicy(**kw)


@settings(max_examples=300, deadline=None)
@given(
    truth0=st.floats(-1.0, 1.0),
    drift_ppm=st.floats(-150.0, 150.0),  # true local drift, within max_drift (200 ppm)
    est_err_ppm=st.floats(-3.0, 3.0),  # drift estimate error, within 4 standard errors (se = 1 ppm)
    n_servers=st.integers(1, 5),
    data=st.data(),
)
def test_honest_evidence_always_gives_an_interval_containing_the_truth(
        truth0: float, drift_ppm: float, est_err_ppm: float, n_servers: int, data: st.DataObject) -> None:
    """Q10 and the guarantee: earliest ≤ latest, and the truth is inside whenever every sample is
    honest (|error| ≤ its root distance) and the drift is within what the policy assumes."""
    evidence = []
    for i in range(n_servers):
        ages = sorted(data.draw(st.lists(st.floats(0.0, 5000.0), min_size=1, max_size=6)), reverse=True)
        hws = [data.draw(st.floats(1e-6, 0.1)) for _ in ages]
        errs = [data.draw(st.floats(-1.0, 1.0)) * hw for hw in hws]  # honest: within the root distance
        # offset seen `age` ago = truth now + the local clock's gain since (drift × age) + error
        offsets = [truth0 + drift_ppm * 1e-6 * a + e for a, e in zip(ages, errs, strict=True)]
        e = ev(f"s{i}", offsets, ages, drift_ppm=drift_ppm + est_err_ppm, drift_se_ppm=1.0)
        evidence.append(ServerEvidence(e.server, e.t_local_ns, e.boottime_ns, e.offset_s, np.array(hws),
                                       e.leap, e.drift_ppm, e.drift_se_ppm))
    est = compute_interval(evidence, **now(), policy=IntervalPolicy(max_drift_ppm=1.0, void_after_s=1e4))
    assert est.earliest_ns is not None and est.latest_ns is not None
    assert est.earliest_ns <= est.latest_ns
    assert est.earliest_ns - R0 <= truth0 * NS_PER_S <= est.latest_ns - R0  # offsets: exact in float


@pytest.mark.parametrize("kernel_applied", [False, True])
def test_leap_announced_before_midnight_is_covered_after_it(kernel_applied: bool) -> None:  # C14
    """Samples at 23:59:50 announce a leap (LI=1); asked 16 s later (after midnight) the references
    have repeated 23:59:59, so true UTC is 1 s behind a clock that did not; ±1 s covers both."""
    day = 86_400 * NS_PER_S
    midnight = (R0 // day + 1) * day
    rt_sample = midnight - 10 * NS_PER_S
    boot_sample = B0
    truth_offset_then = 0.0  # our clock agrees with the references at 23:59:50
    rt_now = rt_sample + 16 * NS_PER_S - (NS_PER_S if kernel_applied else 0)  # our kernel stepped back 1 s?
    boot_now = boot_sample + 16 * NS_PER_S
    evidence = [ServerEvidence(n, np.array([rt_sample]), np.array([boot_sample]),
                               np.array([truth_offset_then]), np.array([1e-4]), np.array([1], dtype=np.int8))
                for n in "abc"]
    est = compute_interval(evidence, now_realtime_ns=rt_now, now_boottime_ns=boot_now)
    true_utc_now = rt_sample + 16 * NS_PER_S - NS_PER_S  # 16 s elapsed, one of them repeated
    assert est.earliest_ns <= true_utc_now <= est.latest_ns  # type: ignore[operator]
    assert "leap second" in est.reason


def test_after_a_backward_wall_clock_step_the_fresh_samples_count(tmp_path) -> None:  # C1
    """30 samples, then the wall clock is stepped back 1 h, then 5 more: the newest evidence is the
    post-step samples (by boottime), so the status is synchronized, not 'stepped'."""
    from timekit.collectors.clocks import boot_id
    from timekit.pipeline.assess import assess_store
    from timekit.samples import NtpSample
    from timekit.store.database import Store

    def sample(name: str, rt: int, bt: int) -> NtpSample:
        return NtpSample(name, True, None, rt, offset_s=0.0, delay_s=1e-4, stratum=2, leap=0,
                         root_delay_s=0.0, root_dispersion_s=0.0, boottime_ns=bt, boot_id=boot_id())

    step = -3600 * NS_PER_S
    rows = []
    for name in "abc":
        rows += [sample(name, R0 + k * NS_PER_S, B0 + k * NS_PER_S) for k in range(30)]
        rows += [sample(name, R0 + k * NS_PER_S + step, B0 + k * NS_PER_S) for k in range(30, 35)]
    with Store.open(tmp_path / "t.db") as st:
        st.add_ntp_samples(rows)
        # the truth: true offset 0 for the post-step clock, 1 s after the last sample
        est = assess_store(st, now=(R0 + 35 * NS_PER_S + step, B0 + 35 * NS_PER_S)).interval
    assert est is not None
    assert est.status == "synchronized", est.reason
    assert est.evidence_age_s == pytest.approx(1.0)
    assert est.earliest_ns <= R0 + 35 * NS_PER_S + step <= est.latest_ns  # type: ignore[operator]


def test_a_kernel_slew_since_the_evidence_is_followed_and_its_steady_frequency_is_not() -> None:  # C3
    """Two samples 10 s apart while the kernel ran the clock 12 ppm fast of raw (a daemon's steady
    frequency, already in any drift fit); then 20 s more at 12 ppm plus a 50 ms slew. The centre
    moves by the slew alone, and the reason says so; without monotonic/raw readings nothing moves."""
    from dataclasses import replace

    from timekit.analysis.interval import kernel_ppm_of

    raw = np.array([1_000 * NS_PER_S, 1_010 * NS_PER_S], dtype=np.int64)
    mono = raw + np.array([0, 120_000], dtype=np.int64)  # +12 ppm over 10 s: 120 µs
    assert kernel_ppm_of(mono, raw) == pytest.approx(12.0, abs=1e-9)
    assert kernel_ppm_of(mono[:1], raw[:1]) is None  # one sample, or too short a span: not known
    assert kernel_ppm_of(mono, raw, min_span_ns=11 * NS_PER_S) is None
    base = ev("a", [0.010, 0.010], [20.0, 10.0])  # realtime/boottime: the samples are 20 and 10 s old
    e = replace(base, monotonic_ns=mono, raw_ns=raw, kernel_ppm=kernel_ppm_of(mono, raw))
    now_raw = 1_020 * NS_PER_S  # 10 s after the newest sample on raw
    now_mono = now_raw + 120_000 + 120_000 + 50_000_000  # 12 ppm for 10 more s, and a 50 ms slew
    plain = compute_interval([base], **now())
    followed = compute_interval([e], **now(), now_monotonic_ns=now_mono, now_raw_ns=now_raw)
    assert plain.earliest_ns is not None and followed.earliest_ns is not None
    assert plain.earliest_ns - followed.earliest_ns == pytest.approx(50_000_000, abs=2)
    assert "the kernel slewed this clock +0.050000 s" in followed.reason
    assert compute_interval([e], **now()).earliest_ns == plain.earliest_ns  # no readings now: as before
