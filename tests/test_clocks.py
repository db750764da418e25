"""Known-truth tests for timekit.collectors.clocks (FAULTS C1-C4) plus real reads."""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.conftest import host_slew_bound_ppm
from timekit.collectors.clocks import (
    ClockSnapshot,
    analyze_clock_series,
    clock_resolution,
    read_bracketed,
    read_cost_ns,
    read_snapshot,
    sample_clocks,
)
from timekit.errors import UsageError
from timekit.units import NS_PER_MS, NS_PER_S, NS_PER_US

REALTIME0_NS = 1_795_671_931_903_889_200  # a 2026 instant (C15's value)
MONO0_NS = 212_350_324_874
RAW0_NS = 212_101_425_453
TAI_UTC_S = 37


def series(
    n: int = 61,
    dt_s: float = 1.0,
    slew_ppm: float = 0.0,
    mono_follows_slew: bool = False,
    steps: dict[int, float] | None = None,
    suspends: dict[int, float] | None = None,
    noise_ns: int = 100,
    seed: int = 1,
) -> list[ClockSnapshot]:
    """Synthetic snapshots every `dt_s` of raw time.

    realtime runs (1 + slew_ppm·1e-6) × raw; monotonic too if `mono_follows_slew`
    (what the kernel does) else it runs with raw (a fake clock slewing realtime only).
    `steps[i]`: realtime jumps by that many s just before snapshot i. `suspends[i]`: the
    machine slept that many s before snapshot i (realtime and boottime advance, raw and
    monotonic do not). Realtime reads get uniform ±noise_ns of read jitter.
    """
    rng = random.Random(seed)
    steps = steps or {}
    suspends = suspends or {}
    rate = 1.0 + slew_ppm * 1e-6
    out = []
    step_ns = 0
    sleep_ns = 0
    for i in range(n):
        step_ns += round(steps.get(i, 0.0) * NS_PER_S)
        sleep_ns += round(suspends.get(i, 0.0) * NS_PER_S)
        raw_el = round(i * dt_s * NS_PER_S)
        slewed_el = round(raw_el * rate)
        mono_el = slewed_el if mono_follows_slew else raw_el
        rt = REALTIME0_NS + slewed_el + sleep_ns + step_ns + rng.randint(-noise_ns, noise_ns)
        out.append(
            ClockSnapshot(
                realtime_ns=rt,
                monotonic_ns=MONO0_NS + mono_el,
                raw_ns=RAW0_NS + raw_el,
                boottime_ns=MONO0_NS + mono_el + sleep_ns,
                tai_ns=rt + TAI_UTC_S * NS_PER_S,
                monotonic_bracket_ns=120 + i,
                raw_bracket_ns=130,
                boottime_bracket_ns=140,
                tai_bracket_ns=110,
            )
        )
    return out


@pytest.mark.parametrize("step_s", [1.0, -1.0])
def test_step_detected_with_sign_and_magnitude(step_s: float) -> None:
    snaps = series(steps={30: step_s})
    rep = analyze_clock_series(snaps)
    assert len(rep.steps) == 1
    ev = rep.steps[0]
    assert ev.kind == "step"
    assert ev.t_realtime_ns == snaps[30].realtime_ns
    assert ev.magnitude_s == pytest.approx(step_s, abs=1e-6)  # ±100 ns noise per read
    assert rep.suspends == ()
    assert rep.slew_ppm == pytest.approx(0.0, abs=1.0)


@pytest.mark.parametrize("slew_ppm", [500.0, 83_333.0])
@pytest.mark.parametrize("mono_follows_slew", [False, True])
@pytest.mark.parametrize("dt_s", [1.0, 0.1])
def test_slew_is_not_a_step_and_rate_recovered(
    slew_ppm: float, mono_follows_slew: bool, dt_s: float
) -> None:
    # 60 s of slewing: at 83 333 ppm realtime gains 8.3 ms per 0.1 s, 83 ms per 1 s,
    # under the 1 ms + 10 % threshold (11 ms / 101 ms).
    n = round(60 / dt_s) + 1
    rep = analyze_clock_series(series(n=n, dt_s=dt_s, slew_ppm=slew_ppm,
                                      mono_follows_slew=mono_follows_slew))
    assert rep.steps == ()
    assert rep.suspends == ()
    assert rep.slew_ppm == pytest.approx(slew_ppm, abs=1.0)
    assert rep.n_samples == n
    assert rep.span_s == pytest.approx(60.0 * (1 + slew_ppm * 1e-6 * mono_follows_slew), abs=1e-9)


