"""One pipeline: every command renders the one Assessment of the store, and no evidence is from the future.

For one store and one instant, `timekit check`, the Prometheus metrics, `timekit now`, the report
and `analyze drift` must give the same numbers (they all come from `assess_store`); against the lab,
the real commands run one after another agree within what the clock's growth between them allows.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from tests.conftest import clock_filter_expected, run_cli
from tests.test_check import host_now, write_samples
from timekit.analysis.assessment import Policy
from timekit.analysis.clock_state import ClockState
from timekit.collectors.clocks import boot_id
from timekit.lab.manager import Lab
from timekit.pipeline.assess import assess_store, publish_quietly, read_now
from timekit.samples import NtpSample
from timekit.store.database import Store
from timekit.store.published_state import StateReader, publish, state_path_for
from timekit.units import NS_PER_S

FIVE = {"10.0.0.1:123": 0.0010, "10.0.0.2:123": 0.0013, "10.0.0.3:123": 0.0008, "10.0.0.4:123": 0.0011,
        "10.0.0.5:123": 0.2500}  # four agree, one is a falseticker


def _metric_values(db: Path, now: tuple[int, int]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from timekit.outputs.metrics import TimekitCollector, registry_for

    text = generate_latest(registry_for(TimekitCollector(db, now=lambda: now, strict=True))).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _summary_drifts(summary: str) -> dict[str, float]:
    """server -> drift (ppm, 3 decimals) from the report's server table."""
    out = {}
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 7 and re.fullmatch(r"[0-9.]+:[0-9]+", cells[0]) and cells[6] != "–":
            out[cells[0]] = float(cells[6])
    return out


def test_check_metrics_now_report_and_drift_give_the_same_numbers(tmp_path: Path) -> None:
    """One store, one instant: every rendering shows the numbers of the one assessment."""
    from timekit.outputs.check import run_check
    from timekit.outputs.drift_report import drift_results
    from timekit.outputs.report import write_report

    db = tmp_path / "one.db"
    host = host_now()
    write_samples(db, FIVE, 3.0, n=40, spacing_s=4.0, drift_ppm=12.0, noise_s=20e-6, now=host)
    with Store.open(db) as st:
        found = assess_store(st, now=host)
    iv = found.interval
    assert iv is not None and iv.earliest_ns is not None and iv.latest_ns is not None
    assert iv.status == "synchronized" and iv.selection is not None
    assert set(iv.selection.falsetickers) == {"10.0.0.5:123"}
    by_name = {s.server: s for s in found.servers}
    # the truth the store was written with: the four honest references agree on 0.8-1.3 ms; each
    # fit sees the 12 ppm the samples were written with, within its own 95 % interval
    for name, s in by_name.items():
        assert s.fit is not None and s.drift_ppm is not None and s.drift_ci95_ppm is not None
        assert s.drift_ci95_ppm[0] <= 12.0 <= s.drift_ci95_ppm[1], (name, s.drift_ci95_ppm)
        assert s.drift_judgeable(100.0), (name, s.drift_ci_half_ppm)
    honest = [by_name[n].offset_s for n in FIVE if n != "10.0.0.5:123"]
    assert found.point_offset_s == pytest.approx(sorted(honest)[1:3][0] / 2 + sorted(honest)[1:3][1] / 2)

    # check: the same point offset, uncertainty, and the median of the truechimers' drifts
    verdict = run_check([], db, now=host)
    m = verdict.metrics
    assert m["offset_s"] == found.point_offset_s
    assert m["uncertainty_s"] == iv.uncertainty_s
    chimers = [by_name[n] for n in iv.selection.truechimers]
    drifts = sorted(s.drift_ppm for s in chimers if s.drift_ppm is not None)
    assert m["drift_ppm"] == pytest.approx((drifts[1] + drifts[2]) / 2, abs=0)
    rows = {r["server"]: r for r in verdict.servers}
    for name, s in by_name.items():
        assert rows[name]["drift_ppm"] == s.drift_ppm and rows[name]["offset_s"] == s.offset_s
        assert rows[name]["jitter_s"] == s.jitter_s and rows[name]["truechimer"] == s.truechimer

    # the metrics: the same numbers, series by series
    values = _metric_values(db, host)
    assert values[("timekit_clock_offset_seconds", ())] == found.point_offset_s
    assert values[("timekit_clock_uncertainty_seconds", ())] == iv.uncertainty_s
    for name, s in by_name.items():
        label = (("server", name),)
        assert values[("timekit_server_offset_seconds", label)] == s.offset_s
        assert values[("timekit_server_drift_ppm", label)] == s.drift_ppm
        assert values[("timekit_server_jitter_seconds", label)] == s.jitter_s

    # `timekit now`'s interval and the published state: the same interval at the same instant
    with Store.open(db) as st:
        again = assess_store(st, now=host)
    assert (again.interval.earliest_ns, again.interval.latest_ns) == (iv.earliest_ns, iv.latest_ns)  # type: ignore[union-attr]
    assert found.state is not None and found.state.anchor_realtime_ns == host[0]
    assert found.state.lo_ns == iv.earliest_ns - host[0] and found.state.hi_ns == iv.latest_ns - host[0]

    # analyze drift and the report: each server's one fit
    assert {r["server"]: r["drift_ppm"] for r in drift_results(found)} == {n: s.drift_ppm
                                                                          for n, s in by_name.items()}
    with Store.open(db) as st:
        res = write_report(st, tmp_path / "report", now=host)
    summary = (res.directory / "summary.md").read_text(encoding="utf-8")
    shown = _summary_drifts(summary)
    assert set(shown) == set(FIVE)
    for name, s in by_name.items():
        assert shown[name] == pytest.approx(s.drift_ppm, abs=0.0005 + 1e-12)  # printed with 3 decimals


