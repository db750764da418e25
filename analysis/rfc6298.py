"""RFC 6298 retransmission timeouts: the constants and the one update step (no numpy).

The live client (`collectors/rto.py`) folds each reply in with `rfc6298_step`; `timekit analyze
timeout` replays whole series with the same step (`timeouts.rfc6298_timeouts`).
"""

from __future__ import annotations

RFC6298_ALPHA = 1 / 8  # (2.3) gain for SRTT
RFC6298_BETA = 1 / 4  # (2.3) gain for RTTVAR
RFC6298_K = 4  # (2.2) RTO = SRTT + max(G, K·RTTVAR)
RFC6298_GRANULARITY_S = 0.001  # G: the client's timer granularity (asyncio, collectors/rto.py)
RFC6298_MIN_RTO_S = 1.0  # (2.4) "if it is less than 1 second, then the RTO SHOULD be rounded up"
# The live client's floor instead: NTP replies on a LAN or loopback come back in well under 1 ms,
# and a query lost to a 1 s floor costs a second per server; 0.25 s stays far above the scheduling
# jitter of a busy host (tens of ms), so jitter never fakes a loss.
LIVE_MIN_RTO_S = 0.25
RFC6298_INITIAL_RTO_S = 1.0  # (2.1) RTO before the first RTT measurement
RFC6298_MAX_RTO_S = 60.0  # (2.5) a maximum MAY be placed "provided it is at least 60 seconds"


def rfc6298_step(srtt_s: float | None, rttvar_s: float | None, rtt_s: float, *, alpha: float = RFC6298_ALPHA,
                 beta: float = RFC6298_BETA, k: float = RFC6298_K,
                 granularity_s: float = RFC6298_GRANULARITY_S) -> tuple[float, float, float]:
    """One measured round trip folded in: (SRTT, RTTVAR, unclamped RTO), seconds. The first
    measurement sets SRTT = R, RTTVAR = R/2 (2.2); later ones RTTVAR first, from the old SRTT (2.3);
    RTO = SRTT + max(G, K·RTTVAR)."""
    if srtt_s is None or rttvar_s is None:
        srtt_s, rttvar_s = rtt_s, rtt_s / 2
    else:
        rttvar_s = (1 - beta) * rttvar_s + beta * abs(srtt_s - rtt_s)
        srtt_s = (1 - alpha) * srtt_s + alpha * rtt_s
    return srtt_s, rttvar_s, srtt_s + max(granularity_s, k * rttvar_s)
