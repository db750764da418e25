"""Jitter-adaptive timeouts: how long to wait for a reply before declaring the peer dead.

Input everywhere: ``rtt_s``, one server's round-trip times in float seconds, one entry per
attempt in time order, NaN where no reply came (lost attempt). Three estimators turn it into
the timeout in force at every attempt, each *online* (attempt i only sees attempts < i):

- ``rfc6298``: RFC 6298 retransmission timeout, SRTT + max(G, K·RTTVAR), clamped to
  [min_rto, max_rto], doubled after every lost attempt (5.5). Same gains as the live
  collector's estimator (``collectors/rto.py``); the RFC's 1 s floor is a parameter.
- ``phi_accrual``: Hayashibara et al.'s φ detector as Akka implements it: φ(t) =
  −log10(1 − F(t)), F normal with the window's mean (+ an acceptable pause) and std dev
  (floored), F by Akka's logistic approximation. The timeout is the wait at which φ reaches
  the threshold: mean + pause + y*·std, y* solving the logistic's cubic in closed form.
- ``quantile``: a high empirical quantile of the last W replies times a safety factor.

Every timeout function returns n + 1 values: the timeouts for attempts 0..n−1 and, last,
the timeout for the *next* attempt (the one a caller would use now).

``replay`` scores the methods against the recorded history: the false-timeout rate (a reply
that did come, but after the timeout in force) and the mean detection time of a real outage
(the timeout in force when the outage began: the wait until the peer is declared dead).
``recommend_timeout`` picks the method that detects fastest among those whose false-timeout
rate stays within a target, and says why. ``inject_faults`` adds seeded delay spikes,
isolated losses and outages to a series, to replay against known faults.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from timekit.analysis.rfc6298 import (
    RFC6298_ALPHA,
    RFC6298_BETA,
    RFC6298_GRANULARITY_S,
    RFC6298_INITIAL_RTO_S,
    RFC6298_K,
    RFC6298_MAX_RTO_S,
    RFC6298_MIN_RTO_S,
    rfc6298_step,
)

# --- RFC 6298: the constants and the one update step live in `rfc6298.py` (numpy-free, for the
# live client too); here the replay of a whole series ---
MAX_BACKOFF_DOUBLINGS = 64  # 2**64 × any RTO is past any cap: stop counting there

# --- Phi accrual: Akka's defaults, akka/akka akka-cluster/src/main/resources/reference.conf,
# `akka.cluster.failure-detector { ... }`; formula from akka-remote/src/main/scala/akka/remote/
# PhiAccrualFailureDetector.scala (Hayashibara et al., "The φ accrual failure detector", 2004) ---
AKKA_PHI_THRESHOLD = 8.0  # threshold = 8.0
AKKA_MAX_SAMPLE_SIZE = 1000  # max-sample-size = 1000
AKKA_MIN_STD_DEVIATION_S = 0.100  # min-std-deviation = 100 ms
AKKA_ACCEPTABLE_PAUSE_S = 3.0  # acceptable-heartbeat-pause = 3 s
# Akka's PhiAccrualFailureDetector.phi: F(y) ≈ 1 / (1 + exp(−y·(1.5976 + 0.070566·y²))), the
# logistic approximation of the standard normal CDF ("error is 0.00014 at +- 3.16").
LOGISTIC_A = 1.5976
LOGISTIC_B = 0.070566
# Defaults for RTTs. Akka's are for 1 s heartbeats on a JVM (3 s pause = a few lost heartbeats
# plus GC). A lost RTT probe is handled as a loss, not waited out, so the pause only has to
# cover a late-but-coming reply delayed on *our* host: one CFS scheduling period under load
# (sched_latency = 6 ms × (1 + log2 ncpu) = 24 ms at 8 CPUs) -> 25 ms. The std dev floor keeps
# Akka's 1:30 ratio to the pause and equals the timer granularity G (no finer than the timer).
PHI_RTT_ACCEPTABLE_PAUSE_S = 0.025
PHI_RTT_MIN_STD_DEVIATION_S = 0.001

# --- Quantile ---
QUANTILE_Q = 0.999  # the window's 99.9th percentile...
QUANTILE_WINDOW = 1000  # ...over the last 1000 replies (as phi's window)...
QUANTILE_SAFETY_FACTOR = 2.0  # ...times 2: a tail event twice the recent worst 0.1 %
QUANTILE_MIN_TIMEOUT_S = RFC6298_GRANULARITY_S  # no timeout finer than the timer

# --- Shared start-up, replay and recommendation rules ---
MIN_HISTORY_REPLIES = 10  # phi / quantile use their initial timeout until this many replies
ADAPTIVE_INITIAL_TIMEOUT_S = RFC6298_INITIAL_RTO_S  # the RFC's start, for every method
WARMUP_REPLIES = 10  # replay scores attempts after this many replies (all methods warmed up)
MIN_REPLAY_REPLIES = 20  # fewer scored replies: the replay judges nothing
FALSE_TIMEOUT_TARGET = 0.001  # 0.1 % of replies may arrive after the timeout
OUTAGE_MIN_LOST = 3  # consecutive lost attempts in a recorded history that count as an outage
FIXED_BASELINES_S = (1.0, 3.0)  # fixed timeouts replayed for comparison

METHOD_RFC6298 = "rfc6298"
METHOD_PHI = "phi_accrual"
METHOD_QUANTILE = "quantile"

STATUS_OK = "ok"  # a method met the false-timeout target
STATUS_TARGET_MISSED = "target_missed"  # none did: the lowest false-timeout rate is used
STATUS_TOO_FEW = "too_few_to_replay"  # replies exist but too few to replay: RFC 6298
STATUS_INSUFFICIENT = "insufficient_samples"  # no reply at all: no numbers

BASIS_OUTAGES = "outages"  # detection time averaged over real (or injected) outages
BASIS_EVERY_ATTEMPT = "every_attempt"  # no outage seen: mean timeout, as if one began anywhere


def _positive(name: str, value: float, unit: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number of {unit}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Rfc6298Params:
    """RFC 6298 constants (gains, K, G in s) and clamps (s). Lower `min_rto_s` for fast links."""

    alpha: float = RFC6298_ALPHA
    beta: float = RFC6298_BETA
    k: float = RFC6298_K
    granularity_s: float = RFC6298_GRANULARITY_S
    min_rto_s: float = RFC6298_MIN_RTO_S
    max_rto_s: float = RFC6298_MAX_RTO_S
    initial_rto_s: float = RFC6298_INITIAL_RTO_S

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ValueError(f"RFC 6298 gain {name} must be in (0, 1], got {v!r}")
        _positive("RFC 6298 k", self.k, "RTTVARs")
        _positive("granularity_s", self.granularity_s, "seconds")
        _positive("min_rto_s", self.min_rto_s, "seconds")
        _positive("max_rto_s", self.max_rto_s, "seconds")
        _positive("initial_rto_s", self.initial_rto_s, "seconds")
        if self.min_rto_s > self.max_rto_s:
            raise ValueError(f"min_rto_s ({self.min_rto_s} s) exceeds max_rto_s ({self.max_rto_s} s)")


@dataclass(frozen=True, slots=True)
class PhiParams:
    """Phi-accrual settings (s); defaults tuned for RTTs, `PhiParams.akka()` gives Akka's."""

    threshold: float = AKKA_PHI_THRESHOLD
    max_sample_size: int = AKKA_MAX_SAMPLE_SIZE
    min_std_deviation_s: float = PHI_RTT_MIN_STD_DEVIATION_S
    acceptable_pause_s: float = PHI_RTT_ACCEPTABLE_PAUSE_S
    min_replies: int = MIN_HISTORY_REPLIES
    initial_timeout_s: float = ADAPTIVE_INITIAL_TIMEOUT_S

    def __post_init__(self) -> None:
        _positive("phi threshold", self.threshold, "phi (−log10 probability)")
        if self.max_sample_size < 1:
            raise ValueError(f"max_sample_size must be >= 1 reply, got {self.max_sample_size}")
        _positive("min_std_deviation_s", self.min_std_deviation_s, "seconds")
        if not (math.isfinite(self.acceptable_pause_s) and self.acceptable_pause_s >= 0):
            raise ValueError(f"acceptable_pause_s must be >= 0 seconds, got {self.acceptable_pause_s!r}")
        if self.min_replies < 1:
            raise ValueError(f"min_replies must be >= 1 reply, got {self.min_replies}")
        _positive("initial_timeout_s", self.initial_timeout_s, "seconds")

    @classmethod
    def akka(cls) -> PhiParams:
        """Akka cluster's defaults: threshold 8, 1000 samples, 100 ms std floor, 3 s pause."""
        return cls(AKKA_PHI_THRESHOLD, AKKA_MAX_SAMPLE_SIZE, AKKA_MIN_STD_DEVIATION_S,
                   AKKA_ACCEPTABLE_PAUSE_S)


