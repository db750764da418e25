"""Adaptive timeouts: RFC 6298 arithmetic, Akka's phi, quantile windows, replay and the choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timekit.analysis.timeouts import (
    AKKA_ACCEPTABLE_PAUSE_S,
    AKKA_MIN_STD_DEVIATION_S,
    FALSE_TIMEOUT_TARGET,
    METHOD_PHI,
    METHOD_QUANTILE,
    METHOD_RFC6298,
    MIN_HISTORY_REPLIES,
    PHI_RTT_ACCEPTABLE_PAUSE_S,
    PHI_RTT_MIN_STD_DEVIATION_S,
    RFC6298_GRANULARITY_S,
    STATUS_INSUFFICIENT,
    STATUS_OK,
    STATUS_TARGET_MISSED,
    STATUS_TOO_FEW,
    WARMUP_REPLIES,
    PhiParams,
    QuantileParams,
    Rfc6298Params,
    inject_faults,
    phi,
    phi_threshold_y,
    phi_timeouts,
    quantile_timeouts,
    recommend_timeout,
    replay,
    rfc6298_timeouts,
)
from timekit.collectors import rto as collector_rto

NAN = math.nan
LOOPBACK_P50_S = 100e-6  # like the loopback lab
WAN_P50_S = 0.030


def lognormal_rtt(seed: int, n: int, p50_s: float, sigma: float) -> np.ndarray:
    """Seeded lognormal RTTs (s) with median `p50_s` and log-space std dev `sigma`."""
    return np.random.default_rng(seed).lognormal(math.log(p50_s), sigma, n)


# --------------------------------------------------------------------------- RFC 6298


def test_rfc6298_hand_series_with_losses_and_a_lowered_floor() -> None:
    p = Rfc6298Params(min_rto_s=0.01)
    t = rfc6298_timeouts([0.100, 0.200, NAN, NAN, 0.100], p)
    assert t.size == 6  # attempts 0..4 and the next one
    assert t[0] == 1.0  # (2.1) no measurement yet: 1 s
    assert t[1] == pytest.approx(0.100 + 4 * 0.050)  # (2.2) SRTT=R, RTTVAR=R/2: 0.3
    # (2.3) RTTVAR = 3/4·0.05 + 1/4·|0.1 − 0.2| = 0.0625; SRTT = 7/8·0.1 + 1/8·0.2 = 0.1125
    assert t[2] == pytest.approx(0.1125 + 4 * 0.0625)  # 0.3625
    assert t[3] == pytest.approx(2 * 0.3625)  # (5.5) lost: back off
    assert t[4] == pytest.approx(4 * 0.3625)  # lost again: 1.45
    # reply 0.1: RTTVAR = 3/4·0.0625 + 1/4·|0.1125 − 0.1| = 0.05; SRTT = 7/8·0.1125 + 1/8·0.1 = 0.1109375
    assert t[5] == pytest.approx(0.1109375 + 4 * 0.05)  # backoff forgotten: 0.3109375


def test_rfc6298_default_floor_is_the_rfcs_one_second() -> None:
    t = rfc6298_timeouts([0.100, 0.200, NAN, NAN, 0.100])
    assert t.tolist() == [1.0, 1.0, 1.0, 2.0, 4.0, 1.0]  # (2.4) rounded up to 1 s, doubled when lost


def test_rfc6298_granularity_bounds_a_steady_rtt_and_max_caps_backoff() -> None:
    p = Rfc6298Params(min_rto_s=1e-6, max_rto_s=3.0)
    t = rfc6298_timeouts([0.010] * 200 + [NAN] * 10, p)
    # RTTVAR decays as (3/4)^k · 5 ms -> K·RTTVAR < G: RTO = SRTT + G
    assert t[200] == pytest.approx(0.010 + RFC6298_GRANULARITY_S)
    assert t[201] == pytest.approx(2 * 0.011)
    assert t[-1] == 3.0  # 2^10 · 11 ms capped at max_rto_s


def test_the_replay_and_the_live_collector_give_the_same_timeouts() -> None:
    """One RFC 6298 step for both (`analysis/rfc6298.py`): replayed over a series with the live
    client's floor and cap, it gives the timeouts the live estimator used, attempt by attempt."""
    rng = np.random.default_rng(7)
    r = rng.lognormal(math.log(0.1), 0.6, 3000)  # RTOs mostly above the collector's 0.25 s floor
    r[rng.random(r.size) < 0.05] = NAN
    cap_s = 5.0
    # collector: initial = its --timeout cap, floor MIN_RTO_S
    ours = rfc6298_timeouts(r, Rfc6298Params(min_rto_s=collector_rto.MIN_RTO_S, max_rto_s=cap_s,
                                             initial_rto_s=cap_s))
    est = collector_rto.RtoEstimator(max_rto_s=cap_s)
    theirs = []
    for x in r:
        theirs.append(est.timeout_s())
        est.backoff() if math.isnan(x) else est.observe(float(x))
    theirs.append(est.timeout_s())
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert np.mean(ours > collector_rto.MIN_RTO_S) > 0.5  # the comparison is not all floor


