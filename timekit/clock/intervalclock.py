"""IntervalClock: a TrueTime-style clock for Python programs, cheap enough for hot paths.

`now()` returns a `TimeInterval` [earliest_ns, latest_ns] that contains the references' true
time (under the assumptions of `analysis.interval`: a majority of honest references, drift
within `max_drift_ppm` of the estimate). It reads CLOCK_REALTIME and CLOCK_BOOTTIME and a
state published by `timekit now`/`collect`/`sample ntp`/`daemon` in a memory-mapped file
(`<db>.clock`), checking one generation counter per call: no I/O, no database query.
Without a published state it computes one from the store once, at construction (and on
`refresh()`). A wall-clock step since the state was written is detected (realtime against
boottime) and answered with status 'unknown' and an interval corrected by boottime.

Guarantee, and its limits: the interval contains true time if the published evidence was
honest and the clock's drift stays within the bound; it says nothing about a clock that
was stepped by more than the step tolerance in the same nanosecond as the read, and the
bound grows (status 'free_running', then 'unknown') as the evidence ages.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from timekit.analysis.clock_state import CAUSALITY_SLACK_NS, INT64_MAX, LEAP_NS, PAIR_SLACK_NS, ClockState
from timekit.errors import AnalysisError
from timekit.units import NS_PER_S, PPM
from timekit.vocabulary import SyncStatus

if TYPE_CHECKING:
    from timekit.store.published_state import StateReader

_REALTIME, _BOOTTIME = time.CLOCK_REALTIME, time.CLOCK_BOOTTIME
_gettime = time.clock_gettime_ns
_REAL_GETTIME = _gettime


def _accelerator() -> type | None:
    """The C hot path (`timekit.clock._fastclock.Hot`) when it was built at install, unless
    TIMEKIT_PURE_PYTHON=1 asks for the pure-Python path (which is always there)."""
    if os.environ.get("TIMEKIT_PURE_PYTHON") == "1":
        return None
    try:
        from timekit.clock._fastclock import Hot
    except ImportError:
        return None
    return Hot


_FAST = _accelerator()
COMMIT_WAIT_POLL_S = 0.05  # commit_wait re-reads the clock at least this often


class ClockUnknownError(AnalysisError):
    """The clock has no evidence at all, so nothing is certain (commit_wait cannot end)."""


class CausalityError(AnalysisError):
    """The clock reads earlier than the published state's anchor (FAULTS Q6)."""


class TimeInterval(NamedTuple):
    """[earliest_ns, latest_ns] (Unix ns) containing true time, and how sure we are.

    Immutable and comparable as a tuple (by earliest, then latest); `certainly_before` and
    `certainly_after` order two intervals only when they do not overlap.
    """

    earliest_ns: int
    latest_ns: int
    status: SyncStatus

    @property
    def uncertainty_s(self) -> float:
        """Half the width, seconds (inf when there is no evidence at all)."""
        if self.latest_ns == INT64_MAX and self.earliest_ns == 0:
            return math.inf
        return (self.latest_ns - self.earliest_ns) / 2 / NS_PER_S

    @property
    def midpoint_ns(self) -> int:
        return (self.earliest_ns + self.latest_ns) // 2

    def contains(self, t_ns: int) -> bool:
        return self.earliest_ns <= t_ns <= self.latest_ns

    def certainly_before(self, other: TimeInterval) -> bool:
        """Every instant of this interval precedes every instant of `other`."""
        return self.latest_ns < other.earliest_ns

    def certainly_after(self, other: TimeInterval) -> bool:
        return self.earliest_ns > other.latest_ns


_new_interval = tuple.__new__
NO_EVIDENCE = TimeInterval(0, INT64_MAX, "unknown")
RATE_EPS = 1e-12  # the float rates are nudged outward so rounding never narrows the interval
REMAP_EVERY_NS = 5 * NS_PER_S  # without a published state, look for one again this often


def _int64(x: int) -> int:
    """`x` clamped to the int64 range (a limit beyond it is never reached by a clock reading)."""
    return max(-INT64_MAX, min(INT64_MAX, x))