@dataclass(frozen=True, slots=True)
class QuantileParams:
    """Quantile timeout: `safety_factor` × the `q` quantile of the last `window` replies (s)."""

    q: float = QUANTILE_Q
    window: int = QUANTILE_WINDOW
    safety_factor: float = QUANTILE_SAFETY_FACTOR
    min_timeout_s: float = QUANTILE_MIN_TIMEOUT_S
    min_replies: int = MIN_HISTORY_REPLIES
    initial_timeout_s: float = ADAPTIVE_INITIAL_TIMEOUT_S

    def __post_init__(self) -> None:
        if not 0 < self.q <= 1:
            raise ValueError(f"quantile q must be in (0, 1], got {self.q!r}")
        if self.window < 1:
            raise ValueError(f"quantile window must be >= 1 reply, got {self.window}")
        if not (math.isfinite(self.safety_factor) and self.safety_factor >= 1):
            raise ValueError(f"safety_factor must be >= 1 (a multiplier), got {self.safety_factor!r}")
        _positive("min_timeout_s", self.min_timeout_s, "seconds")
        if self.min_replies < 1:
            raise ValueError(f"min_replies must be >= 1 reply, got {self.min_replies}")
        _positive("initial_timeout_s", self.initial_timeout_s, "seconds")


DEFAULT_RFC6298 = Rfc6298Params()
DEFAULT_PHI = PhiParams()
DEFAULT_QUANTILE = QuantileParams()


