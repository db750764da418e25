"""The interval's candidates: at most MAX_SOURCES references, chosen from each one's newest sample alone."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from tests.test_check import host_now
from timekit.analysis.candidates import MAX_SOURCES, NewestSample, interval_candidates
from timekit.collectors.clocks import boot_id
from timekit.pipeline.assess import assess_store
from timekit.samples import NtpSample
from timekit.store.database import Store
from timekit.units import NS_PER_S

BOOT_NS = 10_000 * NS_PER_S


def newest(server: str, age_s: float, rd_s: float, boot: str | None = "b") -> NewestSample:
    return NewestSample(server, 0, BOOT_NS - round(age_s * NS_PER_S), boot, rd_s)


def pick(samples: list[NewestSample], limit: int = MAX_SOURCES) -> list[str]:
    return interval_candidates(samples, now_boottime_ns=BOOT_NS, boot_id="b", max_drift_ppm=200.0,
                               void_after_s=14_400.0, max_root_distance_s=1.5, limit=limit)


def test_candidates_are_the_narrowest_bars_now_of_this_boot() -> None:
    got = pick([
        newest("old-boot", 1.0, 1e-4, boot="a"),  # another boot: its boottime means nothing now
        newest("void", 20_000.0, 1e-4),  # older than void_after
        newest("vague", 1.0, 2.0),  # root distance beyond the limit
        newest("fresh-wide", 1.0, 0.010),  # 10 ms + 200 ppm × 1 s = 10.2 ms
        newest("stale-narrow", 100.0, 0.0001),  # 0.1 ms + 200 ppm × 100 s = 20.1 ms
        newest("best", 10.0, 0.0005),  # 0.5 ms + 2 ms = 2.5 ms
    ])
    assert got == ["best", "fresh-wide", "stale-narrow"]
    many = [newest(f"s{i:02d}", 1.0, 1e-4 * (i + 1)) for i in range(40)]
    assert pick(many) == [f"s{i:02d}" for i in range(MAX_SOURCES)]
    assert pick(many, limit=3) == ["s00", "s01", "s02"]


def _sample(name: str, ok: bool, rt: int, bt: int, rd_s: float = 1e-4, offset_s: float = 0.0) -> NtpSample:
    return NtpSample(name, ok, None if ok else "timeout", rt, offset_s=offset_s if ok else None,
                     delay_s=2 * rd_s if ok else None, stratum=2, leap=0, root_delay_s=0.0,
                     root_dispersion_s=0.0, boottime_ns=bt, boot_id=boot_id())


def test_the_store_keeps_each_servers_newest_usable_sample(tmp_path: Path) -> None:
    """A trigger keeps it as samples arrive; an older store gets it filled in when it is opened."""
    rt, bt = host_now()
    db = tmp_path / "n.db"
    with Store.open(db) as st:
        st.add_ntp_samples([_sample("a", True, rt - 3, bt - 3), _sample("a", True, rt - 2, bt - 2),
                            _sample("a", False, rt - 1, bt - 1), _sample("b", True, rt, bt, rd_s=0.002)])
        got = {r.server: (r.t_local_ns, r.root_distance_s) for r in st.newest_ok_rows()}
    assert got == {"a": (rt - 2, 1e-4), "b": (rt, 0.002)}  # a's failed attempt is not its newest usable
    with closing(sqlite3.connect(db)) as c:  # as a store written before the table existed
        c.executescript("DROP TRIGGER newest_ok_on_insert; DROP TABLE newest_ok; DROP INDEX runs_status; "
                        "ALTER TABLE runs DROP COLUMN pid; ALTER TABLE runs DROP COLUMN boot_id; "
                        "ALTER TABLE ntp_samples DROP COLUMN tx_timestamp; "
                        "ALTER TABLE ntp_samples DROP COLUMN tx_latency_ns; "
                        "ALTER TABLE ntp_samples DROP COLUMN monotonic_ns; "
                        "ALTER TABLE ntp_samples DROP COLUMN raw_ns; "
                        "DROP TABLE daemon_sources; DROP TABLE daemon_samples; "
                        "DROP TABLE fleet_events; DROP TABLE fleet_health; DROP TABLE fleet_sweeps; "
                        "DROP TABLE peer_samples; DROP TABLE cluster_health; DROP TABLE cluster_events; "
                        "ALTER TABLE ntp_samples DROP COLUMN authenticated; "
                        "PRAGMA user_version = 5;")
    with Store.open(db) as st:
        assert {r.server: (r.t_local_ns, r.root_distance_s) for r in st.newest_ok_rows()} == got
        assert st.newest_ok_ns() == rt


def test_a_fleet_interval_uses_the_best_candidates_and_publishing_reads_only_them(tmp_path: Path) -> None:
    """40 references, 4 samples each: the interval is computed from the 16 narrowest; the state
    published after a sweep (`interval_only`) is the one the full assessment gives, and it contains
    the truth (every reference's offset is +2 ms, the farther ones with wider bars)."""
    rt, bt = host_now()
    db = tmp_path / "fleet.db"
    rows = [_sample(f"10.0.{i // 200}.{i % 200 + 1}:123", True, rt - k * NS_PER_S, bt - k * NS_PER_S,
                    rd_s=1e-4 * (1 + i), offset_s=0.002)
            for i in range(40) for k in range(4, 0, -1)]
    with Store.open(db) as st:
        st.add_ntp_samples(rows)
        full = assess_store(st, now=(rt, bt))
        quick = assess_store(st, now=(rt, bt), interval_only=True)
    assert full.interval is not None and quick.interval is not None
    assert len(full.interval.servers) == MAX_SOURCES == len(quick.interval.servers)
    assert {b.server for b in full.interval.servers} == {f"10.0.0.{i + 1}:123" for i in range(MAX_SOURCES)}
    assert full.state == quick.state and full.state is not None and full.state.has_interval
    truth = rt + 2_000_000
    assert full.interval.earliest_ns is not None and full.interval.latest_ns is not None
    assert full.interval.earliest_ns <= truth <= full.interval.latest_ns
    judged = [s for s in full.servers if s.truechimer is not None]
    assert len(judged) == MAX_SOURCES and len(full.servers) == 40  # the rest: shown, not judged
    assert all(s.bound is not None and s.bound.status == "ok" for s in full.servers)  # skew sees them all
