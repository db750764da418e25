"""`nts`: what authentication costs, against ONE loopback chronyd serving NTP and NTS-KE.

The NTS-KE handshake (TLS 1.3, records, key export) is timed on its own, repeated; then rounds
alternate plain NTP and NTS queries to the same chronyd through timekit's client (back to back, one
server), so both see the same machine state. Figures are medians over rounds; the ratio is NTS / plain.
The peer row for the handshake is plain NTP's one query: what an unauthenticated client spends
instead of keying.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
from pathlib import Path

from benchmarks.common import BenchResult, free_udp_port, mono_s
from timekit.address import parse_server
from timekit.collectors.ntp_client import QueryPlan, sample_servers
from timekit.collectors.nts import key_exchange
from timekit.collectors.server_policy import ServerState
from timekit.lab.manager import free_port
from timekit.lab.nts_lab import issue, make_ca, start_nts_chronyd
from timekit.samples import NtpSample


def _burst(server: str, n: int, ca: str, states: dict[str, ServerState]) -> tuple[float, list[NtpSample]]:
    out: list[NtpSample] = []
    plan = QueryPlan(count=n, interval_s=0.0, timeout_s=1.0, nts_ca=ca)
    t0 = mono_s()
    asyncio.run(sample_servers([parse_server(server)], plan, states, lambda s, _st: out.append(s)))
    return mono_s() - t0, out


def run(quick: bool, workdir: Path) -> BenchResult:
    res = BenchResult("nts")
    handshakes, rounds, per_round = (10, 3, 100) if quick else (40, 7, 400)
    ca = make_ca(workdir / "ca")
    cert, key = issue(ca, workdir / "srv", ("localhost", "127.0.0.1"))
    ke_port = free_port(socket.SOCK_STREAM)
    srv = start_nts_chronyd(free_udp_port(), 0.0, 0.0, workdir / "chronyd", cert, key, ke_port)
    try:
        ke_s = []
        for _ in range(handshakes):
            t0 = mono_s()
            key_exchange("127.0.0.1", ke_port, cafile=str(ca.cert_path))
            ke_s.append(mono_s() - t0)
        plain, nts = srv.address, f"nts://127.0.0.1:{ke_port}"
        states: dict[str, ServerState] = {}
        _burst(nts, 2, str(ca.cert_path), states)  # keyed once; the rounds then spend cookies
        qps: dict[str, list[float]] = {plain: [], nts: []}
        failed = {plain: 0, nts: 0}
        one_plain_s = []
        for _ in range(rounds):
            for server in (plain, nts):
                took, samples = _burst(server, per_round, str(ca.cert_path), states)
                ok = sum(s.ok for s in samples)
                failed[server] += len(samples) - ok
                qps[server].append(ok / took if took > 0 else 0.0)
            took, _ = _burst(plain, 1, str(ca.cert_path), states)
            one_plain_s.append(took)
        ke_med = statistics.median(ke_s)
        res.row("NTS-KE handshake (TLS 1.3 + records + exporter)", "ms", ke_med * 1e3,
                "one plain NTP query", statistics.median(one_plain_s) * 1e3,
                f"median of {handshakes}; p90 {sorted(ke_s)[int(0.9 * len(ke_s))] * 1e3:.1f} ms")
        res.row("authenticated queries per second, one server", "q/s", statistics.median(qps[nts]),
                "plain NTP, same server", statistics.median(qps[plain]),
                f"median of {rounds} rounds of {per_round}; failed: NTS {failed[nts]}, "
                f"plain {failed[plain]}")
        res.details = {"ke_ms": [round(x * 1e3, 3) for x in ke_s], "qps_nts": qps[nts],
                       "qps_plain": qps[plain], "failed": failed}
    finally:
        srv.stop()
    return res
