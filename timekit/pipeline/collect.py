"""`timekit collect`: one cron-sized run of everything a config names, under the run lock."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timekit.collectors.ntp_client import QueryPlan
from timekit.config import load_config
from timekit.pipeline.sampling import (
    ClockRun,
    NtpRun,
    due_servers,
    realtime_ns,
    sample_clocks_run,
    sample_ntp,
)
from timekit.settings import db_path
from timekit.store.database import Store
from timekit.store.runlock import run_lock
from timekit.units import NS_PER_S


@dataclass
class CollectResult:
    ntp: NtpRun
    clocks: ClockRun | None
    budget_exceeded: bool
    start_delay_s: float = 0.0  # the random start jitter slept before anything else
    pauses: list[Any] = field(default_factory=list)  # the pause meter's intervals (PauseInterval)
    skew: Any = None  # the committed skew check (SkewReport) when NTP samples were taken
    deleted: int = 0  # rows the [store] keep_days retention removed
    daemon: Any = None  # the host's time daemon's reading (DaemonSample), None: not read or none answers
    daemon_error: str | None = None  # why a daemon named in [daemon] kind could not be read

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"samples": self.ntp.samples, "skipped": self.ntp.skipped,
                               "peers": [vars(r) for r in self.ntp.peers],
                               "budget_exceeded": self.budget_exceeded, "start_delay_s": self.start_delay_s}
        if self.clocks is not None:
            doc["clocks"] = self.clocks.report
            doc["kernel"] = self.clocks.kernel
        doc["pauses"] = self.pauses
        doc["skew"] = self.skew.to_json() if self.skew is not None else None
        doc["deleted"] = self.deleted
        doc["daemon"] = self.daemon.to_dict() if self.daemon is not None else None
        doc["daemon_error"] = self.daemon_error
        return doc


def collect(config_path: Path, db: Path | None, wait_s: float = 0.0) -> CollectResult:
    """Load config, take the lock (or raise LockedError), sample NTP then clocks, store all."""
    config = load_config(config_path)
    store_path = db_path(db)
    # FAULTS S15: a fleet started by cron at :00 must not hit its servers in one burst
    delay_s = random.uniform(0.0, config.start_jitter_s) if config.start_jitter_s > 0 else 0.0
    if delay_s:
        time.sleep(delay_s)
    started = time.monotonic()
    with run_lock(store_path, wait_s), Store.open(store_path) as store:
        due, skipped = due_servers(store, config, realtime_ns())
        plan = QueryPlan(count=config.count, interval_s=config.interval_s, timeout_s=config.timeout_s,
                         nts_ca=config.nts_ca)
        # the cluster's peers every run (no poll floor: they are the cluster's own servers)
        ntp = (sample_ntp(store, due, plan, command="collect", budget_s=config.budget_s, peers=config.peers)
               if due or config.peers else NtpRun())
        ntp.skipped = skipped
        clocks = None
        pauses: list[Any] = []
        remaining = config.budget_s - (time.monotonic() - started)
        if config.clocks_enabled and remaining > 0:
            clocks = sample_clocks_run(store, min(config.clocks_duration_s, remaining),
                                       config.clocks_rate_hz, command="collect")
        remaining = config.budget_s - (time.monotonic() - started)
        if config.pauses_enabled and remaining > 2 * config.pauses_resolution_s:
            from timekit.pipeline.sampling import sample_pauses_run

            duration = min(config.pauses_duration_s, remaining)
            per = max(config.pauses_resolution_s, min(config.pauses_interval_s, duration))
            pauses = sample_pauses_run(store, duration, resolution_s=config.pauses_resolution_s,
                                       interval_s=per, command="collect")
        daemon, daemon_error = None, None
        if config.daemon_kind != "none":  # right after the NTP samples: judged against them
            from timekit.errors import CollectorError
            from timekit.pipeline.sampling import sample_daemon_run

            try:
                kind = None if config.daemon_kind == "auto" else config.daemon_kind
                daemon = sample_daemon_run(store, kind, config.chronyc_socket, command="collect daemon")
            except CollectorError as e:  # auto: a host without a daemon is no error (it is in the JSON)
                daemon_error = str(e) if config.daemon_kind != "auto" else None
        skew = None
        if ntp.samples or ntp.peers:
            from timekit.pipeline.assess import publish_quietly
            from timekit.pipeline.skewcheck import run_skew_check
            from timekit.settings import policy

            pol = policy(config_path)
            # the scheduled job is where quarantine state advances (`analyze skew` only looks)
            skew = run_skew_check(store, pol, hook=config.skew.get("hook"), commit=True,
                                  references_sampled=bool(ntp.samples),
                                  peers=[p.name for p in config.peers], peers_sampled=bool(ntp.peers))
            publish_quietly(store, pol)
        deleted = 0
        if config.keep_days is not None:  # retention, in bounded batches (Store.delete_older_than)
            deleted = store.delete_older_than(realtime_ns() - round(config.keep_days * 86_400 * NS_PER_S))
        return CollectResult(ntp, clocks, ntp.budget_exceeded, delay_s, pauses, skew, deleted, daemon,
                             daemon_error)
