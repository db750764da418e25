"""This host against its cluster peers' majority: "off from the cluster", apart from "off from UTC".

A cluster (a database's nodes, CockroachDB-style) needs its members' clocks close to each other,
whatever UTC says; the references say how far this host is from UTC. The two are different faults
with different remedies, so they are judged apart, by the same rules (`skew.assess_skew`: the
median of the nodes, each node's excess over its uncertainty against the thresholds, a strict
majority of the peers within max, self never the deciding vote).

Each peer brings one reading per run: its lowest-delay reply (value_s = peer clock − local clock,
NTP's offset, with NTP's own bound delay/2 as its uncertainty; a peer's root distance to UTC says
nothing about its distance from us). A reading is carried to now across this clock's steps since it
was taken (the change of realtime − boottime; a slew moves both, so it is not followed: a reading is
at most `max_age_s` old), and is not judged when older than that, from another boot, or failed.

Instants are int ns, durations float s. Offsets keep NTP's sign (peer − local; positive: this
clock is behind the peer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from timekit.analysis.skew import (
    SELF_NODE,
    VERDICT_BEYOND_MAX,
    VERDICT_OK,
    VERDICT_SUSPECT,
    NodeObservation,
    SkewAssessment,
    assess_skew,
)
from timekit.units import NS_PER_S


@dataclass(frozen=True)
class PeerReading:
    """One run's reading of one peer: its lowest-delay good reply, or the error of its last attempt."""

    peer: str  # the peer's name ([cluster] peers)
    address: str  # its endpoint, host:port
    t_local_ns: int  # CLOCK_REALTIME at the reply (T4), or at the failure
    boottime_ns: int | None
    boot_id: str | None
    ok: bool
    offset_s: float | None  # peer − local at t_local_ns
    delay_s: float | None
    error: str | None = None


@dataclass(frozen=True)
class ClusterAssessment:
    """The peers that could be judged, `self` and each of them against their majority."""

    skew: SkewAssessment
    judged: tuple[str, ...]  # peers with a fresh reading
    stale: tuple[str, ...]  # peers whose newest reading is too old or from another boot
    delays_s: tuple[float, ...]  # the judged readings' round trips (the pause guard)


def carried_value_s(r: PeerReading, *, now_realtime_ns: int, now_boottime_ns: int) -> float:
    """The reading's peer − local now, s: less whatever this clock moved against boottime since (a step
    of +S makes every peer read S less ahead)."""
    assert r.offset_s is not None and r.boottime_ns is not None
    moved_ns = (now_realtime_ns - now_boottime_ns) - (r.t_local_ns - r.boottime_ns)
    return r.offset_s - moved_ns / NS_PER_S


def assess_cluster(readings: Sequence[PeerReading], *, now_realtime_ns: int, now_boottime_ns: int,
                   boot_id: str | None, warn_offset_s: float, max_offset_s: float,
                   max_age_s: float) -> ClusterAssessment:
    """`self` (0 by definition) and every peer with a fresh good reading, against their median."""
    obs = [NodeObservation(SELF_NODE, 0.0, 0.0)]
    judged: list[str] = []
    stale: list[str] = []
    delays: list[float] = []
    for r in sorted(readings, key=lambda r: r.peer):
        if not r.ok or r.offset_s is None or r.delay_s is None:
            continue  # a failure: its error is the reading's
        # its age on boottime (a wall-clock step does not age it), from this boot only
        age_s = None if r.boottime_ns is None else (now_boottime_ns - r.boottime_ns) / NS_PER_S
        if age_s is None or r.boot_id != boot_id or age_s > max_age_s:
            stale.append(r.peer)
            continue
        obs.append(NodeObservation(r.peer, carried_value_s(r, now_realtime_ns=now_realtime_ns,
                                                           now_boottime_ns=now_boottime_ns),
                                   max(r.delay_s, 0.0) / 2))
        judged.append(r.peer)
        delays.append(r.delay_s)
    skew = assess_skew(obs, warn_offset_s=warn_offset_s, max_offset_s=max_offset_s)
    if len(obs) == 1:
        skew = SkewAssessment(False, skew.consensus_s, skew.spread_s, skew.nodes,
                              "no quorum: no peer with a fresh reading", skew.clusters)
    return ClusterAssessment(skew, tuple(judged), tuple(stale), tuple(delays))


OFF = (VERDICT_BEYOND_MAX, VERDICT_SUSPECT)


def diagnose(from_references: str | None, from_cluster: str | None) -> str:
    """In words, which fault `self` has, from its verdicts against the references (UTC) and against the
    cluster (None: not judged there): the two are different faults with different remedies."""
    refs_off = from_references in OFF
    cluster_off = from_cluster in OFF
    refs_known = from_references in (*OFF, VERDICT_OK)
    cluster_known = from_cluster in (*OFF, VERDICT_OK)
    if refs_off and cluster_off:
        return "off from the cluster and from UTC: this host's clock is wrong"
    if cluster_off:
        return ("off from the cluster, not from UTC: the peers' majority disagrees with the references "
                "this host follows" if refs_known else
                "off from the cluster (UTC not judged: no majority of references)")
    if refs_off:
        return ("off from UTC, in step with the cluster: the cluster shares the error (its time source?)"
                if cluster_known else "off from UTC (the cluster not judged)")
    if refs_known and cluster_known:
        return "in step with the cluster and with UTC"
    if cluster_known:
        return "in step with the cluster (UTC not judged)"
    if refs_known:
        return "in step with UTC (the cluster not judged)"
    return "not judged: no majority of references or of peers"
