"""Prometheus metrics: `timekit export prometheus`, `timekit exporter` and `timekit rules`.

Every number comes from the one `Assessment` of the store (`timekit.truetime.assess_store`, the
same one `timekit check` judges), rebuilt on every scrape by a custom collector, so a scrape is
never older than the store. Names follow Prometheus practice: the `timekit_` prefix, base units in the name
(`_seconds`, `_ratio`, `_timestamp_seconds`); the one exception is drift, `_ppm`, stated in
its HELP, because the thresholds, the CLI and chrony all speak ppm. Offsets keep timekit's
sign (reference − local: positive means this clock is behind). A value timekit does not have
(no usable sample, no drift fit, node never judged) is an absent series, never a 0; so is a
drift too uncertain to judge (`ServerAssessment.drift_judgeable`), as `timekit check` ignores it.
Every family is a plain gauge: `quantile` is reserved for summaries, so the pause percentiles
are one gauge each (`timekit_pause_p99_seconds`), which `promtool check metrics` accepts.

Only the CLI commands import this module (prometheus_client is not needed for `--help`).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from timekit.address import NTS_SCHEME
from timekit.analysis.assessment import Assessment, Policy
from timekit.analysis.skew import SELF_NODE
from timekit.analysis.thresholds import DEFAULT_THRESHOLDS, DRIFT_GATE_FRACTION, Thresholds
from timekit.analysis.time_daemon import SEVERITY as DAEMON_SEVERITY
from timekit.analysis.verdict import DEFAULT_WINDOW_S
from timekit.atomic_files import atomic_output
from timekit.errors import TimekitError, UsageError
from timekit.outputs.exporter_http import DEFAULT_REFRESH_S
from timekit.units import NS_PER_S

SYNC_STATUSES = ("synchronized", "free_running", "unknown")  # timekit_sync_status{status=...}
NODE_STATUSES = ("ok", "suspect", "quarantined")  # timekit_node_status{status=...}
DAEMON_STATUSES = tuple(DAEMON_SEVERITY)  # timekit_daemon_status{status=...}
PAUSE_PERCENTILES = (("p50", "p50_s", "50th"), ("p90", "p90_s", "90th"), ("p99", "p99_s", "99th"),
                     ("p999", "p999_s", "99.9th"))  # timekit_pause_{name}_seconds <- pause summary key
DRIFT_EXPORT_WARN_PPM = DEFAULT_THRESHOLDS.warn_drift_ppm  # a drift is exported when judgeable at this
DEFAULT_EXPORTER_PORT = 9123  # "123" for NTP; not a registered Prometheus exporter port
DEFAULT_BIND = "127.0.0.1"
TEXTFILE_MODE = 0o644  # node_exporter usually runs as another user: the file must be world-readable
WARNING_FOR = "5m"  # a warning must persist this long before it fires (cron refreshes every minute)
CRITICAL_FOR = "2m"


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily("timekit_" + name, doc, labels=list(labels))


def fleet_metrics(fleet: Assessment, *, version: str | None = None) -> list[Metric]:
    """The metric families of one `Assessment` (pure: no clock, no store)."""
    by_server = {
        "offset_seconds": ("Offset of the reference against this clock, seconds (reference - local; "
                           "positive: this clock is behind): the clock filter's, the lowest-delay sample "
                           "of the newest 8 within 16 s, at the newest sample's instant.", "offset_s"),
        "delay_seconds": ("Round-trip delay of the clock filter's sample, seconds.", "delay_s"),
        "root_distance_seconds": ("Root distance (delay/2 + root delay/2 + root dispersion) of the clock "
                                  "filter's sample, seconds.", "root_distance_s"),
        "jitter_seconds": ("RMS of successive offset differences over the newest 8 usable samples, "
                           "seconds.", "jitter_s"),
        "stratum": ("Stratum of the reference in its newest usable reply.", "stratum"),
        "sample_age_seconds": ("Age of the reference's newest usable sample, seconds.", "age_s"),
        "loss_ratio": ("Fraction (0-1) of the attempts in the window that gave no usable sample.",
                       "loss_ratio"),
    }
    families = {key: _gauge("server_" + key, doc, ("server",)) for key, (doc, _attr) in by_server.items()}
    gate = DRIFT_EXPORT_WARN_PPM * DRIFT_GATE_FRACTION
    drift = _gauge("server_drift_ppm", "Drift of this clock against the reference in ppm (parts per "
                   "million, 1e-6 s/s; positive: this clock gains), robust fit over the window; absent "
                   f"while its 95 % CI half-width exceeds {gate:g} ppm (half the default warning: noise, "
                   "as timekit check judges it).", ("server",))
    drift_half = _gauge("server_drift_ci95_halfwidth_ppm", "Half-width of the 95 % confidence interval "
                        "of the drift fit, ppm (parts per million); present whenever a drift was fitted.",
                        ("server",))
    chimer = _gauge("server_truechimer", "1 when the reference agrees with the majority in the interval "
                    "selection, 0 when it is a falseticker; absent when not judged.", ("server",))
    last_ok = _gauge("server_last_attempt_ok", "1 when the newest attempt to the reference gave a usable "
                     "sample, 0 when it failed.", ("server",))
    for st in fleet.servers:
        for key, (_doc, attr) in by_server.items():
            value = getattr(st, attr)
            if value is not None:
                families[key].add_metric([st.server], float(value))
        half = st.drift_ci_half_ppm
        if half is not None and not math.isnan(half):
            drift_half.add_metric([st.server], float(half))
            if st.drift_ppm is not None and st.drift_judgeable(DRIFT_EXPORT_WARN_PPM):
                drift.add_metric([st.server], float(st.drift_ppm))
        if st.truechimer is not None:
            chimer.add_metric([st.server], float(st.truechimer))
        if st.n_attempts:
            last_ok.add_metric([st.server], 0.0 if st.last_error is not None else 1.0)
    adev = _gauge("server_allan_deviation", "Overlapping Allan deviation of this clock against the "
                  "reference at averaging time tau_seconds (fractional frequency, 1e-6 = 1 ppm), from the "
                  "samples since its newest step; present where the stability was measured.",
                  ("server", "tau_seconds"))
    adev_upper = _gauge("server_allan_deviation_upper95", "Upper 95 % confidence bound of that Allan "
                        "deviation: what the interval's growth leans on.", ("server", "tau_seconds"))
    tdev = _gauge("server_time_deviation_seconds", "Time deviation (TDEV) of this clock against the "
                  "reference at averaging time tau_seconds, seconds.", ("server", "tau_seconds"))
    for st in fleet.servers:
        b = st.stability
        if b is None:
            continue
        for j, tau in enumerate(b.tau_s):
            label = [st.server, f"{float(tau):.3g}"]
            adev_upper.add_metric(label, float(b.adev_upper[j]))
            if b.adev is not None:
                adev.add_metric(label, float(b.adev[j]))
            if b.tdev_s is not None and math.isfinite(float(b.tdev_s[j])):
                tdev.add_metric(label, float(b.tdev_s[j]))
    authenticated = _gauge("server_authenticated", "1 for an NTS server (nts://): its samples are "
                           "authenticated (RFC 8915), never plain; 0 for plain NTP.", ("server",))
    for st in fleet.servers:
        authenticated.add_metric([st.server], float(st.server.startswith(NTS_SCHEME)))
    out: list[Metric] = [*families.values(), drift, drift_half, chimer, last_ok, adev, adev_upper, tdev,
                         authenticated]
    out += _node_metrics(fleet)
    out += _host_metrics(fleet)
    out += _daemon_metrics(fleet)
    info = _gauge("build_info", "Always 1; the timekit version that wrote these metrics.", ("version",))
    info.add_metric([version or "unknown"], 1.0)
    return [m for m in [*out, info] if m.samples]  # a family without data is left out, not zeroed


def _node_metrics(fleet: Assessment) -> list[Metric]:
    """Quarantine state of each judged node (references and `self`) from the skew checks."""
    quarantined = _gauge("node_quarantined", "1 when the skew check holds the node in quarantine "
                         "(node: a reference host:port, or self for this host), else 0.", ("node",))
    status = _gauge("node_status", "1 for the node's current skew-check status (ok, suspect, "
                    "quarantined), 0 for the others.", ("node", "status"))
    nodes = [(st.server, st.health) for st in fleet.servers] + [(SELF_NODE, fleet.self_health)]
    for node, health in nodes:
        if health is None:  # never judged: absent, not "ok"
            continue
        quarantined.add_metric([node], float(health == "quarantined"))
        for name in NODE_STATUSES:
            status.add_metric([node, name], float(health == name))
    return [quarantined, status, *_cluster_metrics(fleet)]


def _cluster_metrics(fleet: Assessment) -> list[Metric]:
    """This host and its cluster peers against the peers' majority ([cluster] peers), and each peer's
    newest reading: off from the cluster, apart from off from UTC."""
    quarantined = _gauge("cluster_node_quarantined", "1 when the cluster check holds the node in quarantine "
                         "against the peers' majority (node: self, or a peer's name), else 0.", ("node",))
    status = _gauge("cluster_node_status", "1 for the node's current cluster-check status (ok, suspect, "
                    "quarantined), 0 for the others.", ("node", "status"))
    offset = _gauge("cluster_peer_offset_seconds", "The peer's newest reading: peer - this clock, seconds "
                    "(positive: this clock is behind the peer).", ("peer",))
    delay = _gauge("cluster_peer_delay_seconds", "Round trip of that reading, seconds (its bound is half).",
                   ("peer",))
    up = _gauge("cluster_peer_up", "1 when the peer answered its newest query, else 0.", ("peer",))
    age = _gauge("cluster_peer_reading_age_seconds", "Age of the peer's newest reading, seconds (the check "
                 "judges readings younger than [skew] max_age_s).", ("peer",))
    for node, h in sorted(fleet.cluster_health.items()):
        quarantined.add_metric([node], float(h.status == "quarantined"))
        for name in NODE_STATUSES:
            status.add_metric([node, name], float(h.status == name))
    for r in fleet.peers:
        up.add_metric([r.peer], float(r.ok))
        age.add_metric([r.peer], max(0.0, (fleet.as_of_ns - r.t_local_ns) / NS_PER_S))
        if r.ok and r.offset_s is not None and r.delay_s is not None:
            offset.add_metric([r.peer], r.offset_s)
            delay.add_metric([r.peer], r.delay_s)
    return [quarantined, status, offset, delay, up, age]


def _daemon_metrics(fleet: Assessment) -> list[Metric]:
    """The host's time daemon as it claims, and timekit's check of those claims (analysis.time_daemon)."""
    v = fleet.daemon
    status = _gauge("daemon_status", "1 for timekit's verdict on the host's time daemon (ok, "
                    "following_falseticker, overconfident, false_sync_claim, unsynchronized, holdover, "
                    "cannot_tell), 0 for the others.", ("daemon", "status"))
    suspect = _gauge("daemon_suspect", "1 when the host's time daemon follows a falseticker, claims a bound "
                     "it does not keep, or claims synchronized falsely; else 0.", ("daemon",))
    synced = _gauge("daemon_synchronized", "1 when the time daemon claims to be synchronized.", ("daemon",))
    offset = _gauge("daemon_offset_seconds", "The daemon's own offset estimate at its reading, seconds "
                    "(reference - local; chrony's system time offset).", ("daemon",))
    bound = _gauge("daemon_claimed_bound_seconds", "The daemon's claimed bound around its offset: root "
                   "delay/2 + root dispersion, seconds.", ("daemon",))
    excess = _gauge("daemon_bound_excess_seconds", "How far the daemon's claimed interval misses timekit's "
                    "measured one at the same instant, seconds (> 0: it claims a bound it does not keep; "
                    "<= 0: they overlap).", ("daemon",))
    age = _gauge("daemon_reading_age_seconds", "Age of the daemon's newest stored reading, seconds.",
                 ("daemon",))
    if v is None:
        return []
    for name in DAEMON_STATUSES:
        status.add_metric([v.daemon, name], float(v.status == name))
    suspect.add_metric([v.daemon], float(v.suspect))
    if v.synchronized is not None:
        synced.add_metric([v.daemon], float(v.synchronized))
    if v.offset_s is not None:
        offset.add_metric([v.daemon], v.offset_s)
    if v.claimed_bound_s is not None:
        bound.add_metric([v.daemon], v.claimed_bound_s)
    if v.excess_s is not None:
        excess.add_metric([v.daemon], v.excess_s)
    if v.age_s is not None:
        age.add_metric([v.daemon], v.age_s)
    return [status, suspect, synced, offset, bound, excess, age]


def _host_metrics(fleet: Assessment) -> list[Metric]:
    """This host: its offset and TrueTime interval, sync status, evidence age, pauses."""
    iv = fleet.interval
    uncertainty = iv.uncertainty_s if iv is not None else None
    sync_now = iv.status if iv is not None else "unknown"
    offset = _gauge("clock_offset_seconds", "Offset of this clock: median of the truechimers' newest "
                    "offsets, seconds (reference - local; positive: this clock is behind).")
    point = fleet.point_offset_s
    if point is not None:
        offset.add_metric([], point)
    midpoint = _gauge("clock_interval_midpoint_offset_seconds", "Midpoint of the interval [earliest, "
                      "latest] minus this clock, seconds (reference - local): with the uncertainty it "
                      "draws the band; not a point estimate (it moves as the interval widens unevenly).")
    half = _gauge("clock_uncertainty_seconds", "Half-width of the interval [earliest, latest] that "
                  "contains the references' true time, seconds.")
    width = _gauge("clock_interval_width_seconds", "Width latest - earliest of the interval that "
                   "contains the references' true time, seconds.")
    if fleet.interval_midpoint_offset_s is not None and uncertainty is not None:
        midpoint.add_metric([], fleet.interval_midpoint_offset_s)
        half.add_metric([], uncertainty)
        width.add_metric([], 2 * uncertainty)
    sync = _gauge("sync_status", "1 for this clock's current status (synchronized, free_running, "
                  "unknown), 0 for the others.", ("status",))
    for name in SYNC_STATUSES:
        sync.add_metric([name], float(sync_now == name))
    age = _gauge("newest_sample_age_seconds", "Age of the newest usable sample of any reference, seconds.")
    newest = _gauge("newest_sample_timestamp_seconds", "Unix time of the newest usable sample of any "
                    "reference, seconds (alert on time() - this when exports may stop).")
    if fleet.newest_age_s is not None:
        age.add_metric([], fleet.newest_age_s)
        newest.add_metric([], fleet.as_of_ns / NS_PER_S - fleet.newest_age_s)
    pauses = {name: _gauge(f"pause_{name}_seconds", f"Pause meter: worst per-interval {words} "
                           "percentile of how late a sleeper woke up in the window, seconds.")
              for name, _key, words in PAUSE_PERCENTILES}
    pause_max = _gauge("pause_max_seconds", "Pause meter: longest pause (late wake-up) in the window, "
                       "seconds.")
    suspend = _gauge("suspend_seconds", "Longest time the host was suspended in the window, seconds.")
    if fleet.pause is not None:
        for name, key, _words in PAUSE_PERCENTILES:
            pauses[name].add_metric([], float(fleet.pause[key]))
        pause_max.add_metric([], float(fleet.pause["max_s"]))
        suspend.add_metric([], float(fleet.pause["suspend_s"]))
    holdover = _gauge("holdover_seconds", "How long this clock may run without its references before the "
                      "interval is wider than +/- timekit_holdover_width_seconds, seconds (at most the time "
                      "until the evidence goes void).")
    holdover_width = _gauge("holdover_width_seconds", "The half-width the holdover runs to, seconds.")
    h = fleet.holdover
    if h is not None and h.seconds is not None:
        holdover.add_metric([], h.seconds)
        holdover_width.add_metric([], h.width_s)
    updated = _gauge("last_update_timestamp_seconds", "Unix time these metrics were computed from the "
                     "store, seconds.")
    updated.add_metric([], fleet.as_of_ns / NS_PER_S)
    return [offset, midpoint, half, width, sync, age, newest, *pauses.values(), pause_max, suspend, holdover,
            holdover_width, updated]


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("timekit")
    except PackageNotFoundError:
        return None


class TimekitCollector(Collector):
    """A prometheus_client collector that reads the store afresh on every `collect()`.

    `db` is the store path (None: the default store); `now` reads (CLOCK_REALTIME, CLOCK_BOOTTIME)
    in ns (default: the clocks). With `strict`, a store error propagates (the textfile export
    fails and keeps the old file); otherwise the scrape still answers, with `timekit_store_up 0`,
    and `on_error` hears the message once per change.
    """

    def __init__(self, db: Path | None = None, *, window_s: float = DEFAULT_WINDOW_S,
                 policy: Policy | None = None, now: Callable[[], tuple[int, int]] | None = None,
                 strict: bool = False, on_error: Callable[[str], None] | None = None) -> None:
        if not 0 < window_s < float("inf"):
            raise ValueError(f"window_s = {window_s} s must be positive and finite")
        self.db, self.window_s, self.policy, self.now = db, window_s, policy, now
        self.strict, self.on_error = strict, on_error
        self._last_error: str | None = None
        self._version = _version()

    def describe(self) -> list[Metric]:
        return []  # the families depend on the store: nothing is read at registration

    def collect(self) -> Iterator[Metric]:
        from timekit.store.database import Store

        up = _gauge("store_up", "1 when the last read of the timekit store succeeded, 0 when it failed.")
        try:
            from timekit.pipeline.assess import assess_store

            with Store.open(self.db, create=False, readonly=True) as store:
                fleet = assess_store(store, self.policy, now=self.now() if self.now else None,
                                     window_s=self.window_s)
        except Exception as exc:  # a scrape still answers (store_up 0); the export fails in one line
            if self.strict:
                raise
            text = (str(exc) if isinstance(exc, TimekitError)
                    else f"internal error: {type(exc).__name__}: {exc}")
            message = " ".join(text.split())
            if message != self._last_error and self.on_error is not None:
                self.on_error(f"scrape: cannot read the store: {message}")
            self._last_error = message
            up.add_metric([], 0.0)
            yield up
            return
        if self._last_error is not None and self.on_error is not None:
            self.on_error("scrape: the store is readable again")
        self._last_error = None
        up.add_metric([], 1.0)
        yield up
        yield from fleet_metrics(fleet, version=self._version)


def registry_for(collector: TimekitCollector) -> CollectorRegistry:
    """A registry holding only timekit's metrics (no process/platform metrics of the caller)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(db: Path | None = None, *, window_s: float = DEFAULT_WINDOW_S,
               policy: Policy | None = None) -> bytes:
    """The text exposition format of the store now; a store error raises (TimekitError)."""
    return generate_latest(registry_for(TimekitCollector(db, window_s=window_s, policy=policy, strict=True)))


