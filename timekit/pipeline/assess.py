"""The pipeline's entry: read the store once, assess once, and publish the clock state.

`assess_store` is what every command calls (`timekit now`, `check`, the metrics, `report`,
`analyze drift`/`skew`); `publish_quietly` freezes an assessment's interval next to the store
for IntervalClock readers. The rules are pure (`analysis.assessment`), the reads are in
`timekit.store.evidence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from timekit.analysis.assessment import Assessment, Policy, assess
from timekit.analysis.verdict import DEFAULT_WINDOW_S
from timekit.store.evidence import FIT_WINDOW, read_evidence, read_now

if TYPE_CHECKING:
    from timekit.analysis.clock_state import ClockState
    from timekit.store.database import Store

__all__ = ["assess_store", "publish_quietly", "read_now"]


def assess_store(store: Store, policy: Policy | None = None, *, servers: Sequence[str] | None = None,
                 now: tuple[int, int] | None = None, window_s: float = DEFAULT_WINDOW_S,
                 since_ns: int | None = None, per_server: int | None = FIT_WINDOW,
                 interval_only: bool = False) -> Assessment:
    """The one assessment of the store at `now` (default: the clocks, read after the store);
    `interval_only`: just the interval and the state (no per-server figures), in time bounded by
    the interval's candidates, not by the number of servers."""
    policy = policy or Policy()
    ev = read_evidence(store, policy.interval, window_s=window_s, since_ns=since_ns, servers=servers, now=now,
                       per_server=per_server, interval_only=interval_only)
    return assess(ev, policy)


def publish_quietly(store: Store, policy: Policy | None = None,
                    state: ClockState | None = None) -> str | None:
    """Publish `state` (or the one assessed now under `policy`) next to the store for IntervalClock
    readers. A failure is one warning line on stderr, never fatal: the samples are what matter."""
    import sys

    from timekit.collectors.clocks import boot_id
    from timekit.errors import TimekitError
    from timekit.store.published_state import publish, state_path_for

    try:
        if state is None:
            state = assess_store(store, policy, interval_only=True).state
        if state is not None:
            publish(state_path_for(store.path), state, boot_id(), keep_newer=True)
    except (TimekitError, OSError) as exc:
        print(f"timekit: warning: clock state not published: {exc}", file=sys.stderr)
        return str(exc)
    return None
