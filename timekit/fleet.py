"""One snapshot of everything the store says about time now: per server and for this host.

`timekit check`, `timekit export prometheus`/`exporter` and `timekit report` all judge or
show the same numbers, so they all come from `fleet_status()` (one read of the store, the
pure analysis for drift and the interval, node health from the skew checks, pause summaries).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from timekit.analysis.interval import IntervalEstimate, IntervalPolicy
from timekit.drift_report import fit_series
from timekit.evidence import load_series
from timekit.units import NS_PER_S

if TYPE_CHECKING:
    from timekit.store import Store

JITTER_SAMPLES = 8  # RFC 5905 peer jitter: RMS of offset differences over the clock filter's 8 samples
DEFAULT_WINDOW_S = 3600.0  # loss ratio and drift over the last hour


@dataclass
class ServerStatus:
    """What the store says about one server. Offsets and durations in s, rates in ppm."""

    server: str
    age_s: float | None = None  # of the newest usable sample
    offset_s: float | None = None  # newest usable sample
    delay_s: float | None = None
    root_distance_s: float | None = None
    stratum: int | None = None
    leap: int | None = None
    jitter_s: float | None = None
    drift_ppm: float | None = None
    drift_ci95_ppm: tuple[float, float] | None = None
    n_ok: int = 0  # usable samples in the window
    n_attempts: int = 0  # attempts in the window
    last_error: str | None = None  # code of the newest attempt if it failed
    truechimer: bool | None = None  # None: not judged (no interval)
    health: str | None = None  # 'ok' | 'suspect' | 'quarantined' from the skew checks

    @property
    def loss_ratio(self) -> float | None:
        return None if self.n_attempts == 0 else 1.0 - self.n_ok / self.n_attempts

    @property
    def drift_ci_half_ppm(self) -> float | None:
        """Half-width of the drift's 95 % interval, ppm (None without a drift)."""
        if self.drift_ppm is None or self.drift_ci95_ppm is None:
            return None
        lo, hi = self.drift_ci95_ppm
        return max(hi - self.drift_ppm, self.drift_ppm - lo)

    def drift_judgeable(self, warn_drift_ppm: float) -> bool:
        """Whether the drift is known well enough to alert on: its 95 % half-width is at most half
        the warning threshold (a 4-query burst's ±340 ppm must not raise a drift alarm)."""
        half = self.drift_ci_half_ppm
        return half is not None and half <= warn_drift_ppm / 2

    def silent_for_s(self) -> float | None:
        """How long the server has failed to answer: age of the newest usable sample when the
        newest attempt failed, else None (it answered last time)."""
        if self.last_error is None:
            return None
        return self.age_s if self.age_s is not None else float("inf")


@dataclass
class FleetStatus:
    """This host against its references at `as_of_ns` (CLOCK_REALTIME)."""

    as_of_ns: int
    servers: list[ServerStatus] = field(default_factory=list)
    interval: IntervalEstimate | None = None
    self_health: str | None = None
    pause: dict[str, Any] | None = None  # worst pause summary in the window (max of each column)

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
    def usable(self) -> list[ServerStatus]:
        return [s for s in self.servers if s.offset_s is not None]


def _jitter(offsets: np.ndarray, delays: np.ndarray) -> float | None:
    """RMS of successive differences of the newest JITTER_SAMPLES offsets, s, over the samples
    whose delay is at most the median of those (as NTP's clock filter prefers low-delay
    samples): a delay spike under load is a delay problem, not offset jitter."""
    off, dl = offsets[-JITTER_SAMPLES:], delays[-JITTER_SAMPLES:]
    keep = off[dl <= np.median(dl)] if dl.size else off
    if keep.size < 2:
        return None
    return float(np.sqrt(np.mean(np.diff(keep) ** 2)))


def fleet_status(store: Store, *, now: tuple[int, int] | None = None, servers: list[str] | None = None,
                 window_s: float = DEFAULT_WINDOW_S, policy: IntervalPolicy | None = None) -> FleetStatus:
    """Snapshot of the store at `now` (default: the clocks now), optionally for some servers only."""
    from timekit.skewcheck import SELF, load_health
    from timekit.truetime import estimate, read_now

    policy = policy or IntervalPolicy()
    rt_ns, boot_ns = now if now is not None else read_now()
    since = rt_ns - int(window_s * NS_PER_S)
    series = load_series(store, since_ns=since)
    attempts: dict[str, list[tuple[bool, str | None]]] = {}
    for server, ok, error in store.attempt_rows(["server", "ok", "error"], since_ns=since):
        attempts.setdefault(server, []).append((bool(ok), error))
    names = sorted(set(series) | set(attempts))
    if servers is not None:
        names = [n for n in names if n in set(servers)]
    est, _state = estimate(store, policy, now=(rt_ns, boot_ns), servers=names)
    chimers = set(est.selection.truechimers) if est.selection and est.selection.quorum else None
    health = load_health(store)
    out = FleetStatus(rt_ns, interval=est, self_health=health[SELF].status if SELF in health else None)
    for name in names:
        st = ServerStatus(name, n_attempts=len(attempts.get(name, [])),
                          health=health[name].status if name in health else None)
        tries = attempts.get(name)
        if tries and not tries[-1][0]:
            st.last_error = tries[-1][1]
        s = series.get(name)
        if s is not None and len(s):
            st.n_ok = len(s)
            st.age_s = max(0.0, (rt_ns - int(s.t_local_ns[-1])) / NS_PER_S)  # committed after `now`
            st.offset_s, st.delay_s = float(s.offset_s[-1]), float(s.delay_s[-1])
            rd = float(s.root_distance_s[-1])
            st.root_distance_s = rd if math.isfinite(rd) else None
            st.leap = int(s.leap[-1])
            st.jitter_s = _jitter(s.offset_s, s.delay_s)
            fit = fit_series(s, policy.max_root_distance_s)
            if fit.status in ("ok", "model_misfit"):
                st.drift_ppm, st.drift_ci95_ppm = fit.drift_ppm, fit.drift_ci95_ppm
            st.truechimer = None if chimers is None else name in chimers
        out.servers.append(st)
    strata = {r[0]: r[1] for r in store.ok_rows(["server", "stratum"], since_ns=since, last_per_server=1)}
    for st in out.servers:
        st.stratum = strata.get(st.server)
    pauses = store.pause_rows(since_ns=since)
    if pauses:
        out.pause = {k: max(p[k] for p in pauses) for k in ("p50_s", "p90_s", "p99_s", "p999_s", "max_s",
                                                            "suspend_s")}
        out.pause["newest_ns"] = pauses[-1]["t_local_ns"]
    return out
