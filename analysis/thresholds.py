"""Default warning/critical thresholds, shared by `timekit check` and `timekit rules`.

Chosen for a server fleet synchronised over a LAN or a good WAN path (milliseconds, not
check_ntp_time's 60 s): a database that orders writes by wall clock cares about a 10 ms error
long before an NTP daemon gives up. Offsets, jitter and uncertainty in seconds; drift in ppm.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

_PAIRS = ("offset_s", "jitter_s", "drift_ppm", "uncertainty_s", "stratum", "pause_s")  # warn_/crit_ pairs


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
        for name in _PAIRS:
            warn, crit = getattr(self, "warn_" + name), getattr(self, "crit_" + name)
            if not (0 <= warn <= crit < float("inf")):  # also false for nan
                raise ValueError(f"thresholds: need 0 <= warn_{name} ({warn}) <= crit_{name} ({crit}), "
                                 "finite")
        if not 0 < self.max_age_s < float("inf"):
            raise ValueError(f"thresholds: max_age_s = {self.max_age_s} s must be positive and finite")


DEFAULT_THRESHOLDS = Thresholds()


def thresholds_from_flags(**flags: Any) -> Thresholds:
    """Thresholds from flag values (None: the default). ValueError names the value and unit.

    When only one of a warn/crit pair is given, the other default moves out of its way
    (`--warn-offset 0.2` alone raises crit to 0.2 rather than failing warn <= crit).
    """
    base = DEFAULT_THRESHOLDS
    given = {k: v for k, v in flags.items() if v is not None}
    unknown = set(given) - {f.name for f in fields(Thresholds)}
    if unknown:
        raise ValueError(f"unknown threshold(s): {', '.join(sorted(unknown))}")
    for name in _PAIRS:
        w, c = "warn_" + name, "crit_" + name
        if w in given and c not in given and given[w] > getattr(base, c):
            given[c] = given[w]
        if c in given and w not in given and given[c] < getattr(base, w):
            given[w] = given[c]
    return replace(base, **given)
