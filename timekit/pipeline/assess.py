"""The pipeline's entry: read the store once, assess once, and publish the clock state.

`assess_store` is what every command calls (`timekit now`, `check`, the metrics, `report`,
`analyze drift`/`skew`); `publish_quietly` freezes an assessment's interval next to the store
for IntervalClock readers. The rules are pure (`analysis.assessment`), the reads are in
`timekit.store.evidence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from timekit.address import NTS_SCHEME
from timekit.analysis.assessment import Assessment, Policy, assess
from timekit.analysis.verdict import DEFAULT_WINDOW_S
from timekit.store.evidence import FIT_WINDOW, read_evidence, read_now, read_now_with_kernel

if TYPE_CHECKING:
    from timekit.analysis.clock_state import ClockState
    from timekit.store.database import Store

__all__ = ["assess_store", "publish_quietly", "read_now", "read_now_with_kernel"]


def assess_store(store: Store, policy: Policy | None = None, *, servers: Sequence[str] | None = None,
                 now: tuple[int, ...] | None = None, window_s: float = DEFAULT_WINDOW_S,
                 since_ns: int | None = None, per_server: int | None = FIT_WINDOW,
                 interval_only: bool = False) -> Assessment:
    """The one assessment of the store at `now` (default: the clocks, read after the store);
    `interval_only`: just the interval and the state (no per-server figures), in time bounded by
    the interval's candidates, not by the number of servers."""
    policy = policy or Policy()
    if policy.interval.authenticated_only:  # NTS servers only: their samples are all authenticated
        servers = [s for s in (store.servers() if servers is None else servers) if s.startswith(NTS_SCHEME)]
    ev = read_evidence(store, policy.interval, window_s=window_s, since_ns=since_ns, servers=servers, now=now,
                       per_server=per_server, interval_only=interval_only)
    return assess(ev, policy)


def publish_quietly(store: Store, policy: Policy | None = None,
                    state: ClockState | None = None) -> str | None:
    """Publish `state` (or the one assessed now under `policy`) next to the store for IntervalClock
    readers. A failure is one warning line on stderr, never fatal: the samples are what matter.

    When the fresh evidence lies outside what the state it replaces allowed (`disruption_ns`: the
    clocks lost track, as in a VM pause), the store gets a `disruption` clock event and stderr one
    warning line: intervals served before this one may not have held the truth.
    """
    import sys

    from timekit.analysis.clock_state import disruption_ns
    from timekit.collectors.clocks import boot_id
    from timekit.errors import TimekitError
    from timekit.store.published_state import publish_over, state_path_for
    from timekit.units import NS_PER_S

    try:
        if state is None:
            state = assess_store(store, policy, interval_only=True).state
        if state is not None:
            _, previous = publish_over(state_path_for(store.path), state, boot_id(), keep_newer=True)
            off_ns = None if previous is None else disruption_ns(previous, state)
            if off_ns is not None:
                print(f"timekit: warning: the references' time is {off_ns / NS_PER_S:+.6f} s outside the "
                      "interval published before (the clocks lost track: a VM pause or migration?); "
                      "intervals served until now may have been wrong", file=sys.stderr)
                if not store.readonly:
                    store.add_clock_rows([], [dict(kind="disruption", t_local_ns=state.anchor_realtime_ns,
                                                   magnitude_s=off_ns / NS_PER_S)])
    except (TimekitError, OSError) as exc:
        print(f"timekit: warning: clock state not published: {exc}", file=sys.stderr)
        return str(exc)
    return None