# --------------------------------------------------------------------------- phi accrual


def test_phi_at_known_points_follows_akkas_logistic_formula() -> None:
    # y = 0: F = 1/2, φ = −log10(1/2)
    assert phi(1.0, 1.0, 0.1) == pytest.approx(math.log10(2))
    # y = 1: u = 1·(1.5976 + 0.070566·1²) = 1.668166; φ = log10(1 + e^u) = log10(6.302434...)
    assert phi(1.1, 1.0, 0.1) == pytest.approx(math.log10(1 + math.exp(1.668166)), rel=1e-12)
    # Akka's AccrualFailureDetectorSpec "return realistic phi values" (mean 1000 ms, std 100 ms, ±0.1)
    akka = {0.0: 0.0, 0.5: 0.1, 1.0: 0.3, 1.2: 1.6, 1.4: 4.7, 1.6: 10.8, 1.7: 15.3}
    got = phi(np.array(list(akka)), 1.0, 0.1)
    np.testing.assert_allclose(got, list(akka.values()), atol=0.1)
    # "handle outliers without losing precision or hitting exceptions" (warnings are errors here)
    assert phi(10.0, 0.0, 1.0) == pytest.approx(38.0, abs=1.0)
    assert phi(-25.0, 0.0, 1.0) == 0.0


def test_phi_logistic_cdf_is_within_akkas_stated_error_of_the_normal() -> None:
    y = np.linspace(-6, 6, 2401)
    logistic_cdf = 1 - 10 ** -phi(y, 0.0, 1.0)
    normal_cdf = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in y])
    assert np.max(np.abs(logistic_cdf - normal_cdf)) < 1.5e-4  # Akka: "error is 0.00014 at +- 3.16"


@given(st.floats(0.05, 30.0))
def test_phi_threshold_inverse_lands_on_the_threshold(threshold: float) -> None:
    y = phi_threshold_y(threshold)
    assert phi(y, 0.0, 1.0) == pytest.approx(threshold, rel=1e-9)


def test_phi_window_stats_match_akkas_heartbeat_history() -> None:
    y8 = phi_threshold_y(8.0)  # ≈ 5.226
    exact = PhiParams(min_std_deviation_s=1e-9, acceptable_pause_s=0.0, min_replies=1, max_sample_size=20)
    # Akka spec: samples 100, 200, 125, 340, 130 ms -> mean 179 ms, variance 7584 ms²
    t = phi_timeouts([0.100, 0.200, 0.125, 0.340, 0.130], exact)
    assert t[-1] == pytest.approx(0.179 + y8 * math.sqrt(7584e-6), rel=1e-9)
    # capped at 3: 100, 110, 90 | 140 | 80 -> mean 103.333 ms, variance 688.889 ms² after all five
    w3 = PhiParams(min_std_deviation_s=1e-9, acceptable_pause_s=0.0, min_replies=1, max_sample_size=3)
    t = phi_timeouts([0.100, 0.110, 0.090, 0.140, 0.080], w3)
    assert t[3] == pytest.approx(0.100 + y8 * math.sqrt(66.6666667e-6), rel=1e-6)
    assert t[5] == pytest.approx(0.1033333333 + y8 * math.sqrt(688.88888889e-6), rel=1e-6)


