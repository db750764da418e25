"""Prometheus, for real: lab samples -> `timekit exporter` scraped by a real Prometheus (Debian package
`prometheus`) that also loads `timekit rules`; the textfile export through `promtool check metrics`,
and its atomic write."""

from __future__ import annotations

import json
import math
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LAB_SLACK_S, clock_filter_expected, run_cli
from timekit.analysis.thresholds import DEFAULT_THRESHOLDS
from timekit.lab.manager import Lab, LabServer
from timekit.pipeline.assess import assess_store
from timekit.samples import NtpSample
from timekit.store.database import Store

LAB_SERVERS = ("chrony-ahead", "chrony-behind", "chrony-near")
SCRAPE_WAIT_S = 30.0  # Prometheus starts, scrapes every 1 s and evaluates rules every 1 s
JUDGEABLE_WAIT_S = 120.0  # more 8-query bursts of chrony-behind (2 s each) until its drift is judgeable
# root without CAP_DAC_OVERRIDE & co. obeys permission bits, so a 0555 directory is unwritable
DROP_ROOT_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        why = f"{', '.join(missing)} not installed (Debian package prometheus / util-linux)"
        if os.environ.get("CI"):
            pytest.fail(f"in CI: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def silent_server() -> str:
    """A loopback port nobody listens on: a reference that stopped answering."""
    return f"127.0.0.1:{_free_port()}"


@pytest.fixture(scope="module")
def sampled(lab: Lab, tmp_path_factory: pytest.TempPathFactory,
            silent_server: str) -> tuple[Path, list[LabServer]]:
    """A store holding 8+ samples (0.25 s apart) of three lab chronyd servers, one failed attempt to
    `silent_server` and 5 pause-meter summaries (1 s, 0.2 s each)."""
    db = tmp_path_factory.mktemp("prom") / "t.db"
    servers = [lab.server(n) for n in LAB_SERVERS]
    run_cli("sample", "ntp", silent_server, "--count", "1", "--timeout", "0.5", db=db)
    with Store.open(db, create=False) as store:
        assert [(ok, err is not None) for _s, ok, err in store.attempt_rows(["server", "ok", "error"])] \
            == [(0, True)]  # one failed attempt stored
    proc = run_cli("sample", "ntp", *(s.address for s in servers), "--count", "8", "--interval", "0.25",
                   db=db)
    assert proc.returncode == 0, proc.stderr
    # the drift of an 8-query burst is sometimes too uncertain to judge (95 % half-width > 50 ppm, absent
    # from the metrics, as timekit check ignores it); sample chrony-behind on until it is known, as
    # cron collects would, so the drift alert can be checked against a real +200 ppm
    behind = lab_addr(servers, "chrony-behind")
    deadline = time.monotonic() + JUDGEABLE_WAIT_S  # a busy machine's late replies need more rounds
    while True:
        with Store.open(db, create=False) as store:
            st = next(s for s in assess_store(store).servers if s.server == behind)
        if st.drift_judgeable(DEFAULT_THRESHOLDS.warn_drift_ppm):
            break
        assert time.monotonic() < deadline, f"chrony-behind's drift not judgeable: ±{st.drift_ci_half_ppm}"
        more = run_cli("sample", "ntp", behind, "--count", "8", "--interval", "0.25", db=db)
        assert more.returncode == 0, more.stderr
    pauses = run_cli("sample", "pauses", "--duration", "1", "--interval", "0.2", "--json", db=db)
    assert pauses.returncode == 0 and json.loads(pauses.stdout)["pauses"], pauses.stderr
    return db, servers


def _newest(db: Path) -> dict[str, tuple[NtpSample, float]]:
    """Each server's clock-filter sample, straight from the store (the lowest delay of its newest 8
    within 16 s), and the offset exported for it: carried to the newest sample's instant by the
    fitted drift where that is known (±50 ppm), as measured where not."""
    from timekit.analysis.drift import reported_status

    by_server: dict[str, list[NtpSample]] = {}
    with Store.open(db, create=False) as store:
        for s in store.ntp_samples(ok_only=True):  # oldest first
            by_server.setdefault(s.server, []).append(s)
        fits = {a.server: a.fit for a in assess_store(store).servers}
    out = {}
    for server, samples in by_server.items():
        fit = fits[server]
        out[server] = clock_filter_expected(samples, fit.drift_ppm if fit is not None
                                            and reported_status(fit)[0] == "ok" else None)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback only)
        return json.loads(resp.read())


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    doc = _get_json(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def _poll(what: str, probe: Any, deadline: float) -> Any:
    """Call `probe()` until it returns something truthy or the deadline passes (then fail with `what`)."""
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = probe()
            if got:
                return got
        except OSError as exc:  # Prometheus not listening yet, or not ready (HTTP 503 while it starts)
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # it holds the response's socket: unclosed, it warns when collected
            last_exc = exc
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} (last error: {last_exc})")


