"""The real `timekit` CLI in subprocesses: JSON contracts, bad input, collect, locks, Ctrl-C."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import LAB_SLACK_S, host_slew_bound_ppm, run_cli, wait_for_count
from timekit.lab.manager import Lab

CONTRACT = {"server": str, "ok": bool, "error": (str, type(None)), "t_local_ns": int,
            "offset_s": (float, type(None)), "delay_s": (float, type(None)),
            "stratum": (int, type(None)), "leap": (int, type(None)),
            "root_delay_s": (float, type(None)), "root_dispersion_s": (float, type(None))}


def assert_one_clean_line(proc: subprocess.CompletedProcess, needle: str) -> None:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr


def test_sample_ntp_json_contract(lab: Lab, tmp_path: Path) -> None:
    a, b = lab.server("chrony-ahead"), lab.server("chrony-behind")
    proc = run_cli("sample", "ntp", a.address, b.address, "--count", "3", "--interval", "0.1",
                   "--json", db=tmp_path / "t.db")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # exactly one JSON document, nothing else on stdout
    assert len(doc["samples"]) == 6
    for s in doc["samples"]:
        for field, typ in CONTRACT.items():
            assert isinstance(s[field], typ), (field, s[field])
        assert s["ok"] and s["error"] is None
        truth = lab.by_address()[s["server"]].true_offset_at(s["t_local_ns"])
        assert abs(s["offset_s"] - truth) <= s["delay_s"] / 2 + LAB_SLACK_S  # NTP's own bound
        # the header in words (ntplib's tables): a lab chronyd is a synchronized secondary or primary
        assert s["leap_text"] == "no warning" and s["stratum_text"].endswith(f" ({s['stratum']})"), s
        assert s["tx_timestamp"] == "kernel" and s["rx_timestamp"] == "kernel"
    with sqlite3.connect(tmp_path / "t.db") as c:  # every attempt stored
        assert c.execute("SELECT count(*) FROM ntp_samples").fetchone()[0] == 6
    # the human table says the same in words: a chronyd with `local stratum 1` is a primary reference
    # whose refid is chrony's local clock (ntpd's 127.127.1.1)
    human = run_cli("sample", "ntp", a.address, "--count", "1", db=tmp_path / "t.db",
                    env={**os.environ, "COLUMNS": "200"})
    row = next(line for line in human.stdout.splitlines() if a.address in line)
    assert "primary reference (1)" in row and "127.127.1.1" in row and "no warning" in row, human.stdout


def test_sample_ntp_stores_rejected_attempts_with_codes(lab: Lab, tmp_path: Path) -> None:
    kod = next(s for s in lab.servers if s.kind == "kod_deny")
    db = tmp_path / "t.db"
    first = json.loads(run_cli("sample", "ntp", kod.address, "--count", "1", "--json", db=db).stdout)
    assert [s["error"] for s in first["samples"]] == ["kod_deny"]
    # the DENY survives between runs: the next run does not query the server at all
    second = json.loads(run_cli("sample", "ntp", kod.address, "--count", "2", "--json", db=db).stdout)
    assert [s["error"] for s in second["samples"]] == ["denied", "denied"]
    listing = json.loads(run_cli("servers", "list", "--json", db=db).stdout)
    assert listing["servers"][0]["hold_reason"] == "kod_deny"
    assert run_cli("servers", "reset", kod.address, db=db).returncode == 0
    third = json.loads(run_cli("sample", "ntp", kod.address, "--count", "1", "--json", db=db).stdout)
    assert [s["error"] for s in third["samples"]] == ["kod_deny"]  # asked again after reset
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM ntp_samples WHERE offset_s IS NOT NULL").fetchone()[0] == 0


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["sample", "ntp", "no-such-host.invalid", "--count", "1"], 2, "cannot resolve no-such-host.invalid"),
    (["sample", "ntp", "127.0.0.1:70000"], 2, "not in 1-65535"),
    (["sample", "ntp", "127.0.0.1:abc"], 2, "not a number"),
    (["sample", "ntp", "[::1"], 2, "malformed"),
    (["sample", "ntp", "127.0.0.1", "--count", "0"], 2, "--count"),
    (["sample", "ntp", "127.0.0.1", "--timeout", "-1"], 2, "--timeout"),
    (["collect", "--config", "/nonexistent/timekit.toml"], 2, "does not exist"),
    (["lab", "status", "--dir", "/nonexistent/lab"], 2, "no lab running"),
])
def test_bad_input_one_line_nonzero(tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    proc = run_cli(*args, db=tmp_path / "t.db") if args[0] != "lab" else run_cli(*args)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    if args[:3] == ["sample", "ntp", "no-such-host.invalid"]:
        assert "cannot resolve" in proc.stderr and "Traceback" not in proc.stderr
    else:
        assert_one_clean_line(proc, needle)


@pytest.mark.parametrize(("content", "needle"), [
    ("[ntp\nservers = 1", "not valid TOML"),
    ("[ntp]\nservers = ['127.0.0.1:0']", "not in 1-65535"),
    ("[ntp]\ncount = 'many'", "wrong type"),
    ("[ntp]\nmin_poll_s = 1", "outside 15-86400 s"),
    ("[ntp]\nmin_poll_s = nan", "outside 15-86400 s"),
    ("[ntp]\ntimeout_s = inf", "out of range"),
    ("[nonsense]\nx = 1", "unknown section"),
    ("[ntp]\nservrs = []", "unknown key ntp.servrs"),
])
def test_malformed_config(tmp_path: Path, content: str, needle: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(content)
    proc = run_cli("collect", "--config", str(cfg), db=tmp_path / "t.db")
    assert proc.returncode == 2
    assert_one_clean_line(proc, needle)
    assert not (tmp_path / "t.db").exists()  # bad config: nothing written


def test_unreadable_config(tmp_path: Path) -> None:
    cfg = tmp_path / "dir.toml"
    cfg.mkdir()
    proc = run_cli("collect", "--config", str(cfg), db=tmp_path / "t.db")
    assert proc.returncode == 2
    assert_one_clean_line(proc, "cannot read config")


@pytest.mark.parametrize("content", [b"not a database at all", b"SQLite format 3\x00" + b"\x01" * 500])
def test_corrupt_db_one_line(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "t.db"
    db.write_bytes(content)
    proc = run_cli("sample", "clocks", "--duration", "0.1", db=db)
    assert proc.returncode == 1
    assert_one_clean_line(proc, str(db))
    assert db.read_bytes() == content


def write_config(tmp_path: Path, servers: list[str], **ntp: object) -> Path:
    cfg = tmp_path / "timekit.toml"
    extra = "".join(f"{k} = {v}\n" for k, v in ntp.items())
    cfg.write_text(f"[ntp]\nservers = {json.dumps(servers)}\ncount = 3\ninterval_s = 0.05\n{extra}"
                   "[clocks]\nduration_s = 0.2\nrate_hz = 20\n[pauses]\nduration_s = 0.2\ninterval_s = 0.1\n")
    return cfg


def test_collect_stores_and_respects_min_poll(lab: Lab, tmp_path: Path) -> None:  # T5
    servers = [lab.server("chrony-ahead").address, lab.server("chrony-near").address]
    cfg = write_config(tmp_path, servers)
    db = tmp_path / "t.db"
    first = run_cli("collect", "--config", str(cfg), "--json", db=db)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert len(doc["samples"]) == 6 and all(s["ok"] for s in doc["samples"])
    assert doc["clocks"]["n_samples"] >= 3
    second = json.loads(run_cli("collect", "--config", str(cfg), "--json", db=db).stdout)
    assert second["samples"] == [] and sorted(second["skipped"]) == sorted(servers)
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM ntp_samples").fetchone()[0] == 6
        assert c.execute("SELECT count(*) FROM clock_samples").fetchone()[0] >= 6
        assert c.execute("SELECT count(*) FROM pause_intervals").fetchone()[0] >= 1  # the pause meter ran


def test_overlapping_collect_exits_75_without_touching_db(lab: Lab, tmp_path: Path) -> None:  # S1
    cfg = write_config(tmp_path, [lab.server("chrony-ahead").address])
    db = tmp_path / "t.db"
    fd = os.open(str(db) + ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        proc = run_cli("collect", "--config", str(cfg), db=db)
    finally:
        os.close(fd)
    assert proc.returncode == 75
    assert_one_clean_line(proc, "another timekit run")
    assert not db.exists()
    assert run_cli("collect", "--config", str(cfg), db=db).returncode == 0  # lock gone with holder


def test_two_collects_at_once_both_land(lab: Lab, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [lab.server("chrony-behind").address])
    db = tmp_path / "t.db"
    cmd = [sys.executable, "-m", "timekit.cli", "collect", "--config", str(cfg), "--wait", "30",
           "--db", str(db)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    codes = [p.wait(60) for p in procs]
    for p in procs:
        assert p.stderr is not None
        p.stderr.close()
    assert codes == [0, 0]
    with sqlite3.connect(db) as c:
        # the second run waited for the lock, then skipped the server (queried < 64 s ago)
        assert c.execute("SELECT count(*) FROM ntp_samples").fetchone()[0] == 3
        assert c.execute("SELECT count(*) FROM runs WHERE status = 'ok'").fetchone()[0] >= 2
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_ctrl_c_keeps_what_was_collected(lab: Lab, tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    proc = subprocess.Popen([sys.executable, "-m", "timekit.cli", "sample", "ntp",
                             lab.server("chrony-near").address, "--count", "1000", "--interval", "0.05",
                             "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Ctrl-C once five samples are committed (however long start-up takes on this machine)
    seen = wait_for_count(db, "SELECT count(*) FROM ntp_samples WHERE ok = 1", 5, proc=proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    with sqlite3.connect(db) as c:
        n = c.execute("SELECT count(*) FROM ntp_samples WHERE ok = 1").fetchone()[0]
        status = c.execute("SELECT status FROM runs").fetchone()[0]
    assert seen <= n < 1000  # nothing committed before the signal was lost
    assert status == "interrupted"


def test_kill_9_mid_sweep_keeps_every_committed_batch(lab: Lab, tmp_path: Path) -> None:  # S2, S6
    """Attempts are committed in batches while the run goes on (not at its end): rows appear while it
    runs, `kill -9` keeps every row that was visible before it, each complete and with its server's
    state, and the file is intact."""
    db = tmp_path / "t.db"
    near = lab.server("chrony-near").address
    proc = subprocess.Popen([sys.executable, "-m", "timekit.cli", "sample", "ntp", near, "--count", "1000",
                             "--interval", "0.02", "--db", str(db)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    sql = "SELECT count(*) FROM ntp_samples"
    first = wait_for_count(db, sql, 3, proc=proc)
    later = wait_for_count(db, sql, first + 3, proc=proc)  # a second batch, committed during the run
    proc.kill()
    proc.wait(10)
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n = c.execute(sql).fetchone()[0]
        incomplete = c.execute("SELECT count(*) FROM ntp_samples WHERE ok = 1 AND (offset_s IS NULL OR "
                               "delay_s IS NULL OR t1_ns IS NULL OR t4_ns IS NULL)").fetchone()[0]
        state = c.execute("SELECT last_query_ns FROM server_state WHERE server = ?", (near,)).fetchone()
        newest = c.execute("SELECT max(t_local_ns) FROM ntp_samples").fetchone()[0]
    assert later <= n < 1000 and incomplete == 0  # nothing committed was lost, nothing half-written
    assert state is not None and state[0] >= newest  # the state landed with (at least) its newest sample


def test_sample_clocks_json(tmp_path: Path) -> None:
    proc = run_cli("sample", "clocks", "--duration", "0.3", "--rate", "20", "--json", db=tmp_path / "t.db")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["clocks"]["n_samples"] == 7  # 0.3 s × 20 Hz + 1
    expected, tolerance = host_slew_bound_ppm()  # what this host's kernel corrects, plus the brackets'
    slack = 2 * doc["clocks"]["max_bracket_ns"] / (doc["clocks"]["span_s"] * 1e9) * 1e6 + 1
    assert doc["clocks"]["steps"] == [] and abs(doc["clocks"]["slew_ppm"] - expected) <= tolerance + slack
    assert doc["kernel"] is None or isinstance(doc["kernel"]["unsynchronized"], bool)
    assert all(v > 0 for v in doc["read_cost_ns"].values())
    with sqlite3.connect(tmp_path / "t.db") as c:  # the one kernel read sits on the last row only
        rows = c.execute("SELECT kernel_state FROM clock_samples ORDER BY id").fetchall()
    assert len(rows) == 7
    assert [r[0] for r in rows[:-1]] == [None] * 6
    assert rows[-1][0] == (doc["kernel"]["state"] if doc["kernel"] else None)


def test_lab_status_reports_truth(lab: Lab) -> None:
    srv = lab.server("chrony-ahead")
    t0 = time.clock_gettime_ns(time.CLOCK_REALTIME)
    proc = run_cli("lab", "status", "--dir", str(lab.directory), "--json")
    t1 = time.clock_gettime_ns(time.CLOCK_REALTIME)
    doc = json.loads(proc.stdout)
    ahead = next(s for s in doc["servers"] if s["name"] == "chrony-ahead")
    assert ahead["alive"] and ahead["server_drift_ppm"] == 100.0
    # the truth "now" is the line at an instant inside the command's run (+100 ppm: it only rises)
    assert srv.true_offset_at(t0) <= ahead["true_offset_now_s"] <= srv.true_offset_at(t1)


def test_help_lists_commands() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("sample", "collect", "lab", "servers"):
        assert cmd in proc.stdout


def test_corrupt_page_gives_one_line(tmp_path: Path, lab: Lab) -> None:  # S9: not just the header
    db = tmp_path / "t.db"
    assert run_cli("sample", "ntp", lab.server("chrony-near").address, "--count", "50",
                   "--interval", "0", db=db).returncode == 0
    page = 4096
    with open(db, "r+b") as fh:  # garbage over the third page (a table b-tree page)
        fh.seek(2 * page)
        fh.write(b"\xa5" * page)
    before = db.read_bytes()
    for args in (["servers", "list"], ["sample", "ntp", lab.server("chrony-near").address, "--count", "1"]):
        proc = run_cli(*args, db=db)
        assert proc.returncode == 1
        assert_one_clean_line(proc, "corrupt")
    assert db.read_bytes() == before  # refused to write


def test_lab_stop_never_kills_a_recycled_pid(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "lab.json").write_text(json.dumps({"servers": [
            {"name": "x", "address": "127.0.0.1:1", "kind": "chrony", "pid": bystander.pid}]}))
        assert run_cli("lab", "stop", "--dir", str(tmp_path)).returncode == 0
        time.sleep(0.2)
        assert bystander.poll() is None  # still running: not one of ours
    finally:
        bystander.kill()
        bystander.wait()


def test_lab_start_unwritable_dir_one_line() -> None:
    proc = run_cli("lab", "start", "--dir", "/etc/passwd/lab")
    assert proc.returncode == 2
    assert_one_clean_line(proc, "cannot create lab directory")


def test_collect_start_jitter_spreads_a_fleet(tmp_path: Path) -> None:  # S15
    """Runs started at the same instant sleep a different random delay within the configured bound."""
    cfg = tmp_path / "j.toml"
    cfg.write_text("[run]\nstart_jitter_s = 1.0\n[clocks]\nenabled = false\n[pauses]\nenabled = false\n")
    delays = []
    for i in range(3):
        t0 = time.monotonic()
        doc = json.loads(run_cli("collect", "--config", str(cfg), "--json", db=tmp_path / f"{i}.db").stdout)
        delays.append(doc["start_delay_s"])
        assert time.monotonic() - t0 >= doc["start_delay_s"]  # it really slept that long first
    assert all(0.0 <= d <= 1.0 for d in delays) and len(set(delays)) == 3
    cfg.write_text("[run]\nstart_jitter_s = -1\n")
    bad = run_cli("collect", "--config", str(cfg), db=tmp_path / "x.db")
    assert bad.returncode == 2 and "start_jitter_s" in bad.stderr


def test_a_typo_is_never_stored_and_a_server_can_be_forgotten(lab: Lab, tmp_path: Path) -> None:
    """`sample ntp` with a name that does not exist exits 2 and stores nothing about it (the good
    server in the same run is stored); `servers forget` deletes a server's samples and state, and
    `check` then judges only the rest."""
    db = tmp_path / "f.db"
    near, ahead = lab.server("chrony-near").address, lab.server("chrony-ahead").address
    proc = run_cli("sample", "ntp", near, "nosuchhost.invalid", "--count", "2", "--interval", "0", db=db)
    assert proc.returncode == 2 and "cannot resolve nosuchhost.invalid" in proc.stderr
    with sqlite3.connect(db) as c:
        servers = {r[0] for t in ("ntp_samples", "server_state")
                   for r in c.execute(f"SELECT server FROM {t}")}
    assert servers == {near}
    assert run_cli("sample", "ntp", ahead, "--count", "2", "--interval", "0", db=db).returncode == 0
    doc = json.loads(run_cli("check", "--json", db=db).stdout)
    assert {s["server"] for s in doc["servers"]} == {near, ahead}
    proc = run_cli("servers", "forget", ahead, "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["forgotten"][ahead]["ntp_samples"] == 2
    doc = json.loads(run_cli("check", "--json", db=db).stdout)
    assert {s["server"] for s in doc["servers"]} == {near}
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM ntp_samples WHERE server = ?", (near,)).fetchone() == (2,)
        assert c.execute("SELECT count(*) FROM server_state WHERE server = ?", (ahead,)).fetchone() == (0,)
    proc = run_cli("servers", "forget", "never.seen.example:123", db=db)
    assert proc.returncode == 0 and proc.stdout == "never.seen.example:123: nothing stored\n"
    proc = run_cli("servers", "forget", near, db=tmp_path / "typo.db")
    assert proc.returncode == 1 and "no database at" in proc.stderr and not (tmp_path / "typo.db").exists()


def test_collect_is_quiet_when_asked_and_shows_pauses_otherwise(lab: Lab, tmp_path: Path) -> None:
    """The cron line's `--quiet` prints nothing on a good run (cron mails what a job prints); without
    it the run shows what the pause meter measured and the skew check it committed."""
    servers = [lab.server("chrony-near").address]
    cfg = write_config(tmp_path, servers, min_poll_s=15)
    db = tmp_path / "q.db"
    quiet = run_cli("collect", "--config", str(cfg), "--quiet", db=db)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM ntp_samples WHERE ok = 1").fetchone()[0] == 3
        worst = c.execute("SELECT max(max_s) FROM pause_intervals").fetchone()[0]
    assert worst is not None
    loud = run_cli("collect", "--config", str(tmp_path / "timekit.toml"), db=tmp_path / "l.db")
    assert loud.returncode == 0, loud.stderr
    lines = loud.stdout.splitlines()
    assert any(line.startswith("pauses over ") and ": worst " in line for line in lines), loud.stdout
    assert any(line.startswith("skew check: ") for line in lines), loud.stdout


def test_lab_servers_by_name_wherever_a_server_is_accepted(lab: Lab, tmp_path: Path) -> None:
    """`lab:NAME` is the running lab's server: sample, check -H and analyze --server take it, the
    samples are stored under its address; a name the lab does not have is one line, exit 2."""
    env = {**os.environ, "TIMEKIT_LAB_DIR": str(lab.directory)}
    near = lab.server("chrony-near")
    db = tmp_path / "n.db"
    proc = run_cli("sample", "ntp", "lab:chrony-near", "--count", "2", "--interval", "0", "--json", db=db,
                   env=env)
    assert proc.returncode == 0, proc.stderr
    assert {s["server"] for s in json.loads(proc.stdout)["samples"]} == {near.address}
    proc = run_cli("check", "-H", "lab:chrony-near", "--json", db=db, env=env)
    assert [s["server"] for s in json.loads(proc.stdout)["servers"]] == [near.address]
    proc = run_cli("analyze", "timeout", "--server", "lab:chrony-near", "--json", db=db, env=env)
    assert [r["server"] for r in json.loads(proc.stdout)["results"]] == [near.address]
    proc = run_cli("sample", "ntp", "lab:no-such", db=db, env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "lab:no-such: no such lab server (the lab has: " in proc.stderr and "chrony-near" in proc.stderr


def test_daemon_takes_its_servers_from_the_config_and_publishes(lab: Lab, tmp_path: Path) -> None:
    """`timekit daemon --config` (the daemon unit's command line): one query per server per round,
    and after each round a clock state whose interval contains the server's truth."""
    near = lab.server("chrony-near")
    cfg = write_config(tmp_path, [near.address])
    db = tmp_path / "d.db"
    proc = run_cli("daemon", "--config", str(cfg), "--rounds", "3", "--interval", "0.1", db=db)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("state published") == 3
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM ntp_samples WHERE ok = 1").fetchone() == (3,)
    from timekit.clock.intervalclock import IntervalClock

    clock = IntervalClock(db=db)
    try:
        got = clock.now()
    finally:
        clock.close()
    truth_ns = time.time_ns() + round(near.true_offset_at(time.time_ns()) * 1e9)
    assert got.status == "synchronized"
    assert got.earliest_ns <= truth_ns and truth_ns - 1_000_000 <= got.latest_ns  # read ≤ 1 ms before
    proc = run_cli("daemon", db=db)
    assert proc.returncode == 2 and "name the servers, or give a --config" in proc.stderr


def test_collect_with_a_typo_in_its_config_says_so_and_stores_only_the_rest(lab: Lab, tmp_path: Path) -> None:
    """Under cron (--quiet) a server name that does not exist is the one thing printed, exit 2 (cron
    mails it); the other servers are measured and stored, the typo never is."""
    near = lab.server("chrony-near").address
    cfg = write_config(tmp_path, [near, "tmie.example.invalid"])
    db = tmp_path / "c.db"
    proc = run_cli("collect", "--config", str(cfg), "--quiet", db=db)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"timekit: cannot resolve tmie.example.invalid: unknown host (fix {cfg})\n"
    with sqlite3.connect(db) as c:
        stored = {r[0] for t in ("ntp_samples", "server_state") for r in c.execute(f"SELECT server FROM {t}")}
    assert stored == {near}
