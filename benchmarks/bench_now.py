"""`now`: the cost of `IntervalClock.now()` against `time.time_ns()`, measured in the same run.

The clock reads a published state (a synthetic fresh one in a temporary file, mapped as in
production). Two views, interleaved so both see the same machine:
- batches: 1000 back-to-back calls timed together (perf_counter_ns), per-call mean of each
  batch; median and p99 over the batches. This is the honest per-call cost.
- single calls: each call timed alone; the timer's own cost (an empty timed region) is
  subtracted. Shows the tail a single caller sees (p99).
Also `clock.after(t)` (one now() plus a comparison) and `Lease.valid()`. The C hot path (when
built) and the pure-Python path (`_now_py`, what runs without the extension) are measured in the
same run, while a daemon process publishes a new state at 4 Hz (each publication sends the
next call through the Python path once, to load it).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import BenchResult
from timekit.analysis.clock_state import ClockState
from timekit.clock.intervalclock import IntervalClock
from timekit.clock.lease import Lease
from timekit.collectors.clocks import boot_id
from timekit.store.published_state import publish, state_path_for

BATCH = 1000
PUBLISH_EVERY_S = 0.25  # `timekit daemon` at 4 Hz
PUBLISHER = """
import sys, time
from pathlib import Path
from timekit.analysis.clock_state import ClockState
from timekit.collectors.clocks import boot_id
from timekit.store.published_state import publish
path, every, until = Path(sys.argv[1]), float(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while time.monotonic() < until:
    rt, bt = time.clock_gettime_ns(time.CLOCK_REALTIME), time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    publish(path, ClockState(rt, bt, -50_000, 50_000, 12.5, 200.0, 1.0, 300.0, 14_400.0, 1_000_000,
                             anchor_unknown=False, has_interval=True), boot_id())
    time.sleep(every)
"""


def _batches(fn: object, n_batches: int) -> list[float]:
    """Per-call ns of `n_batches` batches of BATCH calls."""
    call = fn  # local for speed
    out = []
    for _ in range(n_batches):
        t0 = time.perf_counter_ns()
        for _ in range(BATCH):
            call()  # type: ignore[operator]
        out.append((time.perf_counter_ns() - t0) / BATCH)
    return out


def _singles(fn: object, n: int) -> list[int]:
    call, pc = fn, time.perf_counter_ns
    out = []
    for _ in range(n):
        t0 = pc()
        call()  # type: ignore[operator]
        out.append(pc() - t0)
    return out


def _pct(xs: list[float] | list[int], q: float) -> float:
    s = sorted(xs)
    return float(s[min(len(s) - 1, int(q * len(s)))])


def run(quick: bool, workdir: Path) -> BenchResult:
    res = BenchResult("now")
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "now.db"
    rt, bt = time.clock_gettime_ns(time.CLOCK_REALTIME), time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    publish(state_path_for(db), ClockState(rt, bt, -50_000, 50_000, 12.5, 200.0, 1.0, 300.0, 14_400.0,
                                           1_000_000, anchor_unknown=False, has_interval=True), boot_id())
    clock = IntervalClock(db)
    assert clock.source == "published" and clock.now().status == "synchronized"
    accelerated = clock.accelerated
    daemon = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(state_path_for(db)),
                               str(PUBLISH_EVERY_S), "600"])
    lease = Lease(clock, 3600.0, token=1)
    t_past = rt - 10**9
    rounds = 10 if quick else 40
    per_round = 20
    b_now: list[float] = []
    b_raw: list[float] = []
    b_after: list[float] = []
    b_lease: list[float] = []
    b_py: list[float] = []
    s_py: list[int] = []
    s_now: list[int] = []
    s_raw: list[int] = []
    s_empty: list[int] = []
    try:
        for _ in range(rounds):  # interleave so every side sees the same machine state
            b_raw += _batches(time.time_ns, per_round)
            b_now += _batches(clock.now, per_round)  # kept bound: the C object follows new states in place
            b_py += _batches(clock._now_py, per_round)
            s_py += _singles(clock._now_py, 2000)
            b_after += _batches(lambda: clock.after(t_past), per_round // 4)
            b_lease += _batches(lease.valid, per_round // 4)
            s_empty += _singles(lambda: None, 2000)
            s_raw += _singles(time.time_ns, 2000)
            s_now += _singles(clock.now, 2000)
    finally:
        daemon.kill()
        daemon.wait()
    assert clock.now().status == "synchronized"
    empty = statistics.median(s_empty)
    med_now, med_raw = statistics.median(b_now), statistics.median(b_raw)
    p99_now, p99_raw = _pct(b_now, 0.99), _pct(b_raw, 0.99)
    res.row("now() per call, median of batches", "ns", med_now, "time.time_ns", med_raw,
            f"added {med_now - med_raw:.0f} ns; {len(b_now)} batches of {BATCH}")
    res.row("now() per call, p99 of batches", "ns", p99_now, "time.time_ns", p99_raw,
            f"added {p99_now - p99_raw:.0f} ns")
    sn = [x - empty for x in s_now]
    sr = [x - empty for x in s_raw]
    res.row("now() single call, median", "ns", statistics.median(sn), "time.time_ns", statistics.median(sr),
            f"timer overhead {empty:.0f} ns subtracted")
    res.row("now() single call, p99", "ns", _pct(sn, 0.99), "time.time_ns", _pct(sr, 0.99), "")
    med_py = statistics.median(b_py)
    res.row("now() pure Python per call, median of batches", "ns", med_py, "time.time_ns", med_raw,
            "the path without the C extension")
    res.row("now() pure Python per call, p99 of batches", "ns", _pct(b_py, 0.99), "time.time_ns", p99_raw, "")
    sp = [x - empty for x in s_py]
    res.row("now() pure Python single call, p99", "ns", _pct(sp, 0.99), "time.time_ns", _pct(sr, 0.99), "")
    res.row("after(t) per call, median", "ns", statistics.median(b_after), "time.time_ns", med_raw, "")
    res.row("Lease.valid() per call, median", "ns", statistics.median(b_lease), "time.time_ns", med_raw,
            "interval clock + boottime deadline")
    res.details = {"batch_ns": {"now": b_now, "now_pure_python": b_py, "time_ns": b_raw},
                   "timer_overhead_ns": empty, "accelerated": accelerated,
                   "single_p50_p90_p99_p999_ns": {
                       "now": [_pct(sn, q) for q in (0.5, 0.9, 0.99, 0.999)],
                       "time_ns": [_pct(sr, q) for q in (0.5, 0.9, 0.99, 0.999)]}}
    res.notes.append(f"now() runs {'the C hot path' if accelerated else 'pure Python (no C extension)'}: "
                     f"{med_now / med_raw:.1f}x time.time_ns() (target <= 5x with C), pure Python "
                     f"{med_py / med_raw:.1f}x (target <= 8x); a daemon republished the state every "
                     f"{PUBLISH_EVERY_S} s throughout")
    clock.close()
    return res
