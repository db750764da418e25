"""`fanout`: wall time to sample 200 loopback servers once: timekit concurrently vs ntplib
one after another. One fault-server process serves all 200 ports, each adding a fixed 20 ms
(symmetric) path delay, so the sequential peer needs about 200 × 20 ms ≈ 4 s.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import ntplib

from benchmarks.common import BenchResult, median, mono_s, stop_pids
from timekit.address import parse_server
from timekit.collectors.ntp_client import QueryPlan, sample_servers
from timekit.lab.faultserver import PortSpec
from timekit.lab.manager import start_fault_server
from timekit.samples import NtpSample

N_SERVERS = 200
DELAY_S = 0.020
TIMEOUT_S = 2.0
TIMEKIT_CAP_S = 15.0
NTPLIB_CAP_S = 30.0


async def _timekit_once(addresses: list[str]) -> tuple[float, list[NtpSample]]:
    """Sample every address once, concurrently -> (elapsed s, samples)."""
    out: list[NtpSample] = []
    plan = QueryPlan(count=1, interval_s=0.0, timeout_s=TIMEOUT_S)
    t0 = mono_s()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sample_servers([parse_server(a) for a in addresses], plan, {},
                                             lambda s, _st: out.append(s)),
                               TIMEKIT_CAP_S)
    return mono_s() - t0, out


def _ntplib_sequential(ports: list[tuple[str, int]]) -> tuple[float, int, list[float]]:
    """One ntplib request per port, in turn -> (elapsed s, ok count, delays s)."""
    client = ntplib.NTPClient()
    ok = 0
    delays: list[float] = []
    t0 = mono_s()
    for host, port in ports:
        if mono_s() - t0 > NTPLIB_CAP_S:
            break
        try:
            r = client.request(host, port=port, version=4, timeout=TIMEOUT_S)
        except (ntplib.NTPException, OSError):
            continue
        ok += 1
        delays.append(r.delay)
    return mono_s() - t0, ok, delays


def run(quick: bool, workdir: Path) -> BenchResult:
    """Run the fanout benchmark; `quick` does one timekit run instead of three."""
    res = BenchResult("fanout")
    runs = 1 if quick else 3
    specs = [PortSpec(name=f"s{i}", delay_s=DELAY_S) for i in range(N_SERVERS)]
    fault_dir = workdir / "fanout"
    pid, ready = start_fault_server(fault_dir, specs, detach=False, name="fanout")
    try:
        ports = [(p["host"], int(p["port"])) for p in ready["ports"]]
        addresses = [f"{h}:{p}" for h, p in ports]
        tk_times: list[float] = []
        tk_ok: list[int] = []
        tk_delays: list[float] = []
        errors: dict[str, int] = {}
        for _ in range(runs):
            dt, samples = asyncio.run(_timekit_once(addresses))
            tk_times.append(dt)
            tk_ok.append(sum(1 for s in samples if s.ok))
            tk_delays += [s.delay_s for s in samples if s.ok and s.delay_s is not None]
            for s in samples:
                if not s.ok:
                    errors[s.error or "?"] = errors.get(s.error or "?", 0) + 1
        nl_time, nl_ok, nl_delays = _ntplib_sequential(ports)
    finally:
        stop_pids(fault_dir, [pid])

    tk = median(tk_times)
    res.row(f"wall time, {N_SERVERS} servers x 20 ms", "s", tk, "ntplib seq", nl_time,
            f"timekit median of {runs}")
    res.row("replies ok", "count", float(min(tk_ok)), "ntplib seq", float(nl_ok), f"of {N_SERVERS}")
    res.row("median delay", "ms", (median(tk_delays) or 0) * 1e3, "ntplib seq",
            (median(nl_delays) or 0) * 1e3, "configured 20 ms")
    details: dict[str, Any] = {"servers": N_SERVERS, "added_delay_s": DELAY_S, "timekit_runs_s": tk_times,
                               "timekit_ok_per_run": tk_ok, "timekit_errors": errors,
                               "ntplib_s": nl_time, "ntplib_ok": nl_ok,
                               "timekit_max_delay_s": max(tk_delays) if tk_delays else None}
    res.details = details
    if min(tk_ok) < N_SERVERS or nl_ok < N_SERVERS:
        res.notes.append(f"NOT all replies ok: timekit {tk_ok}, ntplib {nl_ok}, errors {errors}")
    else:
        res.notes.append(f"all {N_SERVERS} replies ok for both (timekit runs: "
                         + ", ".join(f"{t * 1e3:.1f} ms" for t in tk_times) + ")")
    return res
