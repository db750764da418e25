"""The local clock under real faults (FAULTS C2-C5), the host's own clocks untouched.

A wall-clock step or slew is put into one timekit process with `tests/fake_clock.c` (LD_PRELOAD:
CLOCK_REALTIME moved by a known offset or rate, monotonic slewed with it as the kernel does, RAW
never); a suspend is a time namespace whose CLOCK_BOOTTIME runs ahead of CLOCK_MONOTONIC, as
after a sleep (`unshare --time --boottime`). The references are fault-server ports on loopback
with a known offset, so every interval is checked against the truth.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_lab, run_cli
from timekit.lab.faultserver import PortSpec
from timekit.lab.manager import reap, start_fault_server
from timekit.store import Store
from timekit.units import NS_PER_S

TRUTH_S = 0.005  # every reference's offset (reference − real local clock): one truth, no spread
SOURCE = Path(__file__).with_name("fake_clock.c")


@pytest.fixture(scope="module")
def fake_clock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compiled instrument."""
    gcc = shutil.which("gcc")
    require_lab([] if gcc else ["gcc not found (needed to build tests/fake_clock.c)"])
    out = tmp_path_factory.mktemp("fake_clock") / "fake_clock.so"
    subprocess.run([str(gcc), "-shared", "-fPIC", "-O2", "-Wall", "-o", str(out), str(SOURCE),
                    "-ldl"], check=True, capture_output=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Three agreeing references on loopback, all at TRUTH_S."""
    specs = [PortSpec(name=f"ref{i}", offset_s=TRUTH_S) for i in range(3)]
    pid, ready = start_fault_server(tmp_path_factory.mktemp("refs"), specs, detach=False)
    yield [f"{p['host']}:{p['port']}" for p in ready["ports"]]
    os.kill(pid, signal.SIGTERM)
    reap(pid)


def faked(lib: Path, offset_s: float = 0.0, slew_ppm: float = 0.0, monotonic: bool = False) -> dict[str, str]:
    """The environment that puts a timekit process under the fault."""
    return {**os.environ, "LD_PRELOAD": str(lib), "TK_FAKE_OFFSET_NS": str(round(offset_s * NS_PER_S)),
            "TK_FAKE_SLEW_PPM": repr(slew_ppm), "TK_FAKE_SLEW_MONOTONIC": "1" if monotonic else "0"}


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def measure(db: Path, refs: list[str], **kw: object) -> list[dict]:
    """A short clock run then a burst to the references, as one cron run does; the samples."""
    ok(run_cli("sample", "clocks", "--duration", "0.2", "--rate", "20", db=db, **kw))
    doc = json.loads(ok(run_cli("sample", "ntp", *refs, "--count", "4", "--interval", "0.05",
                                "--timeout", "1", "--json", db=db, **kw)))
    assert len(doc["samples"]) == 12 and all(s["ok"] for s in doc["samples"]), doc["samples"]
    return doc["samples"]


def ntp_bound_s(samples: list[dict]) -> float:
    """How wide an honest interval from these samples may be, s: their largest root distance (NTP's own
    bound) plus 200 ppm (the default drift bound) over the 30 s a test's few commands may take."""
    root_distance_s = max(s["delay_s"] / 2 + s["root_delay_s"] / 2 + s["root_dispersion_s"] for s in samples)
    return root_distance_s + 200e-6 * 30


def assert_contains_truth(now: dict, *, max_half_width_s: float) -> None:
    """The truth at `now`'s instant is its as_of + TRUTH_S (the references' offset from the clock
    it ran on, which is the real one or, after a staged suspend, where the real one would be)."""
    truth_ns = now["as_of_ns"] + round(TRUTH_S * NS_PER_S)
    assert now["earliest_ns"] <= truth_ns <= now["latest_ns"], now
    assert now["uncertainty_s"] <= max_half_width_s, now


@pytest.mark.parametrize("step_s", [100.0, -100.0, 1e5, -1e5])
def test_a_wall_clock_step_is_an_event_and_ntp_agreeing_afterwards_is_ok(
        fake_clock: Path, refs: list[str], tmp_path: Path, step_s: float) -> None:  # FAULTS C2
    """Before: the local clock was `step_s` behind (every reference says so). NTP steps it (the
    process runs on the real clock from then on). The step is recorded with its sign and size; the
    references agree with the local clock again, so check is OK, `self` is not quarantined, and the
    interval contains the truth at its usual width: the step alone costs nothing."""
    db = tmp_path / "t.db"
    before = measure(db, refs, env=faked(fake_clock, offset_s=-step_s))
    for s in before:  # the wrong clock, measured as it was: the truth plus the step it lacks
        assert abs(s["offset_s"] - (TRUTH_S + step_s)) <= s["delay_s"] / 2 + 1e-4, s
        # the kernel's stamps carry the real clock: the instrument refuses them, T1 and T4 are user reads
        assert (s["tx_timestamp"], s["rx_timestamp"], s["tx_latency_ns"]) == ("user", "user", None), s
    after = measure(db, refs)
    for s in after:
        assert abs(s["offset_s"] - TRUTH_S) <= s["delay_s"] / 2 + 1e-4, s
        assert (s["tx_timestamp"], s["rx_timestamp"]) == ("kernel", "kernel"), s
    with Store.open(db, readonly=True) as st:
        events = st.clock_events()
    assert [e.kind for e in events] == ["step"], events  # no suspend, and no disruption: the step
    assert abs(events[0].magnitude_s - step_s) <= 1e-3, events  # explains it (the shim's offset, ±1 ms)

    now = json.loads(ok(run_cli("now", "--json", db=db)))
    assert now["status"] == "synchronized"
    assert_contains_truth(now, max_half_width_s=ntp_bound_s(after))
    check = run_cli("check", "--json", db=db)
    assert check.returncode == 0, (check.stdout, check.stderr)
    assert json.loads(check.stdout)["status"] == "ok"
    skew = json.loads(ok(run_cli("analyze", "skew", "--json", db=db)))
    nodes = {n["node"]: n for n in skew["nodes"]}
    assert skew["quorum"] and nodes["self"]["status"] == "ok", skew
    assert abs(nodes["self"]["offset_s"] - TRUTH_S) <= 1e-3, nodes["self"]  # the consensus − self


def time_namespace(boottime_s: int) -> list[str]:
    """The command prefix that runs a process whose CLOCK_BOOTTIME is `boottime_s` ahead of the
    host's (CLOCK_MONOTONIC unchanged): to it, the machine slept that long. Root or a user
    namespace is needed; without either the test is skipped (it fails in CI)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        require_lab(["unshare (util-linux) not found"])
    for extra in ([], ["--user", "--map-root-user"]):
        cmd = [str(unshare), *extra, "--time", f"--boottime={boottime_s}"]
        probe = subprocess.run([*cmd, "true"], capture_output=True, timeout=10)
        if probe.returncode == 0:
            return cmd
    require_lab([f"time namespaces unavailable: {probe.stderr.decode(errors='replace').strip()}"])
    return []


def test_a_ten_minute_suspend_is_seen_and_the_interval_grows_over_it(
        fake_clock: Path, refs: list[str], tmp_path: Path) -> None:  # FAULTS C4
    """Evidence, then 600 s of sleep: to the process after it, boottime and realtime are 600 s on
    and monotonic is not (a time namespace and the instrument). That run records a 600 s suspend
    and no step; `now` ages the evidence over boottime, not monotonic, so the status is
    free-running and the interval has grown by the drift bound over those 600 s (a monotonic
    extrapolation would claim 600 s less age and a narrow interval), and it still holds the truth."""
    db = tmp_path / "t.db"
    samples = measure(db, refs)
    awake = json.loads(ok(run_cli("now", "--json", db=db)))
    assert awake["status"] == "synchronized"
    assert_contains_truth(awake, max_half_width_s=ntp_bound_s(samples))

    slept, woken = time_namespace(600), faked(fake_clock, offset_s=600.0)
    ok(run_cli("sample", "clocks", "--duration", "0.2", db=db, prefix=slept, env=woken))
    with Store.open(db, readonly=True) as st:
        events = st.clock_events()
    assert [e.kind for e in events] == ["suspend"], events
    assert abs(events[0].magnitude_s - 600.0) <= 0.01, events
    now = json.loads(ok(run_cli("now", "--json", db=db, prefix=slept, env=woken)))
    assert now["status"] == "free_running", now
    # the 200 ppm default drift bound over 600 s of age: 0.12 s more on each side than before
    assert now["uncertainty_s"] >= awake["uncertainty_s"] + 600 * 200e-6, (now, awake)
    assert_contains_truth(now, max_half_width_s=1.0)


SLEWS = ((500.0, True), (83_333.0, True), (83_333.0, False))  # (ppm, monotonic slewed with it)


def test_a_slew_for_a_minute_is_not_a_step_and_its_rate_is_measured(
        fake_clock: Path, tmp_path: Path) -> None:  # FAULTS C3
    """The wall clock slewed for 60 s at ntpd's 500 ppm and at chronyd's fastest, 83 333 ppm
    (monotonic slewed with it, as the kernel does, or the wall clock alone): no step event however
    far it runs (5 s at 83 333 ppm), and the slew is measured against CLOCK_MONOTONIC_RAW. The three
    runs go at once, each with its own store."""
    rt0, raw0 = time.clock_gettime_ns(time.CLOCK_REALTIME), time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
    procs = [subprocess.Popen([sys.executable, "-m", "timekit.cli", "sample", "clocks", "--duration", "60",
                               "--rate", "5", "--json", "--db", str(tmp_path / f"{i}.db")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=faked(fake_clock, slew_ppm=ppm, monotonic=mono))
             for i, (ppm, mono) in enumerate(SLEWS)]
    outs = [p.communicate(timeout=120) for p in procs]
    rt1, raw1 = time.clock_gettime_ns(time.CLOCK_REALTIME), time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
    # what the host's own kernel slewed meanwhile, measured around the runs on the real clocks
    host_ppm = ((rt1 - rt0) / (raw1 - raw0) - 1) * 1e6
    for i, ((ppm, _mono), p, (out, err)) in enumerate(zip(SLEWS, procs, outs, strict=True)):
        assert p.returncode == 0 and "Traceback" not in err, err
        clocks = json.loads(out)["clocks"]
        assert clocks["steps"] == [] and clocks["suspends"] == [], clocks
        expected = ((1 + host_ppm * 1e-6) * (1 + ppm * 1e-6) - 1) * 1e6
        assert abs(clocks["slew_ppm"] - expected) <= 2.0, (ppm, clocks["slew_ppm"], expected, host_ppm)
        with Store.open(tmp_path / f"{i}.db", readonly=True) as st:
            assert st.clock_events() == []


@pytest.mark.parametrize("slew_ppm", [500.0, 83_333.0, -83_333.0])
def test_the_interval_follows_a_kernel_slew_since_its_evidence(
        fake_clock: Path, refs: list[str], tmp_path: Path, slew_ppm: float) -> None:  # FAULTS C3
    """Evidence, then the kernel slews this clock (realtime and monotonic, never raw) for 4 s, at
    ntpd's 500 ppm or chronyd's fastest either way. The interval is carried on boottime, which the
    slew moves too: without following it, its centre was off by the whole slew (2 ms, 333 ms) at a
    half-width of ±1.4 to ±7 ms, `synchronized` and wrong. It now takes out what monotonic gained on
    raw beyond the kernel's frequency during the evidence, says so, and holds the truth."""
    db = tmp_path / "t.db"
    samples = measure(db, refs)
    rt0, raw0 = time.clock_gettime_ns(time.CLOCK_REALTIME), time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
    time.sleep(4.0)
    slewing = {**faked(fake_clock, slew_ppm=slew_ppm, monotonic=True), "TK_FAKE_SLEW_SINCE_RAW_NS": str(raw0)}
    now = json.loads(ok(run_cli("now", "--json", db=db, env=slewing)))
    rate = slew_ppm * 1e-6
    # the shim's clock is the real one plus rate × raw elapsed since raw0; the real instant of as_of
    # follows (the host's own rate against raw changes it by under 0.2 ms here)
    real_ns = (now["as_of_ns"] + rate * rt0) / (1 + rate)
    truth_ns = real_ns + TRUTH_S * NS_PER_S
    assert now["status"] == "synchronized", now
    assert now["earliest_ns"] <= truth_ns <= now["latest_ns"], (now, truth_ns)
    centre_ns = (now["earliest_ns"] + now["latest_ns"]) / 2
    # within NTP's own bound of the samples (and 0.3 ms for the truth's approximation above); the slew
    # taken out was 2 ms at the least (500 ppm × 4 s)
    off_ms = (centre_ns - truth_ns) / 1e6
    assert abs(off_ms) <= (max(s["delay_s"] for s in samples) / 2 + 3e-4) * 1e3, off_ms
    if abs(slew_ppm) > 1000:  # 333 ms: said in the reason
        assert "the kernel slewed this clock" in now["reason"], now["reason"]


def test_a_vm_pause_is_a_disruption_and_the_interval_follows_the_references(
        fake_clock: Path, tmp_path: Path) -> None:  # FAULTS C5
    """A VM paused 300 s: its realtime and monotonic froze, the world did not. Staged from the
    guest's side: the references, restarted on the same ports, are 300 s further on; then NTP steps
    the guest (the instrument moves its realtime +300 s). After the pause the fresh evidence lies
    outside the interval published before it: a `disruption` event and one warning line, the new
    interval holds the references' time and `self` is no longer `ok` (it is 300 s wrong); after the
    step, a step event, and all is well again."""
    db = tmp_path / "t.db"
    specs = [PortSpec(name=f"vm{i}", offset_s=TRUTH_S) for i in range(3)]
    pid, ready = start_fault_server(tmp_path / "before", specs, detach=False)
    refs = [f"{p['host']}:{p['port']}" for p in ready["ports"]]
    try:
        before_samples = measure(db, refs)
        before = json.loads(ok(run_cli("now", "--json", db=db)))
        assert before["status"] == "synchronized"
        assert_contains_truth(before, max_half_width_s=ntp_bound_s(before_samples))
    finally:
        os.kill(pid, signal.SIGTERM)
        reap(pid)
    paused = 300.0
    moved = [PortSpec(name=s.name, port=p["port"], offset_s=TRUTH_S + paused)
             for s, p in zip(specs, ready["ports"], strict=True)]
    pid, _ = start_fault_server(tmp_path / "after", moved, detach=False)
    try:
        clocks = run_cli("sample", "clocks", "--duration", "0.2", db=db)
        ok(clocks)
        burst = run_cli("sample", "ntp", *refs, "--count", "4", "--interval", "0.05", "--timeout", "1",
                        "--json", db=db)
        paused_samples = json.loads(ok(burst))["samples"]
        for s in paused_samples:
            assert abs(s["offset_s"] - (TRUTH_S + paused)) <= s["delay_s"] / 2 + 1e-4, s
        warned = [ln for ln in burst.stderr.splitlines() if "outside the interval published before" in ln]
        assert len(warned) == 1, burst.stderr
        with Store.open(db, readonly=True) as st:
            events = st.clock_events()
        assert [e.kind for e in events] == ["disruption"], events  # the local clocks saw nothing
        # the new evidence lies beyond the old interval's latest by the pause, less both half-widths
        both_s = ntp_bound_s(before_samples) + ntp_bound_s(paused_samples)
        assert paused - both_s <= events[0].magnitude_s <= paused, (events, both_s)
        paused_now = json.loads(ok(run_cli("now", "--json", db=db)))
        truth_ns = paused_now["as_of_ns"] + round((TRUTH_S + paused) * NS_PER_S)
        assert paused_now["earliest_ns"] <= truth_ns <= paused_now["latest_ns"], paused_now
        # the old regime is dropped, not averaged
        assert paused_now["uncertainty_s"] <= ntp_bound_s(paused_samples), paused_now
        skew = json.loads(ok(run_cli("analyze", "skew", "--json", db=db)))
        me = next(n for n in skew["nodes"] if n["node"] == "self")
        assert me["status"] != "ok" and abs(me["offset_s"] - (TRUTH_S + paused)) <= 1e-3, skew

        stepped = faked(fake_clock, offset_s=paused)  # NTP stepped the guest's wall clock
        stepped_samples = measure(db, refs, env=stepped)
        with Store.open(db, readonly=True) as st:
            events = st.clock_events()
        assert [e.kind for e in events] == ["disruption", "step"], events
        assert abs(events[1].magnitude_s - paused) <= 1e-3, events
        after = json.loads(ok(run_cli("now", "--json", db=db, env=stepped)))
        assert after["status"] == "synchronized"
        assert_contains_truth(after, max_half_width_s=ntp_bound_s(stepped_samples))
    finally:
        os.kill(pid, signal.SIGTERM)
        reap(pid)


def test_a_leap_smear_against_a_leap_step_is_two_clusters_and_nobody_is_quarantined(
        tmp_path: Path) -> None:  # FAULTS C6
    """Just after a leap second: two references smear it over the next 24 h (-11.574 ppm; this
    host follows them, 1 h in: 42 ms done), two stepped it at midnight (1 s back). Repeated
    committed skew checks see two clusters and no quorum, because self may not break the tie
    between the references: nobody is moved, not even `self`. `now` has no majority to vouch for an
    interval, so it says `unknown` and prints no narrow one."""
    smear_ppm = -1e6 / 86_400  # one second over a day
    specs = [PortSpec(name=f"smear-{n}", drift_ppm=smear_ppm) for n in "ab"]
    specs += [PortSpec(name=f"step-{n}", offset_s=-1.0) for n in "cd"]
    db = tmp_path / "t.db"
    pid, ready = start_fault_server(tmp_path / "leap", specs, detach=False)
    refs = [f"{p['host']}:{p['port']}" for p in ready["ports"]]
    try:
        for _ in range(4):  # four checks: past enter_after (3), were anyone judged beyond
            doc = json.loads(ok(run_cli("sample", "ntp", *refs, "--count", "2", "--interval", "0.05",
                                        "--timeout", "1", "--json", db=db)))
            assert len(doc["samples"]) == 8 and all(s["ok"] for s in doc["samples"])
            skew = json.loads(ok(run_cli("analyze", "skew", "--commit", "--json", db=db)))
            assert skew["committed"] and not skew["quorum"], skew
            assert skew["held"] and "2 clusters" in skew["reason"], skew
            assert {n["status"] for n in skew["nodes"]} == {"ok"}, skew  # nobody moved on a split
        now = run_cli("now", "--json", db=db)
        check = run_cli("check", db=db)
    finally:
        os.kill(pid, signal.SIGTERM)
        reap(pid)
    clusters = {frozenset(m[1].split(", ")): float(m[2])
                for m in re.finditer(r"\{([^}]*)\} at ([+-][\d.]+) s", skew["reason"])}
    assert clusters.keys() == {frozenset(refs[2:]), frozenset([*refs[:2], "self"])}, skew["reason"]
    assert abs(clusters[frozenset(refs[2:])] - -1.0) <= 1e-3  # node - local: the stepped pair, 1 s back
    doc = json.loads(now.stdout)
    assert now.returncode == 1 and doc["status"] == "unknown" and doc["earliest_ns"] is None, doc
    assert now.stderr.strip().endswith("no majority: only 2 of 4 agree (a majority needs 3)"), now.stderr
    assert check.returncode == 2 and check.stdout.startswith("TIMEKIT CRITICAL - references disagree")
