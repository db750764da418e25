"""IntervalClock, the published state, leases and fencing: synthetic states, real processes."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import timekit
import timekit.clock.intervalclock as ic
from tests.conftest import UPTIME_PAD_NS
from timekit import ClockUnknownError, Fence, FencingTokens, IntervalClock, Lease, LeaseExpired, TimeInterval
from timekit.analysis.clock_state import INT64_MAX, PAIR_SLACK_NS, ClockState, interval_at
from timekit.collectors.clocks import boot_id
from timekit.store.published_state import StateReader, publish, state_path_for
from timekit.units import NS_PER_S


def clocks() -> tuple[int, int]:
    """(realtime, boottime) ns as IntervalClock reads them (through `long_uptime` when a test uses it)."""
    gettime = ic._gettime
    return gettime(time.CLOCK_REALTIME), gettime(time.CLOCK_BOOTTIME)


@pytest.fixture
def frozen_clocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clocks as IntervalClock reads them stand still (read once): exact values, whatever the
    scheduler does between a test's read and the clock's."""
    frozen = {c: time.clock_gettime_ns(c) for c in (time.CLOCK_REALTIME, time.CLOCK_BOOTTIME)}
    monkeypatch.setattr(ic, "_gettime", frozen.__getitem__)


@pytest.fixture
def long_uptime(monkeypatch: pytest.MonkeyPatch) -> None:
    """This host as one up 30 days longer: CLOCK_BOOTTIME as IntervalClock reads it moves forward,
    so a state anchored hours ago has a valid (positive) boottime whatever this machine's uptime."""
    real = ic._gettime

    def gettime(clock: int) -> int:
        return real(clock) + (UPTIME_PAD_NS if clock == time.CLOCK_BOOTTIME else 0)

    monkeypatch.setattr(ic, "_gettime", gettime)


def state_now(*, half_ns: int = 100_000, centre_ns: int = 0, age_s: float = 0.0, evidence_age_s: float = 1.0,
              growth_ppm: float = 200.0, drift_ppm: float = 0.0, realtime_shift_ns: int = 0,
              **kw: object) -> ClockState:
    """A state anchored `age_s` ago (boottime) saying true time = local + centre ± half then."""
    rt, bt = clocks()
    age_ns = round(age_s * NS_PER_S)
    assert bt - age_ns >= 0, "anchor before this boot: use the long_uptime fixture"
    return ClockState(rt - age_ns + realtime_shift_ns, bt - age_ns, centre_ns - half_ns, centre_ns + half_ns,
                      drift_ppm, growth_ppm, evidence_age_s, kw.pop("fresh_s", 300.0),  # type: ignore[arg-type]
                      kw.pop("void_after_s", 14_400.0), 1_000_000, anchor_unknown=False,  # type: ignore[arg-type]
                      has_interval=True, **kw)  # type: ignore[arg-type]


def clock_with(tmp_path: Path, state: ClockState, boot: str | None = None) -> IntervalClock:
    db = tmp_path / "tk.db"
    publish(state_path_for(db), state, boot if boot is not None else boot_id())
    return IntervalClock(db)


def test_public_api_is_pinned() -> None:
    assert sorted(timekit.__all__) == ["AnalysisError", "CausalityError", "ClockUnknownError",
                                       "CollectorError", "Fence", "FencingTokens", "IntervalClock", "Lease",
                                       "LeaseExpired", "StoreError", "TimeInterval", "TimekitError",
                                       "UsageError"]


def test_importing_the_library_does_not_load_numpy() -> None:
    code = "import sys, timekit; timekit.IntervalClock; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@settings(max_examples=300, deadline=None)
@given(lo=st.integers(-10**10, 10**10), width=st.integers(0, 10**9), drift=st.floats(-500, 500),
       growth=st.floats(0, 1000), ev_age=st.floats(0, 20_000), age_ns=st.integers(0, 10**13),
       step_ns=st.integers(-10**10, 10**10))
def test_hot_path_equals_the_reference_formula(lo: int, width: int, drift: float, growth: float,
                                               ev_age: float, age_ns: int, step_ns: int) -> None:
    """`now()` inlines `interval_at`; both must agree (to the 1 ns of outward rounding)."""
    a_rt, a_bt = 1_795_000_000 * NS_PER_S, 4_000 * NS_PER_S
    state = ClockState(a_rt, a_bt, lo, lo + width, drift, growth, ev_age, 300.0, 14_400.0, 1_000_000,
                       anchor_unknown=False, has_interval=True)
    rt, bt = a_rt + age_ns + step_ns, a_bt + age_ns
    clock = IntervalClock.__new__(IntervalClock)
    clock._reader, clock._genv, clock._gen, clock._retry_map_at = None, None, -1, 0
    clock._set(state)
    with pytest.MonkeyPatch.context() as mp_:
        mp_.setattr(ic, "_gettime", lambda cid: rt if cid == ic._REALTIME else bt)
        got = clock.now()
    e, lt, status = interval_at(state, rt, bt)
    assert got.status == status
    assert e - 4 <= got.earliest_ns <= e and lt <= got.latest_ns <= lt + 4  # outward, never inward
    assert got.earliest_ns <= got.latest_ns


