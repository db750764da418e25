"""Stability, holdover and events on a live lab whose truth is known (about 2 min 10 s, once).

Phase 1 (P1_S): every server is sampled at 4 Hz into a real SQLite store: three chronyd references
(`ref-a/b/c`, one group: +20 ms, -30 ppm), a fault-server `survivor` of the same group, three fault
ports whose clocks read with white phase noise of a known level (gauss, laplace, uniform), and three
with one event each (a +50 ms step, a +80 ppm frequency change, +8 ms glitches).
Then the three chronyd references are stopped (silenced) and the holdover is predicted from their
evidence; phase 2 (P2_S) keeps sampling the survivor, and every ~2 s the interval of the silenced
references is compared with their truth, with the prediction, and with what the survivor measures.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import record_figure, require_lab, run_cli
from timekit.address import parse_server
from timekit.analysis.assessment import Policy, projected_interval
from timekit.analysis.interval import IntervalPolicy
from timekit.analysis.stability import deviations, phase_grid
from timekit.collectors.ntp_client import QueryPlan
from timekit.lab.faultserver import PortSpec
from timekit.lab.manager import ChronySpec, Lab, reap, start_lab
from timekit.pipeline.assess import assess_store, read_now_with_kernel
from timekit.pipeline.sampling import sample_ntp
from timekit.store.database import Store
from timekit.store.evidence import load_series, read_evidence
from timekit.units import NS_PER_S

pytestmark = pytest.mark.lab

GROUP_OFFSET_S, GROUP_DRIFT_PPM = 0.020, -30.0
REFS = ("ref-a", "ref-b", "ref-c")
NOISE_S = 3e-3
NOISE_PORTS = {"noise-gauss": "gauss", "noise-laplace": "laplace", "noise-uniform": "uniform"}
EVENT_AT_S = 22.0  # after the lab's start: the step and the frequency change
STEP_S, FREQ_CHANGE_PPM, GLITCH_S = 0.050, 80.0, 0.008
P1_S, P2_S = 44.0, 60.0
INTERVAL_S = 0.25
SHORT_AHEAD_S = 5.0  # within the τ the stability was measured at (phase 1 reaches τ = 8 s)
HOLDOVER_AT_S = 35.0  # the holdover width is the predicted half-width this long after the silence


@dataclass
class Check:
    """The silenced references' interval `ahead_s` after the prediction, and the truth then."""

    ahead_s: float
    lo_s: float  # interval as offsets (reference - local) at that instant
    hi_s: float
    truth_s: dict[str, float]
    survivor_s: float | None  # the survivor's newest measured offset, and its root distance
    survivor_rd_s: float | None
    predicted: tuple[float, float]  # the prediction's (lo, hi) for this ahead_s


@dataclass
class Scenario:
    lab: Lab
    db: Path
    addr: dict[str, str]  # name -> host:port
    predicted_at: tuple[int, int, int, int]  # the clocks the prediction was made at
    evidence_policy: IntervalPolicy
    checks: list[Check] = field(default_factory=list)
    holdover_cli: dict = field(default_factory=dict)
    now_cli: dict = field(default_factory=dict)
    width_s: float = 0.0
    stability_json: dict = field(default_factory=dict)
    events_json: dict = field(default_factory=dict)
    growth: dict[str, float] = field(default_factory=dict)  # half-width at P2_S under each growth model
    ref_errors_s: dict[str, float] = field(default_factory=dict)  # median measured - true offset, phase 1


