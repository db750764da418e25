"""Skew verdict: each node against the majority consensus (CockroachDB-like).

Nodes are the references plus the local host, named "self". Each node brings one value::

    value_s = node clock - local clock      (a reference's NTP offset; 0.0 for self)
    uncertainty_s                           (root distance; 0.0 for self)

consensus_s = median(value_s) and spread_s = MAD = median(|value_s - consensus_s|) (unscaled). A
node's offset against the consensus keeps NTP's sign, reference minus the node::

    offset_s = consensus_s - value_s        (self: consensus_s; positive = the node is behind)

so a reference 2.5 s ahead of everyone gets offset_s ~ -2.5, and a local clock 0.3 s behind the
fleet gets offset_s ~ +0.3 for self.

Verdicts. Ambiguous cases count as healthy (as CockroachDB does): a node is only beyond a
threshold when excess_s = |offset_s| - uncertainty_s > threshold, i.e. even the most favourable
reading of its uncertainty cannot bring it within. excess_s > max_offset_s -> 'beyond_max';
excess_s > warn_offset_s -> 'suspect'; else 'ok'.

Quorum. A strict majority of the nodes must be within max_offset_s of the consensus (not
'beyond_max'), AND a strict majority of the references (nodes other than self) must be. The
second rule keeps self from casting the deciding vote: self is disciplined by these very
references and its value 0.0 is not a measurement, so with half the servers smeared over a leap
second and half stepped (FAULTS C6) the fleet is split, whichever camp self follows. At least
MIN_NODES_FOR_QUORUM nodes are needed. Without quorum the consensus is not settled: every node
gets the verdict 'undecided' (never everyone 'beyond_max') and the reason names the clusters.

Clusters: nodes sorted by value_s, split where neighbours are further apart than max_offset_s
even after allowing for both uncertainties (single linkage). Reported always; they explain a
missing quorum ("2 clusters: {a, b, self} at +0.000000 s; {c, d} at -0.500000 s").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

SELF_NODE = "self"
MIN_NODES_FOR_QUORUM = 2  # one node has nothing to be compared with

VERDICT_OK = "ok"
VERDICT_SUSPECT = "suspect"
VERDICT_BEYOND_MAX = "beyond_max"
VERDICT_UNDECIDED = "undecided"  # no quorum: the consensus itself is in doubt


@dataclass(frozen=True)
class NodeObservation:
    """One node: value_s = node clock - local clock (s), uncertainty_s = its root distance (s)."""

    node: str
    value_s: float
    uncertainty_s: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.value_s):
            raise ValueError(f"value_s of {self.node!r} must be finite seconds, got {self.value_s!r}")
        if not (math.isfinite(self.uncertainty_s) and self.uncertainty_s >= 0.0):
            raise ValueError(
                f"uncertainty_s of {self.node!r} must be finite seconds >= 0, got {self.uncertainty_s!r}"
            )


@dataclass(frozen=True)
class NodeVerdict:
    """A node judged against the consensus: offset_s = consensus - node value (s)."""

    node: str
    offset_s: float
    uncertainty_s: float
    verdict: str  # 'ok' | 'suspect' | 'beyond_max' | 'undecided' (no quorum)
    reason: str


@dataclass(frozen=True)
class SkewAssessment:
    """Fleet verdict: consensus_s and spread_s (MAD) in seconds, nodes in input order."""

    quorum: bool
    consensus_s: float | None
    spread_s: float | None
    nodes: tuple[NodeVerdict, ...]
    reason: str
    clusters: tuple[tuple[str, ...], ...] = ()  # node names grouped by agreement, ascending value_s


def _fmt_s(x: float) -> str:
    """Seconds with sign at microsecond resolution, for reasons."""
    return f"{x:+.6f} s"


def _validate_thresholds(warn_offset_s: float, max_offset_s: float) -> None:
    """Require finite 0 < warn_offset_s <= max_offset_s (seconds)."""
    if not (math.isfinite(warn_offset_s) and warn_offset_s > 0.0):
        raise ValueError(f"warn_offset_s must be finite seconds > 0, got {warn_offset_s!r}")
    if not (math.isfinite(max_offset_s) and max_offset_s > 0.0):
        raise ValueError(f"max_offset_s must be finite seconds > 0, got {max_offset_s!r}")
    if warn_offset_s > max_offset_s:
        raise ValueError(f"warn_offset_s ({warn_offset_s} s) must not exceed max_offset_s ({max_offset_s} s)")


@dataclass(frozen=True)
class SkewPolicy:
    """Thresholds (s) and hysteresis (checks) of the skew checks. Defaults follow CockroachDB's 500 ms."""

    warn_offset_s: float = 0.1
    max_offset_s: float = 0.5
    enter_after: int = 3  # consecutive checks beyond max offset to enter quarantine
    leave_after: int = 5  # consecutive healthy checks to leave it
    max_age_s: float = 900.0  # a reference's newest sample older than this is not assessed
    pause_guard_s: float = 0.5  # newest replies slower than this on most references: we stalled

    def __post_init__(self) -> None:
        if not (0 < self.warn_offset_s <= self.max_offset_s and math.isfinite(self.max_offset_s)):
            raise ValueError(f"need 0 < warn offset ({self.warn_offset_s} s) <= max offset "
                             f"({self.max_offset_s} s)")
        if not (0 < self.max_age_s < math.inf and 0 < self.pause_guard_s < math.inf):
            raise ValueError("max_age_s and pause_guard_s must be positive seconds")
        if not (1 <= self.enter_after <= 10_000 and 1 <= self.leave_after <= 10_000):
            raise ValueError(f"enter_after ({self.enter_after}) and leave_after ({self.leave_after}) "
                             "must be 1..10000 checks")


