"""`sweep`: `timekit sample ntp` of a whole fleet from the command line, against ntplib.

One fault-server process serves N loopback ports (N = 200, 1,000, 5,000; 200 and 1,000 with
--quick), each answering after 20 ms with its own true offset (seeded, within ±50 ms). Measured
in the same run:

- timekit: the real CLI, `timekit sample ntp ADDR... --count 1 --json --db NEW`, wall time with
  start-up, storing every attempt and publishing the clock state; its peak RSS;
- ntplib one server after another (200 measured, larger sizes extrapolated linearly) and ntplib in
  a 64-thread pool (every size measured), both in-process and as a command (`python -c`, start-up
  and import included, as timekit's CLI is measured: the ratio's peer);
- where timekit's time goes, in-process: imports, sampling with storing (and the share spent in
  SQLite commits), publishing the clock state;
- correctness: every stored offset within NTP's bound (delay/2, + 20 µs for the server's own
  reading) of the port's truth, and every server answered.
"""

from __future__ import annotations

import os
import random
import resource
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ntplib

from benchmarks.common import BenchResult, mono_s, stop_pids
from timekit.lab.faultserver import PortSpec
from timekit.lab.manager import start_fault_server

DELAY_S = 0.020
SIZES = (200, 1000, 5000)
QUICK_SIZES = (200, 1000)
SEQUENTIAL_MEASURED = 200
POOL_THREADS = 64
TIMEOUT_S = 2.0
SLACK_S = 20e-6  # the fault server reads its clock a little after the packet arrived
CLI_CAP_S = 120.0


def _raise_fd_limit(need: int) -> None:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by the servers and the CLI we start)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))


def _ntplib_one(addr: tuple[str, int]) -> float | None:
    try:
        return float(ntplib.NTPClient().request(addr[0], port=addr[1], version=4, timeout=TIMEOUT_S).offset)
    except (ntplib.NTPException, OSError):
        return None


def _ntplib_sequential(ports: list[tuple[str, int]]) -> tuple[float, int]:
    t0 = mono_s()
    ok = sum(1 for p in ports if _ntplib_one(p) is not None)
    return mono_s() - t0, ok


def _ntplib_pool(ports: list[tuple[str, int]]) -> tuple[float, int]:
    t0 = mono_s()
    with ThreadPoolExecutor(POOL_THREADS) as pool:
        ok = sum(1 for r in pool.map(_ntplib_one, ports) if r is not None)
    return mono_s() - t0, ok


POOL_SCRIPT = f"""
import sys
from concurrent.futures import ThreadPoolExecutor
import ntplib
ports = [(h, int(p)) for h, p in (a.rsplit(":", 1) for a in open(sys.argv[1]).read().split())]
def one(addr):
    try:
        return ntplib.NTPClient().request(addr[0], port=addr[1], version=4, timeout={TIMEOUT_S!r}).offset
    except (ntplib.NTPException, OSError):
        return None
with ThreadPoolExecutor({POOL_THREADS}) as pool:
    ok = sum(1 for r in pool.map(one, ports) if r is not None)
print(ok)
"""


def _ntplib_pool_cli(addresses: list[str], workdir: Path) -> tuple[float, int]:
    """The pool as a command, start-up and import included (as timekit's CLI is measured)."""
    listing = workdir / "addresses.txt"
    listing.write_text("\n".join(addresses))
    t0 = mono_s()
    r = subprocess.run([sys.executable, "-c", POOL_SCRIPT, str(listing)], capture_output=True, text=True,
                       timeout=CLI_CAP_S, check=True)
    return mono_s() - t0, int(r.stdout.strip() or 0)


def _timekit_cli(addresses: list[str], db: Path) -> tuple[float, int, str, float]:
    """Wall time of the CLI, its exit code, stderr's tail and its own peak RSS (MB, from wait4)."""
    out, err = db.with_suffix(".out"), db.with_suffix(".err")
    with open(out, "wb") as fo, open(err, "wb") as fe:
        t0 = mono_s()
        proc = subprocess.Popen([sys.executable, "-m", "timekit.cli", "sample", "ntp", *addresses, "--count",
                                 "1", "--json", "--db", str(db)], stdout=fo, stderr=fe)
        _pid, status, usage = os.wait4(proc.pid, 0)
        dt = mono_s() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return dt, proc.returncode, err.read_text(errors="replace")[-300:], usage.ru_maxrss / 1024


def _check_truth(db: Path, truth: dict[str, float]) -> tuple[int, int, float]:
    """(ok samples, outside NTP's bound, worst error beyond the bound in s) of the stored sweep."""
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT server, offset_s, delay_s FROM ntp_samples WHERE ok = 1").fetchall()
    bad, worst = 0, 0.0
    for server, offset, delay in rows:
        excess = abs(offset - truth[server]) - (delay / 2 + SLACK_S)
        worst = max(worst, excess)
        bad += excess > 0
    return len(rows), bad, worst


