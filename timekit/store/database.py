"""The sample store: one SQLite file in WAL mode, schema versioned by `user_version`.

Every write transaction starts with BEGIN IMMEDIATE (a deferred read-then-write
transaction fails instantly under contention), waits on `busy_timeout`, and commits
each attempt as it completes, so a crash or `kill -9` loses at most the attempt in
flight and never a committed one. A file that is not SQLite, or is SQLite but not
ours (`application_id`), or is from a newer timekit, is refused with one clear line.
Durability: synchronous=NORMAL survives any process crash; on power loss the last
few commits may roll back (SQLite WAL semantics), never corrupting the file.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple

from timekit.address import NTS_SCHEME
from timekit.analysis.cluster import PeerReading
from timekit.collectors.server_policy import ServerState
from timekit.daemon_samples import SAMPLE_COLUMNS, SOURCE_COLUMNS, DaemonSample, DaemonSource
from timekit.errors import StoreError
from timekit.samples import NtpSample
from timekit.settings import db_path
from timekit.vocabulary import NodeStatus

APPLICATION_ID = 0x544B4954  # "TKIT"
BUSY_TIMEOUT_MS = 15_000
CHECKPOINT_WAIT_MS = 200  # the end-of-run checkpoint waits this long for readers, then warns
JOURNAL_LIMIT_BYTES = 16 << 20  # the WAL is truncated back to this after a checkpoint
RETENTION_BATCH_ROWS = 10_000
SQLITE_MAGIC = b"SQLite format 3\x00"
QUICK_CHECK_MAX_BYTES = 64 << 20  # quick_check on open up to 64 MiB (measured: 111 ms for 54 MiB)

_NTP_COLUMNS = NtpSample.column_names()
_INSERT_SAMPLE = (f"INSERT INTO ntp_samples(run_id, {', '.join(_NTP_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * (len(_NTP_COLUMNS) + 1))})")
astuple_fast = attrgetter(*_NTP_COLUMNS)  # a sample's columns in order, without dataclasses' deep copy

MIGRATIONS: list[str] = [
    # v1: samples, clock observations, per-server state, runs
    "CREATE TABLE ntp_samples (id INTEGER PRIMARY KEY, run_id INTEGER, server TEXT NOT NULL,"
    " ok INTEGER NOT NULL, error TEXT, t_local_ns INTEGER NOT NULL, offset_s REAL, delay_s REAL,"
    " stratum INTEGER, leap INTEGER, root_delay_s REAL, root_dispersion_s REAL, address TEXT,"
    " refid TEXT, version INTEGER, poll INTEGER, precision INTEGER, t1_ns INTEGER, t2_ns INTEGER,"
    " t3_ns INTEGER, t4_ns INTEGER, rx_timestamp TEXT, rx_latency_ns INTEGER, timeout_s REAL,"
    " detail TEXT);\n"
    "CREATE INDEX ntp_samples_server_t ON ntp_samples(server, t_local_ns);\n"
    "CREATE INDEX ntp_samples_t ON ntp_samples(t_local_ns);\n"
    "CREATE TABLE clock_samples (id INTEGER PRIMARY KEY, run_id INTEGER,"
    " t_local_ns INTEGER NOT NULL, monotonic_ns INTEGER NOT NULL, raw_ns INTEGER NOT NULL,"
    " boottime_ns INTEGER NOT NULL, tai_ns INTEGER, bracket_ns INTEGER,"
    " kernel_state TEXT, kernel_unsynchronized INTEGER, kernel_offset_s REAL,"
    " kernel_frequency_ppm REAL, kernel_maxerror_s REAL, kernel_esterror_s REAL,"
    " kernel_status INTEGER, kernel_tai_offset_s INTEGER);\n"
    "CREATE INDEX clock_samples_t ON clock_samples(t_local_ns);\n"
    "CREATE TABLE clock_events (id INTEGER PRIMARY KEY, run_id INTEGER, kind TEXT NOT NULL,"
    " t_local_ns INTEGER NOT NULL, magnitude_s REAL NOT NULL);\n"
    "CREATE TABLE server_state (server TEXT PRIMARY KEY, srtt_s REAL, rttvar_s REAL, rto_s REAL,"
    " hold_until_ns INTEGER NOT NULL DEFAULT 0, hold_reason TEXT,"
    " kod_backoff_s REAL NOT NULL DEFAULT 0, last_query_ns INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE TABLE runs (id INTEGER PRIMARY KEY, command TEXT NOT NULL, started_ns INTEGER NOT NULL,"
    " finished_ns INTEGER, status TEXT);\n",
    # v2: boottime per sample (ages evidence across wall-clock steps), node health (quarantine)
    "ALTER TABLE ntp_samples ADD COLUMN boottime_ns INTEGER;\n"
    "ALTER TABLE ntp_samples ADD COLUMN boot_id TEXT;\n"
    "CREATE TABLE node_health (node TEXT PRIMARY KEY, status TEXT NOT NULL,"
    " bad_streak INTEGER NOT NULL, good_streak INTEGER NOT NULL, since_ns INTEGER NOT NULL,"
    " last_offset_s REAL, updated_ns INTEGER NOT NULL);\n"
    "CREATE TABLE health_events (id INTEGER PRIMARY KEY, t_ns INTEGER NOT NULL, node TEXT NOT NULL,"
    " from_status TEXT NOT NULL, to_status TEXT NOT NULL, offset_s REAL, reason TEXT NOT NULL);\n",
    # v3: fencing tokens (issued by a lock holder, highest accepted by the protected resource)
    "CREATE TABLE fencing (resource TEXT PRIMARY KEY, issued INTEGER NOT NULL DEFAULT 0,"
    " accepted INTEGER NOT NULL DEFAULT 0);\n",
    # v4: pause meter summaries (one row per interval)
    "CREATE TABLE pause_intervals (id INTEGER PRIMARY KEY, run_id INTEGER, t_local_ns INTEGER NOT NULL,"
    " boottime_ns INTEGER NOT NULL, interval_s REAL NOT NULL, n_wakeups INTEGER NOT NULL,"
    " p50_s REAL NOT NULL, p90_s REAL NOT NULL, p99_s REAL NOT NULL, p999_s REAL NOT NULL,"
    " max_s REAL NOT NULL, suspend_s REAL NOT NULL);\n"
    "CREATE INDEX pause_intervals_t ON pause_intervals(t_local_ns);\n",
    # v5: each server's samples in insertion order (its rowids): the newest N per server without a sort
    "CREATE INDEX ntp_samples_server ON ntp_samples(server);\n",
    # v6: each server's newest usable sample, kept by a trigger: choosing the interval's candidates
    # among thousands of servers reads one row per server, not their histories
    "CREATE TABLE newest_ok (server TEXT PRIMARY KEY, id INTEGER NOT NULL, t_local_ns INTEGER NOT NULL,"
    " boottime_ns INTEGER, boot_id TEXT, root_distance_s REAL);\n"
    "INSERT INTO newest_ok SELECT s.server, s.id, s.t_local_ns, s.boottime_ns, s.boot_id,"
    " s.delay_s / 2 + s.root_delay_s / 2 + s.root_dispersion_s FROM ntp_samples s"
    " JOIN (SELECT max(id) AS id FROM ntp_samples WHERE ok = 1 GROUP BY server) m ON s.id = m.id;\n"
    "CREATE TRIGGER newest_ok_on_insert AFTER INSERT ON ntp_samples WHEN NEW.ok = 1 BEGIN"
    " INSERT OR REPLACE INTO newest_ok VALUES (NEW.server, NEW.id, NEW.t_local_ns, NEW.boottime_ns,"
    " NEW.boot_id, NEW.delay_s / 2 + NEW.root_delay_s / 2 + NEW.root_dispersion_s); END;\n",
    # v7: which process ran a run (pid, boot), so a run killed with -9 is marked interrupted later
    "ALTER TABLE runs ADD COLUMN pid INTEGER;\n"
    "ALTER TABLE runs ADD COLUMN boot_id TEXT;\n"
    "CREATE INDEX runs_status ON runs(status);\n",
    # v8: where T1 came from (the kernel's software transmit stamp, or the user-space read before send)
    "ALTER TABLE ntp_samples ADD COLUMN tx_timestamp TEXT;\n"
    "ALTER TABLE ntp_samples ADD COLUMN tx_latency_ns INTEGER;\n",
    # v9: monotonic and raw at T4: how far the kernel slewed this clock since a sample (FAULTS C3)
    "ALTER TABLE ntp_samples ADD COLUMN monotonic_ns INTEGER;\n"
    "ALTER TABLE ntp_samples ADD COLUMN raw_ns INTEGER;\n",
    # v10: the host's time daemon as it described itself (chronyd, ntpd, timesyncd) and its sources
    "CREATE TABLE daemon_samples (id INTEGER PRIMARY KEY, run_id INTEGER, daemon TEXT NOT NULL,"
    " t_local_ns INTEGER NOT NULL, synchronized INTEGER NOT NULL, boottime_ns INTEGER, monotonic_ns INTEGER,"
    " raw_ns INTEGER, boot_id TEXT, read_span_ns INTEGER, leap TEXT, stratum INTEGER, ref_id TEXT,"
    " ref_name TEXT, ref_time_ns INTEGER, offset_s REAL, root_delay_s REAL, root_dispersion_s REAL,"
    " frequency_ppm REAL, residual_freq_ppm REAL, skew_ppm REAL, rms_offset_s REAL, jitter_s REAL,"
    " update_interval_s REAL, kernel_maxerror_s REAL, kernel_esterror_s REAL,"
    " kernel_unsynchronized INTEGER);\n"
    "CREATE INDEX daemon_samples_t ON daemon_samples(t_local_ns);\n"
    "CREATE TABLE daemon_sources (sample_id INTEGER NOT NULL REFERENCES daemon_samples(id)"
    ", address TEXT NOT NULL, state TEXT NOT NULL, stratum INTEGER, poll INTEGER,"
    " reach INTEGER, last_rx_s REAL, offset_s REAL, error_s REAL, delay_s REAL, frequency_ppm REAL,"
    " freq_skew_ppm REAL, std_dev_s REAL, n_samples INTEGER);\n"
    "CREATE INDEX daemon_sources_sample ON daemon_sources(sample_id);\n",
    # v11: a fleet sweeper's nodes (`fleet sweep`): their quarantine state and transitions, apart from
    # the skew check's references and self, and one summary row per sweep
    "CREATE TABLE fleet_health (node TEXT PRIMARY KEY, status TEXT NOT NULL,"
    " bad_streak INTEGER NOT NULL, good_streak INTEGER NOT NULL, since_ns INTEGER NOT NULL,"
    " last_offset_s REAL, updated_ns INTEGER NOT NULL);\n"
    "CREATE TABLE fleet_events (id INTEGER PRIMARY KEY, t_ns INTEGER NOT NULL, node TEXT NOT NULL,"
    " from_status TEXT NOT NULL, to_status TEXT NOT NULL, offset_s REAL, reason TEXT NOT NULL);\n"
    "CREATE INDEX fleet_events_node ON fleet_events(node);\n"
    "CREATE TABLE fleet_sweeps (id INTEGER PRIMARY KEY, t_ns INTEGER NOT NULL, nodes INTEGER NOT NULL,"
    " answered INTEGER NOT NULL, quorum INTEGER NOT NULL, quarantined INTEGER NOT NULL,"
    " median_offset_s REAL, spread_s REAL, wall_s REAL NOT NULL, reason TEXT NOT NULL);\n",
    # v12: this host's cluster peers (`[cluster] peers`): each run's reading of each (its lowest-delay
    # reply, or its error), and the quarantine state of `self` and each peer against the peers'
    # majority, apart from the references' (off from the cluster is not off from UTC)
    "CREATE TABLE peer_samples (id INTEGER PRIMARY KEY, run_id INTEGER, peer TEXT NOT NULL,"
    " address TEXT NOT NULL, t_local_ns INTEGER NOT NULL, boottime_ns INTEGER, boot_id TEXT,"
    " ok INTEGER NOT NULL, offset_s REAL, delay_s REAL, error TEXT);\n"
    "CREATE INDEX peer_samples_peer ON peer_samples(peer, id);\n"
    "CREATE INDEX peer_samples_t ON peer_samples(t_local_ns);\n"
    "CREATE TABLE cluster_health (node TEXT PRIMARY KEY, status TEXT NOT NULL,"
    " bad_streak INTEGER NOT NULL, good_streak INTEGER NOT NULL, since_ns INTEGER NOT NULL,"
    " last_offset_s REAL, updated_ns INTEGER NOT NULL);\n"
    "CREATE TABLE cluster_events (id INTEGER PRIMARY KEY, t_ns INTEGER NOT NULL, node TEXT NOT NULL,"
    " from_status TEXT NOT NULL, to_status TEXT NOT NULL, offset_s REAL, reason TEXT NOT NULL);\n",
    # v13: NTS (RFC 8915): whether a sample was authenticated (the sessions' keys are kept apart, in a
    # file only the owner reads: `store.nts_sessions`)
    "ALTER TABLE ntp_samples ADD COLUMN authenticated INTEGER;\n",
]
PAUSE_COLUMNS = ["t_local_ns", "boottime_ns", "interval_s", "n_wakeups", "p50_s", "p90_s", "p99_s", "p999_s",
                 "max_s", "suspend_s"]
SCHEMA_VERSION = len(MIGRATIONS)
_STATE_COLUMNS = [f.name for f in fields(ServerState) if f.name != "nts"]  # sessions: `<db>.nts`


class NodeHealthRow(NamedTuple):
    """One node's stored skew-check health (quarantine state)."""

    node: str
    status: NodeStatus
    bad_streak: int
    good_streak: int
    since_ns: int
    last_offset_s: float | None
    updated_ns: int  # when the check that wrote it ran


