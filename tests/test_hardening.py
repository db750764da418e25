"""Hardening (issue 11): nothing timekit writes can be turned against its host. Each test injects
the reproduced attack or bad value and asserts the behaviour: one line, a non-zero exit, and the
target left exactly as it was."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from timekit.lab.manager import Lab

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="device nodes and other users' links need root")


@pytest.fixture(scope="module")
def store(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("harden") / "h.db"
    proc = run_cli("sample", "ntp", lab.server("chrony-near").address, "--count", "3", "--interval", "0",
                   db=db)
    assert proc.returncode == 0, proc.stderr
    return db


def one_line_refusal(proc: subprocess.CompletedProcess, words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr


def _exports(target: Path) -> Iterator[list[str]]:
    yield ["export", "csv", "--out", str(target)]
    yield ["export", "prometheus", "--out", str(target)]


@ROOT_ONLY
@pytest.mark.parametrize("major, minor, name", [(1, 3, "null"), (1, 7, "full")])
def test_a_device_node_is_never_replaced(store: Path, tmp_path: Path, major: int, minor: int,
                                        name: str) -> None:
    """As root `--out /dev/full` once became a 1 MB CSV: a copy of /dev/null and /dev/full (the
    same device numbers, made here) stays a character device, untouched."""
    dev = tmp_path / name
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    for argv in _exports(dev):
        one_line_refusal(run_cli(*argv, db=store), f"--out {dev} is a character device, not a regular file")
        st = os.lstat(dev)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(major, minor)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp file left either


def test_a_fifo_or_socket_is_refused_without_blocking(store: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(sock_path))
        for target, kind in ((fifo, "a FIFO"), (sock_path, "a socket")):
            for argv in _exports(target):
                one_line_refusal(run_cli(*argv, db=store, timeout=30), f"is {kind}, not a regular file")
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISSOCK(os.lstat(sock_path).st_mode)


def test_a_symlink_to_stdout_is_refused(store: Path, tmp_path: Path) -> None:
    link = tmp_path / "out.csv"
    link.symlink_to("/proc/self/fd/1")
    one_line_refusal(run_cli("export", "csv", "--out", str(link), db=store), "points to a FIFO")
    assert os.readlink(link) == "/proc/self/fd/1"


@ROOT_ONLY
def test_symlinks_are_followed_only_when_they_are_yours(store: Path, tmp_path: Path) -> None:
    """Documented rule: a link that belongs to the user (or root) is followed and the regular file it
    names is replaced, the link stays; a link another user planted is refused."""
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    mine = tmp_path / "mine.csv"
    mine.symlink_to(real)
    assert run_cli("export", "csv", "--out", str(mine), db=store).returncode == 0
    header = run_cli("export", "csv", "--out", "-", db=store).stdout.splitlines()[0]
    assert mine.is_symlink() and os.readlink(mine) == str(real)
    assert real.read_text().splitlines()[0] == header and len(real.read_text().splitlines()) == 1 + 3
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    planted = tmp_path / "planted.csv"
    planted.symlink_to(victim)
    os.lchown(planted, 65534, 65534)
    for argv in _exports(planted):
        one_line_refusal(run_cli(*argv, db=store), "is a symlink owned by uid 65534, not by you or root")
    assert victim.read_text() == "precious\n" and planted.is_symlink()


def test_out_dash_is_stdout(store: Path) -> None:
    proc = run_cli("export", "csv", "--out", "-", db=store)
    assert proc.returncode == 0 and proc.stdout.splitlines()[0].startswith(("t_local_ns", "server", "run_id"))
    assert len(proc.stdout.splitlines()) == 1 + 3 and proc.stderr == "wrote 3 ntp rows to stdout\n"
    proc = run_cli("export", "prometheus", "--out", "-", db=store)
    assert proc.returncode == 0 and "timekit_store_up 1" in proc.stdout
    one_line_refusal(run_cli("export", "csv", "--out", "-", "--json", db=store), "both write to stdout")


def test_report_never_replaces_a_non_regular_entry(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    os.mkfifo(out / "summary.md")
    one_line_refusal(run_cli("report", "--out", str(out), db=store, timeout=120),
                     "summary.md there is not a regular file")
    assert stat.S_ISFIFO(os.lstat(out / "summary.md").st_mode)
    assert sorted(p.name for p in out.iterdir()) == ["summary.md"]  # nothing published, staging removed


# ----------------------------------------------------------------------------- files beside the store
def test_a_planted_lock_symlink_is_not_followed(lab: Lab, tmp_path: Path) -> None:
    """A collect as root once truncated a planted `<db>.lock` symlink's target and wrote its pid there."""
    db = tmp_path / "t.db"
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    Path(str(db) + ".lock").symlink_to(victim)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[ntp]\nservers = ["{lab.server("chrony-near").address}"]\ncount = 1\n'
                   "[clocks]\nenabled = false\n[pauses]\nenabled = false\n")
    proc = run_cli("collect", "--config", str(cfg), db=db)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"lock file {db}.lock is a symlink: refusing to follow it" in proc.stderr
    assert victim.read_text() == "precious\n"


