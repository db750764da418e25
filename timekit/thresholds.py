"""Default warning/critical thresholds, shared by `timekit check` and `timekit rules`.

Chosen for a server fleet synchronised over a LAN or a good WAN path (milliseconds, not
check_ntp_time's 60 s): a database that orders writes by wall clock cares about a 10 ms error
long before an NTP daemon gives up. Offsets, jitter and uncertainty in seconds; drift in ppm.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """warn/crit pairs; a metric is judged by its absolute value (stratum: as is)."""

    warn_offset_s: float = 0.010
    crit_offset_s: float = 0.100
    warn_jitter_s: float = 0.005
    crit_jitter_s: float = 0.050
    warn_drift_ppm: float = 100.0
    crit_drift_ppm: float = 500.0
    warn_uncertainty_s: float = 0.050  # interval half-width
    crit_uncertainty_s: float = 0.500
    warn_stratum: int = 8
    crit_stratum: int = 15
    max_age_s: float = 900.0  # newest sample older than this: the store is stale (UNKNOWN)
    warn_pause_s: float = 0.100  # worst pause (hiccup) in the window
    crit_pause_s: float = 1.000

    def __post_init__(self) -> None:
        for name in ("offset_s", "jitter_s", "drift_ppm", "uncertainty_s", "stratum", "pause_s"):
            warn, crit = getattr(self, "warn_" + name), getattr(self, "crit_" + name)
            if not (0 <= warn <= crit < float("inf")):  # also false for nan
                raise ValueError(f"thresholds: need 0 <= warn_{name} ({warn}) <= crit_{name} ({crit}), "
                                 "finite")
        if not 0 < self.max_age_s < float("inf"):
            raise ValueError(f"thresholds: max_age_s = {self.max_age_s} s must be positive and finite")


DEFAULT_THRESHOLDS = Thresholds()
