"""Human renderings (rich tables and text) for the CLI. No measuring, no storing here."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from timekit.analysis.thresholds import ci_half_ppm
from timekit.samples import NtpSample
from timekit.units import fmt_s


def ntp_summary_table(samples: list[NtpSample]) -> Table:
    """Per server: valid/total, offset of the lowest-delay sample, median offset, errors, and that
    sample's header in ntplib's words (stratum, reference, leap)."""
    t = Table(title="NTP samples (offset = reference - local)")
    for col in ("server", "ok", "best offset", "median offset", "min delay", "stratum", "reference", "leap",
                "errors"):
        t.add_column(col, justify="right" if col in ("ok", "best offset", "median offset", "min delay")
                     else "left")
    by_server: dict[str, list[NtpSample]] = {}
    for s in samples:
        by_server.setdefault(s.server, []).append(s)
    for server, ss in by_server.items():
        ok = [s for s in ss if s.ok]
        errs = Counter(s.error for s in ss if s.error)
        best = min(ok, key=lambda s: s.delay_s or 0.0) if ok else None
        words = best.described() if best else {}
        t.add_row(server, f"{len(ok)}/{len(ss)}",
                  fmt_s(best.offset_s) if best else "-",
                  fmt_s(statistics.median(s.offset_s for s in ok)) if ok else "-",  # type: ignore[type-var]
                  fmt_s(best.delay_s, signed=False) if best else "-",
                  words.get("stratum_text") or "-", words.get("refid_text") or "-",
                  words.get("leap_text") or "-",
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
    if result.pauses:
        worst = max(result.pauses, key=lambda p: p.max_s)
        p99 = max(p.p99_s for p in result.pauses)
        suspended = sum(p.suspend_s for p in result.pauses)
        lines.append(f"pauses over {sum(p.interval_s for p in result.pauses):.1f} s: worst "
                     f"{fmt_s(worst.max_s, signed=False)}, p99 {fmt_s(p99, signed=False)}"
                     + (f", suspended {fmt_s(suspended, signed=False)}" if suspended > 0 else ""))
    if result.skew is not None:
        doc = result.skew.to_json()
        words = "majority found" if doc["quorum"] else "no majority"
        if doc["quarantined"]:
            words += "; quarantined: " + ", ".join(doc["quarantined"])
        for t in doc["transitions"]:
            words += f"; {t['node']}: {t['from']} -> {t['to']}"
        lines.append(f"skew check: {words}")
        c = doc.get("cluster")
        if c is not None:
            judged = sum(p["judged"] for p in c["peers"])
            words = f"{judged}/{len(c['peers'])} peers judged; self {c['diagnosis']}"
            if c["quarantined"]:
                words += "; quarantined: " + ", ".join(c["quarantined"])
            for t in c["transitions"]:
                words += f"; {t['node']}: {t['from']} -> {t['to']}"
            lines.append(f"cluster check: {words}")
    if result.daemon is not None:
        d = result.daemon
        lines.append(f"time daemon: {d.daemon}, {'synchronized' if d.synchronized else 'not synchronized'}"
                     + (f", claims {fmt_s(d.offset_s)} ± {fmt_s(d.claimed_bound_s, signed=False)}"
                        if d.offset_s is not None and d.claimed_bound_s is not None else ""))
    return "\n".join(lines)


def daemon_text(d: Any, verdict: Any) -> RenderableType:
    """The daemon's reading (DaemonSample) in timekit's signs, its sources, and timekit's verdict on it."""
    sync = "synchronized" if d.synchronized else "NOT synchronized"
    head = [f"{d.daemon}: {sync}, stratum {d.stratum if d.stratum is not None else '-'}, "
            f"leap {d.leap or '-'}, reference {d.ref_name or d.ref_id or '-'}"]
    if d.offset_s is not None or d.claimed_bound_s is not None:
        off = fmt_s(d.offset_s) if d.offset_s is not None else "-"
        bound = fmt_s(d.claimed_bound_s, signed=False) if d.claimed_bound_s is not None else "-"
        head.append(f"claims: offset (reference - local) {off} ± {bound} "
                    "(root delay/2 + root dispersion)")
    if d.frequency_ppm is not None:
        head.append(f"frequency {d.frequency_ppm:+.3f} ppm (local clock; + = gains)"
                    + (f", skew {d.skew_ppm:.3f} ppm" if d.skew_ppm is not None else ""))
    if d.kernel_maxerror_s is not None:
        head.append(f"kernel: maxerror {fmt_s(d.kernel_maxerror_s, signed=False)}, "
                    f"{'unsynchronized' if d.kernel_unsynchronized else 'synchronized'} (adjtimex)")
    parts: list[RenderableType] = [Text("\n".join(head))]
    if d.sources:
        t = Table(title=f"{d.daemon}'s sources (offset = source - local)")
        for col in ("address", "state", "stratum", "reach", "last rx", "offset", "error"):
            t.add_column(col, justify="left" if col in ("address", "state") else "right")
        for src in d.sources:
            t.add_row(src.address, src.state, "-" if src.stratum is None else str(src.stratum),
                      "-" if src.reach is None else f"{src.reach:o}",
                      "-" if src.last_rx_s is None else f"{src.last_rx_s:.0f} s",
                      "-" if src.offset_s is None else fmt_s(src.offset_s),
                      "-" if src.error_s is None else fmt_s(src.error_s, signed=False))
        parts.append(t)
    if verdict is not None:
        parts.append(Text(f"timekit's check: {verdict.status.replace('_', ' ')}: {verdict.reason}"))
        parts.extend(Text(f"  also: {more}") for more in verdict.details[1:])
    return Group(*parts)


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


