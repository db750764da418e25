"""Per-server good-citizenship state: kiss-o'-death holds, poll floors (persisted in the store).

RFC 8633 §5.4 and chrony: a KoD RATE raises our interval for that server (capped at
2**13 s); DENY/RSTR stop us querying it until an operator resets it or a day passes.
A KoD with a bad origin never reaches here (the packet check rejects it first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from timekit.units import NS_PER_S

if TYPE_CHECKING:
    from timekit.collectors.nts import NtsSession

KOD_MIN_BACKOFF_S = 16.0
KOD_MAX_BACKOFF_S = float(2**13)
DENY_HOLD_S = 86_400.0
MAX_TRUSTED_POLL = 13  # never adopt a KoD poll field above 2**13 s (N16)


@dataclass(slots=True)
class ServerState:
    """What we remember about one server between runs. Instants are CLOCK_REALTIME ns."""

    server: str
    srtt_s: float | None = None
    rttvar_s: float | None = None
    rto_s: float | None = None
    hold_until_ns: int = 0
    hold_reason: str | None = None  # 'kod_rate' | 'kod_deny' | 'kod_rstr'
    kod_backoff_s: float = 0.0
    last_query_ns: int = 0
    nts: NtsSession | None = None  # an NTS server's keys and cookies (kept apart: `<db>.nts`, 0600)

    def held(self, now_ns: int) -> Literal["rate_limited", "denied"] | None:
        """Error code to record instead of querying now ('rate_limited'/'denied'), or None."""
        if self.hold_reason is None or now_ns >= self.hold_until_ns:
            return None
        return "rate_limited" if self.hold_reason == "kod_rate" else "denied"

    def on_kod(self, code: str, poll: int, now_ns: int) -> None:
        """Apply an authentic kiss-o'-death: RATE backs off, DENY/RSTR hold for a day."""
        if code == "kod_rate":
            asked_s = float(2 ** min(max(poll, 0), MAX_TRUSTED_POLL))
            self.kod_backoff_s = min(
                max(2 * self.kod_backoff_s, asked_s, KOD_MIN_BACKOFF_S), KOD_MAX_BACKOFF_S)
            self.hold_until_ns = now_ns + int(self.kod_backoff_s * NS_PER_S)
            self.hold_reason = code
        elif code in ("kod_deny", "kod_rstr"):
            self.hold_until_ns = now_ns + int(DENY_HOLD_S * NS_PER_S)
            self.hold_reason = code

    def reset(self) -> None:
        """Operator reset: forget holds and backoff."""
        self.hold_until_ns, self.hold_reason, self.kod_backoff_s = 0, None, 0.0