def test_fresh_state_is_synchronized_and_contains_the_anchor_truth(tmp_path: Path) -> None:
    state = state_now(centre_ns=20_000_000, half_ns=50_000)
    clock = clock_with(tmp_path, state)
    assert clock.source == "published"
    rt0 = time.clock_gettime_ns(time.CLOCK_REALTIME)
    iv = clock.now()
    rt1, bt1 = clocks()
    assert iv.status == "synchronized"
    # true time = local + 20 ms at the instant of the read, somewhere in [rt0, rt1]
    assert iv.earliest_ns <= rt1 + 20_000_000 and rt0 + 20_000_000 <= iv.latest_ns
    # half-width: 50 µs + 200 ppm × (age since anchor, at most until bt1) + the pair slack
    age_s = (bt1 - state.anchor_boottime_ns) / NS_PER_S
    base = 50e-6 + PAIR_SLACK_NS / NS_PER_S
    assert base <= iv.uncertainty_s <= base + 200e-6 * age_s + 3e-9  # + the 2 ns rounded outward


def test_status_and_width_follow_the_age_of_the_evidence(tmp_path: Path, long_uptime: None) -> None:
    """synchronized -> free_running -> unknown as evidence ages; the bound grows at max drift."""
    statuses, widths = [], []
    for age_s in (10.0, 1000.0, 20_000.0):
        clock = clock_with(tmp_path, state_now(age_s=age_s, evidence_age_s=5.0, growth_ppm=100.0))
        iv = clock.now()
        statuses.append(iv.status)
        widths.append(iv.uncertainty_s)
        clock.close()
    assert statuses == ["synchronized", "free_running", "unknown"]
    for age_s, w in zip((10.0, 1000.0, 20_000.0), widths, strict=True):
        expected = 100e-6 + 100e-6 * age_s + PAIR_SLACK_NS / NS_PER_S  # half + 100 ppm × age + slack
        assert expected <= w < expected + 100e-6 * 0.05 + 2e-9


def test_wall_clock_step_since_the_state_is_unknown_but_still_true(tmp_path: Path) -> None:
    """The anchor's realtime says the wall clock read 2 s more then: it was stepped back 2 s since."""
    clock = clock_with(tmp_path, state_now(centre_ns=0, realtime_shift_ns=2 * NS_PER_S))
    rt0 = time.clock_gettime_ns(time.CLOCK_REALTIME)
    iv = clock.now()
    rt1 = time.clock_gettime_ns(time.CLOCK_REALTIME)
    assert iv.status == "unknown"
    # true time is 2 s ahead of the stepped-back wall clock (at the read, in [rt0, rt1]), and the
    # interval follows boottime
    assert iv.earliest_ns <= rt1 + 2 * NS_PER_S and rt0 + 2 * NS_PER_S <= iv.latest_ns


