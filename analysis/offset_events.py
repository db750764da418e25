"""Events in one reference's offsets, found from the NTP error bound and explained: steps, frequency
changes and spikes.

Every honest sample's true offset lies within ± its root distance (its bar), and between events the
truth is a line (this clock's drift against the reference). So:

- a **step** (`steps.detect_steps`): consecutive samples whose bars no believable rate (500 ppm) can
  join, with the new level confirmed by the samples after it;
- a **spike**: one sample (or an unconfirmed few) inconsistent with its neighbours on both sides, the
  series then carrying on at its old level: the reference's clock or the path glitched once;
- a **frequency change**: within one level, no single line passes through every bar (the misfit
  min_b [max(y − h − b·x) − min(y + h − b·x)] is positive), but split at one instant each side has a
  line through its bars, the change those lines allow excludes 0, and two lines explain the samples
  far better than one (F ≥ MIN_F_STATISTIC). The instant is searched on a grid of candidate splits
  (among those that fit, the best-fitting hinge of two lines), and the change is reported with the
  range the bars allow: slope after minus slope before, each from `regression.feasible_slope_range`.
  Sides that still misfit are split again (at most MAX_FREQUENCY_SPLITS levels deep).

Delay spikes are dropped first (their bars are so wide they bridge anything, as `drift.fit_drift`
does). When the bars are evidently not honest (`steps` gives up: too many inconsistent pairs) no
event is claimed: the status says so. Units: instants int ns, offsets s, rates ppm; a frequency
change is of the offset's slope (the reference against this clock): +80 ppm means the offset now
grows 80 µs/s faster (this clock slowed down against it, or the reference sped up).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from timekit.analysis.drift import delay_spike_threshold_s
from timekit.analysis.regression import feasible_slope_range, golden_minimum
from timekit.analysis.steps import DEFAULT_CONFIRM, DEFAULT_MAX_RATE_PPM, detect_steps
from timekit.units import NS_PER_S, PPM

EventKind = Literal["step", "frequency_change", "spike", "leap_smear", "leap_step"]
MIN_SEGMENT = 6  # samples each side of a frequency change: fewer cannot pin a slope
SPLIT_CANDIDATES = 48  # split instants tried per segment
MAX_FREQUENCY_SPLITS = 3  # recursion depth: at most 7 frequency changes per level
GOLDEN_ITERATIONS = 80
# and the two lines must explain the samples far better than one (F of the hinge against the line, with
# the best of SPLIT_CANDIDATES splits: a sup-F, whose 0.1 % point is near 20): noise the bars do not
# cover (a server whose clock reads jitter) must not read as a change
MIN_F_STATISTIC = 50.0


@dataclass(frozen=True)
class OffsetEvent:
    """One event: `size` in `unit` (step, spike: s; frequency change: ppm), with the range the bars
    allow (`lo`, `hi`; None where the bars give none), and the words for it."""

    server: str
    kind: EventKind
    t_ns: int
    size: float
    unit: str
    explanation: str
    lo: float | None = None
    hi: float | None = None

    def to_json(self) -> dict[str, object]:
        return {"server": self.server, "kind": self.kind, "t_ns": self.t_ns, "size": self.size,
                "unit": self.unit, "lo": self.lo, "hi": self.hi, "explanation": self.explanation}


@dataclass(frozen=True)
class EventScan:
    """`status` 'ok' | 'too_few' | 'dishonest_bars'; `events` in time order."""

    server: str
    status: str
    reason: str
    events: tuple[OffsetEvent, ...] = ()


def misfit_s(x: np.ndarray, y: np.ndarray, h: np.ndarray) -> float:
    """How far the best line misses the bars [y − h, y + h], s (0: some line passes through all)."""
    if x.size < 2 or float(np.ptp(x)) <= 0.0:
        return 0.0
    low, high = y - h, y + h

    def g(b: float) -> float:
        return float(np.max(low - b * x)) - float(np.min(high - b * x))

    i, j = int(np.argmin(x)), int(np.argmax(x))
    dx = float(x[j] - x[i])
    a, c = (float(low[j] - high[i]) / dx, float(high[j] - low[i]) / dx)
    a, c = min(a, c) - abs(c - a), max(a, c) + abs(c - a)  # the optimum can lie outside the end bars' range
    _, worst = golden_minimum(g, a, c, stop_at_or_below=0.0, iterations=GOLDEN_ITERATIONS)
    return max(0.0, worst)


def _hinge_sse(x: np.ndarray, y: np.ndarray, h: np.ndarray, k: int) -> float:
    """Weighted squared misfit of two lines meeting at the split before sample k (one frequency change,
    the phase continuous), weights 1/h²."""
    knot = (x[k - 1] + x[k]) / 2
    basis = np.column_stack((np.ones_like(x), x, np.maximum(0.0, x - knot)))
    w = 1.0 / np.maximum(h, 1e-9)
    coef, *_ = np.linalg.lstsq(basis * w[:, None], y * w, rcond=None)
    r = (basis @ coef - y) * w
    return float(r @ r)


def _frequency_changes(server: str, t: np.ndarray, x: np.ndarray, y: np.ndarray, h: np.ndarray,
                       depth: int = 0) -> list[OffsetEvent]:
    """Frequency changes inside one level (indices into these arrays: time order, no step inside)."""
    n = x.size
    if n < 2 * MIN_SEGMENT or misfit_s(x, y, h) <= 0.0:
        return []
    candidates = np.unique(np.linspace(MIN_SEGMENT, n - MIN_SEGMENT, SPLIT_CANDIDATES).astype(np.int64))
    scored = [(max(misfit_s(x[:k], y[:k], h[:k]), misfit_s(x[k:], y[k:], h[k:])), int(k)) for k in candidates]
    worst, k = min(scored)
    fitting = [kk for w, kk in scored if w <= 0.0]
    if fitting:  # every split between these leaves a line each side: the hinge that fits best is the instant
        k = min(range(max(MIN_SEGMENT, fitting[0] - n // SPLIT_CANDIDATES),
                      min(n - MIN_SEGMENT, fitting[-1] + n // SPLIT_CANDIDATES) + 1),
                key=lambda kk: _hinge_sse(x, y, h, kk))
    if worst > 0.0 and depth + 1 < MAX_FREQUENCY_SPLITS:  # more than one change: split and look again
        return (_frequency_changes(server, t[:k], x[:k], y[:k], h[:k], depth + 1)
                + _frequency_changes(server, t[k:], x[k:], y[k:], h[k:], depth + 1))
    before = feasible_slope_range(x[:k], y[:k], h[:k])
    after = feasible_slope_range(x[k:], y[k:], h[k:])
    if before is None or after is None:  # misfits on a side the depth bound left: fit lines by least squares
        b0 = float(np.polyfit(x[:k], y[:k], 1)[0])
        b1 = float(np.polyfit(x[k:], y[k:], 1)[0])
        size, lo, hi = (b1 - b0) / PPM, None, None
    else:
        lo, hi = (after[0] - before[1]) / PPM, (after[1] - before[0]) / PPM
        size = ((after[0] + after[1]) / 2 - (before[0] + before[1]) / 2) / PPM
    if lo is None or hi is None or lo <= 0.0 <= hi:
        return []  # the bars allow no change at all (or are not honest here): nothing is proven
    line = np.column_stack((np.ones_like(x), x))
    w = 1.0 / np.maximum(h, 1e-9)
    coef, *_ = np.linalg.lstsq(line * w[:, None], y * w, rcond=None)
    r = (line @ coef - y) * w
    sse_line, sse_hinge = float(r @ r), _hinge_sse(x, y, h, k)
    f_stat = (sse_line - sse_hinge) / max(sse_hinge / max(n - 3, 1), 1e-300)
    if f_stat < MIN_F_STATISTIC:
        return []  # a line fits the samples about as well: the misfit is noise the bars do not cover
    t_change = (int(t[k - 1]) + int(t[k])) // 2
    words = (f"frequency change of {size:+.3f} ppm" + (f" ({lo:+.3f} .. {hi:+.3f})" if lo is not None else "")
             + f" between {(int(t[k]) - int(t[k - 1])) / NS_PER_S:.3g} s apart samples: no one line passes "
             "through every sample's error bar, a line before and a line after do")
    return [OffsetEvent(server, "frequency_change", t_change, size, "ppm", words, lo, hi)]


def find_events(server: str, t_ns: np.ndarray, offset_s: np.ndarray, delay_s: np.ndarray,
                half_width_s: np.ndarray, *, max_rate_ppm: float = DEFAULT_MAX_RATE_PPM,
                confirm: int = DEFAULT_CONFIRM) -> EventScan:
    """Steps, spikes and frequency changes in one server's time-ordered ok samples (see the module)."""
    t = np.asarray(t_ns, dtype=np.int64)
    o = np.asarray(offset_s, dtype=np.float64)
    d = np.asarray(delay_s, dtype=np.float64)
    hw = np.asarray(half_width_s, dtype=np.float64)
    if t.size < 2 * MIN_SEGMENT:
        return EventScan(server, "too_few", f"{t.size} samples (need {2 * MIN_SEGMENT})")
    keep = np.flatnonzero(d <= delay_spike_threshold_s(d))
    t, o, hw = t[keep], o[keep], np.where(np.isfinite(hw[keep]), hw[keep], d[keep] / 2)
    scan = detect_steps(t, o, hw, max_rate_ppm=max_rate_ppm, confirm=confirm)
    if scan.status != "ok":
        return EventScan(server, "dishonest_bars", scan.reason)
    events: list[OffsetEvent] = []
    for st in scan.steps:
        events.append(OffsetEvent(server, "step", int(st.t_ns), st.size_s, "s",
                                  f"step of {st.size_s * 1e3:+.3f} ms: the offset moved beyond the error "
                                  f"bars and {max_rate_ppm:g} ppm, and stayed"))
    out_idx = np.flatnonzero(scan.outlier)
    if scan.pending_from is not None:
        out_idx = out_idx[out_idx < scan.pending_from]
    good = ~scan.outlier
    for i in out_idx:
        near = np.flatnonzero(good)
        prev, nxt = near[near < i], near[near > i]
        if prev.size == 0 or nxt.size == 0:
            continue
        a, b = int(prev[-1]), int(nxt[0])
        frac = (int(t[i]) - int(t[a])) / max(1, int(t[b]) - int(t[a]))
        expected = o[a] + frac * (o[b] - o[a])
        size = float(o[i] - expected)
        events.append(OffsetEvent(server, "spike", int(t[i]), size, "s",
                                  f"spike of {size * 1e3:+.3f} ms: one sample off its neighbours beyond the "
                                  "error bars, the next back at the old level"))
    bounds = [0, *(int(np.searchsorted(t, s.t_ns)) for s in scan.steps), t.size]
    for lo_i, hi_i in zip(bounds[:-1], bounds[1:], strict=True):
        seg = np.arange(lo_i, hi_i)
        seg = seg[good[seg]]
        if seg.size < 2 * MIN_SEGMENT:
            continue
        ts = t[seg]
        x = (ts - ts[0]) / NS_PER_S
        events += _frequency_changes(server, ts, x, o[seg], hw[seg])
    events.sort(key=lambda e: e.t_ns)
    words = ", ".join(f"{sum(e.kind == k for e in events)} {k.replace('_', ' ')}(s)"
                      for k in ("step", "frequency_change", "spike") if any(e.kind == k for e in events))
    return EventScan(server, "ok", words or "no step, spike or frequency change the error bars prove",
                     tuple(events))
