"""The `timekit check` verdict: the monitoring-plugin rules, pure (Nagios / Icinga conventions).

How a verdict is reached (`judge`): the worst of the per-metric findings, ordered
CRITICAL > WARNING > UNKNOWN > OK (monitoring-plugins' ``max_state_alt``), except that no
usable sample at all, or a store whose newest usable sample is older than ``max_age_s``,
makes the whole verdict UNKNOWN: what the store says is then no longer about *now*.
The offset judged is `Assessment.point_offset_s` (median of the truechimers' clock-filter offsets), not
the interval's midpoint; the interval's half-width is the `uncertainty`. In store mode a reference
whose newest attempt failed and whose newest usable reply is older than ``max_age_s`` is named
(WARNING). Drift is judged only where `ServerAssessment.drift_judgeable` (the Prometheus rules' gate).

The perfdata follow the plugin guidelines: ``label=value[UOM];[warn];[crit];[min];[max]`` with
plain decimal numbers (no exponent), UOM ``s`` for seconds; ppm has no valid UOM, so drift is
``drift_ppm=`` without one. Thresholds apply to the absolute value (``> warn`` warns); the
perfdata keep the sign (offset = reference − local, drift positive = this clock gains).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from timekit.analysis.holdover import fmt_duration
from timekit.analysis.plugin_range import PluginRange
from timekit.analysis.thresholds import DEFAULT_THRESHOLDS, Thresholds
from timekit.units import fmt_s
from timekit.vocabulary import CheckMode, CheckStatus

if TYPE_CHECKING:
    from timekit.analysis.assessment import Assessment, ServerAssessment

DEFAULT_WINDOW_S = 3600.0  # loss ratio, attempts and pauses judged over the last hour (longer: max_age_s)

OK: CheckStatus = "ok"
WARNING: CheckStatus = "warning"
CRITICAL: CheckStatus = "critical"
UNKNOWN: CheckStatus = "unknown"
EXIT_CODES: dict[CheckStatus, int] = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}
# monitoring-plugins' max_state_alt: a real problem beats "unknown"
SEVERITY: dict[CheckStatus, int] = {OK: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3}
MAX_REASONS_IN_LINE = 4  # the status line names at most this many findings, worst first
STRATUM_MAX = 16  # NTP: 16 = unsynchronized
# the host's time daemon as a suspect (analysis.time_daemon): following a falseticker steers this clock
# wrong (CRITICAL); a bound it does not keep, or a false 'synchronized', misleads whoever trusts it
# (ClockBound, the kernel's readers) and an unsynchronized daemon is not disciplining (WARNING)
DAEMON_CHECK_STATUS: dict[str, CheckStatus] = {"following_falseticker": CRITICAL, "overconfident": WARNING,
                                               "false_sync_claim": WARNING, "unsynchronized": WARNING,
                                               "holdover": WARNING}


@dataclass(frozen=True)
class Reason:
    """One finding that is not OK: its status, the metric it is about and the words for it."""

    status: CheckStatus
    metric: str
    message: str


@dataclass(frozen=True)
class PerfDatum:
    """One perfdata item; `decimals` is how the value is written (fixed point, never 1e-05)."""

    label: str
    value: float | int
    uom: str = ""
    warn: float | int | PluginRange | None = None
    crit: float | int | PluginRange | None = None
    min: float | int | None = None
    max: float | int | None = None
    decimals: int = 9

    def format(self) -> str:
        """`label=value[UOM];[warn];[crit];[min];[max]`, trailing empty fields dropped."""
        tail = [v.perfdata() if isinstance(v, PluginRange) else _num(v, self.decimals)
                for v in (self.warn, self.crit, self.min, self.max)]
        while tail and tail[-1] == "":
            tail.pop()
        return ";".join([f"{self.label}={_num(self.value, self.decimals)}{self.uom}", *tail])


@dataclass(frozen=True)
class CheckVerdict:
    """The verdict: status, the summary in words, the numbers judged, findings and perfdata."""

    status: CheckStatus
    summary: str
    metrics: dict[str, Any] = field(default_factory=dict)
    reasons: tuple[Reason, ...] = ()
    perfdata: tuple[PerfDatum, ...] = ()
    mode: CheckMode = "store"  # 'measure' (servers named) | 'store' | 'error'
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    servers: tuple[dict[str, Any], ...] = ()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def perfdata_text(self) -> str:
        return " ".join(p.format() for p in self.perfdata)

    def status_line(self) -> str:
        """`TIMEKIT STATUS - summary | perfdata` (the `|` part only when there are perfdata)."""
        line = f"TIMEKIT {self.status.upper()} - {self.summary}"
        return f"{line} | {self.perfdata_text}" if self.perfdata else line

    def to_json(self) -> dict[str, Any]:
        """The same verdict as the status line, as one JSON-able document."""
        return {"status": self.status, "exit_code": self.exit_code, "summary": self.summary,
                "metrics": self.metrics,
                "reasons": [{"status": r.status, "metric": r.metric, "message": r.message}
                            for r in self.reasons],
                "perfdata": self.perfdata_text, "mode": self.mode,
                "thresholds": self.thresholds.to_json(),
                "servers": list(self.servers)}


# ----------------------------------------------------------------------------- formatting
def _num(value: float | int | None, decimals: int) -> str:
    """Plain decimal (perfdata allow only [-0-9.]): 0.01, 0.000123456, 250, '' for None."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _fmt_age(age_s: float) -> str:
    """Seconds in the unit a person reads: 42 s, 20.0 min, 3.5 h, 2.0 d."""
    if age_s < 120:
        return f"{age_s:.0f} s"
    if age_s < 7200:
        return f"{age_s / 60:.1f} min"
    if age_s < 172_800:
        return f"{age_s / 3600:.1f} h"
    return f"{age_s / 86_400:.1f} d"


