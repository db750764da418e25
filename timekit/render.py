"""Human renderings (rich tables and text) for the CLI. No measuring, no storing here."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from rich.table import Table

from timekit.samples import NtpSample


def fmt_s(value: float | None, signed: bool = True) -> str:
    """Seconds with a readable unit: 1.234 ms, -56.7 µs, 2.500 s."""
    if value is None:
        return "-"
    a = abs(value)
    sign = "+" if signed and value >= 0 else ("-" if value < 0 else "")
    if a >= 1:
        return f"{sign}{a:.3f} s"
    if a >= 1e-3:
        return f"{sign}{a * 1e3:.3f} ms"
    return f"{sign}{a * 1e6:.1f} µs"


def ntp_summary_table(samples: list[NtpSample]) -> Table:
    """Per server: valid/total, offset of the lowest-delay sample, median offset, errors."""
    t = Table(title="NTP samples (offset = reference - local)")
    for col in ("server", "ok", "best offset", "median offset", "min delay", "stratum", "errors"):
        t.add_column(col, justify="right" if col not in ("server", "errors") else "left")
    by_server: dict[str, list[NtpSample]] = {}
    for s in samples:
        by_server.setdefault(s.server, []).append(s)
    for server, ss in by_server.items():
        ok = [s for s in ss if s.ok]
        errs = Counter(s.error for s in ss if s.error)
        best = min(ok, key=lambda s: s.delay_s or 0.0) if ok else None
        t.add_row(server, f"{len(ok)}/{len(ss)}",
                  fmt_s(best.offset_s) if best else "-",
                  fmt_s(statistics.median(s.offset_s for s in ok)) if ok else "-",  # type: ignore[type-var]
                  fmt_s(best.delay_s, signed=False) if best else "-",
                  str(best.stratum) if best else "-",
                  ", ".join(f"{k}×{v}" for k, v in errs.items()) or "-")
    return t


def clocks_text(run: Any) -> str:
    """The clock report in a few lines."""
    r = run.report
    lines = [f"clock samples: {r.n_samples} over {r.span_s:.2f} s "
             f"(median bracket {r.median_bracket_ns} ns, max {r.max_bracket_ns} ns)",
             f"slew (REALTIME vs MONOTONIC_RAW): "
             f"{'-' if r.slew_ppm is None else f'{r.slew_ppm:+.3f} ppm'}",
             f"TAI - REALTIME: {'-' if r.tai_offset_s is None else f'{round(r.tai_offset_s):d} s'}"]
    for e in (*r.steps, *r.suspends):
        lines.append(f"{e.kind}: {fmt_s(e.magnitude_s)} at t={e.t_realtime_ns}")
    if not r.steps and not r.suspends:
        lines.append("no wall-clock steps, no suspend")
    lines.append(run.kernel.summary() if run.kernel else "kernel state unavailable (adjtimex)")
    lines.append("read cost: " + ", ".join(f"{k} {v:.0f} ns" for k, v in run.read_cost_ns.items()))
    return "\n".join(lines)


def collect_text(result: Any) -> str:
    lines = [f"collected {len(result.ntp.samples)} NTP attempts "
             f"({sum(s.ok for s in result.ntp.samples)} valid)"]
    if result.ntp.skipped:
        lines.append("skipped (queried less than min_poll_s ago): " + ", ".join(result.ntp.skipped))
    if result.clocks is not None:
        lines.append(clocks_text(result.clocks))
    return "\n".join(lines)


def server_states_table(states: list[Any]) -> Table:
    t = Table(title="server state")
    for col in ("server", "srtt", "rto", "hold", "kod backoff"):
        t.add_column(col)
    for s in states:
        t.add_row(s.server, fmt_s(s.srtt_s, False), fmt_s(s.rto_s, False),
                  s.hold_reason or "-", fmt_s(s.kod_backoff_s or None, False))
    return t


def lab_table(rows: list[dict[str, Any]], directory: Path) -> Table:
    t = Table(title=f"lab in {directory}")
    for col in ("name", "address", "kind", "alive", "true offset now", "server drift ppm"):
        t.add_column(col)
    for r in rows:
        truthful = r["kind"] in ("chrony", "good")
        t.add_row(r["name"], r["address"], r["kind"], "yes" if r["alive"] else "NO",
                  fmt_s(r["true_offset_now_s"]) if truthful else "-",
                  f"{r['server_drift_ppm']:+.1f}" if truthful else "-")
    return t


def compare_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="measured vs true offset (lab ground truth)")
    for col in ("name", "address", "ok/total", "median error", "max |error|", "median delay",
                "errors"):
        t.add_column(col)
    for r in (r for r in rows if r["n_total"]):
        t.add_row(r["name"], r["address"], f"{r['n_ok']}/{r['n_total']}",
                  fmt_s(r.get("error_median_s")), fmt_s(r.get("error_max_abs_s"), False),
                  fmt_s(r.get("delay_median_s"), False), ", ".join(r["errors"]) or "-")
    return t