def _utc(t_ns: int | None) -> str:
    """An instant as UTC ISO 8601 with nanoseconds."""
    if t_ns is None:
        return "-"
    from datetime import UTC, datetime

    secs, ns = divmod(t_ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"


def interval_doc(est: Any, holdover: Any = None) -> dict[str, Any]:
    """The `timekit now` JSON document: the DESIGN.md contract fields first, then the evidence, and the
    holdover (`analysis.holdover.Holdover`, None: not computed)."""
    from timekit.outputs.holdover_words import holdover_doc

    sel = est.selection
    return {
        "earliest_ns": est.earliest_ns, "latest_ns": est.latest_ns, "uncertainty_s": est.uncertainty_s,
        "status": est.status, "as_of_ns": est.as_of_ns, "reason": est.reason,
        "evidence_age_s": est.evidence_age_s, "local_step_s": est.local_step_s,
        "single_source": est.single_source, "naive_uncertainty_s": est.naive_uncertainty_s,
        "quorum": None if sel is None else sel.quorum,
        "truechimers": [] if sel is None else list(sel.truechimers),
        "falsetickers": [] if sel is None else list(sel.falsetickers),
        "sources": [{"server": b.server, "status": b.status, "reason": b.reason,
                     "offset_lo_s": b.lo_s, "offset_hi_s": b.hi_s, "age_s": b.age_s, "n_used": b.n_used}
                    for b in est.servers],
        "holdover": holdover_doc(holdover),
    }


def interval_text(doc: dict[str, Any]) -> str:
    """`timekit now` for a person: the interval in UTC, its half-width and the status."""
    lines = [f"status:      {doc['status']}"]
    if doc["earliest_ns"] is not None:
        lines += [f"earliest:    {_utc(doc['earliest_ns'])}", f"latest:      {_utc(doc['latest_ns'])}",
                  f"uncertainty: ±{fmt_s(doc['uncertainty_s'], signed=False)}"
                  + (f" (naive |offset| + root distance: ±{fmt_s(doc['naive_uncertainty_s'], False)})"
                     if doc["naive_uncertainty_s"] is not None else ""),
                  f"evidence:    {fmt_s(doc['evidence_age_s'], signed=False)} old, from "
                  f"{', '.join(doc['truechimers'])}"]
    if doc["falsetickers"]:
        lines.append(f"falsetickers: {', '.join(doc['falsetickers'])}")
    if doc.get("holdover") is not None and doc["earliest_ns"] is not None:
        from timekit.outputs.holdover_words import holdover_words

        lines.append(f"holdover:    {holdover_words(doc['holdover'])}")
    lines.append(f"why:         {doc['reason']}")
    return "\n".join(lines)


class _Notes:
    """Long reasons as numbered notes under a table, so the table itself fits 80 columns."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str | None) -> str:
        """' [n]' for `text` (the same text, the same number), or '' for none."""
        if not text:
            return ""
        if text not in self.texts:
            self.texts.append(text)
        return f" [{self.texts.index(text) + 1}]"

    def under(self, table: Table) -> RenderableType:
        if not self.texts:
            return table
        return Group(table, *(Text(f"[{i}] {t}") for i, t in enumerate(self.texts, 1)))


def _table(title: str, columns: Sequence[str], right: Sequence[str] = ()) -> Table:
    """A table whose first column (the server or node) and numbers are never cut or wrapped: the
    words columns wrap first."""
    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="right" if col in right else "left", no_wrap=i == 0 or col in right,
                     overflow="fold")
    return t


def in_order(rows: Sequence[dict[str, Any]], key: str, names: Sequence[str] | None) -> list[dict[str, Any]]:
    """`rows` in the order the user named their servers (`--server B --server A`), others after."""
    if not names:
        return list(rows)
    rank = {n: i for i, n in enumerate(names)}
    return sorted(rows, key=lambda r: rank.get(r[key], len(rank)))


def skew_table(doc: dict[str, Any]) -> RenderableType:
    """`timekit analyze skew`: nodes against the majority consensus; reasons as notes."""
    quorum = "quorum" if doc["quorum"] else "NO QUORUM"
    notes = _Notes()
    title = (f"Skew against the majority ({quorum}; offset = consensus - node)"
             + (notes.ref(f"held: {doc['reason']}") if doc["held"] else ""))
    if not doc.get("committed", True):
        title += "\na report: --commit (or collect) saves the state"
    t = _table(title, ("node", "offset", "±", "verdict", "status", "bad/good"), right=("offset", "±"))
    for n in doc["nodes"]:
        t.add_row(n["node"], fmt_s(n["offset_s"]), fmt_s(n["uncertainty_s"], signed=False),
                  n["verdict"] + notes.ref(n["reason"] if n["verdict"] != "ok" else None),
                  n["status"], f"{n['bad_streak']}/{n['good_streak']}")
    for name in doc["stale"]:
        t.add_row(name, "-", "-", "stale" + notes.ref("no fresh evidence"), "-", "-")
    cluster = doc.get("cluster")
    if cluster is None:
        return notes.under(t)
    return Group(notes.under(t), _cluster_table(cluster))


def _cluster_table(c: dict[str, Any]) -> RenderableType:
    """`self` and each peer against the peers' majority, under the diagnosis (cluster vs UTC)."""
    notes = _Notes()
    quorum = "quorum" if c["quorum"] else "NO QUORUM"
    title = (f"Against the cluster's peers ({quorum}; offset = consensus - node)"
             + (notes.ref(f"held: {c['reason']}") if c["held"] else "") + f"\nself: {c['diagnosis']}")
    t = _table(title, ("node", "offset", "±", "verdict", "status", "bad/good"), right=("offset", "±"))
    me = c["self"]
    t.add_row("self", fmt_s(me["offset_s"]), fmt_s(0.0, signed=False),
              (me["verdict"] or "-") + notes.ref(me["reason"] if me["verdict"] not in (None, "ok") else None),
              me["status"], f"{me['bad_streak']}/{me['good_streak']}")
    for p in c["peers"]:
        why = (p["error"] if p["error"] else "reading too old or from another boot" if p["stale"]
               else p["reason"] if p["verdict"] not in (None, "ok") else None)
        verdict = "no_reply" if p["error"] else "stale" if p["stale"] else (p["verdict"] or "-")
        t.add_row(p["peer"], fmt_s(p["offset_s"]), fmt_s(p["uncertainty_s"], signed=False),
                  verdict + notes.ref(why), p["status"], f"{p['bad_streak']}/{p['good_streak']}")
    return notes.under(t)


FLEET_ROWS_SHOWN = 30  # the outliers, then a line for the rest: a fleet of thousands is read by its summary


def fleet_table(doc: dict[str, Any]) -> RenderableType:
    """`timekit fleet sweep`: the fleet's summary in the title, the outliers first (quarantined,
    suspect, then the largest offsets from the median), at most FLEET_ROWS_SHOWN rows."""
    notes = _Notes()
    quorum = "quorum" if doc["quorum"] else "NO QUORUM"
    median = "-" if doc["median_offset_s"] is None else fmt_s(doc["median_offset_s"])
    spread = "-" if doc["spread_s"] is None else fmt_s(doc["spread_s"], signed=False)
    title = (f"Fleet sweep: {doc['answered']}/{doc['nodes']} answered, {len(doc['quarantined'])} quarantined "
             f"({quorum}; median {median} from this sweeper, spread {spread}; offset = node - median)"
             + (notes.ref(f"held: {doc['reason']}") if doc["held"] else ""))
    t = _table(title, ("node", "offset", "±", "verdict", "status", "bad/good"), right=("offset", "±"))
    rows = doc["node_results"]
    for r in rows[:FLEET_ROWS_SHOWN]:
        off = None if r["from_consensus_s"] is None else -r["from_consensus_s"]
        t.add_row(r["node"], fmt_s(off), fmt_s(r["uncertainty_s"], signed=False),
                  r["verdict"] + notes.ref(r["error"] if r["verdict"] == "no_reply" else
                                           r["reason"] if r["verdict"] != "ok" else None),
                  r["status"], f"{r['bad_streak']}/{r['good_streak']}")
    if len(rows) > FLEET_ROWS_SHOWN:
        rest = rows[FLEET_ROWS_SHOWN:]
        t.add_row(f"... {len(rest)} more", "", "", f"{sum(r['verdict'] == 'ok' for r in rest)} ok", "", "")
    return notes.under(t)


def drift_table(results: list[dict[str, Any]]) -> RenderableType:
    """`timekit analyze drift`: local drift against each reference with its 95% interval."""
    notes = _Notes()
    t = _table("Drift of the local clock (ppm; + = local clock gains)",
               ("server", "ppm", "±95%", "offset", "n", "span", "status"),
               right=("ppm", "±95%", "offset", "n", "span"))
    for r in results:
        d = r["drift_ppm"]
        half = ci_half_ppm(d, r.get("drift_ci95_ppm"))
        t.add_row(r["server"], "-" if d is None else f"{d:+.3f}",
                  "-" if half is None else f"±{half:.3g}", fmt_s(r["offset_s"]),
                  f"{r.get('n_used', '-')}/{r['n_samples']}",
                  "-" if r["span_s"] is None else f"{r['span_s']:.3g} s",
                  r["status"] + notes.ref(r.get("reason") if r["status"] != "ok" else None))
    return notes.under(t)


def timeout_table(results: list[dict[str, Any]]) -> RenderableType:
    """`timekit analyze timeout`: the recommended timeout per server; why, as notes."""
    notes = _Notes()
    t = _table("Recommended timeouts from measured round trips",
               ("server", "timeout", "method", "rtt p50", "rtt p99"), right=("timeout", "rtt p50", "rtt p99"))
    for r in results:
        t.add_row(r["server"], fmt_s(r["timeout_s"], signed=False),
                  str(r["method"]) + notes.ref(r.get("reason")),
                  fmt_s(r["rtt_p50_s"], signed=False), fmt_s(r["rtt_p99_s"], signed=False))
    return notes.under(t)


def pauses_table(rows: list[Any]) -> Table:
    """`timekit sample pauses`: hiccup percentiles per interval."""
    t = Table(title="Pauses: how late a sleeper woke up, per interval (incl. wake-ups a stall swallowed)")
    for col in ("end (UTC)", "wake-ups", "p50", "p90", "p99", "p99.9", "max", "suspended"):
        t.add_column(col, justify="left" if col.startswith("end") else "right")
    for r in rows:
        t.add_row(_utc(r.t_local_ns)[11:23], str(r.n_wakeups), *(fmt_s(x, signed=False) for x in (
            r.p50_s, r.p90_s, r.p99_s, r.p999_s, r.max_s, r.suspend_s)))
    return t
