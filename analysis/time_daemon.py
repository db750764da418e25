"""The host's time daemon as a suspect: its claims checked against timekit's own measurement.

A daemon (chronyd, ntpd, timesyncd) claims that true time lies within `offset ± bound` of this
clock (chrony: system time ± root delay/2 + root dispersion) and that it is synchronized. timekit
measures the same thing independently: its interval from a majority of references, at the instant
of the daemon's reading. When both were right the two would overlap; when they do not, the daemon
is wrong (the interval's containment is checked against ground truth in the lab). Pure: readings
and intervals in, a verdict out.

Findings, worst first (`status`):

- `following_falseticker`: the source the daemon follows lies outside timekit's interval by more
  than both errors: it follows a clock the majority rejects.
- `overconfident`: the daemon's claimed interval excludes timekit's: it claims a bound it does not keep.
- `false_sync_claim`: it claims synchronized but has not updated its clock for many update intervals
  (`DaemonPolicy.stale_*`); or the kernel claims synchronized while the daemon says it is not.
- `unsynchronized`: it says, honestly, that it is not synchronized.
- `holdover`: it claims synchronized while none of its sources answers (or none is selected), but
  updated recently: chronyd does this on purpose, its root dispersion growing (measured: +5.5 µs/s
  on the lab's chronyd after its only server stopped, leap status still Normal).
- `cannot_tell`: no recent reading, or no majority interval to check it against.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from timekit.daemon_samples import DaemonSample
from timekit.units import NS_PER_S

DaemonStatus = Literal["ok", "following_falseticker", "overconfident", "false_sync_claim", "unsynchronized",
                       "holdover", "cannot_tell"]
SEVERITY: dict[str, int] = {"following_falseticker": 6, "overconfident": 5, "false_sync_claim": 4,
                            "unsynchronized": 3, "holdover": 2, "cannot_tell": 1, "ok": 0}
SUSPECT_STATUSES = frozenset({"following_falseticker", "overconfident", "false_sync_claim"})
KERNEL_UNBOUNDED_S = 16.0  # adjtimex maxerror's ceiling: no daemon keeps it
MAX_SLEW_RATE = 83_333e-6  # chrony's maxslewrate default (s/s): how fast a daemon may move this clock


@dataclass(frozen=True)
class DaemonPolicy:
    """How the daemon is judged. `growth_ppm`: how fast its claimed bound grows after its reading
    (ClockBound's default maximum drift, 15 ppm); a reading older than `max_age_s` is not judged; a
    daemon that has not updated for `stale_updates` × its update interval (and `stale_min_s`) while
    claiming synchronized is not."""

    growth_ppm: float = 15.0
    max_age_s: float = 900.0
    stale_updates: float = 8.0
    stale_min_s: float = 1024.0


@dataclass(frozen=True)
class DaemonVerdict:
    """What timekit makes of the daemon's newest reading. Offsets reference − local, s."""

    daemon: str
    status: DaemonStatus
    reason: str
    problems: tuple[str, ...] = ()  # every finding's status, worst first
    age_s: float | None = None  # of the reading, at the assessment
    synchronized: bool | None = None  # what the daemon claims
    offset_s: float | None = None  # the daemon's offset estimate at its reading
    claimed_bound_s: float | None = None  # its ± around that offset
    claimed: tuple[float, float] | None = None  # [lo, hi] it claims
    measured: tuple[float, float] | None = None  # timekit's interval at the same instant
    excess_s: float | None = None  # how far the claim misses the measurement (> 0: it misses)
    selected: str | None = None  # the source it follows
    selected_offset_s: float | None = None  # that source − this clock, as the daemon measured it
    selected_excess_s: float | None = None  # how far that source lies outside the measurement
    details: tuple[str, ...] = field(default=())

    @property
    def suspect(self) -> bool:
        return self.status in SUSPECT_STATUSES

    def to_json(self) -> dict[str, Any]:
        return {"daemon": self.daemon, "status": self.status, "suspect": self.suspect, "reason": self.reason,
                "problems": list(self.problems), "age_s": self.age_s, "synchronized": self.synchronized,
                "offset_s": self.offset_s, "claimed_bound_s": self.claimed_bound_s,
                "claimed": list(self.claimed) if self.claimed else None,
                "measured": list(self.measured) if self.measured else None, "excess_s": self.excess_s,
                "selected": self.selected, "selected_offset_s": self.selected_offset_s,
                "selected_excess_s": self.selected_excess_s, "details": list(self.details)}


def gap_s(a: tuple[float, float], b: tuple[float, float]) -> float:
    """How far apart two intervals are, s: > 0 when disjoint, ≤ 0 (minus the overlap) otherwise."""
    return max(a[0] - b[1], b[0] - a[1])


def _ms(x: float) -> str:
    return f"{x * 1e3:+.3f} ms"


def _sync_claim_problems(d: DaemonSample, policy: DaemonPolicy) -> list[tuple[DaemonStatus, str]]:
    """Why the daemon's 'synchronized' (or the kernel's) is not to be believed, or is only a holdover."""
    out: list[tuple[DaemonStatus, str]] = []
    name = d.daemon
    if not d.synchronized:
        if (d.kernel_unsynchronized is False and d.kernel_maxerror_s is not None
                and d.kernel_maxerror_s < KERNEL_UNBOUNDED_S):
            out.append(("false_sync_claim", f"the kernel reports this clock synchronized (maxerror "
                        f"{d.kernel_maxerror_s * 1e3:.3f} ms) while {name} is not"))
        return out
    since_s = None if d.ref_time_ns is None else (d.t_local_ns - d.ref_time_ns) / NS_PER_S
    stale = False
    if since_s is not None and d.update_interval_s is not None:
        limit = max(policy.stale_updates * d.update_interval_s, policy.stale_min_s)
        stale = since_s > limit
    lost = None
    if d.sources and d.daemon != "timesyncd":
        if all(s.reach == 0 for s in d.sources if s.reach is not None):
            lost = f"none of its {len(d.sources)} source(s) answers"
        elif d.selected is None:
            lost = f"it follows none of its {len(d.sources)} source(s)"
    last = "" if since_s is None else f", last updated its clock {since_s:.0f} s ago"
    if stale:
        out.append(("false_sync_claim", f"{name} claims synchronized but {lost or 'has not updated'}{last} "
                    f"(its update interval is {d.update_interval_s:g} s)"))
    elif lost:
        out.append(("holdover", f"{name} is holding over: {lost}{last}; its claimed bound grows meanwhile"))
    return out


def judge_daemon(d: DaemonSample, *, now_realtime_ns: int, measured: tuple[float, float] | None,
                 no_measure_reason: str | None = None, falsetickers: Collection[str] = (),
                 policy: DaemonPolicy | None = None) -> DaemonVerdict:
    """Judge the daemon's reading `d` against `measured`, timekit's majority interval (reference − local,
    s) at the reading's own instant (None: none, `no_measure_reason` says why). `falsetickers`: the
    addresses (host part) of references timekit's majority rejected, to name the one it follows."""
    policy = policy or DaemonPolicy()
    age_s = (now_realtime_ns - d.t_local_ns) / NS_PER_S
    sel = d.selected
    base: dict[str, Any] = dict(daemon=d.daemon, age_s=age_s, synchronized=d.synchronized,
                                offset_s=d.offset_s, claimed_bound_s=d.claimed_bound_s,
                                selected=sel.address if sel else None,
                                selected_offset_s=sel.offset_s if sel else None, measured=measured)
    if age_s > policy.max_age_s:
        return DaemonVerdict(status="cannot_tell",
                             reason=f"the newest {d.daemon} reading is {age_s:.0f} s old", **base)
    found = _sync_claim_problems(d, policy)
    claimed = None
    excess = sel_excess = None
    bound = d.claimed_bound_s
    # timesyncd states no offset and its root delay/dispersion are its server's, not a bound on this
    # clock: there is no claim to check it by
    if d.synchronized and bound is not None and d.offset_s is not None:
        offset = d.offset_s
        span_s = (d.read_span_ns or 0) / NS_PER_S
        # while the daemon answered, it may have slewed its offset at up to chrony's 83 333 ppm
        grow = policy.growth_ppm * 1e-6 * span_s + min(abs(offset), MAX_SLEW_RATE * span_s)
        if d.daemon == "ntpd":
            # ntpd's offset is its last update's, which the kernel has been slewing out since (so true
            # time lies between this clock and it), and its root dispersion grows at PHI until the next
            lo_c, hi_c = min(0.0, offset), max(0.0, offset)
            if d.ref_time_ns is not None:
                grow += policy.growth_ppm * 1e-6 * max(0.0, (d.t_local_ns - d.ref_time_ns) / NS_PER_S)
        else:  # chrony's system time offset is its estimate now: what is still to be slewed out
            lo_c = hi_c = offset
        claimed = (lo_c - bound - grow, hi_c + bound + grow)
        if measured is not None:
            excess = gap_s(claimed, measured)
            if excess > 0:
                found.append(("overconfident", f"{d.daemon} claims true time within {_ms(claimed[0])} .. "
                              f"{_ms(claimed[1])} of this clock, timekit measures {_ms(measured[0])} .. "
                              f"{_ms(measured[1])}: {excess * 1e3:.3f} ms outside its bound"))
        if sel is not None and sel.offset_s is not None and measured is not None:
            err = sel.error_s or 0.0
            if d.daemon == "ntpd":  # its last sample of the source, before the kernel slewed since
                err += abs(offset)
            sel_excess = gap_s((sel.offset_s - err, sel.offset_s + err), measured)
            if sel_excess > 0:
                named = " (timekit's majority rejects it too)" if sel.address in falsetickers else ""
                found.append(("following_falseticker",
                              f"{d.daemon} follows {sel.address}, {_ms(sel.offset_s)} ± "
                              f"{err * 1e3:.3f} ms from this clock, {sel_excess * 1e3:.3f} ms outside "
                              f"timekit's majority{named}"))
    if not d.synchronized:
        found.append(("unsynchronized", f"{d.daemon} says it is not synchronized"
                      + (f" (leap status {d.leap})" if d.leap else "")))
    found.sort(key=lambda f: -SEVERITY[f[0]])
    if found:
        status = found[0][0]
        return DaemonVerdict(status=status, reason=found[0][1],
                             problems=tuple(dict.fromkeys(f[0] for f in found)), claimed=claimed,
                             excess_s=excess, selected_excess_s=sel_excess,
                             details=tuple(f[1] for f in found), **base)
    if measured is None:
        return DaemonVerdict(status="cannot_tell", claimed=claimed,
                             reason=f"{d.daemon}'s claim cannot be checked: "
                             + (no_measure_reason or "timekit has no interval at its reading"), **base)
    if claimed is None:
        return DaemonVerdict(status="cannot_tell", reason=f"{d.daemon} states no offset and no bound of its "
                             "own on this clock: its claim cannot be checked", **base)
    words = (f"{d.daemon}'s claim ({_ms(claimed[0])} .. {_ms(claimed[1])}) overlaps timekit's measurement "
             f"({_ms(measured[0])} .. {_ms(measured[1])})")
    return DaemonVerdict(status="ok", claimed=claimed, excess_s=excess, selected_excess_s=sel_excess,
                         reason=words, **base)


def claim_now(d: DaemonSample, *, now_realtime_ns: int, now_boottime_ns: int,
              growth_ppm: float) -> tuple[float, float] | None:
    """Where the daemon's reading `d` puts true time now (reference − local, s), ClockBound's way:
    between this clock as it was and as it will be once the daemon has slewed its offset out
    (`[min(0, offset), max(0, offset)]`, so any slew progress since is covered), widened by its
    claimed bound and `growth_ppm` × the age of the reading (boottime), and moved by any wall-clock
    step since. None: no claim (unsynchronized, no bound, no offset: timesyncd), or a reading from the
    future."""
    bound = d.claimed_bound_s
    if not d.synchronized or bound is None or d.boottime_ns is None or d.offset_s is None:
        return None
    age_ns = now_boottime_ns - d.boottime_ns
    if age_ns < 0:
        return None
    step_s = ((now_realtime_ns - now_boottime_ns) - (d.t_local_ns - d.boottime_ns)) / NS_PER_S
    offset = d.offset_s
    grow = bound + growth_ppm * 1e-6 * age_ns / NS_PER_S
    return min(0.0, offset) - step_s - grow, max(0.0, offset) - step_s + grow
