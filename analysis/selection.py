"""Source selection: which references agree on the true offset (Marzullo / RFC 5905 clock select).

Each reference i reports an offset and a half width (its root distance extrapolated to now), which
together give a closed interval in offset space that contains the true offset if the reference is
honest (a "truechimer"; a liar is a "falseticker")::

    I_i = [offset_i - half_width_i, offset_i + half_width_i]      (seconds, NTP sign: ref - local)

Picture (chrony sources.c style): five references, truth at T, each "=" is 10 ms::

    offset (s)  -0.2      -0.1      0.0       0.1            2.5
                |         |         |         |        //     |
    A           [===============T=========]
    B                     [=====T===================]
    C                 [=========T=======]
    D                               [===]                      liar inside A, B and C
    E                                                      [=====]  liar far away
    coverage    1111112222333333333344444221111111111      1111111
    >= q = 3              [=============]                      safe hull [lo_s, hi_s]: holds T
    max = 4                         [===]                      Marzullo, f = 1: misses T

    m = 5 sources, q = 3 (a strict majority), f_max = 2: the hull of the points covered by >= 3
    intervals is [-0.10, +0.04] and contains T = -0.04; E touches none of it: falseticker.

Majority rule. With m references, assume a strict majority is honest: at most f_max liars, where
f_max is the largest f with m - f > m / 2 (m = 5 -> 2, m = 4 -> 1, m = 3 -> 1, m = 2 -> 0). Then
the truth is covered by at least q = m - f_max = floor(m / 2) + 1 intervals, so it lies in the hull
of the points covered by >= q intervals; that hull [lo_s, hi_s] is the SAFE answer ("never narrow
and wrong"). If no point is covered by q intervals there is no majority and we say so
("no majority: only 2 of 5 agree") instead of picking a side.

The classic answer is not safe. Marzullo's algorithm (and RFC 5905's low/high endpoint rule,
reported here without its midpoint test) takes the smallest f for which some point is covered by
m - f intervals, i.e. the region of maximal coverage. Honest A = [0, 10], B = [5, 20] (truth 6)
and a liar C = [8, 9] inside both give coverage 3 on [8, 9] at f = 0, which excludes the truth;
the majority hull at q = 2 is [5, 10]. We report that Marzullo interval (marzullo_lo_s,
marzullo_hi_s, f) for information only.

Falsetickers are the sources whose interval does not touch [lo_s, hi_s]; a liar whose interval
overlaps it is indistinguishable from an honest source and stays a truechimer. Endpoints are
closed: [0, 1] and [1, 2] agree at 1. One sort and one sweep: O(m log m).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

STATUS_OK = "ok"
STATUS_SINGLE_SOURCE = "single_source"
STATUS_NO_MAJORITY = "no_majority"
STATUS_NO_SOURCES = "no_sources"

_START = 0  # sorts before _END at equal offsets, so touching closed intervals overlap
_END = 1


@dataclass(frozen=True)
class SourceInterval:
    """One reference: offset_s (ref - local) +/- half_width_s contains the true offset if honest."""

    name: str
    offset_s: float
    half_width_s: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.offset_s):
            raise ValueError(f"offset_s of {self.name!r} must be finite seconds, got {self.offset_s!r}")
        if not (math.isfinite(self.half_width_s) and self.half_width_s >= 0.0):
            raise ValueError(
                f"half_width_s of {self.name!r} must be finite seconds >= 0, got {self.half_width_s!r}"
            )

    @property
    def lo_s(self) -> float:
        """Lower end of the interval (s); the one place it is computed."""
        return self.offset_s - self.half_width_s

    @property
    def hi_s(self) -> float:
        """Upper end of the interval (s)."""
        return self.offset_s + self.half_width_s


@dataclass(frozen=True)
class Selection:
    """Outcome of source selection; lo_s/hi_s bound the true offset (s) when quorum is True.

    n_agree is the size of the largest set of sources sharing a common point; truechimers are
    all sources touching [lo_s, hi_s] (sorted by name), so len(truechimers) >= n_agree.
    """

    status: str
    reason: str
    quorum: bool
    lo_s: float | None
    hi_s: float | None
    marzullo_lo_s: float | None
    marzullo_hi_s: float | None
    f: int | None
    truechimers: tuple[str, ...]
    falsetickers: tuple[str, ...]
    n_sources: int
    n_agree: int


def majority_size(m: int) -> int:
    """Smallest strict majority of m sources: q = floor(m / 2) + 1 (m - q = f_max liars tolerated)."""
    return m // 2 + 1


def _sweep(sources: Sequence[SourceInterval]) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """Coverage at each endpoint, ascending: (x, count after a start) and (x, count before an end)."""
    events = sorted([(s.lo_s, _START) for s in sources] + [(s.hi_s, _END) for s in sources])
    starts: list[tuple[float, int]] = []
    ends: list[tuple[float, int]] = []
    count = 0
    for x, kind in events:
        if kind == _START:
            count += 1
            starts.append((x, count))
        else:
            ends.append((x, count))
            count -= 1
    return starts, ends


def _hull(starts: list[tuple[float, int]], ends: list[tuple[float, int]], q: int) -> tuple[float, float]:
    """Hull of the points covered by >= q intervals (caller ensures such a point exists).

    The lowest such point is a start endpoint and the highest an end endpoint; with starts sorted
    before ends at ties, the running count there equals the closed-interval coverage.
    """
    lo = next(x for x, c in starts if c >= q)
    hi = next(x for x, c in reversed(ends) if c >= q)
    return lo, hi


def select_sources(sources: Sequence[SourceInterval]) -> Selection:
    """Find the references that agree and the safe interval (s) for the true offset; see module doc."""
    srcs = tuple(sources)
    names = [s.name for s in srcs]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"source names must be unique, repeated: {', '.join(dupes)}")
    m = len(srcs)
    if m == 0:
        return Selection(
            status=STATUS_NO_SOURCES, reason="no sources: nothing to select from", quorum=False,
            lo_s=None, hi_s=None, marzullo_lo_s=None, marzullo_hi_s=None, f=None,
            truechimers=(), falsetickers=(), n_sources=0, n_agree=0,
        )
    if m == 1:
        (s,) = srcs
        return Selection(
            status=STATUS_SINGLE_SOURCE,
            reason=f"single source {s.name}: interval unverifiable (no second reference to check it)",
            quorum=True, lo_s=s.lo_s, hi_s=s.hi_s, marzullo_lo_s=s.lo_s, marzullo_hi_s=s.hi_s, f=0,
            truechimers=(s.name,), falsetickers=(), n_sources=1, n_agree=1,
        )

    starts, ends = _sweep(srcs)
    n_agree = max(c for _, c in starts)
    q = majority_size(m)
    if n_agree < q:
        return Selection(
            status=STATUS_NO_MAJORITY,
            reason=f"no majority: only {n_agree} of {m} agree (a majority needs {q})",
            quorum=False, lo_s=None, hi_s=None, marzullo_lo_s=None, marzullo_hi_s=None, f=None,
            truechimers=(), falsetickers=(), n_sources=m, n_agree=n_agree,
        )

    lo, hi = _hull(starts, ends, q)
    m_lo, m_hi = _hull(starts, ends, n_agree)
    truechimers = tuple(sorted(s.name for s in srcs if s.lo_s <= hi and s.hi_s >= lo))
    falsetickers = tuple(sorted(s.name for s in srcs if not (s.lo_s <= hi and s.hi_s >= lo)))
    reason = f"majority: {n_agree} of {m} agree at a common point (a majority needs {q})"
    if falsetickers:
        reason += f"; {len(falsetickers)} falseticker(s): {', '.join(falsetickers)}"
    return Selection(
        status=STATUS_OK, reason=reason, quorum=True, lo_s=lo, hi_s=hi,
        marzullo_lo_s=m_lo, marzullo_hi_s=m_hi, f=m - n_agree,
        truechimers=truechimers, falsetickers=falsetickers, n_sources=m, n_agree=n_agree,
    )
