"""One assessment of everything the store says: `assess(evidence, policy) -> Assessment`, pure.

Every answer timekit gives about this host's time (`timekit now`, `check`, the Prometheus
metrics, `report`, `analyze drift`/`skew`, the state published for IntervalClock) is a rendering
of one `Assessment`, so for the same store and instant they give the same numbers. Each server's
drift is fitted once (`series.fit_series` on the evidence's fit window); that one fit feeds the
interval (through `interval_drift`), the drift shown and judged, and the published state.

Units are in the names: instants int ns, durations float s, rates ppm. Offsets are
reference − local (positive: this clock is behind); drift positive: this clock gains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from timekit.analysis.clock_state import ClockState
from timekit.analysis.cluster import PeerReading
from timekit.analysis.drift import CI_LEVEL, DriftFit, reported_status
from timekit.analysis.holdover import Holdover, find_holdover
from timekit.analysis.interval import (
    DRIFT_SE_MULTIPLIER,
    IntervalEstimate,
    IntervalPolicy,
    ServerBound,
    ServerEvidence,
    clock_state,
    compute_interval,
    kernel_ppm_of,
    kernel_steady,
    server_bound,
)
from timekit.analysis.leap_events import LeapSplit, explain_leap
from timekit.analysis.quarantine import NodeHealth
from timekit.analysis.series import Series, fit_series, on_the_wall_clock_of_now
from timekit.analysis.skew import SELF_NODE, NodeObservation, SkewAssessment, SkewPolicy, assess_skew
from timekit.analysis.stability import StabilityBound, phase_grid, stability_bound
from timekit.analysis.thresholds import DEFAULT_THRESHOLDS, DRIFT_GATE_FRACTION, Thresholds, ci_half_ppm
from timekit.analysis.time_daemon import DaemonPolicy, DaemonVerdict, claim_now, judge_daemon
from timekit.analysis.verdict import DEFAULT_WINDOW_S, CheckVerdict, judge
from timekit.daemon_samples import DaemonSample
from timekit.units import NS_PER_S
from timekit.vocabulary import NodeStatus

JITTER_SAMPLES = 8  # RFC 5905 peer jitter: RMS of offset differences over the clock filter's 8 samples
CLOCK_FILTER_SAMPLES = 8  # RFC 5905's clock filter stages
CLOCK_FILTER_SPAN_S = 16.0  # one burst (chrony's iburst: 4 queries 2 s apart); older is another poll's
JITTER_MAX_GAP_S = 1024.0  # successive samples further apart than NTP's longest default poll: no pair
PAUSE_KEYS = ("p50_s", "p90_s", "p99_s", "p999_s", "max_s", "suspend_s")


@dataclass(frozen=True)
class Policy:
    """Every assumption and threshold an assessment applies, resolved once at the edge."""

    interval: IntervalPolicy = field(default_factory=IntervalPolicy)
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    skew: SkewPolicy = field(default_factory=SkewPolicy)
    daemon: DaemonPolicy = field(default_factory=DaemonPolicy)


@dataclass(frozen=True)
class Attempts:
    """One server's attempts in the window: how many, how many usable, and the newest one's error."""

    n_attempts: int = 0
    n_ok: int = 0
    last_error: str | None = None  # error code of the newest attempt if it failed


@dataclass(frozen=True)
class Evidence:
    """What a window of the store says, read as one snapshot, and the clock reading taken after it.

    `series`: each server's newest usable samples (the fit window), oldest first. `attempts`,
    `pauses`: within `window_s` before `realtime_ns`. `pauses_since_check`, `suspends_since_check`:
    since the previous skew check (the pause guard). `newest_ok_ns`: the store's newest usable
    sample of any server (None: none at all).
    """

    realtime_ns: int
    boottime_ns: int
    boot_id: str | None
    window_s: float
    series: Mapping[str, Series]
    attempts: Mapping[str, Attempts] = field(default_factory=dict)
    health: Mapping[str, NodeHealth] = field(default_factory=dict)
    pauses: Sequence[Mapping[str, Any]] = ()
    newest_ok_ns: int | None = None
    last_check_ns: int | None = None  # when the skew check last ran (None: never)
    pause_max_since_check_s: float = 0.0
    suspend_since_check_s: float | None = None  # the newest suspend since that check
    candidates: Sequence[str] | None = None  # the references the interval uses (None: every one)
    interval_only: bool = False  # only the candidates' series were read (publishing the state)
    monotonic_ns: int | None = None  # CLOCK_MONOTONIC and _RAW read with realtime_ns (None: not read):
    raw_ns: int | None = None  # the interval then follows the kernel's slews since the evidence
    daemon: DaemonSample | None = None  # the host's time daemon's newest reading (None: none stored)
    leap_seconds_ns: tuple[int, ...] = ()  # the leap seconds the system knows, as the instants they end
    peers: Sequence[PeerReading] = ()  # each cluster peer's newest reading ([cluster] peers)
    cluster_health: Mapping[str, NodeHealth] = field(default_factory=dict)  # self, peers: against the peers

    @property
    def servers(self) -> list[str]:
        return sorted(set(self.series) | set(self.attempts))


@dataclass(frozen=True)
class ServerAssessment:
    """What the evidence says about one reference. Offsets and durations in s, rates in ppm."""

    server: str
    age_s: float | None = None  # of the newest usable sample
    offset_s: float | None = None  # the clock filter's (`clock_filter`), at the newest sample's instant
    delay_s: float | None = None  # of the sample the clock filter chose
    root_distance_s: float | None = None  # of the sample the clock filter chose
    stratum: int | None = None
    leap: int | None = None
    jitter_s: float | None = None
    drift_ppm: float | None = None  # the fit's, when it is 'ok' or 'model_misfit'
    drift_ci95_ppm: tuple[float, float] | None = None
    n_ok: int = 0  # usable samples in the window
    n_attempts: int = 0  # attempts in the window
    last_error: str | None = None  # code of the newest attempt if it failed
    truechimer: bool | None = None  # None: not judged (no majority)
    health: NodeStatus | None = None  # from the skew checks (None: never judged)
    fit: DriftFit | None = None  # the one drift fit (None: no usable sample)
    bound: ServerBound | None = None  # where its true offset lies now (the interval's input)
    stability: StabilityBound | None = None  # its measured stability (None: not measured or not usable)

    @property
    def loss_ratio(self) -> float | None:
        return None if self.n_attempts == 0 else 1.0 - self.n_ok / self.n_attempts

    @property
    def drift_ci_half_ppm(self) -> float | None:
        """Half-width of the drift's 95 % interval, ppm (None without a drift)."""
        return ci_half_ppm(self.drift_ppm, self.drift_ci95_ppm)

    def drift_judgeable(self, warn_drift_ppm: float) -> bool:
        """Whether the drift is known well enough to alert on: its 95 % half-width is at most the
        warning × DRIFT_GATE_FRACTION (a 4-query burst's ±340 ppm must not raise a drift alarm)."""
        half = self.drift_ci_half_ppm
        return half is not None and half <= warn_drift_ppm * DRIFT_GATE_FRACTION

    def silent_for_s(self) -> float | None:
        """How long the server has failed to answer: age of the newest usable sample when the
        newest attempt failed, else None (it answered last time)."""
        if self.last_error is None:
            return None
        return self.age_s if self.age_s is not None else float("inf")