class NewestRow(NamedTuple):
    """A server's newest usable sample: local realtime and boottime (ns), boot, root distance (s)."""

    server: str
    t_local_ns: int
    boottime_ns: int | None
    boot_id: str | None
    root_distance_s: float | None


class ClockEventRow(NamedTuple):
    """A recorded wall-clock step or suspend: its kind, when (local realtime ns) and how big (s)."""

    kind: str  # 'step' | 'suspend' | 'disruption' (fresh evidence outside the published interval)
    t_local_ns: int
    magnitude_s: float


def _refuse_non_regular(path: Path) -> None:
    """The store is a regular file (or a symlink to one): `--db /dev/null` would have SQLite write a
    journal into /dev, a FIFO would block the open forever, and a dangling symlink would have SQLite
    create whatever file it names (as root, anywhere). One line instead, nothing created. Its -wal,
    -shm and -journal beside it must be regular files too: SQLite refuses a planted link there, but
    says only "unable to open database file" after creating the store."""
    from timekit.atomic_files import file_kind

    for suffix in ("-wal", "-shm", "-journal"):  # SQLite's own files: it refuses links, in vaguer words
        side = path.with_name(path.name + suffix)
        try:
            side_st = os.lstat(side)
        except OSError:
            continue
        if stat.S_ISLNK(side_st.st_mode) or not stat.S_ISREG(side_st.st_mode):
            what = (f"a symlink (to {os.readlink(side)})" if stat.S_ISLNK(side_st.st_mode)
                    else file_kind(side_st.st_mode))
            raise StoreError(f"{side} is {what}, not the store's own file: refusing to open {path} "
                             "(remove it)")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise StoreError(f"database path {path} is a symlink to a missing file "
                             f"({os.readlink(path)}): not followed") from None
        return
    except OSError:
        return  # permission and the like: the open says it in its own words
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"database path {path} is {file_kind(st.st_mode)}, not a regular file")