def test_every_command_agrees_on_one_lab_store(lab: Lab, tmp_path: Path) -> None:
    """The real commands, run one after another on one store of lab samples: the same offset and
    drift (no sample is added between them), and intervals that differ only by the growth the
    time between the runs allows; each offset within NTP's bound of the lab's truth. (One reference:
    the lab's three chronyd servers disagree on purpose, so together they have no majority.)"""
    db = tmp_path / "lab.db"
    names = ("chrony-near",)
    addrs = [lab.server(n).address for n in names]
    sampled = run_cli("sample", "ntp", *addrs, "--count", "8", "--interval", "0.1", "--json", db=db)
    assert sampled.returncode == 0, sampled.stderr
    t0 = read_now()
    check = json.loads(run_cli("check", "--json", db=db).stdout)
    now = run_cli("now", "--json", db=db)
    assert now.returncode == 0, now.stderr
    now_doc = json.loads(now.stdout)
    prom = tmp_path / "timekit.prom"
    assert run_cli("export", "prometheus", "--out", str(prom), db=db).returncode == 0
    drift = json.loads(run_cli("analyze", "drift", "--json", db=db).stdout)["results"]
    t1 = read_now()
    elapsed_s = (t1[1] - t0[1]) / NS_PER_S
    growth_s = 2 * (200e-6 + 50e-6) * elapsed_s + 1e-8  # assumed drift + the estimate's spread, both sides

    text = prom.read_text()

    def metric(name: str, server: str | None = None) -> float | None:
        label = "" if server is None else f'{{server="{server}"}}'
        m = re.search(rf"^{re.escape(name + label)} (\S+)$", text, re.M)
        return None if m is None else float(m[1])

    rows = {r["server"]: r for r in check["servers"]}
    fits = {r["server"]: r for r in drift}
    with Store.open(db) as st:
        stored = {a: st.ntp_samples(server=a, ok_only=True) for a in addrs}
    for name, addr in zip(names, addrs, strict=True):
        # the clock filter's sample, its offset carried to the newest instant by the fitted drift
        s, carried = clock_filter_expected(stored[addr], fits[addr]["drift_ppm"]
                                           if fits[addr]["status"] == "ok" else None)
        assert s.offset_s is not None and s.delay_s is not None
        truth = lab.server(name).true_offset_at(s.t_local_ns)
        assert abs(s.offset_s - truth) <= s.delay_s / 2 + 20e-6  # the evidence itself is honest
        assert s.delay_s == rows[addr]["delay_s"]
        assert rows[addr]["offset_s"] == pytest.approx(carried, abs=1e-12)
        assert rows[addr]["offset_s"] == metric("timekit_server_offset_seconds", addr)
        assert rows[addr]["drift_ppm"] == fits[addr]["drift_ppm"]  # the one fit, in check and analyze
        exported = metric("timekit_server_drift_ppm", addr)
        assert exported is None or exported == fits[addr]["drift_ppm"]
    assert check["metrics"]["offset_s"] == metric("timekit_clock_offset_seconds")
    unc = [check["metrics"]["uncertainty_s"], now_doc["uncertainty_s"],
           metric("timekit_clock_uncertainty_seconds")]
    assert all(u is not None and math.isfinite(u) for u in unc), unc
    assert max(unc) - min(unc) <= growth_s, (unc, growth_s)  # type: ignore[type-var,operator]


