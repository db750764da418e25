"""Clock steps and outliers in one server's offset series, from the NTP error bound alone.

An honest sample's true offset lies within ±half_width_s of the measured one, and a clock whose rate
error is at most `max_rate_ppm` changes its offset by at most max_rate·Δt. So two samples a and b of
one server are *consistent* when

    |offset_b − offset_a| ≤ hw_a + hw_b + max_rate_ppm·1e-6·|t_b − t_a|

and an inconsistency proves that something other than drift happened: a step (a new level that
persists) or an outlier (a sample that lies). The scan keeps a reference sample (the last good one)
and classifies each sample that is inconsistent with it:

    offset
      |            x  x  x  x  x        <- `confirm` samples consistent with each other and all
      |                                    inconsistent with the reference: a Step at the first one
      |   .  .  .              .  .  .
      |       o                         <- inconsistent, but the next sample is back: an outlier
      +----------------------------------- time

A candidate level with fewer than `confirm` samples before the series ends is `pending` (excluded,
reported). A "level" at the very start with fewer than `confirm` good samples is a run of outliers,
not a step. Samples with a wide half-width are consistent with almost anything and can bridge a step,
so callers should drop delay spikes before scanning (`drift.fit_drift` does).

Complexity: O(n) vectorised for the consecutive-pair test; a Python loop runs only over the rare
inconsistent pairs and the samples right after them (at most `MAX_SCAN_ITERATIONS` iterations; with
more, the half-widths are evidently not honest and the scan gives up with a status saying so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from timekit.units import NS_PER_S, PPM

DEFAULT_MAX_RATE_PPM = 500.0  # ntpd/chrony's largest believable frequency error
DEFAULT_CONFIRM = 3  # samples at a new level before it counts as a step
MIN_CONFIRM = 2
MAX_INCONSISTENT_FRACTION = 0.05  # more inconsistent consecutive pairs than this: half-widths dishonest
MIN_INCONSISTENT_TOLERATED = 20  # ...but always tolerate this many (short series)
MAX_SCAN_ITERATIONS = 200_000  # bound on the Python loop over events


@dataclass(frozen=True)
class Step:
    """A level change: `index` is the first sample of the new level; size_s = new − old offset (s).

    The size is offset[index] − offset[last good sample before it], so it includes drift over that gap.
    """

    index: int
    t_ns: int
    size_s: float


@dataclass(frozen=True, eq=False)
class StepScan:
    """Result of `detect_steps`.

    status: 'ok' | 'inconsistent_half_widths' (too many inconsistent pairs: no steps or outliers
    were trusted, `outlier` is all False and `segment_start` 0). `outlier` is a bool mask over the
    input (lone inconsistent samples, unconfirmed levels and `pending` ones). `segment_start` is the
    index where the newest level begins (0 unless a step, or a leading run of outliers, moved it).
    `pending_from` is the first sample of an unconfirmed level at the end of the series, else None.
    """

    status: str
    reason: str
    steps: tuple[Step, ...]
    outlier: np.ndarray = field(repr=False)
    segment_start: int
    pending_from: int | None


def _validate(t_ns: np.ndarray, offset_s: np.ndarray, half_width_s: np.ndarray, max_rate_ppm: float,
              confirm: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(t_ns)
    o = np.asarray(offset_s, dtype=np.float64)
    hw = np.asarray(half_width_s, dtype=np.float64)
    if t.ndim != 1 or o.ndim != 1 or hw.ndim != 1:
        raise ValueError("t_ns, offset_s and half_width_s must be one-dimensional")
    if not (t.size == o.size == hw.size):
        raise ValueError(f"t_ns, offset_s, half_width_s differ in length ({t.size}, {o.size}, {hw.size})")
    if t.size and not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"t_ns must be integer nanoseconds, got dtype {t.dtype}")
    t = t.astype(np.int64, copy=False)
    if not (math.isfinite(max_rate_ppm) and max_rate_ppm >= 0):
        raise ValueError(f"max_rate_ppm must be finite and >= 0 ppm, got {max_rate_ppm}")
    if confirm < MIN_CONFIRM:
        raise ValueError(f"confirm must be >= {MIN_CONFIRM} samples, got {confirm}")
    if not np.all(np.isfinite(o)):
        raise ValueError("offset_s contains NaN or infinite values")
    if not (np.all(np.isfinite(hw)) and np.all(hw >= 0)):
        raise ValueError("half_width_s must be finite and >= 0 seconds")
    if t.size > 1 and np.any(t[1:] < t[:-1]):
        raise ValueError("t_ns must be non-decreasing (sort samples by time first)")
    return t, o, hw


def detect_steps(t_ns: np.ndarray, offset_s: np.ndarray, half_width_s: np.ndarray, *,
                 max_rate_ppm: float = DEFAULT_MAX_RATE_PPM, confirm: int = DEFAULT_CONFIRM) -> StepScan:
    """Find steps and outliers in a time-ordered offset series (t_ns int ns, offsets and half-widths s).

    Two samples are consistent when their offsets differ by at most hw_a + hw_b + max_rate·Δt; see the
    module docstring for the classification. Raises ValueError on malformed input.
    """
    t, o, hw = _validate(t_ns, offset_s, half_width_s, max_rate_ppm, confirm)
    n = t.size
    outlier = np.zeros(n, dtype=bool)
    if n < 2:
        return StepScan("ok", "fewer than 2 samples: nothing to compare", (), outlier, 0, None)
    rate = max_rate_ppm * PPM / NS_PER_S  # seconds of offset per ns of time

    bad = np.abs(np.diff(o)) > hw[1:] + hw[:-1] + rate * np.diff(t).astype(np.float64)
    events = np.flatnonzero(bad) + 1  # sample i disagrees with sample i-1
    limit = max(MIN_INCONSISTENT_TOLERATED, int(MAX_INCONSISTENT_FRACTION * (n - 1)))
    if events.size > limit:
        return StepScan("inconsistent_half_widths",
                        f"{events.size} of {n - 1} consecutive sample pairs disagree beyond half-widths "
                        f"and {max_rate_ppm:g} ppm: the half-widths are not honest, steps not assessed",
                        (), outlier, 0, None)

    def consistent(a: int, b: int) -> bool:
        return bool(abs(o[b] - o[a]) <= hw[a] + hw[b] + rate * float(abs(int(t[b]) - int(t[a]))))

    steps: list[Step] = []
    segment_start = 0
    pending_from: int | None = None
    ref = 0  # last good sample
    next_free = 1  # samples below this are classified
    iterations = 0
    for ev in events.tolist():
        if ev < next_free:
            continue
        if ev - 1 >= next_free:
            ref = ev - 1  # samples next_free..ev-1 chain consistently from the last good one
        i = ev
        while i < n:  # classify i, and what follows it while it disagrees with `ref`
            iterations += 1
            if iterations > MAX_SCAN_ITERATIONS:
                return StepScan("inconsistent_half_widths",
                                f"more than {MAX_SCAN_ITERATIONS} samples needed individual review: "
                                "the half-widths are not honest, steps not assessed",
                                (), np.zeros(n, dtype=bool), 0, None)
            if consistent(ref, i):
                ref = i
                i += 1
                break
            window = range(i, min(n, i + confirm))
            level = all(consistent(i, j) and not consistent(ref, j) for j in window)
            if level and len(window) < confirm:
                pending_from = i
                outlier[i:] = True
                i = n
                break
            if level:
                good_before = i - segment_start - int(np.count_nonzero(outlier[segment_start:i]))
                if not steps and good_before < confirm:
                    outlier[:i] = True  # a too-short first "level" is a run of outliers
                else:
                    steps.append(Step(index=i, t_ns=int(t[i]), size_s=float(o[i] - o[ref])))
                segment_start = i
                ref = i
                i += 1
                break
            outlier[i] = True
            i += 1
        next_free = i
    n_out = int(np.count_nonzero(outlier))
    reason = f"{len(steps)} step(s), {n_out} outlier sample(s) among {n}"
    if pending_from is not None:
        reason += f"; a new level from sample {pending_from} awaits {confirm} samples to confirm"
    return StepScan("ok", reason, tuple(steps), outlier, segment_start, pending_from)
