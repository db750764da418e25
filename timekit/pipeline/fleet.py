"""`timekit fleet sweep`: every node of a fleet sampled at once, judged against the fleet's majority.

One sweep = one concurrent NTP exchange (a burst of `burst`, the lowest-delay reply kept) with every
node's endpoint (in real clusters each node's chronyd serves its peers), each answering node's
offset from this sweeper taken with its NTP bound (delay/2), the fleet's consensus (the median) and
each node against it (pure: `analysis.skew.assess_skew`, the rules `analyze skew` uses), folded into
the sweeper's stored node health with the same hysteresis (`analysis.quarantine.update_fleet`: enter
after N sweeps beyond max, leave after M healthy ones), persisted with its transitions and a summary
row in one transaction, and the hook run per transition with the node's name.

The sweeper's own clock cancels out: every node is measured against it, and judged against the
median of all of them. A node that does not answer is not judged this sweep (its state is carried);
a fleet without a majority holds every state. Nodes live in their own tables (`fleet_health`,
`fleet_events`, `fleet_sweeps`), apart from the skew check's references and `self`, and their
samples are not stored as references: a fleet of thousands is not this host's evidence of UTC.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from timekit.address import NamedServer, parse_named_server
from timekit.analysis.quarantine import (
    STATUS_QUARANTINED,
    FleetUpdate,
    NodeHealth,
    QuarantinePolicy,
    update_fleet,
)
from timekit.analysis.skew import NodeObservation, SkewAssessment, assess_skew
from timekit.collectors.clocks import realtime_ns
from timekit.collectors.ntp_client import QueryPlan, sample_servers
from timekit.collectors.server_policy import ServerState
from timekit.config import check_hook
from timekit.errors import UsageError
from timekit.pipeline.sampling import BestReplies
from timekit.pipeline.skewcheck import SCOPE_FLEET, _run_hook
from timekit.samples import NtpSample

if TYPE_CHECKING:
    from timekit.store.database import Store

MAX_NODES = 100_000


FleetNode = NamedServer  # a node: its name and NTP endpoint


@dataclass(frozen=True)
class FleetPolicy:
    """Thresholds (s, from the fleet's median) and hysteresis (sweeps); the defaults are `analyze skew`'s."""

    warn_offset_s: float = 0.1
    max_offset_s: float = 0.5
    enter_after: int = 3
    leave_after: int = 5

    def __post_init__(self) -> None:
        if not (0 < self.warn_offset_s <= self.max_offset_s and math.isfinite(self.max_offset_s)):
            raise UsageError(f"need 0 < warn offset ({self.warn_offset_s} s) <= max offset "
                             f"({self.max_offset_s} s)")
        QuarantinePolicy(self.enter_after, self.leave_after)  # validates


def read_nodes(path: Path) -> list[FleetNode]:
    """The nodes of a nodes file: one a line, `HOST[:PORT]` or `NAME HOST[:PORT]`; `#` starts a
    comment, blank lines are skipped. Raises UsageError naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read nodes file {path}: {e}") from e
    nodes: list[FleetNode] = []
    seen: dict[str, int] = {}
    where: dict[str, tuple[str, int]] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        if not line.strip():
            continue
        try:
            node = parse_named_server(line)
        except UsageError as e:
            raise UsageError(f"nodes file {path} line {lineno}: {e}") from None
        name, address = node.name, node.address
        if name in seen:
            raise UsageError(f"nodes file {path} line {lineno}: node {name!r} already named on line "
                             f"{seen[name]}")
        if address.name in where:  # one endpoint is one node: two names would split its verdicts
            raise UsageError(f"nodes file {path} line {lineno}: {address.name} is already node "
                             f"{where[address.name][0]!r} (line {where[address.name][1]})")
        seen[name] = lineno
        where[address.name] = (name, lineno)
        nodes.append(node)
    if not nodes:
        raise UsageError(f"nodes file {path} names no node")
    if len(nodes) > MAX_NODES:
        raise UsageError(f"nodes file {path} names {len(nodes)} nodes; at most {MAX_NODES} per sweeper "
                         "(shard the list across sweepers)")
    return nodes


@dataclass
class Sweep:
    """What one sweep measured and decided (offsets s: node − sweeper; from_consensus: consensus − node)."""

    t_ns: int
    wall_s: float
    nodes: list[FleetNode]
    best: dict[str, NtpSample]  # node name -> its lowest-delay good reply
    failed: dict[str, str]  # node name -> the error of its last attempt
    assessment: SkewAssessment
    update: FleetUpdate
    hook_failures: list[str] = field(default_factory=list)

    @property
    def quarantined(self) -> list[str]:
        return sorted(h.node for h in self.update.health if h.status == STATUS_QUARANTINED)

    def to_json(self) -> dict[str, Any]:
        """The sweep's JSON: summary, nodes (outliers first) and transitions."""
        health = self.update.as_dict()
        verdicts = {v.node: v for v in self.assessment.nodes}
        rows: list[dict[str, Any]] = []
        for n in self.nodes:
            h, v, s = health.get(n.name), verdicts.get(n.name), self.best.get(n.name)
            rows.append({"node": n.name, "address": n.address.name, "status": h.status if h else "ok",
                         "verdict": v.verdict if v else "no_reply",
                         "offset_s": s.offset_s if s else None,  # node − sweeper
                         "from_consensus_s": v.offset_s if v else None,  # consensus − node
                         "uncertainty_s": v.uncertainty_s if v else None,
                         "bad_streak": h.bad_streak if h else 0, "good_streak": h.good_streak if h else 0,
                         "error": self.failed.get(n.name), "reason": v.reason if v else None})
        order = {"quarantined": 0, "suspect": 1, "ok": 2}
        rows.sort(key=lambda r: (order.get(r["status"], 3), r["verdict"] == "ok",
                                 -abs(r["from_consensus_s"] or 0.0), r["node"]))
        return {"t_ns": self.t_ns, "wall_s": self.wall_s, "nodes": len(self.nodes),
                "answered": len(self.best),
                "quorum": self.assessment.quorum, "held": self.update.held,
                "median_offset_s": self.assessment.consensus_s, "spread_s": self.assessment.spread_s,
                "quarantined": self.quarantined, "reason": self.update.reason or self.assessment.reason,
                "transitions": [{"node": t.node, "from": t.from_status, "to": t.to_status,
                                 "offset_s": t.offset_s, "reason": t.reason}
                                for t in self.update.transitions],
                "node_results": rows, "hook_failures": self.hook_failures}


def _measure(nodes: Sequence[FleetNode], plan: QueryPlan,
             states: dict[str, ServerState]) -> tuple[dict[str, NtpSample], dict[str, str]]:
    """Every node's endpoint once (a burst of plan.count), concurrently: the lowest-delay good reply
    per node, and the last error of the nodes with none."""
    replies = BestReplies(nodes)
    unique = list({n.address.name: n.address for n in nodes}.values())
    asyncio.run(sample_servers(unique, plan, states, lambda s, _st: replies.add(s),
                               max_in_flight=max(256, min(len(unique), 4096))))
    return replies.best, replies.failures()


def sweep(store: Store, nodes: Sequence[FleetNode], policy: FleetPolicy, *, plan: QueryPlan,
          states: dict[str, ServerState] | None = None, hook: str | None = None,
          on_transition: Callable[[str], None] | None = None) -> Sweep:
    """One sweep: measure every node, judge it against the fleet's majority, advance and persist the
    quarantine state, run `hook` per transition."""
    check_hook(hook)
    nodes = list(nodes)
    mono0 = time.monotonic_ns()
    best, failed = _measure(nodes, plan, {} if states is None else states)
    t_ns = realtime_ns()
    wall_s = (time.monotonic_ns() - mono0) / 1e9
    obs = [NodeObservation(n.name, best[n.name].offset_s or 0.0, (best[n.name].delay_s or 0.0) / 2)
           for n in nodes if n.name in best]
    assessment = assess_skew(obs, warn_offset_s=policy.warn_offset_s, max_offset_s=policy.max_offset_s)
    previous = {r.node: NodeHealth(r.node, r.status, r.bad_streak, r.good_streak, r.since_ns,
                                   r.last_offset_s) for r in store.fleet_health_rows()}
    update = update_fleet(previous, assessment, now_ns=t_ns,
                          policy=QuarantinePolicy(policy.enter_after, policy.leave_after))
    result = Sweep(t_ns, wall_s, nodes, best, failed, assessment, update)
    rows = [(h.node, h.status, h.bad_streak, h.good_streak, h.since_ns, h.last_offset_s, t_ns)
            for h in update.health]
    events = [(t.t_ns, t.node, t.from_status, t.to_status, t.offset_s, t.reason) for t in update.transitions]
    summary = (t_ns, len(nodes), len(best), int(assessment.quorum), len(result.quarantined),
               assessment.consensus_s, assessment.spread_s, wall_s, update.reason or assessment.reason)
    store.save_fleet_sweep(rows, events, summary)
    for t in update.transitions:
        if on_transition is not None:
            on_transition(t.node)
        if hook:
            failure = _run_hook(hook, t.node, t.from_status, t.to_status, t.offset_s, t.reason, SCOPE_FLEET)
            if failure:
                result.hook_failures.append(failure)
    return result
