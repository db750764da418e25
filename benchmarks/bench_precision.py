"""`precision`: poll one loopback chronyd (+0.25 s, +100 ppm) at 4 Hz with timekit, ntplib
and chronyd-as-a-client (poll -2) over the same period, and compare against lab truth.

Schedule: timekit queries at t0 + k·250 ms, ntplib at t0 + 125 ms + k·250 ms (both on one
event loop, so they never overlap), the chronyd client polls on its own 4 Hz schedule.

Figures (all in µs unless stated):
- offset error = measured offset − truth ``offset_at(t)``; timekit uses t = T4 (kernel rx
  stamp), ntplib t = CLOCK_REALTIME read right after ``request`` returns. ntplib's
  offset is computed from float NTP-era seconds (quantum 2**-21 s ≈ 0.48 µs).
- detrended std dev = offset std dev around a least-squares line (drift removed), no truth.
- chronyd's view: ``sourcestats`` std_dev_s (chrony's estimate of the sample std dev about
  its regression) and ``tracking``. Signs: tracking ``system_time_s`` = NTP − local, positive
  = local slow, i.e. the server's offset (our sign); tracking ``frequency_ppm`` negative =
  local slow vs the source (truth −drift_ppm = −100); sourcestats ``offset_s`` = local −
  source (opposite sign; a residual near 0 once chronyd has locked on).

Known effect on this VM: an idle chronyd woken by a packet reads its (faked) clock late by
the vCPU wake-up latency (tens of µs). That inflates the delay and biases the offset by about
half of it (T2 and T3 both late). Back-to-back polling (see `qps`) gives ~7 µs delay.
Low-delay samples carry the truth, hence the "lower-delay half" figure.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ntplib
import numpy as np

from benchmarks.common import (
    LOOPBACK,
    BenchResult,
    detrended_stdev,
    free_udp_port,
    mean,
    median,
    mono_s,
    realtime_ns,
    slope_ppm,
    stdev,
    us,
)
from timekit.address import parse_server
from timekit.collectors.ntp_client import QueryPlan, sample_servers
from timekit.lab.chrony import ChronyClient, ChronyServer, ServerTruth
from timekit.samples import NtpSample

RATE_HZ = 4.0
OFFSET_S = 0.25
DRIFT_PPM = 100.0
TIMEOUT_S = 1.0
CHRONY_POLL = -2  # log2 s: 4 Hz


@dataclass
class Series:
    """One client's ok samples: instants ns, offsets s, delays s, offset errors s."""

    t_ns: list[int] = field(default_factory=list)
    offset_s: list[float] = field(default_factory=list)
    delay_s: list[float] = field(default_factory=list)
    error_s: list[float] = field(default_factory=list)
    failed: int = 0

    def add(self, t_ns: int, offset_s: float, delay_s: float, truth: ServerTruth) -> None:
        self.t_ns.append(t_ns)
        self.offset_s.append(offset_s)
        self.delay_s.append(delay_s)
        self.error_s.append(offset_s - truth.offset_at(t_ns))

    def clock_filtered(self, stages: int = 8) -> list[float]:
        """Offset errors of what `check` reports as each new sample arrives: the lowest-delay sample
        of the newest `stages` (analysis.assessment.clock_filter), from the `stages`-th sample on."""
        from timekit.analysis.assessment import clock_filter

        t = np.array(self.t_ns, dtype=np.int64)
        off, dl = np.array(self.offset_s), np.array(self.delay_s)
        out = []
        for k in range(stages, len(t) + 1):
            i, _ = clock_filter(t[k - stages:k], off[k - stages:k], dl[k - stages:k], None)
            out.append(self.error_s[k - stages + i])
        return out

    def low_delay_half(self) -> list[float]:
        """Offset errors of the samples whose delay is at or below the median delay."""
        if not self.delay_s:
            return []
        order = sorted(range(len(self.delay_s)), key=self.delay_s.__getitem__)
        return [self.error_s[i] for i in order[: max(1, len(order) // 2)]]

    def summary(self) -> dict[str, Any]:
        low = self.low_delay_half()
        return {
            "n_ok": len(self.t_ns), "n_failed": self.failed,
            "median_delay_us": us(median(self.delay_s)),
            "min_delay_us": us(min(self.delay_s)) if self.delay_s else None,
            "median_offset_error_us": us(median(self.error_s)),
            "mean_offset_error_us": us(mean(self.error_s)),
            "offset_error_std_us": us(stdev(self.error_s)),
            "low_delay_half_offset_error_std_us": us(stdev(low)),
            "low_delay_half_median_offset_error_us": us(median(low)),
            "detrended_offset_std_us": us(detrended_stdev(self.t_ns, self.offset_s)),
            "fitted_drift_ppm": slope_ppm(self.t_ns, self.offset_s),
        }


async def _ntplib_loop(port: int, n: int, t0: float, truth: ServerTruth, out: Series) -> None:
    """n ntplib requests at 4 Hz, 125 ms after timekit's slots (blocking calls, ~100 µs each)."""
    loop = asyncio.get_running_loop()
    client = ntplib.NTPClient()
    for k in range(n):
        await asyncio.sleep(max(0.0, t0 + 0.5 / RATE_HZ + k / RATE_HZ - loop.time()))
        try:
            r = client.request(LOOPBACK, port=port, version=4, timeout=TIMEOUT_S)
        except (ntplib.NTPException, OSError):
            out.failed += 1
            continue
        out.add(realtime_ns(), r.offset, r.delay, truth)


async def _poll(address: str, port: int, n: int, truth: ServerTruth, cap_s: float
                ) -> tuple[list[NtpSample], Series]:
    """Run timekit and ntplib side by side for n slots; hard cap `cap_s` seconds."""
    loop = asyncio.get_running_loop()
    tk: list[NtpSample] = []
    nl = Series()
    t0 = loop.time()
    plan = QueryPlan(count=n, interval_s=1 / RATE_HZ, timeout_s=TIMEOUT_S)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(
            sample_servers([parse_server(address)], plan, {}, lambda s, _st: tk.append(s)),
            _ntplib_loop(port, n, t0, truth, nl)), cap_s)
    return tk, nl


def run(quick: bool, workdir: Path) -> BenchResult:
    """Run the precision benchmark (~30 s of polling, 10 s with `quick`)."""
    res = BenchResult("precision")
    duration_s = 10.0 if quick else 30.0
    n = int(duration_s * RATE_HZ)
    srv = ChronyServer.start(free_udp_port(), OFFSET_S, DRIFT_PPM, workdir / "prec-server")
    cli: ChronyClient | None = None
    try:
        truth = srv.truth
        cli = ChronyClient.start(srv.port, workdir / "prec-client", poll=CHRONY_POLL)
        t_start = mono_s()
        tk_samples, nl = asyncio.run(_poll(srv.address, srv.port, n, truth, duration_s + 10.0))
        period_s = mono_s() - t_start
        t_a = realtime_ns()
        stats = cli.sourcestats()
        tracking = cli.tracking()
        t_b = realtime_ns()
    finally:
        if cli is not None:
            cli.stop()
        srv.stop()

    tk, tk_user_t1 = Series(), Series()  # the same exchanges scored with T1 read in user space
    rxlat: list[int] = []
    txlat: list[int] = []
    for s in tk_samples:
        if s.ok and s.offset_s is not None and s.delay_s is not None:
            tk.add(s.t_local_ns, s.offset_s, s.delay_s, truth)
            if s.rx_latency_ns is not None:
                rxlat.append(s.rx_latency_ns)
            lat = s.tx_latency_ns or 0  # kernel T1 - user T1: the user read was that much earlier
            txlat += [lat] if s.tx_timestamp == "kernel" else []
            tk_user_t1.add(s.t_local_ns, s.offset_s + lat / 2e9, s.delay_s + lat / 1e9, truth)
        else:
            tk.failed += 1
    tks, nls, tku = tk.summary(), nl.summary(), tk_user_t1.summary()
    t_mid = (t_a + t_b) // 2
    true_now = truth.offset_at(t_mid)
    chrony = {
        "sourcestats": stats, "tracking": tracking,
        "true_offset_at_query_s": true_now,
        "tracking_system_time_error_us": (tracking["system_time_s"] - true_now) * 1e6,
        "tracking_frequency_error_ppm": tracking["frequency_ppm"] - (-DRIFT_PPM),
        "sourcestats_std_dev_us": stats["std_dev_s"] * 1e6,
    }
    res.details = {"duration_s": duration_s, "period_measured_s": period_s, "rate_hz": RATE_HZ,
                   "server": {"offset_s": OFFSET_S, "drift_ppm": DRIFT_PPM},
                   "timekit": tks, "ntplib": nls, "chronyd_client": chrony,
                   "timekit_median_rx_latency_ns": median(rxlat), "timekit_user_t1": tku,
                   "timekit_median_tx_latency_ns": median(txlat),
                   "timekit_kernel_tx_share": len(txlat) / max(1, len(tk.t_ns))}

    res.row("median delay @4Hz", "us", tks["median_delay_us"], "ntplib", nls["median_delay_us"])
    res.row("median offset error (bias)", "us", tks["median_offset_error_us"], "ntplib",
            nls["median_offset_error_us"], "measured - truth")
    res.row("median offset error (bias)", "us", tks["median_offset_error_us"], "chronyd",
            chrony["tracking_system_time_error_us"], "chronyd: tracking system_time - truth")
    res.row("offset error std dev", "us", tks["offset_error_std_us"], "ntplib",
            nls["offset_error_std_us"], "vs lab truth")
    res.row("offset error std, low-delay half", "us", tks["low_delay_half_offset_error_std_us"],
            "ntplib", nls["low_delay_half_offset_error_std_us"], "samples <= median delay")
    res.row("median offset error, low-delay half", "us", tks["low_delay_half_median_offset_error_us"],
            "ntplib", nls["low_delay_half_median_offset_error_us"])
    res.row("offset std dev, drift removed", "us", tks["detrended_offset_std_us"], "ntplib",
            nls["detrended_offset_std_us"], "no truth needed")
    res.row("offset std dev, drift removed", "us", tks["detrended_offset_std_us"], "chronyd",
            chrony["sourcestats_std_dev_us"], "chronyd: sourcestats std_dev")
    res.row("fitted drift", "ppm", tks["fitted_drift_ppm"], "chronyd", -tracking["frequency_ppm"],
            f"truth {DRIFT_PPM:+g}; chronyd sign flipped")
    res.row("median rx_latency (kernel stamp removes)", "us",
            None if median(rxlat) is None else median(rxlat) / 1e3, "-", None)
    res.row("median tx_latency (kernel stamp removes)", "us",
            None if median(txlat) is None else median(txlat) / 1e3, "-", None,
            f"{len(txlat)} of {len(tk.t_ns)} exchanges with a kernel T1")
    res.row("median offset error, kernel T1", "us", tks["median_offset_error_us"], "user T1",
            tku["median_offset_error_us"], "same exchanges, T1 read before send instead")
    res.row("offset error std, kernel T1", "us", tks["offset_error_std_us"], "user T1",
            tku["offset_error_std_us"], "same exchanges")
    res.row("median delay, kernel T1", "us", tks["median_delay_us"], "user T1", tku["median_delay_us"],
            "same exchanges")
    filt = tk.clock_filtered()
    newest = tk.error_s[7:]  # the same instants: the newest sample alone
    res.details["clock_filter"] = {"n": len(filt), "abs_error_median_us": us(median([abs(e) for e in filt])),
                                   "newest_abs_error_median_us": us(median([abs(e) for e in newest])),
                                   "std_us": us(stdev(filt)), "newest_std_us": us(stdev(newest))}
    cf = res.details["clock_filter"]
    res.row("check's offset |error|, clock filter", "us", cf["abs_error_median_us"], "newest sample",
            cf["newest_abs_error_median_us"], "median; lowest delay of the newest 8 vs the newest alone")
    res.row("check's offset error std, clock filter", "us", cf["std_us"], "newest sample",
            cf["newest_std_us"], "same instants")
    res.notes.append(
        f"chronyd client: NP={stats['n_samples']} span={stats['span_s']:g}s, tracking system_time "
        f"{tracking['system_time_s']:+.9f}s vs truth {true_now:+.9f}s (error "
        f"{chrony['tracking_system_time_error_us']:+.2f} us), frequency {tracking['frequency_ppm']:+.3f} ppm "
        f"(truth {-DRIFT_PPM:+g}), sourcestats offset {stats['offset_s'] * 1e6:+.2f} us (local - source)")
    if tk.failed or nl.failed:
        res.notes.append(f"failed queries: timekit {tk.failed}, ntplib {nl.failed}")
    res.notes.append(f"samples: timekit {len(tk.t_ns)}, ntplib {len(nl.t_ns)} over {period_s:.1f} s")
    return res
