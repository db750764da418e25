"""Bracketed clock reads, a bounded sampler, and a pure analyzer of the series.

A bracketed read takes `a = clock`, `r = CLOCK_REALTIME`, `b = clock` and keeps the
try with the tightest bracket `b − a`: realtime was read somewhere inside `[a, b]`, so
`realtime − (a + b)/2` is known to within ±bracket/2. A `ClockSnapshot` combines one
such read per clock, each projected onto the same realtime instant.

`analyze_clock_series` is pure (no clock reads) so tests feed it synthetic series:

- step and suspend between consecutive snapshots: `analysis.clock_events` (the one rule, also
  used between two runs): a wall-clock jump beyond 1 ms + 10 % of the elapsed time (slews
  never are, FAULTS C3); `boottime − monotonic` grown by more than 1 ms (C4).
- slew_ppm: least-squares slope of realtime against CLOCK_MONOTONIC_RAW, with a
  separate intercept per segment between steps/suspends, as
  `(d realtime / d raw − 1) · 1e6`. It is the total rate correction NTP applies
  (frequency + phase slew); positive means realtime runs faster than the raw
  oscillator.
- tai_offset_s: median `tai − realtime` (37 s when a daemon set the kernel's TAI
  offset, 0 otherwise).
"""

from __future__ import annotations

import functools
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from timekit.analysis.clock_events import ClockEvent, ClockReading, events_between
from timekit.errors import CollectorError, UsageError
from timekit.units import NS_PER_S

__all__ = [
    "CLOCKS",
    "BracketedRead",
    "ClockEvent",
    "ClockReport",
    "ClockSnapshot",
    "analyze_clock_series",
    "clock_resolution",
    "read_bracketed",
    "read_cost_ns",
    "read_mono_raw",
    "read_snapshot",
    "sample_clocks",
]

CLOCKS: dict[str, int] = {
    "realtime": time.CLOCK_REALTIME,
    "monotonic": time.CLOCK_MONOTONIC,
    "monotonic_raw": time.CLOCK_MONOTONIC_RAW,
    "boottime": time.CLOCK_BOOTTIME,
    "tai": time.CLOCK_TAI,
}

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
MAX_SNAPSHOTS = 10_000_000  # hard cap for sample_clocks whatever duration × rate says


@dataclass(frozen=True, slots=True)
class BracketedRead:
    """CLOCK_REALTIME read between two reads of `clock_id` (best of `tries`).

    `clock_ns` is the bracket midpoint `(a + b) // 2`; `realtime_minus_clock_ns` is
    `realtime_ns − clock_ns`, uncertain by ±`bracket_ns`/2.
    """

    clock_id: int
    realtime_ns: int
    clock_ns: int
    bracket_ns: int
    realtime_minus_clock_ns: int


@dataclass(frozen=True, slots=True)
class ClockSnapshot:
    """All clocks at one CLOCK_REALTIME instant, in int ns (each clock's own epoch).

    The other clocks are the bracket midpoints projected onto `realtime_ns`; the
    `*_bracket_ns` fields give each one's read uncertainty (±bracket/2). `tai_ns` and
    `tai_bracket_ns` are None where CLOCK_TAI is unsupported.
    """

    realtime_ns: int
    monotonic_ns: int
    raw_ns: int
    boottime_ns: int
    tai_ns: int | None
    monotonic_bracket_ns: int
    raw_bracket_ns: int
    boottime_bracket_ns: int
    tai_bracket_ns: int | None = None

    def brackets_ns(self) -> list[int]:
        """All brackets of this snapshot (ns)."""
        out = [self.monotonic_bracket_ns, self.raw_bracket_ns, self.boottime_bracket_ns]
        if self.tai_bracket_ns is not None:
            out.append(self.tai_bracket_ns)
        return out


@dataclass(frozen=True, slots=True)
class ClockReport:
    """What a clock series says. `span_s` is boottime elapsed (includes suspend).
    `slew_ppm` / `tai_offset_s` / brackets are None when there is no data for them."""

    n_samples: int
    span_s: float
    steps: tuple[ClockEvent, ...]
    suspends: tuple[ClockEvent, ...]
    slew_ppm: float | None
    tai_offset_s: float | None
    max_bracket_ns: int | None
    median_bracket_ns: int | None


# --------------------------------------------------------------------------- reads


def realtime_ns() -> int:
    """CLOCK_REALTIME now, integer ns since the Unix epoch: timekit's one wall-clock read."""
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


