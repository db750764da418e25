"""TrueTime intervals and quarantine on a live lab whose truth is known.

One scenario, run once for the module (about 45 s): five references that agree (three real
chronyd under libfaketime, a jittery one with delay spikes, and one that steps +0.2 s away
for 20 s and comes back), plus a falseticker 2.5 s off. A background thread samples all six
at 4 Hz into a real SQLite store; the main thread computes `timekit now`'s interval
thousands of times and runs a skew check every second. Every interval is compared with each
honest reference's true time at the instant it was computed.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import record_figure, require_lab
from timekit.address import parse_server
from timekit.analysis.assessment import Policy
from timekit.analysis.skew import SkewPolicy
from timekit.clock.intervalclock import IntervalClock
from timekit.collectors.clocks import boot_id
from timekit.collectors.ntp_client import QueryPlan
from timekit.lab.faultserver import PortSpec
from timekit.lab.manager import ChronySpec, Lab, LabServer, start_lab
from timekit.pipeline.assess import assess_store, read_now
from timekit.pipeline.sampling import sample_ntp
from timekit.pipeline.skewcheck import run_skew_check
from timekit.store.database import Store
from timekit.store.published_state import publish, state_path_for
from timekit.units import NS_PER_S

GROUP_OFFSET_S = 0.020  # every honest reference is 20 ms ahead of this host...
GROUP_DRIFT_PPM = -30.0  # ...and runs 30 ppm slow, so this host's drift against them is +30 ppm
STEP_AFTER_S, STEP_S, STEP_UNTIL_S = 14.0, 0.200, 30.0  # the stepper's excursion (fault server time)
SCENARIO_S = 42.0  # from the fault server's start
SAMPLE_INTERVAL_S = 0.25
SKEW = Policy(skew=SkewPolicy(warn_offset_s=0.05, max_offset_s=0.1, enter_after=3, leave_after=4))
SKEW_EVERY_S = 1.0
READS_PER_CHECK = 100  # IntervalClock.now() reads per interval computed (~3 µs each): the run scales
BIN_S = 2.0  # coverage: every BIN_S of the scenario has checks, whatever the machine's speed
HONEST = ("grp-a", "grp-b", "grp-c", "grp-jittery")

pytestmark = pytest.mark.lab  # its own lab of chronyd servers under libfaketime


@dataclass
class Check:
    """One interval computed during the scenario, with each reference's truth at that instant."""

    t_s: float  # since the fault server started
    status: str
    earliest_ns: int | None
    latest_ns: int | None
    as_of_ns: int
    uncertainty_s: float | None
    naive_s: float | None
    falsetickers: tuple[str, ...]
    truth_ns: dict[str, int] = field(default_factory=dict)
    stepper: tuple[float, float, float] | None = None  # its own bound: (lo_s, hi_s, age_s of evidence)
    reason: str = ""


@dataclass
class Scenario:
    lab: Lab
    db: Path
    checks: list[Check]
    clock_reads: list[tuple[float, int, int, str, dict[str, tuple[int, int]]]]  # IntervalClock.now() checks
    skew: list[tuple[float, dict[str, tuple[str, str]]]]  # (t_s, node -> (verdict, status))
    n_samples: int
    fits: dict[str, dict]  # `analyze drift` results at the end, by server name

    def srv(self, name: str) -> LabServer:
        return self.lab.server(name)