def test_a_preemption_between_the_two_reads_is_not_a_step(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """On a busy host the thread can lose the CPU between now()'s boottime and realtime reads for
    longer than the 1 ms step tolerance; read again, the pair shows no step: still synchronized."""
    state = state_now(half_ns=100_000)
    real = ic._gettime
    calls = [0]

    def preempted_once(clock_id: int) -> int:
        calls[0] += 1
        return real(clock_id) + (5_000_000 if calls[0] == 2 else 0)  # the realtime read, 5 ms late

    monkeypatch.setattr(ic, "_gettime", preempted_once)  # before the clock: the Python path reads them
    clock = clock_with(tmp_path, state)
    rt0 = real(time.CLOCK_REALTIME)
    iv = clock.now()
    rt1 = real(time.CLOCK_REALTIME)
    assert iv.status == "synchronized" and calls[0] > 2  # the pair was read again
    assert iv.earliest_ns <= rt1 and rt0 <= iv.latest_ns  # and the interval is the true one


def test_no_evidence_is_the_widest_interval_and_commit_wait_refuses(tmp_path: Path) -> None:  # Q1
    clock = IntervalClock(tmp_path / "none.db")
    iv = clock.now()
    assert (iv.earliest_ns, iv.latest_ns, iv.status) == (0, INT64_MAX, "unknown")
    assert math.isinf(iv.uncertainty_s)
    assert not clock.after(1) and not clock.before(INT64_MAX)
    with pytest.raises(ClockUnknownError):
        clock.commit_wait(time.clock_gettime_ns(time.CLOCK_REALTIME))
    assert not (tmp_path / "none.db").exists()  # reading never creates a store


def test_state_from_another_boot_is_not_evidence(tmp_path: Path) -> None:
    clock = clock_with(tmp_path, state_now(), boot="00000000-0000-0000-0000-000000000000")
    assert clock.now().status == "unknown" and math.isinf(clock.now().uncertainty_s)


def test_anchor_in_the_boottime_future_is_a_causality_error(tmp_path: Path) -> None:  # Q6
    clock = clock_with(tmp_path, state_now(age_s=-5.0))
    with pytest.raises(timekit.CausalityError):
        clock.now()


def test_commit_wait_waits_out_the_uncertainty(tmp_path: Path) -> None:
    clock = clock_with(tmp_path, state_now(half_ns=20_000_000, growth_ppm=0.0))  # ±20 ms
    m0 = time.monotonic()
    t = clock.now().latest_ns  # a timestamp that is certainly not past yet
    assert not clock.after(t)
    m1 = time.monotonic()
    waited = clock.commit_wait(t, timeout_s=2.0)
    m2 = time.monotonic()
    assert clock.after(t)
    # `t` is certainly past only once the whole width (40 ms, less 2 µs of slack) has gone by since it
    # was taken, however long this machine took in between; and `waited` is the call's own time
    assert m2 - m0 >= 0.040 - 1e-5, m2 - m0
    assert 0 < waited <= m2 - m1


def test_after_and_before_only_when_certain(tmp_path: Path, frozen_clocks: None) -> None:
    clock = clock_with(tmp_path, state_now(half_ns=1_000_000))
    rt, _ = clocks()  # the clocks stand still: `now` is exactly the anchor
    assert clock.after(rt - 10_000_000) and not clock.after(rt)
    assert clock.before(rt + 10_000_000) and not clock.before(rt)


def test_interval_values_are_immutable_and_ordered() -> None:
    a, b = TimeInterval(10, 20, "synchronized"), TimeInterval(30, 40, "synchronized")
    assert a.certainly_before(b) and b.certainly_after(a) and a < b
    assert a.midpoint_ns == 15 and a.contains(10) and a.contains(20) and not a.contains(21)
    assert not TimeInterval(10, 35, "synchronized").certainly_before(b)
    with pytest.raises(AttributeError):
        a.earliest_ns = 0  # type: ignore[misc]


def test_reader_picks_up_a_new_state_on_the_next_call(tmp_path: Path) -> None:
    clock = clock_with(tmp_path, state_now(centre_ns=0))
    first = clock.now()
    publish(state_path_for(tmp_path / "tk.db"), state_now(centre_ns=5 * NS_PER_S), boot_id())
    second = clock.now()
    assert second.earliest_ns - first.earliest_ns > 4 * NS_PER_S


# --- concurrency: no torn reads -------------------------------------------------------------------

def _writer(path: str, n: int) -> None:
    for k in range(1, n + 1):  # every record satisfies hi == -lo == k and anchor realtime == 10**9 + k
        publish(Path(path), ClockState(10**9 + k, 7, -k, k, float(k), 1.0, 0.0, 1.0, 2.0, k,
                                       anchor_unknown=False, has_interval=True), "boot")


def _reader(path: str, seconds: float, out: mp.Queue) -> None:
    r = StateReader(Path(path))
    seen, torn, reads = set(), 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got = r.read()
        if got is None:
            continue
        reads += 1
        _gen, s, boot = got
        k = s.hi_ns
        if not (s.lo_ns == -k and s.anchor_realtime_ns == 10**9 + k and s.drift_ppm == float(k)
                and s.step_tolerance_ns == k and boot == "boot"):
            torn += 1
        seen.add(k)
    out.put((reads, torn, len(seen)))


def test_concurrent_readers_never_see_a_torn_record(tmp_path: Path) -> None:
    path = tmp_path / "x.clock"
    _writer(str(path), 1)
    ctx = mp.get_context("fork")
    q: mp.Queue = ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(str(path), 2.0, q)) for _ in range(2)]
    writer = ctx.Process(target=_writer, args=(str(path), 20_000))
    for p in (*readers, writer):
        p.start()
    results = [q.get(timeout=30) for _ in readers]
    for p in (*readers, writer):
        p.join(timeout=30)
    for reads, torn, distinct in results:
        assert torn == 0
        assert reads > 1000 and distinct > 50  # the readers really overlapped the writer