@functools.cache
def boot_id() -> str | None:
    """The kernel's boot id (a fresh UUID per boot), or None off Linux: boottime's epoch."""
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def read_bracketed(clock_id: int, tries: int = 5,
                   get: Callable[[int], int] = time.clock_gettime_ns) -> BracketedRead:
    """Read CLOCK_REALTIME bracketed by `clock_id`, keeping the tightest of `tries`.

    `get` reads a clock in ns (a caller with its own reader passes it). Raises `CollectorError` if
    the clock cannot be read (e.g. CLOCK_TAI unsupported).
    """
    if tries < 1:
        raise UsageError(f"tries must be >= 1, got {tries}")
    rt_id = time.CLOCK_REALTIME
    best_a = best_r = best_b = 0
    best_bracket = -1
    try:
        for _ in range(tries):
            a = get(clock_id)
            r = get(rt_id)
            b = get(clock_id)
            if best_bracket < 0 or b - a < best_bracket:
                best_a, best_r, best_b, best_bracket = a, r, b, b - a
    except OSError as exc:
        raise CollectorError(f"cannot read clock {clock_id}: {exc}") from exc
    mid = (best_a + best_b) // 2
    return BracketedRead(clock_id, best_r, mid, best_bracket, best_r - mid)


def read_mono_raw(tries: int = 3) -> tuple[int, int]:
    """(CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW) as one pair, ns: monotonic between two raw reads, the
    tightest of `tries`, against their midpoint. Their difference is how far the kernel has slewed
    this clock; two plain reads a preemption apart put the preemption into it (a 25 µs "slew")."""
    best = (0, 0, -1)
    for _ in range(max(1, tries)):
        a = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
        m = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        b = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
        if best[2] < 0 or b - a < best[2]:
            best = (m, a + (b - a) // 2, b - a)
    return best[0], best[1]


def _tai_supported() -> bool:
    try:
        time.clock_gettime_ns(time.CLOCK_TAI)
    except (OSError, AttributeError):
        return False
    return True


def read_snapshot(tries: int = 5) -> ClockSnapshot:
    """One `ClockSnapshot`: a bracketed read per clock, projected onto one realtime
    instant (that of the monotonic read)."""
    mono = read_bracketed(time.CLOCK_MONOTONIC, tries)
    raw = read_bracketed(time.CLOCK_MONOTONIC_RAW, tries)
    boot = read_bracketed(time.CLOCK_BOOTTIME, tries)
    rt = mono.realtime_ns
    tai_ns: int | None = None
    tai_bracket: int | None = None
    if _tai_supported():
        tai = read_bracketed(time.CLOCK_TAI, tries)
        tai_ns = rt - tai.realtime_minus_clock_ns
        tai_bracket = tai.bracket_ns
    return ClockSnapshot(
        realtime_ns=rt,
        monotonic_ns=mono.clock_ns,
        raw_ns=rt - raw.realtime_minus_clock_ns,
        boottime_ns=rt - boot.realtime_minus_clock_ns,
        tai_ns=tai_ns,
        monotonic_bracket_ns=mono.bracket_ns,
        raw_bracket_ns=raw.bracket_ns,
        boottime_bracket_ns=boot.bracket_ns,
        tai_bracket_ns=tai_bracket,
    )


def clock_resolution() -> dict[str, int]:
    """Clock name -> resolution in ns (`time.clock_getres`); unreadable clocks left out."""
    out: dict[str, int] = {}
    for name, cid in CLOCKS.items():
        try:
            out[name] = round(time.clock_getres(cid) * NS_PER_S)
        except OSError:
            continue
    return out


def read_cost_ns(batches: int = 51, calls_per_batch: int = 200) -> dict[str, float]:
    """Clock name -> median cost of one `time.clock_gettime_ns` call, in ns (float).

    Bounded: `batches × calls_per_batch` calls per clock, each batch timed with
    CLOCK_MONOTONIC; the median over batches resists preemption outliers. The figure
    includes the Python call overhead (what a timekit caller pays).
    """
    get = time.clock_gettime_ns
    mono = time.CLOCK_MONOTONIC
    out: dict[str, float] = {}
    for name, cid in CLOCKS.items():
        try:
            get(cid)
        except OSError:
            continue
        per_call: list[float] = []
        for _ in range(batches):
            t0 = get(mono)
            for _ in range(calls_per_batch):
                get(cid)
            per_call.append((get(mono) - t0) / calls_per_batch)
        out[name] = statistics.median(per_call)
    return out


# ----------------------------------------------------------------------- sampler


def _should_stop(stop: threading.Event | Callable[[], bool] | None) -> bool:
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())


