"""timekit: measure time and its uncertainty; `IntervalClock` is the library's TrueTime clock."""

from timekit.clock.intervalclock import CausalityError, ClockUnknownError, IntervalClock, TimeInterval
from timekit.clock.lease import Fence, FencingTokens, Lease, LeaseExpired
from timekit.errors import AnalysisError, CollectorError, StoreError, TimekitError, UsageError

__all__ = [
    "AnalysisError",
    "CausalityError",
    "ClockUnknownError",
    "CollectorError",
    "Fence",
    "FencingTokens",
    "IntervalClock",
    "Lease",
    "LeaseExpired",
    "StoreError",
    "TimeInterval",
    "TimekitError",
    "UsageError",
]
