"""`timekit analyze skew`: each node against the majority, with sticky quarantine kept in the store.

One check = one assessment (pure, `analysis.skew`) folded into the stored node health
(pure, `analysis.quarantine`), then persisted with its transitions in one transaction, and
each transition handed to the user's hook command. Nodes are the references and `self`.

The pause guard: when timekit itself was stalled (the newest replies of most references took
longer than `pause_guard_s`, the pause meter saw a stall longer than that, or the clock
collector recorded a suspend since the previous check) the evidence is not trusted to move
anyone in or out of quarantine.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from timekit.analysis.interval import IntervalPolicy, server_bound
from timekit.analysis.quarantine import FleetUpdate, NodeHealth, QuarantinePolicy, update_fleet
from timekit.analysis.skew import NodeObservation, SkewAssessment, assess_skew
from timekit.collectors.clocks import boot_id
from timekit.errors import UsageError
from timekit.evidence import load_series
from timekit.truetime import DRIFT_WINDOW, LOOKBACK_MARGIN_S, read_now, server_evidence
from timekit.units import NS_PER_S

if TYPE_CHECKING:
    from timekit.store import Store

SELF = "self"
HOOK_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SkewConfig:
    """Thresholds (s), hysteresis (checks) and the hook. Defaults follow CockroachDB's 500 ms."""

    warn_offset_s: float = 0.1
    max_offset_s: float = 0.5
    enter_after: int = 3
    leave_after: int = 5
    max_age_s: float = 900.0  # a reference's newest sample older than this is not assessed
    pause_guard_s: float = 0.5  # newest replies slower than this on most references: we stalled
    hook: str | None = None  # command run per transition (env TIMEKIT_NODE, TIMEKIT_TO_STATUS, ...)

    def __post_init__(self) -> None:
        if not (0 < self.warn_offset_s <= self.max_offset_s and math.isfinite(self.max_offset_s)):
            raise UsageError(f"need 0 < warn offset ({self.warn_offset_s} s) <= max offset "
                             f"({self.max_offset_s} s)")
        if not (0 < self.max_age_s < math.inf and 0 < self.pause_guard_s < math.inf):
            raise UsageError("max_age_s and pause_guard_s must be positive seconds")
        if not (1 <= self.enter_after <= 10_000 and 1 <= self.leave_after <= 10_000):
            raise UsageError(f"enter_after ({self.enter_after}) and leave_after ({self.leave_after}) "
                             "must be 1..10000 checks")
        if self.hook is not None and not shlex.split(self.hook):
            raise UsageError("the hook command is empty")


@dataclass
class SkewReport:
    """What one check decided, plus the hook results."""

    assessment: SkewAssessment
    update: FleetUpdate
    stale: list[str] = field(default_factory=list)
    hook_failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        health = self.update.as_dict()
        nodes = []
        for v in self.assessment.nodes:
            h = health.get(v.node)
            nodes.append({"node": v.node, "offset_s": v.offset_s,
                          "status": h.status if h else "ok", "verdict": v.verdict,
                          "uncertainty_s": v.uncertainty_s,
                          "bad_streak": h.bad_streak if h else 0, "good_streak": h.good_streak if h else 0,
                          "reason": v.reason})
        return {"quorum": self.assessment.quorum, "consensus_s": self.assessment.consensus_s,
                "held": self.update.held, "reason": self.update.reason or self.assessment.reason,
                "nodes": nodes, "stale": self.stale,
                "quarantined": sorted(n for n, h in health.items() if h.status == "quarantined"),
                "transitions": [{"node": t.node, "from": t.from_status, "to": t.to_status,
                                 "offset_s": t.offset_s, "reason": t.reason}
                                for t in self.update.transitions]}


def load_health(store: Store, rows: list[tuple] | None = None) -> dict[str, NodeHealth]:
    """The stored node health (from `rows` of `store.node_health_rows()` if already read)."""
    rows = store.node_health_rows() if rows is None else rows
    return {r[0]: NodeHealth(node=r[0], status=r[1], bad_streak=r[2], good_streak=r[3], since_ns=r[4],
                             last_offset_s=r[5]) for r in rows}


