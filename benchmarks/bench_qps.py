"""`qps`: NTP queries per second against ONE loopback chronyd, timekit vs ntplib.

Rounds alternate the clients (timekit sequential, timekit concurrent, ntplib) so both
see the same machine state; the reported figure is the median over rounds. Wall time
is measured inside the event loop for timekit (event-loop creation excluded, ~1 ms).
chronyd has no rate limiting unless configured (the lab does not configure it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import ntplib

from benchmarks.common import LOOPBACK, BenchResult, free_udp_port, median, mono_s, realtime_ns, us
from timekit.address import parse_server
from timekit.collectors.ntp_client import QueryPlan, sample_server, sample_servers
from timekit.collectors.server_policy import ServerState
from timekit.lab.chrony import ChronyServer
from timekit.samples import NtpSample

TIMEOUT_S = 1.0  # per query
ROUND_CAP_S = 15.0  # hard wall-time cap of one client's share of one round
CONCURRENCY = 8  # concurrent timekit tasks for the concurrent figure


async def _timekit_sequential(address: str, n: int) -> tuple[float, list[NtpSample]]:
    """n back-to-back queries (interval 0) -> (elapsed s, samples)."""
    out: list[NtpSample] = []
    t0 = mono_s()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            sample_servers([parse_server(address)], QueryPlan(count=n, interval_s=0.0,
                                                                timeout_s=TIMEOUT_S), {},
                           lambda s, _st: out.append(s)),
            ROUND_CAP_S)
    return mono_s() - t0, out


async def _timekit_concurrent(address: str, n: int, k: int) -> tuple[float, list[NtpSample]]:
    """k tasks with n/k back-to-back queries each, one event loop -> (elapsed s, samples)."""
    out: list[NtpSample] = []
    server = parse_server(address)
    plan = QueryPlan(count=max(1, n // k), interval_s=0.0, timeout_s=TIMEOUT_S)
    limiter = asyncio.Semaphore(k)

    async def all_tasks() -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(k):
                tg.create_task(sample_server(server, plan, ServerState(server.name),
                                                    lambda s, _st: out.append(s), limiter))

    t0 = mono_s()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_tasks(), ROUND_CAP_S)
    return mono_s() - t0, out


def _ntplib_sequential(port: int, n: int, truth_offset_at: Callable[[int], float]
                       ) -> tuple[float, int, list[float], list[float]]:
    """n back-to-back ntplib requests -> (elapsed s, ok count, delays s, offset errors s)."""
    client = ntplib.NTPClient()
    ok = 0
    delays: list[float] = []
    errs: list[float] = []
    t0 = mono_s()
    deadline = t0 + ROUND_CAP_S
    for _ in range(n):
        if mono_s() > deadline:
            break
        try:
            r = client.request(LOOPBACK, port=port, version=4, timeout=TIMEOUT_S)
        except (ntplib.NTPException, OSError):
            continue
        t_ns = realtime_ns()
        ok += 1
        delays.append(r.delay)
        errs.append(r.offset - truth_offset_at(t_ns))
    return mono_s() - t0, ok, delays, errs


def run(quick: bool, workdir: Path) -> BenchResult:
    """Run the qps benchmark; `quick` shrinks query counts and rounds."""
    res = BenchResult("qps")
    n = 500 if quick else 3000
    rounds = 1 if quick else 3
    srv = ChronyServer.start(free_udp_port(), 0.0, 0.0, workdir / "qps-chronyd")
    try:
        truth = srv.truth
        seq_qps: list[float] = []
        conc_qps: list[float] = []
        nl_qps: list[float] = []
        tk_ok = tk_total = conc_ok = conc_total = nl_ok = nl_total = 0
        tk_delays: list[float] = []
        tk_errs: list[float] = []
        tk_rxlat: list[int] = []
        conc_errors: dict[str, int] = {}
        nl_delays: list[float] = []
        nl_errs: list[float] = []
        # warm-up: imports, first socket, chronyd's first replies
        asyncio.run(_timekit_sequential(srv.address, 20))
        _ntplib_sequential(srv.port, 20, truth.offset_at)
        for _ in range(rounds):
            dt, samples = asyncio.run(_timekit_sequential(srv.address, n))
            good = [s for s in samples if s.ok]
            seq_qps.append(len(good) / dt)
            tk_ok += len(good)
            tk_total += len(samples)
            tk_delays += [s.delay_s for s in good if s.delay_s is not None]
            tk_errs += [s.offset_s - truth.offset_at(s.t_local_ns) for s in good if s.offset_s is not None]
            tk_rxlat += [s.rx_latency_ns for s in good if s.rx_latency_ns is not None]

            dt, samples = asyncio.run(_timekit_concurrent(srv.address, n, CONCURRENCY))
            good = [s for s in samples if s.ok]
            conc_qps.append(len(good) / dt)
            conc_ok += len(good)
            conc_total += len(samples)
            for s in samples:
                if not s.ok:
                    key = f"{s.error}: {s.detail}"[:80]
                    conc_errors[key] = conc_errors.get(key, 0) + 1

            dt, ok, delays, errs = _ntplib_sequential(srv.port, n, truth.offset_at)
            nl_qps.append(ok / dt)
            nl_ok += ok
            nl_total += n
            nl_delays += delays
            nl_errs += errs
    finally:
        srv.stop()

    seq, conc, nl = median(seq_qps), median(conc_qps), median(nl_qps)
    res.row("sequential queries/s", "q/s", seq, "ntplib", nl, f"{rounds}x{n} queries, median of rounds")
    res.row(f"concurrent ({CONCURRENCY} tasks) queries/s", "q/s", conc, "ntplib seq", nl,
            "one event loop, one chronyd")
    res.row("back-to-back median delay", "us", us(median(tk_delays)), "ntplib", us(median(nl_delays)),
            "timekit T4 = kernel rx stamp")
    res.row("back-to-back median offset error", "us", us(median(tk_errs)), "ntplib", us(median(nl_errs)),
            "measured - truth")
    res.details = {
        "queries_per_round": n, "rounds": rounds, "concurrency": CONCURRENCY,
        "timekit_sequential_qps_rounds": seq_qps, "timekit_concurrent_qps_rounds": conc_qps,
        "ntplib_qps_rounds": nl_qps,
        "timekit_sequential_ok": tk_ok, "timekit_sequential_total": tk_total,
        "timekit_concurrent_ok": conc_ok, "timekit_concurrent_total": conc_total,
        "ntplib_ok": nl_ok, "ntplib_total": nl_total,
        "timekit_median_delay_s": median(tk_delays), "ntplib_median_delay_s": median(nl_delays),
        "timekit_median_offset_error_s": median(tk_errs), "ntplib_median_offset_error_s": median(nl_errs),
        "timekit_median_rx_latency_ns": median(tk_rxlat), "timekit_concurrent_errors": conc_errors,
    }
    if tk_ok < tk_total or conc_ok < conc_total or nl_ok < nl_total:
        res.notes.append(f"failed queries: timekit seq {tk_total - tk_ok}, concurrent "
                         f"{conc_total - conc_ok} {conc_errors}, ntplib {nl_total - nl_ok}")
    res.notes.append(f"timekit back-to-back median rx_latency {median(tk_rxlat)} ns "
                     "(user-space read - kernel rx stamp)")
    return res