@dataclass(frozen=True)
class Assessment:
    """This host against its references at (`as_of_ns` CLOCK_REALTIME, `boottime_ns`)."""

    as_of_ns: int
    servers: tuple[ServerAssessment, ...] = ()
    interval: IntervalEstimate | None = None
    state: ClockState | None = None  # the interval frozen for IntervalClock readers
    self_health: NodeStatus | None = None
    pause: Mapping[str, float] | None = None  # worst pause summary in the window (max of each column)
    boottime_ns: int = 0
    window_s: float = DEFAULT_WINDOW_S
    newest_ok_age_s: float | None = None  # the store's newest usable sample, any server
    skew: SkewAssessment | None = None
    skew_hold: str | None = None  # why the skew check must not move anyone now (the pause guard)
    node_health: Mapping[str, NodeHealth] = field(default_factory=dict)  # stored, before this check
    verdict: CheckVerdict | None = None  # `timekit check`'s verdict on the whole store
    daemon: DaemonVerdict | None = None  # the host's time daemon, checked against this assessment
    holdover: Holdover | None = None  # how long until the interval is wider than the policy's width
    leap: LeapSplit | None = None  # a leap second splitting the references (explains a missing majority)
    peers: Sequence[PeerReading] = ()  # each cluster peer's newest reading
    cluster_health: Mapping[str, NodeHealth] = field(default_factory=dict)  # stored, against the peers
    pause_max_since_check_s: float = 0.0  # the pause meter's worst stall since the previous skew check
    suspend_since_check_s: float | None = None  # the newest suspend since it (None: none)

    @property
    def cluster_self_health(self) -> NodeStatus | None:
        """This host against its cluster peers' majority (None: never judged)."""
        h = self.cluster_health.get(SELF_NODE)
        return h.status if h else None

    @property
    def point_offset_s(self) -> float | None:
        """This clock's offset (reference − local), s: the median of the truechimers' newest
        offsets. The point estimate to judge and to graph; `interval_midpoint_offset_s` is not one
        (the interval widens unevenly as evidence ages), its half-width is the uncertainty."""
        chimers = [s.offset_s for s in self.servers if s.truechimer and s.offset_s is not None]
        if not chimers:
            return None
        return float(np.median(chimers))

    @property
    def interval_midpoint_offset_s(self) -> float | None:
        """The interval's midpoint as an offset (reference − local), s: the centre of the band
        `± interval.uncertainty_s`; not a point estimate (see `point_offset_s`)."""
        iv = self.interval
        if iv is None or iv.earliest_ns is None or iv.latest_ns is None:
            return None
        return ((iv.earliest_ns - iv.as_of_ns) + (iv.latest_ns - iv.as_of_ns)) / 2 / NS_PER_S

    @property
    def newest_age_s(self) -> float | None:
        ages = [s.age_s for s in self.servers if s.age_s is not None]
        return min(ages) if ages else None

    @property
    def usable(self) -> list[ServerAssessment]:
        return [s for s in self.servers if s.offset_s is not None]

    def server(self, name: str) -> ServerAssessment | None:
        return next((s for s in self.servers if s.server == name), None)