def _age_limit_ns(seconds: float) -> int:
    """An age limit in integer ns for the hot path's comparisons (int-int compares are cheapest)."""
    if not math.isfinite(seconds):
        return INT64_MAX if seconds > 0 else -INT64_MAX
    return max(-INT64_MAX, min(INT64_MAX, int(seconds * NS_PER_S)))


def _unpreempted_pair() -> tuple[int, int]:
    """(CLOCK_BOOTTIME, CLOCK_REALTIME) ns read together: the tightest of three boottime-bracketed
    realtime reads, through this module's clock reader (which the tests replace).

    The hot path reads boottime then realtime once; on a busy host this thread can be preempted
    between the two for longer than the step tolerance, which looks like a wall-clock step. A step
    is still there when the pair is read again; a preemption is not.
    """
    from timekit.collectors.clocks import read_bracketed

    r = read_bracketed(_BOOTTIME, tries=3, get=_gettime)
    return r.clock_ns, r.realtime_ns


def _before_anchor(age: int) -> int:
    """Boottime a little before the state's anchor reads as the anchor (0); more is a causality
    breach (FAULTS Q6)."""
    if age < -CAUSALITY_SLACK_NS:
        raise CausalityError(f"clock reads {-age} ns before the published state's anchor")
    return 0


# the hot path's constants (`IntervalClock._set`): anchor boottime; earliest and latest at the anchor;
# their rates; the window of realtime − boottime without a step; the sync, void and leap ages (ns)
HotConstants = tuple[int, int, int, float, float, int, int, int, int, int]


def _stepped(p: HotConstants) -> TimeInterval:
    """now() after realtime − boottime left its window: read the pair again (a preempted thread
    reads a tight pair the second time); a step still there makes the status 'unknown', and the
    interval, which follows boottime, stays true."""
    a_bt, e0, l0, r_lo, r_hi, lo_d, hi_d, sync_age, void_age, leap_age = p
    bt, rt = _unpreempted_pair()
    age = bt - a_bt
    if age < 0:
        age = _before_anchor(age)
    stepped = not lo_d <= rt - bt <= hi_d
    status = ("unknown" if stepped or age > void_age else "synchronized" if age <= sync_age
              else "free_running")
    earliest, latest = e0 + age + int(age * r_lo), l0 + age + int(age * r_hi)
    if age >= leap_age:
        earliest, latest = earliest - LEAP_NS, latest + LEAP_NS
    return _new_interval(TimeInterval, (earliest, latest, status))