_ASCII = str.maketrans({"µ": "u", "±": "+/-", "×": "x", "|": "/"})


def _clean(text: str) -> str:
    """One ASCII line (NRPE and old consoles), and no `|` (it would start the perfdata)."""
    return " ".join(text.translate(_ASCII).split())


# ----------------------------------------------------------------------------- judging
def _level(value: float, warn: PluginRange, crit: PluginRange) -> CheckStatus:
    return CRITICAL if crit.alerts(value) else WARNING if warn.alerts(value) else OK


def _judge_value(reasons: list[Reason], metric: str, value: float | None, t: Thresholds, name: str,
                 words: str) -> None:
    """Append a finding when |value| is outside the warn or crit range of threshold pair `name`
    (`offset_s`, ...; check_ntp_time too judges the absolute offset); `words` names the value."""
    if value is None:
        return
    warn, crit = t.range_of("warn_" + name), t.range_of("crit_" + name)
    level = _level(abs(value), warn, crit)
    if level != OK:
        chosen = crit if level == CRITICAL else warn
        if chosen.is_upper_limit and chosen.start == 0.0:
            limit = chosen.end
            unit_fmt = fmt_s(limit, signed=False) if metric in ("offset", "jitter", "uncertainty", "pause") \
                else (f"{limit:g} ppm" if metric == "drift" else f"{limit:g}")
            reasons.append(Reason(level, metric, f"{words} beyond {level} {unit_fmt}"))
        else:
            where = "inside" if chosen.inside else "outside"
            reasons.append(Reason(level, metric, f"{words} {where} {level} range {chosen.perfdata()}"))