def _sampler(db: Path, addresses: list[str], seconds: float, out: list[int]) -> threading.Thread:
    def run() -> None:
        with Store.open(db) as st:
            plan = QueryPlan(count=int(seconds / INTERVAL_S) + 4, interval_s=INTERVAL_S, timeout_s=0.5)
            run = sample_ntp(st, [parse_server(a) for a in addresses], plan, budget_s=seconds)
            out.append(len(run.samples))

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def _as_offsets(est) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    assert est.earliest_ns is not None and est.latest_ns is not None, est.reason
    return (est.earliest_ns - est.as_of_ns) / NS_PER_S, (est.latest_ns - est.as_of_ns) / NS_PER_S


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    from timekit.lab.chrony import lab_prerequisites

    require_lab(lab_prerequisites())
    tmp = tmp_path_factory.mktemp("stability")
    group = dict(offset_s=GROUP_OFFSET_S, drift_ppm=GROUP_DRIFT_PPM)
    ports = (
        PortSpec(name="survivor", **group),
        *(PortSpec(name=n, noise_s=NOISE_S, noise_dist=d, seed=11 + i, **group)
          for i, (n, d) in enumerate(NOISE_PORTS.items())),
        PortSpec(name="stepper", step_after_s=EVENT_AT_S, step_s=STEP_S, **group),
        PortSpec(name="freq", drift_change_after_s=EVENT_AT_S, drift_change_ppm=FREQ_CHANGE_PPM, **group),
        PortSpec(name="glitchy", glitch_prob=0.04, glitch_s=GLITCH_S, seed=5, **group),
    )
    lab = start_lab(tmp / "lab", chrony=tuple(ChronySpec(n, GROUP_OFFSET_S, GROUP_DRIFT_PPM) for n in REFS),
                    good_ports=ports, fault_kinds=(), detach=False)
    addr = {s.name: s.address for s in lab.servers}
    db = tmp / "tk.db"
    Store.open(db).close()
    counts: list[int] = []
    survivor = _sampler(db, [addr["survivor"]], P1_S + P2_S + 4, counts)
    others = _sampler(db, [a for n, a in addr.items() if n != "survivor"], P1_S, counts)
    refs = [addr[n] for n in REFS]
    policy = IntervalPolicy(holdover_width_s=0.010)
    try:
        others.join(timeout=P1_S + 20)
        for n in REFS:  # silence: the references stop answering, the survivor carries on
            reap(lab.server(n).pid)
        with Store.open(db, readonly=True) as st:
            now = read_now_with_kernel()
            ev = read_evidence(st, policy, servers=refs, now=now)
        sc = Scenario(lab, db, addr, now, policy)
        with Store.open(db, readonly=True) as st:
            for n in REFS:
                s = load_series(st, server=addr[n])[addr[n]]
                truth = np.array([lab.server(n).true_offset_at(int(t)) for t in s.t_local_ns])
                sc.ref_errors_s[n] = float(np.median(s.offset_s - truth))
        models = {"stability": policy, "wander_15ppm": IntervalPolicy(use_stability=False),
                  "max_drift_200ppm": IntervalPolicy(wander_ppm=200.0, use_stability=False)}
        sc.growth = {f"{k}@{a:g}s": projected_interval(ev, pol, a).uncertainty_s or math.nan
                     for k, pol in models.items() for a in (SHORT_AHEAD_S, P2_S)}
        sc.width_s = projected_interval(ev, policy, HOLDOVER_AT_S).uncertainty_s or math.nan
        server_args = [a for r in refs for a in ("--server", r)]
        cli_at = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        r = run_cli("analyze", "stability", *server_args, "--holdover-width", f"{sc.width_s:.9f}", "--json",
                    db=db)
        assert r.returncode == 0, r.stderr
        sc.holdover_cli = {**json.loads(r.stdout), "ran_at_boottime_ns": cli_at}
        r = run_cli("now", *server_args, "--holdover-width", f"{sc.width_s:.9f}", "--json", db=db)
        assert r.returncode == 0, r.stderr
        sc.now_cli = {**json.loads(r.stdout), "ran_at_boottime_ns": cli_at}
        sc.stability_json = json.loads(run_cli("analyze", "stability", "--json", db=db).stdout)
        sc.events_json = json.loads(run_cli("analyze", "events", "--json", db=db).stdout)
        t_end = now[1] + int(P2_S * NS_PER_S)
        with Store.open(db, readonly=True) as st:
            while time.clock_gettime_ns(time.CLOCK_BOOTTIME) < t_end:
                found = assess_store(st, Policy(interval=policy), servers=refs)
                est = found.interval
                assert est is not None
                ahead_s = (found.boottime_ns - now[1]) / NS_PER_S
                newest = load_series(st, server=addr["survivor"], last_per_server=1).get(addr["survivor"])
                sc.checks.append(Check(
                    ahead_s, *_as_offsets(est),
                    {n: lab.server(n).true_offset_at(est.as_of_ns) for n in REFS},
                    None if newest is None else float(newest.offset_s[-1]),
                    None if newest is None else float(newest.root_distance_s[-1]),
                    _as_offsets(projected_interval(ev, policy, ahead_s))))
                time.sleep(2.0)
        survivor.join(timeout=20)
        yield sc
    finally:
        lab.stop()


