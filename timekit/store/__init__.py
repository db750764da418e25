"""The store: the SQLite database of samples, its evidence reader, and the files kept beside it.

`database` (Store: every sample and attempt, committed as it completes), `evidence` (one
snapshot of a window of the store, the input of the assessment), `published_state` (the clock
state IntervalClock readers map, `<db>.clock`), `runlock` (`<db>.lock`: one collect at a time).
"""

from timekit.store.database import Store

__all__ = ["Store"]