@dataclass(frozen=True, slots=True)
class MethodScore:
    """One method replayed over a history.

    timeout_s: the timeout for the next attempt (s). false_timeout_rate: fraction of scored
    replies that came after the timeout in force (None: no scored reply). mean_detection_s:
    mean timeout in force when an outage began (s; see the replay's detection basis).
    """

    method: str
    kind: str  # "adaptive" | "fixed"
    timeout_s: float
    false_timeout_rate: float | None
    n_false_timeouts: int
    n_replies_scored: int
    mean_detection_s: float | None
    mean_timeout_s: float | None  # mean over all scored attempts (s)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """Every method scored over the same attempts (those after the warm-up replies)."""

    scores: tuple[MethodScore, ...]
    n_attempts: int
    n_lost: int
    first_scored_attempt: int  # == n_attempts when nothing could be scored
    n_scored_attempts: int
    n_scored_replies: int
    detection_basis: str | None  # BASIS_OUTAGES | BASIS_EVERY_ATTEMPT | None (nothing scored)
    n_outages: int  # outages that began inside the scored range

    def score(self, method: str) -> MethodScore:
        """The row for `method` (KeyError naming the known ones if absent)."""
        for s in self.scores:
            if s.method == method:
                return s
        raise KeyError(f"no method {method!r}; have {[s.method for s in self.scores]}")


