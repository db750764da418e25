"""timekit: measure time and its uncertainty; `IntervalClock` is the library's TrueTime clock."""

from timekit.errors import AnalysisError, CollectorError, StoreError, TimekitError, UsageError
from timekit.intervalclock import CausalityError, ClockUnknownError, IntervalClock, TimeInterval
from timekit.lease import Fence, FencingTokens, Lease, LeaseExpired

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
