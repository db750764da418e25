"""The C hot path of IntervalClock.now() (`timekit.clock._fastclock`) is the pure-Python path, faster.

The C object computes the interval from the same precomputed constants; for any state and any
pair of clock readings it must give exactly what the Python path gives, and hand back every case
it does not handle (a new generation, a step or a preemption between the reads, boottime before
the anchor) to the Python path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import timekit.clock.intervalclock as ic
from timekit.analysis.clock_state import ClockState
from timekit.clock.intervalclock import IntervalClock
from timekit.collectors.clocks import boot_id
from timekit.store.published_state import publish, state_path_for
from timekit.units import NS_PER_S


def _built() -> bool:
    if ic._FAST is not None:
        return True
    if os.environ.get("CI"):  # scripts/setup installs gcc and Python's headers: CI must have built it
        pytest.fail("the C hot path was not built (timekit.clock._fastclock)")
    pytest.skip("the C hot path is not built here (no compiler or Python headers at install)")


def _state(rt: int, bt: int, **kw: object) -> ClockState:
    args: dict[str, object] = dict(lo_ns=-50_000, hi_ns=50_000, drift_ppm=12.5, growth_ppm=200.0,
                                   evidence_age_s=1.0, fresh_s=300.0, void_after_s=14_400.0,
                                   step_tolerance_ns=1_000_000, anchor_unknown=False, has_interval=True)
    args.update(kw)
    return ClockState(rt, bt, **args)  # type: ignore[arg-type]


def _published(tmp_path: Path, state: ClockState) -> IntervalClock:
    db = tmp_path / "c.db"
    publish(state_path_for(db), state, boot_id())
    return IntervalClock(db)


def _python_at(clock: IntervalClock, bt: int, rt: int) -> tuple[int, int, str] | None:
    """The pure-Python path at fixed readings; None where it would re-read (a step) or clamp/raise."""
    a_bt, *_rest = clock._p  # type: ignore[misc]
    lo_d, hi_d = clock._p[5], clock._p[6]  # type: ignore[index]
    if not lo_d <= rt - bt <= hi_d or bt < a_bt:
        return None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ic, "_gettime", lambda cid: rt if cid == ic._REALTIME else bt)
        got = IntervalClock._now_py(clock)
    return got.earliest_ns, got.latest_ns, got.status


@settings(max_examples=400, deadline=None)
@given(lo=st.integers(-10**10, 10**10), width=st.integers(0, 10**9), drift=st.floats(-500, 500),
       growth=st.floats(0, 1000), ev_age=st.floats(0, 20_000), age_ns=st.integers(-10**7, 10**13),
       step_ns=st.integers(-3 * 10**6, 3 * 10**6), unknown=st.booleans(),
       leap_in_s=st.one_of(st.none(), st.integers(-100, 10**5)))
def test_the_c_path_gives_exactly_the_python_paths_interval(
        lo: int, width: int, drift: float, growth: float, ev_age: float, age_ns: int, step_ns: int,
        unknown: bool, leap_in_s: int | None) -> None:
    _built()
    a_rt, a_bt = 1_795_000_000 * NS_PER_S, 4_000 * NS_PER_S
    state = _state(a_rt, a_bt, lo_ns=lo, hi_ns=lo + width, drift_ppm=drift, growth_ppm=growth,
                   evidence_age_s=ev_age, anchor_unknown=unknown,
                   leap_from_ns=0 if leap_in_s is None else a_rt + leap_in_s * NS_PER_S)
    clock = IntervalClock.__new__(IntervalClock)
    clock._reader, clock._genv, clock._gen, clock._retry_map_at = None, None, -1, 0
    clock._set(state)
    p = clock._p
    assert p is not None
    a_bt_, e0, l0, r_lo, r_hi, lo_d, hi_d, sync_age, void_age, leap_age = p
    assert ic._FAST is not None
    hot = ic._FAST(None, ic.TimeInterval, lambda: None)
    hot.set(0, a_bt_, e0, l0, r_lo, r_hi, lo_d, hi_d, ic._int64(a_bt_ + sync_age),
            ic._int64(a_bt_ + void_age), ic._int64(a_bt_ + leap_age), False)
    bt, rt = a_bt + age_ns, a_rt + age_ns + step_ns
    got = hot.at(bt, rt)
    want = _python_at(clock, bt, rt)
    if want is None:
        assert got is None  # handed to the Python path, which re-reads or clamps
    else:
        assert got is not None and type(got) is ic.TimeInterval
        assert tuple(got) == want


def test_a_published_clock_runs_the_c_path_and_contains_the_truth(tmp_path: Path) -> None:
    _built()
    rt, bt = time.clock_gettime_ns(time.CLOCK_REALTIME), time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    clock = _published(tmp_path, _state(rt, bt, lo_ns=20_000_000 - 50_000, hi_ns=20_000_000 + 50_000))
    assert clock.accelerated and clock.source == "published"
    r0 = time.clock_gettime_ns(time.CLOCK_REALTIME)
    iv = clock.now()
    r1 = time.clock_gettime_ns(time.CLOCK_REALTIME)
    assert type(iv) is ic.TimeInterval and iv.status == "synchronized"
    assert iv.earliest_ns <= r1 + 20_000_000 and r0 + 20_000_000 <= iv.latest_ns  # true time = local + 20 ms
    clock.close()
    assert not clock.accelerated


def test_a_new_publication_is_seen_by_the_c_path(tmp_path: Path) -> None:
    """The C object checks the generation counter on every call and hands a new one to Python,
    which loads the state and installs a new C object for it."""
    _built()
    rt, bt = time.clock_gettime_ns(time.CLOCK_REALTIME), time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    clock = _published(tmp_path, _state(rt, bt))
    first = clock.now()
    assert clock.accelerated and first.status == "synchronized"
    kept = clock.now  # a caller that keeps the bound method follows new states too
    publish(state_path_for(tmp_path / "c.db"), _state(rt, bt, anchor_unknown=True), boot_id())
    second = kept()
    assert second.status == "unknown" and clock.accelerated and clock.now is kept  # updated in place
    assert kept().status == "unknown" and kept.at(bt + 1, rt + 1) is not None  # on the C path again
    clock.close()  # while `kept` still holds the C object: it lets the mapped file go
    assert kept.at(bt + 1, rt + 1) is None and not clock.accelerated


def test_the_pure_python_path_is_chosen_by_the_environment(tmp_path: Path) -> None:
    rt, bt = time.clock_gettime_ns(time.CLOCK_REALTIME), time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    db = tmp_path / "p.db"
    publish(state_path_for(db), _state(rt, bt), boot_id())
    code = (f"from timekit import IntervalClock; c = IntervalClock({str(db)!r}); "
            "print(c.accelerated, c.now().status)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TIMEKIT_PURE_PYTHON": "1"})
    assert out.stdout.split() == ["False", "synchronized"]
