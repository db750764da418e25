"""Wall-clock steps and suspends between two readings of the same host's clocks: the one rule.

Between two (realtime, monotonic, boottime) readings of one boot:

- suspend: `boottime − monotonic` grew by more than SUSPEND_THRESHOLD_NS (C4);
- step: the change of `realtime − monotonic` not explained by that suspend exceeds
  STEP_THRESHOLD_NS + STEP_THRESHOLD_FRACTION × Δmonotonic (1 ms + 10 %). The kernel slews at most
  500 ppm (adjtimex) and chronyd's fastest slew is 83 333 ppm (1/12), both below 10 %, so a slew is
  never a step (FAULTS C3), however far apart the readings (cron runs a minute apart alike).

Used by the clock collector (between consecutive snapshots of a run) and by `timekit collect`
(between one run's last snapshot and the next run's first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from timekit.units import NS_PER_MS, NS_PER_S

STEP_THRESHOLD_NS = 1 * NS_PER_MS  # fixed part of the step threshold
STEP_THRESHOLD_FRACTION = 0.10  # plus 10 % of the elapsed monotonic time (> 83 333 ppm)
SUSPEND_THRESHOLD_NS = 1 * NS_PER_MS  # boottime − monotonic growth that means suspend


class ClockReading(NamedTuple):
    """The host's clocks at one instant, int ns (each clock's own epoch)."""

    realtime_ns: int
    monotonic_ns: int
    boottime_ns: int


@dataclass(frozen=True)
class ClockEvent:
    """A discontinuity: `step` (magnitude signed, + = wall clock jumped forward) or
    `suspend` (magnitude = seconds asleep). `t_realtime_ns`: the reading after it."""

    kind: Literal["step", "suspend"]
    t_realtime_ns: int
    magnitude_s: float


def events_between(p: ClockReading, s: ClockReading) -> list[ClockEvent]:
    """The suspend and/or step between reading `p` and the later reading `s` of the same boot."""
    d_mono_ns = s.monotonic_ns - p.monotonic_ns
    d_wall_ns = (s.realtime_ns - s.monotonic_ns) - (p.realtime_ns - p.monotonic_ns)
    d_sleep_ns = (s.boottime_ns - s.monotonic_ns) - (p.boottime_ns - p.monotonic_ns)
    out: list[ClockEvent] = []
    if d_sleep_ns > SUSPEND_THRESHOLD_NS:
        out.append(ClockEvent("suspend", s.realtime_ns, d_sleep_ns / NS_PER_S))
    else:
        d_sleep_ns = 0  # jitter, not sleep: leave it in the wall-clock change
    jump_ns = d_wall_ns - d_sleep_ns
    if abs(jump_ns) > STEP_THRESHOLD_NS + STEP_THRESHOLD_FRACTION * abs(d_mono_ns):
        out.append(ClockEvent("step", s.realtime_ns, jump_ns / NS_PER_S))
    return out
