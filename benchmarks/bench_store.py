"""`store`: how long `check`, `now` and a Prometheus scrape take to read a month-old store.

A store of 30 days × 50 servers × 1 sample per minute (2.16 M rows; 7 days with --quick) is
written once, then each reader runs in-process (open the store, read the evidence once, assess
once, render), min of 5 runs: `check` (the verdict), `now` (the interval), a scrape (the text
exposition). Budget: ≤ 0.25 s each. The peer is the floor of the same question: SQLite counting
the rows the readers' window holds (`SELECT count(*)` over the last 28 h), in the same run. The
CLI wall time of `timekit check` (start-up included) is reported too.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
from pathlib import Path

from benchmarks.common import BenchResult, mono_s
from timekit.collectors.clocks import boot_id
from timekit.store.database import Store
from timekit.units import NS_PER_S

SERVERS = 50
PER_MIN_NS = 60 * NS_PER_S
RUNS = 5
BUDGET_S = 0.25
WINDOW_S = 28 * 3600  # what the readers look back over: void_after (4 h) + a day


def _build(db: Path, days: int) -> int:
    """Write the store (once per size); the newest sample of every server is a minute old."""
    if db.exists():
        with sqlite3.connect(db) as c:
            return int(c.execute("SELECT count(*) FROM ntp_samples").fetchone()[0])
    from timekit.store.evidence import read_now

    now_rt, now_bt = read_now()
    rng = random.Random(1)
    minutes = days * 1440
    here = boot_id()
    cols = ("server", "ok", "t_local_ns", "offset_s", "delay_s", "stratum", "leap", "root_delay_s",
            "root_dispersion_s", "boottime_ns", "boot_id")
    tmp = db.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with Store.open(tmp) as st:
        sql = f"INSERT INTO ntp_samples({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        for start in range(minutes, 0, -1440):
            rows = []
            for back in range(start, max(start - 1440, 0), -1):
                t = now_rt - back * PER_MIN_NS
                bt = now_bt - back * PER_MIN_NS
                this_boot = bt > 0
                for k in range(SERVERS):
                    rows.append((f"10.0.{k // 250}.{k % 250 + 1}:123", 1, t + k * 1_000_000,
                                 0.001 + rng.gauss(0, 50e-6), 0.0004 + abs(rng.gauss(0, 50e-6)), 2, 0, 0.0002,
                                 0.0001, bt + k * 1_000_000 if this_boot else None,
                                 here if this_boot else "an-older-boot"))
            with st.write() as c:
                c.executemany(sql, rows)
    tmp.rename(db)
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    return minutes * SERVERS


def _min_time(fn: object) -> float:
    best = float("inf")
    for _ in range(RUNS):
        t0 = mono_s()
        fn()  # type: ignore[operator]
        best = min(best, mono_s() - t0)
    return best


def run(quick: bool, workdir: Path) -> BenchResult:
    """Build (or reuse) the month store and time the three readers against the SQLite floor."""
    from timekit.analysis.assessment import Policy
    from timekit.outputs.check import check_store
    from timekit.outputs.metrics import exposition
    from timekit.pipeline.assess import assess_store

    res = BenchResult("store")
    days = 7 if quick else 30
    db = workdir / f"month-{days}d.db"
    t0 = mono_s()
    rows = _build(db, days)
    built_s = mono_s() - t0

    def check() -> None:
        with Store.open(db, create=False) as st:
            verdict = check_store(st, Policy())
            assert verdict.status == "ok", verdict.status_line()

    def now() -> None:
        with Store.open(db, create=False) as st:
            iv = assess_store(st).interval
            assert iv is not None and iv.earliest_ns is not None

    def scrape() -> None:
        assert b"timekit_clock_uncertainty_seconds" in exposition(db)

    def floor() -> None:
        from timekit.store.evidence import read_now

        since = read_now()[0] - WINDOW_S * NS_PER_S
        with sqlite3.connect(db) as c:
            c.execute("SELECT count(*) FROM ntp_samples WHERE ok = 1 AND t_local_ns >= ?",
                      (since,)).fetchone()

    base = _min_time(floor)
    for name, fn in (("check", check), ("now", now), ("scrape", scrape)):
        best = _min_time(fn)
        res.row(f"`{name}` reads a {days}-day, {SERVERS}-server store", "ms", best * 1e3,
                "sqlite count of the window", base * 1e3, f"min of {RUNS}; budget {BUDGET_S * 1e3:.0f} ms")
        res.notes.append(f"{'OK' if best <= BUDGET_S else 'OVER BUDGET'}: {name} {best * 1e3:.0f} ms")
    cli = []
    for _ in range(3):
        t0 = mono_s()
        subprocess.run([sys.executable, "-m", "timekit.cli", "check", "--db", str(db)], capture_output=True,
                       timeout=60, check=False)
        cli.append(mono_s() - t0)
    res.details = {"rows": rows, "build_s": built_s, "cli_check_wall_s": cli, "days": days}
    res.notes.append(f"`timekit check` from the command line (start-up included): {min(cli) * 1e3:.0f} ms")
    return res
