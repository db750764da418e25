"""Read the store once into `Evidence`, the one input of `analysis.assessment.assess`.

The I/O edge of the analysis layer: `analysis/` never reads the store or the clocks, this
module does. The store is read in one snapshot and the clocks *after* it, so no committed
sample can look newer than the reading it is judged at (a `timekit daemon` committing between
a clock read and a store read made `timekit now` see evidence ~1 ms in the future, FAULTS Q6).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from timekit.analysis.assessment import Attempts, Evidence
from timekit.analysis.candidates import NewestSample, interval_candidates
from timekit.analysis.interval import IntervalPolicy
from timekit.analysis.quarantine import NodeHealth
from timekit.analysis.series import Series
from timekit.analysis.verdict import DEFAULT_WINDOW_S
from timekit.collectors.clocks import boot_id, read_bracketed, read_mono_raw
from timekit.collectors.leap_seconds import known_leaps
from timekit.units import NS_PER_S

if TYPE_CHECKING:
    from timekit.store.database import Store

SERIES_COLUMNS = ("server", "t_local_ns", "boottime_ns", "boot_id", "offset_s", "delay_s",
                  "root_delay_s", "root_dispersion_s", "leap", "stratum", "monotonic_ns", "raw_ns")
FIT_WINDOW = 256  # newest usable samples per server the drift fit sees: 4 h at 1/min, 64 s at 4 Hz
LOOKBACK_MARGIN_S = 86_400.0  # read evidence this much older than void_after (wall clock may have moved)


def read_now() -> tuple[int, int]:
    """(CLOCK_REALTIME, CLOCK_BOOTTIME) as one bracketed pair, integer ns."""
    r = read_bracketed(time.CLOCK_BOOTTIME)
    return r.realtime_ns, r.clock_ns


def read_now_with_kernel() -> tuple[int, int, int, int]:
    """`read_now()` and CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW beside it: a `now` that lets the interval
    follow the kernel's slews since the evidence (a caller that scores answers at a known instant)."""
    rt, boot = read_now()
    mono, raw = read_mono_raw()  # one pair: a preemption between them would read as a kernel slew
    return rt, boot, mono, raw


def series_from_rows(rows: Sequence[tuple[Any, ...]]) -> dict[str, Series]:
    """Rows of SERIES_COLUMNS ordered by server then time -> one Series per server (sorted by name)."""
    out: dict[str, Series] = {}
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i][0] != rows[start][0]:
            out[rows[start][0]] = _series(rows[start:i])
            start = i
    return out


def load_series(store: Store, *, server: str | None = None, since_ns: int | None = None,
                last_per_server: int | None = None) -> dict[str, Series]:
    """Usable samples per server (sorted by name), from one query."""
    return series_from_rows(store.ok_rows(SERIES_COLUMNS, server=server, since_ns=since_ns,
                                          last_per_server=last_per_server))


def _series(rows: Sequence[tuple[Any, ...]]) -> Series:
    cols = list(zip(*rows, strict=True))

    def floats(j: int) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in cols[j]], dtype=np.float64)

    delay = floats(5)
    # delay/2 + root delay/2 + root dispersion; an unknown part makes the sample vouch for nothing
    root_distance = delay / 2 + floats(6) / 2 + floats(7)
    root_distance[np.isnan(root_distance)] = np.inf
    return Series(
        server=rows[0][0],
        t_local_ns=np.array(cols[1], dtype=np.int64),
        boottime_ns=np.array([-1 if v is None else v for v in cols[2]], dtype=np.int64),
        boot_id=np.array(cols[3], dtype=object),
        offset_s=floats(4),
        delay_s=delay,
        root_distance_s=root_distance,
        leap=np.array([0 if v is None else v for v in cols[8]], dtype=np.int8),
        stratum=np.array([0 if v is None else v for v in cols[9]], dtype=np.int64),
        monotonic_ns=np.array([-1 if v is None else v for v in cols[10]], dtype=np.int64),
        raw_ns=np.array([-1 if v is None else v for v in cols[11]], dtype=np.int64),
    )


def _until(s: Series, current_boot: str | None, boot_ns: int) -> Series:
    """`s` without this boot's samples taken after boottime `boot_ns`: evidence at an instant is what
    was measured before it (a sample committed between a given reading and the store read)."""
    later = (s.boottime_ns > boot_ns) & np.array([b == current_boot for b in s.boot_id], dtype=bool)
    return s.select(~later) if later.any() else s


