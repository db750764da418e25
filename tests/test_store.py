"""The SQLite store: schema, refusal of foreign/corrupt files, contention, crash safety."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from timekit.errors import StoreError
from timekit.samples import NtpSample
from timekit.store.database import APPLICATION_ID, SCHEMA_VERSION, Store

BIG_NS = 1_795_671_931_903_889_200


def sample(i: int, server: str = "127.0.0.1:123") -> NtpSample:
    return NtpSample(server=server, ok=True, error=None, t_local_ns=BIG_NS + i, offset_s=0.25 + i * 1e-9,
                     delay_s=1e-4, stratum=2, leap=0, root_delay_s=0.0, root_dispersion_s=0.0,
                     t1_ns=BIG_NS + i - 100, t4_ns=BIG_NS + i)


def test_new_store_is_wal_versioned_and_ours(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a" / "t.db") as st:
        c = st.conn
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_instants_roundtrip_exactly(tmp_path: Path) -> None:  # C15
    with Store.open(tmp_path / "t.db") as st:
        st.add_ntp_samples([sample(0), NtpSample("x:1", False, "timeout", BIG_NS)])
        got = st.ntp_samples()
    assert got[0].t_local_ns == BIG_NS and got[0].t1_ns == BIG_NS - 100
    assert got[0] == sample(0)
    assert got[1].ok is False and got[1].error == "timeout" and got[1].offset_s is None


def test_reopen_is_idempotent(tmp_path: Path) -> None:  # S10
    p = tmp_path / "t.db"
    Store.open(p).close()
    with Store.open(p) as st:
        st.add_ntp_samples([sample(1)])
    with Store.open(p) as st:
        assert st.count_ntp_samples() == 1


@pytest.mark.parametrize(("content", "needle"), [
    (b"hello, not a database", "not an SQLite file"),
    (b"SQLite format 3\x00" + b"\xff" * 200, "corrupt or unreadable"),
])
def test_garbage_file_is_refused(tmp_path: Path, content: bytes, needle: str) -> None:  # S9
    p = tmp_path / "t.db"
    p.write_bytes(content)
    with pytest.raises(StoreError, match=needle):
        Store.open(p)
    assert p.read_bytes() == content  # untouched


def raw_sql(path: Path, statement: str) -> None:
    """Change a database behind timekit's back, as another program would."""
    c = sqlite3.connect(path)
    c.execute(statement)
    c.commit()
    c.close()


def test_foreign_sqlite_db_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "other.db"
    raw_sql(p, "CREATE TABLE people(name)")
    with pytest.raises(StoreError, match="another program"):
        Store.open(p)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "t.db"
    Store.open(p).close()
    raw_sql(p, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this timekit"):
        Store.open(p)


def test_truncated_db_reads_give_store_error(tmp_path: Path) -> None:
    p = tmp_path / "t.db"
    with Store.open(p) as st:
        st.add_ntp_samples([sample(i) for i in range(2000)])
        st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = p.stat().st_size
    with open(p, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(StoreError):
        with Store.open(p) as st:
            st.ntp_samples()


def test_reader_does_not_block_writer(tmp_path: Path) -> None:  # S3
    p = tmp_path / "t.db"
    with Store.open(p) as st:
        st.add_ntp_samples([sample(0)])
        reader = sqlite3.connect(p, isolation_level=None)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM ntp_samples").fetchone()[0] == 1
        st.add_ntp_samples([sample(1)])  # would raise 'database is locked' without WAL
        assert reader.execute("SELECT count(*) FROM ntp_samples").fetchone()[0] == 1  # snapshot
        reader.execute("COMMIT")
        assert st.count_ntp_samples() == 2


def _writer(path: str, tag: str, n: int) -> None:
    with Store.open(path) as st:
        for i in range(n):
            st.add_ntp_samples([sample(i, server=tag)])


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:  # S4, two collects at once
    p = str(tmp_path / "t.db")
    Store.open(p).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(p, f"w{k}:1", 300)) for k in range(3)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(60)
        assert pr.exitcode == 0
    with Store.open(p) as st:
        assert st.count_ntp_samples() == 900
        assert st.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


WRITER = """
import sys
from timekit.store.database import Store
from timekit.samples import NtpSample
st = Store.open(sys.argv[1])
i = 0
while True:
    st.add_ntp_samples([NtpSample("k:1", True, None, 10**18 + i, offset_s=float(i))])
    print(i, flush=True)   # reported only after COMMIT returned
    i += 1
"""


def test_kill_9_loses_no_committed_sample(tmp_path: Path) -> None:  # S2, S6
    p = tmp_path / "t.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(p)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    committed = []
    deadline = time.monotonic() + 30
    while len(committed) < 500 and time.monotonic() < deadline:
        committed.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    with Store.open(p) as st:
        stored = {s.t_local_ns - 10**18 for s in st.ntp_samples()}
        assert st.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(committed) == 500
    assert set(committed) <= stored  # every reported commit survived kill -9


def test_attempt_and_its_server_state_commit_together(tmp_path: Path) -> None:  # KoD survives kill -9
    from timekit.collectors.server_policy import ServerState

    st_ = ServerState("k:1")
    st_.on_kod("kod_rate", poll=6, now_ns=BIG_NS)
    with Store.open(tmp_path / "t.db") as st:
        st.add_attempt(NtpSample("k:1", False, "kod_rate", BIG_NS), st_)
    with Store.open(tmp_path / "t.db") as st:  # a fresh process view
        again = st.server_states()["k:1"]
        assert st.count_ntp_samples() == 1
    assert again.hold_reason == "kod_rate" and again.kod_backoff_s == 64.0  # 2**6 s asked
    assert again.held(BIG_NS + 63 * 10**9) == "rate_limited"


def test_v1_store_migrates_to_current_keeping_samples(tmp_path: Path) -> None:  # S10
    from timekit.store.database import MIGRATIONS

    p = tmp_path / "old.db"
    c = sqlite3.connect(p)
    c.executescript(MIGRATIONS[0])
    c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    c.execute("PRAGMA user_version = 1")
    c.execute("INSERT INTO ntp_samples(server, ok, t_local_ns, offset_s) VALUES ('old:123', 1, ?, 0.5)",
              (BIG_NS,))
    c.commit()
    c.close()
    for _ in range(2):  # idempotent: the second open finds the current version and does nothing
        with Store.open(p) as st:
            assert st.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            (old,) = st.ntp_samples()
            assert (old.server, old.t_local_ns, old.offset_s) == ("old:123", BIG_NS, 0.5)
            assert old.boottime_ns is None and old.boot_id is None  # v2 columns, unknown for old rows
            assert st.node_health_rows() == []


def test_ok_rows_keeps_newest_per_server(tmp_path: Path) -> None:
    with Store.open(tmp_path / "t.db") as st:
        st.add_ntp_samples([sample(i, "a:1") for i in range(10)] + [sample(i, "b:1") for i in range(3)]
                           + [NtpSample("a:1", False, "timeout", BIG_NS + 100)])
        rows = st.ok_rows(["server", "t_local_ns"], last_per_server=4)
    # a's newest 4 ok samples are i = 6..9 (the timeout is not ok); b has only 3
    assert rows == [("a:1", BIG_NS + i) for i in range(6, 10)] + [("b:1", BIG_NS + i) for i in range(3)]