@dataclass(frozen=True, slots=True)
class TimeoutRecommendation:
    """The recommended timeout (s) with the method, why, the RTT distribution and the table."""

    status: str
    reason: str
    timeout_s: float | None
    method: str | None
    rtt_p50_s: float | None
    rtt_p99_s: float | None
    n_samples: int  # attempts in the series
    n_lost: int  # attempts without a reply
    false_timeout_target: float
    detection_basis: str | None
    methods: tuple[MethodScore, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the contract's fields plus the per-method table)."""
        return asdict(self)


@dataclass(frozen=True, slots=True, eq=False)
class FaultInjection:
    """A series with injected faults, and where they are (attempt indices, ascending)."""

    rtt_s: np.ndarray  # spikes added, outage and lost attempts NaN
    spike_idx: np.ndarray
    outage_starts: np.ndarray
    outage_attempts: int  # length of every outage, attempts
    lost_idx: np.ndarray  # isolated losses (outside outages)


# --------------------------------------------------------------------------- input


def _as_rtt(rtt_s: ArrayLike) -> np.ndarray:
    """Validated float64 1-D copy: NaN allowed (lost), negative or infinite values rejected."""
    r = np.array(rtt_s, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"rtt_s must be a 1-D series of seconds, got shape {r.shape}")
    bad = np.flatnonzero(np.isinf(r) | (r < 0))  # NaN compares False: allowed
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"rtt_s[{i}] = {r[i]!r} s: a round-trip time must be finite and >= 0 "
                         "(use NaN for a lost attempt)")
    return r


def _replies_before(lost: np.ndarray) -> np.ndarray:
    """Replies seen before attempt i, for i = 0..n (n + 1 values)."""
    return np.concatenate(([0], np.cumsum(~lost)))


def _losses_before(lost: np.ndarray) -> np.ndarray:
    """Consecutive lost attempts immediately before attempt i, for i = 0..n."""
    idx = np.arange(lost.size)
    last_reply = np.maximum.accumulate(np.where(~lost, idx, -1)) if lost.size else idx
    return np.concatenate(([0], idx - last_reply))


# --------------------------------------------------------------------------- RFC 6298


def rfc6298_timeouts(rtt_s: ArrayLike, params: Rfc6298Params = DEFAULT_RFC6298) -> np.ndarray:
    """RFC 6298 RTO (s) in force at attempts 0..n (last: the next attempt).

    Before any reply: the initial RTO (2.1). Reply R: SRTT, RTTVAR per (2.2)/(2.3), RTO =
    SRTT + max(G, K·RTTVAR) clamped to [min_rto, max_rto] (2.4, 2.5). Each lost attempt doubles
    the RTO (5.5) up to max_rto; the next reply recomputes it, as collectors/rto.py does.
    The EWMA is a Python loop over replies (~0.3 µs each); the rest is vectorised.
    """
    r = _as_rtt(rtt_s)
    lost = np.isnan(r)
    replies = r[~lost].tolist()
    base = [min(params.initial_rto_s, params.max_rto_s)]
    srtt: float | None = None
    rttvar: float | None = None
    for x in replies:
        srtt, rttvar, rto_s = rfc6298_step(srtt, rttvar, x, alpha=params.alpha, beta=params.beta, k=params.k,
                                           granularity_s=params.granularity_s)
        base.append(rto_s)
    rto = np.asarray(base)
    rto[1:] = np.clip(rto[1:], params.min_rto_s, params.max_rto_s)
    in_force = rto[_replies_before(lost)]
    doublings = np.minimum(_losses_before(lost), MAX_BACKOFF_DOUBLINGS)
    return np.minimum(np.ldexp(in_force, doublings), params.max_rto_s)


# --------------------------------------------------------------------------- phi accrual


def phi(elapsed_s: ArrayLike, mean_s: ArrayLike, std_s: ArrayLike) -> np.ndarray:
    """Akka's φ after waiting `elapsed_s` for a N(mean, std) arrival (s): −log10(1 − F(y)).

    F(y) = 1/(1 + e^−u), u = y·(1.5976 + 0.070566·y²), y = (elapsed − mean)/std, so
    φ = log10(1 + e^u) (Akka's two branches are the same quantity; this form never
    overflows: φ(y=−25) = 0, φ(y=10) ≈ 37.6). Callers add the acceptable pause to the mean.
    """
    y = (np.asarray(elapsed_s, dtype=np.float64) - np.asarray(mean_s, dtype=np.float64)) / np.asarray(
        std_s, dtype=np.float64)
    u = y * (LOGISTIC_A + LOGISTIC_B * y * y)
    return np.asarray(np.logaddexp(0.0, u) / math.log(10.0))