def read_evidence(store: Store, policy: IntervalPolicy | None = None, *, window_s: float = DEFAULT_WINDOW_S,
                  since_ns: int | None = None, servers: Sequence[str] | None = None,
                  now: tuple[int, ...] | None = None, per_server: int | None = FIT_WINDOW,
                  interval_only: bool = False) -> Evidence:
    """Everything the store says for an assessment at `now` (default: the clocks, read after the store).

    `since_ns`: the oldest sample to fit (default: what the interval can still use, `void_after_s`
    plus a day); `per_server`: each server's newest N usable samples (None: all since `since_ns`);
    `window_s`: attempts (loss, last error) and pauses are counted over this long; `servers`: only these.
    `interval_only`: just what the interval needs (its candidates' samples), for publishing the
    clock state after a sweep: one row per server plus at most MAX_SOURCES series, whatever the fleet.
    """
    policy = policy or IntervalPolicy()
    rough_rt, rough_boot = now[:2] if now is not None else read_now()  # bounds the queries, ranks candidates
    window_start = rough_rt - int(window_s * NS_PER_S)
    if since_ns is None:
        since_ns = rough_rt - int((policy.void_after_s + LOOKBACK_MARGIN_S) * NS_PER_S)
    only = set(servers) if servers is not None else None
    current_boot = boot_id()
    attempt_rows: list[tuple[Any, ...]] = []
    health_rows: list[Any] = []
    cluster_rows: list[Any] = []
    peers: list[Any] = []
    pauses: list[dict[str, Any]] = []
    suspends: list[Any] = []
    last_check = None
    daemon = None
    with store.snapshot():
        newest = [NewestSample(r.server, r.t_local_ns, r.boottime_ns, r.boot_id,
                               math.inf if r.root_distance_s is None else r.root_distance_s)
                  for r in store.newest_ok_rows() if only is None or r.server in only]
        candidates = interval_candidates(newest, now_boottime_ns=rough_boot, boot_id=current_boot,
                                         max_drift_ppm=policy.max_drift_ppm, void_after_s=policy.void_after_s,
                                         max_root_distance_s=policy.max_root_distance_s)
        if interval_only:
            series = {}
            for name in candidates:
                series.update(load_series(store, server=name, since_ns=since_ns, last_per_server=per_server))
        else:
            one = next(iter(only)) if only is not None and len(only) == 1 else None
            series = load_series(store, server=one, since_ns=since_ns, last_per_server=per_server)
            attempt_rows = store.attempt_rows(["server", "ok", "error"], server=one, since_ns=window_start,
                                              by_time=True)
            health_rows = store.node_health_rows()
            cluster_rows = store.cluster_health_rows()
            peers = store.newest_peer_readings()
            # when the last skew check ran (against the references, or against the peers)
            last_check = max((r.updated_ns for r in (*health_rows, *cluster_rows)), default=None)
            pause_from = window_start if last_check is None else min(window_start, last_check)
            pauses = store.pause_rows(since_ns=pause_from)
            suspends = ([e for e in store.clock_events(since_ns=last_check) if e.kind == "suspend"]
                        if last_check is not None else [])
            daemon = next(iter(store.daemon_samples(newest=1)), None)
    # after the store: no sample from the future; monotonic and raw beside them, for the kernel's slews
    # (a given `now` of two clocks has none: then no slew is followed)
    mono_ns: int | None = None
    raw_ns: int | None = None
    if now is None:
        rt_ns, boot_ns, mono_ns, raw_ns = read_now_with_kernel()
    elif len(now) == 4:
        rt_ns, boot_ns, mono_ns, raw_ns = now
    else:
        rt_ns, boot_ns = now[0], now[1]
    series = {k: _until(v, current_boot, boot_ns) for k, v in series.items()}
    counts: dict[str, list[int]] = {}
    last_error: dict[str, str | None] = {}
    for server, ok, error in attempt_rows:
        c = counts.setdefault(server, [0, 0])
        c[0] += 1
        c[1] += bool(ok)
        last_error[server] = None if ok else (error or "unknown")
    attempts = {k: Attempts(n, n_ok, last_error[k]) for k, (n, n_ok) in counts.items()}
    if only is not None:
        series = {k: v for k, v in series.items() if k in only}
        attempts = {k: v for k, v in attempts.items() if k in only}
    health = {r.node: NodeHealth(r.node, r.status, r.bad_streak, r.good_streak, r.since_ns, r.last_offset_s)
              for r in health_rows}
    since_check = [p for p in pauses if last_check is not None and p["t_local_ns"] >= last_check]
    return Evidence(
        realtime_ns=rt_ns, boottime_ns=boot_ns, boot_id=current_boot, window_s=window_s, series=series,
        attempts=attempts, health=health, pauses=[p for p in pauses if p["t_local_ns"] >= window_start],
        newest_ok_ns=max((n.t_local_ns for n in newest), default=None), last_check_ns=last_check,
        pause_max_since_check_s=max((float(p["max_s"]) for p in since_check), default=0.0),
        suspend_since_check_s=suspends[-1].magnitude_s if suspends else None,
        candidates=tuple(candidates), interval_only=interval_only, monotonic_ns=mono_ns, raw_ns=raw_ns,
        daemon=daemon, leap_seconds_ns=known_leaps(), peers=tuple(peers),
        cluster_health={r.node: NodeHealth(r.node, r.status, r.bad_streak, r.good_streak, r.since_ns,
                                           r.last_offset_s) for r in cluster_rows})
