"""The pause meter: real stalls (SIGSTOP) are measured, stored, survive Ctrl-C and hold the skew guard."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, wait_for_count
from timekit.analysis.assessment import Policy
from timekit.analysis.skew import SkewPolicy
from timekit.collectors.clocks import boot_id
from timekit.collectors.pauses import summarise
from timekit.pipeline.assess import read_now
from timekit.pipeline.skewcheck import run_skew_check
from timekit.samples import NtpSample
from timekit.store.database import Store

NS = 1_000_000_000


def test_missed_wakeups_are_filled_in() -> None:
    from timekit.collectors.pauses import with_missed_wakeups

    # a 3.5 ms stall at 1 ms resolution hid three wake-ups, which would have seen 2.5, 1.5, 0.5 ms
    got = with_missed_wakeups([0.0001, 0.0035], 0.001)
    assert got[:2] == [0.0001, 0.0035] and got[2:] == pytest.approx([0.0025, 0.0015, 0.0005])


def test_summary_percentiles_by_hand() -> None:
    hiccups = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1000 ms
    s = summarise(list(reversed(hiccups)), 5, 6, 1.0, 0.0)
    # nearest rank: p50 = 500th value (0.500 s), p90 = 900th, p99 = 990th, p99.9 = 999th, max = 1000th
    assert (s.p50_s, s.p90_s, s.p99_s, s.p999_s, s.max_s, s.n_wakeups) == (0.5, 0.9, 0.99, 0.999, 1.0, 1000)
    assert summarise([], 0, 0, 1.0, 0.0).max_s == 0.0


def _meter(db: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "timekit.cli", "sample", "pauses", *args, "--json",
                             "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_sigstop_is_measured_as_a_pause(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    proc = _meter(db, "--duration", "4", "--interval", "0.5")
    wait_for_count(db, "SELECT count(*) FROM pause_intervals", 1, proc=proc)  # the meter runs, calm
    stop_sent = time.monotonic()
    os.kill(proc.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    time.sleep(0.6)
    cont_sent = time.monotonic()
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=30)
    exited = time.monotonic()
    assert proc.returncode == 0, err
    rows = json.loads(out)["pauses"]
    worst = max(r["max_s"] for r in rows)
    # the stop as this test timed it: at least from the stop to the continue, at most until the exit
    assert cont_sent - stopped - 0.01 <= worst <= exited - stop_sent, (worst, cont_sent - stopped)
    # coordinated omission corrected: the stall filled more than half of its interval, so even
    # the median of that interval is a large part of the stall (not the 1 ms sleeper's ~0.1 ms)
    stalled = max(rows, key=lambda r: r["max_s"])
    assert stalled["p90_s"] > 0.2 and stalled["p99_s"] > 0.4
    calm = sorted(r["p50_s"] for r in rows if r is not stalled)
    assert calm[len(calm) // 2] < stalled["p50_s"] / 4  # the other intervals' typical wake-up is not
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*), max(max_s) FROM pause_intervals").fetchone() == (len(rows), worst)


def test_ctrl_c_keeps_the_closed_intervals(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    proc = _meter(db, "--duration", "30", "--interval", "0.2")
    seen = wait_for_count(db, "SELECT count(*) FROM pause_intervals", 3, proc=proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    with sqlite3.connect(db) as c:  # every interval closed before Ctrl-C is kept
        assert c.execute("SELECT count(*) FROM pause_intervals").fetchone()[0] >= seen


def _fleet(st: Store, rt: int, boot: int) -> None:
    """Three agreeing references and self, fresh, in the store."""
    samples = [NtpSample(f"10.0.0.{i}:123", True, None, rt - k * NS // 10, offset_s=0.001, delay_s=1e-4,
                         stratum=2, leap=0, root_delay_s=1e-4, root_dispersion_s=1e-4,
                         boottime_ns=boot - k * NS // 10, boot_id=boot_id())
               for i in range(3) for k in range(5)]
    st.add_ntp_samples(samples)


def test_pause_meter_holds_the_skew_guard(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as st:
        rt, boot = read_now()
        _fleet(st, rt, boot)
        first = run_skew_check(st, Policy(), now=(rt, boot))
        assert not first.update.held and first.assessment.quorum
        from timekit.collectors.pauses import PauseInterval

        st.add_pause_intervals([PauseInterval(rt + 1, boot + 1, 1.0, 100, 1e-4, 1e-4, 0.5, 2.0, 2.0, 0.0)])
        second = run_skew_check(st, Policy(skew=SkewPolicy(pause_guard_s=0.5)), now=(rt + 2, boot + 2))
        assert second.update.held and "pause meter saw this host stall 2.000 s" in second.update.reason
        third = run_skew_check(st, Policy(skew=SkewPolicy(pause_guard_s=0.5)), now=(rt + 3, boot + 3))
        assert not third.update.held  # the stall is before this check's window


@pytest.mark.parametrize("body", ["[pauses]\nresolution_s = 2.0\n", "[pauses]\nduration_s = -1\n",
                                  "[pauses]\nenabled = 1\n"])
def test_bad_pause_config_is_one_line(tmp_path: Path, body: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[ntp]\nservers = ["127.0.0.1:9"]\n' + body)
    proc = run_cli("collect", "--config", str(cfg), db=tmp_path / "t.db")
    assert proc.returncode == 2 and "pauses" in proc.stderr and "Traceback" not in proc.stderr
