"""The published clock state and the one formula that turns it into an interval (no numpy).

A `ClockState` is an interval frozen at an anchor instant plus the rates at which its centre
moves and its sides grow; `interval_at` carries it to any later (realtime, boottime) reading.
`timekit now`/`collect` publish it, `IntervalClock` reads it on its hot path (which inlines
this formula; a test holds the two together).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from timekit.units import NS_PER_S, PPM

INT64_MAX = (1 << 63) - 1
# a (realtime, boottime) pair is not one instant: read with `read_bracketed` (the evidence's, the
# published anchor's) it is at most ~1 µs apart on an idle machine; 5× margin, each side
PAIR_SLACK_NS = 5_000
LEAP_NS = 1_000_000_000  # a leap second
CAUSALITY_SLACK_NS = 1_000_000  # boottime may not run backwards past the anchor by more (FAULTS Q6)


@dataclass(frozen=True)
class ClockState:
    """What a reader needs to compute the interval at any later instant without the store.

    At the anchor (`anchor_realtime_ns`, `anchor_boottime_ns`) the references' true time lay in
    ``anchor_realtime + [lo_ns, hi_ns]``; afterwards the centre moves at −`drift_ppm` (our clock
    gains) and each side grows at `growth_ppm`. `has_interval` False: no evidence at all.
    """

    anchor_realtime_ns: int
    anchor_boottime_ns: int
    lo_ns: int
    hi_ns: int
    drift_ppm: float
    growth_ppm: float
    evidence_age_s: float  # age of the newest evidence at the anchor
    fresh_s: float
    void_after_s: float
    step_tolerance_ns: int
    anchor_unknown: bool  # the estimate at the anchor was already 'unknown' (e.g. stepped)
    has_interval: bool
    single_source: bool = False
    leap_from_ns: int = 0  # realtime from which a pending leap second widens the interval by 1 s (0: none)

    def __post_init__(self) -> None:
        if self.has_interval and self.lo_ns > self.hi_ns:
            raise ValueError(f"inverted clock state: lo {self.lo_ns} ns > hi {self.hi_ns} ns")
        if not (self.growth_ppm >= 0 and math.isfinite(self.growth_ppm) and math.isfinite(self.drift_ppm)):
            raise ValueError(f"bad clock state rates: drift {self.drift_ppm} ppm, "
                             f"growth {self.growth_ppm} ppm")


def interval_at(state: ClockState, realtime_ns: int, boottime_ns: int) -> tuple[int, int, str]:
    """(earliest_ns, latest_ns, status) at a later (realtime, boottime) reading: the reference
    formula the IntervalClock hot path inlines (a test holds the two together).

    No evidence: (0, INT64_MAX, 'unknown'), as wide as an instant can be, never a lie.
    Raises ValueError when boottime is before the anchor (FAULTS Q6: causality breach).
    """
    if not state.has_interval:
        return 0, INT64_MAX, "unknown"
    age_ns = boottime_ns - state.anchor_boottime_ns
    if age_ns < -CAUSALITY_SLACK_NS:
        raise ValueError(f"clock reading {-age_ns} ns before the published state's anchor (causality breach)")
    age_ns = max(age_ns, 0)
    step_ns = (realtime_ns - boottime_ns) - (state.anchor_realtime_ns - state.anchor_boottime_ns)
    shift = -state.drift_ppm * PPM * age_ns - step_ns
    grow = state.growth_ppm * PPM * age_ns + PAIR_SLACK_NS
    earliest = realtime_ns + math.floor(state.lo_ns + shift - grow)
    latest = realtime_ns + math.ceil(state.hi_ns + shift + grow)
    # from 1 s before the leap's midnight (on the anchor's timescale carried by boottime: a local
    # step must not hide it) the leap may have been applied by anyone, or not: ±1 s
    if state.leap_from_ns and state.anchor_realtime_ns + age_ns >= state.leap_from_ns:
        earliest, latest = earliest - LEAP_NS, latest + LEAP_NS
    age_s = state.evidence_age_s + age_ns / NS_PER_S
    if state.anchor_unknown or abs(step_ns) > state.step_tolerance_ns or age_s > state.void_after_s:
        status = "unknown"
    elif age_s <= state.fresh_s:
        status = "synchronized"
    else:
        status = "free_running"
    return earliest, latest, status


def disruption_ns(old: ClockState, new: ClockState) -> int | None:
    """How far the references' time at `new`'s anchor lies outside where the published `old` state
    put it, ns (positive: later than its latest), or None when `new` overlaps what `old` allowed.

    `old` carried forward by boottime (with its drift, growth and any wall-clock step since) bounds
    the truth at every later instant; fresh evidence outside that bound means the clocks themselves
    lost track between the two (FAULTS C5: a VM paused or migrated with realtime and monotonic
    frozen), and every interval served from `old` since then may have been a lie. None too when
    either state has no interval, `old` was already unknown, or `new` is not later (nothing to say).
    """
    if not (old.has_interval and new.has_interval) or old.anchor_unknown or new.anchor_unknown:
        return None
    if new.anchor_boottime_ns < old.anchor_boottime_ns:
        return None
    earliest, latest, _ = interval_at(old, new.anchor_realtime_ns, new.anchor_boottime_ns)
    new_lo, new_hi = new.anchor_realtime_ns + new.lo_ns, new.anchor_realtime_ns + new.hi_ns
    if new_lo > latest:
        return new_lo - latest
    if new_hi < earliest:
        return new_hi - earliest
    return None


def supersedes(new: ClockState, old: ClockState | None) -> bool:
    """Whether `new` may replace the published `old` of the same boot: never with a state anchored
    earlier (a publisher that read the clocks before another one finished would otherwise roll every
    reader back to older evidence, or to no interval at all)."""
    return old is None or new.anchor_boottime_ns >= old.anchor_boottime_ns
