"""Pause meter (jHiccup-style): how late does a sleeper wake up, summarised per interval.

A thread asks to sleep `resolution_s` again and again and measures on CLOCK_MONOTONIC how much
later than asked it woke: that lateness is a "hiccup" the whole process would have felt (GC,
scheduling, a stopped VM, SIGSTOP). The wake-ups a stall swallowed are filled in (coordinated
omission, as jHiccup does), so percentiles describe time, not just the wake-ups that happened.
Each `interval_s` the hiccups are summarised as percentiles and max, together with suspend
time (CLOCK_BOOTTIME − CLOCK_MONOTONIC growth, which the sleeper cannot see because monotonic
stops during suspend). It covers only the time it runs (in `collect`, a few seconds a minute).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from timekit.analysis.clock_events import SUSPEND_THRESHOLD_NS
from timekit.collectors.clocks import realtime_ns
from timekit.errors import UsageError
from timekit.units import NS_PER_S

MAX_WAKEUPS = 10_000_000  # hard cap whatever duration / resolution says
MAX_MISSED_PER_HICCUP = 1_000_000  # coordinated-omission fill per stall (a 1000 s stall at 1 ms)


@dataclass(frozen=True, slots=True)
class PauseInterval:
    """Hiccups seen during one interval ending at `t_local_ns`. Durations in seconds."""

    t_local_ns: int  # CLOCK_REALTIME at the end of the interval
    boottime_ns: int  # CLOCK_BOOTTIME at the same instant
    interval_s: float  # monotonic length of the interval
    n_wakeups: int  # wake-ups that happened (percentiles also count the ones stalls swallowed)
    p50_s: float
    p90_s: float
    p99_s: float
    p999_s: float
    max_s: float
    suspend_s: float  # time suspended during the interval (boottime − monotonic growth)


def _pct(sorted_s: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in [0, 1]): the ceil(q·n)-th value."""
    return sorted_s[min(len(sorted_s) - 1, max(0, math.ceil(q * len(sorted_s)) - 1))]


def with_missed_wakeups(hiccups_s: list[float], resolution_s: float) -> list[float]:
    """Correct for coordinated omission, as jHiccup does: a sleeper stalled for h seconds missed
    the wake-ups it would have had meanwhile, each of which would have seen h − k·resolution.
    Without them a process frozen 68 % of an interval reports p99 ≈ 0."""
    out = list(hiccups_s)
    for h in hiccups_s:
        missed = min(int(h / resolution_s), MAX_MISSED_PER_HICCUP)
        out.extend(h - k * resolution_s for k in range(1, missed + 1))
    return out


def summarise(hiccups_s: list[float], t_local_ns: int, boottime_ns: int, interval_s: float,
              suspend_s: float) -> PauseInterval:
    """One interval's hiccups (seconds, any order) as percentiles and max."""
    s = sorted(hiccups_s) or [0.0]
    return PauseInterval(t_local_ns, boottime_ns, interval_s, len(hiccups_s), _pct(s, 0.5), _pct(s, 0.9),
                         _pct(s, 0.99), _pct(s, 0.999), s[-1], suspend_s)


def measure_pauses(duration_s: float, *, resolution_s: float = 0.001, interval_s: float = 1.0,
                   stop: threading.Event | Callable[[], bool] | None = None,
                   on_interval: Callable[[PauseInterval], None] | None = None) -> list[PauseInterval]:
    """Run the sleeper for `duration_s` (or until `stop`); returns one summary per interval."""
    if not (0 < resolution_s <= 1.0 and resolution_s <= interval_s <= 3600 and 0 <= duration_s <= 86_400):
        raise UsageError(f"pause meter: need 0 < resolution ({resolution_s} s) <= 1 s, resolution <= "
                         f"interval ({interval_s} s) <= 3600 s and 0 <= duration ({duration_s} s) <= 86400 s")
    if duration_s / resolution_s > MAX_WAKEUPS:
        raise UsageError(f"pause meter: {duration_s / resolution_s:.0f} wake-ups is over the cap "
                         f"{MAX_WAKEUPS}")
    mono, boot = time.monotonic_ns, lambda: time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    step_ns = round(resolution_s * NS_PER_S)
    interval_ns, end_ns = round(interval_s * NS_PER_S), mono() + round(duration_s * NS_PER_S)
    out: list[PauseInterval] = []
    hiccups: list[float] = []
    start_mono, start_gap = mono(), boot() - mono()

    def stopped() -> bool:
        if stop is None:
            return False
        return stop.is_set() if isinstance(stop, threading.Event) else bool(stop())

    def close(now_mono: int) -> None:
        nonlocal hiccups, start_mono, start_gap
        gap = boot() - mono()
        iv = summarise(with_missed_wakeups(hiccups, resolution_s), realtime_ns(),
                       time.clock_gettime_ns(time.CLOCK_BOOTTIME),
                       (now_mono - start_mono) / NS_PER_S,
                       (gap - start_gap) / NS_PER_S if gap - start_gap > SUSPEND_THRESHOLD_NS else 0.0)
        iv = replace(iv, n_wakeups=len(hiccups))  # real wake-ups, not the filled-in ones
        out.append(iv)
        if on_interval is not None:
            on_interval(iv)
        hiccups, start_mono, start_gap = [], now_mono, gap

    while True:
        before = mono()
        if before >= end_ns or stopped():
            break
        time.sleep(resolution_s)
        after = mono()
        hiccups.append(max(0, after - before - step_ns) / NS_PER_S)
        if after - start_mono >= interval_ns:
            close(after)
    if hiccups:
        close(mono())
    return out