def write_atomically(out: Path, data: bytes, mode: int = TEXTFILE_MODE) -> None:
    """Write `data` to `out` atomically (`timekit.atomic_files`), readable by node_exporter."""
    with atomic_output(Path(out), binary=True, chmod=mode) as fh:
        fh.write(data)


def export_textfile(out: Path, db: Path | None = None, *, policy: Policy | None = None) -> int:
    """Write the metrics for node_exporter's textfile collector atomically; the number of samples."""
    data = exposition(db, policy=policy)
    write_atomically(out, data)
    return sum(1 for line in data.splitlines() if line and not line.startswith(b"#"))


# ----------------------------------------------------------------------------- exporter
@dataclass
class Exporter:
    """A running HTTP exporter; `close()` stops it."""

    server: Any
    thread: Any
    url: str
    loopback: bool  # only this host can reach it

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        return False


def start_exporter(db: Path | None = None, *, port: int = DEFAULT_EXPORTER_PORT, bind: str = DEFAULT_BIND,
                   policy: Policy | None = None, on_error: Callable[[str], None] | None = None,
                   refresh_s: float = DEFAULT_REFRESH_S) -> Exporter:
    """Serve /metrics on `bind`:`port` (0: any free port) in a daemon thread: bounded connections and
    idle time, one rendering of the store per `refresh_s` shared by every scraper
    (`timekit.outputs.exporter_http`)."""
    from timekit.outputs.exporter_http import SharedSnapshot, serve

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not in 0-65535")
    registry = registry_for(TimekitCollector(db, policy=policy, on_error=on_error))
    try:
        snapshot = SharedSnapshot(lambda: generate_latest(registry), refresh_s)
    except ValueError as exc:
        raise UsageError(f"--refresh: {exc}") from None
    try:
        server, thread = serve(snapshot, bind.strip("[]"), port)
    except socket.gaierror as exc:
        raise UsageError(f"--bind {bind}: cannot resolve ({exc.strerror})") from None
    except OSError as exc:
        raise TimekitError(f"cannot listen on {bind} port {port}: {exc.strerror or exc}") from None
    host, real_port = server.server_address[:2]
    if isinstance(host, bytes):  # typeshed allows bytes for AF_UNIX; an HTTP server on IP has str
        host = host.decode()
    shown = f"[{host}]" if ":" in host else host
    return Exporter(server, thread, f"http://{shown}:{real_port}/metrics", _is_loopback(bind))