def _stop(proc: subprocess.Popen, sig: int = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def prometheus_tools() -> None:
    _need("prometheus", "promtool")


@pytest.fixture
def exporter(sampled: tuple[Path, list[LabServer]]) -> Iterator[tuple[subprocess.Popen, str]]:
    """`timekit exporter --port 0` on loopback; yields (process, metrics URL); stopped with Ctrl-C."""
    db, _ = sampled
    proc = subprocess.Popen([sys.executable, "-m", "timekit.cli", "exporter", "--port", "0", "--json",
                             "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "exporter printed no URL within 15 s"
        url = json.loads(proc.stdout.readline())["url"]  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), url
        yield proc, url
    finally:
        _stop(proc, 2)  # SIGINT = Ctrl-C
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_prometheus_scrapes_exporter_and_loads_rules(
        prometheus_tools: None, sampled: tuple[Path, list[LabServer]], exporter: tuple[subprocess.Popen, str],
        silent_server: str, tmp_path: Path) -> None:
    db, servers = sampled
    exp_proc, url = exporter
    rules = run_cli("rules")
    assert rules.returncode == 0, rules.stderr
    rules_file = tmp_path / "timekit-rules.yml"
    rules_file.write_text(rules.stdout)
    check = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    rule_names = {r["alert"] for r in json.loads(run_cli("rules", "--json").stdout)["groups"][0]["rules"]}

    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {json.dumps(str(rules_file))}\n"
        "scrape_configs:\n  - job_name: timekit\n    static_configs:\n"
        f"      - targets: [{json.dumps(urllib.parse.urlsplit(url).netloc)}]\n")
    log = (tmp_path / "prometheus.log").open("w")
    prom = subprocess.Popen(["prometheus", f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SCRAPE_WAIT_S
    try:
        names = {s.address for s in servers}

        def offsets_scraped() -> list[dict[str, Any]] | None:
            got = _query(base, "timekit_server_offset_seconds")
            return got if {x["metric"].get("server") for x in got} >= names else None

        result = _poll("timekit_server_offset_seconds of every sampled server", offsets_scraped, deadline)
        newest = _newest(db)
        truth = {s.address: s for s in servers}
        for series in result:
            server = series["metric"]["server"]
            assert series["metric"]["job"] == "timekit"
            got = float(series["value"][1])
            sample, exported = newest[server]
            assert got == exported  # what timekit measured, bit for bit through Prometheus
            assert sample.delay_s is not None  # and the truth then, within NTP's bound
            err = (sample.offset_s or 0.0) - truth[server].true_offset_at(sample.t_local_ns)
            assert abs(err) <= sample.delay_s / 2 + LAB_SLACK_S, (server, err, sample.delay_s)
        # exactly one sync status is current
        assert [float(r["value"][1]) for r in _query(base, "sum(timekit_sync_status)")] == [1.0]

        def rules_evaluated() -> list[dict[str, Any]] | None:
            groups = _get_json(f"{base}/api/v1/rules")["data"]["groups"]
            loaded = [r for g in groups for r in g["rules"]]
            return loaded if loaded and all(r["health"] == "ok" for r in loaded) else None

        loaded = _poll("every timekit rule loaded and evaluated without error", rules_evaluated, deadline)
        assert {r["name"] for r in loaded} == rule_names
        assert all(r["labels"]["severity"] in ("warning", "critical") and r["labels"]["check"]
                   for r in loaded)
        th = DEFAULT_THRESHOLDS
        queries = {r["name"]: r["query"] for r in loaded}  # the thresholds are timekit check's
        offset = "abs(timekit_clock_offset_seconds) > "
        assert queries["TimekitClockOffsetWarning"] == offset + "0.01" and th.warn_offset_s == 0.01
        assert queries["TimekitClockOffsetCritical"] == offset + "0.1" and th.crit_offset_s == 0.1
        # a drift is judged (as in timekit check) only when its 95 % half-width is <= warn / 2 = 50 ppm
        assert queries["TimekitServerDriftCritical"] == \
            "abs(timekit_server_drift_ppm) > 500 and timekit_server_drift_ci95_halfwidth_ppm <= 50"
        assert th.crit_drift_ppm == 500.0 and th.warn_drift_ppm / 2 == 50.0
        assert queries["TimekitReferenceNotAnswering"] == "timekit_server_last_attempt_ok == 0"
        assert queries["TimekitReferenceSampleStale"] == "timekit_server_sample_age_seconds > 900"
        assert {r["duration"] for r in loaded} == {120.0, 300.0}  # for: 2m (critical), 5m (warning)

        # the rules agree with the values: a drift alert for exactly the servers beyond the warning
        drift = {r["metric"]["server"]: float(r["value"][1])
                 for r in _query(base, "timekit_server_drift_ppm")}
        half = {r["metric"]["server"]: float(r["value"][1])
                for r in _query(base, "timekit_server_drift_ci95_halfwidth_ppm")}
        assert set(half) == names
        assert set(drift) == {s for s, h in half.items() if h <= th.warn_drift_ppm / 2}  # noise: absent
        beyond = {s for s, v in drift.items() if abs(v) > DEFAULT_THRESHOLDS.warn_drift_ppm}
        assert lab_addr(servers, "chrony-behind") in beyond  # this clock drifts +200 ppm against it
        assert [r["metric"]["server"] for r in _query(base, "timekit_server_last_attempt_ok == 0")] \
            == [silent_server]
        unknown = float(_query(base, 'timekit_sync_status{status="unknown"}')[0]["value"][1]) == 1.0

        def alerts_match() -> list[dict[str, Any]] | None:  # an evaluation after the first scrape
            alerts = _get_json(f"{base}/api/v1/alerts")["data"]["alerts"]
            drifting = {a["labels"]["server"] for a in alerts
                        if a["labels"]["alertname"] == "TimekitServerDriftWarning"}
            sync_alert = any(a["labels"]["alertname"] == "TimekitSyncUnknown" for a in alerts)
            silent = {a["labels"]["server"] for a in alerts
                      if a["labels"]["alertname"] == "TimekitReferenceNotAnswering"}
            return alerts if drifting == beyond and sync_alert == unknown and silent == {silent_server} \
                else None

        alerts = _poll(f"drift alerts for exactly {sorted(beyond)}, a not-answering alert for "
                       f"{silent_server}", alerts_match, deadline)
        assert all(a["state"] == "pending" for a in alerts)  # `for:` has not passed yet
    finally:
        _stop(prom)
        log.close()
    _stop(exp_proc, 2)
    assert exp_proc.returncode == 0
    err = exp_proc.stderr.read()  # type: ignore[union-attr]
    assert f"serving {url}" in err and "stopped" in err and "Traceback" not in err


def lab_addr(servers: list[LabServer], name: str) -> str:
    return next(s.address for s in servers if s.name == name)


def test_textfile_export_passes_promtool(sampled: tuple[Path, list[LabServer]], tmp_path: Path) -> None:
    _need("promtool")
    db, servers = sampled
    out = tmp_path / "timekit.prom"
    started_s = time.time_ns() / 1e9  # the export's update time lies between this and the checks below
    proc = run_cli("export", "prometheus", "--out", str(out), "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert json.loads(proc.stdout)["samples"] == sum(1 for ln in text.splitlines() if not ln.startswith("#"))
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout + check.stderr == "", check.stdout + check.stderr
    assert os.listdir(tmp_path) == ["timekit.prom"]  # no temp file left behind
    assert out.stat().st_mode & 0o777 == 0o644  # node_exporter (another user) can read it
    values = {(f.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}
    newest = _newest(db)
    for s in servers:
        label = (("server", s.address),)
        assert values[("timekit_server_offset_seconds", label)] == newest[s.address][1]
        assert values[("timekit_server_delay_seconds", label)] == newest[s.address][0].delay_s
        with Store.open(db, create=False) as store:  # the share of this server's attempts unanswered
            tries = [ok for srv, ok in store.attempt_rows(["server", "ok"]) if srv == s.address]
        assert values[("timekit_server_loss_ratio", label)] == pytest.approx(1 - sum(tries) / len(tries))
    assert all(name.startswith("timekit_") for name, _ in values)
    with Store.open(db, create=False) as store:
        pauses = store.pause_rows()
    assert pauses and sum(p["interval_s"] for p in pauses) >= 1.0 - 0.01  # the meter's 1 s, all stored
    for key in ("p50", "p90", "p99", "p999"):  # one gauge each: `quantile` is reserved for summaries
        assert values[(f"timekit_pause_{key}_seconds", ())] == max(p[f"{key}_s"] for p in pauses)
    assert values[("timekit_pause_max_seconds", ())] == max(p["max_s"] for p in pauses)
    assert not any(dict(labels).get("quantile") for _, labels in values)
    assert sum(v for (name, _), v in values.items() if name == "timekit_sync_status") == 1.0
    assert started_s <= values[("timekit_last_update_timestamp_seconds", ())] <= time.time_ns() / 1e9
    assert math.isclose(values[("timekit_store_up", ())], 1.0)


def test_textfile_export_failure_keeps_old_file(sampled: tuple[Path, list[LabServer]],
                                                tmp_path: Path) -> None:
    db, _ = sampled
    outdir = tmp_path / "textfile"
    outdir.mkdir()
    out = outdir / "timekit.prom"
    out.write_text("timekit_old 1\n")
    outdir.chmod(0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:  # root ignores permission bits unless it gives up CAP_DAC_OVERRIDE
        _need("setpriv")
        prefix = DROP_ROOT_DAC
    try:
        proc = subprocess.run([*prefix, sys.executable, "-m", "timekit.cli", "export", "prometheus",
                               "--out", str(out), "--db", str(db)],
                              capture_output=True, text=True, timeout=60)
    finally:
        outdir.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"cannot write {out}: Permission denied" in lines[0], proc.stderr
    assert out.read_text() == "timekit_old 1\n"  # the old file, intact
    assert os.listdir(outdir) == ["timekit.prom"]  # no temp file

    missing = run_cli("export", "prometheus", "--out", str(tmp_path / "no" / "dir.prom"), db=db)
    # a missing directory is bad input, as for `export csv` (the same atomic writer): exit 2
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr


def test_fleet_metrics_absent_not_zero_and_state_sets() -> None:
    """Pure: no data gives no series; quarantine, node status and sync status are 0/1 state sets."""
    from timekit.analysis.assessment import Assessment, ServerAssessment
    from timekit.analysis.interval import IntervalEstimate
    from timekit.outputs.metrics import fleet_metrics

    as_of_ns = 1_700_000_000 * 1_000_000_000
    iv = IntervalEstimate("free_running", "stale", as_of_ns, earliest_ns=as_of_ns + 1_000_000,
                          latest_ns=as_of_ns + 5_000_000)
    fleet = Assessment(as_of_ns, servers=(
        ServerAssessment("a:123", age_s=2.0, offset_s=0.003, delay_s=0.001, n_ok=3, n_attempts=4,
                         health="ok"),
        ServerAssessment("b:123", n_attempts=2, last_error="timeout", health="quarantined")),
        interval=iv, self_health=None,
        pause={"p50_s": 1e-4, "p90_s": 2e-4, "p99_s": 3e-3, "p999_s": 5e-3, "max_s": 0.2, "suspend_s": 0.0})
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for m in fleet_metrics(fleet, version="x") for s in m.samples}
    assert values[("timekit_server_offset_seconds", (("server", "a:123"),))] == 0.003
    assert ("timekit_server_offset_seconds", (("server", "b:123"),)) not in values  # no sample: absent
    assert not any(name == "timekit_server_drift_ppm" for name, _ in values)  # no fit: absent, not 0
    assert values[("timekit_server_loss_ratio", (("server", "a:123"),))] == 0.25  # 1 - 3/4
    assert values[("timekit_server_loss_ratio", (("server", "b:123"),))] == 1.0  # 1 - 0/2
    assert values[("timekit_server_last_attempt_ok", (("server", "b:123"),))] == 0.0
    assert values[("timekit_node_quarantined", (("node", "b:123"),))] == 1.0
    assert values[("timekit_node_quarantined", (("node", "a:123"),))] == 0.0
    assert ("timekit_node_quarantined", (("node", "self"),)) not in values  # never judged
    assert values[("timekit_node_status", (("node", "b:123"), ("status", "quarantined")))] == 1.0
    assert values[("timekit_node_status", (("node", "b:123"), ("status", "ok")))] == 0.0
    assert [values[("timekit_sync_status", (("status", s),))] for s in
            ("synchronized", "free_running", "unknown")] == [0.0, 1.0, 0.0]
    # interval [as_of + 1 ms, as_of + 5 ms]: midpoint 3 ms, half-width 2 ms, width 4 ms
    assert ("timekit_clock_offset_seconds", ()) not in values  # no truechimer judged: no point offset
    assert values[("timekit_clock_interval_midpoint_offset_seconds", ())] == pytest.approx(0.003, abs=1e-15)
    assert values[("timekit_clock_uncertainty_seconds", ())] == pytest.approx(0.002, abs=1e-15)
    assert values[("timekit_clock_interval_width_seconds", ())] == pytest.approx(0.004, abs=1e-15)
    assert values[("timekit_pause_p99_seconds", ())] == 3e-3
    assert values[("timekit_pause_p50_seconds", ())] == 1e-4
    assert values[("timekit_pause_max_seconds", ())] == 0.2
    assert values[("timekit_newest_sample_timestamp_seconds", ())] == 1_700_000_000 - 2.0  # as_of - 2 s age


def test_host_offset_is_truechimer_median_and_drift_needs_precision() -> None:
    """Pure: the host offset is the truechimers' median, not the interval's midpoint (which here even
    has the other sign); a drift whose 95 % half-width exceeds warn/2 is not exported, its width is."""
    from timekit.analysis.assessment import Assessment, ServerAssessment
    from timekit.analysis.interval import IntervalEstimate
    from timekit.outputs.metrics import fleet_metrics

    as_of_ns = 1_700_000_000 * 1_000_000_000
    iv = IntervalEstimate("synchronized", "ok", as_of_ns, earliest_ns=as_of_ns - 10_000_000,
                          latest_ns=as_of_ns + 2_000_000)  # midpoint (-10 + 2) / 2 = -4 ms
    fleet = Assessment(as_of_ns, interval=iv, servers=(
        ServerAssessment("a:123", offset_s=0.004, truechimer=True, drift_ppm=120.0,
                     drift_ci95_ppm=(110.0, 130.0)),
        # the review's 4-query burst: 587 ppm with a standard error of 160 ppm, half-width 1.96 × 160
        ServerAssessment("b:123", offset_s=0.006, truechimer=True, drift_ppm=587.0,
                     drift_ci95_ppm=(587.0 - 313.6, 587.0 + 313.6)),
        ServerAssessment("c:123", offset_s=0.002, truechimer=True),
        ServerAssessment("d:123", offset_s=0.500, truechimer=False)))  # a falseticker: not in the median
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for m in fleet_metrics(fleet, version="x") for s in m.samples}
    assert values[("timekit_clock_offset_seconds", ())] == 0.004  # median(4, 6, 2 ms)
    assert values[("timekit_clock_interval_midpoint_offset_seconds", ())] == pytest.approx(-0.004, abs=1e-15)
    assert values[("timekit_clock_uncertainty_seconds", ())] == pytest.approx(0.006, abs=1e-15)  # 12 ms / 2
    drift = {dict(k)["server"]: v for (name, k), v in values.items() if name == "timekit_server_drift_ppm"}
    assert drift == {"a:123": 120.0}  # half-width 10 <= 100 / 2; b's 313.6 > 50 ppm: noise, absent
    half = {dict(k)["server"]: v for (name, k), v in values.items()
            if name == "timekit_server_drift_ci95_halfwidth_ppm"}
    assert half == {"a:123": 10.0, "b:123": pytest.approx(313.6, abs=1e-9)}  # c has no drift: absent


def test_rules_follow_check_threshold_flags(tmp_path: Path) -> None:
    got = run_cli("rules", "--json", "--warn-offset", "0.05", "--warn-drift", "40", "--max-age", "10m")
    assert got.returncode == 0, got.stderr
    exprs = {r["alert"]: r["expr"] for r in json.loads(got.stdout)["groups"][0]["rules"]}
    assert exprs["TimekitClockOffsetWarning"] == "abs(timekit_clock_offset_seconds) > 0.05"
    assert exprs["TimekitClockOffsetCritical"] == "abs(timekit_clock_offset_seconds) > 0.1"  # default
    assert exprs["TimekitServerDriftWarning"] == \
        "abs(timekit_server_drift_ppm) > 40 and timekit_server_drift_ci95_halfwidth_ppm <= 20"  # 40 / 2
    assert exprs["TimekitReferenceSampleStale"] == "timekit_server_sample_age_seconds > 600"  # 10 min
    assert exprs["TimekitSamplesStale"] == "time() - timekit_newest_sample_timestamp_seconds > 600"
    yaml_text = run_cli("rules", "--warn-offset", "0.05").stdout
    assert "expr: 'abs(timekit_clock_offset_seconds) > 0.05'" in yaml_text
    assert "# Thresholds: timekit check's defaults (analysis/thresholds.py) except warn_offset_s=0.05." \
        in yaml_text
    _need("promtool")
    (tmp_path / "r.yml").write_text(yaml_text)
    check = subprocess.run(["promtool", "check", "rules", str(tmp_path / "r.yml")], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    for bad, words in ((["--warn-offset", "1", "--crit-offset", "0.5"],
                        "warn_offset_s (1.0) <= crit_offset_s"),
                       (["--max-age", "soon"], "--max-age: not a duration")):
        proc = run_cli("rules", *bad)
        assert proc.returncode == 2 and proc.stdout == "", proc
        assert len(proc.stderr.strip().splitlines()) == 1 and words in proc.stderr, proc.stderr


def test_textfile_export_removes_temp_files_of_killed_exports(sampled: tuple[Path, list[LabServer]],
                                                              tmp_path: Path) -> None:
    db, _ = sampled
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid now names no process: the writer of `stale` was killed
    stale = tmp_path / f".timekit.prom.tmp-{gone.pid}-0123abcd"
    live = tmp_path / f".timekit.prom.tmp-{os.getpid()}-0123abcd"  # a writer still running: kept
    other = tmp_path / f".other.prom.tmp-{gone.pid}-0123abcd"  # another target's: not ours to clean
    for p in (stale, live, other):
        p.write_text("timekit_half_writ")
    proc = run_cli("export", "prometheus", "--out", str(tmp_path / "timekit.prom"), db=db)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path)) == sorted(["timekit.prom", live.name, other.name])


def test_readme_textfile_cron_uses_the_collect_store() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    collect = [ln for ln in readme.splitlines() if ln.startswith("* * * * *") and "timekit collect" in ln]
    assert collect, "no collect cron line in README"
    dbs = {ln.split("--db ")[1].split()[0].rstrip(";") for ln in collect if "--db " in ln}
    assert dbs == {"/var/lib/timekit/timekit.db"}, collect
    textfile = [ln for ln in collect if "export prometheus" in ln]
    assert len(textfile) == 1, collect
    commands = [c for c in re.split(r";|&&", textfile[0]) if "timekit " in c and "/timekit " in c]
    assert len(commands) == 2 and all("--db /var/lib/timekit/timekit.db" in c for c in commands), textfile