def test_phi_defaults_for_rtts_and_akkas() -> None:
    akka = PhiParams.akka()
    assert (akka.threshold, akka.max_sample_size) == (8.0, 1000)
    assert (akka.min_std_deviation_s, akka.acceptable_pause_s) == (AKKA_MIN_STD_DEVIATION_S,
                                                                    AKKA_ACCEPTABLE_PAUSE_S) == (0.1, 3.0)
    # constant 10 ms RTTs, std 0: floored. RTT defaults: 10 ms + 25 ms + 5.226 × 1 ms
    t = phi_timeouts([0.010] * 50)
    y8 = phi_threshold_y(8.0)
    assert t[-1] == pytest.approx(0.010 + PHI_RTT_ACCEPTABLE_PAUSE_S + y8 * PHI_RTT_MIN_STD_DEVIATION_S)
    # Akka's: 10 ms + 3 s + 5.226 × 100 ms = 3.53 s, slower than a fixed 3 s timeout
    assert phi_timeouts([0.010] * 50, akka)[-1] == pytest.approx(0.010 + 3.0 + y8 * 0.1)
    assert t[MIN_HISTORY_REPLIES - 1] == 1.0 and t[MIN_HISTORY_REPLIES] < 0.05  # initial until 10 replies


def test_phi_recovers_the_lognormal_mean_and_std() -> None:
    sigma = 0.25
    t = phi_timeouts(lognormal_rtt(3, 5000, WAN_P50_S, sigma))[-1]
    mean = WAN_P50_S * math.exp(sigma**2 / 2)  # 30.95 ms
    std = mean * math.sqrt(math.expm1(sigma**2))  # 7.86 ms
    truth = mean + PHI_RTT_ACCEPTABLE_PAUSE_S + phi_threshold_y(8.0) * std  # ≈ 97 ms
    # window of 1000: SE(mean) ≈ 0.25 ms, SE(std) ≈ 0.3 ms (lognormal kurtosis) -> ×5.2 ≈ 1.6 ms
    assert t == pytest.approx(truth, abs=4 * 1.6e-3)


# --------------------------------------------------------------------------- quantile


def test_quantile_timeouts_equal_a_direct_window_quantile() -> None:
    p = QuantileParams(window=50, min_replies=5)
    r = lognormal_rtt(4, 400, WAN_P50_S, 0.4)
    r[::7] = NAN
    t = quantile_timeouts(r, p)
    replies = []
    for i, x in enumerate(r.tolist() + [None]):
        if len(replies) < 5:
            assert t[i] == 1.0
        else:
            want = max(p.safety_factor * float(np.quantile(replies[-50:], p.q)), p.min_timeout_s)
            assert t[i] == pytest.approx(want, rel=1e-12), i
        if x is not None and not math.isnan(x):
            replies.append(x)


# --------------------------------------------------------------------------- invariants


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.floats(1e-6, 5.0), st.just(NAN)), min_size=1, max_size=80),
       st.integers(0, 79), st.floats(1e-6, 5.0))
def test_every_method_is_online_and_bounded(rtts: list[float], cut: int, other: float) -> None:
    cut = min(cut, len(rtts) - 1)
    changed = rtts[:cut] + [other] * (len(rtts) - cut)
    small = PhiParams(min_replies=2, max_sample_size=7)
    quant = QuantileParams(window=5, min_replies=2)
    rfc = Rfc6298Params(min_rto_s=0.01, max_rto_s=60.0)
    for fn in (lambda r: rfc6298_timeouts(r, rfc), lambda r: phi_timeouts(r, small),
               lambda r: quantile_timeouts(r, quant)):
        a, b = fn(rtts), fn(changed)
        assert np.all(np.isfinite(a)) and np.all(a > 0)
        # attempt i's timeout uses attempts < i only: changing attempts >= cut leaves 0..cut alone
        np.testing.assert_allclose(a[:cut + 1], b[:cut + 1], rtol=1e-9, atol=0)
    t = rfc6298_timeouts(rtts, rfc)
    assert np.all((t >= 0.01) & (t <= 60.0))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.floats(1e-4, 4.0), st.just(NAN)), min_size=12, max_size=60))