def run_skew_check(store: Store, cfg: SkewConfig | None = None, *, now: tuple[int, int] | None = None,
                   interval_policy: IntervalPolicy | None = None) -> SkewReport:
    """Assess every reference with fresh evidence and `self`, update and persist quarantine state."""
    cfg = cfg or SkewConfig()
    policy = interval_policy or IntervalPolicy()
    rt_ns, boot_ns = now if now is not None else read_now()
    since = rt_ns - int((cfg.max_age_s + LOOKBACK_MARGIN_S) * NS_PER_S)
    series = load_series(store, since_ns=since, last_per_server=DRIFT_WINDOW)
    current_boot = boot_id()
    observations = [NodeObservation(SELF, 0.0, 0.0)]
    stale: list[str] = []
    slow = 0
    for name, s in series.items():
        b = server_bound(server_evidence(s, policy, current_boot), now_realtime_ns=rt_ns,
                         now_boottime_ns=boot_ns, policy=policy)
        if b.status != "ok" or b.lo_s is None or b.hi_s is None or (b.age_s or 0) > cfg.max_age_s:
            stale.append(name)
            continue
        observations.append(NodeObservation(name, (b.lo_s + b.hi_s) / 2, (b.hi_s - b.lo_s) / 2))
        if len(s) and float(s.delay_s[-1]) > cfg.pause_guard_s:
            slow += 1
    assessment = assess_skew(observations, warn_offset_s=cfg.warn_offset_s, max_offset_s=cfg.max_offset_s)
    health_rows = store.node_health_rows()
    previous = load_health(store, health_rows)
    hold = None
    n_refs = len(observations) - 1
    if n_refs and slow * 2 > n_refs:
        hold = (f"pause guard: {slow} of {n_refs} references' newest replies took over "
                f"{cfg.pause_guard_s:g} s (timekit or this host stalled)")
    else:
        last_check = max((r[6] for r in health_rows), default=rt_ns)  # updated_ns of the last check
        suspends = [e for e in store.clock_events(since_ns=last_check) if e[0] == "suspend"]
        worst = max((p["max_s"] for p in store.pause_rows(since_ns=last_check)), default=0.0)
        if previous and suspends:
            hold = f"pause guard: this host was suspended {suspends[-1][2]:.3f} s since the previous check"
        elif previous and worst > cfg.pause_guard_s:
            hold = (f"pause guard: the pause meter saw this host stall {worst:.3f} s since the previous "
                    f"check (over {cfg.pause_guard_s:g} s)")
    update = update_fleet(previous, assessment, now_ns=rt_ns,
                          policy=QuarantinePolicy(enter_after=cfg.enter_after, leave_after=cfg.leave_after),
                          hold_reason=hold)
    rows = [(h.node, h.status, h.bad_streak, h.good_streak, h.since_ns, h.last_offset_s, rt_ns)
            for h in update.health]
    events = [(t.t_ns, t.node, t.from_status, t.to_status, t.offset_s, t.reason) for t in update.transitions]
    store.save_node_health(rows, events)
    report = SkewReport(assessment, update, stale=stale)
    if cfg.hook:
        for t in update.transitions:
            failure = _run_hook(cfg.hook, t.node, t.from_status, t.to_status, t.offset_s, t.reason)
            if failure:
                report.hook_failures.append(failure)
    return report


def _run_hook(hook: str, node: str, from_status: str, to_status: str, offset_s: float | None,
              reason: str) -> str | None:
    """Run the user's hook for one transition; None when it exited 0, else why it failed."""
    env = {**os.environ, "TIMEKIT_NODE": node, "TIMEKIT_FROM_STATUS": from_status,
           "TIMEKIT_TO_STATUS": to_status, "TIMEKIT_REASON": reason,
           "TIMEKIT_OFFSET_S": "" if offset_s is None else repr(offset_s)}
    try:
        done = subprocess.run(shlex.split(hook), env=env, timeout=HOOK_TIMEOUT_S, capture_output=True,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"hook for {node} failed: {exc}"
    if done.returncode != 0:
        return f"hook for {node} exited {done.returncode}"
    return None