def wait_for_stop() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM; both end the wait normally."""
    def _stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------- alerting rules
@dataclass(frozen=True)
class AlertRule:
    """One Prometheus alerting rule; `summary` and `description` may use Prometheus templates."""

    alert: str
    expr: str
    severity: str  # 'warning' | 'critical'
    summary: str
    description: str
    check: str  # what is judged ('offset', 'drift', ...): the warning and critical of a pair share it

    def to_dict(self) -> dict[str, Any]:
        return {"alert": self.alert, "expr": self.expr,
                "for": CRITICAL_FOR if self.severity == "critical" else WARNING_FOR,
                "labels": {"severity": self.severity, "check": self.check},
                "annotations": {"summary": self.summary, "description": self.description}}


def _num(value: float) -> str:
    """A threshold in PromQL: the shortest exact text, without a trailing `.0` (500, 0.05, 1e-06)."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def _pair(name: str, check: str, expr: str, warn: float, crit: float, summary: str,
          description: str, guard: str = "") -> list[AlertRule]:
    """A warning and a critical rule for `expr > threshold` (expr judged as in `timekit check`);
    `guard` (PromQL, optional) must also hold, e.g. the drift being precise enough to judge."""
    also = f" and {guard}" if guard else ""
    return [AlertRule(f"{name}{level.title()}", f"{expr} > {_num(threshold)}{also}", level, summary,
                      f"{description} (threshold {_num(threshold)}, as timekit check).", check)
            for level, threshold in (("warning", warn), ("critical", crit))]


