"""`timekit analyze skew`: each node against the majority, with sticky quarantine kept in the store.

One check = the skew verdicts of the one assessment (pure, `analysis.assessment`: each reference's
bound against the majority, and the pause guard) folded into the stored node health (pure,
`analysis.quarantine`), then persisted with its transitions in one transaction, and each
transition handed to the user's hook command. Nodes are the references and `self`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from timekit.analysis.assessment import Policy, stale_references
from timekit.analysis.quarantine import FleetUpdate, QuarantinePolicy, update_fleet
from timekit.analysis.skew import SkewAssessment
from timekit.config import check_hook
from timekit.pipeline.assess import assess_store

if TYPE_CHECKING:
    from timekit.store.database import Store

HOOK_TIMEOUT_S = 30.0


@dataclass
class SkewReport:
    """What one check decided, plus the hook results."""

    assessment: SkewAssessment
    update: FleetUpdate
    stale: list[str] = field(default_factory=list)
    hook_failures: list[str] = field(default_factory=list)
    committed: bool = True  # False: a look (`analyze skew` without --commit), nothing was saved

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
                                for t in self.update.transitions]}


def run_skew_check(store: Store, policy: Policy | None = None, *, hook: str | None = None,
                   now: tuple[int, int] | None = None, commit: bool = True) -> SkewReport:
    """Assess every reference with fresh evidence and `self`, and the quarantine state that follows.

    `commit`: persist that state and its transitions and run `hook` per transition (the scheduled
    job: collect, or `analyze skew --commit`); False only reports what a commit would do.
    """
    policy = policy or Policy()
    check_hook(hook)
    found = assess_store(store, policy, now=now)
    assert found.skew is not None
    skew = policy.skew
    update = update_fleet(dict(found.node_health), found.skew, now_ns=found.as_of_ns,
                          policy=QuarantinePolicy(enter_after=skew.enter_after, leave_after=skew.leave_after),
                          hold_reason=found.skew_hold)
    rows = [(h.node, h.status, h.bad_streak, h.good_streak, h.since_ns, h.last_offset_s, found.as_of_ns)
            for h in update.health]
    events = [(t.t_ns, t.node, t.from_status, t.to_status, t.offset_s, t.reason) for t in update.transitions]
    report = SkewReport(found.skew, update, stale=stale_references(found, skew), committed=commit)
    if not commit:
        return report
    store.save_node_health(rows, events)
    if hook:
        for t in update.transitions:
            failure = _run_hook(hook, t.node, t.from_status, t.to_status, t.offset_s, t.reason)
            if failure:
                report.hook_failures.append(failure)
    return report


def _run_hook(hook: str, node: str, from_status: str, to_status: str, offset_s: float | None,
              reason: str) -> str | None:
    """Run the user's hook for one transition; None when it exited 0, else why it failed.

    The hook runs in a session of its own with stdin and stdout closed and stderr to a temp file:
    the check waits for the hook process itself, at most HOOK_TIMEOUT_S (then its whole process
    group is killed), never for a background process it started (which once held the check 25 s).
    """
    env = {**os.environ, "TIMEKIT_NODE": node, "TIMEKIT_FROM_STATUS": from_status,
           "TIMEKIT_TO_STATUS": to_status, "TIMEKIT_REASON": reason,
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