def _check_header(path: Path) -> None:
    try:
        with open(path, "rb") as fh:  # a regular file (`_refuse_non_regular` ran first)
            head = fh.read(16)
    except PermissionError:
        raise StoreError(f"cannot read database {path}: permission denied") from None
    if head and head != SQLITE_MAGIC:
        raise StoreError(f"{path} is not a timekit database (not an SQLite file)")


# file systems whose locking and shared memory SQLite's WAL cannot rely on (FAULTS S8)
NETWORK_FILE_SYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "ceph", "glusterfs",
                                  "fuse.glusterfs", "fuse.sshfs", "9p", "lustre", "ncpfs"})


def _existing_dir(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists (a store about to be created has none yet)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def filesystem_type(path: Path) -> str | None:
    """The type of the file system `path` (or its nearest existing parent) lives on, from
    /proc/self/mounts (the longest mount point that contains it); None when unknown."""
    p = _existing_dir(Path(os.path.realpath(path)))
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            mounts = [line.split()[1:3] for line in fh if len(line.split()) >= 3]
    except OSError:
        return None
    best: tuple[int, str] | None = None
    text = str(p)
    for point, fstype in mounts:
        point = point.replace("\\040", " ")
        inside = text == point or text.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > best[0]):
            best = (len(point), fstype)
    return best[1] if best else None


def _refuse_network_fs(path: Path) -> None:
    """StoreError when the store would live on a network file system (FAULTS S8)."""
    fstype = filesystem_type(path.parent)
    if fstype in NETWORK_FILE_SYSTEMS:
        raise StoreError(f"{path} is on a {fstype} file system: SQLite's WAL needs a local one (its locks "
                         "and shared memory do not work over the network); put the store on a local disk "
                         "(--db or $TIMEKIT_DB)")


def _refuse_read_only_fs(path: Path) -> None:
    """StoreError when a writer's store sits on a read-only file system (FAULTS S7): said as such,
    not as SQLite's "unable to open database file"."""
    directory = _existing_dir(path.parent)
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return
    if read_only:
        raise StoreError(f"cannot write {path}: its file system is read-only (readers such as `check` "
                         "and `now` can still read it)")


