"""Sampling runs: drive the collectors, store every attempt as it completes, keep server state.

This is the glue between `collectors/` (which only measure) and the store; the CLI
and library call it. Attempts are committed as they complete, in batches at most
COMMIT_EVERY_S apart, so Ctrl-C or a budget abort keeps every attempt that finished and
`kill -9` loses at most the last COMMIT_EVERY_S of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from timekit.address import NamedServer, ServerAddress
from timekit.analysis.cluster import PeerReading
from timekit.collectors.clocks import realtime_ns
from timekit.collectors.ntp_client import QueryPlan, sample_servers
from timekit.collectors.server_policy import ServerState
from timekit.errors import TimekitError
from timekit.samples import NtpSample
from timekit.store.database import Store
from timekit.units import NS_PER_S

COMMIT_EVERY_S = 0.05  # a completed attempt waits at most this long for its commit
COMMIT_ROWS = 2000  # ...or until this many are waiting

if TYPE_CHECKING:
    from timekit.collectors.adjtimex import KernelClockState
    from timekit.collectors.clocks import ClockReport
    from timekit.config import CollectConfig
    from timekit.daemon_samples import DaemonSample


@dataclass
class NtpRun:
    """What one sampling run did."""

    samples: list[NtpSample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # servers skipped by the cron poll floor
    budget_exceeded: bool = False
    peers: list[PeerReading] = field(default_factory=list)  # one per cluster peer: stored apart

    @property
    def unresolved(self) -> list[str]:
        """One message per server whose name does not exist (bad input, not a transient failure)."""
        return sorted({s.detail for s in self.samples if unknown_host(s) and s.detail})


def unknown_host(sample: NtpSample) -> bool:
    """The attempt failed because the server's name does not exist (bad input: a typo): such an
    attempt is reported, never stored, so it cannot make later checks warn about a server nobody
    has. A transient DNS failure (EAI_AGAIN) is a measurement and is stored."""
    return sample.error == "network" and str(sample.detail or "").startswith("cannot resolve")


class _Committer:
    """Attempts committed in batches as they complete: whatever finished since the last commit, at
    least every COMMIT_EVERY_S (or COMMIT_ROWS attempts), each with its server's state in the same
    transaction. A sweep of thousands of servers costs a few commits, not one per reply, and a
    `kill -9` loses at most the last COMMIT_EVERY_S of replies, never a committed one."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store, self.run_id = store, run_id
        self.samples: list[NtpSample] = []
        self.states: dict[str, ServerState] = {}
        self.last_s = time.monotonic()

    def add(self, sample: NtpSample, state: ServerState) -> None:
        self.samples.append(sample)
        self.states[state.server] = state
        if len(self.samples) >= COMMIT_ROWS or time.monotonic() - self.last_s >= COMMIT_EVERY_S:
            self.commit()

    def commit(self) -> None:
        self.last_s = time.monotonic()
        if self.samples:
            samples, states = self.samples, list(self.states.values())
            self.samples, self.states = [], {}
            self.store.add_attempts(samples, states, self.run_id)

    async def every_interval(self) -> None:
        """Commit what waits even when no reply comes (a sweep's last replies, slow servers)."""
        while True:
            await asyncio.sleep(COMMIT_EVERY_S)
            if time.monotonic() - self.last_s >= COMMIT_EVERY_S:
                self.commit()


async def _sampling(coro: Any, committer: _Committer, budget_s: float | None) -> None:
    ticker = asyncio.create_task(committer.every_interval())
    try:
        await (asyncio.wait_for(coro, budget_s) if budget_s else coro)
    finally:
        ticker.cancel()


class BestReplies:
    """Per named node (a cluster peer, a fleet node): its lowest-delay good reply of the run, else its
    last attempt's failure. A burst counts as one reading, as chrony's clock filter keeps one."""

    def __init__(self, nodes: Sequence[NamedServer]) -> None:
        self.by_address = {n.address.name: n.name for n in nodes}
        self.best: dict[str, NtpSample] = {}
        self.failed: dict[str, NtpSample] = {}

    def add(self, sample: NtpSample) -> None:
        """Take one attempt of a node's endpoint (others are ignored)."""
        name = self.by_address.get(sample.server)
        if name is None:
            return
        if sample.ok and sample.offset_s is not None and sample.delay_s is not None:
            old = self.best.get(name)
            if old is None or (old.delay_s is not None and sample.delay_s < old.delay_s):
                self.best[name] = sample
        else:
            self.failed[name] = sample

    def failures(self) -> dict[str, str]:
        """The error code of each node without a good reply (one asked and never answered)."""
        return {n: s.error or "error" for n, s in self.failed.items() if n not in self.best}

    def readings(self) -> list[PeerReading]:
        """One reading per node asked (a node never asked, after Ctrl-C or the budget: none)."""
        failures = self.failures()
        out = []
        for address, name in self.by_address.items():
            s = self.best.get(name) or self.failed.get(name)
            if s is not None:
                out.append(PeerReading(name, address, s.t_local_ns, s.boottime_ns, s.boot_id,
                                       name in self.best, s.offset_s, s.delay_s, failures.get(name)))
        return out