# ----------------------------------------------------------------------------- the rules
def jitter_s(t_ns: np.ndarray, offsets: np.ndarray, delays: np.ndarray) -> float | None:
    """Peer jitter in the sense of RFC 5905 (RMS of offset differences between successive samples),
    s, from the newest JITTER_SAMPLES samples, without the drift in it.

    Samples minutes apart differ by the clock's drift over the gap (100 ppm: 6 ms a minute), which is
    no jitter; so the offsets are first detrended by their own least-squares line, and only pairs
    at most JITTER_MAX_GAP_S apart (NTP's longest default poll) are differenced. The quarter of
    samples with the largest delays is left out (NTP's clock filter prefers low delays: a delay
    spike under load is a delay problem, not offset jitter). None below 3 samples: two cannot
    tell drift from jitter.
    """
    t, off, dl = t_ns[-JITTER_SAMPLES:], offsets[-JITTER_SAMPLES:], delays[-JITTER_SAMPLES:]
    if off.size >= 4:
        keep = dl <= np.quantile(dl, 0.75)
        t, off = t[keep], off[keep]
    if off.size < 3:
        return None
    x = (t - t[0]).astype(np.float64) / NS_PER_S
    resid = off - np.polyfit(x, off, 1)[0] * x if np.ptp(x) > 0 else off
    gaps = np.diff(x)
    diffs = np.diff(resid)[(gaps >= 0) & (gaps <= JITTER_MAX_GAP_S)]
    if diffs.size == 0:
        return None
    return float(np.sqrt(np.mean(diffs ** 2)))


