"""The fleet sweeper against a fleet lab of 1,000 simulated nodes (one fault-server process): the
skewed nodes are found and only they, each within the configured number of sweeps of its truth
leaving the fleet, a recovered node is released, the hook and the metrics say the same; and the
nodes file's mistakes are one clear line each."""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import record_figure, run_cli
from timekit.errors import UsageError
from timekit.lab.fleet import FleetPlan, fleet_ports, skew_kind, write_nodes_file
from timekit.lab.manager import Lab, LabServer, start_lab
from timekit.pipeline.fleet import read_nodes
from timekit.store import Store
from timekit.units import NS_PER_S

N_NODES = 1000
MAX_OFFSET_S, WARN_OFFSET_S = 0.050, 0.020
ENTER_AFTER, LEAVE_AFTER = 2, 2
SWEEPS, INTERVAL_S = 16, 1.0
STEP_AFTER_S, RECOVER_AFTER_S = 4.0, 9.0
# beyond max by more than any node's measuring error can hide: the healthy cluster's spread (±2 ms
# around the median), delay/2 with jitter and asymmetry (< 1 ms), 2 % loss aside
CLEAR_MARGIN_S = 0.005
LOSS_ALLOWANCE = 2  # sweeps a lost reply may cost a node (2 % loss: two in a row is 1 in 2,500)


@dataclass
class FleetRun:
    lab: Lab
    db: Path
    doc: dict
    hook_lines: list[str]
    metrics: dict[str, dict[str, float]]  # metric -> node -> value
    kinds: dict[str, str]  # node -> healthy/stepped/drifting/recovering


@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetRun]:
    tmp = tmp_path_factory.mktemp("fleet")
    plan = FleetPlan(N_NODES, stepped=4, drifting=4, recovering=2, step_after_s=STEP_AFTER_S,
                     recover_after_s=RECOVER_AFTER_S, seed=7)
    specs = fleet_ports(plan)
    lab = start_lab(tmp / "lab", chrony=None, good_ports=tuple(specs), fault_kinds=(), detach=False)
    try:
        nodes_file = tmp / "nodes.txt"
        write_nodes_file(nodes_file, [(s.name, s.address) for s in lab.servers])
        hook_out = tmp / "hook.log"
        hook = tmp / "hook.py"
        hook.write_text(f"import os\nwith open({str(hook_out)!r}, 'a') as f:\n"
                        "    f.write(os.environ['TIMEKIT_NODE'] + ' '"
                        " + os.environ['TIMEKIT_TO_STATUS'] + '\\n')\n")
        prom = tmp / "fleet.prom"
        db = tmp / "fleet.db"
        r = run_cli("fleet", "sweep", "--nodes", str(nodes_file), "--sweeps", str(SWEEPS), "--interval",
                    str(INTERVAL_S), "--max-offset", str(MAX_OFFSET_S), "--warn-offset", str(WARN_OFFSET_S),
                    "--enter-after", str(ENTER_AFTER), "--leave-after", str(LEAVE_AFTER),
                    "--hook", f"{sys.executable} {hook}", "--textfile", str(prom), "--json", db=db,
                    timeout=120)
        assert r.returncode == 0, r.stderr
        metrics: dict[str, dict[str, float]] = {}
        for fam in text_string_to_metric_families(prom.read_text()):
            for s in fam.samples:
                metrics.setdefault(s.name, {})[s.labels.get("node", "")] = s.value
        lines = hook_out.read_text().splitlines() if hook_out.exists() else []
        kinds = {s.name: skew_kind(s) for s in specs}
        yield FleetRun(lab, db, json.loads(r.stdout), lines, metrics, kinds)
    finally:
        lab.stop()


def _median_truth(servers: list[LabServer], t_ns: int) -> float:
    return statistics.median(s.true_offset_at(t_ns) for s in servers)