def test_a_planted_clock_file_neither_hangs_nor_is_followed(lab: Lab, tmp_path: Path) -> None:
    """A FIFO as `<db>.clock` once hung `IntervalClock()` forever; a symlink there must not be
    written through. Both are left alone; the samples are still stored; one warning line."""
    near = lab.server("chrony-near").address
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    for name, plant in (("fifo", os.mkfifo), ("link", lambda p: Path(p).symlink_to(victim))):
        db = tmp_path / f"{name}.db"
        clock = Path(str(db) + ".clock")
        plant(clock)
        proc = run_cli("sample", "ntp", near, "--count", "2", "--interval", "0", "--json", db=db, timeout=30)
        assert proc.returncode == 0
        assert proc.stderr.startswith("timekit: warning: clock state not published: clock state file ")
        assert proc.stderr.count("\n") == 1 and ("is a FIFO" in proc.stderr or "is a symlink" in proc.stderr)
        code = ("from timekit.clock.intervalclock import IntervalClock\n"
                f"c = IntervalClock(db={str(db)!r}); print(c.source, c.now().status)")
        reader = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert reader.returncode == 0 and reader.stdout.split()[0] == "store", reader.stdout + reader.stderr
        assert (stat.S_ISFIFO(os.lstat(clock).st_mode) if name == "fifo" else clock.is_symlink())
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("how", ["other-owner", "group-writable", "symlink"])
def test_the_lab_refuses_a_directory_it_does_not_own_privately(tmp_path: Path, how: str) -> None:
    """`/tmp/timekit-lab-UID` made first by someone else once got root's chronyd config written
    through a planted symlink: a directory not owned by the user, writable by others, or a symlink
    is refused (ssh's rule), and nothing is written into it."""
    target = tmp_path / "lab"
    if how == "symlink":
        real = tmp_path / "real"
        real.mkdir(mode=0o700)
        target.symlink_to(real)
    else:
        target.mkdir(mode=0o700)
        if how == "group-writable":
            target.chmod(0o770)
        elif os.geteuid() == 0:
            os.chown(target, 65534, 65534)
        else:
            pytest.skip("needs root to make a directory another user owns")
    proc = run_cli("lab", "start", "--dir", str(target), timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "refusing it" in proc.stderr
    assert list((real if how == "symlink" else target).iterdir()) == []


def test_the_lab_creates_its_directory_privately(tmp_path: Path) -> None:
    from timekit.lab.manager import private_dir

    target = tmp_path / "new" / "lab"
    old = os.umask(0)
    try:
        private_dir(target)
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o700


# ----------------------------------------------------------------------------- numbers and names
@pytest.mark.parametrize("argv, words", [
    (["sample", "ntp", "127.0.0.1:9", "--interval", "inf"], "'inf' is not a valid float"),
    (["sample", "ntp", "127.0.0.1:9", "--timeout", "nan"], "'nan' is not a valid float"),
    (["sample", "pauses", "--interval", "nan"], "'nan' is not a valid float"),
    (["daemon", "127.0.0.1:9", "--interval", "1e308"], "1e+308 is not in the range"),
    (["now", "--max-drift-ppm", "-inf"], "'-inf' is not a valid float"),
    (["collect", "--config", "/dev/null", "--wait", "1e400"], "is not a valid float"),
    (["sample", "ntp", "127.0.0.1:²"], "'²' is not a number"),
    (["sample", "ntp", "127.0.0.1:١٢٣"], "is not a number"),
    (["sample", "ntp", "127.0.0.1:１２３"], "is not a number"),
    (["sample", "ntp", "[fe80::1%eth0 x]:123"], "bad IPv6 zone id"),
    (["sample", "ntp", "fe80::1%a\nb"], "bad IPv6 zone id"),
    (["sample", "ntp", "[fe80::1%eth0\n]:123"], "bad IPv6 zone id"),  # `$` once let this newline in
    (["sample", "ntp", "fe80::1%a\x00b"], "bad IPv6 zone id"),
    (["sample", "ntp", "0.0.0.0"], "is the unspecified address, not a server"),
    (["sample", "ntp", "255.255.255.255"], "is the broadcast address, not a server"),
    (["sample", "ntp", "[::]"], "is the unspecified address, not a server"),
    (["sample", "ntp", "224.0.1.1"], "is a multicast address, not a server"),
])
def test_bad_numbers_and_names_are_one_line_and_store_nothing(tmp_path: Path, argv: list[str],
                                                              words: str) -> None:
    db = tmp_path / "n.db"
    if "\x00" in "".join(argv):  # argv cannot carry NUL: the parser itself must refuse it
        from timekit.address import parse_server
        from timekit.errors import UsageError

        with pytest.raises(UsageError, match="bad IPv6 zone id"):
            parse_server(argv[-1])
        return
    proc = run_cli(*argv, db=db, timeout=30)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
    assert not db.exists() or db.stat().st_size == 0 or _no_samples(db)


def _no_samples(db: Path) -> bool:
    import sqlite3

    with sqlite3.connect(db) as c:
        return c.execute("SELECT count(*) FROM ntp_samples").fetchone()[0] == 0


# ----------------------------------------------------------------------------- external commands and inputs
@pytest.fixture(scope="module")
def skew_store(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three chronyd servers within 0.5 s of each other and the falseticker 2.5 s off."""
    db = tmp_path_factory.mktemp("hooks") / "s.db"
    names = ("chrony-ahead", "chrony-behind", "chrony-near", "falseticker")
    proc = run_cli("sample", "ntp", *(lab.server(n).address for n in names), "--count", "3", "--interval",
                   "0.05", db=db)
    assert proc.returncode == 0, proc.stderr
    return db


def test_a_hook_that_does_not_parse_is_one_line(skew_store: Path) -> None:
    proc = run_cli("analyze", "skew", "--commit", "--hook", '"', db=skew_store)
    one_line_refusal(proc, "the hook command '\"' does not parse")


def test_a_hook_runs_in_its_own_session_and_is_not_waited_for_in_the_background(lab: Lab, skew_store: Path,
                                                                                tmp_path: Path) -> None:
    """The hook gets the transition in its environment; a background process it starts is not waited
    for (it once held the check 25 s): the check has returned while that process still runs. A hook
    that fails is one warning line with its first stderr line."""
    db = tmp_path / "s.db"
    db.write_bytes(skew_store.read_bytes())
    seen, pidfile = tmp_path / "seen", tmp_path / "bg.pid"
    hook = (f"sh -c 'echo \"$TIMEKIT_NODE $TIMEKIT_FROM_STATUS $TIMEKIT_TO_STATUS\" >> {seen}; "
            f"sleep 30 & echo $! > {pidfile}'")
    proc = run_cli("analyze", "skew", "--commit", "--enter-after", "1", "--hook", hook, "--json", db=db,
                   timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    bg = int(pidfile.read_text())
    try:
        os.kill(bg, 0)  # still running: the check did not wait for it
    finally:
        os.kill(bg, 9)
    liar = lab.server("falseticker").address
    assert f"{liar} ok quarantined" in seen.read_text().splitlines()
    failing = "sh -c 'echo \"no pager configured\" >&2; exit 3'"
    db.write_bytes(skew_store.read_bytes())
    proc = run_cli("analyze", "skew", "--commit", "--enter-after", "1", "--hook", failing, db=db, timeout=60)
    assert proc.returncode == 0
    assert f"timekit: hook for {liar} exited 3: no pager configured\n" in proc.stderr


@pytest.mark.parametrize("make, words", [
    (lambda p: os.mkfifo(p), "is not a regular file (a device, FIFO or socket)"),
    (lambda p: p.symlink_to("/dev/zero"), "is not a regular file (a device, FIFO or socket)"),
    (lambda p: p.write_bytes(b"#" * (2 << 20)), "is larger than 1024 KiB"),
])
def test_a_config_that_is_not_a_small_regular_file_is_refused(tmp_path: Path, make: object,
                                                              words: str) -> None:
    """`collect --config /dev/zero` once read until memory ran out, a FIFO config blocked forever."""
    cfg = tmp_path / "timekit.toml"
    make(cfg)  # type: ignore[operator]
    for argv in (["collect", "--config", str(cfg)], ["now", "--config", str(cfg)]):
        proc = run_cli(*argv, db=tmp_path / "c.db", timeout=30)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------- the store stays bounded
def test_the_wal_returns_to_its_limit_once_a_long_reader_ends(lab: Lab, tmp_path: Path) -> None:
    """FAULTS S13: with a reader holding a transaction, runs of `sample ntp A B --count 1500
    --interval 0` once grew the WAL to 203 MB. The WAL cannot be reset under that reader (each run
    says so in one line when it is over the limit); once the reader ends, the next run's checkpoint
    truncates it."""
    import sqlite3

    from timekit.store.database import JOURNAL_LIMIT_BYTES

    db = tmp_path / "w.db"
    a, b = lab.server("chrony-near").address, lab.server("chrony-ahead").address
    argv = ["sample", "ntp", a, b, "--count", "1500", "--interval", "0", "--timeout", "0.5"]
    assert run_cli(*argv, db=db, timeout=120).returncode == 0
    wal = Path(str(db) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # the run's end checkpointed and truncated it
    reader = sqlite3.connect(db)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM ntp_samples").fetchone()  # a snapshot held open
        warned = []
        for _ in range(3):
            proc = run_cli(*argv, db=db, timeout=120)
            assert proc.returncode == 0, proc.stderr
            warned.append("could not be checkpointed" in proc.stderr)
        grown = wal.stat().st_size
        assert grown > 0
        from tests.conftest import record_figure

        record_figure("store", f"WAL under a held reader after 3 runs of 2x1500: {grown / 2**20:.1f} MB "
                      f"(warned: {warned}); after the reader ended: truncated")
        assert warned[-1] == (grown > JOURNAL_LIMIT_BYTES)  # a warning exactly when it is over the limit
    finally:
        reader.close()
    proc = run_cli("sample", "ntp", a, "--count", "1", db=db, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    assert not wal.exists() or wal.stat().st_size == 0  # truncated (or removed with the last connection)
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM ntp_samples").fetchone()[0] == 4 * 3000 + 1


def test_a_run_killed_with_9_is_marked_interrupted_by_the_next(lab: Lab, tmp_path: Path) -> None:
    import signal
    import sqlite3

    from tests.conftest import wait_for_count

    db = tmp_path / "k.db"
    silent = lab.server("silent").address
    proc = subprocess.Popen([sys.executable, "-m", "timekit.cli", "sample", "ntp", silent, "--count", "50",
                             "--interval", "0.1", "--timeout", "0.2", "--db", str(db)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_count(db, "SELECT count(*) FROM runs WHERE status = 'running'", 1, proc=proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT status FROM runs").fetchall() == [("running",)]
    assert run_cli("sample", "ntp", lab.server("chrony-near").address, "--count", "1", db=db).returncode == 0
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT status FROM runs ORDER BY id").fetchall() == [("interrupted",), ("ok",)]


def test_retention_deletes_old_rows_in_bounded_batches(lab: Lab, tmp_path: Path) -> None:
    """`[store] keep_days`: collect deletes what is older, in batches (a writer never holds the store
    long); every newer row stays, and a server's newest-sample row goes with its last sample."""
    import sqlite3

    from timekit.store.database import Store

    near, ahead = lab.server("chrony-near").address, lab.server("chrony-ahead").address
    db = tmp_path / "r.db"
    assert run_cli("sample", "ntp", near, ahead, "--count", "20", "--interval", "0", db=db).returncode == 0
    day_ns = 86_400 * 10**9
    with sqlite3.connect(db) as c:  # age near's oldest 10 samples and all of ahead's by 100 days
        ids = [r[0] for r in c.execute("SELECT id FROM ntp_samples WHERE server = ? ORDER BY id", (near,))]
        c.executemany("UPDATE ntp_samples SET t_local_ns = t_local_ns - ? WHERE id = ?",
                      [(100 * day_ns, i) for i in ids[:10]])
        c.execute("UPDATE ntp_samples SET t_local_ns = t_local_ns - ? WHERE server = ?",
                  (100 * day_ns, ahead))
        c.execute("UPDATE runs SET started_ns = started_ns - ?", (100 * day_ns,))
        kept = [(i,) for i in ids[10:]]
    with Store.open(db) as st:
        deleted = st.delete_older_than(st_now() - 30 * day_ns, batch_rows=7)
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT id FROM ntp_samples ORDER BY id").fetchall() == kept
        assert c.execute("SELECT server FROM newest_ok").fetchall() == [(near,)]
        assert c.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    assert deleted == 20 + 10 + 1  # ahead's 20, near's 10 aged samples, the aged run
    cfg = tmp_path / "keep.toml"
    behind = lab.server("chrony-behind").address  # not queried yet: due
    cfg.write_text(f'[ntp]\nservers = ["{behind}"]\ncount = 1\nmin_poll_s = 15\n[clocks]\nenabled = false\n'
                   "[pauses]\nenabled = false\n[store]\nkeep_days = 30\n")
    with sqlite3.connect(db) as c:
        c.execute("UPDATE ntp_samples SET t_local_ns = t_local_ns - ?", (40 * day_ns,))
    proc = run_cli("collect", "--config", str(cfg), "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["deleted"] == 10
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM ntp_samples").fetchone()[0] == 1  # this run's one


def st_now() -> int:
    import time

    return time.clock_gettime_ns(time.CLOCK_REALTIME)


def test_checkpoint_warns_while_a_reader_holds_the_wal_above_its_limit(
        lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warning path, with the limit lowered to 64 KiB so a few commits exceed it: one line while
    a reader's snapshot pins the WAL; none, and an empty WAL, once the reader has ended."""
    import sqlite3

    from timekit.store import database
    from timekit.store.database import Store

    monkeypatch.setattr(database, "JOURNAL_LIMIT_BYTES", 64 << 10)
    db = tmp_path / "c.db"
    assert run_cli("sample", "ntp", lab.server("chrony-near").address, "--count", "2", "--interval", "0",
                   db=db).returncode == 0
    wal = Path(str(db) + "-wal")
    with Store.open(db) as st:
        reader = sqlite3.connect(db)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM ntp_samples").fetchone()
        try:
            for i in range(200):  # 200 commits of a page or more each
                with st.write() as c:
                    c.execute("INSERT INTO runs(command, started_ns, status) VALUES (?, ?, 'ok')",
                              ("x" * 3000, i))
            warning = st.checkpoint()
            assert wal.stat().st_size > 64 << 10
            assert warning is not None and "another process holds a read transaction" in warning
        finally:
            reader.close()
        assert st.checkpoint() is None
        assert wal.stat().st_size == 0


# ----------------------------------------------------------------------------- the exporter
def _start_exporter(db: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "timekit.cli", "exporter", "--port", "0", "--json",
                             "--db", str(db), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())["url"]


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return int(next(line.split()[1] for line in fh if line.startswith("Threads:")))


def test_idle_connections_cannot_exhaust_the_exporter(store: Path) -> None:
    """300 idle connections once held 302 threads with no timeout: the threads stay bounded (32
    connections served at once, the rest closed at accept), the idle
    connections are closed by the exporter, and a scrape is served again once they are."""
    import urllib.parse
    import urllib.request

    from timekit.outputs.exporter_http import MAX_CONNECTIONS

    proc, url = _start_exporter(store)
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    idle: list[socket.socket] = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection((host, port), timeout=30))
        threads = _threads(proc.pid)
        assert threads <= MAX_CONNECTIONS + 8, threads
        for s in idle:  # every one is closed by the server: refused at once, or dropped when idle
            assert s.recv(1) == b""
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200 and b"timekit_store_up 1" in resp.read()
    finally:
        for s in idle:
            s.close()
        proc.terminate()
        proc.communicate(timeout=30)


def test_concurrent_scrapes_share_one_reading_of_the_store(store: Path) -> None:
    """16 scrapers x 5 scrapes at once: every one answered, with the store read at most once per
    refresh interval (here one reading: all 80 fall within one 60 s interval)."""
    import concurrent.futures
    import urllib.request

    from timekit.outputs.exporter_http import SharedSnapshot

    proc, url = _start_exporter(store, "--refresh", "60")
    try:
        def scrape(_: int) -> bytes:
            with urllib.request.urlopen(url, timeout=60) as resp:
                return resp.read()

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            bodies = list(pool.map(scrape, range(80)))
        assert len(set(bodies)) == 1 and b"timekit_store_up 1" in bodies[0]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    # the sharing itself, counted: 40 callers on 8 threads, one render
    calls: list[int] = []

    def render() -> bytes:
        calls.append(1)
        return b"x"

    snap = SharedSnapshot(render, refresh_s=60)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: snap.get(), range(40))) == {b"x"}
    assert snap.renders == len(calls) == 1


# ----------------------------------------------------------------------------- FAULTS rows (item 8)
class _Responder:
    """A UDP "server" on 127.0.0.1 for the tests below: records each request's source port, and
    answers with a valid reply (echoing the nonce) from another address (127.0.0.2)."""

    def __init__(self, *, replay: bool = False) -> None:
        import threading

        self.replay = replay  # answer each request with the previous request's reply, from 127.0.0.1
        self.previous: bytes | None = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.2", 0))
        self.ports: list[int] = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        from timekit.collectors.ntp_packet import encode_reply, unix_ns_to_ts64

        while not self.stop:
            try:
                data, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            self.ports.append(peer[1])
            now = unix_ns_to_ts64(time_ns())
            nonce = int.from_bytes(data[40:48], "big")
            reply = encode_reply(origin_ts=nonce, receive_ts=now, transmit_ts=now)
            if not self.replay:
                self.other.sendto(reply, peer)
                continue
            if self.previous is not None:  # an old, once-valid reply: its origin is the old nonce
                self.sock.sendto(self.previous, peer)
            self.previous = reply

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=5)
        self.sock.close()
        self.other.close()

    def sampled(self, tmp_path: Path) -> tuple[int, list[dict]]:
        """`sample ntp` of this server, 4 queries of 0.3 s back to back: (exit code, the samples);
        the responder is closed afterwards."""
        try:
            proc = run_cli("sample", "ntp", self.address, "--count", "4", "--interval", "0", "--timeout",
                           "0.3", "--json", db=tmp_path / "r.db", timeout=60)
        finally:
            self.close()
        return proc.returncode, json.loads(proc.stdout)["samples"]


