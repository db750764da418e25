"""`timekit analyze skew`: each node against the majority, with sticky quarantine kept in the store.

One check = the skew verdicts of the one assessment (pure, `analysis.assessment`: each reference's
bound against the majority, and the pause guard) folded into the stored node health (pure,
`analysis.quarantine`), then persisted with its transitions in one transaction, and each
transition handed to the user's hook command. Nodes are the references and `self`.

With cluster peers (`[cluster] peers`, sampled by `collect`), the same check judges `self` and each
peer against the peers' majority too (pure, `analysis.cluster`), with its own stored state (off from
the cluster is not off from UTC), the same thresholds, hysteresis and pause guard, in the same
transaction; its transitions reach the hook with TIMEKIT_SCOPE=cluster.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from timekit.analysis.assessment import Assessment, Policy, skew_hold_reason, stale_references
from timekit.analysis.cluster import ClusterAssessment, PeerReading, assess_cluster, diagnose
from timekit.analysis.quarantine import FleetUpdate, QuarantinePolicy, update_fleet
from timekit.analysis.skew import SELF_NODE, SkewAssessment
from timekit.config import check_hook
from timekit.pipeline.assess import assess_store

if TYPE_CHECKING:
    from timekit.store.database import Store

HOOK_TIMEOUT_S = 30.0
SCOPE_REFERENCES, SCOPE_CLUSTER, SCOPE_FLEET = "references", "cluster", "fleet"  # the hook's TIMEKIT_SCOPE


@dataclass
class ClusterReport:
    """`self` and each peer against the peers' majority: what this check decided."""

    assessment: ClusterAssessment
    update: FleetUpdate
    readings: list[PeerReading]
    diagnosis: str  # which fault self has: off from the cluster, from UTC, both, neither

    def to_json(self) -> dict[str, Any]:
        health = self.update.as_dict()
        verdicts = {v.node: v for v in self.assessment.skew.nodes}
        me, my = verdicts.get(SELF_NODE), health.get(SELF_NODE)
        peers = []
        for r in sorted(self.readings, key=lambda r: r.peer):
            v, h = verdicts.get(r.peer), health.get(r.peer)
            peers.append({"peer": r.peer, "address": r.address, "reading_offset_s": r.offset_s,
                          "delay_s": r.delay_s, "error": r.error,
                          "judged": r.peer in self.assessment.judged,
                          "stale": r.peer in self.assessment.stale,
                          "offset_s": v.offset_s if v else None,
                          "uncertainty_s": v.uncertainty_s if v else None,
                          "verdict": v.verdict if v else None, "status": h.status if h else "ok",
                          "bad_streak": h.bad_streak if h else 0, "good_streak": h.good_streak if h else 0,
                          "reason": v.reason if v else None})
        sk = self.assessment.skew
        return {"quorum": sk.quorum, "consensus_s": sk.consensus_s, "spread_s": sk.spread_s,
                "held": self.update.held, "reason": self.update.reason or sk.reason,
                "diagnosis": self.diagnosis,
                "self": {"offset_s": me.offset_s if me else None, "verdict": me.verdict if me else None,
                         "status": my.status if my else "ok", "bad_streak": my.bad_streak if my else 0,
                         "good_streak": my.good_streak if my else 0, "reason": me.reason if me else None},
                "peers": peers,
                "quarantined": sorted(n for n, h in health.items() if h.status == "quarantined"),
                "transitions": [{"node": t.node, "from": t.from_status, "to": t.to_status,
                                 "offset_s": t.offset_s, "reason": t.reason}
                                for t in self.update.transitions]}


@dataclass
class SkewReport:
    """What one check decided, plus the hook results."""

    assessment: SkewAssessment
    update: FleetUpdate
    stale: list[str] = field(default_factory=list)
    hook_failures: list[str] = field(default_factory=list)
    committed: bool = True  # False: a look (`analyze skew` without --commit), nothing was saved
    cluster: ClusterReport | None = None  # against the cluster's peers (None: no peer reading stored)

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
        return {"committed": self.committed, "quorum": self.assessment.quorum,
                "consensus_s": self.assessment.consensus_s,
                "held": self.update.held, "reason": self.update.reason or self.assessment.reason,
                "nodes": nodes, "stale": self.stale,
                "quarantined": sorted(n for n, h in health.items() if h.status == "quarantined"),
                "transitions": [{"node": t.node, "from": t.from_status, "to": t.to_status,
                                 "offset_s": t.offset_s, "reason": t.reason}
                                for t in self.update.transitions],
                "cluster": self.cluster.to_json() if self.cluster is not None else None}


def _self_verdict(skew: SkewAssessment) -> str | None:
    """`self`'s verdict when there is a majority to judge it against, else None."""
    return next((v.verdict for v in skew.nodes if v.node == SELF_NODE), None) if skew.quorum else None