def test_a_longer_fixed_timeout_never_has_more_false_timeouts(rtts: list[float]) -> None:
    res = replay(rtts, fixed_timeouts_s=(0.1, 0.5, 1.0, 3.0), warmup_replies=0)
    fixed = [s for s in res.scores if s.kind == "fixed"]
    counts = [s.n_false_timeouts for s in fixed]
    assert counts == sorted(counts, reverse=True)
    for s in res.scores:
        assert s.false_timeout_rate is None or 0 <= s.false_timeout_rate <= 1


# --------------------------------------------------------------------------- faults and replay


def test_inject_faults_is_seeded_and_puts_faults_where_it_says() -> None:
    base = lognormal_rtt(5, 20_000, LOOPBACK_P50_S, 0.5)
    a = inject_faults(base, seed=9, spike_rate=0.01, spike_mean_s=0.01, n_outages=8, outage_attempts=6,
                      loss_rate=0.002, skip_attempts=500)
    b = inject_faults(base, seed=9, spike_rate=0.01, spike_mean_s=0.01, n_outages=8, outage_attempts=6,
                      loss_rate=0.002, skip_attempts=500)
    np.testing.assert_array_equal(a.rtt_s, b.rtt_s)
    assert a.outage_starts.size == 8 and a.outage_starts.min() >= 500
    for s in a.outage_starts:
        assert np.isnan(a.rtt_s[s:s + 6]).all() and not np.isnan(a.rtt_s[s + 6])  # never adjacent
    n_free = 20_000 - 8 * 6
    assert abs(a.spike_idx.size - 0.01 * n_free) < 4 * math.sqrt(0.01 * n_free)  # binomial, 4 sigma
    extra = a.rtt_s[a.spike_idx] - base[a.spike_idx]
    assert np.all(extra >= 0)
    assert extra.mean() == pytest.approx(0.01, abs=4 * 0.01 / math.sqrt(extra.size))  # exponential SE
    assert np.isnan(a.rtt_s).sum() == 8 * 6 + a.lost_idx.size


def test_replay_hand_series_counts_late_replies() -> None:
    r = [0.5] * 10 + [0.5, 1.5, NAN, 2.0, 0.2]
    res = replay(r, fixed_timeouts_s=(1.0, 3.0), warmup_replies=10)
    assert res.first_scored_attempt == 10 and res.n_scored_replies == 4
    one = res.score("fixed_1s")
    assert (one.n_false_timeouts, one.false_timeout_rate) == (2, 2 / 4)  # 1.5 s and 2.0 s came late
    assert res.score("fixed_3s").n_false_timeouts == 0
    assert res.detection_basis == "every_attempt" and one.mean_detection_s == 1.0  # no 3-loss run


SCENARIOS = {  # name: (p50 s, sigma, spike mean s)
    "loopback": (LOOPBACK_P50_S, 0.5, 0.005),
    "wan": (WAN_P50_S, 0.25, 0.05),
}