def time_ns() -> int:
    import time

    return time.clock_gettime_ns(time.CLOCK_REALTIME)


def test_a_reply_from_another_address_is_dropped_and_each_request_has_its_own_port(tmp_path: Path) -> None:
    """FAULTS N12, T6. N12: a reply from 127.0.0.2 to a request sent to 127.0.0.1 is never accepted
    (the socket is connected to the server: the kernel drops it), and the attempt ends at its own
    deadline. T6: every request leaves from an ephemeral port of its own socket, never 123 (RFC 9109)."""
    responder = _Responder()
    code, samples = responder.sampled(tmp_path)
    assert code == 0 and [s["error"] for s in samples] == ["timeout"] * 4
    assert all(s["timeout_s"] <= 0.3 + 1e-9 for s in samples)  # the deadline was not extended
    assert len(responder.ports) == 4 and len(set(responder.ports)) == 4 and 123 not in responder.ports
    assert all(p >= 1024 for p in responder.ports)


def test_a_missing_services_database_does_not_matter(lab: Lab, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """T4: with no `ntp` in /etc/services (no netbase), the numeric port 123 (or the one given) is
    used: the service name is never looked up (ntplib 0.4.0 regression guard)."""
    from timekit.address import parse_servers
    from timekit.collectors.ntp_client import QueryPlan
    from timekit.pipeline.sampling import sample_ntp
    from timekit.store.database import Store

    def no_services(*args: object) -> int:
        raise OSError("service/proto not found")

    monkeypatch.setattr(socket, "getservbyname", no_services)
    with Store.open(tmp_path / "t.db") as st:
        run = sample_ntp(st, parse_servers([lab.server("chrony-near").address]),
                         QueryPlan(count=2, interval_s=0.0, timeout_s=1.0))
    assert [s.ok for s in run.samples] == [True, True]


def test_a_run_past_its_budget_keeps_what_was_complete(lab: Lab, tmp_path: Path) -> None:
    """S14: a collect whose servers take longer than its budget stops at the budget, keeps every
    complete attempt, and exits 1 with one line (cron mails it)."""
    import sqlite3

    near, silent = lab.server("chrony-near").address, lab.server("silent").address
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[ntp]\nservers = ["{near}", "{silent}"]\ncount = 20\ninterval_s = 0.2\n'
                   "timeout_s = 1.0\nmin_poll_s = 15\n[clocks]\nenabled = false\n[pauses]\nenabled = false\n"
                   "[run]\nbudget_s = 1.5\n")
    db = tmp_path / "b.db"
    proc = run_cli("collect", "--config", str(cfg), "--quiet", db=db, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("timekit: run budget exceeded: kept ") and proc.stderr.count("\n") == 1
    with sqlite3.connect(db) as c:
        ok = c.execute("SELECT count(*) FROM ntp_samples WHERE server = ? AND ok = 1", (near,)).fetchone()[0]
        status = c.execute("SELECT status FROM runs").fetchall()
    assert 1 <= ok < 20 and ("budget_exceeded",) in status


def test_a_store_on_a_network_file_system_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """S8: SQLite's WAL needs a local file system. The file system type comes from /proc/self/mounts
    (checked here on real mounts); a store on NFS is refused with one line, before anything is
    created (NFS itself cannot be mounted in the suite, so its type is injected)."""
    from timekit.errors import StoreError
    from timekit.store import database

    assert database.filesystem_type(Path("/proc/self")) == "proc"
    assert database.filesystem_type(tmp_path / "not" / "yet.db") not in database.NETWORK_FILE_SYSTEMS
    monkeypatch.setattr(database, "filesystem_type", lambda p: "nfs4")
    with pytest.raises(StoreError, match="is on a nfs4 file system: SQLite's WAL needs a local one"):
        database.Store.open(tmp_path / "n.db")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of our own (root only), unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def test_a_full_or_read_only_file_system_under_the_store(lab: Lab, small_tmpfs: Path) -> None:
    """S7: for the store itself, when its disk fills mid-run, or its file system turns read-only,
    the command says so in one line and exits non-zero; the store is not corrupted and keeps every
    sample committed before."""
    import sqlite3

    near = lab.server("chrony-near").address
    db = small_tmpfs / "s.db"
    assert run_cli("sample", "ntp", near, "--count", "5", "--interval", "0", db=db).returncode == 0
    filler = small_tmpfs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)  # take every block that is left
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    proc = run_cli("sample", "ntp", near, "--count", "3000", "--interval", "0", db=db, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "No space left on device" in proc.stderr or "full" in proc.stderr, proc.stderr
    filler.unlink()
    c = sqlite3.connect(db)
    try:
        assert c.execute("PRAGMA quick_check").fetchone() == ("ok",)
        assert c.execute("SELECT count(*) FROM ntp_samples").fetchone()[0] >= 5
    finally:
        c.close()  # nothing may hold a file open for writing when the file system turns read-only
    remount = subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], capture_output=True, text=True,
                             timeout=30)
    assert remount.returncode == 0, remount.stderr
    proc = run_cli("sample", "ntp", near, "--count", "1", db=db, timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "read-only" in proc.stderr or "readonly" in proc.stderr, proc.stderr
    proc = run_cli("check", "--json", db=db)  # a reader still reads it
    assert json.loads(proc.stdout).get("metrics", {}).get("servers_usable") == 1, proc.stdout


def test_a_replayed_old_reply_is_never_accepted(tmp_path: Path) -> None:
    """N10: each request is answered with the reply to the previous request (a replay: genuine
    server, right address, old nonce). It is dropped as bogus (not our nonce), the attempt waits
    for a genuine reply until its deadline, and none is accepted."""
    responder = _Responder(replay=True)
    code, samples = responder.sampled(tmp_path)
    assert code == 0 and [s["ok"] for s in samples] == [False] * 4
    # the first request got no answer; each later one only the replay, named for what it was
    assert [s["error"] for s in samples] == ["timeout"] + ["bogus_origin"] * 3
    assert all(s["offset_s"] is None for s in samples) and len(responder.ports) == 4


def test_every_write_transaction_starts_immediate() -> None:
    """S5: a deferred transaction that reads, then writes, fails at once with `database is locked`
    under contention. So every transaction that writes starts with BEGIN IMMEDIATE (Store.write), and
    a plain BEGIN appears only where the transaction only reads (the schema look in `_setup`, the
    read snapshot) - checked on the store's source, function by function."""
    import ast
    import inspect

    from timekit.store import database

    tree = ast.parse(inspect.getsource(database))
    plain_begin, immediate = set(), set()
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.strip().upper() == "BEGIN":
                    plain_begin.add(fn.name)
                elif node.value.strip().upper() == "BEGIN IMMEDIATE":
                    immediate.add(fn.name)
    assert immediate == {"write"}
    assert plain_begin == {"_setup", "snapshot"}
    for name in plain_begin:  # and those read only: no statement that changes a table
        source = ast.get_source_segment(inspect.getsource(database), next(
            f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == name)) or ""
        head = source.split("COMMIT")[0] if name == "_setup" else source
        assert not re.search(r"\b(INSERT|UPDATE|DELETE|CREATE|DROP|ALTER)\b", head), name


def test_the_next_address_is_tried_when_the_first_is_unreachable(lab: Lab, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """N34: a name with AAAA and A records whose first address (::1, nothing listening there) is
    unreachable: the attempt goes on to the next address (127.0.0.1, a lab chronyd) within its own
    deadline, and the sample names the address that answered."""
    from timekit.address import parse_servers
    from timekit.collectors.ntp_client import QueryPlan
    from timekit.pipeline.sampling import sample_ntp
    from timekit.store.database import Store

    port = int(lab.server("chrony-near").address.rsplit(":", 1)[1])
    real = socket.getaddrinfo

    def dual_stack(host: str, *args: object, **kw: object) -> list:
        if host == "dual.example.test":
            return [(socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port, 0, 0)),
                    (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port))]
        return real(host, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", dual_stack)
    with Store.open(tmp_path / "d.db") as st:
        run = sample_ntp(st, parse_servers([f"dual.example.test:{port}"]),
                         QueryPlan(count=2, interval_s=0.0, timeout_s=1.0))
    assert [s.ok for s in run.samples] == [True, True], [s.detail for s in run.samples]
    assert {s.address for s in run.samples} == {f"127.0.0.1:{port}"}
    assert all(s.timeout_s <= 1.0 for s in run.samples)


def test_a_server_1000_s_or_12_years_off_is_outvoted_and_never_trusted_alone(tmp_path: Path) -> None:
    """N28 (the USNO 2000 case): servers 1000 s and 12 years ahead are stored as measured (their
    replies are valid), are falsetickers against three agreeing servers, and the interval contains
    the honest truth; alone, such a server gives a single-source interval that `check` does not
    call OK."""
    from timekit.lab.faultserver import PortSpec
    from timekit.lab.manager import Lab as LabDir
    from timekit.lab.manager import start_fault_server

    years_12 = 12 * 365.25 * 86_400
    specs = [PortSpec(name=f"honest-{i}", kind="good", offset_s=0.010) for i in range(3)]
    specs += [PortSpec(name="ahead-1000s", kind="good", offset_s=1000.0),
              PortSpec(name="ahead-12y", kind="good", offset_s=years_12)]
    directory = tmp_path / "lab"
    directory.mkdir(mode=0o700)
    pid, ready = start_fault_server(directory, specs, detach=False)
    try:
        ports = {p["name"]: f'{p["host"]}:{p["port"]}' for p in ready["ports"]}
        db = tmp_path / "n.db"
        proc = run_cli("sample", "ntp", *ports.values(), "--count", "4", "--interval", "0.05", "--json",
                       db=db)
        assert proc.returncode == 0, proc.stderr
        by = {}
        for s in json.loads(proc.stdout)["samples"]:
            by.setdefault(s["server"], []).append(s)
        for name, want in (("ahead-1000s", 1000.0), ("ahead-12y", years_12)):
            assert all(s["ok"] for s in by[ports[name]]), by[ports[name]]
            assert abs(by[ports[name]][-1]["offset_s"] - want) < 0.01 * max(1.0, want / 1e4)
        now = json.loads(run_cli("now", "--json", db=db).stdout)
        assert set(now["falsetickers"]) == {ports["ahead-1000s"], ports["ahead-12y"]}, now
        assert now["earliest_ns"] - now["as_of_ns"] <= 0.010 * 1e9 + 0.005 * 1e9
        assert now["latest_ns"] - now["as_of_ns"] >= 0.010 * 1e9 - 0.005 * 1e9
        alone = json.loads(run_cli("check", "--json", "-H", ports["ahead-1000s"],
                                   db=tmp_path / "a.db").stdout)
        assert alone["status"] == "critical" and alone["metrics"]["offset_s"] > 999, alone["summary"]
    finally:
        LabDir(directory, extra_pids=[pid]).stop()


@pytest.mark.parametrize("signum", [15, 1])  # SIGTERM (systemd's stop, kill), SIGHUP (the terminal closed)
def test_a_stop_signal_keeps_what_was_collected_and_ends_by_the_signal(
        lab: Lab, tmp_path: Path, signum: int) -> None:
    """`systemctl stop` or a closed terminal mid-run: stopped as Ctrl-C stops it (every finished
    attempt committed, the run marked interrupted, one line on stderr), then the process dies of the
    signal (returncode -N: what systemd counts as a clean stop, and 128+N to a shell)."""
    import signal
    import sqlite3

    from tests.conftest import wait_for_count

    db = tmp_path / "t.db"
    proc = subprocess.Popen([sys.executable, "-m", "timekit.cli", "sample", "ntp",
                             lab.server("chrony-near").address, "--count", "1000", "--interval", "0.05",
                             "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = wait_for_count(db, "SELECT count(*) FROM ntp_samples WHERE ok = 1", 5, proc=proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == -signum, (proc.returncode, err)
    name = signal.Signals(signum).name
    assert err.splitlines()[-1] == f"timekit: stopped by {name}; samples taken so far are stored", err
    assert "Traceback" not in err
    with sqlite3.connect(db) as c:
        n = c.execute("SELECT count(*) FROM ntp_samples WHERE ok = 1").fetchone()[0]
        status = c.execute("SELECT status FROM runs").fetchone()[0]
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert seen <= n < 1000 and status == "interrupted"


@pytest.mark.parametrize("kind", ["/dev/null", "fifo", "dangling symlink", "directory"])
@pytest.mark.parametrize("command", [["sample", "clocks", "--duration", "0.1"], ["now"], ["check"]])
def test_a_store_path_that_is_not_a_regular_file_is_refused_creating_nothing(
        tmp_path: Path, kind: str, command: list[str]) -> None:
    """`--db /dev/null` had SQLite write /dev/null-journal into /dev (as root) and fail with "disk
    I/O error"; a FIFO hung every command forever; a dangling symlink had SQLite create the file it
    names. Now: one line naming what the path is, exit 1 (check: UNKNOWN, 3), nothing created."""
    target = tmp_path / "victim"
    if kind == "/dev/null":
        db = Path("/dev/null")
    elif kind == "fifo":
        db = tmp_path / "t.db"
        os.mkfifo(db)
    elif kind == "dangling symlink":
        db = tmp_path / "t.db"
        db.symlink_to(target)
    else:
        db = tmp_path / "t.db"
        db.mkdir()
    before = set(os.listdir("/dev"))
    try:
        proc = run_cli(*command, db=db, timeout=20)
    finally:
        for leftover in set(os.listdir("/dev")) - before:
            if leftover.startswith("null"):
                os.unlink(f"/dev/{leftover}")
    words = {"/dev/null": "is a character device", "fifo": "is a FIFO",
             "dangling symlink": "is a symlink to a missing file", "directory": "is a directory"}[kind]
    lines = [ln for ln in (proc.stdout if command == ["check"] else proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == (3 if command == ["check"] else 1), (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr, (lines, proc.stderr)
    assert not target.exists()
    assert not [n for n in os.listdir("/dev") if n.startswith("null") and n != "null"]
    assert sorted(os.listdir(tmp_path)) == (["t.db"] if kind != "/dev/null" else [])


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
def test_a_planted_link_beside_the_store_is_named_and_nothing_is_created(tmp_path: Path, suffix: str) -> None:
    """A symlink planted as the store's -wal, -shm or -journal (in a directory others may write):
    SQLite refuses it for -shm only after creating the store, saying "unable to open database file".
    Now one line names the planted file; the store is not created and the link's target is untouched."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    db = tmp_path / "t.db"
    (tmp_path / f"t.db{suffix}").symlink_to(victim)
    proc = run_cli("sample", "clocks", "--duration", "0.1", db=db)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert f"t.db{suffix} is a symlink (to {victim})" in lines[0] and "Traceback" not in proc.stderr
    assert not db.exists() and victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["victim", f"t.db{suffix}"])