def clock_filter(t_ns: np.ndarray, offsets: np.ndarray, delays: np.ndarray,
                 drift_ppm: float | None) -> tuple[int, float]:
    """(index, offset s): the sample whose offset stands for the server now, and that offset carried
    to the newest sample's instant.

    Of the newest CLOCK_FILTER_SAMPLES samples at most CLOCK_FILTER_SPAN_S older than the newest,
    the one with the lowest delay: the least-delayed exchange leaves the least room for an uneven
    path (RFC 5905's clock filter; chrony keeps the low-delay samples too). Its offset moves to the
    newest instant by the fitted drift (`drift_ppm`, our clock gains: the offset falls), when known.
    """
    last = len(t_ns) - 1
    span_ns = CLOCK_FILTER_SPAN_S * NS_PER_S
    stages = [i for i in range(max(0, last + 1 - CLOCK_FILTER_SAMPLES), last + 1)
              if int(t_ns[last]) - int(t_ns[i]) <= span_ns]
    best = min(stages, key=lambda i: (float(delays[i]), -i))  # a tie goes to the newer
    carried_s = (int(t_ns[last]) - int(t_ns[best])) / NS_PER_S
    return best, float(offsets[best]) - (drift_ppm or 0.0) * 1e-6 * carried_s


def _z_of(ci_level: float) -> float:
    """The two-sided normal quantile of `ci_level` (0.95 -> 1.95996...), without scipy."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + ci_level / 2)


def interval_drift(fit: DriftFit, max_drift_ppm: float) -> tuple[float | None, float | None]:
    """(drift_ppm, its standard error in ppm) the interval may lean on, or (None, None).

    The standard error is at least the CI half-width / z: the CI holds a delay-bias term the
    statistical SE leaves out, and the interval's growth must cover it. An estimate vaguer than
    the assumed bound (DRIFT_SE_MULTIPLIER·se > max_drift_ppm, e.g. a 4-query burst) would only
    widen the interval and move its centre on noise: then the bound alone is used, as ClockBound does.
    """
    if fit.status != "ok" or fit.drift_ppm is None or fit.drift_ci95_ppm is None or fit.drift_se_ppm is None:
        return None, None
    half = max(fit.drift_ci95_ppm[1] - fit.drift_ppm, fit.drift_ppm - fit.drift_ci95_ppm[0])
    se = max(fit.drift_se_ppm, half / _z_of(CI_LEVEL))
    if DRIFT_SE_MULTIPLIER * se > max_drift_ppm:
        return None, None
    return fit.drift_ppm, se


def server_evidence(series: Series, fit: DriftFit, policy: IntervalPolicy,
                    current_boot: str | None) -> ServerEvidence:
    """One server's evidence for the interval: its drift (from `fit`) plus the samples of this boot,
    in boottime order (after a backward wall-clock step, realtime order lies)."""
    drift, se = interval_drift(fit, policy.max_drift_ppm)
    this_boot = (series.boottime_ns >= 0) & np.array([b == current_boot for b in series.boot_id], dtype=bool)
    ev = series.select(this_boot)
    ev = ev.select(np.argsort(ev.boottime_ns, kind="stable"))
    kernel = (None if ev.monotonic_ns is None or ev.raw_ns is None
              else kernel_ppm_of(ev.monotonic_ns, ev.raw_ns))
    # the fit saw only this boot's samples (it is given the whole series) and the kernel one rate
    steady = (kernel is not None and len(ev) == len(series) and ev.monotonic_ns is not None
              and ev.raw_ns is not None and kernel_steady(ev.monotonic_ns, ev.raw_ns))
    stability = measured_stability(ev, fit, policy) if drift is not None and steady else None
    return ServerEvidence(ev.server, ev.t_local_ns, ev.boottime_ns, ev.offset_s, ev.root_distance_s,
                          leap=ev.leap, drift_ppm=drift, drift_se_ppm=se, monotonic_ns=ev.monotonic_ns,
                          raw_ns=ev.raw_ns, kernel_ppm=kernel, kernel_steady=steady, stability=stability)


def measured_stability(series: Series, fit: DriftFit, policy: IntervalPolicy) -> StabilityBound | None:
    """The stability the interval's growth may lean on: ADEV's upper bound over the samples since the
    newest step the drift fit found (a step is no frequency noise), in time order; None when the policy
    does not use it or the samples do not sit on a regular enough grid (`stability.phase_grid`)."""
    if not policy.use_stability:
        return None
    s = series.select(np.argsort(series.t_local_ns, kind="stable"))
    if fit.steps:
        s = s.select(s.t_local_ns >= fit.steps[-1].t_ns)
    grid = phase_grid(s.t_local_ns, s.offset_s, s.delay_s)
    return stability_bound(grid, sigmas=policy.stability_sigmas, floor_ppm=policy.stability_floor_ppm)


def holdover_of(used: Sequence[ServerEvidence], est: IntervalEstimate, ev: Evidence,
                policy: IntervalPolicy) -> Holdover | None:
    """How long the interval stays within ± `policy.holdover_width_s` if no reference answers from now
    (`holdover.find_holdover` over `compute_interval(..., ahead_s=T)`); None without an interval."""
    if est.earliest_ns is None or est.evidence_age_s is None:
        return None

    def half_width_at(ahead_s: float) -> float | None:
        return compute_interval(used, now_realtime_ns=ev.realtime_ns, now_boottime_ns=ev.boottime_ns,
                                policy=policy, now_monotonic_ns=ev.monotonic_ns, now_raw_ns=ev.raw_ns,
                                ahead_s=ahead_s).uncertainty_s

    return find_holdover(half_width_at, policy.holdover_width_s, policy.void_after_s - est.evidence_age_s)


def projected_interval(ev: Evidence, policy: IntervalPolicy, ahead_s: float) -> IntervalEstimate:
    """The interval `assess` gives now, as it will be `ahead_s` s later if no reference answers (what the
    holdover is read from): the same evidence, every sample older by `ahead_s`."""
    walled = {n: on_the_wall_clock_of_now(s, now_realtime_ns=ev.realtime_ns, now_boottime_ns=ev.boottime_ns,
                                          boot_id=ev.boot_id) for n, s in ev.series.items()}
    names = ev.servers if ev.candidates is None else sorted(ev.candidates)
    used = [server_evidence(ev.series[n], fit_series(walled[n], policy.max_root_distance_s), policy,
                            ev.boot_id) for n in names if n in walled and len(walled[n])]
    return compute_interval(used, now_realtime_ns=ev.realtime_ns, now_boottime_ns=ev.boottime_ns,
                            policy=policy, now_monotonic_ns=ev.monotonic_ns, now_raw_ns=ev.raw_ns,
                            ahead_s=ahead_s)


def skew_hold_reason(newest_delays_s: Sequence[float], policy: SkewPolicy, *, judged_before: bool,
                     suspend_s: float | None, pause_max_s: float) -> str | None:
    """The pause guard: why the skew check must not move any node now, or None.

    Evidence is not trusted while timekit itself was stalled: the newest replies of most references
    took longer than `pause_guard_s`, or (since the previous check) the host was suspended or the
    pause meter saw a stall longer than that.
    """
    slow = sum(1 for d in newest_delays_s if d > policy.pause_guard_s)
    n = len(newest_delays_s)
    if n and slow * 2 > n:
        return (f"pause guard: {slow} of {n} references' newest replies took over "
                f"{policy.pause_guard_s:g} s (timekit or this host stalled)")
    if judged_before and suspend_s is not None:
        return f"pause guard: this host was suspended {suspend_s:.3f} s since the previous check"
    if judged_before and pause_max_s > policy.pause_guard_s:
        return (f"pause guard: the pause meter saw this host stall {pause_max_s:.3f} s since the previous "
                f"check (over {policy.pause_guard_s:g} s)")
    return None


def _server(name: str, ev: Evidence, s: Series | None, fit: DriftFit | None, bound: ServerBound | None,
            judged: Mapping[str, bool] | None) -> ServerAssessment:
    tries = ev.attempts.get(name, Attempts())
    health = ev.health.get(name)
    base = ServerAssessment(name, n_attempts=tries.n_attempts, n_ok=tries.n_ok, last_error=tries.last_error,
                            health=health.status if health else None, fit=fit, bound=bound)
    if s is None or not len(s):
        return base
    newest = len(s) - 1  # series are in time order
    drift = ci = None
    if fit is not None and fit.status in ("ok", "model_misfit"):
        drift, ci = fit.drift_ppm, fit.drift_ci95_ppm
    # carried by a drift people are told is known (±50 ppm at most), never by a burst's guess
    known = fit.drift_ppm if fit is not None and reported_status(fit)[0] == "ok" else None
    chosen, offset = clock_filter(s.t_local_ns, s.offset_s, s.delay_s, known)
    rd = float(s.root_distance_s[chosen])
    stratum = None if s.stratum is None else int(s.stratum[newest]) or None
    return replace(base, age_s=max(0.0, (ev.realtime_ns - int(s.t_local_ns[newest])) / NS_PER_S),
                   offset_s=offset, delay_s=float(s.delay_s[chosen]),
                   root_distance_s=rd if math.isfinite(rd) else None, stratum=stratum,
                   leap=int(s.leap[newest]), jitter_s=jitter_s(s.t_local_ns, s.offset_s, s.delay_s),
                   drift_ppm=drift, drift_ci95_ppm=ci,
                   truechimer=None if judged is None else judged.get(name))


def _pause_summary(pauses: Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
    if not pauses:
        return None
    out = {k: max(float(p[k]) for p in pauses) for k in PAUSE_KEYS}
    out["newest_ns"] = pauses[-1]["t_local_ns"]
    return out


def assess(ev: Evidence, policy: Policy | None = None) -> Assessment:
    """The one assessment of `ev` under `policy`: fits, bounds, interval, state, skew, verdict."""
    policy = policy or Policy()
    ip = policy.interval
    names = ev.servers
    # jitter, drift and offsets about the references, not about a step of our wall clock; the interval
    # takes the samples as measured and corrects steps itself (and says so)
    walled = {n: on_the_wall_clock_of_now(s, now_realtime_ns=ev.realtime_ns, now_boottime_ns=ev.boottime_ns,
                                          boot_id=ev.boot_id) for n, s in ev.series.items()}
    fits = {n: fit_series(s, ip.max_root_distance_s) for n, s in walled.items() if len(s)}
    evidence = {n: server_evidence(ev.series[n], fits[n], ip, ev.boot_id) for n in names if n in fits}
    used = [evidence[n] for n in (names if ev.candidates is None else sorted(ev.candidates)) if n in evidence]
    est = compute_interval(used, now_realtime_ns=ev.realtime_ns, now_boottime_ns=ev.boottime_ns, policy=ip,
                           now_monotonic_ns=ev.monotonic_ns, now_raw_ns=ev.raw_ns)
    state = clock_state(est, used, anchor_boottime_ns=ev.boottime_ns, policy=ip)
    if ev.interval_only:
        return Assessment(ev.realtime_ns, (), est, state, boottime_ns=ev.boottime_ns, window_s=ev.window_s)
    chimers = set(est.selection.truechimers) if est.selection and est.selection.quorum else None
    bounds = {b.server: b for b in est.servers}
    for n, e in evidence.items():  # the references outside the candidates: bounds for the skew checks
        if n not in bounds:
            bounds[n] = server_bound(e, now_realtime_ns=ev.realtime_ns, now_boottime_ns=ev.boottime_ns,
                                     policy=ip, now_monotonic_ns=ev.monotonic_ns, now_raw_ns=ev.raw_ns)
    judged = None if chimers is None else {e.server: e.server in chimers for e in used}
    servers = tuple(replace(_server(n, ev, walled.get(n), fits.get(n), bounds.get(n), judged),
                            stability=evidence[n].stability if n in evidence else None) for n in names)
    me = ev.health.get(SELF_NODE)
    newest_age = None if ev.newest_ok_ns is None else (ev.realtime_ns - ev.newest_ok_ns) / NS_PER_S
    skew, hold = _skew(ev, servers, policy.skew)
    daemon = _daemon(ev, policy) if ev.daemon is not None else None
    holdover = holdover_of(used, est, ev, ip)  # before the daemon narrows it: timekit's own interval
    leap = None
    if est.selection is not None and (not est.selection.quorum or est.selection.falsetickers):
        # references that disagree around a leap second: say who steps and who smears, not just "no majority"
        leap = explain_leap({n: walled[n] for n in names if n in walled and len(walled[n])},
                            ev.leap_seconds_ns)
        if leap is not None and leap.split:
            est = replace(est, reason=f"{leap.words}; {est.reason}")
            skew = replace(skew, reason=f"{leap.words}; {skew.reason}")
            # the leap guard: two honest timescales are no evidence against any node (FAULTS C6)
            hold = f"leap guard: {leap.words}"
    if ip.use_daemon and daemon is not None and daemon.status == "ok" and ev.daemon is not None:
        est = narrowed_by_daemon(est, ev.daemon, ip, now_boottime_ns=ev.boottime_ns)
    out = Assessment(ev.realtime_ns, servers, est, state, me.status if me else None,
                     _pause_summary(ev.pauses),
                     boottime_ns=ev.boottime_ns, window_s=ev.window_s, newest_ok_age_s=newest_age,
                     skew=skew, skew_hold=hold, node_health=ev.health, daemon=daemon, holdover=holdover,
                     leap=leap, peers=ev.peers, cluster_health=ev.cluster_health,
                     pause_max_since_check_s=ev.pause_max_since_check_s,
                     suspend_since_check_s=ev.suspend_since_check_s)
    return replace(out, verdict=judge(out, policy.thresholds, mode="store", newest_ok_age_s=newest_age,
                                      window_s=ev.window_s))


def _host(server: str) -> str:
    """'127.0.0.1:123' -> '127.0.0.1', '[::1]:123' -> '::1', 'pool.ntp.org' as is."""
    if server.startswith("["):
        return server[1:].split("]", 1)[0]
    return server.rsplit(":", 1)[0] if server.count(":") == 1 else server


def measured_at(ev: Evidence, ip: IntervalPolicy, realtime_ns: int, boottime_ns: int,
                monotonic_ns: int | None = None, raw_ns: int | None = None) -> IntervalEstimate:
    """The interval the evidence gave at an earlier instant of this boot: from the candidates' samples
    taken before it (those after it are left out, as a reading then would not have had them)."""
    series = {}
    for n, s in ev.series.items():
        if ev.candidates is not None and n not in ev.candidates:
            continue
        later = (s.boottime_ns > boottime_ns) & np.array([b == ev.boot_id for b in s.boot_id], dtype=bool)
        kept = s.select(~later) if later.any() else s
        if len(kept):
            series[n] = kept
    walled = {n: on_the_wall_clock_of_now(s, now_realtime_ns=realtime_ns, now_boottime_ns=boottime_ns,
                                          boot_id=ev.boot_id) for n, s in series.items()}
    used = [server_evidence(series[n], fit_series(w, ip.max_root_distance_s), ip, ev.boot_id)
            for n, w in sorted(walled.items())]
    return compute_interval(used, now_realtime_ns=realtime_ns, now_boottime_ns=boottime_ns, policy=ip,
                            now_monotonic_ns=monotonic_ns, now_raw_ns=raw_ns)


def narrowed_by_daemon(est: IntervalEstimate, d: DaemonSample, ip: IntervalPolicy, *,
                       now_boottime_ns: int) -> IntervalEstimate:
    """`est` intersected with the daemon's claim now (`time_daemon.claim_now`, grown since the reading
    at ClockBound's 15 ppm, `wander_ppm`, plus the daemon's own frequency error bound); `est` as it is
    when either has no interval or they do not overlap. The result holds the truth only when both did:
    the daemon's bound is trusted here, as ClockBound trusts it."""
    if est.earliest_ns is None or est.latest_ns is None:
        return est
    claim = claim_now(d, now_realtime_ns=est.as_of_ns, now_boottime_ns=now_boottime_ns,
                      growth_ppm=ip.wander_ppm + abs(d.skew_ppm or 0.0))
    if claim is None:
        return est
    lo = max(est.earliest_ns, est.as_of_ns + math.floor(claim[0] * NS_PER_S))
    hi = min(est.latest_ns, est.as_of_ns + math.ceil(claim[1] * NS_PER_S))
    if lo > hi or (lo, hi) == (est.earliest_ns, est.latest_ns):
        return est
    return replace(est, earliest_ns=lo, latest_ns=hi,
                   reason=f"{est.reason}; narrowed by {d.daemon}'s claim (true time {claim[0] * 1e3:+.6f} .. "
                   f"{claim[1] * 1e3:+.6f} ms from this clock now), trusted as ClockBound trusts it")