def _median(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    return statistics.median(vals) if vals else None


def _judgeable_drift(s: ServerAssessment, warn_drift_ppm: float) -> float | None:
    """The server's drift when it is known well enough to alert on (the gate the Prometheus rules
    use, `ServerAssessment.drift_judgeable`), else None (a short burst cannot tell)."""
    return s.drift_ppm if s.drift_judgeable(warn_drift_ppm) else None


def _silence_reasons(fleet: Assessment, t: Thresholds, window_s: float) -> list[Reason]:
    """WARNING per server whose newest attempt failed and whose newest usable reply is older than
    `t.max_age_s` (the age at which a whole store is stale): a reference that stopped answering.
    One lost reply is not a finding; a server with no usable reply in the window is."""
    out = []
    for s in fleet.servers:
        silent_s = s.silent_for_s()
        if silent_s is None or silent_s <= t.max_age_s:
            continue
        error = s.last_error or "unknown"
        if math.isinf(silent_s):
            words = (f"no usable reply in the last {_fmt_age(window_s)} ({s.n_attempts} attempts, "
                     f"last error {error})")
        else:
            words = f"no usable reply for {_fmt_age(silent_s)} (last error {error})"
        out.append(Reason(WARNING, "reachability", f"{s.server}: {words}"))
    return out


def _server_row(s: ServerAssessment) -> dict[str, Any]:
    return {"server": s.server, "offset_s": s.offset_s, "delay_s": s.delay_s, "jitter_s": s.jitter_s,
            "drift_ppm": s.drift_ppm, "stratum": s.stratum, "age_s": s.age_s, "n_ok": s.n_ok,
            "n_attempts": s.n_attempts, "last_error": s.last_error, "truechimer": s.truechimer,
            "health": s.health, "failure": None}


def unknown_verdict(message: str, *, mode: CheckMode = "error", thresholds: Thresholds = DEFAULT_THRESHOLDS,
                    reasons: Sequence[Reason] = (), metrics: Mapping[str, Any] | None = None,
                    perfdata: Sequence[PerfDatum] = (),
                    servers: Sequence[dict[str, Any]] = ()) -> CheckVerdict:
    """UNKNOWN (exit 3) with `message` as the summary."""
    msg = _clean(message)
    found = tuple(Reason(r.status, r.metric, _clean(r.message)) for r in reasons) or (
        Reason(UNKNOWN, "check", msg),)
    return CheckVerdict(UNKNOWN, msg, dict(metrics or {}), found, tuple(perfdata), mode, thresholds,
                        tuple(servers))


def judge(fleet: Assessment | None, t: Thresholds = DEFAULT_THRESHOLDS, *, mode: CheckMode = "store",
          failures: Mapping[str, str] | None = None, newest_ok_age_s: float | None = None,
          window_s: float = DEFAULT_WINDOW_S, unreachable: CheckStatus = CRITICAL) -> CheckVerdict:
    """The verdict on `fleet` (None: nothing usable was measured).

    `failures`: servers that gave no usable reply now (measure mode), with why in words.
    `unreachable`: the verdict when none of the named servers gave a usable reply (check_ntp_time's
    CRITICAL; its `-q` makes it UNKNOWN); when some did, each one that did not is a WARNING.
    `newest_ok_age_s`: age of the store's newest usable sample (store mode; None: none at all).
    `window_s`: the window `fleet` was computed over (named in the words).
    """
    failures = dict(failures or {})
    usable = fleet.usable if fleet is not None else []
    servers = tuple(_server_row(s) for s in fleet.servers) if fleet is not None else ()
    servers += tuple({"server": name, "failure": _clean(why)} for name, why in sorted(failures.items()))
    failed = [Reason(WARNING, "reachability", f"no usable reply from {name} {why}")
              for name, why in sorted(failures.items())]
    if not usable:
        if failures:
            words = "; ".join(r.message for r in failed)
            if unreachable == UNKNOWN:
                return unknown_verdict(words, mode=mode, thresholds=t, servers=servers)
            found = tuple(Reason(unreachable, "reachability", _clean(r.message)) for r in failed)
            return CheckVerdict(unreachable, _clean(words), {}, found, (), mode, t, servers)
        if mode == "store" and newest_ok_age_s is not None and newest_ok_age_s > t.max_age_s:
            return unknown_verdict(_stale_words(newest_ok_age_s, t), mode=mode, thresholds=t, servers=servers,
                                   metrics={"newest_age_s": newest_ok_age_s})
        return unknown_verdict("no usable sample in the store (run `timekit sample ntp SERVER` or "
                               "`timekit collect`)", mode=mode, thresholds=t, servers=servers)
    assert fleet is not None
    reasons: list[Reason] = list(failed)
    iv = fleet.interval
    sel = iv.selection if iv is not None else None
    quorum = sel is not None and sel.quorum
    chimers = [s for s in usable if s.truechimer] if quorum else usable
    chimers = chimers or usable

    # sync status
    sync = iv.status if iv is not None else "unknown"
    if iv is None or sync == "unknown":
        why = iv.reason.split("; ")[0] if iv is not None else "no interval"
        if sel is not None and not sel.quorum:
            reasons.append(Reason(CRITICAL, "sync", f"references disagree: {why}"))
        elif iv is not None and iv.earliest_ns is not None:
            reasons.append(Reason(CRITICAL, "sync", f"sync status unknown: {why}"))
        else:
            reasons.append(Reason(UNKNOWN, "sync", f"no interval: {why}"))
    elif sync == "free_running":
        reasons.append(Reason(WARNING, "sync", f"free running: {iv.reason.split('; ')[0]}"))
    if quorum and sel is not None and sel.falsetickers:
        reasons.append(Reason(WARNING, "selection", "falseticker(s) outside the majority: "
                              + ", ".join(sel.falsetickers)))

    # offset: the median of the truechimers' clock-filter offsets (the interval's midpoint is no point
    # estimate: it moves as the interval widens unevenly); without a majority, of the usable servers'
    offset = fleet.point_offset_s
    offset_source = "truechimers"
    if offset is None:
        offset, offset_source = _median([s.offset_s for s in chimers]), "median"
    what = "offset" if offset_source == "truechimers" else f"median offset of {len(chimers)} server(s)"
    _judge_value(reasons, "offset", offset, t, "offset_s", f"{what} {fmt_s(offset)}")
    jitter = _median([s.jitter_s for s in chimers])
    _judge_value(reasons, "jitter", jitter, t, "jitter_s",
                 f"jitter {fmt_s(jitter, signed=False)}")
    drift = _median([_judgeable_drift(s, t.warn_drift_ppm) for s in chimers])
    _judge_value(reasons, "drift", drift, t, "drift_ppm",
                 f"drift {drift:+.1f} ppm" if drift is not None else "")
    unc = iv.uncertainty_s if iv is not None else None
    _judge_value(reasons, "uncertainty", unc, t, "uncertainty_s",
                 f"uncertainty ±{fmt_s(unc, signed=False)}")
    strata = [s.stratum for s in chimers if s.stratum is not None]
    stratum = min(strata) if strata else None
    _judge_value(reasons, "stratum", stratum, t, "stratum", f"stratum {stratum}")
    pause_max = fleet.pause.get("max_s") if fleet.pause else None
    _judge_value(reasons, "pause", pause_max, t, "pause_s",
                 f"worst pause {fmt_s(pause_max, signed=False)}")
    hold = fleet.holdover
    holdover_s = hold.seconds if hold is not None and iv is not None and iv.earliest_ns is not None else None
    if holdover_s is not None and hold is not None and not hold.capped:
        for status, limit in ((CRITICAL, t.crit_holdover_s), (WARNING, t.warn_holdover_s)):
            if limit is not None and holdover_s < limit:
                reasons.append(Reason(status, "holdover", f"holdover {fmt_duration(holdover_s)} to "
                                      f"±{fmt_s(hold.width_s, signed=False)} (below {fmt_duration(limit)})"))
                break

    # quarantine (sticky state kept by the skew checks): against the references, and the cluster's peers
    for health, quarantined_words, suspect_words in (
            (fleet.self_health, "this host is quarantined: its clock disagrees with the majority "
             "(timekit analyze skew)", "this host is suspect: its offset from the majority is beyond the "
             "skew warning"),
            (fleet.cluster_self_health, "this host is quarantined from its cluster: its clock disagrees "
             "with the majority of its peers ([cluster] peers)", "this host is suspect in its cluster: its "
             "offset from its peers' majority is beyond the skew warning")):
        if health == "quarantined":
            reasons.append(Reason(CRITICAL, "quarantine", quarantined_words))
        elif health == "suspect":
            reasons.append(Reason(WARNING, "quarantine", suspect_words))
    quarantined = sorted(s.server for s in fleet.servers if s.health == "quarantined")
    if quarantined:
        reasons.append(Reason(WARNING, "quarantine", "reference(s) quarantined: " + ", ".join(quarantined)))
    if mode == "store":
        reasons.extend(_silence_reasons(fleet, t, window_s))
    daemon = fleet.daemon
    if daemon is not None and daemon.status in DAEMON_CHECK_STATUS:
        reasons.append(Reason(DAEMON_CHECK_STATUS[daemon.status], "daemon", daemon.reason))

    metrics = {"offset_s": offset, "offset_source": offset_source, "jitter_s": jitter, "drift_ppm": drift,
               "uncertainty_s": unc, "stratum": stratum, "sync_status": sync,
               "newest_age_s": fleet.newest_age_s, "servers_usable": len(usable),
               "servers_total": len(fleet.servers) + len(failures),
               "truechimers": list(sel.truechimers) if quorum and sel is not None else [],
               "falsetickers": list(sel.falsetickers) if quorum and sel is not None else [],
               "self_health": fleet.self_health, "cluster_self_health": fleet.cluster_self_health,
               "quarantined": quarantined, "pause_max_s": pause_max,
               "daemon": daemon.daemon if daemon else None,
               "daemon_status": daemon.status if daemon else None,
               "holdover_s": holdover_s, "holdover_width_s": hold.width_s if hold is not None else None,
               "holdover_capped": bool(hold.capped) if hold is not None else None}
    perf = _perfdata(metrics, t)
    stale = (mode == "store" and newest_ok_age_s is not None and newest_ok_age_s > t.max_age_s)
    reasons = sorted((Reason(r.status, r.metric, _clean(r.message)) for r in reasons),
                     key=lambda r: -SEVERITY[r.status])
    if stale:
        assert newest_ok_age_s is not None
        words = _stale_words(newest_ok_age_s, t)
        return unknown_verdict(words, mode=mode, thresholds=t, metrics=metrics, perfdata=perf,
                               servers=servers, reasons=(Reason(UNKNOWN, "age", words), *reasons))
    status = max((r.status for r in reasons), key=SEVERITY.__getitem__, default=OK)
    return CheckVerdict(status, _summary(status, reasons, metrics), metrics, tuple(reasons), perf, mode, t,
                        servers)


def _stale_words(age_s: float, t: Thresholds) -> str:
    return (f"stale: the newest usable sample is {_fmt_age(age_s)} old (max age {_fmt_age(t.max_age_s)}); "
            "is `timekit collect` running?")


def _summary(status: CheckStatus, reasons: list[Reason], m: Mapping[str, Any]) -> str:
    """Worst findings first; an OK verdict says what it measured."""
    if status != OK:
        shown = [r.message for r in reasons if r.status != OK][:MAX_REASONS_IN_LINE]
        more = len(reasons) - len(shown)
        return _clean("; ".join(shown) + (f" (+{more} more, see --json)" if more > 0 else ""))
    parts: list[str] = [f"offset {fmt_s(m['offset_s'])}"]
    if m["uncertainty_s"] is not None:
        parts[0] += f" ±{fmt_s(m['uncertainty_s'], signed=False)}"
    if m["jitter_s"] is not None:
        parts.append(f"jitter {fmt_s(m['jitter_s'], signed=False)}")
    if m["drift_ppm"] is not None:
        parts.append(f"drift {m['drift_ppm']:+.1f} ppm")
    if m["stratum"] is not None:
        parts.append(f"stratum {m['stratum']}")
    if m.get("holdover_s") is not None and m.get("holdover_width_s") is not None:
        width = fmt_s(m["holdover_width_s"], signed=False)
        if m["holdover_s"] <= 0:
            parts.append(f"holdover none (already wider than ±{width})")
        else:
            capped = "+" if m.get("holdover_capped") else ""
            parts.append(f"holdover {fmt_duration(m['holdover_s'])}{capped} to ±{width}")
    parts.append(f"{m['servers_usable']}/{m['servers_total']} server(s) usable, {m['sync_status']}")
    return _clean(", ".join(parts))


def _limit(t: Thresholds, name: str) -> float | PluginRange:
    """A perfdata warn/crit field: the plain number, or the range as given."""
    given = t.ranges.get(name)
    if given is not None:
        return given
    limit: float = getattr(t, name)
    return limit


def _perfdata(m: Mapping[str, Any], t: Thresholds) -> tuple[PerfDatum, ...]:
    """Perfdata for every metric that has a value (an undetermined one is left out)."""
    def lim(name: str) -> tuple[float | PluginRange, float | PluginRange]:
        return _limit(t, "warn_" + name), _limit(t, "crit_" + name)

    out = []
    if m["offset_s"] is not None:
        out.append(PerfDatum("offset", m["offset_s"], "s", *lim("offset_s")))
    if m["jitter_s"] is not None:
        out.append(PerfDatum("jitter", m["jitter_s"], "s", *lim("jitter_s"), 0))
    if m["drift_ppm"] is not None:
        out.append(PerfDatum("drift_ppm", m["drift_ppm"], "", *lim("drift_ppm"), decimals=3))
    if m["uncertainty_s"] is not None:
        out.append(PerfDatum("uncertainty", m["uncertainty_s"], "s", *lim("uncertainty_s"), 0))
    if m["stratum"] is not None:
        out.append(PerfDatum("stratum", int(m["stratum"]), "", *lim("stratum"), 0, STRATUM_MAX))
    if m["newest_age_s"] is not None:
        out.append(PerfDatum("age", max(0.0, m["newest_age_s"]), "s", None, None, 0, decimals=3))
    if m["pause_max_s"] is not None:
        out.append(PerfDatum("pause_max", m["pause_max_s"], "s", *lim("pause_s"), 0))
    if m.get("holdover_s") is not None:  # a shorter holdover is worse: the limits are ranges `N:`
        def below(v: float | None) -> PluginRange | None:
            return None if v is None else PluginRange.parse(f"{v:g}:")
        out.append(PerfDatum("holdover", m["holdover_s"], "s", below(t.warn_holdover_s),
                             below(t.crit_holdover_s), 0, decimals=0))
    out.append(PerfDatum("servers", int(m["servers_usable"]), "", None, None, 0, int(m["servers_total"])))
    return tuple(out)