def test_white_phase_noise_measured_within_its_interval_of_the_known_level(  # FAULTS H1
        scenario: Scenario) -> None:
    """ADEV(τ) = sqrt(3)·σ/τ and TDEV(τ) = σ/sqrt(m) for each injected distribution, σ² = 3 ms² + the
    port's own reading noise (the survivor's TDEV at τ0): inside allantools' 99.9 % interval at every τ,
    inside the CLI's 95 % one for at least 80 % of (port, τ)."""
    with Store.open(scenario.db, readonly=True) as st:
        series = load_series(st)
    base = deviations(phase_grid(series[scenario.addr["survivor"]].t_local_ns,
                                 series[scenario.addr["survivor"]].offset_s))
    assert base is not None
    base_sigma = float(base.tdev[0])
    sigma = math.hypot(NOISE_S, base_sigma)
    cli = {r["server"]: r for r in scenario.stability_json["results"]}
    hits = total = 0
    lines = []
    for name in NOISE_PORTS:
        s = series[scenario.addr[name]]
        g = phase_grid(s.t_local_ns, s.offset_s, s.delay_s)
        d = deviations(g, ci=0.999)
        assert g.status == "ok" and d is not None, g.reason
        m = np.rint(d.tau_s / g.tau0_s)
        adev_truth = math.sqrt(3) * sigma / d.tau_s
        tdev_truth = sigma / np.sqrt(m)
        for ci, truth, got in ((d.adev_ci, adev_truth, d.adev), (d.tdev_ci, tdev_truth, d.tdev)):
            assert np.all((ci[:, 0] <= truth) & (truth <= ci[:, 1])), (name, got, truth)
        assert set(d.alpha.tolist()) <= {1, 2}, (name, d.alpha)  # identified as phase noise
        r = cli[scenario.addr[name]]
        assert np.allclose(r["adev"], d.adev, rtol=1e-9) and len(r["tdev"]) == len(r["tau_s"]) == len(d.tau_s)
        ci95 = np.asarray(r["adev_ci95"])
        hits += int(np.sum((ci95[:, 0] <= adev_truth) & (adev_truth <= ci95[:, 1])))
        total += len(adev_truth)
        lines.append(f"{name}: ADEV(τ0={g.tau0_s:.3f} s) {d.adev[0]:.3e} vs truth {adev_truth[0]:.3e} "
                     f"[{d.adev_ci[0, 0]:.2e}, {d.adev_ci[0, 1]:.2e}] 99.9 %")
    record_figure("stability lab", "; ".join(lines) + f"; 95 % intervals holding the truth: {hits}/{total}; "
                  f"the port's own reading noise {base_sigma * 1e6:.0f} µs")
    assert hits >= 0.8 * total, f"{hits}/{total}"


def test_holdover_prediction_comes_true_and_contains_the_truth(scenario: Scenario) -> None:  # FAULTS H2
    """While the references are silent the interval is what was predicted for that age, it holds every
    silenced reference's truth and what the survivor measures, and it is never wider than at 15 ppm."""
    assert all(abs(e) < 20e-6 for e in scenario.ref_errors_s.values()), scenario.ref_errors_s  # the lab
    checks = scenario.checks
    assert checks and max(c.ahead_s for c in checks) >= P2_S - 5
    worst_ratio = math.inf
    for c in checks:
        half, centre = (c.hi_s - c.lo_s) / 2, (c.hi_s + c.lo_s) / 2
        assert c.predicted[0] == pytest.approx(c.lo_s, abs=2e-6 + 1e-3 * half)
        assert c.predicted[1] == pytest.approx(c.hi_s, abs=2e-6 + 1e-3 * half)
        for n, truth in c.truth_s.items():
            assert c.lo_s <= truth <= c.hi_s, (c.ahead_s, n, truth, c.lo_s, c.hi_s)
        needed = max(abs(t - centre) for t in c.truth_s.values())
        worst_ratio = min(worst_ratio, half / max(needed, 1e-9))
        assert c.survivor_s is not None and c.survivor_rd_s is not None
        assert abs(c.survivor_s - centre) <= half + c.survivor_rd_s, (c.ahead_s, c.survivor_s, centre, half)
    # the measured stability never widens the growth past 15 ppm (min of the two); whether it narrows it
    # depends on how noisy the lab's answers were (idle: 63-76 µs against 85-88 at 5 s; in one loaded
    # full run equal), so only "never wider" is asserted here; that it is used where the evidence
    # supports it is test_stability.py's (test_interval_growth_uses_measured_stability_where_supported)
    g = {k: v * 1e6 for k, v in scenario.growth.items()}
    short, long = f"@{SHORT_AHEAD_S:g}s", f"@{P2_S:g}s"
    assert g["stability" + short] <= g["wander_15ppm" + short] < g["max_drift_200ppm" + short], g
    assert g["stability" + long] <= g["wander_15ppm" + long] < g["max_drift_200ppm" + long], g
    last = checks[-1]
    record_figure("stability lab", f"holdover: after {last.ahead_s:.0f} s silent the interval is "
                  f"±{(last.hi_s - last.lo_s) / 2 * 1e6:.0f} µs, the truth needed at most "
                  f"1/{worst_ratio:.1f} of it; predicted half-widths (µs), measured stability / 15 ppm / "
                  "200 ppm: "
                  + "; ".join(f"{a} {g['stability' + a]:.0f} / {g['wander_15ppm' + a]:.0f} / "
                              f"{g['max_drift_200ppm' + a]:.0f}" for a in (short, long)))


