"""RFC 6298 retransmission-timeout estimator, per server: timeouts follow measured RTTs."""

from __future__ import annotations

from dataclasses import dataclass

ALPHA = 1 / 8  # RFC 6298 gain for SRTT
BETA = 1 / 4  # RFC 6298 gain for RTTVAR
K = 4
GRANULARITY_S = 0.001  # G: our timer granularity, seconds
MIN_RTO_S = 0.25  # floor so scheduling jitter on a busy host never fakes a loss


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
        if self.srtt_s is None or self.rttvar_s is None:
            self.srtt_s, self.rttvar_s = rtt_s, rtt_s / 2
        else:
            self.rttvar_s = (1 - BETA) * self.rttvar_s + BETA * abs(self.srtt_s - rtt_s)
            self.srtt_s = (1 - ALPHA) * self.srtt_s + ALPHA * rtt_s
        self.rto_s = self.srtt_s + max(GRANULARITY_S, K * self.rttvar_s)

    def backoff(self) -> None:
        """After a timeout double the RTO (RFC 6298 5.5), capped at the user's timeout."""
        self.rto_s = min(2 * self.timeout_s(), self.max_rto_s)