# --- leases and fencing ----------------------------------------------------------------------------

def test_lease_expires_on_the_interval_clock_and_fencing_tokens_grow(tmp_path: Path) -> None:
    clock = clock_with(tmp_path, state_now(half_ns=1_000_000))
    tokens, fence = FencingTokens(tmp_path / "tk.db"), Fence(tmp_path / "tk.db")
    t1, t2 = tokens.next("orders"), tokens.next("orders")
    assert (t1, t2) == (1, 2) and tokens.next("other") == 1
    b0 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    lease = Lease(clock, 0.05, token=t2)
    remaining = lease.remaining_s()
    valid = lease.valid()
    b1 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    # the interval's 2 × 1 ms width comes off the 50 ms lease (the start is not known closer), and
    # whatever time this machine took since the lease was taken
    assert 0.048 - (b1 - b0) / NS_PER_S - 1e-5 <= remaining <= 0.048 + 1e-6, remaining
    assert valid or (b1 - b0) / NS_PER_S >= 0.048 - 1e-5  # held unless that much time went by
    time.sleep(0.06)
    assert not lease.valid()
    with pytest.raises(LeaseExpired):
        lease.ensure()
    assert fence.accept("orders", t2) and fence.accept("orders", t2)
    assert not fence.accept("orders", t1)  # a stale token is refused


CHILD = r"""
import os, signal, sys
from timekit import Fence, FencingTokens, IntervalClock, Lease
db = sys.argv[1]
lease = Lease(IntervalClock(db), 0.5, token=FencingTokens(db).next("orders"))
print("acquired", lease.token, flush=True)
if lease.valid():
    os.kill(os.getpid(), signal.SIGSTOP)          # paused at the worst moment: after the check
    print("write-after-pause", Fence(db).accept("orders", lease.token), flush=True)
print("valid-after-pause", lease.valid(), flush=True)
"""


def test_a_paused_lease_holder_finds_out_and_its_stale_token_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "tk.db"
    publish(state_path_for(db), state_now(half_ns=1_000_000), boot_id())
    FencingTokens(db).next("warmup")  # create the store before the child races for it
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert line[0] == "acquired"
        old = int(line[1])
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "T":  # stopped
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.7)  # the 0.5 s lease runs out while it is stopped; a new holder takes over
        new = FencingTokens(db).next("orders")
        assert new > old and Fence(db).accept("orders", new)
        os.kill(child.pid, signal.SIGCONT)
        out, _ = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
    assert out.split() == ["write-after-pause", "False", "valid-after-pause", "False"]


def test_a_writer_dead_mid_write_leaves_readers_fast_and_on_the_old_state(tmp_path: Path) -> None:
    clock = clock_with(tmp_path, state_now(centre_ns=7_000_000))
    before = clock.now()
    with open(state_path_for(tmp_path / "tk.db"), "r+b") as fh:  # the counter odd, as kill -9 mid-write
        fh.seek(8)
        gen = int.from_bytes(fh.read(8), "little")
        fh.seek(8)
        fh.write((gen + 1).to_bytes(8, "little"))
    reader = clock._reader
    assert reader is not None
    reads = []
    real_read = reader.read
    reader.read = lambda: reads.append(1) or real_read()  # type: ignore[method-assign]
    for _ in range(1000):
        iv = clock.now()
    assert len(reads) <= 1  # no spinning on the odd counter: the record is tried once, then kept
    assert abs(iv.earliest_ns - before.earliest_ns) < NS_PER_S and clock.source == "published"
    publish(state_path_for(tmp_path / "tk.db"), state_now(centre_ns=3 * NS_PER_S), boot_id())
    assert clock.now().earliest_ns - iv.earliest_ns > 2 * NS_PER_S  # the next writer recovers it


def test_a_corrupt_record_is_not_evidence_and_not_a_crash(tmp_path: Path) -> None:
    path = state_path_for(tmp_path / "tk.db")
    publish(path, state_now(), boot_id())
    with open(path, "r+b") as fh:
        fh.seek(40)
        fh.write(b"\xff" * 16)  # inside the record; the generation stays even, the CRC no longer matches
    clock = IntervalClock(tmp_path / "tk.db")
    assert clock.now().status == "unknown" and math.isinf(clock.now().uncertainty_s)