def test_holdover_seconds_is_when_the_width_is_reached(scenario: Scenario) -> None:  # FAULTS H2
    """`analyze stability --holdover-width W` and `now` say how long until ± W: the predicted half-width
    HOLDOVER_AT_S after the silence; the silent interval stays within W until then and exceeds it after."""
    since_s = (scenario.holdover_cli["ran_at_boottime_ns"] - scenario.predicted_at[1]) / NS_PER_S
    for doc in (scenario.holdover_cli["holdover"], scenario.now_cli["holdover"]):
        assert doc["width_s"] == pytest.approx(scenario.width_s, rel=1e-6) and not doc["capped"]
        assert doc["seconds"] == pytest.approx(HOLDOVER_AT_S - since_s, abs=2.5 + 0.02 * HOLDOVER_AT_S), doc
    per_server = [r["holdover_s"] for r in scenario.holdover_cli["results"]]
    assert len(per_server) == 3 and all(s is not None and s > 0 for s in per_server)
    for c in scenario.checks:
        half = (c.hi_s - c.lo_s) / 2
        if c.ahead_s <= HOLDOVER_AT_S - 2:
            assert half <= scenario.width_s, (c.ahead_s, half, scenario.width_s)
        elif c.ahead_s >= HOLDOVER_AT_S + 2:
            assert half > scenario.width_s, (c.ahead_s, half, scenario.width_s)


def test_stability_measured_for_the_references_and_used_by_the_interval(scenario: Scenario) -> None:
    results = {r["server"]: r for r in scenario.holdover_cli["results"]}
    for n in REFS:
        r = results[scenario.addr[n]]
        assert r["status"] == "ok" and r["in_interval_growth"], r["reason"]
        assert r["tau_s"][0] == pytest.approx(INTERVAL_S, rel=0.05) and len(r["adev"]) >= 4
        # a chronyd reference read through the lab shim: its phase noise is µs, far below the ports'
        assert r["tdev"][0] < 100e-6


def test_events_named_with_size_and_instant(scenario: Scenario) -> None:  # FAULTS H1, H3, H4, H5
    by_name = {r["server"]: r for r in scenario.events_json["results"]}
    start_ns = scenario.lab.server("stepper").start_ns
    at_s = {n: [((e["t_ns"] - start_ns) / NS_PER_S, e) for e in by_name[scenario.addr[n]]["events"]]
            for n in ("stepper", "freq", "glitchy")}
    (t_step, step), = at_s["stepper"]
    assert step["kind"] == "step" and step["size"] == pytest.approx(STEP_S, abs=2e-3)
    assert t_step == pytest.approx(EVENT_AT_S, abs=INTERVAL_S * 2 + 0.5)
    (t_freq, freq), = at_s["freq"]
    assert freq["kind"] == "frequency_change" and freq["lo"] <= FREQ_CHANGE_PPM <= freq["hi"], freq
    assert t_freq == pytest.approx(EVENT_AT_S, abs=3.0)
    glitches = at_s["glitchy"]
    assert glitches and all(e["kind"] == "spike" and e["size"] == pytest.approx(GLITCH_S, abs=1.5e-3)
                            for _, e in glitches), glitches
    quiet = [n for n in (*REFS, "survivor") if by_name[scenario.addr[n]]["events"]]
    assert quiet == [], [by_name[scenario.addr[n]] for n in quiet]
    for n in NOISE_PORTS:  # noise the bars do not cover: nothing claimed
        assert by_name[scenario.addr[n]]["events"] == [], by_name[scenario.addr[n]]
    record_figure("stability lab", f"events: step {step['size'] * 1e3:+.2f} ms at {t_step:.2f} s, frequency "
                  f"change {freq['size']:+.1f} ppm [{freq['lo']:+.1f}, {freq['hi']:+.1f}] at {t_freq:.1f} s, "
                  f"{len(glitches)} glitch spike(s) (truth: +50 ms and +80 ppm at {EVENT_AT_S:.0f} s, +8 ms)")