def _breakdown(addresses: list[str], db: Path) -> dict[str, float]:
    """In-process: sampling with storing (and the commits' share), then publishing."""
    from timekit.address import parse_servers
    from timekit.collectors.ntp_client import QueryPlan
    from timekit.pipeline.assess import publish_quietly
    from timekit.pipeline.sampling import sample_ntp
    from timekit.store.database import Store

    spent = {"storing_s": 0.0}
    real_add = Store.add_attempts

    def timed(self: Store, *a: Any, **kw: Any) -> Any:
        t = mono_s()
        try:
            return real_add(self, *a, **kw)
        finally:
            spent["storing_s"] += mono_s() - t

    Store.add_attempts = timed  # type: ignore[method-assign]
    try:
        with Store.open(db) as st:
            t0 = mono_s()
            sample_ntp(st, parse_servers(addresses), QueryPlan(count=1, interval_s=0.0, timeout_s=TIMEOUT_S))
            t1 = mono_s()
            publish_quietly(st)
            t2 = mono_s()
    finally:
        Store.add_attempts = real_add  # type: ignore[method-assign]
    return {"sampling_and_storing_s": t1 - t0, "storing_s": spent["storing_s"], "publishing_s": t2 - t1}


def _import_s() -> float:
    """Start-up of the modules `sample ntp` loads, less a bare interpreter's (min of 3)."""
    def wall(code: str) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = mono_s()
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
            best = min(best, mono_s() - t0)
        return best

    return wall("import timekit.cli, timekit.pipeline.sampling, timekit.collectors.ntp_client, "
                "timekit.pipeline.assess") - wall("pass")


def run(quick: bool, workdir: Path) -> BenchResult:
    """Sweep each size with timekit and both ntplib peers; check every offset against the truth."""
    res = BenchResult("sweep")
    sizes = QUICK_SIZES if quick else SIZES
    _raise_fd_limit(max(sizes) + 512)
    rng = random.Random(12)
    details: dict[str, Any] = {"import_s": _import_s()}
    seq_per_server_s = None
    for n in sizes:
        specs = [PortSpec(name=f"s{i}", delay_s=DELAY_S, offset_s=round(rng.uniform(-0.05, 0.05), 6))
                 for i in range(n)]
        fault_dir = workdir / f"sweep-{n}"
        pid, ready = start_fault_server(fault_dir, specs, detach=False, name="sweep")
        try:
            ports = [(p["host"], int(p["port"])) for p in ready["ports"]]
            addresses = [f"{h}:{p}" for h, p in ports]
            truth = {a: s.offset_s for a, s in zip(addresses, specs, strict=True)}
            cli_s, rc, err, rss_mb = _timekit_cli(addresses, fault_dir / "cli.db")
            n_ok, n_bad, worst = _check_truth(fault_dir / "cli.db", truth)
            parts = _breakdown(addresses, fault_dir / "lib.db")
            pool_s, pool_ok = _ntplib_pool(ports)
            pool_cli_s, pool_cli_ok = _ntplib_pool_cli(addresses, fault_dir)
            if seq_per_server_s is None:
                seq_s, seq_ok = _ntplib_sequential(ports[:SEQUENTIAL_MEASURED])
                seq_per_server_s = seq_s / SEQUENTIAL_MEASURED
                details["ntplib_sequential_measured"] = {"servers": SEQUENTIAL_MEASURED, "s": seq_s,
                                                         "ok": seq_ok}
        finally:
            stop_pids(fault_dir, [pid])
        seq_est = seq_per_server_s * n
        res.row(f"`sample ntp` of {n} servers x 20 ms (CLI wall)", "s", cli_s,
                "ntplib sequential" + ("" if n == SEQUENTIAL_MEASURED else " (extrapolated)"), seq_est,
                f"rc {rc}, {n_ok}/{n} ok, {n_bad} outside delay/2")
        res.row(f"`sample ntp` of {n} servers x 20 ms (CLI wall)", "s", cli_s,
                f"ntplib {POOL_THREADS}-thread pool, a command", pool_cli_s,
                f"pool {pool_cli_ok}/{n} ok; in-process {pool_s:.3f} s")
        details[str(n)] = {"cli_s": cli_s, "rc": rc, "stderr": err if rc else "", "ok": n_ok,
                           "outside_bound": n_bad, "worst_excess_s": worst,
                           "peak_rss_mb": rss_mb,
                           **parts, "ntplib_pool_s": pool_s, "ntplib_pool_ok": pool_ok,
                           "ntplib_pool_command_s": pool_cli_s,
                           "ntplib_sequential_est_s": seq_est}
        res.notes.append(
            f"{n}: CLI {cli_s:.2f} s ({seq_est / cli_s:.1f}x ntplib sequential, "
            f"{pool_cli_s / cli_s:.2f}x the pool command's speed, {pool_s / cli_s:.2f}x the in-process "
            f"pool's); in-process sampling+storing {parts['sampling_and_storing_s']:.2f} s (commits "
            f"{parts['storing_s']:.2f} s), publishing {parts['publishing_s']:.2f} s; peak RSS "
            f"{rss_mb:.0f} MB; {n_ok}/{n} ok, {n_bad} offsets outside delay/2 + 20 us (worst excess "
            f"{worst * 1e6:.1f} us)")
    res.notes.append(f"imports of the sample-ntp modules: {details['import_s'] * 1e3:.0f} ms")
    res.details = details
    return res
