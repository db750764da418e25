"""A leap second on the lab (about 40 s): two references step it, three smear it, and timekit says so.

Four fault-server references, their clocks placed so that the leap second 2016-12-31 23:59:60 UTC
comes LEAP_AFTER_S after their start, announce it (leap indicator 1) until then. Two step it (1 s
back at once), two smear it linearly over SMEAR_S (Google's leap smear, compressed). The fifth is a
real chronyd under libfaketime, its clock placed on the same leap day, synchronised to an upstream
fault port (stratum 1, announcing the leap, stepping it) and serving smeared time the way chrony
documents a server leap smear (`leapsecmode slew` + `smoothtime MAXFREQ MAXWANDER leaponly`, here
100,000 ppm and 50,000 ppm/s so the second is gone in 12 s, not 17 h). Sampled at 4 Hz to the
middle of the smear, `now`, `check`, `analyze skew` and `analyze events` must name the timescales,
with each smear's progress as its truth has it; sampled on past the smears' end, the references
agree again and no split is claimed.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import record_figure, require_lab, run_cli
from timekit.collectors.clocks import realtime_ns
from timekit.lab.chrony import ChronyServer, lab_prerequisites
from timekit.lab.faultserver import PortSpec, leap_applied_at
from timekit.lab.manager import free_port, reap, start_fault_server
from timekit.units import NS_PER_S

LEAP_END_NS = 1_483_228_800 * NS_PER_S  # 2017-01-01 00:00:00 UTC: the end of the inserted second
LEAP_AFTER_S, SMEAR_S = 8.0, 16.0  # chronyd synchronises to its upstream in the first seconds
# chronyd's smoothing of the served time: the frequency ramps at most MAX_WANDER (ppm/s) to at most
# MAX_FREQ (ppm) and back: 2 s up (0.1 s), 8 s at 100,000 ppm (0.8 s), 2 s down (0.1 s)
CHRONY_MAX_FREQ_PPM, CHRONY_MAX_WANDER_PPM_S = 100_000.0, 50_000.0
MID_S, END_S = LEAP_AFTER_S + SMEAR_S / 2, LEAP_AFTER_S + SMEAR_S + 4.0
INTERVAL_S = 0.25


def chrony_smear_applied_s(since_leap_s: float) -> float:
    """How much of the leap second chronyd's smoothing has taken back `since_leap_s` after it, s:
    the served frequency ramps up at MAX_WANDER to MAX_FREQ, cruises, and ramps down (smooth.c's
    three stages for a 1 s offset whose ramps meet MAX_FREQ)."""
    w, f = CHRONY_MAX_WANDER_PPM_S * 1e-6, CHRONY_MAX_FREQ_PPM * 1e-6
    ramp_s = f / w
    ramp_applied = w * ramp_s ** 2 / 2
    cruise_s = (1.0 - 2 * ramp_applied) / f
    t = max(0.0, since_leap_s)
    if t <= ramp_s:
        return w * t ** 2 / 2
    if t <= ramp_s + cruise_s:
        return ramp_applied + f * (t - ramp_s)
    left = max(0.0, 2 * ramp_s + cruise_s - t)
    return 1.0 - w * left ** 2 / 2


@dataclass
class LeapRun:
    start_ns: int
    specs: dict[str, PortSpec]  # address -> spec
    chrony: str  # the smearing chronyd's address (its truth: its upstream's line, smoothed)
    mid: dict[str, dict]  # command -> its JSON, at the middle of the smear
    mid_check: str
    mid_last_ns: int  # the newest sample's instant at that point
    end: dict[str, dict]


def _sample_until(addrs: list[str], db: Path, start_ns: int, until_s: float) -> None:
    left_s = until_s - (realtime_ns() - start_ns) / NS_PER_S
    r = run_cli("sample", "ntp", *addrs, "--count", str(max(1, int(left_s / INTERVAL_S))), "--interval",
                str(INTERVAL_S), "--timeout", "0.5", db=db)
    assert r.returncode == 0, r.stderr


def _docs(db: Path) -> dict[str, dict]:
    out = {}
    for name, args in (("now", ("now",)), ("events", ("analyze", "events")), ("skew", ("analyze", "skew"))):
        r = run_cli(*args, "--json", db=db)
        out[name] = {"rc": r.returncode, **json.loads(r.stdout)}
    return out


@pytest.fixture(scope="module")
def leap_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LeapRun]:
    require_lab(lab_prerequisites())
    tmp = tmp_path_factory.mktemp("leap")
    start_ns = realtime_ns() + NS_PER_S // 2  # every port's offset is given at this instant
    offset_s = (LEAP_END_NS - start_ns) / NS_PER_S - LEAP_AFTER_S  # 23:59:60 ends LEAP_AFTER_S after start
    common = dict(offset_s=offset_s, drift_ppm=-30.0, leap_after_s=LEAP_AFTER_S)
    specs = [PortSpec(name=f"step-{x}", leap_mode="step", **common) for x in "ab"]  # type: ignore[arg-type]
    specs += [PortSpec(name=f"smear-{x}", leap_mode="smear", leap_smear_s=SMEAR_S, **common)  # type: ignore[arg-type]
              for x in "cd"]
    # chronyd's upstream: a primary (stratum 1, refid GPS: chronyd refuses a source whose reference
    # is its own address) that announces and steps the leap; not itself one of timekit's references
    upstream = PortSpec(name="upstream", leap_mode="step", stratum=1, refid="GPS", **common)  # type: ignore[arg-type]
    pid, ready = start_fault_server(tmp / "lab", [*specs, upstream], detach=False, start_ns=start_ns)
    chrony: ChronyServer | None = None
    try:
        by_addr = {f"{p['host']}:{p['port']}": PortSpec(**p) for p in ready["ports"]}
        up_port = next(p["port"] for p in ready["ports"] if p["name"] == "upstream")
        since_s = (realtime_ns() - start_ns) / NS_PER_S
        chrony = ChronyServer.start(
            free_port(), offset_s + common["drift_ppm"] * 1e-6 * since_s, common["drift_ppm"],
            tmp / "chrony-smear", stratum=2, check_truth=False,
            extra_conf=(f"server 127.0.0.1 port {up_port} iburst minpoll -4 maxpoll -4\n"
                        "leapsecmode slew\nmaxslewrate 1000\n"
                        f"smoothtime {CHRONY_MAX_FREQ_PPM:g} {CHRONY_MAX_WANDER_PPM_S:g} leaponly\n"))
        by_addr = {a: s for a, s in by_addr.items() if s.name != "upstream"}
        addrs = sorted([*by_addr, chrony.address])
        db = tmp / "tk.db"
        _sample_until(addrs, db, start_ns, MID_S)
        mid_last_ns = realtime_ns()
        mid = _docs(db)
        check = run_cli("check", db=db)
        _sample_until(addrs, db, start_ns, END_S)
        yield LeapRun(start_ns, by_addr, chrony.address, mid, f"{check.returncode} {check.stdout}",
                      mid_last_ns, _docs(db))
    finally:
        if chrony is not None:
            chrony.stop()
        os.kill(pid, signal.SIGTERM)
        reap(pid)


def _names(run: LeapRun, mode: str) -> set[str]:
    """The references that step (`step`) or smear (`smear`: the two fault ports and chronyd)."""
    extra = {run.chrony} if mode == "smear" else set()
    return {a for a, s in run.specs.items() if s.leap_mode == mode} | extra


def test_the_two_timescales_are_named_mid_smear(leap_run: LeapRun) -> None:  # FAULTS C6, H8
    """`now` has no majority and says why: who stepped the leap second, who smears it and how far."""
    now, leap = leap_run.mid["now"], leap_run.mid["events"]["leap"]
    assert now["rc"] == 1 and now["status"] == "unknown", now
    reason = now["reason"]
    assert reason.startswith("leap second inserted ending 2017-01-01 00:00:00 UTC: "), reason
    stepped, smeared = reason.split(" stepped it ")[0], reason.split(", while ")[1].split(" smear it ")[0]
    assert set(stepped.split(": ", 1)[1].split(", ")) == _names(leap_run, "step"), reason
    assert set(smeared.split(", ")) == _names(leap_run, "smear"), reason
    assert "no majority" in reason and "two timescales" in reason
    assert leap is not None and leap["split"] and leap["inserted"] and leap["leap_ns"] == LEAP_END_NS
    behaviour = {s["server"]: s for s in leap["servers"]}
    # chronyd's smoothing as smooth.c ramps it (within 25 ms: when its leap timer fires, its tracking)
    got = behaviour[leap_run.chrony]
    since_leap_s = (got["t_ns"] - leap_run.start_ns) / NS_PER_S - LEAP_AFTER_S
    assert got["behaviour"] == "smearing", got
    expected = -chrony_smear_applied_s(since_leap_s)
    assert got["size_s"] == pytest.approx(expected, abs=0.025), (got, since_leap_s, expected)
    assert 0.5 * CHRONY_MAX_FREQ_PPM <= got["rate_ppm"] <= 1.5 * CHRONY_MAX_FREQ_PPM, got
    record_figure("leap lab", f"chronyd smearing (smoothtime leaponly): {got['size_s']:+.4f} s applied "
                  f"{since_leap_s:.2f} s after the leap, smooth.c's ramp says {expected:+.4f} s; "
                  f"fastest {got['rate_ppm']:,.0f} ppm")
    for addr, spec in leap_run.specs.items():
        got = behaviour[addr]
        if spec.leap_mode == "step":
            assert got["behaviour"] == "stepped" and got["size_s"] == pytest.approx(-1.0, abs=5e-3), got
        else:  # how far the smear had gone at its newest sample: the truth at that instant, within 20 ms
            elapsed_s = (got["t_ns"] - leap_run.start_ns) / NS_PER_S
            truth = leap_applied_at(elapsed_s, LEAP_AFTER_S, "smear", SMEAR_S)
            assert got["behaviour"] == "smearing", got
            assert got["size_s"] == pytest.approx(truth, abs=0.02), (got, truth)
            assert 0.5 * 1e6 / SMEAR_S <= got["rate_ppm"] <= 3 * 1e6 / SMEAR_S, got  # 62,500 ppm: 1 s / 16 s
    record_figure("leap lab", f"mid-smear: {reason.split('; ')[0]}")


def test_check_skew_and_events_say_it_too(leap_run: LeapRun) -> None:  # FAULTS C6, H8
    assert leap_run.mid_check.startswith("2 TIMEKIT CRITICAL - references disagree: leap second inserted")
    skew = leap_run.mid["skew"]  # the leap guard: nobody is moved while two honest timescales disagree
    assert skew["held"], skew
    assert skew["reason"].startswith("held: leap guard: leap second inserted"), skew["reason"]
    assert {n["status"] for n in skew["nodes"]} == {"ok"}, skew
    kinds = {e["server"]: e["kind"] for e in leap_run.mid["events"]["events"]}
    assert {a for a, k in kinds.items() if k == "leap_step"} == _names(leap_run, "step")
    assert {a for a, k in kinds.items() if k == "leap_smear"} == _names(leap_run, "smear")
    assert not [e for e in leap_run.mid["events"]["events"] if e["kind"] == "step"]  # the leap is no fault


def test_once_the_smear_is_over_they_agree_and_no_split_is_claimed(leap_run: LeapRun) -> None:  # FAULTS H8
    end = leap_run.end
    leap = end["events"]["leap"]
    assert leap is not None and not leap["split"], leap
    assert {s["behaviour"] for s in leap["servers"]} == {"stepped", "smeared"}, leap
    assert end["now"]["rc"] == 0 and end["now"]["quorum"], end["now"]["reason"]
    assert not end["now"]["reason"].startswith("leap second"), end["now"]["reason"]
    assert not end["now"]["falsetickers"], end["now"]
    # the interval holds every reference's truth once more (all four on one timescale)
    now = end["now"]
    for spec in leap_run.specs.values():
        true_offset_s = spec.server_offset_s(now["as_of_ns"], leap_run.start_ns)
        truth_ns = now["as_of_ns"] + round(true_offset_s * NS_PER_S)
        assert now["earliest_ns"] <= truth_ns <= now["latest_ns"], (spec.name, now)
