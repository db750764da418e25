"""A holdover (`analysis.holdover.Holdover`) as JSON and in words, for `now`, `check`, `analyze stability`
and the report: "3 h 20 min to ±10.000 ms"."""

from __future__ import annotations

from typing import Any

from timekit.analysis.holdover import Holdover, fmt_duration
from timekit.units import fmt_s


def holdover_doc(h: Holdover | None) -> dict[str, Any] | None:
    """seconds (None: no interval), the half-width it runs to, whether the evidence's void age cut it."""
    if h is None:
        return None
    return {"seconds": h.seconds, "width_s": h.width_s, "capped": h.capped,
            "half_width_now_s": h.half_width_now_s, "reason": h.reason}


def holdover_words(h: dict[str, Any] | None) -> str:
    """'3 h 20 min to ±10.000 ms' (or why there is none) from `holdover_doc`'s JSON."""
    if h is None or h.get("seconds") is None:
        return "none (no interval)"
    width = fmt_s(h["width_s"], signed=False)
    if h["seconds"] == 0:
        return f"none: already wider than ±{width}"
    more = " (then the evidence goes void)" if h.get("capped") else ""
    return f"{fmt_duration(h['seconds'])} to ±{width}{more}"