def test_exactly_the_skewed_nodes_are_quarantined_within_the_configured_sweeps(fleet_run: FleetRun) -> None:
    # FAULTS F7
    with Store.open(fleet_run.db) as st:
        sweeps = st.fleet_sweeps()
        events = st.fleet_events()
    assert len(sweeps) == SWEEPS and all(s[3] == 1 for s in sweeps)  # every sweep had a quorum
    entered = {}
    for t_ns, node, _frm, to, _off, _why in events:
        if to == "quarantined":
            entered.setdefault(node, t_ns)
    skewed = {n for n, k in fleet_run.kinds.items() if k != "healthy"}
    assert set(entered) == skewed, (sorted(set(entered) - skewed), sorted(skewed - set(entered)))
    # each within ENTER_AFTER sweeps (+ what loss may cost) of the first sweep from which its truth
    # stayed clearly beyond max from the fleet's median truth
    by_name = {s.name: s for s in fleet_run.lab.servers}
    times = [s[0] for s in sweeps]
    starts = [s[0] - round(s[7] * NS_PER_S) for s in sweeps]  # a node is measured somewhere in between

    def clearly_beyond(node: str, t_ns: int) -> bool:
        return abs(by_name[node].true_offset_at(t_ns) - _median_truth(fleet_run.lab.servers, t_ns)) \
            > MAX_OFFSET_S + CLEAR_MARGIN_S

    lags = []
    for node in sorted(skewed):
        beyond = [clearly_beyond(node, a) and clearly_beyond(node, b)
                  for a, b in zip(starts, times, strict=True)]
        first = next(i for i in range(len(times)) if beyond[i] and all(beyond[i:i + ENTER_AFTER]))
        at = times.index(entered[node])
        truth_at = abs(by_name[node].true_offset_at(times[at])
                       - _median_truth(fleet_run.lab.servers, times[at]))
        assert truth_at > MAX_OFFSET_S - CLEAR_MARGIN_S, (node, truth_at)  # never before its truth left
        lags.append(at - first + 1)
        assert at - first + 1 <= ENTER_AFTER + LOSS_ALLOWANCE, (node, fleet_run.kinds[node], first, at)
    record_figure("fleet", f"{N_NODES} nodes, {len(skewed)} skewed, none of the healthy quarantined: each "
                  f"skewed one quarantined by the {'/'.join(map(str, lags))}th sweep after its truth was "
                  f"clearly beyond max (enter_after={ENTER_AFTER}); "
                  f"sweep wall time {statistics.median(s[7] for s in sweeps):.2f} s median")


def test_a_recovered_node_is_released_and_the_others_stay(fleet_run: FleetRun) -> None:  # F7
    with Store.open(fleet_run.db) as st:
        events = st.fleet_events()
        health = {r.node: r.status for r in st.fleet_health_rows()}
        sweeps = [s[0] for s in st.fleet_sweeps()]
    by_name = {s.name: s for s in fleet_run.lab.servers}
    for node, kind in fleet_run.kinds.items():
        if kind == "recovering":
            released = [t for t, n, frm, to, _o, _w in events if n == node and frm == "quarantined"]
            assert released and health[node] == "ok", (node, health[node])
            back = by_name[node].start_ns + int(RECOVER_AFTER_S * NS_PER_S)
            after = [t for t in sweeps if t >= back]
            assert released[0] >= back and after.index(released[0]) + 1 <= LEAVE_AFTER + LOSS_ALLOWANCE
        elif kind in ("stepped", "drifting"):
            assert health[node] == "quarantined", (node, kind)
        else:
            assert health.get(node, "ok") != "quarantined", node
    assert sorted(fleet_run.doc["quarantined"]) == sorted(n for n, s in health.items() if s == "quarantined")


def test_hook_and_metrics_say_what_the_store_says(fleet_run: FleetRun) -> None:
    with Store.open(fleet_run.db) as st:
        events = [f"{n} {to}" for _t, n, _f, to, _o, _w in st.fleet_events()]
    assert sorted(fleet_run.hook_lines) == sorted(events)
    q = fleet_run.metrics["timekit_fleet_node_quarantined"]
    assert len(q) == N_NODES
    assert {n for n, v in q.items() if v == 1} == set(fleet_run.doc["quarantined"])
    assert fleet_run.metrics["timekit_fleet_nodes"][""] == N_NODES
    assert fleet_run.metrics["timekit_fleet_nodes_quarantined"][""] == len(fleet_run.doc["quarantined"])
    # a node's offset from the median is its truth's distance from the median truth ± its NTP bound
    # (delay/2) and the median's own error (the drifting nodes move 20 ms a second while a sweep runs,
    # and the metrics do not say when within it each was measured: they are left out)
    off = fleet_run.metrics["timekit_fleet_node_offset_from_median_seconds"]
    unc = fleet_run.metrics["timekit_fleet_node_offset_uncertainty_seconds"]
    t_ns = int(fleet_run.doc["t_ns"])
    med = _median_truth(fleet_run.lab.servers, t_ns)
    by_name = {s.name: s for s in fleet_run.lab.servers}
    for node, v in off.items():
        if fleet_run.kinds[node] == "drifting":
            continue
        truth = by_name[node].true_offset_at(t_ns) - med
        assert abs(v - truth) <= unc[node] + 0.002, (node, v, truth, unc[node])  # 2 ms: the median's error
    # outliers first in the JSON
    statuses = [r["status"] for r in fleet_run.doc["node_results"]]
    assert statuses[:len(fleet_run.doc["quarantined"])] == ["quarantined"] * len(fleet_run.doc["quarantined"])