def phi_threshold_y(threshold: float) -> float:
    """Standardised wait y* at which φ reaches `threshold`: the real root of
    0.070566·y³ + 1.5976·y = ln(10^threshold − 1) (Cardano; one real root as both terms rise).
    Threshold 8 gives y* ≈ 5.22."""
    _positive("phi threshold", threshold, "phi (−log10 probability)")
    u = threshold * math.log(10.0) + math.log(-math.expm1(-threshold * math.log(10.0)))
    p = LOGISTIC_A / LOGISTIC_B  # y³ + p·y + q = 0
    q = -u / LOGISTIC_B
    disc = math.sqrt(q * q / 4 + p**3 / 27)
    return float(np.cbrt(-q / 2 + disc) + np.cbrt(-q / 2 - disc))


def phi_timeout_s(mean_s: ArrayLike, std_s: ArrayLike, params: PhiParams = DEFAULT_PHI) -> np.ndarray:
    """The wait (s) at which φ crosses the threshold: mean + pause + y*·max(std, floor)."""
    std = np.maximum(np.asarray(std_s, dtype=np.float64), params.min_std_deviation_s)
    return np.asarray(np.asarray(mean_s, dtype=np.float64) + params.acceptable_pause_s
                      + phi_threshold_y(params.threshold) * std)


def phi_timeouts(rtt_s: ArrayLike, params: PhiParams = DEFAULT_PHI) -> np.ndarray:
    """Phi-accrual timeout (s) in force at attempts 0..n (last: the next attempt).

    Mean and population std dev (as Akka's HeartbeatHistory) of the last `max_sample_size`
    replies; before `min_replies` replies, the initial timeout (Akka instead seeds its history
    from a first-heartbeat estimate). Unlike Akka, a reply that came after the threshold still
    enters the history (a lasting RTT rise must be learnt); lost attempts add nothing (no
    backoff). Vectorised with prefix sums of centred values.
    """
    r = _as_rtt(rtt_s)
    lost = np.isnan(r)
    x = r[~lost]
    c = _replies_before(lost)
    out = np.full(c.size, params.initial_timeout_s)
    if x.size < params.min_replies:
        return out
    # Centring on the first replies' median keeps the prefix sums' cancellation small; those
    # replies precede every attempt that uses the statistics, so the series stays online.
    ref = float(np.median(x[:params.min_replies]))
    d = x - ref
    s1 = np.concatenate(([0.0], np.cumsum(d)))
    s2 = np.concatenate(([0.0], np.cumsum(d * d)))
    counts = np.arange(x.size + 1)
    lo = np.maximum(counts - params.max_sample_size, 0)
    n = np.maximum(counts - lo, 1)  # index 0 (no reply) is never used below
    mean_d = (s1[counts] - s1[lo]) / n
    var = np.maximum((s2[counts] - s2[lo]) / n - mean_d * mean_d, 0.0)
    by_count = phi_timeout_s(ref + mean_d, np.sqrt(var), params)
    ready = c >= params.min_replies
    out[ready] = by_count[c[ready]]
    return out


# --------------------------------------------------------------------------- quantile


def quantile_timeouts(rtt_s: ArrayLike, params: QuantileParams = DEFAULT_QUANTILE) -> np.ndarray:
    """Quantile timeout (s) at attempts 0..n: max(floor, factor × q-quantile of the last
    `window` replies), linear interpolation as numpy's default; before `min_replies`
    replies, the initial timeout. Rolling quantile via pandas' skiplist (imported here)."""
    import pandas as pd

    r = _as_rtt(rtt_s)
    lost = np.isnan(r)
    x = r[~lost]
    c = _replies_before(lost)
    out = np.full(c.size, params.initial_timeout_s)
    if x.size < params.min_replies:
        return out
    rolled = pd.Series(x).rolling(params.window, min_periods=1).quantile(params.q).to_numpy()
    by_count = np.concatenate(([np.nan], np.maximum(params.safety_factor * rolled, params.min_timeout_s)))
    ready = c >= params.min_replies
    out[ready] = by_count[c[ready]]
    return out