def _daemon(ev: Evidence, policy: Policy) -> DaemonVerdict:
    """The daemon's newest reading against timekit's interval at that reading's instant."""
    d = ev.daemon
    assert d is not None
    if d.boottime_ns is None or d.boot_id is None or d.boot_id != ev.boot_id:
        return DaemonVerdict(d.daemon, "cannot_tell", f"the newest {d.daemon} reading is from another boot",
                             age_s=(ev.realtime_ns - d.t_local_ns) / NS_PER_S, synchronized=d.synchronized)
    measured, why, false_hosts = None, None, set()
    if d.boottime_ns > ev.boottime_ns:
        why = "its reading is newer than the assessment"
    elif (ev.boottime_ns - d.boottime_ns) / NS_PER_S <= policy.daemon.max_age_s:  # older: not judged
        at = measured_at(ev, policy.interval, d.t_local_ns, d.boottime_ns, d.monotonic_ns, d.raw_ns)
        if at.status == "unknown" or at.earliest_ns is None or at.latest_ns is None:
            why = at.reason.split("; ")[0]
        else:
            measured = ((at.earliest_ns - at.as_of_ns) / NS_PER_S, (at.latest_ns - at.as_of_ns) / NS_PER_S)
        sel = at.selection  # the majority at the reading, not now
        if sel is not None and sel.quorum:
            hosts: dict[str, list[bool]] = {}
            for name in (*sel.truechimers, *sel.falsetickers):
                hosts.setdefault(_host(name), []).append(name in sel.falsetickers)
            false_hosts = {h for h, flags in hosts.items() if all(flags)}
    return judge_daemon(d, now_realtime_ns=ev.realtime_ns, measured=measured, no_measure_reason=why,
                        falsetickers=false_hosts, policy=policy.daemon)


