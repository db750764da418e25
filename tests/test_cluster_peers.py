"""Peer mode on a cluster lab: five nodes, each a real chronyd serving its peers with the node's own
clock and a `timekit collect` running on that same clock (libfaketime and the lab's shim), one node
0.8 s off. The skewed node quarantines itself (against its peers, and apart from that against its
references), the others do not; what each node measures of each peer is the truth within NTP's
bound; the hook hears TIMEKIT_SCOPE=cluster; `check` says it; the config's mistakes are one line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import record_figure, require_lab, run_cli
from timekit.analysis.cluster import diagnose
from timekit.config import config_from_dict
from timekit.errors import UsageError
from timekit.lab.chrony import lab_prerequisites
from timekit.lab.cluster import ClusterNode, start_cluster, stop_cluster, write_node_config
from timekit.lab.manager import Lab
from timekit.units import NS_PER_S

SKEWS = {"a": 0.0, "b": 0.003, "c": -0.002, "d": 0.001, "e": 0.8}
SKEWED = "e"
ENTER_AFTER, LEAVE_AFTER = 2, 2
ROUNDS = 3
MEASURE_SLACK_S = 200e-6  # the faked clocks' reads (libfaketime, the shim's stamp rewrite): a few µs


@dataclass
class ClusterRun:
    nodes: list[ClusterNode]
    docs: dict[str, list[dict]]  # node -> each round's collect JSON
    hook_lines: dict[str, list[str]]
    dbs: dict[str, Path]
    configs: dict[str, Path]


def _collect(node: ClusterNode, config: Path, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "timekit.cli", "collect", "--config", str(config),
                             "--db", str(db), "--json"], env=node.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def cluster_run(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRun]:
    require_lab(lab_prerequisites())
    tmp = tmp_path_factory.mktemp("cluster")
    nodes = start_cluster(tmp, SKEWS)
    try:
        refs = [s.address for s in lab.servers if s.kind == "chrony"]
        hook = tmp / "hook.py"
        hook.write_text("import os, sys\nwith open(sys.argv[1], 'a') as f:\n"
                        "    f.write(' '.join(os.environ[k] for k in ('TIMEKIT_SCOPE', 'TIMEKIT_NODE',"
                        " 'TIMEKIT_FROM_STATUS', 'TIMEKIT_TO_STATUS')) + '\\n')\n")
        configs, dbs, logs = {}, {}, {}
        for n in nodes:
            logs[n.name] = tmp / n.name / "hook.log"
            configs[n.name] = write_node_config(
                n, nodes, tmp / n.name / "timekit.toml", references=refs,
                extra=f"[skew]\nenter_after = {ENTER_AFTER}\nleave_after = {LEAVE_AFTER}\n"
                      f"hook = \"{sys.executable} {hook} {logs[n.name]}\"\n")
            dbs[n.name] = tmp / n.name / "timekit.db"
        docs: dict[str, list[dict]] = {n.name: [] for n in nodes}
        for _ in range(ROUNDS):  # every node's collect at once, as a cluster's cron would run them
            procs = {n.name: _collect(n, configs[n.name], dbs[n.name]) for n in nodes}
            for name, p in procs.items():
                out, err = p.communicate(timeout=120)
                assert p.returncode == 0, f"{name}: {err}"
                docs[name].append(json.loads(out))
        hook_lines = {n: (logs[n].read_text().splitlines() if logs[n].exists() else []) for n in logs}
        yield ClusterRun(nodes, docs, hook_lines, dbs, configs)
    finally:
        stop_cluster(nodes)


def test_the_skewed_node_quarantines_itself_and_no_other_does(cluster_run: ClusterRun) -> None:  # F1, F2
    for name, rounds in cluster_run.docs.items():
        states = [r["skew"]["cluster"]["self"]["status"] for r in rounds]
        verdicts = [r["skew"]["cluster"]["self"]["verdict"] for r in rounds]
        if name == SKEWED:
            assert verdicts == ["beyond_max"] * ROUNDS, (name, verdicts)
            # enter_after consecutive checks beyond max: suspect at once, quarantined at the 2nd
            assert states == ["suspect", "quarantined", "quarantined"], (name, states)
        else:
            assert verdicts == ["ok"] * ROUNDS, (name, verdicts)
            assert states == ["ok"] * ROUNDS, (name, states)
            # each healthy node sees the skewed one beyond max, and only it
            last = rounds[-1]["skew"]["cluster"]
            assert last["quarantined"] == [SKEWED], (name, last["quarantined"])


def test_off_from_the_cluster_is_reported_apart_from_off_from_utc(cluster_run: ClusterRun) -> None:  # F1
    for name, rounds in cluster_run.docs.items():
        doc = rounds[-1]["skew"]
        me_refs = next(n for n in doc["nodes"] if n["node"] == "self")
        me_cluster = doc["cluster"]["self"]
        if name == SKEWED:
            # 0.8 s from both: two verdicts, two stored states, one diagnosis naming both
            assert me_refs["verdict"] == "beyond_max" and me_cluster["verdict"] == "beyond_max"
            assert doc["cluster"]["diagnosis"].startswith("off from the cluster and from UTC")
            assert abs(me_cluster["offset_s"] + SKEWS[SKEWED]) < 0.01, me_cluster
        else:
            assert me_refs["verdict"] == "ok" and me_cluster["verdict"] == "ok"
            assert doc["cluster"]["diagnosis"] == "in step with the cluster and with UTC"
        assert me_cluster["status"] == me_refs["status"] or name == SKEWED


def test_each_peer_reads_as_its_truth_within_the_ntp_bound(cluster_run: ClusterRun) -> None:
    by_name = {n.name: n for n in cluster_run.nodes}
    worst = 0.0
    errors: list[float] = []
    for name, rounds in cluster_run.docs.items():
        me = by_name[name]
        for r in rounds:
            for reading in r["peers"]:
                assert reading["ok"], (name, reading)
                true_ns = reading["t_local_ns"] - round(me.skew_s * NS_PER_S)  # this node's clock -> true
                truth = me.true_peer_offset_s(by_name[reading["peer"]], true_ns)
                error = abs(reading["offset_s"] - truth)
                worst = max(worst, error - reading["delay_s"] / 2)
                errors.append(error)
                assert error <= reading["delay_s"] / 2 + MEASURE_SLACK_S, (name, reading, truth)
    assert worst <= MEASURE_SLACK_S
    median = sorted(errors)[len(errors) // 2]
    record_figure("cluster", f"peer mode, 5 chronyd nodes each collecting on its own clock: {len(errors)} "
                  f"peer readings off their truth by at most {max(errors) * 1e6:.1f} µs (median "
                  f"{median * 1e6:.1f} µs), beyond delay/2 by at most {worst * 1e6:.1f} µs; node {SKEWED} "
                  f"(+0.8 s) quarantined itself at check {ENTER_AFTER}, no other node left ok")


def test_lab_start_cluster_gives_each_node_its_clock_and_config(tmp_path: Path, lab: Lab) -> None:
    lab_dir = tmp_path / "clab"
    r = run_cli("lab", "start", "--cluster", "3", "--skewed", "1", "--skew", "0.5", "--dir", str(lab_dir),
                "--json")
    assert r.returncode == 0, r.stderr
    try:
        doc = json.loads(r.stdout)
        skewed = doc["nodes"][-1]
        assert [n["skew_s"] for n in doc["nodes"]][-1] == 0.5 and len(doc["references"]) == 3
        assert all(abs(n["skew_s"]) <= 0.002 for n in doc["nodes"][:-1])
        s = subprocess.run([skewed["timekit"], "sample", "ntp", "--count", "4", "--json", "--db",
                            str(tmp_path / "db"), doc["references"][0]], capture_output=True, text=True,
                           timeout=60)
        assert s.returncode == 0, s.stderr
        best = min((x for x in json.loads(s.stdout)["samples"] if x["ok"]), key=lambda x: x["delay_s"])
        # a reference at true time, read on a clock 0.5 s ahead: -0.5 s within NTP's bound
        assert abs(best["offset_s"] + 0.5) <= best["delay_s"] / 2 + MEASURE_SLACK_S, best
        cfg = config_from_dict(__import__("tomllib").loads(Path(skewed["config"]).read_text()))
        assert sorted(p.address.name for p in cfg.peers) == sorted(n["address"] for n in doc["nodes"][:-1])
        assert [s.name for s in cfg.servers] == doc["references"]
    finally:
        assert run_cli("lab", "stop", "--dir", str(lab_dir)).returncode == 0


def test_the_hook_hears_the_cluster_transitions(cluster_run: ClusterRun) -> None:  # F1, F2
    lines = cluster_run.hook_lines
    assert "cluster self suspect quarantined" in lines[SKEWED]
    assert not any(line.startswith("cluster self") for n, ls in lines.items() if n != SKEWED for line in ls)
    for name in SKEWS:
        if name != SKEWED:
            assert f"cluster {SKEWED} suspect quarantined" in lines[name], (name, lines[name])
    # the references' check runs its own transitions with its own scope, and counts only runs that took
    # new reference samples (min_poll_s spaces them): it quarantines only when enter_after runs did
    assert "references self ok suspect" in lines[SKEWED]
    sampled = sum(bool(doc["samples"]) for doc in cluster_run.docs[SKEWED])
    quarantined = "references self suspect quarantined" in lines[SKEWED]
    assert quarantined == (sampled >= ENTER_AFTER), (sampled, lines[SKEWED])


def test_check_and_analyze_skew_say_it_on_the_node(cluster_run: ClusterRun) -> None:  # F1
    by_name = {n.name: n for n in cluster_run.nodes}
    for name in (SKEWED, "a"):
        node = by_name[name]
        r = subprocess.run([sys.executable, "-m", "timekit.cli", "check", "--db", str(cluster_run.dbs[name])],
                           env=node.env, capture_output=True, text=True, timeout=60)
        if name == SKEWED:
            assert r.returncode == 2, r.stdout + r.stderr
            assert "quarantined from its cluster" in r.stdout
        else:
            assert "cluster" not in r.stdout.split("|")[0], r.stdout
        a = subprocess.run([sys.executable, "-m", "timekit.cli", "analyze", "skew", "--db",
                            str(cluster_run.dbs[name])], env=node.env, capture_output=True, text=True,
                           timeout=60)
        assert a.returncode == 0, a.stderr
        assert ("off from the cluster and from UTC" in a.stdout) == (name == SKEWED), a.stdout


def test_diagnosis_names_each_fault_apart() -> None:
    assert diagnose("ok", "beyond_max").startswith("off from the cluster, not from UTC")
    assert diagnose("beyond_max", "ok").startswith("off from UTC, in step with the cluster")
    assert diagnose("beyond_max", "beyond_max").startswith("off from the cluster and from UTC")
    assert diagnose("ok", "ok") == "in step with the cluster and with UTC"
    assert diagnose(None, "suspect").startswith("off from the cluster (UTC not judged")
    assert diagnose(None, None).startswith("not judged")


@pytest.mark.parametrize(("peers", "servers", "message"), [
    (["a 127.0.0.1:1123", "a 127.0.0.1:1124"], [], "names 'a' twice"),
    (["a 127.0.0.1:1123", "b 127.0.0.1:1123"], [], "is already peer 'a'"),
    (["a 127.0.0.1:1123", "b 127.0.0.1:1124"], ["127.0.0.1:1123"], "is also in ntp.servers"),
    (["a 127.0.0.1:1123"], [], "names one peer"),
    (["self 127.0.0.1:1123", "c 127.0.0.1:1124"], [], "'self' is this host"),
    (["a b 127.0.0.1:1123", "c 127.0.0.1:1124"], [], "expected 'HOST[:PORT]' or 'NAME HOST[:PORT]'"),
    (["a 127.0.0.1:99999", "c 127.0.0.1:1124"], [], "port"),
    ([3, 4], [], "must be a list of strings"),
])
def test_peer_config_mistakes_are_one_line(peers: list, servers: list, message: str) -> None:  # F6
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
        config_from_dict({"ntp": {"servers": servers}, "cluster": {"peers": peers}}, "t.toml")
    assert "\n" not in str(e.value)


def test_a_bad_peer_config_exits_2_with_one_line(tmp_path: Path) -> None:  # F6
    cfg = tmp_path / "t.toml"
    cfg.write_text('[cluster]\npeers = ["x 127.0.0.1:1123", "x 127.0.0.1:1124"]\n')
    r = run_cli("collect", "--config", str(cfg), db=tmp_path / "db")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "names 'x' twice" in r.stderr, r.stderr
    assert not (tmp_path / "db").exists()  # no store for a config that does not parse


# --- the cluster check on a real store, from stored readings (instants read from this host's clocks) ---

def _readings(values_s: dict[str, float], delay_s: float = 0.0002, age_s: float = 1.0,
              boot: str | None = None) -> list:
    from timekit.analysis.cluster import PeerReading
    from timekit.collectors.clocks import boot_id
    from timekit.store.evidence import read_now

    rt, bt = read_now()
    back = round(age_s * NS_PER_S)
    return [PeerReading(name, f"127.0.0.{i + 2}:123", rt - back, bt - back, boot or boot_id(), True, v,
                        delay_s) for i, (name, v) in enumerate(sorted(values_s.items()))]


def _check(db: Path, readings: list, **skew: object) -> dict:
    from timekit.analysis.assessment import Policy
    from timekit.analysis.skew import SkewPolicy
    from timekit.pipeline.skewcheck import run_skew_check
    from timekit.store import Store

    with Store.open(db) as st:
        st.add_peer_readings(readings)
        report = run_skew_check(st, Policy(skew=SkewPolicy(**skew)), commit=True)  # type: ignore[arg-type]
    assert report.cluster is not None
    return report.cluster.to_json()


def test_off_from_the_peers_quarantines_self_and_a_clean_streak_releases_it(tmp_path: Path) -> None:  # F3
    db = tmp_path / "db"
    off = {"p1": -0.8, "p2": -0.801, "p3": -0.799}  # every peer reads 0.8 s behind: this clock is ahead
    statuses = [_check(db, _readings(off), enter_after=2, leave_after=3)["self"]["status"] for _ in range(2)]
    assert statuses == ["suspect", "quarantined"]
    back = {"p1": 0.001, "p2": -0.001, "p3": 0.0}
    statuses = [_check(db, _readings(back), enter_after=2, leave_after=3)["self"]["status"] for _ in range(3)]
    assert statuses == ["quarantined", "quarantined", "ok"]  # released at the 3rd clean check, not before
    from timekit.store import Store

    with Store.open(db) as st:
        moves = [(e[1], e[2], e[3]) for e in st.cluster_events()]
        assert moves == [("self", "ok", "suspect"), ("self", "suspect", "quarantined"),
                         ("self", "quarantined", "ok")]
        assert st.node_health_rows() == []  # no reference: the references' check kept no state


def test_the_pause_guard_holds_the_cluster_check(tmp_path: Path) -> None:  # F4
    db = tmp_path / "db"
    doc = _check(db, _readings({"p1": -0.8, "p2": -0.8, "p3": -0.8}, delay_s=0.9), enter_after=1)
    assert doc["held"] and "pause guard" in doc["reason"], doc
    assert doc["self"]["status"] == "ok" and doc["transitions"] == []


def test_old_failed_or_other_boot_readings_are_not_judged(tmp_path: Path) -> None:  # F5
    from dataclasses import replace

    db = tmp_path / "db"
    fresh = _readings({"p1": 0.0, "p2": 0.001})
    old = _readings({"p3": 3.0}, age_s=10.0)  # past max_age_s on boottime
    other = _readings({"p4": 3.0}, boot="another-boot")
    failed = [replace(r, ok=False, offset_s=None, delay_s=None, error="timeout")
              for r in _readings({"p5": 0.0})]
    doc = _check(db, [*fresh, *old, *other, *failed], enter_after=1, max_age_s=5.0)
    peers = {p["peer"]: p for p in doc["peers"]}
    assert [n for n, p in peers.items() if p["judged"]] == ["p1", "p2"]
    assert peers["p3"]["stale"] and peers["p4"]["stale"] and peers["p5"]["error"] == "timeout"
    assert doc["quorum"] and doc["self"]["verdict"] == "ok" and doc["quarantined"] == []


def test_a_reading_is_carried_across_a_step_of_this_clock() -> None:
    from timekit.analysis.cluster import PeerReading, carried_value_s

    r = PeerReading("p", "127.0.0.2:123", t_local_ns=10 * NS_PER_S, boottime_ns=5 * NS_PER_S, boot_id="b",
                    ok=True, offset_s=0.25, delay_s=0.001)
    # 2 s of boottime later this clock reads 2.5 s later: stepped +0.5 s, so the peer is 0.5 s less ahead
    stepped = carried_value_s(r, now_realtime_ns=12_500_000_000, now_boottime_ns=7 * NS_PER_S)
    assert stepped == pytest.approx(-0.25)
    steady = carried_value_s(r, now_realtime_ns=12 * NS_PER_S, now_boottime_ns=7 * NS_PER_S)
    assert steady == pytest.approx(0.25)


def test_a_suspend_since_the_previous_check_holds_a_peers_only_host(tmp_path: Path) -> None:  # F4
    """A host with peers and no reference: the pause guard still sees its suspend (the last check is
    the cluster's), and the check is held instead of counting evidence taken across it."""
    from timekit.store import Store
    from timekit.store.evidence import read_now

    db = tmp_path / "db"
    off = {"p1": -0.8, "p2": -0.8, "p3": -0.8}
    assert _check(db, _readings(off), enter_after=2)["self"]["bad_streak"] == 1
    with Store.open(db) as st:
        st.add_clock_rows([], [dict(kind="suspend", t_local_ns=read_now()[0], magnitude_s=5.0)])
    doc = _check(db, _readings(off), enter_after=2)
    assert doc["held"] and "suspended" in doc["reason"], doc
    assert doc["self"]["status"] == "suspect" and doc["self"]["bad_streak"] == 1  # not advanced


def test_no_new_peer_reading_holds_and_unconfigured_peers_are_retired(tmp_path: Path) -> None:  # F5
    from timekit.analysis.assessment import Policy
    from timekit.analysis.skew import SkewPolicy
    from timekit.pipeline.skewcheck import run_skew_check
    from timekit.store import Store

    db = tmp_path / "db"
    off = {"p1": -0.8, "p2": -0.8, "p3": -0.8}
    _check(db, _readings(off), enter_after=1)
    pol = Policy(skew=SkewPolicy(enter_after=1))
    with Store.open(db) as st:
        assert {r.node: r.status for r in st.cluster_health_rows()}["self"] == "quarantined"
        held = run_skew_check(st, pol, commit=True, peers_sampled=False)  # a run that reached no peer
        assert held.cluster is not None and held.cluster.update.held
        assert "no peer reading this run" in (held.cluster.update.reason or "")
        # p3 leaves the config: its state goes, the others stay
        run_skew_check(st, pol, commit=True, peers=["p1", "p2"], peers_sampled=False)
        assert sorted(r.node for r in st.cluster_health_rows()) == ["p1", "p2", "self"]
        # the cluster goes from the config: no state, so no CRITICAL left behind
        report = run_skew_check(st, pol, commit=True, peers=[])
        assert report.cluster is None and st.cluster_health_rows() == []
    r = run_cli("check", "--json", db=db)
    assert "quarantined from its cluster" not in json.loads(r.stdout)["summary"]


@pytest.mark.parametrize(("text", "name"), [("::1", "[::1]:123"), ("[2001:db8::1]:124", "[2001:db8::1]:124"),
                                            ("db-2 [::1]:124", "db-2")])
def test_unnamed_ipv6_nodes_are_named_by_their_endpoint(text: str, name: str) -> None:
    from timekit.address import parse_named_server

    assert parse_named_server(text).name == name
