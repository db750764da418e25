"""Monitoring-plugin threshold ranges (the monitoring-plugins development guidelines, as check_ntp_time
parses its -w/-c): ``[@]start:end``.

    10        alert outside 0..10 (below 0 or above 10)
    10:       alert below 10
    ~:10      alert above 10 (~ is minus infinity)
    10:20     alert outside 10..20
    @10:20    alert inside 10..20 (inclusive)

The ends are inclusive: a value equal to an end is inside the range. A plain number is the same
range as in every plugin (`0:N`), so a plain `-w 0.01` and `-w 0:0.01` judge alike.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^(?P<at>@)?(?:(?P<start>~|{_NUMBER})?(?P<colon>:))?(?P<end>{_NUMBER})?$")


@dataclass(frozen=True)
class PluginRange:
    """`start..end` (inclusive; ±inf for an open end) and whether to alert inside it (`@`)."""

    start: float = 0.0
    end: float = math.inf
    inside: bool = False
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> PluginRange:
        """The range `text` means; ValueError in words for anything the guidelines do not define."""
        raw = str(text).strip()
        m = _RANGE.match(raw.replace(" ", "")) if raw and raw.isascii() else None
        if m is None or (m["end"] is None and m["colon"] is None):
            raise ValueError(f"{text!r} is not a threshold range ([@]start:end, e.g. 0.01, -0.1:0.1, ~:5, "
                             "@0:0.5)")
        start_txt = m["start"]
        start = -math.inf if start_txt == "~" else float(start_txt) if start_txt else 0.0
        end = float(m["end"]) if m["end"] is not None else math.inf
        if math.isnan(start) or math.isnan(end) or math.isinf(start) and start_txt not in (None, "~") \
                or math.isinf(end) and m["end"] is not None:
            raise ValueError(f"{text!r}: range ends must be finite numbers (~ for minus infinity, "
                             "an empty end for plus infinity)")
        if start > end:
            raise ValueError(f"{text!r}: the range's start {start:g} is above its end {end:g}")
        return cls(start, end, bool(m["at"]), raw)

    @classmethod
    def upto(cls, limit: float) -> PluginRange:
        """The plain-number threshold `limit` (`0:limit`): alert above it."""
        return cls(0.0, float(limit), False, f"{limit:g}")

    @property
    def is_upper_limit(self) -> bool:
        """True for `N` / `0:N` (and `~:N`): the range is one upper limit (rules and gauges can use it)."""
        return not self.inside and self.start <= 0.0 and math.isfinite(self.end)

    def alerts(self, value: float) -> bool:
        """Whether `value` is an alert under this range (the guidelines: outside, or inside with @)."""
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def perfdata(self) -> str:
        """The range as written in perfdata's warn/crit fields: as the user gave it when that is plain
        decimals (the guidelines' characters only), else normalised (no exponent)."""
        if self.text and re.fullmatch(r"[-0-9.:~@]+", self.text):
            return self.text
        def num(v: float) -> str:
            text = f"{v:.9f}".rstrip("0").rstrip(".")
            return "0" if text in ("-0", "") else text

        start = "~" if math.isinf(self.start) else num(self.start)
        end = "" if math.isinf(self.end) else num(self.end)
        body = end if start == "0" and end else f"{start}:{end}"
        return ("@" if self.inside else "") + body