def _stepper_off(t_s: float) -> bool:
    """Whether the stepper is away from the group at scenario time `t_s` (with 1 s margins)."""
    return STEP_AFTER_S - 1 <= t_s <= STEP_UNTIL_S + 1


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    from timekit.lab.chrony import lab_prerequisites

    require_lab(lab_prerequisites())
    tmp = tmp_path_factory.mktemp("truetime")
    chrony = tuple(ChronySpec(n, GROUP_OFFSET_S, GROUP_DRIFT_PPM) for n in ("grp-a", "grp-b", "grp-c"))
    ports = (
        PortSpec(name="grp-jittery", offset_s=GROUP_OFFSET_S, drift_ppm=GROUP_DRIFT_PPM, jitter_s=0.001,
                 spike_prob=0.1, spike_s=0.020),
        PortSpec(name="grp-stepper", offset_s=GROUP_OFFSET_S, drift_ppm=GROUP_DRIFT_PPM,
                 step_after_s=STEP_AFTER_S, step_s=STEP_S, step_until_s=STEP_UNTIL_S),
        PortSpec(name="liar", offset_s=2.5),
    )
    lab = start_lab(tmp / "lab", chrony=chrony, good_ports=ports, fault_kinds=(), detach=False)
    db = tmp / "tk.db"
    Store.open(db).close()
    start_ns = lab.server("liar").start_ns
    counts: list[int] = []

    def sampler() -> None:  # 4 Hz against all six until the scenario ends (the budget stops it)
        with Store.open(db) as st:
            targets = [parse_server(s.address) for s in lab.servers]
            plan = QueryPlan(count=int(SCENARIO_S / SAMPLE_INTERVAL_S) + 8, interval_s=SAMPLE_INTERVAL_S,
                             timeout_s=0.5)
            left_s = SCENARIO_S + 1 - (time.clock_gettime_ns(time.CLOCK_REALTIME) - start_ns) / NS_PER_S
            counts.append(len(sample_ntp(st, targets, plan, budget_s=left_s).samples))

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    checks: list[Check] = []
    raw_reads: list[tuple[float, int, int, str, int, int]] = []  # (t_s, earliest, latest, status, rt0, rt1)
    clock: IntervalClock | None = None
    skew: list[tuple[float, dict[str, tuple[str, str]]]] = []
    names = {s.address: s.name for s in lab.servers}
    try:
        with Store.open(db) as st:
            next_skew = 2.0
            while True:
                t_s = (time.clock_gettime_ns(time.CLOCK_REALTIME) - start_ns) / NS_PER_S
                if t_s > SCENARIO_S:
                    break
                now = read_now()
                found = assess_store(st, now=now)
                est, state = found.interval, found.state
                assert est is not None and state is not None
                publish(state_path_for(db), state, boot_id())  # as `timekit now`/collect/daemon do
                clock = clock or IntervalClock(db)
                for _ in range(READS_PER_CHECK):  # the library's hot path on the published state
                    rt0 = time.clock_gettime_ns(time.CLOCK_REALTIME)
                    iv = clock.now()
                    rt1 = time.clock_gettime_ns(time.CLOCK_REALTIME)
                    raw_reads.append((t_s, iv.earliest_ns, iv.latest_ns, iv.status, rt0, rt1))
                sb = next((b for b in est.servers if names[b.server] == "grp-stepper"), None)
                checks.append(Check(
                    t_s, est.status, est.earliest_ns, est.latest_ns, est.as_of_ns, est.uncertainty_s,
                    est.naive_uncertainty_s,
                    tuple(names[f] for f in (est.selection.falsetickers if est.selection else ())),
                    {s.name: now[0] + round(s.true_offset_at(now[0]) * NS_PER_S) for s in lab.servers},
                    None if sb is None or sb.lo_s is None or sb.hi_s is None or sb.age_s is None
                    else (sb.lo_s, sb.hi_s, sb.age_s), est.reason))
                if t_s >= next_skew:
                    rep = run_skew_check(st, SKEW).to_json()
                    skew.append((t_s, {names.get(n["node"], n["node"]): (n["verdict"], n["status"])
                                       for n in rep["nodes"]}))
                    next_skew += SKEW_EVERY_S
                time.sleep(0.002)
    finally:
        thread.join(timeout=15)
    with Store.open(db) as st:
        from timekit.outputs.drift_report import drift_results

        fits = {names[r["server"]]: r for r in drift_results(assess_store(st))}
    # each read against every honest reference's truth at both ends of its bracket (after the run:
    # the truth is a function of the instant, and computing it inside the loop would slow the reads)
    honest = [lab.server(n) for n in HONEST]
    clock_reads = [(t_s, e, lt, status, {s.name: (rt0 + round(s.true_offset_at(rt0) * NS_PER_S),
                                                  rt1 + round(s.true_offset_at(rt1) * NS_PER_S))
                                         for s in honest})
                   for t_s, e, lt, status, rt0, rt1 in raw_reads]
    yield Scenario(lab, db, checks, clock_reads, skew, counts[0] if counts else 0, fits)
    lab.stop()


