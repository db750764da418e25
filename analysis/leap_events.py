"""A leap second in the references' offsets: who stepped it, who smears it, who has not applied it.

Around a leap second the references may stop agreeing without any of them lying: a server that steps
the leap (its clock repeats 23:59:59, POSIX time goes back 1 s) and one that smears it (its clock runs
slow over minutes or hours until it has lost the second: Google's and AWS's leap smear, chrony's
`leapsecmode slew` + `smoothtime ... leaponly`) differ by up to 1 s until the smear is over. The
interval then has two clusters and no majority; this module names them.

Input: each server's samples (local instants int ns, offsets s = reference − local, root distance s,
leap indicator) and the leap seconds known (`collectors/leap_seconds.py` reads the system's list) as
the instant, in UTC, at which the leap second ends (1 Jan 2017 00:00:00 for the one inserted at 2016-12-31
23:59:60). A leap L is in play when a reference announced one (leap indicator 1 or 2: the midnight
after its first announcing sample, in the reference's time t + offset), or a known one lies within
the references' time span (a day before to a day after).

Each server, against this clock (sign s = −1 for an inserted second, +1 for a deleted one):
- **stepped**: its offset jumps by s·1 s (± STEP_TOLERANCE_S) between two consecutive samples
  whose reference time (before the jump) is within STEP_NEAR_S of L;
- **smearing**: no such jump, but after L its offset has left the line it followed before L (its
  own drift fitted on the samples before L; without them, the stepped servers' line) by a fraction of
  s·1 s, beyond its error bars, and still moving: `size_s` done so far, `rate_ppm` its fastest rate;
  **smeared** once the whole second is gone and the offset is back on a line;
- **not applied**: after L it is still on its line while others stepped (it ignores the leap, or
  applies it later);
- **unknown**: too few samples on one side of L to tell.
If this clock applied the leap itself, every server shows the opposite: a stepping one flat and a
non-stepping one jumping; the words then say so only through the measured sizes (left as measured).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

import numpy as np

from timekit.units import NS_PER_S, PPM

DAY_NS = 86_400 * NS_PER_S
STEP_TOLERANCE_S = 0.1  # a leap step is 1 s ± this (drift over the gap, delay)
STEP_NEAR_S = 30.0  # ... taken within this of the leap, in the reference's own time
MIN_SIDE_SAMPLES = 3  # samples needed on a side of the leap to tell anything
MIN_SMEAR_S = 1e-3  # a departure from the line below this (or below 10 error bars) is no smear
SMEAR_DONE_TOLERANCE_S = 0.02  # within this of the whole second: the smear is over
Behaviour = Literal["stepped", "smearing", "smeared", "not_applied", "unknown"]


class LeapSeries(Protocol):
    """What the analysis needs of one server's samples (`series.Series` has it)."""

    @property
    def t_local_ns(self) -> np.ndarray: ...
    @property
    def offset_s(self) -> np.ndarray: ...
    @property
    def root_distance_s(self) -> np.ndarray: ...
    @property
    def leap(self) -> np.ndarray: ...


@dataclass(frozen=True)
class LeapReading:
    """One server around the leap: its behaviour, the step or the smear so far (s, + = offset grew),
    the smear's fastest rate (ppm), when (local ns: the step's first sample after it, or the instant
    the smear's size holds at, the middle of the newest samples it is the median of), and the words."""

    server: str
    behaviour: Behaviour
    size_s: float | None = None
    rate_ppm: float | None = None
    t_ns: int | None = None
    words: str = ""


@dataclass(frozen=True)
class LeapSplit:
    """The leap in play (`leap_ns`: UTC instant it ends, reference time), each server's reading, and
    the explanation; `split`: both stepped and non-stepped references are there (two timescales)."""

    leap_ns: int
    insert: bool
    readings: tuple[LeapReading, ...]
    split: bool
    words: str


