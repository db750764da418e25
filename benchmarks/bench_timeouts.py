"""`timeouts`: jitter-adaptive timeouts (RFC 6298 RTO, phi accrual, quantile) replayed against
fixed 1 s and 3 s timeouts: false-timeout rate vs how fast a real outage is detected.

Two histories, each with seeded injected faults (delay spikes, isolated losses, outages):
(a) real RTTs (T4 − T1, the collector's own round trip) recorded from one loopback chronyd
    of the reference lab, polled every 1 ms; (b) a synthetic WAN-like lognormal series
    (median 30 ms). Every timeout is computed online (from earlier attempts only); a false
    timeout is a reply that came after the timeout in force; an outage is detected after the
    timeout in force when it began. Also times ``recommend_timeout`` on 10^5 RTTs against the
    collector's pure-Python RFC 6298 loop (``RtoEstimator``) over the same series.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BenchResult, free_udp_port, median, mono_s
from timekit.address import parse_server
from timekit.analysis.timeouts import (
    METHOD_PHI,
    METHOD_QUANTILE,
    METHOD_RFC6298,
    PhiParams,
    ReplayResult,
    Rfc6298Params,
    inject_faults,
    recommend_timeout,
    replay,
)
from timekit.collectors.ntp_client import QueryPlan, sample_servers
from timekit.collectors.rto import MIN_RTO_S, RtoEstimator
from timekit.lab.chrony import ChronyServer
from timekit.samples import NtpSample
from timekit.units import NS_PER_S

LAB_INTERVAL_S = 0.001  # one query per ms against the loopback chronyd
LAB_TIMEOUT_S = 1.0  # the collector's cap while recording
FAULTS: dict[str, dict[str, Any]] = {  # inject_faults arguments per history
    "lab": dict(spike_rate=0.005, spike_mean_s=0.005, n_outages=20, outage_attempts=5,
                loss_rate=0.001, skip_attempts=200, seed=101),
    "wan": dict(spike_rate=0.005, spike_mean_s=0.050, n_outages=20, outage_attempts=5,
                loss_rate=0.001, skip_attempts=200, seed=202),
}
WAN_P50_S = 0.030
WAN_SIGMA = 0.25  # log-space std dev: p99 ≈ 1.8 × p50
TIMING_N = 100_000
ADAPTIVE = (METHOD_RFC6298, METHOD_PHI, METHOD_QUANTILE)


async def _record(address: str, n: int, cap_s: float) -> list[NtpSample]:
    """n queries to one lab server at LAB_INTERVAL_S spacing (hard cap `cap_s` seconds)."""
    out: list[NtpSample] = []
    plan = QueryPlan(count=n, interval_s=LAB_INTERVAL_S, timeout_s=LAB_TIMEOUT_S)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sample_servers([parse_server(address)], plan, {},
                                              lambda s, _st: out.append(s)), cap_s)
    return out


def _lab_rtts(n: int, workdir: Path) -> np.ndarray:
    """Round trips (s) of n attempts to a fresh loopback chronyd; NaN where no reply."""
    srv = ChronyServer.start(free_udp_port(), 0.0, 0.0, workdir / "timeouts-chronyd")
    try:
        asyncio.run(_record(srv.address, 20, 10.0))  # warm-up: first socket, chronyd's first replies
        samples = asyncio.run(_record(srv.address, n, 10.0 + n * LAB_INTERVAL_S * 5))
    finally:
        srv.stop()
    return np.array([(s.t4_ns - s.t1_ns) / NS_PER_S if s.ok and s.t1_ns is not None and s.t4_ns is not None
                     else math.nan for s in samples])


def _distribution(r: np.ndarray) -> dict[str, Any]:
    x = r[~np.isnan(r)]
    qs = dict(zip(("p50_us", "p90_us", "p99_us", "p999_us", "max_us"),
                  (float(v) * 1e6 for v in np.quantile(x, [0.5, 0.9, 0.99, 0.999, 1.0])), strict=True)) \
        if x.size else {}
    return {"n_attempts": int(r.size), "n_lost": int(np.isnan(r).sum()), **qs}


def _table(rep: ReplayResult) -> list[dict[str, Any]]:
    """The replay as JSON rows: false-timeout rate in %, times in s."""
    return [{"method": s.method, "kind": s.kind, "timeout_next_s": s.timeout_s,
             "false_timeout_pct": None if s.false_timeout_rate is None else s.false_timeout_rate * 100,
             "n_false_timeouts": s.n_false_timeouts, "n_replies_scored": s.n_replies_scored,
             "mean_detection_s": s.mean_detection_s, "mean_timeout_s": s.mean_timeout_s}
            for s in rep.scores]


def _scenario(res: BenchResult, name: str, rtt_s: np.ndarray) -> None:
    """Inject faults, replay, add the rows and the full table for one history."""
    f = inject_faults(rtt_s, **FAULTS[name])
    rep = replay(f.rtt_s, outage_starts=f.outage_starts)
    rec = recommend_timeout(f.rtt_s, outage_starts=f.outage_starts)
    variant = replay(f.rtt_s, rfc=Rfc6298Params(min_rto_s=MIN_RTO_S), phi_params=PhiParams.akka(),
                     outage_starts=f.outage_starts)
    f1, f3 = rep.score("fixed_1s"), rep.score("fixed_3s")
    for m in ADAPTIVE:
        s = rep.score(m)
        ratio_1s = None if s.mean_detection_s is None else s.mean_detection_s / 1.0
        res.row(f"{name}: {m} outage detection", "s", s.mean_detection_s, "fixed 3s", f3.mean_detection_s,
                f"vs fixed 1s: x{ratio_1s:.3g}; {rep.n_outages} injected outages")
        pct = None if s.false_timeout_rate is None else s.false_timeout_rate * 100
        f1pct = None if f1.false_timeout_rate is None else f1.false_timeout_rate * 100
        f3pct = None if f3.false_timeout_rate is None else f3.false_timeout_rate * 100
        res.row(f"{name}: {m} false timeouts", "%", pct, "fixed 1s", f1pct,
                f"{s.n_false_timeouts}/{s.n_replies_scored} replies late; fixed 3s: {f3pct:.3g} %")
    res.row(f"{name}: recommended timeout", "s", rec.timeout_s, "fixed 3s", 3.0,
            f"{rec.method} ({rec.status})")
    res.details[name] = {
        "rtt_recorded": _distribution(rtt_s), "rtt_with_faults": _distribution(f.rtt_s),
        "faults": {**FAULTS[name], "n_spikes": int(f.spike_idx.size),
                   "n_isolated_losses": int(f.lost_idx.size)},
        "first_scored_attempt": rep.first_scored_attempt, "n_scored_replies": rep.n_scored_replies,
        "detection_basis": rep.detection_basis, "table": _table(rep),
        "recommendation": {"timeout_s": rec.timeout_s, "method": rec.method, "status": rec.status,
                           "reason": rec.reason, "rtt_p50_s": rec.rtt_p50_s, "rtt_p99_s": rec.rtt_p99_s},
        "variant_rfc_floor_0.25s_phi_akka_defaults": _table(variant)[:2],
    }
    res.notes.append(f"{name}: {rec.reason}")


def _collector_loop_s(r: np.ndarray) -> float:
    """Wall time (s) of the collector's RtoEstimator stepping through the series (RFC 6298 only)."""
    est = RtoEstimator(max_rto_s=60.0)
    t0 = mono_s()
    for x in r.tolist():
        est.timeout_s()
        if math.isnan(x):
            est.backoff()
        else:
            est.observe(x)
    return mono_s() - t0


