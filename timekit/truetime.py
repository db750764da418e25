"""`timekit now`: read the clocks, gather the stored evidence, compute the TrueTime interval.

The interval math is pure (`analysis.interval`); this module is the edge that reads
CLOCK_REALTIME/CLOCK_BOOTTIME as one bracketed pair, the boot id and the store.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from timekit.analysis.clock_state import ClockState
from timekit.analysis.interval import (
    DRIFT_SE_MULTIPLIER,
    IntervalEstimate,
    IntervalPolicy,
    ServerEvidence,
    clock_state,
    compute_interval,
)
from timekit.collectors.clocks import boot_id, read_bracketed
from timekit.drift_report import fit_series
from timekit.evidence import Series, load_series
from timekit.units import NS_PER_S

if TYPE_CHECKING:
    from timekit.store import Store

DRIFT_WINDOW = 1024  # newest samples per server that the drift fit sees
LOOKBACK_MARGIN_S = 86_400.0  # read evidence this much older than void_after (wall clock may have moved)


def read_now() -> tuple[int, int]:
    """(CLOCK_REALTIME, CLOCK_BOOTTIME) as one bracketed pair, integer ns."""
    r = read_bracketed(time.CLOCK_BOOTTIME)
    return r.realtime_ns, r.clock_ns


def server_evidence(series: Series, policy: IntervalPolicy, current_boot: str | None) -> ServerEvidence:
    """One server's evidence for the interval: its drift fit plus the samples of this boot."""
    fit = fit_series(series, policy.max_root_distance_s)
    drift = se = None
    if (fit.status == "ok" and fit.drift_ppm is not None and fit.drift_ci95_ppm is not None
            and fit.drift_se_ppm is not None):
        # the estimate's share of the growth must cover the CI's delay-bias term too, which the
        # standard error leaves out: an SE no smaller than the 95 % half-width / 1.96
        half = max(fit.drift_ci95_ppm[1] - fit.drift_ppm, fit.drift_ppm - fit.drift_ci95_ppm[0])
        drift, se = fit.drift_ppm, max(fit.drift_se_ppm, half / 1.96)
        if DRIFT_SE_MULTIPLIER * se > policy.max_drift_ppm:
            # an estimate vaguer than the assumed bound would only widen the interval and move its
            # centre on noise (a 4-query burst): use the bound alone, as ClockBound does
            drift = se = None
    this_boot = (series.boottime_ns >= 0) & np.array([b == current_boot for b in series.boot_id], dtype=bool)
    ev = series.select(this_boot)
    # this boot's samples in boottime order: after a backward wall-clock step, realtime order lies
    ev = ev.select(np.argsort(ev.boottime_ns, kind="stable"))
    return ServerEvidence(ev.server, ev.t_local_ns, ev.boottime_ns, ev.offset_s, ev.root_distance_s,
                          leap=ev.leap, drift_ppm=drift, drift_se_ppm=se)


def _evidence(store: Store, policy: IntervalPolicy, rt_ns: int,
              servers: list[str] | None) -> list[ServerEvidence]:
    since = rt_ns - int((policy.void_after_s + LOOKBACK_MARGIN_S) * NS_PER_S)
    window = max(DRIFT_WINDOW, policy.max_samples_per_server)
    series = load_series(store, since_ns=since, last_per_server=window)
    if servers is not None:
        series = {k: v for k, v in series.items() if k in set(servers)}
    current = boot_id()
    return [server_evidence(s, policy, current) for s in series.values()]


def estimate(store: Store, policy: IntervalPolicy | None = None, *, now: tuple[int, int] | None = None,
             servers: list[str] | None = None) -> tuple[IntervalEstimate, ClockState]:
    """The interval at `now` (default: the clocks now) and the same frozen as a ClockState."""
    policy = policy or IntervalPolicy()
    rt_ns, boot_ns = now if now is not None else read_now()
    evidence = _evidence(store, policy, rt_ns, servers)
    est = compute_interval(evidence, now_realtime_ns=rt_ns, now_boottime_ns=boot_ns, policy=policy)
    return est, clock_state(est, evidence, anchor_boottime_ns=boot_ns, policy=policy)


def interval_from_store(store: Store, policy: IntervalPolicy | None = None, *,
                        now: tuple[int, int] | None = None,
                        servers: list[str] | None = None) -> IntervalEstimate:
    """The interval at `now` (default: the clocks now) from what the store holds."""
    return estimate(store, policy, now=now, servers=servers)[0]


def state_from_store(store: Store, policy: IntervalPolicy | None = None) -> ClockState:
    """The clock state now, from the store (IntervalClock's fallback without a published state)."""
    return estimate(store, policy)[1]


def publish_quietly(store: Store, policy: IntervalPolicy | None = None,
                    state: ClockState | None = None) -> str | None:
    """Publish `state` (or the one computed now under `policy`) next to the store for IntervalClock
    readers. A failure is one warning line on stderr, never fatal: the samples are what matter."""
    import sys

    from timekit.errors import TimekitError
    from timekit.published_state import publish, state_path_for

    try:
        if state is None:
            state = estimate(store, policy)[1]
        publish(state_path_for(store.path), state, boot_id())
    except (TimekitError, OSError) as exc:
        print(f"timekit: warning: clock state not published: {exc}", file=sys.stderr)
        return str(exc)
    return None