class IntervalClock:
    """`IntervalClock()` / `IntervalClock(db=PATH)`: see the module docstring."""

    def __init__(self, db: Path | str | None = None, *, state_path: Path | str | None = None,
                 max_drift_ppm: float | None = None) -> None:
        from timekit.settings import db_path
        from timekit.store.published_state import state_path_for

        self.db = db_path(db)
        self.state_path = Path(state_path) if state_path is not None else state_path_for(self.db)
        self._max_drift_ppm = max_drift_ppm
        self._reader: StateReader | None = None
        self._genv: memoryview | None = None  # the published generation counter, when mapped
        self._gen = -1
        self._retry_map_at = 0  # boottime ns after which to look for a published state again
        self._hot_genv: memoryview | None = None  # the counter the C hot path was made for
        self.source = "none"  # 'published' | 'store' | 'none'
        self._set(None)
        self.refresh()

    # -- loading ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Map the published state if there is one, else compute a state from the store now."""
        if self._reader is None:
            self._map()
        if self._reader is not None:
            self._gen = -1
            self._reload()
            if self.source == "published":
                return
        self._from_store()

    def _map(self) -> None:
        """Map the published state file if it exists; if not, look again in REMAP_EVERY_NS."""
        from timekit.store.published_state import StateReader

        try:
            self._reader = StateReader(self.state_path)
            self._genv = self._reader.gen
            self._retry_map_at = 0
        except (OSError, ValueError):
            self._reader = None
            self._retry_map_at = _gettime(_BOOTTIME) + REMAP_EVERY_NS

    def _reload(self) -> None:
        reader = self._reader
        if reader is None:
            return
        seen = reader.gen[0]
        got = reader.read()
        if got is None:
            # keep what we had (nothing published yet, a writer mid-write or dead mid-write, a bad
            # record); remember the counter so the hot path does not retry until it changes again
            self._gen = seen
            return
        gen, state, boot = got
        from timekit.collectors.clocks import boot_id

        self._gen = gen
        self.source = "published"
        if boot and boot != boot_id():  # published before a reboot: its boottime means nothing now
            self._set(None)
            return
        if self._max_drift_ppm is not None and self._max_drift_ppm > state.growth_ppm:
            state = replace(state, growth_ppm=self._max_drift_ppm)  # this reader assumes a wider drift
        self._set(state)

    def _from_store(self) -> None:
        from timekit.analysis.assessment import Policy
        from timekit.analysis.interval import IntervalPolicy
        from timekit.errors import StoreError
        from timekit.pipeline.assess import assess_store
        from timekit.store.database import Store

        try:
            if not self.db.exists():
                return
        except OSError:  # a directory this user may not enter: no evidence (the state file is the way)
            return
        policy = Policy() if self._max_drift_ppm is None else Policy(
            interval=IntervalPolicy(max_drift_ppm=self._max_drift_ppm))
        try:
            with Store.open(self.db, create=False, readonly=True) as store:
                state = assess_store(store, policy, interval_only=True).state
        except StoreError:
            return
        self.source = "store"
        self._set(state)

    def _set(self, state: ClockState | None) -> None:
        """Precompute the hot path's constants for a state (None or no interval: no evidence).

        With age = boottime − anchor boottime, `interval_at` reduces to
        earliest = anchor_rt + lo − slack + age·(1 − drift − growth), and latest likewise: the
        interval follows boottime, and realtime only decides the status (a step). The rates are
        kept as small floats (−drift ∓ growth, nudged outward) so age·rate stays exact to well under
        a ns at any age; int() truncates toward zero, which the extra outward ns absorbs.
        """
        self.state = state
        if state is None or not state.has_interval:
            self._p = None
            self._install_hot()
            return
        move, grow = -state.drift_ppm * PPM, state.growth_ppm * PPM
        lo_rate, hi_rate = move - grow, move + grow
        rt_minus_bt, tol = state.anchor_realtime_ns - state.anchor_boottime_ns, state.step_tolerance_ns
        self._p = (state.anchor_boottime_ns,
                   # int() truncates toward zero: one extra ns outward on each side covers it
                   state.anchor_realtime_ns + state.lo_ns - PAIR_SLACK_NS - 2,
                   state.anchor_realtime_ns + state.hi_ns + PAIR_SLACK_NS + 2,
                   lo_rate - abs(lo_rate) * RATE_EPS, hi_rate + abs(hi_rate) * RATE_EPS,
                   rt_minus_bt - tol, rt_minus_bt + tol,  # realtime − boottime without a step
                   _age_limit_ns(state.fresh_s - state.evidence_age_s),
                   # an estimate that was already 'unknown' stays so: every age is past its void
                   -1 if state.anchor_unknown else _age_limit_ns(state.void_after_s - state.evidence_age_s),
                   state.leap_from_ns - state.anchor_realtime_ns if state.leap_from_ns else INT64_MAX)
        self._install_hot()

    def _install_hot(self) -> None:
        """Put the C hot path in front of `now()` for the current state and generation, when it is
        built, the state is a mapped published one and the clocks are the real ones (tests replace
        them): `self.now` is then one C object per mapped file, loaded with each new state in place
        (so `now = clock.now`, kept by a caller, follows new states), which hands anything unusual
        to the Python path."""
        hot = self.__dict__.get("now")
        if _FAST is None or self._genv is None or _gettime is not _REAL_GETTIME:
            self.__dict__.pop("now", None)
            return
        if hot is None or self._hot_genv is not self._genv:
            hot = self.__dict__["now"] = _FAST(self._genv, TimeInterval, self._now_py)
            self._hot_genv = self._genv
        p = self._p
        if p is None:
            hot.disable()
            return
        a_bt, e0, l0, r_lo, r_hi, lo_d, hi_d, sync_age, void_age, leap_age = p
        hot.set(self._gen if self._gen >= 0 else (1 << 64) - 1, a_bt, e0, l0, r_lo, r_hi, lo_d, hi_d,
                _int64(a_bt + sync_age), _int64(a_bt + void_age), _int64(a_bt + leap_age), False)

    @property
    def accelerated(self) -> bool:
        """Whether `now()` runs the C hot path right now (built, and a published state mapped)."""
        return "now" in self.__dict__

    # -- the hot path ------------------------------------------------------------------------
    def now(self) -> TimeInterval:
        """The interval containing true time now (no I/O; one generation check)."""
        gen = self._genv
        if gen is not None:
            if gen[0] != self._gen:
                self._reload()
                self._install_hot()  # the generation seen moved even when the record was not whole
        elif self._retry_map_at and _gettime(_BOOTTIME) > self._retry_map_at:
            self._remap()
        p = self._p  # the state first, then the clocks: its anchor always precedes our reading
        gettime = _gettime
        bt = gettime(_BOOTTIME)
        rt = gettime(_REALTIME)
        if p is None:
            return NO_EVIDENCE
        a_bt, e0, l0, r_lo, r_hi, lo_d, hi_d, sync_age, void_age, leap_age = p
        d = rt - bt
        if d < lo_d or d > hi_d:  # a wall-clock step, or this thread preempted between the reads
            return _stepped(p)
        age = bt - a_bt
        if age < 0:
            age = _before_anchor(age)
        status = "unknown" if age > void_age else "synchronized" if age <= sync_age else "free_running"
        # float.__trunc__ is int(float), toward zero, without the type call: ~30 ns less each
        if age >= leap_age:  # an announced leap second may have been applied, or not: ±1 s
            return _new_interval(TimeInterval, (e0 + age + (age * r_lo).__trunc__() - LEAP_NS,
                                                l0 + age + (age * r_hi).__trunc__() + LEAP_NS, status))
        return _new_interval(TimeInterval, (e0 + age + (age * r_lo).__trunc__(),
                                            l0 + age + (age * r_hi).__trunc__(), status))

    _now_py = now  # the pure-Python path: what the C hot path falls back to, and is held equal to

    def _remap(self) -> None:
        """No published state was there before: look for the file again (never the database:
        this runs inside now(), which must not query it)."""
        self._map()
        if self._reader is not None:
            self._gen = -1
            self._reload()

    def after(self, t_ns: int) -> bool:
        """True only when `t_ns` is certainly in the past."""
        return self.now().earliest_ns > t_ns

    def before(self, t_ns: int) -> bool:
        """True only when `t_ns` is certainly in the future."""
        return self.now().latest_ns < t_ns

    def commit_wait(self, t_ns: int, *, timeout_s: float | None = None) -> float:
        """Block until `t_ns` is certainly past (Spanner's commit wait); returns seconds waited.

        Sleeps on the monotonic clock. Raises ClockUnknownError without evidence, TimeoutError
        past `timeout_s`.
        """
        start = time.monotonic()
        while True:
            iv = self.now()
            if iv.earliest_ns > t_ns:
                return time.monotonic() - start
            if self._p is None:
                raise ClockUnknownError("no clock evidence: nothing is certainly in the past "
                                        "(run `timekit sample ntp` or `timekit daemon`)")
            waited = time.monotonic() - start
            if timeout_s is not None and waited >= timeout_s:
                raise TimeoutError(f"{t_ns} not certainly past after {waited:.3f} s "
                                   f"(uncertainty {iv.uncertainty_s:.6f} s)")
            left_s = (t_ns - iv.earliest_ns) / NS_PER_S + 1e-6
            time.sleep(min(max(left_s, 0.0), COMMIT_WAIT_POLL_S))

    def close(self) -> None:
        hot = self.__dict__.pop("now", None)  # the C hot path holds the mapped counter: let it go first,
        if hot is not None:  # even when a caller still holds `clock.now`
            hot.detach()
        if self._reader is not None:
            self._genv = None
            self._reader.close()
            self._reader = None

    def __repr__(self) -> str:
        return f"IntervalClock(db={os.fspath(self.db)!r}, source={self.source!r})"