# --------------------------------------------------------------------------- faults


def inject_faults(rtt_s: ArrayLike, *, seed: int, spike_rate: float = 0.0, spike_mean_s: float = 0.0,
                  n_outages: int = 0, outage_attempts: int = 5, loss_rate: float = 0.0,
                  skip_attempts: int = 0) -> FaultInjection:
    """Add seeded faults to an RTT series (s) for replay.

    Outages: `n_outages` runs of `outage_attempts` lost attempts, one at a random place in
    each of n equal segments after `skip_attempts` (never adjacent). Spikes: each remaining
    reply, with probability `spike_rate`, is delayed by an exponential extra delay of mean
    `spike_mean_s`. Isolated losses: each remaining reply is lost with probability `loss_rate`.
    """
    r = _as_rtt(rtt_s)
    n = r.size
    for name, rate in (("spike_rate", spike_rate), ("loss_rate", loss_rate)):
        if not 0 <= rate <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], got {rate!r}")
    if not (math.isfinite(spike_mean_s) and spike_mean_s >= 0):
        raise ValueError(f"spike_mean_s must be >= 0 seconds, got {spike_mean_s!r}")
    if spike_rate > 0 and spike_mean_s == 0:
        raise ValueError("spike_rate > 0 needs spike_mean_s > 0 seconds")
    if n_outages < 0 or outage_attempts < 1 or not 0 <= skip_attempts <= n:
        raise ValueError(f"bad outage layout: n_outages={n_outages}, outage_attempts={outage_attempts}, "
                         f"skip_attempts={skip_attempts} (of {n} attempts)")
    rng = np.random.default_rng(seed)
    in_outage = np.zeros(n, dtype=bool)
    starts = np.zeros(0, dtype=np.int64)
    if n_outages:
        seg = (n - skip_attempts) // n_outages
        if seg < outage_attempts + 1:
            raise ValueError(f"{n_outages} outages of {outage_attempts} attempts do not fit in "
                             f"{n - skip_attempts} attempts")
        starts = skip_attempts + seg * np.arange(n_outages) + rng.integers(0, seg - outage_attempts,
                                                                           size=n_outages)
        for s in starts:
            in_outage[s:s + outage_attempts] = True
    free = ~in_outage & ~np.isnan(r)
    spiked = free & (rng.random(n) < spike_rate)
    out = r.copy()
    out[spiked] += rng.exponential(spike_mean_s, size=int(spiked.sum())) if spike_mean_s > 0 else 0.0
    dropped = free & ~spiked & (rng.random(n) < loss_rate)
    out[in_outage | dropped] = np.nan
    result = FaultInjection(out, np.flatnonzero(spiked), starts, outage_attempts, np.flatnonzero(dropped))
    for a in (result.rtt_s, result.spike_idx, result.outage_starts, result.lost_idx):
        a.setflags(write=False)
    return result


# --------------------------------------------------------------------------- replay


def _outage_starts(lost: np.ndarray, min_lost: int) -> np.ndarray:
    """First attempt of every run of >= `min_lost` consecutive lost attempts."""
    edges = np.diff(np.concatenate(([0], lost.astype(np.int8), [0])))
    begin, end = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return begin[(end - begin) >= min_lost]


def _score(method: str, kind: str, timeouts: np.ndarray, r: np.ndarray, first: int,
           starts: np.ndarray) -> MethodScore:
    """False timeouts and detection for one timeout series (n + 1 values) over attempts >= first."""
    t = timeouts[first:-1]
    rr = r[first:]
    arrived = ~np.isnan(rr)
    n_rep = int(arrived.sum())
    n_false = int((rr[arrived] > t[arrived]).sum())
    det: float | None
    if starts.size:
        det = float(timeouts[starts].mean())
    else:
        det = float(t.mean()) if t.size else None
    return MethodScore(method=method, kind=kind, timeout_s=float(timeouts[-1]),
                       false_timeout_rate=n_false / n_rep if n_rep else None,
                       n_false_timeouts=n_false, n_replies_scored=n_rep, mean_detection_s=det,
                       mean_timeout_s=float(t.mean()) if t.size else None)