def rules_thresholds(max_age: str | None = None, warn_holdover: str | None = None,
                     crit_holdover: str | None = None, **flags: float | str | None) -> Thresholds:
    """Thresholds from `timekit rules`' flags, exactly as `timekit check` maps the same flags."""
    from timekit.errors import UsageError
    from timekit.settings import thresholds

    th = thresholds(max_age, warn_holdover, crit_holdover, **flags)
    try:
        th.upper_limits_only("rules")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return th


def alert_rules(th: Thresholds = DEFAULT_THRESHOLDS) -> list[AlertRule]:
    """The alerting rules that mirror `timekit check`'s thresholds `th`."""
    on = "{{ $labels.instance }}"
    server = "{{ $labels.server }}"
    drift_gate = th.warn_drift_ppm * DRIFT_GATE_FRACTION  # as ServerAssessment.drift_judgeable(warn)
    rules = [
        *_pair("TimekitClockOffset", "offset",
               "abs(timekit_clock_offset_seconds)", th.warn_offset_s, th.crit_offset_s,
               f"timekit: clock on {on} is {{{{ $value | humanizeDuration }}}} off true time",
               "|offset| of this clock against the references' consensus, seconds"),
        *_pair("TimekitClockUncertainty", "uncertainty",
               "timekit_clock_uncertainty_seconds", th.warn_uncertainty_s,
               th.crit_uncertainty_s,
               f"timekit: time on {on} is only known to +/- {{{{ $value | humanizeDuration }}}}",
               "half-width of the interval that contains true time, seconds"),
        *_pair("TimekitServerJitter", "jitter",
               "timekit_server_jitter_seconds", th.warn_jitter_s, th.crit_jitter_s,
               f"timekit: reference {server} seen from {on} jitters {{{{ $value | humanizeDuration }}}}",
               "RMS of successive offset differences over the newest 8 samples, seconds"),
        *_pair("TimekitServerDrift", "drift",
               "abs(timekit_server_drift_ppm)", th.warn_drift_ppm, th.crit_drift_ppm,
               f"timekit: clock on {on} drifts {{{{ $value | printf \"%.1f\" }}}} ppm against {server}",
               "|drift| of this clock against the reference, ppm, judged only while its 95 % half-width "
               f"is at most {_num(drift_gate)} ppm (half the warning)",
               guard=f"timekit_server_drift_ci95_halfwidth_ppm <= {_num(drift_gate)}"),
        *_pair("TimekitServerStratum", "stratum", "timekit_server_stratum", th.warn_stratum, th.crit_stratum,
               f"timekit: reference {server} of {on} is at stratum {{{{ $value }}}}",
               "stratum of the reference's newest usable reply"),
        *_pair("TimekitPause", "pause", "timekit_pause_max_seconds", th.warn_pause_s, th.crit_pause_s,
               f"timekit: {on} paused for {{{{ $value | humanizeDuration }}}}",
               "longest late wake-up of the pause meter in the window, seconds"),
        AlertRule("TimekitReferenceNotAnswering", "timekit_server_last_attempt_ok == 0", "warning",
                  f"timekit: reference {server} of {on} does not answer",
                  "the newest attempt to the reference gave no usable sample (timeout, refused, "
                  "kiss-o'-death, bad reply) and no later one succeeded.", "reachability"),
        AlertRule("TimekitReferenceSampleStale",
                  f"timekit_server_sample_age_seconds > {_num(th.max_age_s)}", "warning",
                  f"timekit: newest sample of reference {server} on {on} is "
                  "{{ $value | humanizeDuration }} old",
                  f"the reference's newest usable sample is older than {_num(th.max_age_s)} s (timekit "
                  "check's max age): it stopped answering or is no longer queried.", "reachability"),
        AlertRule("TimekitSamplesStale",
                  f"time() - timekit_newest_sample_timestamp_seconds > {_num(th.max_age_s)}", "warning",
                  f"timekit: no fresh NTP sample on {on} for {{{{ $value | humanizeDuration }}}}",
                  f"the newest usable sample is older than {_num(th.max_age_s)} s: collection stopped or "
                  "every reference fails (timekit check says UNKNOWN).", "stale"),
        AlertRule("TimekitMetricsStale",
                  f"time() - timekit_last_update_timestamp_seconds > {_num(th.max_age_s)}", "warning",
                  f"timekit: metrics of {on} not refreshed for {{{{ $value | humanizeDuration }}}}",
                  "the textfile export (or the exporter's store read) has stopped.", "stale"),
        AlertRule("TimekitStoreDown", "timekit_store_up == 0", "critical",
                  f"timekit: the exporter on {on} cannot read its store",
                  "timekit_store_up is 0: the store is missing, corrupt or unreadable.", "store"),
        AlertRule("TimekitSyncFreeRunning", 'timekit_sync_status{status="free_running"} == 1', "warning",
                  f"timekit: clock on {on} is free-running",
                  "the evidence is stale: the interval only widens with the assumed drift.", "sync"),
        AlertRule("TimekitSyncUnknown", 'timekit_sync_status{status="unknown"} == 1', "critical",
                  f"timekit: time on {on} is unknown",
                  "no usable evidence (no majority of references, or none at all).", "sync"),
        AlertRule("TimekitSelfQuarantined", f'timekit_node_quarantined{{node="{SELF_NODE}"}} == 1',
                  "critical", f"timekit: {on} is quarantined: its clock disagrees with the majority",
                  "the skew check holds this host in quarantine until it has been healthy long enough.",
                  "quarantine"),
        AlertRule("TimekitSelfQuarantinedFromCluster",
                  f'timekit_cluster_node_quarantined{{node="{SELF_NODE}"}} == 1', "critical",
                  f"timekit: {on} is quarantined from its cluster: its clock disagrees with its peers",
                  "the cluster check (timekit collect with [cluster] peers) holds this host in quarantine: "
                  "it is off from the majority of its peers, whatever UTC says.", "quarantine"),
        AlertRule("TimekitDaemonFollowsFalseticker",
                  'timekit_daemon_status{status="following_falseticker"} == 1', "critical",
                  f"timekit: the time daemon ({{{{ $labels.daemon }}}}) on {on} follows a falseticker",
                  "the source the host's time daemon follows lies outside timekit's majority interval: it "
                  "steers this clock toward a wrong time.", "daemon"),
        AlertRule("TimekitDaemonSuspect",
                  'timekit_daemon_status{status=~"overconfident|false_sync_claim"} == 1', "warning",
                  f"timekit: the time daemon ({{{{ $labels.daemon }}}}) on {on} claims more than it keeps",
                  "its claimed error bound excludes timekit's measurement, or it claims synchronized while "
                  "it is not: whoever trusts its bound (ClockBound, the kernel's readers) is misled.",
                  "daemon"),
        AlertRule("TimekitDaemonUnsynchronized",
                  'timekit_daemon_status{status=~"unsynchronized|holdover"} == 1', "warning",
                  f"timekit: the time daemon ({{{{ $labels.daemon }}}}) on {on} is not synchronized",
                  "the host's time daemon says it is not synchronized, or none of its sources answers "
                  "(holding over: its bound grows).", "daemon"),
        AlertRule("TimekitReferenceQuarantined", f'timekit_node_quarantined{{node!="{SELF_NODE}"}} == 1',
                  "warning", f"timekit: reference {{{{ $labels.node }}}} of {on} is quarantined",
                  "the skew check found the reference far from the majority of references.", "quarantine"),
    ]
    for level, flag, limit in (("warning", "--warn-holdover", th.warn_holdover_s),
                               ("critical", "--crit-holdover", th.crit_holdover_s)):
        if limit is not None:
            rules.append(AlertRule(
                f"TimekitHoldoverShort{level.capitalize()}", f"timekit_holdover_seconds < {_num(limit)}",
                level, f"timekit: {on} could hold its time only {{{{ $value | humanizeDuration }}}} "
                "without references",
                "how long the interval stays within +/- timekit_holdover_width_seconds if every reference "
                f"fell silent is below {_num(limit)} s (timekit check {flag}).", "holdover"))
    return rules