def sample_clocks(
    duration_s: float,
    rate_hz: float,
    on_snapshot: Callable[[ClockSnapshot], None] | None = None,
    stop: threading.Event | Callable[[], bool] | None = None,
    reader: Callable[[], ClockSnapshot] = read_snapshot,
) -> list[ClockSnapshot]:
    """Take snapshots every 1/`rate_hz` s for `duration_s` s (CLOCK_MONOTONIC schedule).

    Bounded: at most `floor(duration_s × rate_hz) + 1` snapshots. `stop` (an Event or
    a callable) is checked before each read and wakes the sleep when it is an Event,
    so a SIGINT handler that sets it ends sampling early and keeps what was collected.
    `on_snapshot` is called with each snapshot as it is taken.
    """
    if not (duration_s >= 0 and duration_s < float("inf")):
        raise UsageError(f"duration must be a finite number of seconds >= 0, got {duration_s}")
    if not (rate_hz > 0 and rate_hz < float("inf")):
        raise UsageError(f"rate must be a finite number of Hz > 0, got {rate_hz}")
    n_max = min(int(duration_s * rate_hz) + 1, MAX_SNAPSHOTS)
    period_ns = round(NS_PER_S / rate_hz)
    mono = time.CLOCK_MONOTONIC
    t0_ns = time.clock_gettime_ns(mono)
    out: list[ClockSnapshot] = []
    for k in range(n_max):
        if k:
            wait_s = (t0_ns + k * period_ns - time.clock_gettime_ns(mono)) / NS_PER_S
            if wait_s > 0:
                if isinstance(stop, threading.Event):
                    stop.wait(wait_s)
                else:
                    time.sleep(wait_s)
        if _should_stop(stop):
            break
        snap = reader()
        out.append(snap)
        if on_snapshot is not None:
            on_snapshot(snap)
    return out


# ---------------------------------------------------------------------- analyzer


def _pooled_slope(segments: list[list[tuple[int, int]]]) -> float | None:
    """Least-squares slope of y on x with one intercept per segment (x, y in int ns)."""
    sxy = 0.0
    sxx = 0.0
    for seg in segments:
        if len(seg) < 2:
            continue
        x0, y0 = seg[0]
        xs = [float(x - x0) for x, _ in seg]
        ys = [float(y - y0) for _, y in seg]
        mx = sum(xs) / len(xs)
        my = sum(ys) / len(ys)
        sxy += sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
        sxx += sum((x - mx) ** 2 for x in xs)
    if sxx <= 0.0:
        return None
    return sxy / sxx


def analyze_clock_series(snapshots: Sequence[ClockSnapshot]) -> ClockReport:
    """Pure: steps, suspends, slew rate and TAI offset of a snapshot series.

    Snapshots must be in the order taken. Steps and suspends: `analysis.clock_events`.
    """
    n = len(snapshots)
    steps: list[ClockEvent] = []
    suspends: list[ClockEvent] = []
    segments: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    for i, s in enumerate(snapshots):
        if i:
            p = snapshots[i - 1]
            found = events_between(ClockReading(p.realtime_ns, p.monotonic_ns, p.boottime_ns),
                                   ClockReading(s.realtime_ns, s.monotonic_ns, s.boottime_ns))
            steps += [e for e in found if e.kind == "step"]
            suspends += [e for e in found if e.kind == "suspend"]
            broken = bool(found)
            if broken:
                segments.append(current)
                current = []
        current.append((s.raw_ns, s.realtime_ns - s.raw_ns))
    segments.append(current)

    slope = _pooled_slope(segments)
    tai_offsets = [s.tai_ns - s.realtime_ns for s in snapshots if s.tai_ns is not None]
    brackets = [b for s in snapshots for b in s.brackets_ns()]
    return ClockReport(
        n_samples=n,
        span_s=(snapshots[-1].boottime_ns - snapshots[0].boottime_ns) / NS_PER_S if n else 0.0,
        steps=tuple(steps),
        suspends=tuple(suspends),
        slew_ppm=None if slope is None else slope * 1e6,
        tai_offset_s=statistics.median(tai_offsets) / NS_PER_S if tai_offsets else None,
        max_bracket_ns=max(brackets) if brackets else None,
        median_bracket_ns=statistics.median_low(brackets) if brackets else None,
    )