def fixed_label(timeout_s: float) -> str:
    """Method name of a fixed baseline: 'fixed_1s', 'fixed_0.5s'."""
    return f"fixed_{timeout_s:g}s"


def replay(rtt_s: ArrayLike, *, rfc: Rfc6298Params = DEFAULT_RFC6298, phi_params: PhiParams = DEFAULT_PHI,
           quantile: QuantileParams = DEFAULT_QUANTILE,
           fixed_timeouts_s: Sequence[float] = FIXED_BASELINES_S,
           outage_starts: ArrayLike | None = None, warmup_replies: int = WARMUP_REPLIES) -> ReplayResult:
    """Score every method online over the recorded attempts after `warmup_replies` replies.

    False timeout: a reply that came (finite RTT) but later than the timeout in force; the
    rate is over scored replies. A late reply still enters the history (the recorded series
    holds it). Detection of an outage = the timeout in force at its first lost attempt;
    outages are `outage_starts` if given (e.g. from `inject_faults`), else runs of
    >= OUTAGE_MIN_LOST lost attempts; with none, the mean timeout over scored attempts.
    """
    r = _as_rtt(rtt_s)
    lost = np.isnan(r)
    n = r.size
    if warmup_replies < 0:
        raise ValueError(f"warmup_replies must be >= 0 replies, got {warmup_replies}")
    for t in fixed_timeouts_s:
        _positive("fixed timeout", t, "seconds")
    reply_idx = np.flatnonzero(~lost)
    if warmup_replies == 0:
        first = 0
    else:
        first = int(reply_idx[warmup_replies - 1]) + 1 if reply_idx.size >= warmup_replies else n
    if outage_starts is None:
        starts = _outage_starts(lost, OUTAGE_MIN_LOST)
    else:
        starts = np.asarray(outage_starts, dtype=np.int64).reshape(-1)
        bad = starts[(starts < 0) | (starts >= n)]
        if bad.size:
            raise ValueError(f"outage start {int(bad[0])} is not an attempt index (0..{n - 1})")
        if starts.size and not lost[starts].all():
            raise ValueError(f"outage start {int(starts[~lost[starts]][0])} is an attempt with a reply")
    starts = starts[starts >= first]
    series: list[tuple[str, str, np.ndarray]] = [
        (METHOD_RFC6298, "adaptive", rfc6298_timeouts(r, rfc)),
        (METHOD_PHI, "adaptive", phi_timeouts(r, phi_params)),
        (METHOD_QUANTILE, "adaptive", quantile_timeouts(r, quantile)),
    ]
    series += [(fixed_label(t), "fixed", np.full(n + 1, float(t))) for t in fixed_timeouts_s]
    scores = tuple(_score(m, kind, ts, r, first, starts) for m, kind, ts in series)
    n_scored = n - first
    basis = None if n_scored == 0 else (BASIS_OUTAGES if starts.size else BASIS_EVERY_ATTEMPT)
    return ReplayResult(scores=scores, n_attempts=n, n_lost=int(lost.sum()), first_scored_attempt=first,
                        n_scored_attempts=n_scored, n_scored_replies=int((~lost[first:]).sum()),
                        detection_basis=basis, n_outages=int(starts.size))


# --------------------------------------------------------------------------- recommendation


def _or_inf(x: float | None) -> float:
    return math.inf if x is None else x


def _pct(rate: float) -> str:
    return f"{rate * 100:.3g} %"