def _clusters(obs: Sequence[NodeObservation], max_offset_s: float) -> tuple[tuple[NodeObservation, ...], ...]:
    """Single-linkage groups by value_s: split where the gap minus both uncertainties > max_offset_s."""
    ordered = sorted(obs, key=lambda o: (o.value_s, o.node))
    groups: list[list[NodeObservation]] = []
    for o in ordered:
        if groups:
            prev = groups[-1][-1]
            gap_s = o.value_s - prev.value_s - prev.uncertainty_s - o.uncertainty_s
            if gap_s <= max_offset_s:
                groups[-1].append(o)
                continue
        groups.append([o])
    return tuple(tuple(g) for g in groups)


def _judge(
    offset_s: float, uncertainty_s: float, warn_offset_s: float, max_offset_s: float
) -> tuple[str, str]:
    """Verdict and reason for one node given its offset from the consensus (s)."""
    excess_s = abs(offset_s) - uncertainty_s
    evidence = (f"offset {_fmt_s(offset_s)} +/- {uncertainty_s:.6f} s from the consensus, "
                f"|offset| - uncertainty = {excess_s:.6f} s")
    if excess_s > max_offset_s:
        return VERDICT_BEYOND_MAX, f"{evidence} > max {max_offset_s} s"
    if excess_s > warn_offset_s:
        why = f"{evidence} > warn {warn_offset_s} s"
        if abs(offset_s) > max_offset_s:
            why += f" (beyond max {max_offset_s} s only within the uncertainty: ambiguous, counted within)"
        return VERDICT_SUSPECT, why
    why = f"{evidence} <= warn {warn_offset_s} s"
    if abs(offset_s) > warn_offset_s:
        why += " (ambiguous: beyond it only within the uncertainty, counted healthy)"
    return VERDICT_OK, why


def assess_skew(
    observations: Sequence[NodeObservation], *, warn_offset_s: float, max_offset_s: float
) -> SkewAssessment:
    """Judge every node against the median of all nodes (s); see the module doc for the rules."""
    _validate_thresholds(warn_offset_s, max_offset_s)
    obs = tuple(observations)
    names = [o.node for o in obs]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"node names must be unique, repeated: {', '.join(dupes)}")
    if not obs:
        return SkewAssessment(quorum=False, consensus_s=None, spread_s=None, nodes=(),
                              reason="no nodes: nothing to compare")

    consensus_s = statistics.median(o.value_s for o in obs)
    spread_s = statistics.median(abs(o.value_s - consensus_s) for o in obs)
    judged = [(o, consensus_s - o.value_s, *_judge(consensus_s - o.value_s, o.uncertainty_s,
                                                   warn_offset_s, max_offset_s)) for o in obs]
    n = len(obs)
    n_within = sum(1 for _, _, v, _ in judged if v != VERDICT_BEYOND_MAX)
    refs = [(o, v) for o, _, v, _ in judged if o.node != SELF_NODE]
    n_refs_within = sum(1 for _, v in refs if v != VERDICT_BEYOND_MAX)
    groups = _clusters(obs, max_offset_s)
    clusters = tuple(tuple(o.node for o in g) for g in groups)

    quorum = n >= MIN_NODES_FOR_QUORUM and 2 * n_within > n and 2 * n_refs_within > len(refs)
    if quorum:
        nodes = tuple(NodeVerdict(o.node, off, o.uncertainty_s, v, r) for o, off, v, r in judged)
        beyond = [o.node for o, _, v, _ in judged if v == VERDICT_BEYOND_MAX]
        reason = (f"quorum: {n_within} of {n} nodes ({n_refs_within} of {len(refs)} references) within max "
                  f"{max_offset_s} s of the consensus {_fmt_s(consensus_s)} (node - local)")
        if beyond:
            reason += f"; beyond max: {', '.join(beyond)}"
        return SkewAssessment(True, consensus_s, spread_s, nodes, reason, clusters)

    if n < MIN_NODES_FOR_QUORUM:
        why = f"no quorum: only {n} node, nothing to compare it with"
    elif len(groups) > 1:
        parts = "; ".join(
            "{" + ", ".join(o.node for o in g) + "} at " + _fmt_s(statistics.median(o.value_s for o in g))
            for g in groups
        )
        why = f"no quorum: {len(groups)} clusters (node - local): {parts}"
    else:
        why = (f"no quorum: only {n_within} of {n} nodes ({n_refs_within} of {len(refs)} references) within "
               f"max {max_offset_s} s of the consensus {_fmt_s(consensus_s)}")
    nodes = tuple(
        NodeVerdict(o.node, off, o.uncertainty_s, VERDICT_UNDECIDED,
                    f"not judged: offset {_fmt_s(off)} from an unsettled consensus ({why})")
        for o, off, _, _ in judged
    )
    return SkewAssessment(False, consensus_s, spread_s, nodes, why, clusters)