def leap_in_play(series: Mapping[str, LeapSeries], known_ns: Sequence[int]) -> tuple[int, bool] | None:
    """(L, inserted) for the leap the evidence is about, or None: an announced one first, else a known
    one within a day of the references' time span."""
    announced: list[tuple[int, bool]] = []
    r_min, r_max = None, None
    for s in series.values():
        if not len(s.t_local_ns):
            continue
        off_ns = np.round(np.asarray(s.offset_s) * NS_PER_S).astype(np.int64)
        r = np.asarray(s.t_local_ns, dtype=np.int64) + off_ns
        r_min = int(r.min()) if r_min is None else min(r_min, int(r.min()))
        r_max = int(r.max()) if r_max is None else max(r_max, int(r.max()))
        flagged = np.flatnonzero(np.isin(np.asarray(s.leap), (1, 2)))
        if flagged.size:
            first = int(r[flagged[0]]) - NS_PER_S  # a sample inside the leap second itself
            announced.append((-(-first // DAY_NS) * DAY_NS, int(np.asarray(s.leap)[flagged[0]]) == 1))
    if announced:
        return min(announced)
    if r_min is None or r_max is None:
        return None
    near = [k for k in known_ns if r_min - DAY_NS <= k <= r_max + DAY_NS]
    return (max(near), True) if near else None


Line = tuple[int, float, float]  # offset(t) = a + b·(t − t_ref_ns)/1e9: (t_ref_ns, a, b)


def _fit_line(t: np.ndarray, off: np.ndarray, mask: np.ndarray) -> Line | None:
    """The least-squares line through the `mask`ed samples (None: too few or no span)."""
    if int(mask.sum()) < MIN_SIDE_SAMPLES or int(np.ptp(t[mask])) <= 0:
        return None
    t_ref = int(t[mask][0])
    b, a = np.polyfit((t[mask] - t_ref) / NS_PER_S, off[mask], 1)
    return t_ref, float(a), float(b)


def _on_line(line: Line, t: np.ndarray) -> np.ndarray:
    out: np.ndarray = line[1] + line[2] * ((t - line[0]) / NS_PER_S)
    return out


def _read(server: str, s: LeapSeries, leap_ns: int, sign: float, stepped_line: Line | None) -> LeapReading:
    """One server's reading (see the module); `stepped_line`: a stepped server's line before the leap,
    to compare with when this one has no samples before it."""
    t = np.asarray(s.t_local_ns, dtype=np.int64)
    off = np.asarray(s.offset_s, dtype=np.float64)
    if t.size < 2 * MIN_SIDE_SAMPLES:
        return LeapReading(server, "unknown", words=f"{server}: {t.size} samples")
    r = t + np.round(off * NS_PER_S).astype(np.int64)
    jumps = np.diff(off)
    near = np.abs(r[:-1] - leap_ns) <= STEP_NEAR_S * NS_PER_S
    leap_jump = np.flatnonzero(near & (np.abs(jumps - sign) <= STEP_TOLERANCE_S))
    if leap_jump.size:
        i = int(leap_jump[0])
        return LeapReading(server, "stepped", float(jumps[i]), None, int(t[i + 1]),
                           f"{server} stepped it ({jumps[i]:+.3f} s at the leap)")
    before = r < leap_ns - NS_PER_S
    after = ~before
    if int(after.sum()) < MIN_SIDE_SAMPLES:
        return LeapReading(server, "unknown", words=f"{server}: {int(after.sum())} samples after the leap")
    line = _fit_line(t, off, before) or stepped_line
    if line is None:
        return LeapReading(server, "unknown", words=f"{server}: nothing before the leap to compare with")
    dev = off - _on_line(line, t)
    bars = float(np.median(np.asarray(s.root_distance_s)[after]))
    post, tp = dev[after], t[after]
    end = float(np.median(post[-MIN_SIDE_SAMPLES:]))
    rates = np.abs(np.diff(post) / np.maximum(np.diff(tp) / NS_PER_S, 1e-9)) / PPM
    rate = float(np.max(rates)) if rates.size else 0.0
    last = int(np.median(tp[-MIN_SIDE_SAMPLES:]))  # the instant `end` (their median) holds at
    if abs(end) <= max(10 * bars, MIN_SMEAR_S):
        return LeapReading(server, "not_applied", end, None, last,
                           f"{server} has not applied it ({end * 1e3:+.3f} ms off its line)")
    settled = abs(float(post[-1] - post[-MIN_SIDE_SAMPLES])) <= max(10 * bars, MIN_SMEAR_S)
    if abs(end - sign) <= SMEAR_DONE_TOLERANCE_S and settled:
        return LeapReading(server, "smeared", end, rate, last,
                           f"{server} smeared it ({end:+.3f} s, up to {rate:,.0f} ppm)")
    if 0.0 < end * sign <= 1.0 + SMEAR_DONE_TOLERANCE_S:
        return LeapReading(server, "smearing", end, rate, last, f"{server} smears it ({end:+.3f} s of "
                           f"{sign:+.0f} s so far, up to {rate:,.0f} ppm)")
    return LeapReading(server, "unknown", end, rate, last,
                       f"{server}: {end:+.3f} s off its line after the leap, not a leap second's doing")


def explain_leap(series: Mapping[str, LeapSeries], known_ns: Sequence[int]) -> LeapSplit | None:
    """The references around the leap in play (None: no leap in the evidence's reach)."""
    found = leap_in_play(series, known_ns)
    if found is None:
        return None
    leap_ns, insert = found
    sign = -1.0 if insert else 1.0
    readings = {n: _read(n, series[n], leap_ns, sign, None) for n in sorted(series)}
    stepped_line = None
    for n, r in readings.items():  # a stepped server's line before its step: for those with no past
        if r.behaviour == "stepped" and r.t_ns is not None:
            t = np.asarray(series[n].t_local_ns, dtype=np.int64)
            stepped_line = _fit_line(t, np.asarray(series[n].offset_s, dtype=np.float64), t < r.t_ns)
            if stepped_line is not None:
                break
    if stepped_line is not None:
        readings = {n: r if r.behaviour != "unknown" else _read(n, series[n], leap_ns, sign, stepped_line)
                    for n, r in readings.items()}
    by = {b: [n for n, r in readings.items() if r.behaviour == b]
          for b in ("stepped", "smearing", "not_applied")}
    split = bool(by["stepped"]) and bool(by["smearing"] or by["not_applied"])
    end = datetime.fromtimestamp(leap_ns // NS_PER_S, UTC)
    # one clause per behaviour, joined without "; " (callers split reasons there)
    parts = []
    for b in ("stepped", "smearing", "smeared", "not_applied"):
        group = [r for r in readings.values() if r.behaviour == b]
        if not group:
            continue
        names = ", ".join(r.server for r in group)
        sizes = [r.size_s for r in group if r.size_s is not None]
        mid = float(np.median(sizes)) if sizes else 0.0
        rate = max((r.rate_ppm or 0.0 for r in group), default=0.0)
        parts.append({"stepped": f"{names} stepped it ({mid:+.3f} s at the leap)",
                      "smearing": f"{names} smear it ({mid:+.3f} s of {sign:+.0f} s so far, up to "
                                  f"{rate:,.0f} ppm)",
                      "smeared": f"{names} smeared it ({mid:+.3f} s, up to {rate:,.0f} ppm)",
                      "not_applied": f"{names} have not applied it ({mid * 1e3:+.3f} ms off their line)"}[b])
    kind = "inserted" if insert else "deleted"
    words = f"leap second {kind} ending {end.strftime('%Y-%m-%d %H:%M:%S')} UTC: "
    words += ", while ".join(parts) if parts else "no reference's reading tells"
    if split:
        words += " - two timescales up to 1 s apart until every reference has applied it, none of them lying"
    return LeapSplit(leap_ns, insert, tuple(readings.values()), split, words)