def _create_private(path: Path) -> None:
    """Create the (empty) store file 0640 whatever the umask: its owner and its group read it (a
    monitoring agent's user in the group), not every user; SQLite gives its -wal and -shm files the
    same mode. The clock state next to it is 0644 (`published_state`): every user's IntervalClock."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    except FileExistsError:  # another writer created it first
        return
    try:
        os.fchmod(fd, 0o640)
    finally:
        os.close(fd)


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection for a user who may not write the store or its directory.

    SQLite reads a WAL database read-only when its -wal and -shm files exist (the writer's are
    readable with the store's own mode). When no writer has it open they are gone, and SQLite
    cannot create them in a directory the reader may not write ("attempt to write a readonly
    database"); then nothing is in a WAL and the main file is the whole store, so it is opened
    `immutable` (no locks, nothing to create). A writer that starts meanwhile appends to a new WAL
    the reader does not see: the reader's answer is as of its open.
    """
    from urllib.parse import quote

    uri = "file:" + quote(str(path.resolve()))
    conn = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute("PRAGMA user_version").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        wal = path.with_name(path.name + "-wal")
        # "attempt to write a readonly database" (a directory not ours), "unable to open database
        # file" (a read-only file system): SQLite could not create the -shm it wants
        if wal.exists() or os.access(path.parent, os.W_OK) or not (
                "readonly" in str(exc) or "unable to open" in str(exc)):
            raise
    return sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None)