def _faulty(name: str, n: int = 20_000, seed: int = 11):
    p50, sigma, spike_s = SCENARIOS[name]
    base = lognormal_rtt(seed, n, p50, sigma)
    return inject_faults(base, seed=seed + 1, spike_rate=0.005, spike_mean_s=spike_s, n_outages=10,
                         outage_attempts=5, loss_rate=0.001, skip_attempts=200)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_replay_false_timeouts_equal_a_direct_count(name: str) -> None:
    f = _faulty(name)
    res = replay(f.rtt_s, outage_starts=f.outage_starts)
    r = f.rtt_s
    first = int(np.flatnonzero(~np.isnan(r))[WARMUP_REPLIES - 1]) + 1
    assert res.first_scored_attempt == first and res.n_outages == 10
    series = {METHOD_RFC6298: rfc6298_timeouts(r), METHOD_PHI: phi_timeouts(r),
              METHOD_QUANTILE: quantile_timeouts(r)}
    for method, t in series.items():
        late = sum(1 for i in range(first, r.size) if not math.isnan(r[i]) and r[i] > t[i])
        replies = sum(1 for i in range(first, r.size) if not math.isnan(r[i]))
        s = res.score(method)
        assert (s.n_false_timeouts, s.n_replies_scored) == (late, replies)
        assert s.false_timeout_rate == late / replies
        assert s.mean_detection_s == pytest.approx(float(np.mean(t[f.outage_starts])))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_adaptive_methods_detect_sooner_than_fixed_3s_with_few_false_timeouts(name: str) -> None:
    f = _faulty(name)
    res = replay(f.rtt_s, outage_starts=f.outage_starts)
    fixed3 = res.score("fixed_3s")
    assert fixed3.mean_detection_s == 3.0
    # false timeouts can only come from the injected spikes (the clean lognormal tail is covered,
    # see the next test): bound = the spike fraction of scored replies
    bound = f.spike_idx.size / res.n_scored_replies
    for m in (METHOD_RFC6298, METHOD_PHI, METHOD_QUANTILE):
        s = res.score(m)
        assert s.mean_detection_s is not None and s.mean_detection_s < 3.0
        assert s.false_timeout_rate is not None and s.false_timeout_rate <= bound
    assert res.score(METHOD_PHI).mean_detection_s < 0.2  # ms-scale RTTs: well under a second


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_clean_lognormal_stays_within_the_target(name: str) -> None:
    p50, sigma, _ = SCENARIOS[name]
    res = replay(lognormal_rtt(12, 20_000, p50, sigma))
    for m in (METHOD_RFC6298, METHOD_PHI, METHOD_QUANTILE):
        rate = res.score(m).false_timeout_rate
        assert rate is not None and rate <= FALSE_TIMEOUT_TARGET


# --------------------------------------------------------------------------- recommendation


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_recommendation_follows_the_rule(name: str) -> None:
    f = _faulty(name)
    rec = recommend_timeout(f.rtt_s, outage_starts=f.outage_starts)
    adaptive = [s for s in rec.methods if s.kind == "adaptive"]
    within = [s for s in adaptive if s.false_timeout_rate is not None
              and s.false_timeout_rate <= FALSE_TIMEOUT_TARGET]
    assert within, "the scenarios are built so that at least RFC 6298 meets the target"
    best = min(within, key=lambda s: s.mean_detection_s or math.inf)
    assert (rec.status, rec.method, rec.timeout_s) == (STATUS_OK, best.method, best.timeout_s)
    assert best.method in rec.reason and f"{best.mean_detection_s:.3g} s" in rec.reason
    arrived = f.rtt_s[~np.isnan(f.rtt_s)]
    assert rec.rtt_p50_s == pytest.approx(float(np.median(arrived)))
    assert rec.n_samples == f.rtt_s.size and rec.n_lost == int(np.isnan(f.rtt_s).sum())


def test_a_fast_method_with_too_many_false_timeouts_is_passed_over() -> None:
    f = _faulty("wan")
    median_timeout = QuantileParams(q=0.5, safety_factor=1.0)  # ~half the replies come late
    rec = recommend_timeout(f.rtt_s, quantile=median_timeout, outage_starts=f.outage_starts)
    q = next(s for s in rec.methods if s.method == METHOD_QUANTILE)
    assert q.false_timeout_rate is not None and q.false_timeout_rate > 0.4
    chosen = next(s for s in rec.methods if s.method == rec.method)
    assert q.mean_detection_s is not None and chosen.mean_detection_s is not None
    assert q.mean_detection_s < chosen.mean_detection_s  # faster, but not eligible
    assert rec.status == STATUS_OK and rec.method != METHOD_QUANTILE


