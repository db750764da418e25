"""Leases judged by the interval clock, and fencing tokens that only grow (DDIA ch. 8).

A process paused past its lease (GC, SIGSTOP, VM suspend) must find out before it acts, and
even if it acted anyway, the resource must refuse its stale token:

    tokens = FencingTokens(db)                  # the lock service's side
    lease = Lease(clock, 10.0, token=tokens.next("orders"))
    ...
    lease.ensure()                              # raises LeaseExpired if it may have run out
    if not Fence(db).accept("orders", lease.token):   # the storage's side
        ...                                     # someone newer holds it: do not write

Expiry is checked twice, and both must agree it has not passed: on the interval clock
(`expiry_ns` is the earliest the lease could have started plus its duration, so the true
expiry is never earlier), and on CLOCK_BOOTTIME (counts suspend, never steps), shortened by
the maximum drift, so a wall-clock step cannot lengthen a lease either.
"""

from __future__ import annotations

import time
from pathlib import Path

from timekit.clock.intervalclock import ClockUnknownError, IntervalClock, TimeInterval
from timekit.errors import TimekitError
from timekit.units import NS_PER_S, PPM

DEFAULT_MAX_DRIFT_PPM = 200.0


class LeaseExpired(TimekitError):
    """The lease may have run out: do not act on it."""


class Lease:
    """A lease of `duration_s` requested at `requested` (default: now) carrying a fencing token."""

    def __init__(self, clock: IntervalClock, duration_s: float, *, token: int | None = None,
                 requested: TimeInterval | None = None, max_drift_ppm: float = DEFAULT_MAX_DRIFT_PPM) -> None:
        if not 0 < duration_s < 1e9:
            raise ValueError(f"lease duration {duration_s} s is out of range")
        boot_now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        start = requested if requested is not None else clock.now()
        if start.uncertainty_s == float("inf"):
            raise ClockUnknownError("no clock evidence: a lease's expiry cannot be judged")
        self.clock = clock
        self.token = token
        self.duration_s = duration_s
        self.expiry_ns = start.earliest_ns + round(duration_s * NS_PER_S)
        self._boot_deadline_ns = boot_now + int(duration_s * NS_PER_S * (1 - max_drift_ppm * PPM))

    def remaining_s(self) -> float:
        """Seconds the lease is certainly still held (≤ 0: it may have expired)."""
        boot_left = (self._boot_deadline_ns - time.clock_gettime_ns(time.CLOCK_BOOTTIME)) / NS_PER_S
        clock_left = (self.expiry_ns - self.clock.now().latest_ns) / NS_PER_S
        return min(boot_left, clock_left)

    def valid(self) -> bool:
        """True only while the lease is certainly held."""
        return self.remaining_s() > 0

    def ensure(self) -> None:
        """Raise LeaseExpired unless the lease is certainly held right now."""
        left = self.remaining_s()
        if left <= 0:
            raise LeaseExpired(f"lease (token {self.token}) may have expired {-left:.6f} s ago")


class FencingTokens:
    """Issues tokens that only grow, per resource, from the store (one IMMEDIATE transaction each)."""

    def __init__(self, db: Path | str | None = None) -> None:
        self.db = db

    def next(self, resource: str) -> int:
        from timekit.store.database import Store

        with Store.open(self.db) as store:
            return store.next_fencing_token(resource)


class Fence:
    """The protected resource's side: refuses any token lower than one it already accepted."""

    def __init__(self, db: Path | str | None = None) -> None:
        self.db = db

    def accept(self, resource: str, token: int | None) -> bool:
        """Whether a write with `token` may proceed; no token (a lease taken without one) never may."""
        from timekit.store.database import Store

        if token is None:
            return False

        with Store.open(self.db) as store:
            return store.fence_accept(resource, token)