def _cluster_check(policy: Policy, a: Assessment, self_from_refs: str | None,
                   peers: Sequence[str] | None, peers_sampled: bool) -> ClusterReport | None:
    """`self` and each peer against the peers' majority, from each peer's newest stored reading (read
    with the assessment's evidence; of the configured `peers` only, when they are known)."""
    from timekit.collectors.clocks import boot_id

    readings = [r for r in a.peers if peers is None or r.peer in peers]
    if not readings:
        return None
    skew = policy.skew
    found = assess_cluster(readings, now_realtime_ns=a.as_of_ns, now_boottime_ns=a.boottime_ns,
                           boot_id=boot_id(), warn_offset_s=skew.warn_offset_s,
                           max_offset_s=skew.max_offset_s, max_age_s=skew.max_age_s)
    previous = {n: h for n, h in a.cluster_health.items() if peers is None or n in (*peers, SELF_NODE)}
    # the pause guard, the cluster's own: this host suspended or stalled since the previous check, or
    # most peers' replies too slow to be trusted; and a leap second splitting timescales (for peers too).
    # The references' slow replies are theirs: they do not hold the cluster.
    hold = (f"leap guard: {a.leap.words}" if a.leap is not None and a.leap.split else
            None if peers_sampled else "no peer reading this run: nothing new to judge")
    hold = hold or skew_hold_reason(found.delays_s, skew, judged_before=bool(previous),
                                    suspend_s=a.suspend_since_check_s, pause_max_s=a.pause_max_since_check_s)
    update = update_fleet(previous, found.skew, now_ns=a.as_of_ns,
                          policy=QuarantinePolicy(enter_after=skew.enter_after, leave_after=skew.leave_after),
                          hold_reason=hold)
    return ClusterReport(found, update, readings, diagnose(self_from_refs, _self_verdict(found.skew)))


NO_NEW_REFERENCE_SAMPLE = ("no new reference sample this run (every reference was queried less than "
                           "min_poll_s ago): the same evidence is not counted twice")


def run_skew_check(store: Store, policy: Policy | None = None, *, hook: str | None = None,
                   now: tuple[int, int] | None = None, commit: bool = True, references_sampled: bool = True,
                   peers: Sequence[str] | None = None, peers_sampled: bool = True) -> SkewReport:
    """Assess every reference with fresh evidence and `self`, and the quarantine state that follows.

    `commit`: persist that state and its transitions and run `hook` per transition (the scheduled
    job: collect, or `analyze skew --commit`); False only reports what a commit would do.
    `references_sampled` / `peers_sampled` False (a collect run that took no new sample of them): their
    check is held, so one sample is never counted in two checks' streaks. `peers`: the configured
    cluster peers (None: not known, every stored peer's newest reading); the stored state of a node no
    longer configured is deleted on commit.
    """
    policy = policy or Policy()
    check_hook(hook)
    found = assess_store(store, policy, now=now)
    assert found.skew is not None
    skew = policy.skew
    update = update_fleet(dict(found.node_health), found.skew, now_ns=found.as_of_ns,
                          policy=QuarantinePolicy(enter_after=skew.enter_after, leave_after=skew.leave_after),
                          hold_reason=found.skew_hold or (None if references_sampled
                                                          else NO_NEW_REFERENCE_SAMPLE))
    rows = [(h.node, h.status, h.bad_streak, h.good_streak, h.since_ns, h.last_offset_s, found.as_of_ns)
            for h in update.health]
    events = [(t.t_ns, t.node, t.from_status, t.to_status, t.offset_s, t.reason) for t in update.transitions]
    cluster = _cluster_check(policy, found, _self_verdict(found.skew), peers, peers_sampled)
    report = SkewReport(found.skew, update, stale=stale_references(found, skew), committed=commit,
                        cluster=cluster)
    if not commit:
        return report
    c_rows = [] if cluster is None else [
        (h.node, h.status, h.bad_streak, h.good_streak, h.since_ns, h.last_offset_s, found.as_of_ns)
        for h in cluster.update.health]
    c_events = [] if cluster is None else [(t.t_ns, t.node, t.from_status, t.to_status, t.offset_s, t.reason)
                                           for t in cluster.update.transitions]
    keep = None if peers is None else {*peers, SELF_NODE} if peers else set()
    retired = [n for n in found.cluster_health if keep is not None and n not in keep]
    store.save_node_health(rows, events, c_rows, c_events, cluster_retired=retired)
    if hook:
        moves = [(SCOPE_REFERENCES, t) for t in update.transitions]
        moves += [(SCOPE_CLUSTER, t) for t in (cluster.update.transitions if cluster is not None else ())]
        for scope, t in moves:
            failure = _run_hook(hook, t.node, t.from_status, t.to_status, t.offset_s, t.reason, scope)
            if failure:
                report.hook_failures.append(failure)
    return report


def _run_hook(hook: str, node: str, from_status: str, to_status: str, offset_s: float | None,
              reason: str, scope: str = SCOPE_REFERENCES) -> str | None:
    """Run the user's hook for one transition; None when it exited 0, else why it failed.

    The hook runs in a session of its own with stdin and stdout closed and stderr to a temp file:
    the check waits for the hook process itself, at most HOOK_TIMEOUT_S (then its whole process
    group is killed), never for a background process it started (which once held the check 25 s).
    """
    env = {**os.environ, "TIMEKIT_NODE": node, "TIMEKIT_FROM_STATUS": from_status,
           "TIMEKIT_TO_STATUS": to_status, "TIMEKIT_REASON": reason, "TIMEKIT_SCOPE": scope,
           "TIMEKIT_OFFSET_S": "" if offset_s is None else repr(offset_s)}
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(shlex.split(hook), env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        except (OSError, ValueError) as exc:
            return f"hook for {node} failed: {exc}"
        try:
            code = proc.wait(timeout=HOOK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"hook for {node} killed after {HOOK_TIMEOUT_S:g} s"
        if code == 0:
            return None
        err.seek(0)
        first = err.read(2000).decode("utf-8", "replace").strip().splitlines()
        return f"hook for {node} exited {code}" + (f": {first[0][:200]}" if first else "")