def test_slew_recovered_across_a_step() -> None:
    # The step is cut out of the fit (one intercept per segment): 500 ppm still comes back.
    rep = analyze_clock_series(series(slew_ppm=500.0, steps={20: -1.0}))
    # the jump between snapshots 19 and 20 is the step plus 1 s of 500 ppm slew
    assert [e.magnitude_s for e in rep.steps] == [pytest.approx(-1.0 + 0.0005, abs=1e-6)]
    assert rep.slew_ppm == pytest.approx(500.0, abs=1.0)


def test_suspend_ten_minutes() -> None:
    snaps = series(suspends={25: 600.0})
    rep = analyze_clock_series(snaps)
    assert len(rep.suspends) == 1
    ev = rep.suspends[0]
    assert ev.kind == "suspend"
    assert ev.magnitude_s == pytest.approx(600.0, abs=1e-3)
    assert ev.t_realtime_ns == snaps[25].realtime_ns
    assert rep.steps == ()  # realtime−monotonic grew 600 s, all of it explained by sleep
    assert rep.span_s == pytest.approx(60.0 + 600.0, abs=1e-9)  # boottime span
    assert rep.slew_ppm == pytest.approx(0.0, abs=1.0)


def test_suspend_then_ntp_step_on_resume() -> None:
    rep = analyze_clock_series(series(suspends={25: 600.0}, steps={25: 2.5}))
    assert [e.magnitude_s for e in rep.suspends] == [pytest.approx(600.0, abs=1e-3)]
    assert [e.magnitude_s for e in rep.steps] == [pytest.approx(2.5, abs=1e-6)]


def test_small_jitter_and_one_ms_wobble_are_not_steps() -> None:
    # 0.9 ms jump in 10 ms of elapsed time: threshold is 1 ms + 1 ms = 2 ms.
    rep = analyze_clock_series(series(n=100, dt_s=0.01, steps={50: 0.0009}, noise_ns=500))
    assert rep.steps == ()
    rep = analyze_clock_series(series(n=100, dt_s=0.01, steps={50: 0.0021}, noise_ns=0))
    assert [e.magnitude_s for e in rep.steps] == [pytest.approx(0.0021, abs=1e-9)]


def test_tai_offset_and_brackets() -> None:
    rep = analyze_clock_series(series(n=11))
    assert rep.tai_offset_s == 37.0
    assert rep.max_bracket_ns == 140  # boottime's bracket; monotonic's tops out at 120+10
    assert rep.median_bracket_ns == 130


def test_empty_and_single_series() -> None:
    rep = analyze_clock_series([])
    assert (rep.n_samples, rep.span_s, rep.slew_ppm, rep.tai_offset_s) == (0, 0.0, None, None)
    assert rep.max_bracket_ns is None
    one = analyze_clock_series(series(n=1))
    assert (one.n_samples, one.span_s, one.slew_ppm) == (1, 0.0, None)


# --------------------------------------------------------------- sampler (fake reader)


def test_sampler_is_bounded_and_paced() -> None:
    fake = series(n=100)
    it = iter(fake)
    seen: list[ClockSnapshot] = []
    t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    got = sample_clocks(0.1, 50.0, on_snapshot=seen.append, reader=lambda: next(it))
    elapsed_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC) - t0
    assert len(got) == 6  # floor(0.1 s × 50 Hz) + 1
    assert got == fake[:6] and seen == got
    assert elapsed_ns >= 100 * NS_PER_MS - NS_PER_MS  # 5 periods of 20 ms slept


def test_sampler_stops_early_and_keeps_what_it_has() -> None:
    ev = threading.Event()
    fake = iter(series(n=100))
    got = sample_clocks(
        60.0, 100.0, on_snapshot=lambda s: ev.set() if s.monotonic_ns >= MONO0_NS + 2 * NS_PER_S
        else None, stop=ev, reader=lambda: next(fake))
    assert len(got) == 3  # the third fake snapshot (mono + 2 s) sets the event
    count = 0

    def stop_after_four() -> bool:
        return count >= 4

    def reader() -> ClockSnapshot:
        nonlocal count
        count += 1
        return series(n=1)[0]

    assert len(sample_clocks(60.0, 1000.0, stop=stop_after_four, reader=reader)) == 4


@pytest.mark.parametrize(("duration_s", "rate_hz"), [(-1.0, 10.0), (1.0, 0.0), (float("nan"), 1.0)])
def test_sampler_rejects_bad_arguments(duration_s: float, rate_hz: float) -> None:
    with pytest.raises(UsageError):
        sample_clocks(duration_s, rate_hz)


