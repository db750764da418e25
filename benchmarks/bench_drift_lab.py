"""`drift_lab`: drift and its interval after 30-120 s of 4 Hz sampling, timekit against a chronyd client
polling the same loopback chronyd (+50 ms, gaining 100 ppm), both scored against the lab's truth.

timekit samples with `timekit sample ntp` (one process, every attempt stored); at 30, 60, 90 and 120 s
its drift fit over every sample so far (`analyze drift --since`'s fit) gives the drift and its 95 %
interval; chronyd's `tracking` gives its frequency and skew at the same instants (skew: chrony's
"estimated error bound on the frequency"). Truth: this clock runs 100 ppm slow against the server,
drift −100 ppm in timekit's sign (chrony's "100 ppm slow" is −100 in its CSV too).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import BenchResult, free_udp_port, mono_s, realtime_ns, stopping
from timekit.lab.chrony import ChronyClient, ChronyServer
from timekit.pipeline.assess import assess_store
from timekit.store.database import Store
from timekit.units import NS_PER_S

OFFSET_S = 0.050
SERVER_DRIFT_PPM = 100.0
TRUE_DRIFT_PPM = -SERVER_DRIFT_PPM  # this clock against the server
RATE_HZ = 4.0
CHECKPOINTS_S = {False: (30.0, 60.0, 90.0, 120.0), True: (15.0, 30.0)}


def run(quick: bool, workdir: Path) -> BenchResult:
    """Run the drift-interval benchmark (~125 s, 32 s with `quick`)."""
    res = BenchResult("drift_lab")
    checkpoints = CHECKPOINTS_S[quick]
    workdir.mkdir(parents=True, exist_ok=True)
    srv = ChronyServer.start(free_udp_port(), OFFSET_S, SERVER_DRIFT_PPM, workdir / "drift-server")
    with stopping(srv):
        cli = ChronyClient.start(srv.port, workdir / "drift-client", poll=-2)
        with stopping(cli):
            db = workdir / "drift-lab.db"
            for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                p.unlink(missing_ok=True)
            Store.open(db).close()
            count = int((checkpoints[-1] + 5) * RATE_HZ)
            t0_ns, t0 = realtime_ns(), mono_s()
            sampler = subprocess.Popen(
                [sys.executable, "-m", "timekit.cli", "sample", "ntp", srv.address, "--count", str(count),
                 "--interval", str(1 / RATE_HZ), "--db", str(db), "--json"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            points = []
            try:
                with Store.open(db) as store:
                    for at in checkpoints:
                        time.sleep(max(0.0, t0 + at - mono_s()))
                        a = assess_store(store, since_ns=t0_ns, per_server=None)
                        s = a.server(srv.address)
                        tr = cli.tracking()
                        points.append({
                            "t_s": at, "timekit_drift_ppm": s.drift_ppm if s else None,
                            "timekit_ci95_ppm": list(s.drift_ci95_ppm) if s and s.drift_ci95_ppm else None,
                            "timekit_n": s.n_ok if s else 0,
                            "chronyd_frequency_ppm": tr["frequency_ppm"], "chronyd_skew_ppm": tr["skew_ppm"],
                        })
            finally:
                sampler.terminate()
                sampler.wait(timeout=10)

    def tk_holds(p: dict) -> bool:
        ci = p["timekit_ci95_ppm"]
        return ci is not None and ci[0] <= TRUE_DRIFT_PPM <= ci[1]

    def chrony_holds(p: dict) -> bool:
        return abs(p["chronyd_frequency_ppm"] - TRUE_DRIFT_PPM) <= p["chronyd_skew_ppm"]

    last = points[-1]
    tk_half = None
    if last["timekit_ci95_ppm"] is not None:
        tk_half = (last["timekit_ci95_ppm"][1] - last["timekit_ci95_ppm"][0]) / 2
    at = f"at {last['t_s']:g} s of {RATE_HZ:g} Hz"
    res.row("drift interval half-width", "ppm", tk_half, "chronyd skew", last["chronyd_skew_ppm"],
            f"{at}; timekit: 95 % CI")
    res.row("drift error", "ppm", None if last["timekit_drift_ppm"] is None
            else abs(last["timekit_drift_ppm"] - TRUE_DRIFT_PPM), "chronyd",
            abs(last["chronyd_frequency_ppm"] - TRUE_DRIFT_PPM), f"{at}; |estimate - truth|")
    instants = ", ".join(f"{p['t_s']:g}" for p in points)
    res.row("intervals containing the truth", "%", 100.0 * sum(map(tk_holds, points)) / len(points),
            "chronyd", 100.0 * sum(map(chrony_holds, points)) / len(points), f"at {instants} s")
    res.details = {"points": points, "true_drift_ppm": TRUE_DRIFT_PPM, "t0_ns": t0_ns, "ns_per_s": NS_PER_S}
    return res