def test_no_method_within_target_takes_the_lowest_false_rate() -> None:
    r = lognormal_rtt(13, 5000, WAN_P50_S, 0.25)
    # every method made impatient: RTO capped at 40 ms, phi at 1 (p = 10 %) with no pause, the median
    rec = recommend_timeout(r, rfc=Rfc6298Params(min_rto_s=0.001, max_rto_s=0.040),
                            phi_params=PhiParams(threshold=1.0, acceptable_pause_s=0.0),
                            quantile=QuantileParams(q=0.5, safety_factor=1.0))
    adaptive = [s for s in rec.methods if s.kind == "adaptive"]
    rates = {s.method: s.false_timeout_rate for s in adaptive}
    assert all(r is not None and r > 0.05 for r in rates.values())  # far above the 0.1 % target
    assert rec.status == STATUS_TARGET_MISSED
    assert rates[rec.method] == min(rates.values())
    assert rec.reason.startswith("no method kept false timeouts within 0.1 %: " + str(rec.method))


def test_empty_and_all_lost_series_have_no_numbers() -> None:
    for series, n_lost in (([], 0), ([NAN] * 5, 5)):
        rec = recommend_timeout(series)
        assert rec.status == STATUS_INSUFFICIENT
        assert (rec.timeout_s, rec.method, rec.rtt_p50_s, rec.rtt_p99_s) == (None, None, None, None)
        assert (rec.n_samples, rec.n_lost) == (len(series), n_lost)
        assert all(s.false_timeout_rate is None for s in rec.methods)


def test_single_sample_falls_back_to_rfc6298() -> None:
    rec = recommend_timeout([0.050])
    assert (rec.status, rec.method) == (STATUS_TOO_FEW, METHOD_RFC6298)
    assert rec.timeout_s == 1.0  # 50 ms + max(1 ms, 4 × 25 ms) = 150 ms, rounded up to the RFC's 1 s
    assert rec.rtt_p50_s == rec.rtt_p99_s == 0.050
    low = recommend_timeout([0.050], rfc=Rfc6298Params(min_rto_s=0.01))
    assert low.timeout_s == pytest.approx(0.150)


def test_constant_rtts_zero_variance() -> None:
    rec = recommend_timeout([0.010] * 2000)
    assert rec.status == STATUS_OK
    assert all(s.false_timeout_rate == 0.0 for s in rec.methods)
    by = {s.method: s.timeout_s for s in rec.methods}
    assert by[METHOD_RFC6298] == 1.0  # 10 ms + G, rounded up to 1 s
    assert by[METHOD_PHI] == pytest.approx(0.010 + 0.025 + phi_threshold_y(8.0) * 0.001)  # std floored
    assert by[METHOD_QUANTILE] == pytest.approx(2 * 0.010)
    assert (rec.method, rec.timeout_s) == (METHOD_QUANTILE, pytest.approx(0.020))  # fastest, 0 % late


@pytest.mark.parametrize("bad", [[0.1, -0.001], [0.1, math.inf], [[0.1, 0.2]]])
def test_bad_rtts_are_rejected(bad: list) -> None:
    with pytest.raises(ValueError, match="rtt_s"):
        recommend_timeout(bad)


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_rto_s"):
        Rfc6298Params(min_rto_s=2.0, max_rto_s=1.0)
    with pytest.raises(ValueError, match="min_std_deviation_s"):
        PhiParams(min_std_deviation_s=0.0)
    with pytest.raises(ValueError, match="quantile q"):
        QuantileParams(q=1.5)
    with pytest.raises(ValueError, match="false_timeout_target"):
        recommend_timeout([0.1] * 50, false_timeout_target=1.0)
    with pytest.raises(ValueError, match="is an attempt with a reply"):
        replay([0.1, 0.1, NAN], outage_starts=[1])
