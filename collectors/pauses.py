"""Pause meter (jHiccup-style): how late does a sleeper wake up, summarised per interval.

A thread asks to sleep `resolution_s` again and again and measures on CLOCK_MONOTONIC how much
later than asked it woke: that lateness is a "hiccup" the whole process would have felt (GC,
scheduling, a stopped VM, SIGSTOP). Each `interval_s` the hiccups are summarised as
percentiles and max, together with suspend time (CLOCK_BOOTTIME − CLOCK_MONOTONIC growth,
which the sleeper cannot see because monotonic stops during suspend).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from timekit.collectors.clocks import SUSPEND_THRESHOLD_NS, realtime_ns
from timekit.errors import UsageError
from timekit.units import NS_PER_S

MAX_WAKEUPS = 10_000_000  # hard cap whatever duration / resolution says


@dataclass(frozen=True, slots=True)
class PauseInterval:
    """Hiccups seen during one interval ending at `t_local_ns`. Durations in seconds."""

    t_local_ns: int  # CLOCK_REALTIME at the end of the interval
    boottime_ns: int  # CLOCK_BOOTTIME at the same instant
    interval_s: float  # monotonic length of the interval
    n_wakeups: int
    p50_s: float
    p90_s: float
    p99_s: float
    p999_s: float
    max_s: float
    suspend_s: float  # time suspended during the interval (boottime − monotonic growth)


def _pct(sorted_s: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in [0, 1])."""
    return sorted_s[min(len(sorted_s) - 1, max(0, int(q * len(sorted_s) + 0.5) - 1))]


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
        iv = summarise(hiccups, realtime_ns(), time.clock_gettime_ns(time.CLOCK_BOOTTIME),
                       (now_mono - start_mono) / NS_PER_S,
                       (gap - start_gap) / NS_PER_S if gap - start_gap > SUSPEND_THRESHOLD_NS else 0.0)
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
