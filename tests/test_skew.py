"""Skew verdicts against the majority consensus, and the quarantine state machine (scenarios, properties)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from timekit.analysis.quarantine import (
    STATUS_OK,
    STATUS_QUARANTINED,
    STATUS_SUSPECT,
    FleetUpdate,
    NodeHealth,
    QuarantinePolicy,
    update_fleet,
)
from timekit.analysis.skew import (
    SELF_NODE,
    VERDICT_BEYOND_MAX,
    VERDICT_OK,
    VERDICT_SUSPECT,
    VERDICT_UNDECIDED,
    NodeObservation,
    SkewAssessment,
    assess_skew,
)
from timekit.units import NS_PER_S

WARN_S = 0.05
MAX_S = 0.1


def obs(values: Mapping[str, float], uncertainty_s: float = 0.001) -> list[NodeObservation]:
    """References with the given value_s (node - local) plus self at 0 with no uncertainty."""
    refs = [NodeObservation(n, v, uncertainty_s) for n, v in values.items()]
    return refs + [NodeObservation(SELF_NODE, 0.0, 0.0)]


def assess(values: Mapping[str, float]) -> SkewAssessment:
    """assess_skew over obs(values) with warn 50 ms, max 100 ms."""
    return assess_skew(obs(values), warn_offset_s=WARN_S, max_offset_s=MAX_S)


def by_node(a: SkewAssessment) -> dict[str, str]:
    return {v.node: v.verdict for v in a.nodes}


# --- skew ----------------------------------------------------------------------------------------


def test_reference_ahead_of_everyone_is_beyond_max_with_ntp_sign() -> None:
    a = assess({"a": 0.001, "b": -0.001, "c": 0.0, "d": 2.5})
    # values sorted: -0.001, 0, 0 (self), 0.001, 2.5 -> median 0.0; d: offset = 0.0 - 2.5 = -2.5
    assert a.consensus_s == 0.0 and a.spread_s == 0.001  # |dev| = 0.001, 0, 0, 0.001, 2.5 -> median 0.001
    d = next(v for v in a.nodes if v.node == "d")
    assert d.offset_s == -2.5 and d.verdict == VERDICT_BEYOND_MAX
    assert by_node(a) == {"a": "ok", "b": "ok", "c": "ok", "d": "beyond_max", "self": "ok"}
    assert a.quorum and "4 of 5 nodes (3 of 4 references)" in a.reason and "beyond max: d" in a.reason


def test_local_clock_behind_the_fleet_is_self_beyond_max() -> None:
    a = assess({"a": 0.3, "b": 0.3, "c": 0.3, "d": 0.3})
    me = next(v for v in a.nodes if v.node == SELF_NODE)
    assert me.offset_s == pytest.approx(0.3) and me.verdict == VERDICT_BEYOND_MAX  # positive: local behind
    assert a.quorum and sum(v.verdict == VERDICT_OK for v in a.nodes) == 4


@pytest.mark.parametrize(
    ("value_s", "uncertainty_s", "verdict"),
    [
        (0.04, 0.0, VERDICT_OK),  # 0.04 <= warn 0.05
        (0.07, 0.0, VERDICT_SUSPECT),  # 0.07 > warn, <= max
        (0.07, 0.03, VERDICT_OK),  # 0.07 - 0.03 = 0.04 <= warn: ambiguous counts healthy
        (0.12, 0.03, VERDICT_SUSPECT),  # 0.12 - 0.03 = 0.09: within max only thanks to uncertainty
        (0.12, 0.0, VERDICT_BEYOND_MAX),  # 0.12 > max 0.1
        (0.5, 0.39, VERDICT_BEYOND_MAX),  # 0.5 - 0.39 = 0.11 > max
        (0.5, 0.41, VERDICT_SUSPECT),  # 0.5 - 0.41 = 0.09
    ],
)
def test_thresholds_allow_for_uncertainty(value_s: float, uncertainty_s: float, verdict: str) -> None:
    nodes = [NodeObservation(n, 0.0, 0.001) for n in ("a", "b", "c")]
    nodes += [NodeObservation("x", value_s, uncertainty_s), NodeObservation(SELF_NODE, 0.0, 0.0)]
    a = assess_skew(nodes, warn_offset_s=WARN_S, max_offset_s=MAX_S)
    assert a.consensus_s == 0.0 and by_node(a)["x"] == verdict


def test_leap_smear_vs_step_two_clusters_no_quorum() -> None:  # FAULTS C6
    # mid-smear: smeared servers a, b (self follows them) vs stepped c, d, 0.5 s apart
    a = assess({"a": 0.0, "b": 0.0, "c": -0.5, "d": -0.5})
    # median 0.0 -> 3 of 5 nodes within, but only 2 of 4 references: self must not break the tie
    assert not a.quorum
    assert a.clusters == (("c", "d"), ("a", "b", SELF_NODE))
    assert a.reason.startswith("no quorum: 2 clusters") and "{c, d} at -0.500000 s" in a.reason
    assert all(v.verdict == VERDICT_UNDECIDED for v in a.nodes)  # never "everyone beyond"


def test_self_between_two_clusters_no_quorum_nobody_beyond() -> None:
    a = assess({"a": 0.25, "b": 0.25, "c": -0.25, "d": -0.25})
    # median 0.0: every reference 0.25 s from it -> only self within: 1 of 5
    assert not a.quorum and len(a.clusters) == 3
    assert not any(v.verdict == VERDICT_BEYOND_MAX for v in a.nodes)


def test_two_nodes_agree_or_cannot_tell() -> None:
    ok = assess({"a": 0.02})
    assert ok.quorum and ok.consensus_s == pytest.approx(0.01)  # median of 0.02 and 0.0
    split = assess({"a": 1.0})
    assert not split.quorum and {v.verdict for v in split.nodes} == {VERDICT_UNDECIDED}


def test_no_nodes_and_self_alone() -> None:
    empty = assess_skew([], warn_offset_s=WARN_S, max_offset_s=MAX_S)
    assert (empty.quorum, empty.consensus_s, empty.spread_s, empty.nodes) == (False, None, None, ())
    alone = assess({})
    assert not alone.quorum and "only 1 node" in alone.reason


def test_known_truth_honest_majority_with_liars() -> None:
    truth_s, noise_s = 0.2, 0.001  # local clock 0.2 s behind the references
    for seed in range(20):
        rng = np.random.default_rng(seed)
        honest = {f"h{i}": truth_s + float(e) for i, e in enumerate(rng.normal(0.0, noise_s, 7))}
        a = assess_skew(obs({**honest, "fast": truth_s + 3.0, "slow": truth_s - 5.0}),
                        warn_offset_s=WARN_S, max_offset_s=MAX_S)
        # 7 of 10 values are honest, so the median lies within their range
        assert min(honest.values()) <= a.consensus_s <= max(honest.values())
        v = by_node(a)
        assert v["fast"] == v["slow"] == v[SELF_NODE] == VERDICT_BEYOND_MAX  # self: 0.2 s > max 0.1 s
        assert all(v[h] == VERDICT_OK for h in honest)  # |noise| << 0.05 s warn
        assert a.quorum and "7 of 10 nodes (7 of 9 references)" in a.reason


@pytest.mark.parametrize(("warn", "mx"), [(0.0, 0.1), (0.2, 0.1), (0.05, float("nan")), (-1.0, 0.1),
                                          (0.05, float("inf"))])
def test_bad_thresholds_rejected(warn: float, mx: float) -> None:
    with pytest.raises(ValueError, match="_offset_s"):
        assess_skew(obs({"a": 0.0}), warn_offset_s=warn, max_offset_s=mx)


def test_bad_observations_rejected() -> None:
    with pytest.raises(ValueError, match="uncertainty_s"):
        NodeObservation("a", 0.0, -0.001)
    with pytest.raises(ValueError, match="value_s"):
        NodeObservation("a", float("nan"), 0.0)
    with pytest.raises(ValueError, match="unique"):
        assess_skew([NodeObservation("a", 0, 0), NodeObservation("a", 0, 0)], warn_offset_s=WARN_S,
                    max_offset_s=MAX_S)


fleet = st.dictionaries(
    st.sampled_from([f"n{i}" for i in range(9)]),
    st.tuples(st.floats(-5.0, 5.0), st.floats(0.0, 0.5)),
    max_size=9,
)


@given(fleet, st.booleans())
def test_never_a_majority_beyond_max(nodes: dict[str, tuple[float, float]], with_self: bool) -> None:
    observations = [NodeObservation(n, v, u) for n, (v, u) in nodes.items()]
    if with_self:
        observations.append(NodeObservation(SELF_NODE, 0.0, 0.0))
    a = assess_skew(observations, warn_offset_s=WARN_S, max_offset_s=MAX_S)
    n_beyond = sum(v.verdict == VERDICT_BEYOND_MAX for v in a.nodes)
    assert 2 * n_beyond < max(len(observations), 1)  # with quorum a minority; without, nobody
    if not a.quorum:
        assert n_beyond == 0
    assert sorted(n for c in a.clusters for n in c) == sorted(o.node for o in observations)


# --- quarantine scenarios ------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A fleet of four references and self, checked once a minute; checks override node values."""

    refs: tuple[str, ...] = ("a", "b", "c", "x")
    policy: QuarantinePolicy = field(default_factory=QuarantinePolicy)  # enter after 3, leave after 5
    check_every_ns: int = 60 * NS_PER_S

    def run(self, checks: list[dict[str, float] | str]) -> list[FleetUpdate]:
        """Each check: {node: value_s} overrides (others at 0.0), or a string = hold_reason."""
        state: dict[str, NodeHealth] = {}
        out = []
        for i, check in enumerate(checks, start=1):
            values = {r: 0.0 for r in self.refs}
            hold = check if isinstance(check, str) else None
            if not isinstance(check, str):
                values.update(check)
            a = assess_skew(obs(values), warn_offset_s=WARN_S, max_offset_s=MAX_S)
            up = update_fleet(state, a, now_ns=i * self.check_every_ns, policy=self.policy, hold_reason=hold)
            state = up.as_dict()
            out.append(up)
        return out