def recommend_timeout(rtt_s: ArrayLike, *, rfc: Rfc6298Params = DEFAULT_RFC6298,
                      phi_params: PhiParams = DEFAULT_PHI, quantile: QuantileParams = DEFAULT_QUANTILE,
                      false_timeout_target: float = FALSE_TIMEOUT_TARGET,
                      fixed_timeouts_s: Sequence[float] = FIXED_BASELINES_S,
                      outage_starts: ArrayLike | None = None,
                      warmup_replies: int = WARMUP_REPLIES) -> TimeoutRecommendation:
    """Recommend the timeout (s) for the next attempt from a recorded RTT series.

    Rule: replay the adaptive methods; among those whose false-timeout rate is within
    `false_timeout_target`, take the shortest mean detection time; if none is, the lowest
    false-timeout rate. Fewer than MIN_REPLAY_REPLIES scored replies: RFC 6298 (the
    conservative estimator the RFC defines from the first sample). No reply: no numbers.
    """
    if not 0 <= false_timeout_target < 1:
        raise ValueError(f"false_timeout_target must be a fraction in [0, 1), got {false_timeout_target!r}")
    r = _as_rtt(rtt_s)
    lost = np.isnan(r)
    x = r[~lost]
    rep = replay(r, rfc=rfc, phi_params=phi_params, quantile=quantile, fixed_timeouts_s=fixed_timeouts_s,
                 outage_starts=outage_starts, warmup_replies=warmup_replies)
    common: dict[str, Any] = dict(n_samples=int(r.size), n_lost=int(lost.sum()),
                                  false_timeout_target=false_timeout_target,
                                  detection_basis=rep.detection_basis, methods=rep.scores)
    if x.size == 0:
        why = "no RTT samples" if r.size == 0 else f"all {r.size} attempts were lost"
        return TimeoutRecommendation(STATUS_INSUFFICIENT, f"{why}: no round-trip distribution to adapt to",
                                     None, None, None, None, **common)
    p50, p99 = (float(v) for v in np.quantile(x, [0.5, 0.99]))
    adaptive = [s for s in rep.scores if s.kind == "adaptive"]
    if rep.n_scored_replies < MIN_REPLAY_REPLIES:
        s = rep.score(METHOD_RFC6298)
        return TimeoutRecommendation(
            STATUS_TOO_FEW,
            f"only {rep.n_scored_replies} replies after the {warmup_replies}-reply warm-up (need "
            f"{MIN_REPLAY_REPLIES} to replay): RFC 6298 RTO from {x.size} RTT(s), {s.timeout_s:.3g} s",
            s.timeout_s, s.method, p50, p99, **common)
    within = [s for s in adaptive if s.false_timeout_rate is not None
              and s.false_timeout_rate <= false_timeout_target]
    basis = ("over " + (f"{rep.n_outages} outage(s)" if rep.detection_basis == BASIS_OUTAGES
                        else "every attempt, no outage seen"))
    if within:
        best = min(within, key=lambda s: (_or_inf(s.mean_detection_s), _or_inf(s.false_timeout_rate)))
        assert best.false_timeout_rate is not None and best.mean_detection_s is not None
        others = ", ".join(f"{s.method} {s.mean_detection_s:.3g} s" for s in adaptive
                           if s is not best and s.mean_detection_s is not None)
        reason = (f"{best.method} detects an outage in {best.mean_detection_s:.3g} s on average ({basis}), "
                  f"the fastest of {len(within)} method(s) within the {_pct(false_timeout_target)} "
                  f"false-timeout target ({_pct(best.false_timeout_rate)} of {best.n_replies_scored} "
                  f"replies late; others detect in: {others or 'none'})")
        status = STATUS_OK
    else:
        best = min(adaptive, key=lambda s: (_or_inf(s.false_timeout_rate), _or_inf(s.mean_detection_s)))
        assert best.false_timeout_rate is not None and best.mean_detection_s is not None
        reason = (f"no method kept false timeouts within {_pct(false_timeout_target)}: {best.method} "
                  f"has the lowest ({_pct(best.false_timeout_rate)} of {best.n_replies_scored} replies "
                  f"late, mean detection {best.mean_detection_s:.3g} s {basis})")
        status = STATUS_TARGET_MISSED
    return TimeoutRecommendation(status, reason, best.timeout_s, best.method, p50, p99, **common)
