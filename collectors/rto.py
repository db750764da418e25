"""RFC 6298 retransmission-timeout estimator, per server: timeouts follow measured RTTs.

The arithmetic is `analysis.timeouts.rfc6298_step` (the one implementation, which `timekit analyze
timeout` replays); this is the live state around it, with the live client's floor.
"""

from __future__ import annotations

from dataclasses import dataclass

from timekit.analysis.rfc6298 import LIVE_MIN_RTO_S, rfc6298_step

MIN_RTO_S = LIVE_MIN_RTO_S  # floor so scheduling jitter on a busy host never fakes a loss


@dataclass(slots=True)
class RtoEstimator:
    """SRTT/RTTVAR/RTO in seconds. `max_rto_s` is the user's --timeout (initial and cap)."""

    max_rto_s: float
    srtt_s: float | None = None
    rttvar_s: float | None = None
    rto_s: float | None = None

    def timeout_s(self) -> float:
        """The timeout to use for the next query, seconds."""
        floor = min(MIN_RTO_S, self.max_rto_s)
        if self.rto_s is None:
            return self.max_rto_s
        return min(max(self.rto_s, floor), self.max_rto_s)

    def observe(self, rtt_s: float) -> None:
        """Fold in one measured round trip (RFC 6298 2.2/2.3)."""
        self.srtt_s, self.rttvar_s, self.rto_s = rfc6298_step(self.srtt_s, self.rttvar_s, rtt_s)

    def backoff(self) -> None:
        """After a timeout double the RTO (RFC 6298 5.5), capped at the user's timeout."""
        self.rto_s = min(2 * self.timeout_s(), self.max_rto_s)