def run(quick: bool, workdir: Path) -> BenchResult:
    """Run the timeouts benchmark (lab recording ~4 s with `quick`, ~25 s without)."""
    res = BenchResult("timeouts")
    n_lab = 3000 if quick else 20_000
    n_wan = 20_000 if quick else 100_000
    t0 = mono_s()
    lab = _lab_rtts(n_lab, workdir)
    record_s = mono_s() - t0
    if np.isnan(lab).all():
        res.error = "the loopback lab returned no reply"
        return res
    _scenario(res, "lab", lab)
    wan = np.random.default_rng(303).lognormal(math.log(WAN_P50_S), WAN_SIGMA, n_wan)
    _scenario(res, "wan", wan)

    timing = np.random.default_rng(404).lognormal(math.log(100e-6), 0.5, TIMING_N)
    timing[np.random.default_rng(405).random(TIMING_N) < 0.001] = math.nan
    recommend_timeout(timing[:1000])  # first call imports pandas: not part of the figure
    runs: list[float] = []
    for _ in range(3):
        t = mono_s()
        recommend_timeout(timing)
        runs.append(mono_s() - t)
    loop_s = median([_collector_loop_s(timing) for _ in range(3)])
    rec_s = median(runs)
    res.row(f"recommend_timeout, {TIMING_N:,} RTTs", "ms", None if rec_s is None else rec_s * 1e3,
            "collector RtoEstimator loop", None if loop_s is None else loop_s * 1e3,
            "3 methods + 2 fixed replayed vs RFC 6298 alone; median of 3")
    res.details["timing"] = {"n_rtts": TIMING_N, "recommend_timeout_s": runs,
                             "collector_rto_loop_s": loop_s}
    res.details["lab_recording"] = {"n": n_lab, "interval_s": LAB_INTERVAL_S, "wall_s": record_s}
    res.notes.append("false timeouts: replies that came after the timeout in force; detection: the timeout "
                     "in force at an injected outage's first attempt; rates over replies after a "
                     "10-reply warm-up")
    return res
