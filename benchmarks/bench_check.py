"""`check`: `timekit check` as a monitoring plugin, wall time from exec to exit, against Debian's
check_ntp_time (monitoring-plugins-basic) in the same run, on one loopback chronyd server.

Rows: store mode (`timekit check --db` of a store holding an hour of that server's samples: what
NRPE runs every few minutes), against check_ntp_time's one query; and measure mode (`timekit check
-H` with its default 4-query burst) against check_ntp_time's. Median of RUNS runs each,
interleaved, after one discarded warm-up of each. Store-mode target: <= 0.25 s.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.common import BenchResult, median, mono_s, stopping
from timekit.lab.manager import ChronySpec, start_lab

RUNS = 7
TIMEOUT_S = 30.0
STORE_LIMIT_S = 0.25
CHECK_NTP_TIME = Path("/usr/lib/nagios/plugins/check_ntp_time")


def _timekit() -> str:
    here = Path(sys.executable).with_name("timekit")
    exe = str(here) if here.exists() else shutil.which("timekit")
    if exe is None:
        raise RuntimeError("timekit console script not found (pip install -e .)")
    return exe


def _time(argv: list[str]) -> float:
    """Wall time (s) of one plugin run; a plugin's exit status 0-3 is a verdict, anything else fails."""
    t0 = mono_s()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT_S)
    dt = mono_s() - t0
    if r.returncode not in (0, 1, 2, 3) or not r.stdout:
        raise RuntimeError(f"{argv} exited {r.returncode}: {r.stderr.decode(errors='replace')[-200:]}")
    return dt


def run(quick: bool, workdir: Path) -> BenchResult:
    res = BenchResult("check")
    if not CHECK_NTP_TIME.exists():
        res.notes.append("check_ntp_time missing (apt-get install monitoring-plugins-basic): no peer")
    lab = start_lab(workdir / "check-lab", chrony=(ChronySpec("near", 0.002, 20.0),), good_ports=(),
                    fault_kinds=(), detach=False)
    with stopping(lab):
        host, port = lab.server("near").address.rsplit(":", 1)
        db = workdir / "check.db"
        for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            p.unlink(missing_ok=True)
        tk = _timekit()
        # a store like a collect-every-minute host's: 60 bursts of 4 (taken back to back here)
        subprocess.run([tk, "sample", "ntp", f"{host}:{port}", "--count", "240", "--interval", "0",
                        "--db", str(db)], capture_output=True, timeout=120, check=True)
        cases = {
            "store": ([tk, "check", "--db", str(db)], [str(CHECK_NTP_TIME), "-H", host, "-p", port]),
            "measure": ([tk, "check", "-H", host, "-p", port, "--db", str(workdir / "measure.db")],
                        [str(CHECK_NTP_TIME), "-H", host, "-p", port]),
        }
        have_peer = CHECK_NTP_TIME.exists()
        times: dict[str, tuple[list[float], list[float]]] = {}
        for name, (ours, theirs) in cases.items():
            _time(ours)
            if have_peer:
                _time(theirs)
            a: list[float] = []
            b: list[float] = []
            for _ in range(3 if quick else RUNS):
                a.append(_time(ours))
                if have_peer:
                    b.append(_time(theirs))
            times[name] = (a, b)
    for name, (a, b) in times.items():
        words = {"store": "`timekit check --db` (store mode, 240 samples)",
                 "measure": "`timekit check -H` (4-query burst)"}[name]
        res.row(words, "ms", (median(a) or 0) * 1e3, "check_ntp_time -H (1 query)",
                None if not b else (median(b) or 0) * 1e3, f"median of {len(a)}")
    store_med = median(times["store"][0]) or 0.0
    res.notes.append(f"{'OK' if store_med <= STORE_LIMIT_S else 'TOO SLOW'}: store-mode check median "
                     f"{store_med * 1e3:.0f} ms (target {STORE_LIMIT_S * 1e3:.0f} ms)")
    res.details = {"runs_s": {k: {"timekit": v[0], "check_ntp_time": v[1]} for k, v in times.items()}}
    return res