def rules_document(th: Thresholds = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """The Prometheus rule file as data: one group `timekit`."""
    return {"groups": [{"name": "timekit", "rules": [r.to_dict() for r in alert_rules(th)]}]}


_PLAIN_YAML = re.compile(r"[A-Za-z][A-Za-z0-9_]*|[0-9]+[smhdwy]")  # safe unquoted: names, durations
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _scalar(value: Any) -> str:
    """A YAML scalar: plain when unambiguous, else single-quoted, else JSON-quoted (valid YAML)."""
    if isinstance(value, str) and _PLAIN_YAML.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return value
    if isinstance(value, str) and "'" not in value and value.isprintable():
        return "'" + value + "'"  # single-quoted YAML: no escapes at all
    return json.dumps(value)


def _yaml(value: Any, indent: int) -> list[str]:
    """Block YAML for nested dicts/lists of strings and numbers."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list):
                lines += [f"{pad}{key}:", *_yaml(item, indent + 2)]
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    else:
        for item in value:
            block = _yaml(item, indent + 2)
            lines.append(f"{pad}- {block[0].lstrip()}")
            lines += block[1:]
    return lines


def rules_yaml(th: Thresholds = DEFAULT_THRESHOLDS) -> str:
    """The rule file as YAML text (for `promtool check rules` and Prometheus' rule_files)."""
    changed = [f"{f.name}={_num(getattr(th, f.name))}" for f in fields(Thresholds)
               if getattr(th, f.name) != getattr(DEFAULT_THRESHOLDS, f.name)]
    head = ["# Prometheus alerting rules for timekit metrics, generated by `timekit rules`.",
            "# Thresholds: timekit check's defaults (analysis/thresholds.py)"
            + (f" except {', '.join(changed)}." if changed else ".")]
    return "\n".join([*head, *_yaml(rules_document(th), 0)]) + "\n"
