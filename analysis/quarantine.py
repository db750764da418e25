"""Quarantine with hysteresis: a pure state machine over successive skew assessments.

The caller keeps the state (one NodeHealth per node, in the store) and feeds it back with each
new SkewAssessment; update_fleet returns the new state and the transitions, each carrying its
evidence. Per node and check, from the assessment's verdict:

    verdict      bad_streak   good_streak
    beyond_max   + 1          -> 0
    suspect      -> 0         -> 0          (not healthy enough to count towards leaving)
    ok           -> 0         + 1

    status ok / suspect --(bad_streak >= enter_after)--> quarantined
    status ok / suspect --(suspect or beyond_max)------> suspect      (an immediate warning)
    status suspect      --(ok)-------------------------> ok
    quarantined         --(good_streak >= leave_after)-> ok           (sticky until then)

So one bad check (FAULTS Q8, C12: a one-off spike) gives a warning and no quarantine; enter_after
consecutive beyond_max checks quarantine (Q9), and only leave_after consecutive ok checks release.

Hold. When the assessment has no quorum (no majority: a node cannot be judged, FAULTS Q4 and C6),
or the caller passes hold_reason (timekit itself was paused or stalled, so its evidence cannot be
trusted), the update is held: no counter changes, every status is carried, reason says why. A
held check neither advances nor breaks a streak. A node missing from the assessment keeps its
state; a node seen for the first time starts as 'ok' with empty streaks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from timekit.analysis.skew import (
    VERDICT_BEYOND_MAX,
    VERDICT_OK,
    VERDICT_SUSPECT,
    NodeVerdict,
    SkewAssessment,
)
from timekit.vocabulary import NodeStatus

STATUS_OK: NodeStatus = "ok"
STATUS_SUSPECT: NodeStatus = "suspect"
STATUS_QUARANTINED: NodeStatus = "quarantined"
STATUSES = (STATUS_OK, STATUS_SUSPECT, STATUS_QUARANTINED)


@dataclass(frozen=True)
class QuarantinePolicy:
    """Hysteresis: enter_after consecutive beyond_max checks quarantine, leave_after ok checks release."""

    enter_after: int = 3
    leave_after: int = 5

    def __post_init__(self) -> None:
        for name in ("enter_after", "leave_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer number of checks >= 1, got {value!r}")


@dataclass(frozen=True)
class NodeHealth:
    """Persisted per-node state: status since since_ns (instant), streaks in consecutive checks."""

    node: str
    status: NodeStatus
    bad_streak: int
    good_streak: int
    since_ns: int
    last_offset_s: float | None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status of {self.node!r} must be one of {STATUSES}, got {self.status!r}")
        if self.bad_streak < 0 or self.good_streak < 0:
            raise ValueError(
                f"streaks of {self.node!r} must be >= 0 checks, got {self.bad_streak}, {self.good_streak}"
            )


@dataclass(frozen=True)
class Transition:
    """A status change of one node at t_ns, with the evidence in reason."""

    node: str
    from_status: str
    to_status: str
    t_ns: int
    offset_s: float | None
    reason: str


@dataclass(frozen=True)
class FleetUpdate:
    """New state for every known node (sorted by name), the transitions, and whether it was held."""

    health: tuple[NodeHealth, ...]
    transitions: tuple[Transition, ...]
    held: bool
    reason: str

    def as_dict(self) -> dict[str, NodeHealth]:
        """The new state keyed by node name, ready to feed back as `previous`."""
        return {h.node: h for h in self.health}


def _step(prev: NodeHealth, v: NodeVerdict, now_ns: int, policy: QuarantinePolicy) -> tuple[NodeHealth, str]:
    """Advance one node by one judged check; returns the new state and why its status is what it is."""
    if v.verdict == VERDICT_BEYOND_MAX:
        bad, good = prev.bad_streak + 1, 0
    elif v.verdict == VERDICT_SUSPECT:
        bad, good = 0, 0
    else:
        bad, good = 0, prev.good_streak + 1

    if prev.status == STATUS_QUARANTINED:
        if good >= policy.leave_after:
            status = STATUS_OK
            why = f"released: ok for {good} consecutive checks (leave_after={policy.leave_after}); {v.reason}"
        else:
            status = STATUS_QUARANTINED
            why = f"still quarantined: {good} of {policy.leave_after} consecutive ok checks; {v.reason}"
    elif bad >= policy.enter_after:
        status = STATUS_QUARANTINED
        why = (f"quarantined: beyond max for {bad} consecutive checks (enter_after={policy.enter_after}); "
               f"{v.reason}")
    elif v.verdict in (VERDICT_SUSPECT, VERDICT_BEYOND_MAX):
        status = STATUS_SUSPECT
        why = f"suspect ({v.verdict}, {bad} of {policy.enter_after} checks towards quarantine); {v.reason}"
    else:
        status = STATUS_OK
        why = f"ok; {v.reason}"
    since_ns = now_ns if status != prev.status else prev.since_ns
    new = replace(prev, status=status, bad_streak=bad, good_streak=good, since_ns=since_ns,
                  last_offset_s=v.offset_s)
    return new, why


def update_fleet(
    previous: Mapping[str, NodeHealth],
    assessment: SkewAssessment,
    *,
    now_ns: int,
    policy: QuarantinePolicy,
    hold_reason: str | None = None,
) -> FleetUpdate:
    """Advance every node's quarantine state by one check at now_ns (instant); see the module doc."""
    for key, h in previous.items():
        if key != h.node:
            raise ValueError(f"previous state keyed {key!r} holds node {h.node!r}")
    if hold_reason is not None and not hold_reason.strip():
        raise ValueError("hold_reason must say why the check is held (got an empty string)")
    carried = tuple(previous[k] for k in sorted(previous))

    if hold_reason is not None:
        return FleetUpdate(carried, (), True, f"held: {hold_reason}; statuses carried, no counter changed")
    if not assessment.quorum:
        return FleetUpdate(carried, (), True,
                           f"held: {assessment.reason}; statuses carried, no counter changed")

    health = dict(previous)
    transitions: list[Transition] = []
    for v in assessment.nodes:
        if v.verdict not in (VERDICT_OK, VERDICT_SUSPECT, VERDICT_BEYOND_MAX):
            raise ValueError(f"verdict {v.verdict!r} of {v.node!r} cannot be judged under quorum")
        prev = health.get(v.node) or NodeHealth(v.node, STATUS_OK, 0, 0, now_ns, None)
        new, why = _step(prev, v, now_ns, policy)
        health[v.node] = new
        if new.status != prev.status:
            transitions.append(Transition(v.node, prev.status, new.status, now_ns, v.offset_s, why))

    counts = {s: sum(1 for h in health.values() if h.status == s) for s in STATUSES}
    reason = (f"updated {len(assessment.nodes)} node(s): " + ", ".join(f"{counts[s]} {s}" for s in STATUSES)
              + f"; {len(transitions)} transition(s)")
    transitions.sort(key=lambda t: t.node)
    return FleetUpdate(tuple(health[k] for k in sorted(health)), tuple(transitions), False, reason)