def test_nodes_file_mistakes_are_one_clear_error(tmp_path: Path) -> None:  # F8
    cases = {"empty": ("# nothing\n\n", "names no node"),
             "three": ("a b c\n", "line 1: expected 'HOST[:PORT]' or 'NAME HOST[:PORT]'"),
             "dup": ("n1 127.0.0.1:1\nn1 127.0.0.1:2\n", "line 2: node 'n1' already named on line 1"),
             "port": ("n1 127.0.0.1:99999\n", "line 1:"),
             "same": ("a 127.0.0.1:5\nb 127.0.0.1:5\n", "line 2: 127.0.0.1:5 is already node 'a' (line 1)")}
    for name, (text, msg) in cases.items():
        p = tmp_path / f"{name}.txt"
        p.write_text(text)
        with pytest.raises(UsageError, match=re.escape(msg)):
            read_nodes(p)
        r = run_cli("fleet", "sweep", "--nodes", str(p), db=tmp_path / "x.db")
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    with pytest.raises(UsageError, match="cannot read nodes file"):
        read_nodes(tmp_path / "missing.txt")
    p = tmp_path / "ok.txt"
    p.write_text("127.0.0.1:123  # a comment\nweb-1 [::1]:124\n")
    assert [(n.name, n.address.name) for n in read_nodes(p)] == [("127.0.0.1:123", "127.0.0.1:123"),
                                                                  ("web-1", "[::1]:124")]


PROM_HOSTS = 120
PROM_WAIT_S = 60.0


