"""`fleet`: the fleet sweeper and Prometheus as the fleet engine, measured.

(1) One sweep of 1,000 and 5,000 nodes (1,000 with --quick): the real CLI, `timekit fleet sweep
--nodes FILE --sweeps 3 --interval 0 --burst 1 --json`, against a fleet lab (one fault-server process,
loss off so a lost reply's timeout does not stand in for the sweep): each sweep's wall time, the
process's CPU time and peak RSS; the peer is ntplib querying the same nodes one after another
(1,000 measured; 5,000 extrapolated from it).
(2) From a node's step to its quarantine: 1,000 nodes, one stepping 300 ms 3 s after start, a sweep a
second with enter_after 2: the time from the step (its truth) to the committed transition.
(3) Rule evaluation cost on a real Prometheus: 100 and 1,000 simulated hosts (`fleet_exporters`)
scraped every 2 s with `timekit rules --fleet` loaded: each group's evaluation time as Prometheus
reports it (`/api/v1/rules` evaluationTime), the median over 5 readings.
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import ntplib

from benchmarks.common import BenchResult, median, mono_s, stop_pids
from timekit.collectors.clocks import realtime_ns
from timekit.lab.faultserver import PortSpec
from timekit.lab.fleet import FleetPlan, fleet_ports, start_fleet_exporters, write_nodes_file
from timekit.lab.manager import start_fault_server
from timekit.units import NS_PER_S

SIZES = {True: (1000,), False: (1000, 5000)}
NTPLIB_N = 1000


def _fleet(workdir: Path, name: str, specs: list[PortSpec]) -> tuple[int, Path]:
    """Start a fault server for `specs`; (pid, nodes file)."""
    pid, ready = start_fault_server(workdir / name, specs, detach=False, name=name)
    nodes = workdir / f"{name}.nodes.txt"
    write_nodes_file(nodes, [(p["name"], f"{p['host']}:{p['port']}") for p in ready["ports"]])
    return pid, nodes


_MEASURED = ("import resource, runpy, sys\n"
             "sys.argv = ['timekit', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('timekit.cli', run_name='__main__')\n"
             "finally:\n    u = resource.getrusage(resource.RUSAGE_SELF)\n"
             "    print('RUSAGE', u.ru_utime + u.ru_stime, u.ru_maxrss, file=sys.stderr)\n")


def _sweep_cli(nodes: Path, db: Path, *extra: str) -> tuple[dict[str, Any], float, float]:
    """Run `timekit fleet sweep`; (its JSON, CPU s, peak RSS MiB) of that process alone."""
    r = subprocess.run([sys.executable, "-c", _MEASURED, "fleet", "sweep", "--nodes", str(nodes), "--json",
                        "--db", str(db), *extra], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"fleet sweep failed: {r.stderr.strip()[-300:]}")
    _tag, cpu, rss_kib = r.stderr.strip().splitlines()[-1].split()
    return json.loads(r.stdout), float(cpu), int(rss_kib) / 1024


def _ntplib_seq(nodes: Path, n: int) -> tuple[float, int]:
    client = ntplib.NTPClient()
    ok, t0 = 0, mono_s()
    for line in nodes.read_text().splitlines()[:n]:
        host, port = line.split()[1].rsplit(":", 1)
        try:
            client.request(host, port=int(port), version=4, timeout=1.0)
            ok += 1
        except (ntplib.NTPException, OSError):
            pass
    return mono_s() - t0, ok


def _sweeps(res: BenchResult, quick: bool, workdir: Path) -> None:
    for n in SIZES[quick]:
        specs = [replace(s, loss=0.0) for s in fleet_ports(FleetPlan(n, seed=3))]
        pid, nodes = _fleet(workdir, f"fleet{n}", specs)
        try:
            doc, cpu, rss = _sweep_cli(nodes, workdir / f"fleet{n}.db", "--sweeps", "3", "--interval", "0",
                                       "--burst", "1", "--timeout", "1")
            walls = [s["wall_s"] for s in doc["sweeps"]]
            answered = min(s["answered"] for s in doc["sweeps"])
            nl_s, nl_ok = _ntplib_seq(nodes, min(n, NTPLIB_N)) if n <= NTPLIB_N else (None, None)
        finally:
            stop_pids(workdir / f"fleet{n}", [pid])
        if nl_s is None:
            peer = res.details.get("ntplib_per_node_s")
            nl_est = peer * n if peer else None
            res.row(f"one sweep, {n:,} nodes", "s", median(walls), "ntplib seq (extrapolated)", nl_est,
                    f"median of 3 sweeps; answered {answered:,} of {n:,} (loss off)")
        else:
            res.details["ntplib_per_node_s"] = nl_s / min(n, NTPLIB_N)
            res.row(f"one sweep, {n:,} nodes", "s", median(walls), "ntplib seq", nl_s,
                    f"median of 3 sweeps; answered {answered:,}, ntplib {nl_ok:,}")
        res.row(f"CPU of 3 sweeps of {n:,} (process)", "s", cpu, "-", None, "start-up and store included")
        res.row(f"peak RSS, {n:,} nodes", "MiB", rss, "-", None, "the sweeper process")
        res.details[f"sweep_{n}"] = {"walls_s": walls, "cpu_s": cpu, "rss_mib": rss, "answered": answered}


def _step_to_quarantine(res: BenchResult, workdir: Path) -> None:
    plan = FleetPlan(1000, stepped=1, step_after_s=3.0, seed=5)
    specs = fleet_ports(plan)
    start_ns = realtime_ns()
    pid, ready = start_fault_server(workdir / "stepq", specs, detach=False, name="stepq", start_ns=start_ns)
    nodes = workdir / "stepq.nodes.txt"
    write_nodes_file(nodes, [(p["name"], f"{p['host']}:{p['port']}") for p in ready["ports"]])
    stepped = next(s.name for s in specs if s.step_after_s is not None)
    try:
        _sweep_cli(nodes, workdir / "stepq.db", "--sweeps", "10", "--interval", "1", "--enter-after", "2",
                   "--max-offset", "0.05", "--warn-offset", "0.02", "--timeout", "0.5")
    finally:
        stop_pids(workdir / "stepq", [pid])
    from timekit.store import Store

    with Store.open(workdir / "stepq.db", create=False, readonly=True) as st:
        entered = [t for t, node, _f, to, _o, _w in st.fleet_events()
                   if node == stepped and to == "quarantined"]
    step_ns = start_ns + int(3.0 * NS_PER_S)
    took = (entered[0] - step_ns) / NS_PER_S if entered else None
    res.row("node step -> quarantine", "s", took, "-", None, "1 s sweeps, enter_after 2, 1,000 nodes")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rule_cost(res: BenchResult, quick: bool, workdir: Path) -> None:
    if shutil.which("prometheus") is None:
        res.notes.append("prometheus not installed: rule evaluation cost not measured")
        return
    for n in (100,) if quick else (100, 1000):
        d = workdir / f"prom{n}"
        specs = fleet_ports(FleetPlan(n, stepped=max(1, n // 100), step_after_s=0.0, seed=9))
        exporters, hosts = start_fleet_exporters(d / "hosts", specs, realtime_ns())
        rules = subprocess.run([sys.executable, "-m", "timekit.cli", "rules", "--fleet", "--fleet-for", "2s"],
                               capture_output=True, text=True, check=True).stdout
        (d / "rules.yml").write_text(rules)
        port = _free_port()
        targets = "\n".join(f"      - targets: ['127.0.0.1:{p}']\n        labels: {{host: {h}}}"
                            for h, p in hosts)
        (d / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\n"
            f"rule_files:\n  - {json.dumps(str(d / 'rules.yml'))}\n"
            f"scrape_configs:\n  - job_name: hosts\n    static_configs:\n{targets}\n")
        with open(d / "prometheus.log", "w") as log:
            prom = subprocess.Popen(["prometheus", f"--config.file={d / 'prometheus.yml'}",
                                     f"--storage.tsdb.path={d / 'tsdb'}",
                                     f"--web.listen-address=127.0.0.1:{port}"],
                                    stdout=log, stderr=subprocess.STDOUT)
        costs: dict[str, list[float]] = {}
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:  # every host scraped and counted first
                time.sleep(1)
                try:
                    with urllib.request.urlopen(f"{base}/api/v1/query?query=timekit:fleet_hosts:count",  # noqa: S310
                                                timeout=5) as r:
                        got = json.loads(r.read())["data"]["result"]
                except OSError:
                    continue
                if got and float(got[0]["value"][1]) == n:
                    break
            while time.monotonic() < deadline and sum(len(v) for v in costs.values()) < 10:
                time.sleep(2)
                try:
                    url = f"{base}/api/v1/rules"
                    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (loopback)
                        groups = json.loads(r.read())["data"]["groups"]
                except OSError:
                    continue
                for g in groups:
                    if g.get("lastEvaluation", "").startswith("0001") or not g.get("evaluationTime"):
                        continue
                    series = sum(1 for rule in g["rules"] if rule.get("health") == "ok")
                    if series:
                        costs.setdefault(g["name"], []).append(float(g["evaluationTime"]))
        finally:
            prom.terminate()
            prom.wait(10)
            exporters.terminate()
            exporters.wait(10)
        for group, values in sorted(costs.items()):
            res.row(f"rule group {group}, {n:,} hosts", "ms", statistics.median(values) * 1e3, "-", None,
                    f"Prometheus evaluationTime, median of {len(values)}")


def run(quick: bool, workdir: Path) -> BenchResult:
    res = BenchResult("fleet")
    _sweeps(res, quick, workdir)
    _step_to_quarantine(res, workdir)
    _rule_cost(res, quick, workdir)
    return res