class Store:
    """An open sample store. Use `Store.open(path)`; close with `.close()` or `with`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path | str | None = None, *, create: bool = True, readonly: bool = False) -> Store:
        """Open (and create/migrate) the store; raise StoreError with one clear line.

        `readonly`: a reader that is not the writer (check, now, analyze, export, the exporter): it
        needs read access only, never creates, migrates or changes the file (see `_connect_readonly`).
        """
        p = db_path(path)
        _refuse_non_regular(p)
        _refuse_network_fs(p)
        if not readonly:
            _refuse_read_only_fs(p)
        if p.exists():
            _check_header(p)
        elif not create or readonly:
            raise StoreError(f"no database at {p} (run `timekit sample ntp ...` or `timekit collect` first)")
        else:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
                _create_private(p)
            except OSError as exc:
                raise StoreError(f"cannot create {p}: {exc.strerror}") from None
        try:
            conn = _connect_readonly(p) if readonly else sqlite3.connect(
                p, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {p}: {exc}") from None
        store = cls(conn, p)
        store.readonly = readonly
        try:
            store._setup()
        except sqlite3.OperationalError as exc:  # cannot open or lock: not a damaged file
            conn.close()
            raise StoreError(f"cannot open database {p}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"database {p} is corrupt or unreadable: {exc}") from None
        except StoreError:
            conn.close()
            raise
        return store

    readonly = False

    def _setup(self) -> None:
        c = self.conn
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        c.execute("BEGIN")  # one read snapshot: a concurrent first-time migration is all or nothing
        try:
            app_id = c.execute("PRAGMA application_id").fetchone()[0]
            version = c.execute("PRAGMA user_version").fetchone()[0]
            has_tables = c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
        finally:
            c.execute("COMMIT")
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and has_tables):
            raise StoreError(f"{self.path} is an SQLite database of another program, not timekit's")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema v{version}, newer than this timekit "
                             f"(v{SCHEMA_VERSION}); upgrade timekit")
        if self.readonly:
            if has_tables and self.path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
                verdict = c.execute("PRAGMA quick_check(1)").fetchone()[0]
                if verdict != "ok":
                    raise StoreError(f"database {self.path} is corrupt ({verdict})")
            if version < SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema v{version}, older than this timekit's "
                                 f"(v{SCHEMA_VERSION}): a reader does not migrate it; run `timekit collect` "
                                 "(or any command that writes) as its owner once")
            return
        if c.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"cannot put {self.path} in WAL mode (got {mode}); "
                                 "is it on a network file system?")
        c.execute("PRAGMA synchronous = NORMAL")
        c.execute(f"PRAGMA journal_size_limit = {JOURNAL_LIMIT_BYTES}")
        if has_tables and self.path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
            verdict = c.execute("PRAGMA quick_check(1)").fetchone()[0]
            if verdict != "ok":
                raise StoreError(f"database {self.path} is corrupt ({verdict}); refusing to write. "
                                 "Move it aside to start a new one")
        if version < SCHEMA_VERSION:
            self._migrate()

    def _migrate(self) -> None:
        with self.write():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]  # re-read under lock
            for v in range(version, SCHEMA_VERSION):
                for stmt in MIGRATIONS[v].split(";\n"):
                    if stmt.strip():
                        self.conn.execute(stmt)
            self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot write to {self.path}: {exc}") from None
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreError(f"cannot write to {self.path}: {exc}") from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        """Roll back if a transaction is still open (SQLite may already have done so)."""
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """Reads: turn SQLite's errors (corrupt page, I/O) into one-line StoreErrors."""
        try:
            yield self.conn
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from None

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Reads that all see one state of the store (one read transaction; a writer committing
        meanwhile is not seen halfway), SQLite errors as one-line StoreErrors."""
        with self.reading() as c:
            c.execute("BEGIN")
            try:
                yield c
            finally:
                if c.in_transaction:
                    c.execute("COMMIT")

    def newest_ok_ns(self) -> int | None:
        """The newest usable sample's local realtime, any server (None: none at all)."""
        with self.reading() as c:
            row = c.execute("SELECT max(t_local_ns) FROM newest_ok").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def newest_ok_rows(self) -> list[NewestRow]:
        """Each server's newest usable sample (by insertion), by name: one row per server."""
        with self.reading() as c:
            return [NewestRow(*r) for r in c.execute(
                "SELECT server, t_local_ns, boottime_ns, boot_id, root_distance_s FROM newest_ok "
                "ORDER BY server")]

    def close(self) -> None:
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- runs -------------------------------------------------------------------------
    def begin_run(self, command: str, started_ns: int) -> int:
        """Record a run as `running` (with this pid and boot), and mark `interrupted` every earlier
        run still `running` whose process is gone (killed with -9, or an earlier boot)."""
        from timekit.atomic_files import pid_alive
        from timekit.collectors.clocks import boot_id

        boot = boot_id()
        with self.write() as c:
            gone = [rid for rid, pid, run_boot in
                    c.execute("SELECT id, pid, boot_id FROM runs WHERE status = 'running'")
                    if pid is None or run_boot != boot or not pid_alive(int(pid))]
            c.executemany("UPDATE runs SET status = 'interrupted' WHERE id = ?", [(r,) for r in gone])
            cur = c.execute("INSERT INTO runs(command, started_ns, status, pid, boot_id) "
                            "VALUES (?, ?, 'running', ?, ?)", (command, started_ns, os.getpid(), boot))
            return int(cur.lastrowid or 0)

    def end_run(self, run_id: int, finished_ns: int, status: str) -> str | None:
        """Record how a run ended, then checkpoint the WAL (`checkpoint`); its warning, if any."""
        with self.write() as c:
            c.execute("UPDATE runs SET finished_ns = ?, status = ? WHERE id = ?",
                      (finished_ns, status, run_id))
        return self.checkpoint()

    def checkpoint(self) -> str | None:
        """Copy the WAL into the store and truncate it (`wal_checkpoint(TRUNCATE)`), waiting at most
        CHECKPOINT_WAIT_MS for readers and writers; None, or one line when a reader holding an old
        snapshot keeps the WAL above JOURNAL_LIMIT_BYTES (it shrinks to the limit at the next
        checkpoint after that reader ends: SQLite's journal_size_limit)."""
        c = self.conn
        try:
            c.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
            busy = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as exc:
            return f"the store's WAL was not checkpointed: {exc}"
        finally:
            c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            size = self.path.with_name(self.path.name + "-wal").stat().st_size
        except OSError:
            size = 0
        if busy and size > JOURNAL_LIMIT_BYTES:
            return (f"the store's WAL is {size / 2**20:.0f} MB: another process holds a read transaction, so "
                    f"it could not be checkpointed; it returns to <= {JOURNAL_LIMIT_BYTES >> 20} MB once "
                    "that reader ends")
        return None

    def delete_older_than(self, cutoff_ns: int, batch_rows: int = RETENTION_BATCH_ROWS) -> int:
        """Retention (`[store] keep_days`): delete samples, events, pause intervals and finished runs
        older than `cutoff_ns` (CLOCK_REALTIME), `batch_rows` rows per transaction so a writer never
        holds the store for long; rows deleted. A server's newest-sample row goes with its sample."""
        tables = (("ntp_samples", "t_local_ns"), ("clock_samples", "t_local_ns"),
                  ("clock_events", "t_local_ns"), ("pause_intervals", "t_local_ns"),
                  ("health_events", "t_ns"), ("daemon_samples", "t_local_ns"), ("peer_samples", "t_local_ns"),
                  ("cluster_events", "t_ns"), ("runs", "started_ns"))
        total = 0
        for table, column in tables:
            extra = " AND status != 'running'" if table == "runs" else ""
            while True:
                with self.write() as c:
                    n = c.execute(f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "
                                  f"WHERE {column} < ?{extra} LIMIT ?)", (cutoff_ns, batch_rows)).rowcount
                total += n
                if n < batch_rows:
                    break
        if total:  # a server whose newest usable sample went loses its row (one pass, at the end)
            with self.write() as c:
                c.execute("DELETE FROM newest_ok WHERE id NOT IN (SELECT id FROM ntp_samples)")
                c.execute("DELETE FROM daemon_sources WHERE sample_id NOT IN (SELECT id FROM daemon_samples)")
        return total

    # --- NTP samples --------------------------------------------------------------------
    def add_ntp_samples(self, samples: Iterable[NtpSample], run_id: int | None = None) -> int:
        """Insert attempts in one transaction; returns how many."""
        samples = list(samples)
        if samples:
            with self.write() as c:
                self._put_samples(c, samples, run_id)
        return len(samples)

    @staticmethod
    def _put_samples(c: sqlite3.Connection, samples: list[NtpSample], run_id: int | None) -> None:
        c.executemany(_INSERT_SAMPLE, [(run_id, *astuple_fast(s)) for s in samples])

    def ntp_samples(self, server: str | None = None, since_ns: int | None = None,
                    ok_only: bool = False) -> list[NtpSample]:
        """Stored attempts, oldest first, optionally filtered."""
        where, args = self._where(server, since_ns, ok_only)
        with self.reading() as c:
            cur = c.execute(
                f"SELECT {', '.join(_NTP_COLUMNS)} FROM ntp_samples{where} ORDER BY t_local_ns, id",
                args)
            auth = _NTP_COLUMNS.index("authenticated")
            return [NtpSample(**{**dict(zip(_NTP_COLUMNS, row, strict=True)), "ok": bool(row[1]),
                                 "authenticated": bool(row[auth])}) for row in cur]

    @staticmethod
    def _where(server: str | None, since_ns: int | None, ok_only: bool) -> tuple[str, list[Any]]:
        conds: list[str] = []
        args: list[str | int] = []
        if server is not None:
            conds.append("server = ?")
            args.append(server)
        if since_ns is not None:
            conds.append("t_local_ns >= ?")
            args.append(since_ns)
        if ok_only:
            conds.append("ok = 1")
        return (" WHERE " + " AND ".join(conds) if conds else ""), args

    def ok_rows(self, columns: Sequence[str], server: str | None = None, since_ns: int | None = None,
                last_per_server: int | None = None) -> list[tuple[Any, ...]]:
        """Raw `columns` of usable (ok) samples, ordered by server then time, for analysis.

        `last_per_server` keeps only each server's newest N by insertion, not by wall clock (after a
        backward step of the wall clock the fresh samples have older timestamps than the stale ones):
        one indexed query per server that stops after N rows, so the cost follows what is returned,
        not the store's size.
        """
        bad = [c for c in columns if c not in _NTP_COLUMNS]
        if bad:
            raise ValueError(f"unknown sample columns: {bad}")
        cols = ", ".join(columns)
        if last_per_server is None:
            where, args = self._where(server, since_ns, ok_only=True)
            with self.reading() as c:
                return c.execute(f"SELECT {cols} FROM ntp_samples{where} ORDER BY server, t_local_ns, id",
                                 args).fetchall()
        t_col = list(columns).index("t_local_ns") if "t_local_ns" in columns else None
        with self.reading() as c:
            first_id = 0
            if since_ns is not None:
                # the time index holds the ids: without it SQLite walks the table from its first row
                first_id = c.execute("SELECT min(id) FROM ntp_samples INDEXED BY ntp_samples_t "
                                     "WHERE t_local_ns >= ?", (since_ns,)).fetchone()[0]
                if first_id is None:
                    return []
            servers = [server] if server is not None else self.servers()
            out: list[tuple[Any, ...]] = []
            for name in servers:
                rows = c.execute(f"SELECT {cols}, id FROM ntp_samples WHERE server = ? AND ok = 1 AND id >= ?"
                                 f" AND t_local_ns >= ? ORDER BY id DESC LIMIT ?",
                                 (name, first_id, since_ns if since_ns is not None else -(1 << 63),
                                  int(last_per_server))).fetchall()
                if t_col is not None:
                    rows.sort(key=lambda r: (r[t_col], r[-1]))
                else:
                    rows.reverse()
                out += [r[:-1] for r in rows]
            return out

    def servers(self) -> list[str]:
        """Every server with a stored attempt, sorted (one index seek per server, not a scan)."""
        with self.reading() as c:
            return [r[0] for r in c.execute(
                "WITH RECURSIVE s(server) AS (SELECT min(server) FROM ntp_samples UNION ALL "
                "SELECT (SELECT min(server) FROM ntp_samples WHERE server > s.server) FROM s "
                "WHERE s.server IS NOT NULL) SELECT server FROM s WHERE server IS NOT NULL")]

    def attempt_rows(self, columns: Sequence[str], server: str | None = None,
                     since_ns: int | None = None, by_time: bool = False) -> list[tuple[Any, ...]]:
        """Raw `columns` of every attempt (ok or not), ordered by server then time (`by_time`: by time
        only, which reads just the window through the time index instead of every server's rows)."""
        bad = [c for c in columns if c not in _NTP_COLUMNS]
        if bad:
            raise ValueError(f"unknown sample columns: {bad}")
        where, args = self._where(server, since_ns, ok_only=False)
        with self.reading() as c:
            order = "t_local_ns, id" if by_time else "server, t_local_ns, id"
            return c.execute(f"SELECT {', '.join(columns)} FROM ntp_samples{where} ORDER BY {order}",
                             args).fetchall()

    def clock_events(self, since_ns: int | None = None) -> list[ClockEventRow]:
        """Recorded clock events (steps, suspends), oldest first."""
        with self.reading() as c:
            return [ClockEventRow(*r) for r in c.execute(
                "SELECT kind, t_local_ns, magnitude_s FROM clock_events WHERE t_local_ns >= ? "
                "ORDER BY t_local_ns", (since_ns or 0,))]

    # --- node health (quarantine) ------------------------------------------------------------
    # node_health, cluster_health and fleet_health share one shape, as health_events, cluster_events and
    # fleet_events do: one reader, one writer, one log reader for the three
    def _health_rows(self, table: str) -> list[NodeHealthRow]:
        with self.reading() as c:
            return [NodeHealthRow(*r) for r in c.execute(
                "SELECT node, status, bad_streak, good_streak, since_ns, last_offset_s, updated_ns"
                f" FROM {table} ORDER BY node")]

    @staticmethod
    def _put_health(c: sqlite3.Connection, table: str, rows: Iterable[tuple[Any, ...]], log: str,
                    events: Iterable[tuple[Any, ...]]) -> None:
        c.executemany(f"INSERT OR REPLACE INTO {table}(node, status, bad_streak, good_streak, since_ns,"
                      " last_offset_s, updated_ns) VALUES (?, ?, ?, ?, ?, ?, ?)", list(rows))
        c.executemany(f"INSERT INTO {log}(t_ns, node, from_status, to_status, offset_s, reason)"
                      " VALUES (?, ?, ?, ?, ?, ?)", list(events))

    def _transitions(self, log: str, node: str | None) -> list[tuple[Any, ...]]:
        """(t_ns, node, from_status, to_status, offset_s, reason) of `log`, oldest first."""
        with self.reading() as c:
            where, args = (" WHERE node = ?", (node,)) if node is not None else ("", ())
            return c.execute(f"SELECT t_ns, node, from_status, to_status, offset_s, reason FROM {log}"
                             + where + " ORDER BY id", args).fetchall()

    def node_health_rows(self) -> list[NodeHealthRow]:
        """The stored health of every node, by name."""
        return self._health_rows("node_health")

    def save_node_health(self, rows: Iterable[tuple[Any, ...]], events: Iterable[tuple[Any, ...]],
                         cluster_rows: Iterable[tuple[Any, ...]] = (),
                         cluster_events: Iterable[tuple[Any, ...]] = (),
                         cluster_retired: Iterable[str] = ()) -> None:
        """Persist node health rows and their transition log (t_ns, node, from, to, offset_s, reason),
        and the cluster check's (against the peers), in one transaction, so a check's verdicts and
        their evidence land together."""
        with self.write() as c:
            self._put_health(c, "node_health", rows, "health_events", events)
            self._put_health(c, "cluster_health", cluster_rows, "cluster_events", cluster_events)
            # a peer no longer configured (or every node, when none is): its state goes, not its log
            c.executemany("DELETE FROM cluster_health WHERE node = ?", [(n,) for n in cluster_retired])

    # --- cluster peers (`[cluster] peers`: this host against its peers' majority) -------------------
    def add_peer_readings(self, readings: Iterable[PeerReading], run_id: int | None = None) -> int:
        """One reading per peer per run (its lowest-delay reply or its error), in one transaction."""
        rows = [(run_id, r.peer, r.address, r.t_local_ns, r.boottime_ns, r.boot_id, int(r.ok), r.offset_s,
                 r.delay_s, r.error) for r in readings]
        if rows:
            with self.write() as c:
                c.executemany("INSERT INTO peer_samples(run_id, peer, address, t_local_ns, boottime_ns,"
                              " boot_id, ok, offset_s, delay_s, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              rows)
        return len(rows)

    def newest_peer_readings(self) -> list[PeerReading]:
        """Each peer's newest reading (answered or not), by name."""
        with self.reading() as c:
            rows = c.execute(
                "SELECT p.peer, p.address, p.t_local_ns, p.boottime_ns, p.boot_id, p.ok, p.offset_s,"
                " p.delay_s, p.error FROM peer_samples p"
                " JOIN (SELECT max(id) AS id FROM peer_samples GROUP BY peer) m ON p.id = m.id"
                " ORDER BY p.peer")
            return [PeerReading(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8]) for r in rows]

    def cluster_health_rows(self) -> list[NodeHealthRow]:
        """The stored health of `self` and each peer against the peers' majority, by name."""
        return self._health_rows("cluster_health")

    def cluster_events(self, node: str | None = None) -> list[tuple[Any, ...]]:
        """The cluster check's transitions, oldest first."""
        return self._transitions("cluster_events", node)

    def health_events(self, node: str | None = None) -> list[tuple[Any, ...]]:
        """The references' skew check's transitions (t_ns, node, from, to, offset_s, reason), oldest first."""
        return self._transitions("health_events", node)

    # --- fleet sweeper (its nodes, apart from the skew check's) ------------------------------------
    def fleet_health_rows(self) -> list[NodeHealthRow]:
        """The stored health of every fleet node the sweeper has judged, by name."""
        return self._health_rows("fleet_health")

    def save_fleet_sweep(self, rows: Iterable[tuple[Any, ...]], events: Iterable[tuple[Any, ...]],
                         summary: tuple[Any, ...]) -> None:
        """One sweep in one transaction: node health rows, transitions (t_ns, node, from, to, offset_s,
        reason) and the summary (t_ns, nodes, answered, quorum, quarantined, median_offset_s,
        spread_s, wall_s, reason)."""
        with self.write() as c:
            self._put_health(c, "fleet_health", rows, "fleet_events", events)
            c.execute("INSERT INTO fleet_sweeps(t_ns, nodes, answered, quorum, quarantined, median_offset_s,"
                      " spread_s, wall_s, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", summary)

    def fleet_events(self, node: str | None = None) -> list[tuple[Any, ...]]:
        """The sweeper's transitions, oldest first."""
        return self._transitions("fleet_events", node)

    def fleet_sweeps(self) -> list[tuple[Any, ...]]:
        """Every sweep's summary row, oldest first."""
        with self.reading() as c:
            return c.execute("SELECT t_ns, nodes, answered, quorum, quarantined, median_offset_s, spread_s,"
                             " wall_s, reason FROM fleet_sweeps ORDER BY id").fetchall()

    # --- pause meter ----------------------------------------------------------------------
    def add_pause_intervals(self, rows: Iterable[Any], run_id: int | None = None) -> None:
        """Insert pause summaries (objects with the PAUSE_COLUMNS attributes) in one transaction."""
        with self.write() as c:
            c.executemany(f"INSERT INTO pause_intervals(run_id, {', '.join(PAUSE_COLUMNS)}) "
                          f"VALUES ({', '.join('?' * (len(PAUSE_COLUMNS) + 1))})",
                          [(run_id, *(getattr(r, col) for col in PAUSE_COLUMNS)) for r in rows])

    def pause_rows(self, since_ns: int | None = None) -> list[dict[str, Any]]:
        """Stored pause summaries, oldest first, as dicts keyed by PAUSE_COLUMNS."""
        with self.reading() as c:
            cur = c.execute(f"SELECT {', '.join(PAUSE_COLUMNS)} FROM pause_intervals WHERE t_local_ns >= ?"
                            " ORDER BY t_local_ns, id", (since_ns or 0,))
            return [dict(zip(PAUSE_COLUMNS, r, strict=True)) for r in cur]

    # --- fencing tokens ---------------------------------------------------------------------
    def next_fencing_token(self, resource: str) -> int:
        """A token for `resource` greater than every token issued before (one IMMEDIATE txn)."""
        with self.write() as c:
            row = c.execute("INSERT INTO fencing(resource, issued) VALUES (?, 1) ON CONFLICT(resource)"
                            " DO UPDATE SET issued = issued + 1 RETURNING issued", (resource,)).fetchone()
            return int(row[0])

    def fence_accept(self, resource: str, token: int) -> bool:
        """The resource's side: accept `token` unless a greater one was accepted already."""
        with self.write() as c:
            row = c.execute("SELECT accepted FROM fencing WHERE resource = ?", (resource,)).fetchone()
            if row is not None and token < row[0]:
                return False
            c.execute("INSERT INTO fencing(resource, accepted) VALUES (?, ?) ON CONFLICT(resource)"
                      " DO UPDATE SET accepted = excluded.accepted", (resource, token))
            return True

    def count_ntp_samples(self) -> int:
        with self.reading() as c:
            return int(c.execute("SELECT count(*) FROM ntp_samples").fetchone()[0])

    # --- clock observations ----------------------------------------------------------------
    def add_clock_rows(self, rows: list[dict[str, Any]], events: list[dict[str, Any]],
                       run_id: int | None = None) -> None:
        """Insert clock snapshots (dicts keyed by clock_samples columns) and clock events."""
        with self.write() as c:
            for r in rows:
                cols = ["run_id", *r]
                c.execute(f"INSERT INTO clock_samples({', '.join(cols)}) "
                          f"VALUES ({', '.join('?' * len(cols))})", [run_id, *r.values()])
            for e in events:
                c.execute("INSERT INTO clock_events(run_id, kind, t_local_ns, magnitude_s) "
                          "VALUES (?, ?, ?, ?)", (run_id, e["kind"], e["t_local_ns"], e["magnitude_s"]))

    def newest_clock_sample(self) -> tuple[int, int, int] | None:
        """(t_local_ns, monotonic_ns, boottime_ns) of the newest stored clock snapshot, or None."""
        with self.reading() as c:
            row = c.execute("SELECT t_local_ns, monotonic_ns, boottime_ns FROM clock_samples"
                            " ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]))

    # --- the host's time daemon ---------------------------------------------------------------
    def add_daemon_sample(self, sample: DaemonSample, run_id: int | None = None) -> int:
        """Commit one daemon reading with its sources (one transaction); its row id."""
        with self.write() as c:
            cols = ["run_id", *SAMPLE_COLUMNS]
            values = [run_id, *(getattr(sample, k) for k in SAMPLE_COLUMNS)]
            row = c.execute(f"INSERT INTO daemon_samples({', '.join(cols)}) "
                            f"VALUES ({', '.join('?' * len(cols))}) RETURNING id", values).fetchone()
            c.executemany(f"INSERT INTO daemon_sources(sample_id, {', '.join(SOURCE_COLUMNS)}) "
                          f"VALUES ({', '.join('?' * (len(SOURCE_COLUMNS) + 1))})",
                          [(row[0], *(getattr(s, k) for k in SOURCE_COLUMNS)) for s in sample.sources])
            return int(row[0])

    def daemon_samples(self, since_ns: int | None = None, newest: int | None = None) -> list[DaemonSample]:
        """Stored daemon readings (with their sources), oldest first; `newest`: only the last N."""
        with self.reading() as c:
            sql = (f"SELECT id, {', '.join(SAMPLE_COLUMNS)} FROM daemon_samples WHERE t_local_ns >= ?"
                   " ORDER BY id DESC")
            rows = c.execute(sql + (f" LIMIT {int(newest)}" if newest is not None else ""),
                             (since_ns or 0,)).fetchall()[::-1]
            out = []
            for r in rows:
                src = c.execute(f"SELECT {', '.join(SOURCE_COLUMNS)} FROM daemon_sources WHERE sample_id = ?"
                                " ORDER BY rowid", (r[0],)).fetchall()
                d = dict(zip(SAMPLE_COLUMNS, r[1:], strict=True))
                d["synchronized"] = bool(d["synchronized"])
                if d["kernel_unsynchronized"] is not None:
                    d["kernel_unsynchronized"] = bool(d["kernel_unsynchronized"])
                out.append(DaemonSample(**d, sources=tuple(
                    DaemonSource(**dict(zip(SOURCE_COLUMNS, s, strict=True))) for s in src)))
            return out

    # --- per-server state ------------------------------------------------------------------
    def server_states(self) -> dict[str, ServerState]:
        """Every server's kept state, an NTS server's session with it (from `<db>.nts`, 0600)."""
        from timekit.store.nts_sessions import load_sessions, sessions_path_for

        with self.reading() as c:
            cur = c.execute(f"SELECT {', '.join(_STATE_COLUMNS)} FROM server_state")
            states = {row[0]: ServerState(**dict(zip(_STATE_COLUMNS, row, strict=True))) for row in cur}
        for server, session in load_sessions(sessions_path_for(self.path)).items():
            states.setdefault(server, ServerState(server)).nts = session
        return states

    def save_nts_sessions(self, states: Iterable[ServerState]) -> None:
        """Keep the NTS servers' sessions (a dropped one is forgotten) in `<db>.nts`, mode 0600."""
        from timekit.store.nts_sessions import save_sessions, sessions_path_for

        changed = {s.server: s.nts for s in states if s.server.startswith(NTS_SCHEME)}
        if changed and not self.readonly:
            save_sessions(sessions_path_for(self.path), changed)

    def forget_server(self, server: str) -> dict[str, int]:
        """Delete everything stored about `server` (its samples, state, newest-sample index, skew
        health and health events) in one transaction; rows deleted per table."""
        deleted = {}
        with self.write() as c:
            for table, column in (("ntp_samples", "server"), ("newest_ok", "server"),
                                  ("server_state", "server"), ("node_health", "node"),
                                  ("health_events", "node")):
                deleted[table] = c.execute(f"DELETE FROM {table} WHERE {column} = ?", (server,)).rowcount
        if server.startswith(NTS_SCHEME):  # its keys and cookies too
            from timekit.store.nts_sessions import load_sessions, save_sessions, sessions_path_for

            path = sessions_path_for(self.path)
            deleted["nts_session"] = int(server in load_sessions(path))
            save_sessions(path, {server: None})
        return deleted

    def save_server_states(self, states: Iterable[ServerState]) -> None:
        with self.write() as c:
            self._put_states(c, states)

    @staticmethod
    def _put_states(c: sqlite3.Connection, states: Iterable[ServerState]) -> None:
        rows = [tuple(getattr(s, col) for col in _STATE_COLUMNS) for s in states]
        c.executemany(f"INSERT OR REPLACE INTO server_state({', '.join(_STATE_COLUMNS)}) "
                      f"VALUES ({', '.join('?' * len(_STATE_COLUMNS))})", rows)

    def add_attempt(self, sample: NtpSample, state: ServerState, run_id: int | None = None) -> None:
        """Commit one attempt together with its server's state (a KoD hold lands with its sample)."""
        self.add_attempts([sample], [state], run_id)

    def add_attempts(self, samples: Sequence[NtpSample], states: Iterable[ServerState],
                     run_id: int | None = None) -> None:
        """Commit attempts together with their servers' states, in one transaction."""
        with self.write() as c:
            self._put_samples(c, list(samples), run_id)
            self._put_states(c, states)