def statuses(updates: list[FleetUpdate], node: str) -> list[str]:
    return [u.as_dict()[node].status for u in updates]


def test_q8_one_run_over_threshold_then_fine_never_quarantined() -> None:  # FAULTS Q8
    ups = Scenario().run([{"x": 0.0}, {"x": 0.15}, {"x": 0.0}, {"x": 0.0}])  # 50 ms over max once
    assert statuses(ups, "x") == ["ok", "suspect", "ok", "ok"]


def test_q9_k_runs_quarantine_then_m_clean_runs_release() -> None:  # FAULTS Q9
    ups = Scenario().run([{"x": 0.5}] * 3 + [{"x": 0.0}] * 5)
    assert statuses(ups, "x") == ["suspect", "suspect", "quarantined"] + ["quarantined"] * 4 + ["ok"]
    moves = [(t.from_status, t.to_status, t.t_ns // NS_PER_S) for u in ups for t in u.transitions]
    assert moves == [("ok", "suspect", 60), ("suspect", "quarantined", 180), ("quarantined", "ok", 480)]
    enter = ups[2].transitions[0]
    assert enter.offset_s == -0.5  # consensus 0.0 - value 0.5
    assert "beyond max for 3 consecutive checks (enter_after=3)" in enter.reason
    assert "offset -0.500000 s" in enter.reason  # the evidence
    assert "ok for 5 consecutive checks (leave_after=5)" in ups[7].transitions[0].reason
    assert ups[2].as_dict()["x"].since_ns == 180 * NS_PER_S == ups[6].as_dict()["x"].since_ns
    assert statuses(ups, "a") == ["ok"] * 8


def test_a_good_check_breaks_the_bad_streak() -> None:
    ups = Scenario().run([{"x": 0.5}, {"x": 0.5}, {"x": 0.0}, {"x": 0.5}, {"x": 0.5}, {"x": 0.5}])
    assert statuses(ups, "x") == ["suspect", "suspect", "ok", "suspect", "suspect", "quarantined"]


def test_suspect_breaks_the_bad_streak_too() -> None:  # only consecutive beyond_max checks count
    ups = Scenario().run([{"x": 0.5}, {"x": 0.5}, {"x": 0.07}, {"x": 0.5}, {"x": 0.5}])
    assert statuses(ups, "x") == ["suspect"] * 5
    assert [u.as_dict()["x"].bad_streak for u in ups] == [1, 2, 0, 1, 2]


def test_suspect_restarts_the_release_count() -> None:
    ups = Scenario().run([{"x": 0.5}] * 3 + [{"x": 0.0}] * 4 + [{"x": 0.07}] + [{"x": 0.0}] * 5)
    # quarantined at 3; ok 4-7 (4 of 5); suspect at 8 resets; ok 9-13 -> released at 13
    assert statuses(ups, "x") == ["suspect", "suspect"] + ["quarantined"] * 10 + ["ok"]


def test_c12_one_off_local_spike_does_not_quarantine_self() -> None:  # FAULTS C12
    spike_s = 4_294_967_296 / NS_PER_S  # the KVM adjtimex artefact: 2**32 ns
    jumped = {r: -spike_s for r in Scenario().refs}  # local clock ahead by the spike: refs appear behind
    ups = Scenario().run([{}, jumped, {}, {}])
    assert statuses(ups, SELF_NODE) == ["ok", "suspect", "ok", "ok"]
    assert ups[1].as_dict()[SELF_NODE].last_offset_s == pytest.approx(-spike_s)  # consensus - 0
    persistent = Scenario().run([jumped] * 3)
    assert statuses(persistent, SELF_NODE) == ["suspect", "suspect", "quarantined"]


def test_hold_changes_no_counter_and_breaks_no_streak() -> None:
    ups = Scenario().run([{"x": 0.5}, {"x": 0.5}, "timekit was paused 300 s", {"x": 0.5}])
    assert statuses(ups, "x") == ["suspect", "suspect", "suspect", "quarantined"]
    assert ups[2].held and ups[2].transitions == () and ups[2].health == ups[1].health
    assert ups[2].reason.startswith("held: timekit was paused 300 s")


def test_no_quorum_holds_c6_and_q4() -> None:  # FAULTS C6, Q4: never quarantined on a split fleet
    split = {"a": 0.0, "b": 0.0, "c": -0.5, "x": -0.5}
    ups = Scenario().run([{"x": 0.5}, {"x": 0.5}] + [split] * 5 + [{"x": 0.5}])
    assert statuses(ups, "x") == ["suspect"] * 7 + ["quarantined"]  # the split checks did not count
    assert all(u.held and "2 clusters" in u.reason for u in ups[2:7])
    scattered = Scenario().run([{"a": 0.0, "b": 1.0, "c": 2.0, "x": 3.0}] * 10)
    assert all(u.held for u in scattered) and all(u.health == () for u in scattered)


def test_missing_node_keeps_its_state() -> None:
    ups = Scenario().run([{"x": 0.5}] * 3)
    state = ups[-1].as_dict()
    without_x = assess({"a": 0.0, "b": 0.0, "c": 0.0})
    up = update_fleet(state, without_x, now_ns=240 * NS_PER_S, policy=QuarantinePolicy())
    assert up.as_dict()["x"] == state["x"] and up.as_dict()["a"].good_streak == 4


def test_enter_after_one_quarantines_at_once() -> None:
    ups = Scenario(policy=QuarantinePolicy(enter_after=1, leave_after=1)).run([{"x": 0.5}, {"x": 0.0}])
    assert statuses(ups, "x") == ["quarantined", "ok"]


@pytest.mark.parametrize("kwargs", [{"enter_after": 0}, {"leave_after": -1}, {"enter_after": 2.5},
                                    {"leave_after": True}])
def test_bad_policy_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="checks"):
        QuarantinePolicy(**kwargs)  # type: ignore[arg-type]


def test_bad_state_and_hold_reason_rejected() -> None:
    with pytest.raises(ValueError, match="status"):
        NodeHealth("x", "dead", 0, 0, 0, None)
    a = assess({"a": 0.0})
    with pytest.raises(ValueError, match="keyed"):
        update_fleet({"y": NodeHealth("x", STATUS_OK, 0, 0, 0, None)}, a, now_ns=1, policy=QuarantinePolicy())
    with pytest.raises(ValueError, match="hold_reason"):
        update_fleet({}, a, now_ns=1, policy=QuarantinePolicy(), hold_reason=" ")


@given(
    st.lists(st.sampled_from([0.0, 0.07, 0.5, "hold"]), max_size=30),
    st.integers(1, 4),
    st.integers(1, 4),
)
def test_quarantine_follows_the_streak_rules(seq: list[float | str], enter: int, leave: int) -> None:
    checks: list[dict[str, float] | str] = [s if isinstance(s, str) else {"x": s} for s in seq]
    ups = Scenario(policy=QuarantinePolicy(enter, leave)).run(checks)
    verdict = {0.0: VERDICT_OK, 0.07: VERDICT_SUSPECT, 0.5: VERDICT_BEYOND_MAX}
    judged = [verdict[s] for s in seq if not isinstance(s, str)]  # held checks do not exist for x
    status = [u.as_dict()["x"].status for u in ups if not u.held and "x" in u.as_dict()]
    assert len(status) == len(judged)
    for i, st_i in enumerate(status):
        before = status[i - 1] if i else STATUS_OK
        if st_i == STATUS_QUARANTINED and before != STATUS_QUARANTINED:
            assert i + 1 >= enter and set(judged[i + 1 - enter: i + 1]) == {VERDICT_BEYOND_MAX}
        if before == STATUS_QUARANTINED and st_i != STATUS_QUARANTINED:
            assert st_i == STATUS_OK and set(judged[i + 1 - leave: i + 1]) == {VERDICT_OK}
            assert i + 1 - leave >= 0
        if before != STATUS_QUARANTINED and st_i != STATUS_QUARANTINED:
            assert (st_i == STATUS_SUSPECT) == (judged[i] != VERDICT_OK)
        if before == STATUS_QUARANTINED and judged[i] != VERDICT_OK:
            assert st_i == STATUS_QUARANTINED
    # and conversely: enter consecutive beyond_max checks always quarantine
    for i in range(enter - 1, len(judged)):
        if set(judged[i + 1 - enter: i + 1]) == {VERDICT_BEYOND_MAX}:
            assert status[i] == STATUS_QUARANTINED