def test_a_clock_started_before_the_first_publish_picks_it_up(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ic, "REMAP_EVERY_NS", 50_000_000)
    clock = IntervalClock(tmp_path / "tk.db")
    assert math.isinf(clock.now().uncertainty_s)
    publish(state_path_for(tmp_path / "tk.db"), state_now(), boot_id())
    deadline = time.monotonic() + 5
    while math.isinf(clock.now().uncertainty_s):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert clock.source == "published" and clock.now().status == "synchronized"


def test_a_reader_may_assume_a_wider_drift_than_the_publisher(tmp_path: Path, long_uptime: None) -> None:
    publish(state_path_for(tmp_path / "tk.db"), state_now(growth_ppm=10.0, age_s=100.0), boot_id())
    narrow = IntervalClock(tmp_path / "tk.db").now().uncertainty_s
    wide = IntervalClock(tmp_path / "tk.db", max_drift_ppm=500.0).now().uncertainty_s
    # 100 s of age: 10 ppm -> 1 ms; 500 ppm -> 50 ms (plus the 100 µs half-width at the anchor)
    assert narrow == pytest.approx(1e-4 + 1e-3, abs=2e-5) and wide == pytest.approx(1e-4 + 0.05, abs=2e-5)


def test_a_pending_leap_second_widens_from_one_second_before_its_midnight(tmp_path: Path) -> None:
    rt, _ = clocks()
    leap_soon = state_now(leap_from_ns=rt + 60 * NS_PER_S)  # midnight 61 s away
    leap_past = state_now(leap_from_ns=rt - NS_PER_S)  # we are past 1 s before midnight
    a = clock_with(tmp_path, leap_soon).now().uncertainty_s
    b = clock_with(tmp_path, leap_past).now().uncertainty_s
    assert b == pytest.approx(a + 1.0, abs=1e-3)


def test_now_never_opens_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock built from the store (nothing published yet) looks for the published file again
    from now(), but never queries the store there: that would put a database read in the hot path."""
    from timekit.store.database import Store

    db = tmp_path / "tk.db"
    Store.open(db).close()
    monkeypatch.setattr(ic, "REMAP_EVERY_NS", 1)
    clock = IntervalClock(db)
    assert clock.source in ("store", "none")

    def no_store(*_a: object, **_k: object) -> None:
        raise AssertionError("now() opened the store")

    monkeypatch.setattr(Store, "open", no_store)
    for _ in range(1000):
        clock.now()  # retries mapping the file every call here (REMAP_EVERY_NS = 1 ns), never the store
    publish(state_path_for(db), state_now(), boot_id())
    assert clock.now().status == "synchronized" and clock.source == "published"


def _state(rt: int, bt: int, lo_ns: int, hi_ns: int, *, growth: float = 200.0,
           has: bool = True) -> ClockState:
    return ClockState(rt, bt, lo_ns, hi_ns, 0.0, growth, 1.0, 300.0, 14_400.0, 1_000_000,
                      anchor_unknown=False, has_interval=has)


def test_disruption_is_fresh_evidence_outside_the_carried_forward_interval() -> None:  # FAULTS C5
    from timekit.analysis.clock_state import disruption_ns

    rt, bt = 1_800_000_000 * NS_PER_S, 5_000 * NS_PER_S
    old = _state(rt, bt, -1_000_000, 1_000_000)  # ±1 ms, growing 200 ppm: ±3 ms 10 s later
    later = 10 * NS_PER_S
    # within what the old state allows 10 s on: nothing to say
    assert disruption_ns(old, _state(rt + later, bt + later, 1_500_000, 2_500_000)) is None
    # 300 s further than the clocks say (a paused VM): the gap beyond the old latest (3 ms + pair slack)
    off = disruption_ns(old, _state(rt + later, bt + later, 300 * NS_PER_S - 100, 300 * NS_PER_S + 100))
    assert off is not None and abs(off - (300 * NS_PER_S - 100 - 3_000_000 - PAIR_SLACK_NS)) <= 1, off
    off = disruption_ns(old, _state(rt + later, bt + later, -8_000_000, -7_000_000))
    assert off is not None and abs(off - (-7_000_000 + 3_000_000 + PAIR_SLACK_NS)) <= 1, off  # < earliest
    # a wall-clock step since is the clocks keeping track (the boottime rule), not a disruption
    step = 100 * NS_PER_S
    assert disruption_ns(old, _state(rt + later + step, bt + later, -step - 100, -step + 100)) is None
    # no interval on either side, or a state anchored earlier: nothing to compare
    assert disruption_ns(old, _state(rt + later, bt + later, 0, 0, has=False)) is None
    assert disruption_ns(_state(rt, bt, 0, 0, has=False), old) is None
    assert disruption_ns(_state(rt + later, bt + later, 5 * NS_PER_S, 6 * NS_PER_S), old) is None