def sample_ntp(store: Store, servers: Sequence[ServerAddress], plan: QueryPlan, *,
               command: str = "sample ntp", budget_s: float | None = None,
               on_sample: Callable[[NtpSample], None] | None = None,
               peers: Sequence[NamedServer] = ()) -> NtpRun:
    """Query `servers` per `plan`; commit the attempts as they complete (in batches, `_Committer`);
    persist server state with them. `peers` (the cluster's, `[cluster] peers`) are queried in the
    same run by the same client, but never stored as references: one reading each (`BestReplies`)."""
    run = NtpRun()
    states = store.server_states()
    everyone: list[ServerAddress] = []
    run_id = store.begin_run(command, realtime_ns())
    committer = _Committer(store, run_id)
    peer_best = BestReplies(peers)

    def emit(sample: NtpSample, state: ServerState) -> None:
        if sample.server in peer_best.by_address:
            peer_best.add(sample)
            return
        if not unknown_host(sample):  # a name that does not exist is a typo, never stored
            committer.add(sample, state)  # the sample and its server's state, one transaction
        run.samples.append(sample)
        if on_sample is not None:
            on_sample(sample)

    status = "failed"
    try:
        try:
            everyone = [*servers, *(p.address for p in peers)]
            asyncio.run(_sampling(sample_servers(everyone, plan, states, emit), committer, budget_s))
        finally:
            committer.commit()  # what completed before Ctrl-C, a budget abort or an error is kept
            store.save_nts_sessions(states[s.name] for s in everyone if s.nts and s.name in states)
            run.peers = peer_best.readings()
            store.add_peer_readings(run.peers, run_id)
        status = "ok"
    except TimeoutError:
        run.budget_exceeded, status = True, "budget_exceeded"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseExceptionGroup as group:  # a task failed: surface our own error, not the group
        ours = group.subgroup(lambda e: isinstance(e, TimekitError | KeyboardInterrupt))
        if ours is None:
            raise
        first: BaseException = ours
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    finally:
        try:
            finish_run(store, run_id, status)
        except TimekitError:
            pass  # the store failed mid-run: the error that got us here is the one to report
    return run


def due_servers(store: Store, config: CollectConfig, now_ns: int) -> tuple[list[ServerAddress], list[str]]:
    """Cron rule (FAULTS T5): skip servers queried less than `min_poll_s` ago.

    KoD holds are not checked here: a held server is still due, and its attempt is stored
    as `rate_limited`/`denied` without a packet being sent (ntp_client.sample_server).
    """
    states = store.server_states()
    due, skipped = [], []
    for s in config.servers:
        st = states.get(s.name)
        if st is not None and now_ns - st.last_query_ns < config.min_poll_s * NS_PER_S:
            skipped.append(s.name)
        else:
            due.append(s)
    return due, skipped


@dataclass
class ClockRun:
    """One clock-sampling run: the analysed series, the kernel's view, and read costs."""

    report: ClockReport
    kernel: KernelClockState | None  # None where adjtimex is unavailable (container, non-Linux)
    resolution_ns: dict[str, int]
    read_cost_ns: dict[str, float]


