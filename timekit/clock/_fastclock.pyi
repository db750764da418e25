from collections.abc import Callable
from typing import Any

class Hot:
    """IntervalClock.now()'s hot path for one published state (see _fastclock.c)."""

    def __init__(self, gen: Any, gen_seen: int, a_bt: int, e0: int, l0: int, r_lo: float, r_hi: float,
                 lo_d: int, hi_d: int, sync_bt: int, void_bt: int, leap_bt: int, anchor_unknown: bool,
                 interval_type: type, slow: Callable[[], Any]) -> None: ...
    def __call__(self) -> Any: ...
    def at(self, bt: int, rt: int) -> Any | None: ...
