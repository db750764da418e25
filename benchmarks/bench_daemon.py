"""The host's time daemon as a suspect: does timekit catch a chronyd that follows a falseticker, and
does it leave an honest one alone? Measured against the lab's truth, same run, same references.

The majority lab (three chronyd and a jittery port at +20 ms / -30 ppm, a liar at +2.5 s) is sampled
by timekit at 4 Hz; two chronyd clients (`-x`: they never touch the clock) stand in for the host's
daemon: one follows honest-a, one the liar. Every 0.5 s each is read (`chronyc -c`), stored and judged
(`assess_store`). Scored against the truth: is the daemon's claim (offset ± root delay/2 + root
dispersion) really around true time, and did timekit say so? ClockBound, the peer, trusts the claim
as it is: it catches nothing by design. Also the cost of one reading against one bare `chronyc
tracking` call.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import BenchResult, median, mono_s, stopping
from timekit.analysis.time_daemon import gap_s
from timekit.collectors.time_daemon import read_daemon
from timekit.lab.chrony import ChronyClient
from timekit.lab.manager import MAJORITY_CHRONY, MAJORITY_GOOD_PORTS, start_lab
from timekit.pipeline.assess import assess_store
from timekit.store.database import Store

DURATION_S = {False: 30.0, True: 10.0}
READ_EVERY_S = 0.5
WARMUP_SAMPLES = 8  # chrony's samples of its source before its readings are scored


def _port(lab: object, name: str) -> int:
    return int(lab.server(name).address.rsplit(":", 1)[1])  # type: ignore[attr-defined]


def _synced(cli: ChronyClient, deadline: float) -> None:
    while mono_s() < deadline:
        d = read_daemon("chronyd", chronyc_socket=str(cli.sock))
        if d.synchronized and d.selected is not None and (d.selected.n_samples or 0) >= WARMUP_SAMPLES:
            return
        time.sleep(0.25)
    raise RuntimeError("chronyd client did not synchronize within 30 s")


def run(quick: bool, workdir: Path) -> BenchResult:
    """Run the daemon benchmark (~30 s of readings, 10 s with `quick`, plus lab start and warm-up)."""
    res = BenchResult("daemon")
    duration_s = DURATION_S[quick]
    workdir.mkdir(parents=True, exist_ok=True)
    lab = start_lab(workdir / "daemon-lab", chrony=MAJORITY_CHRONY, good_ports=MAJORITY_GOOD_PORTS,
                    fault_kinds=(), detach=False)
    with stopping(lab):
        honest = ChronyClient.start(_port(lab, "honest-a"), workdir / "daemon-honest", poll=-2)
        liar = ChronyClient.start(_port(lab, "liar"), workdir / "daemon-liar", poll=-2)
        with stopping(honest, liar):
            deadline = mono_s() + 30.0
            _synced(honest, deadline)
            _synced(liar, deadline)
            db = workdir / "daemon.db"
            for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                p.unlink(missing_ok=True)
            Store.open(db).close()
            addrs = [s.address for s in lab.servers]
            count = int((duration_s + 3) / 0.25)
            sampler = subprocess.Popen(
                [sys.executable, "-m", "timekit.cli", "sample", "ntp", *addrs, "--count", str(count),
                 "--interval", "0.25", "--db", str(db), "--json"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            rows: dict[str, list[dict[str, float | bool | str]]] = {"honest": [], "liar": []}
            read_ms: list[float] = []
            assess_ms: list[float] = []
            try:
                time.sleep(2.5)  # a burst of every reference first
                end = mono_s() + duration_s
                next_t = mono_s()
                with Store.open(db) as store:
                    while mono_s() < end:
                        for name, cli in (("honest", honest), ("liar", liar)):
                            t0 = mono_s()
                            d = read_daemon("chronyd", chronyc_socket=str(cli.sock))
                            read_ms.append((mono_s() - t0) * 1e3)
                            store.add_daemon_sample(d)
                            t1 = mono_s()
                            v = assess_store(store).daemon
                            assess_ms.append((mono_s() - t1) * 1e3)
                            assert v is not None
                            truth = lab.server("honest-a").true_offset_at(d.t_local_ns)
                            claim = v.claimed
                            rows[name].append({
                                "status": v.status, "suspect": v.suspect,
                                "claim_holds_truth": bool(claim and claim[0] <= truth <= claim[1]),
                                "claim_miss_us": ((gap_s(claim, (truth, truth)) * 1e6) if claim
                                                  else float("nan")),
                                "measured_holds_truth": bool(v.measured and v.measured[0] <= truth
                                                             <= v.measured[1]),
                                "excess_s": v.excess_s if v.excess_s is not None else float("nan"),
                            })
                        next_t += READ_EVERY_S
                        time.sleep(max(0.0, next_t - mono_s()))
            finally:
                sampler.terminate()
                sampler.wait(timeout=10)
            chronyc_ms = []
            for _ in range(20):
                t0 = mono_s()
                subprocess.run(["chronyc", "-n", "-c", "-h", str(honest.sock), "tracking"],
                               capture_output=True, check=True)
                chronyc_ms.append((mono_s() - t0) * 1e3)
    h, lr = rows["honest"], rows["liar"]

    def pct(xs: list[dict[str, float | bool | str]], key: str, value: object = True) -> float:
        return 100.0 * sum(1 for x in xs if x[key] == value) / len(xs) if xs else float("nan")

    caught = pct(lr, "status", "following_falseticker")
    res.row("liar-following chronyd caught", "%", caught, "ClockBound (trusts it)", 0.0,
            f"{len(lr)} readings; status following_falseticker")
    res.row("honest chronyd flagged suspect", "%", pct(h, "suspect"), "ClockBound (trusts it)", 0.0,
            f"{len(h)} readings (false alarms)")
    res.row("honest chronyd's claim missing the truth", "%", 100.0 - pct(h, "claim_holds_truth"), "-", None,
            "its own bound, scored against the lab's truth")
    res.row("timekit's interval holding the truth", "%",
            pct(h + lr, "measured_holds_truth"), "-", None, "at each reading's instant")
    res.row("read one daemon reading", "ms", median(read_ms), "chronyc tracking", median(chronyc_ms),
            "chronyc -m tracking sources sourcestats + clocks + adjtimex")
    res.row("assess the store with the daemon", "ms", median(assess_ms), "-", None)
    misses = [x["claim_miss_us"] for x in h if not x["claim_holds_truth"]]
    res.details = {
        "duration_s": duration_s,
        "honest": {k: pct(h, "status", k) for k in sorted({str(x["status"]) for x in h})},
        "liar": {k: pct(lr, "status", k) for k in sorted({str(x["status"]) for x in lr})},
        "honest_claim_miss_us": sorted(misses),
        "liar_excess_s_median": median([x["excess_s"] for x in lr]),  # type: ignore[misc]
        "read_ms_median": median(read_ms), "chronyc_tracking_ms_median": median(chronyc_ms),
        "sampler_stderr_tail": (sampler.stderr.read() if sampler.stderr else "")[-300:],
    }
    return res
