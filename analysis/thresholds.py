"""Default warning/critical thresholds, shared by `timekit check` and `timekit rules`.

Chosen for a server fleet synchronised over a LAN or a good WAN path (milliseconds, not
check_ntp_time's 60 s): a database that orders writes by wall clock cares about a 10 ms error
long before an NTP daemon gives up. Offsets, jitter and uncertainty in seconds; drift in ppm.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from timekit.analysis.plugin_range import PluginRange

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
    # holdover (how long the interval stays within ± the holdover width without references) shorter
    # than this warns / is critical; off by default (one burst's evidence gives minutes, not hours)
    warn_holdover_s: float | None = None
    crit_holdover_s: float | None = None
    # thresholds given in the plugin range syntax (`-w -0.001:0.001`, `@0:0.5`), by field name;
    # a field without one is the plain upper limit `0:value`
    ranges: Mapping[str, PluginRange] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in _PAIRS:
            if "warn_" + name in self.ranges or "crit_" + name in self.ranges:
                continue
            warn, crit = getattr(self, "warn_" + name), getattr(self, "crit_" + name)
            if not (0 <= warn <= crit < float("inf")):  # also false for nan
                raise ValueError(f"thresholds: need 0 <= warn_{name} ({warn}) <= crit_{name} ({crit}), "
                                 "finite")
        for name in ("warn_holdover_s", "crit_holdover_s"):
            v = getattr(self, name)
            if v is not None and not 0 < v < float("inf"):
                raise ValueError(f"thresholds: {name} = {v} s must be positive and finite")
        if (self.warn_holdover_s is not None and self.crit_holdover_s is not None
                and self.crit_holdover_s > self.warn_holdover_s):
            raise ValueError(f"thresholds: need crit_holdover_s ({self.crit_holdover_s}) <= warn_holdover_s "
                             f"({self.warn_holdover_s}): a shorter holdover is worse")
        if not 0 < self.max_age_s < float("inf"):
            raise ValueError(f"thresholds: max_age_s = {self.max_age_s} s must be positive and finite")

    def range_of(self, name: str) -> PluginRange:
        """The range a threshold field (`warn_offset_s`, ...) alerts outside of (or inside, with @)."""
        given = self.ranges.get(name)
        return given if given is not None else PluginRange.upto(getattr(self, name))

    def upper_limits_only(self, what: str) -> None:
        """ValueError unless every range is a plain upper limit (what Prometheus rules can express)."""
        for name, r in self.ranges.items():
            if not r.is_upper_limit:
                raise ValueError(f"{what}: {flag_of(name)} {r.text}: only a "
                                 "plain limit (N or 0:N) can be written as a rule")

    def to_json(self) -> dict[str, Any]:
        """Every threshold as a number, and the ranges given in range syntax as their text."""
        doc: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "ranges"}
        doc["ranges"] = {k: r.perfdata() for k, r in sorted(self.ranges.items())}
        return doc


DEFAULT_THRESHOLDS = Thresholds()
# a drift is known well enough to alert on when its 95 % half-width is at most the warning × this
# (`ServerAssessment.drift_judgeable`, `drift.reported_status`, the Prometheus rules)
DRIFT_GATE_FRACTION = 0.5


def ci_half_ppm(drift_ppm: float | None, ci95_ppm: Sequence[float] | None) -> float | None:
    """Half-width of a drift's 95 % interval, ppm: the larger side (None without a drift)."""
    if drift_ppm is None or not ci95_ppm:
        return None
    return max(ci95_ppm[1] - drift_ppm, drift_ppm - ci95_ppm[0])


def flag_of(field_name: str) -> str:
    """The command-line flag of a threshold field: warn_offset_s -> --warn-offset, warn_stratum ->
    --warn-stratum (the unit suffix is not part of the flag)."""
    return "--" + re.sub(r"_(s|ppm)$", "", field_name).replace("_", "-")
_PLAIN = re.compile(r"^\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*$")


def _flag_value(name: str, value: Any) -> float | PluginRange:
    """A flag's value: a number (a plain limit) or a plugin range; ValueError names the flag."""
    if isinstance(value, PluginRange):
        return value
    if isinstance(value, str) and not _PLAIN.match(value):
        try:
            r = PluginRange.parse(value)
        except ValueError as exc:
            raise ValueError(f"{flag_of(name)}: {exc}") from None
        return r
    number = float(value)
    if name.endswith("stratum"):
        if not (math.isfinite(number) and number == int(number)):
            raise ValueError(f"{flag_of(name)} {value}: not a valid integer")
        return int(number)
    return number


def thresholds_from_flags(**flags: Any) -> Thresholds:
    """Thresholds from flag values (None: the default). ValueError names the value and unit.

    When only one of a warn/crit pair is given, the other default moves out of its way
    (`--warn-offset 0.2` alone raises crit to 0.2 rather than failing warn <= crit).
    """
    base = DEFAULT_THRESHOLDS
    given = {k: v for k, v in flags.items() if v is not None}
    unknown = set(given) - {f.name for f in fields(Thresholds)} | ({"ranges"} & set(given))
    if unknown:
        raise ValueError(f"unknown threshold(s): {', '.join(sorted(unknown))}")
    given = {k: _flag_value(k, v) for k, v in given.items()}
    ranges: dict[str, PluginRange] = {}
    for name, value in list(given.items()):
        if isinstance(value, PluginRange):
            ranges[name] = value
            # the number rules and gauges use: the range's upper limit where it is one
            if value.is_upper_limit:
                given[name] = value.end
            else:
                del given[name]
    for name in _PAIRS:
        w, c = "warn_" + name, "crit_" + name
        if (w in ranges and not ranges[w].is_upper_limit) or (c in ranges and not ranges[c].is_upper_limit):
            continue
        if w in given and c not in given and given[w] > getattr(base, c):
            given[c] = given[w]
        if c in given and w not in given and given[c] < getattr(base, w):
            given[w] = given[c]
    for name, value in given.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{flag_of(name)} {value}: must be a finite number")
    return replace(base, **given, ranges=ranges)
