"""Holdover: how long this clock may run without its references before its interval is wider than a
given half-width.

The interval's half-width `h(T)` if no new evidence arrived for the next T seconds is what
`interval.compute_interval(..., ahead_s=T)` gives: every sample ages by T, the centre moves at the
estimated drift and the bound grows at the growth the evidence supports (measured stability, the
oscillator's wander, or the configured max drift). h is non-decreasing in T, so the holdover to a
width W is found by doubling T until h(T) > W, then bisecting (to HOLDOVER_RESOLUTION of T, at most
MAX_EVALUATIONS evaluations). The evidence's void age caps it: past `void_after_s` there is no
interval at all (`capped`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

HOLDOVER_RESOLUTION = 0.01  # bisect to 1 % of the holdover (or 1 s)
MAX_EVALUATIONS = 64
DEFAULT_HOLDOVER_WIDTH_S = 0.010  # ± 10 ms: the default warn_offset of `timekit check`


@dataclass(frozen=True)
class Holdover:
    """`seconds` until the interval's half-width exceeds `width_s` without references (0: already wider;
    None: no interval now). `capped`: the evidence goes void first, at `seconds`."""

    width_s: float
    seconds: float | None
    capped: bool = False
    half_width_now_s: float | None = None
    reason: str = ""


def find_holdover(half_width_at: Callable[[float], float | None], width_s: float,
                  horizon_s: float) -> Holdover:
    """The holdover to ± `width_s` given `half_width_at(T)` (s, None: no interval T s from now), searched
    up to `horizon_s` (the evidence's remaining life)."""
    now = half_width_at(0.0)
    if now is None:
        return Holdover(width_s, None, reason="no interval now")
    if now > width_s:
        return Holdover(width_s, 0.0, half_width_now_s=now, reason=f"already ±{now:.6g} s")
    horizon_s = max(horizon_s, 0.0)

    def within(t: float) -> bool:
        h = half_width_at(t)
        return h is not None and h <= width_s

    if within(horizon_s):
        return Holdover(width_s, horizon_s, capped=True, half_width_now_s=now,
                        reason=f"the evidence goes void in {horizon_s:.0f} s, still within ±{width_s:g} s")
    lo, hi, evals = 0.0, min(1.0, horizon_s), 2
    while within(hi) and evals < MAX_EVALUATIONS:
        lo, hi, evals = hi, min(hi * 2.0, horizon_s), evals + 1
    while hi - lo > max(1.0, HOLDOVER_RESOLUTION * lo) and evals < MAX_EVALUATIONS:
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if within(mid) else (lo, mid)
        evals += 1
    return Holdover(width_s, lo, half_width_now_s=now,
                    reason=f"±{now:.6g} s now, ±{width_s:g} s after {lo:.0f} s")


def fmt_duration(seconds: float) -> str:
    """3 h 20 min, 12 min 5 s, 42 s: the way `now` and `check` say a holdover."""
    s = int(round(seconds))
    if s >= 86_400:
        return f"{s // 86_400} d {s % 86_400 // 3600} h"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{seconds:.3g} s" if seconds < 10 else f"{s} s"