# ----------------------------------------------------------------------------- no evidence from the future
def _sample(name: str, rt: int, bt: int) -> NtpSample:
    return NtpSample(name, True, None, rt, offset_s=0.001, delay_s=1e-4, stratum=2, leap=0,
                     root_delay_s=0.0, root_dispersion_s=0.0, boottime_ns=bt, boot_id=boot_id())


def _three_fresh(db: Path) -> None:
    rt, bt = read_now()
    with Store.open(db) as st:
        st.add_ntp_samples([_sample(n, rt - k * 10_000_000, bt - k * 10_000_000)
                            for n in "abc" for k in range(4)])


def test_a_sample_committed_after_the_clock_read_is_not_from_the_future(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race `timekit now` lost to a daemon at 4 Hz, made deterministic: a sample is committed right
    after the clocks are read. Read in the old order (clocks, then store) that sample is 'in the
    future' and the interval is unknown; the evidence is read first, so it is simply not seen yet."""
    import timekit.store.evidence as evidence

    db = tmp_path / "race.db"
    _three_fresh(db)
    real = evidence.read_now
    committed: list[tuple[int, int]] = []

    def clocks_then_a_daemon_commit() -> tuple[int, int]:
        r = real()
        later = (r[0] + 5_000_000, r[1] + 5_000_000)  # received 5 ms later (beyond the 1 ms slack)
        with Store.open(db) as other:
            other.add_ntp_samples([_sample(n, *later) for n in "abc"])
        committed.append(later)
        return r

    monkeypatch.setattr(evidence, "read_now", clocks_then_a_daemon_commit)
    with Store.open(db) as st:
        found = assess_store(st)
    assert committed, "the interleaving did not happen"
    assert found.interval is not None and found.interval.status == "synchronized", found.interval
    assert all(b.status == "ok" for b in found.interval.servers), found.interval.reason
    # the same store judged at an instant given by the caller: samples taken after it are not evidence
    monkeypatch.setattr(evidence, "read_now", real)
    before = (committed[0][0] - 4_000_000, committed[0][1] - 4_000_000)
    with Store.open(db) as st:
        at = assess_store(st, now=before)
    assert at.interval is not None and at.interval.status == "synchronized", at.interval
    assert max(s.age_s or 0 for s in at.servers) >= 0  # ages count back from `before`, never negative


def _state(anchor_rt: int, anchor_bt: int, *, has_interval: bool = True) -> ClockState:
    return ClockState(anchor_rt, anchor_bt, -50_000, 50_000, 0.0, 200.0, 1.0, 300.0, 14_400.0, 1_000_000,
                      anchor_unknown=not has_interval, has_interval=has_interval)


def test_publishing_never_rolls_readers_back_to_an_earlier_state(tmp_path: Path) -> None:
    """A slow publisher (read the clocks, then lost the CPU) must not replace the state a faster one
    published from a later reading, least of all with no interval; a later state replaces it."""
    db = tmp_path / "p.db"
    _three_fresh(db)
    path = state_path_for(db)
    rt, bt = read_now()
    publish(path, _state(rt, bt), boot_id())
    with Store.open(db) as st:
        assert publish_quietly(st, state=_state(rt - 5_000_000, bt - 5_000_000, has_interval=False)) is None
    reader = StateReader(path)
    try:
        got = reader.read()
        assert got is not None and got[1].anchor_boottime_ns == bt and got[1].has_interval
        with Store.open(db) as st:
            publish_quietly(st, Policy())  # assessed now: a later anchor replaces it
        got = reader.read()
        assert got is not None and got[1].anchor_boottime_ns > bt and got[1].has_interval
    finally:
        reader.close()
