"""The library: `IntervalClock` (TrueTime-style intervals on a hot path) and `Lease`/fencing on it."""