def _covered(times: list[float], start_s: float, end_s: float) -> list[float]:
    """The BIN_S bins of [start_s, end_s) with no time in `times` (coverage, not a count: a busy
    machine computes fewer intervals, but every phase of the scenario must be checked)."""
    bins = {int((t - start_s) // BIN_S) for t in times if start_s <= t < end_s}
    return [start_s + k * BIN_S for k in range(int((end_s - start_s) // BIN_S)) if k not in bins]


def _inside(c: Check, name: str) -> bool:
    assert c.earliest_ns is not None and c.latest_ns is not None
    return c.earliest_ns <= c.truth_ns[name] <= c.latest_ns


def test_interval_always_contains_every_honest_references_truth(scenario: Scenario) -> None:
    checks = [c for c in scenario.checks if c.t_s > 2.0]  # the first samples are in after ~0.3 s
    record_figure("truetime lab", f"{len(checks)} intervals checked against 4 truths each")
    assert _covered([c.t_s for c in checks], 2.0, SCENARIO_S) == []
    odd = [(round(c.t_s, 2), c.status, c.reason) for c in checks
           if c.status != "synchronized" or c.earliest_ns is None]
    assert odd == [], f"{len(odd)} checks not synchronized: {odd[:3]}"
    misses = [(round(c.t_s, 2), n, (c.truth_ns[n] - c.earliest_ns) / 1e3, (c.latest_ns - c.truth_ns[n]) / 1e3)
              for c in checks for n in HONEST if not _inside(c, n)]  # type: ignore[operator]
    assert misses == [], f"{len(misses)} misses (t, server, µs above earliest, µs below latest): {misses[:5]}"
    outside_excursion = [c for c in checks if not _stepper_off(c.t_s)]
    assert all(_inside(c, "grp-stepper") for c in outside_excursion)


def test_interval_is_narrow_against_the_naive_bound(scenario: Scenario) -> None:
    checks = [c for c in scenario.checks if c.t_s > 5.0 and c.uncertainty_s is not None]
    width = statistics.median(c.uncertainty_s for c in checks)  # type: ignore[misc]
    naive = statistics.median(c.naive_s for c in checks if c.naive_s is not None)
    # naive: |offset| + root distance ≈ 20 ms; evidence at 4 Hz with ~100 µs delays allows well under 1 ms
    assert naive > 0.019
    assert width < 0.001, f"median half-width {width * 1e6:.0f} µs"


def test_falseticker_is_excluded_and_the_stepper_while_away(scenario: Scenario) -> None:
    checks = [c for c in scenario.checks if c.t_s > 2.0]
    assert all("liar" in c.falsetickers for c in checks)
    assert not any(set(c.falsetickers) & set(HONEST) for c in checks)
    away = [c for c in checks if STEP_AFTER_S + 1 < c.t_s < STEP_UNTIL_S - 0.5]
    assert away and all("grp-stepper" in c.falsetickers for c in away)
    assert not any("grp-stepper" in c.falsetickers for c in checks if c.t_s < STEP_AFTER_S - 0.5)


def test_quarantine_enters_and_leaves_with_hysteresis(scenario: Scenario) -> None:
    def statuses(node: str) -> list[tuple[float, str, str]]:
        return [(t, *v[node]) for t, v in scenario.skew if node in v]

    liar = statuses("liar")
    assert [s for _, _, s in liar[:2]] == ["suspect", "suspect"]  # beyond max, but only 1-2 checks
    assert all(s == "quarantined" for _, _, s in liar[2:]), liar  # from the 3rd consecutive check on
    for node in ("self", *HONEST):
        assert {s for _, _, s in statuses(node)} == {"ok"}, (node, statuses(node))
    stepper = statuses("grp-stepper")
    sequence = [s for _, _, s in stepper]
    first_q = sequence.index("quarantined")
    # entered only after enter_after (3) consecutive checks beyond max offset
    assert [v for _, v, _ in stepper[first_q - 2:first_q + 1]] == ["beyond_max"] * 3
    assert STEP_AFTER_S < stepper[first_q][0] < STEP_AFTER_S + 6
    # it came back at STEP_UNTIL_S; quarantine is left only after leave_after (4) clean checks
    released = next(i for i in range(first_q, len(sequence)) if sequence[i] == "ok")
    assert [v for _, v, _ in stepper[released - 3:released + 1]] == ["ok"] * 4
    assert all(s == "quarantined" for s in sequence[first_q:released])
    assert STEP_UNTIL_S < stepper[released][0] < STEP_UNTIL_S + 8
    with Store.open(scenario.db) as st:
        events = [(e[2], e[3]) for e in st.health_events(scenario.srv("grp-stepper").address)]
    assert ("suspect", "quarantined") in events and ("quarantined", "ok") in events


def test_stepping_server_its_own_bound_follows_it_and_the_fit_restarts(scenario: Scenario) -> None:
    """The stepper's own interval (single reference) contains its own truth whenever it has
    evidence from after its last jump; the drift fit does not span the steps."""
    srv = scenario.srv("grp-stepper")
    checked: list[float] = []
    for c in scenario.checks:
        if c.stepper is None or c.t_s < 2.0:
            continue
        lo, hi, age = c.stepper
        jumps = [j for j in (STEP_AFTER_S, STEP_UNTIL_S) if j <= c.t_s]
        if jumps and c.t_s - age < jumps[-1] + 0.05:  # newest evidence predates the last jump
            continue
        truth = srv.true_offset_at(c.as_of_ns)
        assert lo <= truth <= hi, (c.t_s, lo, truth, hi)
        checked.append(c.t_s)
    record_figure("truetime lab", f"{len(checked)} stepper bounds checked against its truth")
    # checked before the step, during the excursion (once evidence from after the jump is in) and after
    phases = ((2.0, STEP_AFTER_S), (STEP_AFTER_S + 1, STEP_UNTIL_S), (STEP_UNTIL_S + 1, SCENARIO_S))
    for start_s, end_s in phases:
        assert _covered(checked, start_s, end_s) == [], (start_s, end_s)
    fit = scenario.fits["grp-stepper"]
    sizes = sorted(round(st["size_s"], 2) for st in fit["steps"])
    assert sizes == [-0.2, 0.2], fit["steps"]
    # the fit restarted after the return step: it only spans the last ~12 s, not the 42 s
    assert fit["span_s"] < SCENARIO_S - STEP_UNTIL_S + 1
    assert fit["drift_ci95_ppm"][0] <= -GROUP_DRIFT_PPM <= fit["drift_ci95_ppm"][1]
    for name in ("grp-a", "grp-b", "grp-c"):  # the real chronyd servers: drift within 5 ppm over 40 s
        f = scenario.fits[name]
        assert abs(f["drift_ppm"] - (-GROUP_DRIFT_PPM)) < 5.0, (name, f["drift_ppm"])
        assert f["drift_ci95_ppm"][0] <= -GROUP_DRIFT_PPM <= f["drift_ci95_ppm"][1], (name, f)


def test_interval_clock_on_the_published_state_contains_the_truth(scenario: Scenario) -> None:
    """Issue 5: thousands of IntervalClock.now() calls, each checked against every honest
    reference's true time at the instant of the read (bracketed by two realtime reads)."""
    reads = [r for r in scenario.clock_reads if r[0] > 2.0]
    # the read happened between two realtime readings rt0 < rt1; the truth moved with them
    loose = [(round(t, 2), n) for t, e, lt, _st, truth in reads for n, tr in truth.items()
             if not (e <= tr[1] and tr[0] <= lt)]  # necessary whatever the instant inside the bracket
    assert loose == [], f"{len(loose)} misses: {loose[:3]}"
    # reads not preempted (bracket <= 3 µs): the strict check, with no room at all
    tight = [r for r in reads if all(tr[1] - tr[0] <= 3_000 for tr in r[4].values())]
    record_figure("truetime lab", f"{len(reads)} IntervalClock.now() reads checked, {len(tight)} with a "
                  "bracket <= 3 us checked strictly")
    assert _covered([r[0] for r in tight], 2.0, SCENARIO_S) == []  # strict checks all through the scenario
    strict = [(round(t, 2), n, e - tr[0], lt - tr[1]) for t, e, lt, _st, truth in tight
              for n, tr in truth.items() if not (e <= tr[0] and tr[1] <= lt)]
    assert strict == [], f"{len(strict)} misses (t, server, ns past earliest, ns to latest): {strict[:3]}"
    assert {st for _, _, _, st, _ in reads} == {"synchronized"}
    widths = sorted((lt - e) / 2e3 for _, e, lt, _, _ in reads)
    assert widths[len(widths) // 2] < 1000.0  # median half-width under 1 ms (µs here)
