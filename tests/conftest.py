"""Shared fixtures: one reference lab per test session (real chronyd + the fault server)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from timekit.address import parse_server
from timekit.collectors.ntp_client import QueryPlan, sample_servers
from timekit.collectors.server_policy import ServerState
from timekit.lab.manager import Lab, start_lab
from timekit.samples import NtpSample
from timekit.units import NS_PER_S

# Property tests judge behaviour, not speed: no per-example deadline, no "too slow" health check (a
# busy machine's stall is not a failure). Loaded before the test modules, so their @settings inherit it.
settings.register_profile("timekit", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("timekit")

# A suite started as a background job of a non-interactive shell (`cmd &`, as some CI runners and
# chroot scripts do) inherits SIGINT ignored, and every command it starts would too: the Ctrl-C
# tests' commands would never hear the interrupt. Catching it here (Python's own handler) lets
# each child start with the default disposition again, as under a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Fixtures that start lab servers (chronyd under libfaketime): a test using one, directly or through
# another fixture, carries the `lab` marker, so `pytest -m "not lab"` runs without chronyd. Tests that
# start chronyd themselves are marked by hand.
LAB_FIXTURES = frozenset({"lab", "chrony_pair"})
_FIGURES: list[tuple[str, str]] = []


def record_figure(topic: str, text: str) -> None:
    """A measured figure (how many checks a run made, ...) printed in the run's summary: counts that
    depend on the machine are reported, not asserted."""
    _FIGURES.append((topic, text))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("measured figures")
        for topic, text in _FIGURES:
            terminalreporter.write_line(f"{topic}: {text}")


# The lab's own slack beyond NTP's bound |offset - truth| <= delay/2: clock reads, libfaketime's double
# arithmetic, chronyd's sub-precision noise. Tolerances on measured offsets are delay/2 + LAB_SLACK_S.
LAB_SLACK_S = 20e-6

# A synthetic host up this much longer than this machine: evidence hours old is valid there whatever
# this machine's uptime (CI may start a minute after boot, when `boottime - 2000 s` is negative).
UPTIME_PAD_NS = 30 * 86_400 * 1_000_000_000


def pair_bound_ppm(t_ns: Sequence[int], rd_s: Sequence[float]) -> float:
    """The widest NTP's drift bound (every slope of a line through all the samples' ± root distance
    bars) can be on these samples, ppm: the slopes through the narrowest bar of the first quarter and
    of the last (every feasible slope passes both). Late replies on a busy machine widen the bars and
    so this figure; a drift fit's bound must never be wider."""
    t, rd = np.asarray(t_ns, dtype=np.int64), np.asarray(rd_s, dtype=float)
    q = max(1, len(t) // 4)
    i, j = int(np.argmin(rd[:q])), len(t) - q + int(np.argmin(rd[-q:]))
    return float(2 * (rd[i] + rd[j]) / ((t[j] - t[i]) / 1e9) * 1e6)


def host_slew_bound_ppm() -> tuple[float, float]:
    """(expected, tolerance) ppm for how fast CLOCK_REALTIME runs against CLOCK_MONOTONIC_RAW on this
    host: the kernel's frequency and tick corrections (adjtimex), give or take the at most 500 ppm an
    offset slew adds. A time daemon may be correcting this host's clock, fast, right after boot;
    without adjtimex, the kernel's physical limit (tick ±10 %, frequency ±500 ppm)."""
    from timekit.collectors.adjtimex import read_kernel_state

    k = read_kernel_state()
    if k is None:
        return 0.0, 100_500.0
    return k.frequency_ppm + (k.tick_us - 10_000) * 100.0, 500.0


def wait_for_count(db: Path, sql: str, at_least: int, *, proc: subprocess.Popen[str] | None = None,
                   timeout_s: float = 60.0) -> int:
    """Poll the count `sql` returns on `db` until it reaches `at_least`; returns the count seen.

    Tests wait for what must have happened (rows committed by a running command) rather than for a
    fixed time that a slow or busy machine may not honour. Bounded: fails after `timeout_s`, or at
    once if `proc` exits first.
    """
    deadline = time.monotonic() + timeout_s
    n = 0
    while True:
        if db.exists():
            try:
                with closing(sqlite3.connect(db, timeout=5)) as c:
                    n = int(c.execute(sql).fetchone()[0])
            except sqlite3.OperationalError:  # the schema is not there yet
                n = 0
        if n >= at_least:
            return n
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the command exited ({proc.returncode}) with {n} < {at_least}: {sql}")
        if time.monotonic() > deadline:
            raise AssertionError(f"only {n} < {at_least} after {timeout_s} s: {sql}")
        time.sleep(0.05)


def require_lab(missing: list[str]) -> None:
    """Skip a lab test on a machine without chronyd/libfaketime/gcc, but fail in CI (which installs
    them): a lab test that silently skips there would prove nothing."""
    if missing:
        if os.environ.get("CI"):
            pytest.fail("lab prerequisites missing in CI: " + "; ".join(missing))
        pytest.skip("lab prerequisites missing: " + "; ".join(missing))


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The default lab (3 chronyd servers, good fault ports, one port per fault kind)."""
    from timekit.lab.chrony import lab_prerequisites

    require_lab(lab_prerequisites())
    the_lab = start_lab(tmp_path_factory.mktemp("lab"), detach=False)
    yield the_lab
    the_lab.stop()


def sample(addresses: list[str], count: int = 1, interval_s: float = 0.05, timeout_s: float = 0.5,
           states: dict[str, ServerState] | None = None) -> list[NtpSample]:
    """Sample servers concurrently through the real client; returns every attempt."""
    out: list[NtpSample] = []
    asyncio.run(sample_servers([parse_server(a) for a in addresses],
                               QueryPlan(count=count, interval_s=interval_s, timeout_s=timeout_s),
                               {} if states is None else states,
                               lambda s, _st: out.append(s)))
    return out


def clock_filter_expected(samples: Sequence[NtpSample],
                          drift_ppm: float | None = None) -> tuple[NtpSample, float]:
    """The documented clock filter, written out independently of `assessment.clock_filter`: of a
    server's usable samples (oldest first), the lowest delay among the newest 8 within 16 s of the
    newest (a tie: the newer), and its offset carried to the newest instant by `drift_ppm` (s)."""
    stages = [s for s in samples[-8:] if samples[-1].t_local_ns - s.t_local_ns <= 16 * NS_PER_S]
    best = min(reversed(stages), key=lambda s: s.delay_s or 0.0)
    carried_s = (samples[-1].t_local_ns - best.t_local_ns) / NS_PER_S
    return best, (best.offset_s or 0.0) - (drift_ppm or 0.0) * 1e-6 * carried_s


def run_cli(*args: str, db: Path | None = None, timeout: float = 60, prefix: Sequence[str] = (),
            **kw: object) -> subprocess.CompletedProcess:
    """Run the real `timekit` console entry point in a subprocess (under `prefix`, e.g. `unshare ...`)."""
    cmd = [*prefix, sys.executable, "-m", "timekit.cli", *args]
    if db is not None:
        cmd += ["--db", str(db)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