def test_prometheus_judges_the_fleet_with_the_generated_rules(tmp_path: Path) -> None:  # F10
    """A real Prometheus scrapes 120 simulated hosts' metrics (what `timekit collect` + the exporter
    export), loads `timekit rules --fleet` (promtool-checked) and fires the skew alert for exactly the
    hosts whose truth is beyond max from the fleet's median; its recorded skew is the truth's."""
    import shutil
    import subprocess
    import time
    import urllib.parse
    import urllib.request

    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not installed (scripts/setup installs the Debian package prometheus)")
    plan = FleetPlan(PROM_HOSTS, stepped=3, drifting=0, recovering=0, step_after_s=0.0, seed=11)
    specs = fleet_ports(plan)
    skewed = {s.name for s in specs if skew_kind(s) != "healthy"}
    from timekit.collectors.clocks import realtime_ns
    from timekit.lab.fleet import start_fleet_exporters

    start_ns = realtime_ns()
    exporters, hosts = start_fleet_exporters(tmp_path / "hosts", specs, start_ns)
    rules = run_cli("rules", "--fleet", "--fleet-warn-offset", "0.05", "--fleet-max-offset", "0.1",
                    "--fleet-for", "2s")
    assert rules.returncode == 0, rules.stderr
    rules_file = tmp_path / "fleet-rules.yml"
    rules_file.write_text(rules.stdout)
    chk = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert chk.returncode == 0, chk.stdout + chk.stderr
    import socket

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    config = tmp_path / "prometheus.yml"
    targets = "\n".join(f"      - targets: ['127.0.0.1:{p}']\n        labels: {{host: {name}}}"
                        for name, p in hosts)
    config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                      f"rule_files:\n  - {json.dumps(str(rules_file))}\n"
                      f"scrape_configs:\n  - job_name: hosts\n    static_configs:\n{targets}\n")
    log = (tmp_path / "prometheus.log").open("w")
    prom = subprocess.Popen(["prometheus", f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> dict:
        with urllib.request.urlopen(base + path, timeout=5) as resp:  # noqa: S310 (loopback only)
            return json.loads(resp.read())

    try:
        deadline = time.monotonic() + PROM_WAIT_S
        firing: set[str] = set()
        while time.monotonic() < deadline:
            try:
                alerts = get("/api/v1/alerts")["data"]["alerts"]
            except OSError:
                time.sleep(0.5)
                continue
            firing = {a["labels"]["host"] for a in alerts
                      if a["labels"]["alertname"] == "TimekitFleetHostSkewCritical"
                      and a["state"] == "firing"}
            if firing >= skewed:
                break
            time.sleep(0.5)
        assert firing == skewed, (sorted(firing), sorted(skewed))
        alerts = get("/api/v1/alerts")["data"]["alerts"]  # no healthy host even pending, no "no majority"
        named = {a["labels"].get("host") for a in alerts
                 if a["labels"]["alertname"].startswith("TimekitFleetHost")}
        assert named == skewed, sorted(named)
        assert not [a for a in alerts if a["labels"]["alertname"] == "TimekitFleetNoMajority"]
        q = urllib.parse.urlencode({"query": "timekit:fleet_clock_skew_seconds"})
        result = get(f"/api/v1/query?{q}")["data"]["result"]
        assert len(result) == PROM_HOSTS
        by_name = {s.name: s for s in specs}
        for series in result:
            t_ns = int(float(series["value"][0]) * 1e9)
            errors = {n: s.server_offset_s(t_ns, start_ns) for n, s in by_name.items()}
            truth = errors[series["metric"]["host"]] - statistics.median(errors.values())
            # the scrape is up to a second older than the query: healthy drift (<= 20 ppm) moves < 20 µs
            assert abs(float(series["value"][1]) - truth) <= 1e-4, (series, truth)
        record_figure("fleet", f"Prometheus on {PROM_HOSTS} hosts: TimekitFleetHostSkewCritical fires for "
                      f"exactly the {len(skewed)} skewed ({', '.join(sorted(skewed))})")
    finally:
        prom.terminate()
        prom.wait(10)
        exporters.terminate()
        exporters.wait(10)
        log.close()


def test_servers_queued_behind_the_in_flight_limit_get_their_whole_timeout(tmp_path: Path) -> None:  # F9
    """12 servers each answering after 100 ms, 2 in flight at once, a 0.3 s timeout: the last ones
    wait 0.5 s for a slot, which is not their silence; every one answers (the deadline once started
    before the queue: the queued ones failed unasked as 'no usable address', 881 of 5,000 in a sweep)."""
    import asyncio

    from timekit.address import parse_server
    from timekit.collectors.ntp_client import QueryPlan, sample_servers
    from timekit.lab.faultserver import PortSpec
    from timekit.lab.manager import reap, start_fault_server

    specs = [PortSpec(name=f"s{i}", delay_s=0.1) for i in range(12)]
    pid, ready = start_fault_server(tmp_path / "lab", specs, detach=False)
    try:
        out: list = []
        servers = [parse_server(f"{p['host']}:{p['port']}") for p in ready["ports"]]
        asyncio.run(sample_servers(servers, QueryPlan(count=1, timeout_s=0.3), {},
                                   lambda s, _st: out.append(s), max_in_flight=2))
    finally:
        import os
        import signal

        os.kill(pid, signal.SIGTERM)
        reap(pid)
    assert len(out) == 12
    assert all(s.ok for s in out), [(s.server, s.error, s.detail) for s in out if not s.ok]


def _alerts(doc: dict, name: str, firing: list[dict[str, str]], value: str | None = None) -> list[dict]:
    """promtool's expected alerts for `name`: each firing series' labels, the rule's labels and its
    annotations rendered for them ($labels.*, and $value where the rule shows it)."""
    rule = next(r for g in doc["groups"] for r in g["rules"] if r.get("alert") == name)
    out = []
    for labels in firing:
        notes = {}
        for k, text in rule["annotations"].items():
            for lk, lv in labels.items():
                text = text.replace(f"{{{{ $labels.{lk} }}}}", lv)
            notes[k] = text.replace("{{ $value }}", value or "")
        out.append({"exp_labels": {**rule["labels"], **labels}, "exp_annotations": notes})
    return out


def test_promtool_unit_tests_of_the_fleet_rules(tmp_path: Path) -> None:  # F10
    """promtool's rule unit tests: which hosts each fleet alert names, on series whose values are exact
    in binary (so the rendered $value is too): skewed hosts alert only after `for`, exactly those beyond
    each threshold by more than their own uncertainty; a split fleet alerts no host but NoMajority; the
    sweepers' quarantines and a stopped sweeper are passed on."""
    import shutil
    import subprocess

    from timekit.outputs.fleet_rules import fleet_rules_document, fleet_rules_yaml

    if shutil.which("promtool") is None:
        pytest.fail("promtool not installed (scripts/setup installs the Debian package prometheus)")
    kw = {"warn_offset_s": 0.1, "max_offset_s": 0.5, "for_": "5m", "min_hosts": 3, "sweep_stale_s": 180.0}
    doc = fleet_rules_document(**kw)  # type: ignore[arg-type]
    (tmp_path / "rules.yml").write_text(fleet_rules_yaml(**kw))

    def host(name: str, offset: float, unc: float) -> list[dict[str, str]]:
        return [{"series": f'timekit_clock_offset_seconds{{instance="{name}"}}',
                 "values": f"{offset}+0x20"},
                {"series": f'timekit_clock_uncertainty_seconds{{instance="{name}"}}',
                 "values": f"{unc}+0x20"}]

    # 7 healthy hosts at 0 (median 0), two 0.75 s beyond max's reach and one only beyond the warning
    fleet = [s for i in range(7) for s in host(f"ok{i}", 0.0, 0.001)]
    fleet += host("behind", 1.0, 0.25) + host("ahead", -0.875, 0.125) + host("warned", -0.5, 0.25)
    sweeps = "timekit_fleet_last_sweep_timestamp_seconds"
    fleet += [{"series": 'timekit_fleet_node_quarantined{instance="sw1",node="n3"}', "values": "1+0x20"},
              {"series": 'timekit_fleet_node_quarantined{instance="sw1",node="n4"}', "values": "0+0x20"},
              {"series": sweeps + '{instance="sw1"}', "values": "0+60x20"},  # sweeping every minute
              {"series": sweeps + '{instance="sw2"}', "values": "0+60x2 120+0x17"}]  # stopped at 2 min
    far = [{"instance": "ahead"}, {"instance": "behind"}]
    crit = _alerts(doc, "TimekitFleetHostSkewCritical", far, "0.75")
    warn = (_alerts(doc, "TimekitFleetHostSkewWarning", far, "0.75")
            + _alerts(doc, "TimekitFleetHostSkewWarning", [{"instance": "warned"}], "0.25"))
    # a split fleet: two hosts at 0, two 2 s behind: the median sits between, nobody within max
    split = [s for i, off in enumerate((0.0, 0.0, 2.0, 2.0)) for s in host(f"s{i}", off, 0.001)]
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [
        {"name": "fleet", "interval": "1m", "input_series": fleet, "alert_rule_test": [
            {"eval_time": "4m", "alertname": "TimekitFleetHostSkewCritical", "exp_alerts": []},
            {"eval_time": "10m", "alertname": "TimekitFleetHostSkewCritical", "exp_alerts": crit},
            {"eval_time": "10m", "alertname": "TimekitFleetHostSkewWarning", "exp_alerts": warn},
            {"eval_time": "10m", "alertname": "TimekitFleetNoMajority", "exp_alerts": []},
            {"eval_time": "10m", "alertname": "TimekitFleetNodeQuarantined",
             "exp_alerts": _alerts(doc, "TimekitFleetNodeQuarantined", [{"instance": "sw1", "node": "n3"}])},
            {"eval_time": "10m", "alertname": "TimekitFleetSweeperStale",
             "exp_alerts": _alerts(doc, "TimekitFleetSweeperStale", [{"instance": "sw2"}])}],
         "promql_expr_test": [
            {"expr": "timekit:fleet_clock_offset_seconds:median", "eval_time": "10m",
             "exp_samples": [{"labels": "timekit:fleet_clock_offset_seconds:median", "value": 0}]},
            {"expr": 'timekit:fleet_clock_skew_seconds{instance="behind"}', "eval_time": "10m",
             "exp_samples": [{"labels": 'timekit:fleet_clock_skew_seconds{instance="behind"}',
                              "value": -1.0}]},
            {"expr": "timekit:fleet_hosts_within_max:count", "eval_time": "10m",
             "exp_samples": [{"labels": "timekit:fleet_hosts_within_max:count", "value": 8}]}]},
        {"name": "split", "interval": "1m", "input_series": split, "alert_rule_test": [
            {"eval_time": "10m", "alertname": "TimekitFleetHostSkewCritical", "exp_alerts": []},
            {"eval_time": "10m", "alertname": "TimekitFleetHostSkewWarning", "exp_alerts": []},
            {"eval_time": "10m", "alertname": "TimekitFleetNoMajority",
             "exp_alerts": _alerts(doc, "TimekitFleetNoMajority", [{}])}]}]}
    (tmp_path / "tests.yml").write_text(json.dumps(tests))  # JSON is YAML
    r = subprocess.run(["promtool", "test", "rules", str(tmp_path / "tests.yml")], capture_output=True,
                       text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    # and the tests can fail: the same file against rules with a lower max fails
    (tmp_path / "rules.yml").write_text(fleet_rules_yaml(**{**kw, "max_offset_s": 0.2}))
    bad = subprocess.run(["promtool", "test", "rules", str(tmp_path / "tests.yml")], capture_output=True,
                         text=True, cwd=tmp_path, timeout=60)
    assert bad.returncode != 0 and "warned" in bad.stdout + bad.stderr