def _skew(ev: Evidence, servers: Sequence[ServerAssessment],
          policy: SkewPolicy) -> tuple[SkewAssessment, str | None]:
    """Each reference with fresh evidence, and `self` (offset 0 by definition), against the majority."""
    observations = [NodeObservation(SELF_NODE, 0.0, 0.0)]
    delays = []
    for s in servers:
        b = s.bound
        if (b is None or b.status != "ok" or b.lo_s is None or b.hi_s is None
                or (b.age_s or 0) > policy.max_age_s):
            continue
        observations.append(NodeObservation(s.server, (b.lo_s + b.hi_s) / 2, (b.hi_s - b.lo_s) / 2))
        if s.delay_s is not None:
            delays.append(s.delay_s)
    skew = assess_skew(observations, warn_offset_s=policy.warn_offset_s, max_offset_s=policy.max_offset_s)
    hold = skew_hold_reason(delays, policy, judged_before=bool(ev.health), suspend_s=ev.suspend_since_check_s,
                            pause_max_s=ev.pause_max_since_check_s)
    return skew, hold


def stale_references(a: Assessment, policy: SkewPolicy) -> list[str]:
    """References with samples that the skew check could not assess (no fresh bound)."""
    return [s.server for s in a.servers if s.fit is not None and (
        s.bound is None or s.bound.status != "ok" or (s.bound.age_s or 0) > policy.max_age_s)]