def sample_clocks_run(store: Store, duration_s: float, rate_hz: float,
                      command: str = "sample clocks") -> ClockRun:
    """Sample the clocks for `duration_s` at `rate_hz`, analyse, store snapshots and events.

    Ctrl-C stops sampling early; what was read is still analysed and stored.
    """
    from timekit.collectors.adjtimex import read_kernel_state
    from timekit.collectors.clocks import (
        analyze_clock_series,
        clock_resolution,
        read_cost_ns,
        sample_clocks,
    )

    run_id = store.begin_run(command, realtime_ns())
    snaps: list = []
    status = "ok"
    try:
        sample_clocks(duration_s, rate_hz, on_snapshot=snaps.append)
    except KeyboardInterrupt:
        status = "interrupted"
    kernel = read_kernel_state()
    report = analyze_clock_series(snaps)
    krow = {}
    if kernel is not None:
        krow = dict(kernel_state=kernel.state, kernel_unsynchronized=int(kernel.unsynchronized),
                    kernel_offset_s=kernel.offset_s, kernel_frequency_ppm=kernel.frequency_ppm,
                    kernel_maxerror_s=kernel.maxerror_s, kernel_esterror_s=kernel.esterror_s,
                    kernel_status=kernel.status_bits, kernel_tai_offset_s=kernel.tai_offset_s)
    rows = [dict(t_local_ns=s.realtime_ns, monotonic_ns=s.monotonic_ns, raw_ns=s.raw_ns,
                 boottime_ns=s.boottime_ns, tai_ns=s.tai_ns,
                 bracket_ns=max(s.brackets_ns())) for s in snaps]
    if rows:  # the kernel was read once, right after the last snapshot: record it there only
        rows[-1].update(krow)
    events: list[dict[str, object]] = [
        dict(kind=e.kind, t_local_ns=e.t_realtime_ns, magnitude_s=e.magnitude_s)
        for e in (*report.steps, *report.suspends)]
    if snaps:
        events += between_runs(store.newest_clock_sample(), snaps[0])
    store.add_clock_rows(rows, events, run_id)
    finish_run(store, run_id, status)
    if status == "interrupted":
        raise KeyboardInterrupt
    return ClockRun(report, kernel, clock_resolution(), read_cost_ns(batches=11, calls_per_batch=100))


def sample_pauses_run(store: Store, duration_s: float, *, resolution_s: float = 0.001,
                      interval_s: float = 1.0, command: str = "sample pauses",
                      on_interval: Callable[[object], None] | None = None) -> list:
    """Run the pause meter for `duration_s`, committing each interval's summary as it closes.

    Ctrl-C stops the meter; every interval already closed is committed and kept.
    """
    from timekit.collectors.pauses import PauseInterval, measure_pauses

    run_id = store.begin_run(command, realtime_ns())
    kept: list[PauseInterval] = []

    def commit(iv: PauseInterval) -> None:
        store.add_pause_intervals([iv], run_id)
        kept.append(iv)
        if on_interval is not None:
            on_interval(iv)

    status = "ok"
    try:
        measure_pauses(duration_s, resolution_s=resolution_s, interval_s=interval_s, on_interval=commit)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        try:
            finish_run(store, run_id, status)
        except TimekitError:
            pass
    return kept


def finish_run(store: Store, run_id: int, status: str) -> None:
    """Record the run's end and checkpoint the WAL; a WAL a reader keeps large is one warning line."""
    import sys

    warning = store.end_run(run_id, realtime_ns(), status)
    if warning:
        print(f"timekit: warning: {warning}", file=sys.stderr)


def between_runs(previous: tuple[int, int, int] | None, first: object) -> list[dict[str, object]]:
    """Suspends and wall-clock steps since the previous run's last snapshot (a run sees only its
    own second or two; cron leaves the rest of the minute unwatched otherwise), by the collector's
    rule (`analysis.clock_events`). Same boot only: CLOCK_MONOTONIC must have moved forward."""
    from timekit.analysis.clock_events import ClockReading, events_between

    if previous is None:
        return []
    cur = ClockReading(first.realtime_ns, first.monotonic_ns, first.boottime_ns)  # type: ignore[attr-defined]
    if cur.monotonic_ns <= previous[1]:  # another boot (or a clock we cannot compare): nothing to say
        return []
    return [dict(kind=e.kind, t_local_ns=e.t_realtime_ns, magnitude_s=e.magnitude_s)
            for e in events_between(ClockReading(*previous), cur)]


def sample_daemon_run(store: Store, kind: str | None = None, chronyc_socket: str | None = None,
                      command: str = "sample daemon") -> DaemonSample:
    """Read the host's time daemon (`kind`, None: the first that answers) and store the reading.
    Raises CollectorError (nothing stored, the run marked failed) when it does not answer."""
    from timekit.collectors.time_daemon import read_daemon

    run_id = store.begin_run(command, realtime_ns())
    try:
        sample = read_daemon(kind, chronyc_socket=chronyc_socket)  # type: ignore[arg-type]
    except BaseException:
        finish_run(store, run_id, "failed")
        raise
    store.add_daemon_sample(sample, run_id)
    finish_run(store, run_id, "ok")
    return sample
