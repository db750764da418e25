"""One reference's usable samples as arrays, and the one drift fit every answer uses.

A `Series` is what the store's evidence reader hands the analysis (instants int64 ns,
offsets/delays float s); `fit_series` is the single place a server's drift is fitted from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from timekit.analysis.drift import DriftFit, fit_drift
from timekit.analysis.interval import IntervalPolicy
from timekit.units import NS_PER_S


@dataclass(frozen=True)
class Series:
    """One server's ok samples, oldest first. `boottime_ns` is -1 where unknown (older rows)."""

    server: str
    t_local_ns: np.ndarray  # int64
    boottime_ns: np.ndarray  # int64, -1 = not recorded
    boot_id: np.ndarray  # object (str or None)
    offset_s: np.ndarray
    delay_s: np.ndarray
    root_distance_s: np.ndarray  # delay/2 + root delay/2 + root dispersion (inf: unknown part)
    leap: np.ndarray  # int8
    stratum: np.ndarray | None = None  # int (0: not recorded)
    monotonic_ns: np.ndarray | None = None  # int64 at T4, -1 = not recorded
    raw_ns: np.ndarray | None = None  # int64 CLOCK_MONOTONIC_RAW at T4, -1 = not recorded

    def __len__(self) -> int:
        return len(self.t_local_ns)

    def select(self, mask: np.ndarray) -> Series:
        """The samples where `mask` (bool or index array) selects."""
        return Series(self.server, self.t_local_ns[mask], self.boottime_ns[mask], self.boot_id[mask],
                      self.offset_s[mask], self.delay_s[mask], self.root_distance_s[mask], self.leap[mask],
                      None if self.stratum is None else self.stratum[mask],
                      None if self.monotonic_ns is None else self.monotonic_ns[mask],
                      None if self.raw_ns is None else self.raw_ns[mask])


# realtime - boottime moving less is read noise, not a step: the interval's own step tolerance
WALL_STEP_TOLERANCE_NS = round(IntervalPolicy.step_tolerance_s * NS_PER_S)


def on_the_wall_clock_of_now(series: Series, *, now_realtime_ns: int, now_boottime_ns: int,
                             boot_id: str | None) -> Series:
    """`series` with the local wall clock's steps taken out, in time order.

    Each sample of this boot is re-expressed on the wall clock as it reads now: where realtime −
    boottime has moved more than 1 ms since the sample (settimeofday, an NTP step: FAULTS C1, C2),
    its instant moves by that much and its offset (reference − local) the other way, as the interval
    does (`interval.server_bound`). Jitter, the drift fit and "the newest offset" are then about the
    references, not about a step of ours. Samples of other boots, or without boottime, stay as taken.
    """
    moved = (now_realtime_ns - now_boottime_ns) - (series.t_local_ns - series.boottime_ns)  # ns
    here = ((series.boottime_ns >= 0) & np.array([b == boot_id for b in series.boot_id], dtype=bool)
            & (np.abs(moved) > WALL_STEP_TOLERANCE_NS))
    if not here.any():
        return series
    shift = np.where(here, moved, 0)
    out = Series(series.server, series.t_local_ns + shift, series.boottime_ns, series.boot_id,
                 series.offset_s - shift / NS_PER_S, series.delay_s, series.root_distance_s, series.leap,
                 series.stratum, series.monotonic_ns, series.raw_ns)
    order = np.argsort(out.t_local_ns, kind="stable")
    return out.select(order) if np.any(np.diff(out.t_local_ns) < 0) else out


def fit_series(series: Series, max_root_distance_s: float = IntervalPolicy.max_root_distance_s) -> DriftFit:
    """The drift fit of one server's usable samples (root distance within bounds, N26), in time order."""
    s = series.select(series.root_distance_s <= max_root_distance_s)
    if np.any(np.diff(s.t_local_ns) < 0):  # wall clock stepped back: the fit needs time order
        s = s.select(np.argsort(s.t_local_ns, kind="stable"))
    return fit_drift(s.t_local_ns, s.offset_s, s.delay_s, s.root_distance_s)
