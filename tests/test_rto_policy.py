"""RFC 6298 estimator and kiss-o'-death policy, with the arithmetic spelled out."""

from __future__ import annotations

import pytest

from timekit.collectors.rto import MIN_RTO_S, RtoEstimator
from timekit.collectors.server_policy import KOD_MAX_BACKOFF_S, ServerState
from timekit.units import NS_PER_S


def test_first_rtt_sets_srtt_and_half_var() -> None:
    r = RtoEstimator(max_rto_s=5.0)
    assert r.timeout_s() == 5.0  # no evidence yet: the user's cap
    r.observe(0.100)
    assert (r.srtt_s, r.rttvar_s) == (0.100, 0.050)
    assert r.rto_s == pytest.approx(0.100 + 4 * 0.050)  # 0.3 s


def test_second_rtt_follows_rfc6298_gains() -> None:
    r = RtoEstimator(max_rto_s=5.0)
    r.observe(0.100)
    r.observe(0.200)
    assert r.rttvar_s == pytest.approx(0.75 * 0.050 + 0.25 * 0.100)  # 0.0625
    assert r.srtt_s == pytest.approx(0.875 * 0.100 + 0.125 * 0.200)  # 0.1125
    assert r.timeout_s() == pytest.approx(0.1125 + 4 * 0.0625)


def test_fast_server_floor_and_backoff_cap() -> None:
    r = RtoEstimator(max_rto_s=2.0)
    for _ in range(20):
        r.observe(50e-6)
    assert r.timeout_s() == MIN_RTO_S  # loopback: floor, not 50 µs
    r.backoff()
    assert r.timeout_s() == 2 * MIN_RTO_S
    for _ in range(10):
        r.backoff()
    assert r.timeout_s() == 2.0  # capped at --timeout


def test_kod_rate_backs_off_exponentially_and_is_capped() -> None:  # N14, N16
    st = ServerState("s:123")
    now = 1_000 * NS_PER_S
    st.on_kod("kod_rate", poll=4, now_ns=now)
    assert st.kod_backoff_s == 16.0  # max(2**4, 16 s floor)
    assert st.held(now + 15 * NS_PER_S) == "rate_limited"
    assert st.held(now + 16 * NS_PER_S) is None
    st.on_kod("kod_rate", poll=4, now_ns=now)
    assert st.kod_backoff_s == 32.0  # doubled
    st.on_kod("kod_rate", poll=127, now_ns=now)  # absurd poll field: capped at 2**13
    assert st.kod_backoff_s == KOD_MAX_BACKOFF_S == 8192.0


def test_deny_holds_a_day_and_reset_clears() -> None:  # N17
    st = ServerState("s:123")
    st.on_kod("kod_deny", poll=0, now_ns=0)
    assert st.held(86_399 * NS_PER_S) == "denied"
    st.reset()
    assert st.held(1) is None


def test_unknown_kiss_code_changes_nothing() -> None:  # N18
    st = ServerState("s:123")
    st.on_kod("kod_other", poll=10, now_ns=0)
    assert st.held(1) is None and st.kod_backoff_s == 0.0
