"""Readers that are not the writer: the NRPE / Prometheus / cron-mail set-up, where `collect` runs as
one user and `check`, `now`, `analyze`, `export`, `report`, the exporter and `IntervalClock` run as
another, with read access only. Run for real: the commands run as uid 65534 (nobody) via setpriv.
"""

from __future__ import annotations

import grp
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LAB_SLACK_S, run_cli
from timekit.lab.manager import Lab

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root and setpriv to run commands as another uid")


READERS_GID: list[int] = []  # the store's group, which the reader is in (the fixture creates it)


def as_nobody(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python ARGV` as uid/gid 65534 with only the store's group as a supplementary group, from /."""
    groups = [f"--groups={READERS_GID[0]}"] if READERS_GID else ["--clear-groups"]
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", *groups, sys.executable, *argv]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/", env=env)


def cli_as_nobody(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return as_nobody("-m", "timekit.cli", *args, timeout=timeout)


@pytest.fixture(scope="module")
def shared(lab: Lab) -> Iterator[tuple[Path, Path]]:
    """A store written by root in a directory others may enter but not write (2755, the group of
    its own; the store's files 0640), with samples of the lab's chrony-near and its published
    clock state; and a directory nobody may write its outputs to. Readers run in that group."""
    top = Path(tempfile.mkdtemp(prefix="timekit-readers-", dir="/var/tmp"))
    group = "tkr" + secrets.token_hex(4)
    try:
        top.chmod(0o755)
        subprocess.run(["groupadd", "--system", group], check=True, timeout=30)
        READERS_GID[:] = [grp.getgrnam(group).gr_gid]
        store_dir, out_dir = top / "store", top / "out"
        store_dir.mkdir()
        os.chown(store_dir, 0, READERS_GID[0])
        store_dir.chmod(0o2755)
        out_dir.mkdir()
        out_dir.chmod(0o1777)
        db = store_dir / "timekit.db"
        near = lab.server("chrony-near").address
        old = os.umask(0o022)
        try:
            assert run_cli("sample", "ntp", near, "--count", "8", "--interval", "0.05", db=db).returncode == 0
            assert run_cli("now", "--server", near, db=db).returncode in (0, 1)  # publishes <db>.clock
        finally:
            os.umask(old)
        assert db.stat().st_mode & 0o777 == 0o640 and db.stat().st_gid == READERS_GID[0]
        yield db, out_dir
    finally:
        READERS_GID.clear()
        subprocess.run(["groupdel", group], timeout=30, check=False)
        shutil.rmtree(top, ignore_errors=True)


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir()}


@pytest.mark.parametrize("writer_open", [False, True], ids=["writer-idle", "writer-holds-the-store"])
def test_every_reader_works_as_another_user(lab: Lab, shared: tuple[Path, Path], writer_open: bool) -> None:
    """check, now, analyze, export, report and servers list read the store as nobody: right answers,
    no 'corrupt' or 'readonly' message, and nothing next to the store created or changed. With the
    writer idle there is no -wal (the reader opens the main file alone); with a writer holding the
    store open the reader uses the writer's -wal/-shm read-only."""
    db, out = shared
    near = lab.server("chrony-near")
    holder = sqlite3.connect(db) if writer_open else None
    try:
        if holder is not None:
            holder.execute("SELECT count(*) FROM ntp_samples").fetchone()
            assert Path(str(db) + "-wal").exists()
        before = _snapshot(db.parent)

        proc = cli_as_nobody("check", "--json", "--max-age", "1h", "--db", str(db))
        doc = json.loads(proc.stdout)
        assert proc.stderr == "" and doc["mode"] == "store", proc.stderr
        assert doc["status"] in ("ok", "warning"), doc["summary"]
        true_offset = near.true_offset_at(time.time_ns())
        delay = max(s["delay_s"] for s in doc["servers"])
        assert abs(doc["metrics"]["offset_s"] - true_offset) <= delay / 2 + LAB_SLACK_S + 0.005

        proc = cli_as_nobody("now", "--json", "--db", str(db))
        now = json.loads(proc.stdout)
        assert now["earliest_ns"] is not None, now
        truth_ns = now["as_of_ns"] + round(near.true_offset_at(now["as_of_ns"]) * 1e9)
        assert now["earliest_ns"] <= truth_ns <= now["latest_ns"]

        for argv in (["analyze", "drift", "--json"], ["analyze", "timeout", "--json"],
                     ["analyze", "skew", "--json"], ["servers", "list", "--json"]):
            proc = cli_as_nobody(*argv, "--db", str(db))
            assert proc.returncode == 0 and proc.stderr == "", (argv, proc.stderr)
            json.loads(proc.stdout)

        csv = out / f"n-{writer_open}.csv"
        proc = cli_as_nobody("export", "csv", "--out", str(csv), "--db", str(db))
        assert proc.returncode == 0, proc.stderr
        assert len(csv.read_text().splitlines()) == 1 + 8  # the header and the 8 attempts
        prom = out / f"n-{writer_open}.prom"
        proc = cli_as_nobody("export", "prometheus", "--out", str(prom), "--db", str(db))
        assert proc.returncode == 0, proc.stderr
        assert "timekit_store_up 1" in prom.read_text()
        report = out / f"r-{writer_open}"
        proc = cli_as_nobody("report", "--out", str(report), "--db", str(db), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "chrony-near" in (report / "summary.md").read_text() or near.address in (
            report / "summary.md").read_text()

        assert _snapshot(db.parent) == before  # a reader created and changed nothing
    finally:
        if holder is not None:
            holder.close()


def test_exporter_and_interval_clock_as_another_user(lab: Lab, shared: tuple[Path, Path]) -> None:
    """The Prometheus exporter (run as its own user) scrapes the store; `IntervalClock` in another
    user's process reads the published clock state and its interval contains the truth."""
    db, _ = shared
    near = lab.server("chrony-near")
    exporter = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                                 f"--groups={READERS_GID[0]}",
                                 sys.executable, "-m", "timekit.cli", "exporter", "--port", "0", "--json",
                                 "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd="/", env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    try:
        assert exporter.stdout is not None
        url = json.loads(exporter.stdout.readline())["url"]
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = resp.read().decode()
        assert "timekit_store_up 1" in body
        assert f'server="{near.address}"' in body
    finally:
        exporter.terminate()
        exporter.communicate(timeout=30)
    code = ("import json, time; from timekit.clock.intervalclock import IntervalClock\n"
            f"c = IntervalClock(db={str(db)!r}); r = c.now()\n"
            "print(json.dumps({'e': r.earliest_ns, 'l': r.latest_ns, 'status': r.status, "
            "'t': time.time_ns()}))")
    proc = as_nobody("-c", code)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["status"] != "unknown", got
    truth_ns = got["t"] + round(near.true_offset_at(got["t"]) * 1e9)
    assert got["e"] <= truth_ns + 1_000_000 and truth_ns - 1_000_000 <= got["l"]  # read ≤ 1 ms before t
    assert (db.parent / (db.name + ".clock")).stat().st_mode & 0o777 == 0o644
