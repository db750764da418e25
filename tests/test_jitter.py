"""Jitter means what RFC 5905 means: the scatter of successive offsets, never the drift between
samples taken minutes apart; and a drift the data cannot pin down is reported as 'cannot_tell'."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import LAB_SLACK_S, run_cli
from timekit.analysis.assessment import jitter_s
from timekit.lab.manager import Lab
from timekit.units import NS_PER_S


def _bursts(drift_ppm: float, noise_s: float, gap_s: float, runs: int, per_run: int,
            seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`runs` bursts of `per_run` samples 0.1 s apart, `gap_s` between bursts; offset = reference −
    local for a clock gaining `drift_ppm`, plus Gaussian noise of `noise_s`."""
    rng = np.random.default_rng(seed)
    t_s = np.array([r * gap_s + i * 0.1 for r in range(runs) for i in range(per_run)])
    off = -drift_ppm * 1e-6 * t_s + rng.normal(0.0, noise_s, t_s.size)
    return (t_s * NS_PER_S).astype(np.int64) + 1_700_000_000 * NS_PER_S, off, np.full(t_s.size, 1e-4)


@pytest.mark.parametrize("gap_s", [60.0, 300.0, 900.0])
@pytest.mark.parametrize("per_run", [1, 2, 4])
def test_jitter_of_a_drifting_clock_is_its_noise(gap_s: float, per_run: int) -> None:
    noise = 20e-6
    samples = []
    for seed in range(1, 21):
        j = jitter_s(*_bursts(100.0, noise, gap_s, runs=8, per_run=per_run, seed=seed))
        assert j is not None
        samples.append(j)
    # successive differences of independent noise have RMS noise·√2; the detrending takes a little
    assert 0.4 * noise * np.sqrt(2) <= float(np.median(samples)) <= 1.6 * noise * np.sqrt(2), samples
    assert max(samples) < 10 * noise  # 100 ppm over the gap is 6-90 ms: none of it is jitter


def test_jitter_needs_three_samples_and_pairs_within_a_poll() -> None:
    t, off, dl = _bursts(0.0, 1e-5, 60.0, runs=1, per_run=2)
    assert jitter_s(t, off, dl) is None  # two samples cannot tell drift from jitter
    t, off, dl = _bursts(0.0, 1e-5, 5000.0, runs=4, per_run=1)
    assert jitter_s(t, off, dl) is None  # every pair further apart than NTP's longest poll


def test_a_steadily_drifting_lab_server_has_jitter_near_its_noise(lab: Lab, tmp_path: Path) -> None:
    """chrony-ahead runs 100 ppm fast: two bursts 8 s apart differ by ~0.8 ms of drift. Its true
    noise per sample is within delay/2 of the truth (NTP's bound), so successive differences of
    detrended offsets stay within a few times the delay, far below the drift between the runs."""
    srv = lab.server("chrony-ahead")
    db = tmp_path / "j.db"
    started = time.monotonic()
    assert run_cli("sample", "ntp", srv.address, "--count", "4", "--interval", "0.1", db=db).returncode == 0
    time.sleep(max(0.0, 8.0 - (time.monotonic() - started)))
    assert run_cli("sample", "ntp", srv.address, "--count", "4", "--interval", "0.1", db=db).returncode == 0
    doc = json.loads(run_cli("check", "--json", db=db).stdout)
    row = doc["servers"][0]
    with sqlite3.connect(db) as c:
        (max_delay,) = c.execute("SELECT max(delay_s) FROM ntp_samples WHERE ok = 1").fetchone()
    assert row["jitter_s"] is not None
    # each offset is within delay/2 (+ the lab's slack) of the truth: a successive difference of
    # detrended offsets is within about one delay
    assert row["jitter_s"] <= 1.5 * (max_delay + 2 * LAB_SLACK_S), (row, max_delay)
    drift_between_runs = abs(srv.server_drift_ppm) * 1e-6 * 8.0
    assert row["jitter_s"] < drift_between_runs / 4, (row, drift_between_runs)


def test_a_burst_cannot_tell_drift(lab: Lab, tmp_path: Path) -> None:
    """A 4-query burst over 30 ms fits a drift whose 95 % interval is wider than the ±50 ppm a drift
    must be known to: reported 'cannot_tell' with the width in words, never 'ok'. (Over 150 ms the
    lab's 4-8 µs delays already pin a drift to ±35 ppm: the span, not the count, decides.)"""
    from timekit.analysis.drift import CANNOT_TELL_HALF_PPM

    db = tmp_path / "b.db"
    assert run_cli("sample", "ntp", lab.server("chrony-near").address, "--count", "4", "--interval", "0.01",
                   db=db).returncode == 0
    doc = json.loads(run_cli("analyze", "drift", "--json", db=db).stdout)
    (r,) = doc["results"]
    lo, hi = r["drift_ci95_ppm"]
    assert hi - lo > 2 * CANNOT_TELL_HALF_PPM, r
    assert r["status"] == "cannot_tell" and "wider than" in r["reason"], r


def test_clock_filter_takes_the_lowest_delay_of_the_newest_burst_and_carries_it() -> None:
    """RFC 5905's clock filter as check reports a server: of the newest 8 samples within 16 s of the
    newest, the lowest delay (a tie goes to the newer); its offset carried to the newest instant by
    a known drift (our clock gains: the offset falls)."""
    from timekit.analysis.assessment import clock_filter

    t = np.array([0, 30, 31, 32, 33, 34, 35, 36, 37, 38], dtype=np.int64) * NS_PER_S
    off = np.array([9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0]) * 1e-3
    delay = np.array([1e-6, 5e-4, 3e-4, 9e-4, 2e-4, 8e-4, 2e-4, 6e-4, 7e-4, 4e-4])
    # the 1 µs sample is 38 s old (another poll); sample 1 is beyond the 8 stages; of 2..9 the
    # lowest delay is 2e-4 at 4 and 6: the newer (6) wins
    assert clock_filter(t, off, delay, None) == (6, 6e-3)
    idx, carried = clock_filter(t, off, delay, 100.0)  # +100 ppm for the 3 s to the newest
    assert idx == 6 and carried == pytest.approx(6e-3 - 100e-6 * 3, abs=1e-15)
    assert clock_filter(t[:1], off[:1], delay[:1], 50.0) == (0, off[0])  # one sample: itself
