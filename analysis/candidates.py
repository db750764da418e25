"""Which references the interval uses: the best MAX_SOURCES by their newest sample, as NTP's `maxclock`.

A fleet-sized store (thousands of references) must not cost a drift fit and a bound per
reference every time the clock state is published: like ntpd (`tos maxclock 10`), the interval
is computed from a bounded set of candidates, chosen from each reference's newest usable sample
alone: this boot's, not void, ranked by how wide its bar is now (root distance grown at the
assumed drift since the sample), narrowest first, ties by name. With MAX_SOURCES or fewer
references (every ordinary set-up) all of them are candidates; the majority rule then works
among the candidates, and a reference outside them is not judged (truechimer: unknown).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from timekit.units import NS_PER_S, PPM

MAX_SOURCES = 16  # ntpd's maxclock is 10; more keeps a majority robust, few enough to stay cheap


@dataclass(frozen=True)
class NewestSample:
    """One reference's newest usable sample: when (local realtime and boottime ns, its boot) and how
    sure (root distance, s; inf when a part is unknown)."""

    server: str
    t_local_ns: int
    boottime_ns: int | None
    boot_id: str | None
    root_distance_s: float


def interval_candidates(newest: Sequence[NewestSample], *, now_boottime_ns: int, boot_id: str | None,
                        max_drift_ppm: float, void_after_s: float, max_root_distance_s: float,
                        limit: int = MAX_SOURCES) -> list[str]:
    """The names of the references the interval uses, best first (see the module doc)."""
    ranked: list[tuple[float, str]] = []
    for n in newest:
        if n.boot_id != boot_id or n.boottime_ns is None or n.boottime_ns < 0:
            continue  # another boot's boottime says nothing about now
        age_s = max(0.0, (now_boottime_ns - n.boottime_ns) / NS_PER_S)
        if age_s > void_after_s or not (0 <= n.root_distance_s <= max_root_distance_s):
            continue
        width = n.root_distance_s + max_drift_ppm * PPM * age_s
        if math.isfinite(width):
            ranked.append((width, n.server))
    ranked.sort()
    return [name for _, name in ranked[:limit]]