# --------------------------------------------------------------------- real clocks


@pytest.mark.parametrize(
    "clock_id",
    [time.CLOCK_MONOTONIC, time.CLOCK_MONOTONIC_RAW, time.CLOCK_BOOTTIME, time.CLOCK_TAI],
)
def test_real_bracket_is_tight(clock_id: int) -> None:
    r = read_bracketed(clock_id)
    assert 0 <= r.bracket_ns < 100 * NS_PER_US
    assert r.realtime_minus_clock_ns == r.realtime_ns - r.clock_ns


def test_real_realtime_minus_monotonic_is_stable() -> None:
    a = read_bracketed(time.CLOCK_MONOTONIC)
    time.sleep(0.05)
    b = read_bracketed(time.CLOCK_MONOTONIC)
    assert b.clock_ns - a.clock_ns >= 50 * NS_PER_MS
    assert abs(b.realtime_minus_clock_ns - a.realtime_minus_clock_ns) < NS_PER_MS


def test_real_snapshot_and_short_series() -> None:
    s = read_snapshot()
    assert s.raw_ns > 0 and s.boottime_ns >= s.monotonic_ns - 100 * NS_PER_US
    snaps = sample_clocks(0.5, 20.0)
    assert len(snaps) == 11
    rep = analyze_clock_series(snaps)
    assert rep.steps == () and rep.suspends == ()
    expected, tolerance = host_slew_bound_ppm()  # plus what the clock brackets leave unknown
    assert rep.slew_ppm is not None and rep.max_bracket_ns is not None
    assert abs(rep.slew_ppm - expected) <= tolerance + 2 * rep.max_bracket_ns / (rep.span_s * 1e9) * 1e6 + 1
    assert rep.span_s >= 0.45  # 0.5 s asked for; a busy machine may stretch it, never shorten it
    assert rep.max_bracket_ns is not None and rep.max_bracket_ns < 100 * NS_PER_US
    if s.tai_ns is not None:  # 0 s without a time daemon, 37 s with one that sets it
        assert rep.tai_offset_s is not None and round(rep.tai_offset_s) in (0, 37)


def test_real_resolution_and_cost() -> None:
    res = clock_resolution()
    assert {"realtime", "monotonic", "monotonic_raw", "boottime"} <= res.keys()
    assert all(1 <= v <= 10 * NS_PER_MS for v in res.values())  # 1 ns on hrtimer kernels
    cost = read_cost_ns(batches=11, calls_per_batch=100)
    assert res.keys() == cost.keys()
    assert all(5.0 <= v < 100 * NS_PER_US for v in cost.values())  # ~55 ns here (vDSO)


def test_suspend_and_step_between_two_runs_are_seen() -> None:
    """A run sees only its own second; the gap since the previous run's last snapshot is compared
    too (same boot: monotonic moved forward), by the collector's own rule: a slew, however long the
    gap, is not a step (FAULTS C3)."""
    from types import SimpleNamespace

    from timekit.pipeline.sampling import between_runs

    NS = 1_000_000_000  # noqa: N806
    prev = (1_000 * NS, 50 * NS, 60 * NS)  # realtime, monotonic, boottime (10 s asleep before)
    # 60 s later by monotonic; boottime moved 90 s (30 s suspended); realtime moved 80 s (stepped -10 s,
    # beyond 1 ms + 10 % of the 60 s)
    first = SimpleNamespace(realtime_ns=1_080 * NS, monotonic_ns=110 * NS, boottime_ns=150 * NS)
    events = {e["kind"]: e["magnitude_s"] for e in between_runs(prev, first)}
    assert events == {"suspend": 30.0, "step": -10.0}
    # chronyd's fastest slew (1/12) for the whole minute: 5 s, and no step
    slewed = SimpleNamespace(realtime_ns=1_065 * NS, monotonic_ns=110 * NS, boottime_ns=120 * NS)
    assert between_runs(prev, slewed) == []
    calm = SimpleNamespace(realtime_ns=1_060 * NS, monotonic_ns=110 * NS, boottime_ns=120 * NS)
    assert between_runs(prev, calm) == []
    rebooted = SimpleNamespace(realtime_ns=2_000 * NS, monotonic_ns=5 * NS, boottime_ns=5 * NS)
    assert between_runs(prev, rebooted) == [] and between_runs(None, calm) == []
