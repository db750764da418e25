"""timekit: measure time and its uncertainty; `IntervalClock` is the library's TrueTime clock.

The library's names are loaded on first use (PEP 562), so the command line, which imports
`timekit.cli`, does not pay for the library it does not use.
"""

from typing import TYPE_CHECKING, Any

from timekit.errors import AnalysisError, CollectorError, StoreError, TimekitError, UsageError

if TYPE_CHECKING:
    from timekit.clock.intervalclock import CausalityError, ClockUnknownError, IntervalClock, TimeInterval
    from timekit.clock.lease import Fence, FencingTokens, Lease, LeaseExpired

_LAZY = {**dict.fromkeys(("CausalityError", "ClockUnknownError", "IntervalClock", "TimeInterval"),
                         "timekit.clock.intervalclock"),
         **dict.fromkeys(("Fence", "FencingTokens", "Lease", "LeaseExpired"), "timekit.clock.lease")}


def __getattr__(name: str) -> Any:
    """`timekit.IntervalClock` and the other library names, imported when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'timekit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
