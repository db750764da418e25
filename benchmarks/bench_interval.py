"""`interval`: TrueTime interval width and coverage on the live lab, timekit vs ClockBound-from-chrony.

Setup (loopback only): three chronyd servers under libfaketime that agree (+20 ms, server drift
−30 ppm, so this host drifts +30 ppm against them; each anchored at its own exec, so their clocks
differ by 30 ppm × the start gap, ~15 µs). Over the same period (40 s, 15 s with --quick):

- timekit samples all three at 4 Hz into a temporary store (background thread, `sample_ntp` with
  a budget) while the main thread computes `assess_store(store, IntervalPolicy(), now)` as
  often as it can (1 ms pause between checks so the sampler gets the GIL);
- chronyd runs as a client of `grp-a` (poll −2: 4 Hz) and a thread reads `chronyc tracking` every
  0.25 s. From the newest reading, at each check instant ``t``, the peer's interval is AWS
  ClockBound's (clock-bound-d `extract_bound_from_tracking` + clock-bound-shm `compute_bound_at`)::

      bound(t)  = root_dispersion + root_delay / 2 + CLOCKBOUND_MAX_DRIFT_PPM · (t − t_a)
      centre(t) = t + system_time − frequency · (t − t_read)

  ``t_a``/``t_b`` = CLOCK_REALTIME right before/after chronyc, ``t_read`` = their midpoint; chrony's
  root dispersion already grows (at skew + |residual freq| + maxclockerror, default 1 ppm) up to the
  instant of the reading. ClockBound's third term, ``|current_correction|`` (chrony's system_time),
  is left out because the interval is centred on chrony's estimate of true time instead of the raw
  clock: the chronyd client runs with ``-x`` (never disciplines the clock), so ``system_time`` is the
  whole +20 ms offset and a literal ClockBound would be ≈ 20 ms wide (reported in details as
  ``clockbound_literal``). The centre extrapolates with chrony's frequency as a disciplined clock
  would run. Signs (see bench_precision): ``system_time`` = NTP − local (our offset sign),
  ``frequency`` > 0 = local fast (our drift sign), so the offset moves at −frequency.
  ``CLOCKBOUND_MAX_DRIFT_PPM`` = 50, the clock-bound-d README's ``--max-drift-rate 50``. That README
  also asks for ``maxclockerror 50`` in chrony.conf; the lab client keeps chrony's default (1 ppm),
  which only affects how fast root dispersion grows between chrony's 0.25 s updates.

Truth at each check: every server's true time at ``as_of_ns`` (``as_of + round(true_offset·1e9)``).
Coverage counts checks after a warm-up (the first samples and chrony's first update), over every
server's truth ("all") and over the tracked server's ("grp-a"). The naive bound is timekit's
``naive_uncertainty_s``: |offset| + root distance of the best newest sample (≈ 20 ms here).
timekit's default policy assumes max_drift_ppm = 200 (Spanner's figure); every 4th check also computes
the interval at ClockBound's 50 ppm (same instant, not timed) for a like-for-like width.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BenchResult, median, mono_s, realtime_ns, stopping
from timekit.address import parse_server
from timekit.analysis.assessment import Policy
from timekit.analysis.interval import IntervalPolicy
from timekit.collectors.ntp_client import QueryPlan
from timekit.lab.chrony import ChronyClient
from timekit.lab.manager import ChronySpec, Lab, LabServer, start_lab
from timekit.pipeline.assess import assess_store, read_now_with_kernel
from timekit.pipeline.sampling import sample_ntp
from timekit.samples import NtpSample
from timekit.store.database import Store
from timekit.units import NS_PER_S, PPM

GROUP_OFFSET_S = 0.020  # every server is 20 ms ahead of this host...
GROUP_SERVER_DRIFT_PPM = -30.0  # ...and runs 30 ppm slow (this host's drift_ppm against them: +30)
SERVER_NAMES = ("grp-a", "grp-b", "grp-c")
TRACKED = "grp-a"  # the chronyd client's one source
SAMPLE_INTERVAL_S = 0.25  # timekit: 4 Hz per server
SAMPLE_TIMEOUT_S = 0.5
PEER_READ_INTERVAL_S = 0.25  # chronyc tracking every 0.25 s
CHRONY_POLL = -2  # log2 s: the chronyd client polls at 4 Hz
CLOCKBOUND_MAX_DRIFT_PPM = 50.0  # clock-bound-d README: `clockbound --max-drift-rate 50`
WARMUP_S = 3.0  # checks before this (since sampling started) are reported apart
CHECK_PAUSE_S = 0.001  # between checks: lets the sampler thread run
DURATION_S = {True: 15.0, False: 40.0}
JOIN_TIMEOUT_S = 10.0
ALT_EVERY = 4  # every 4th check also computes timekit's interval at ClockBound's max drift (not timed)
MAX_MISSES_LISTED = 40
PERCENTILES = (1, 5, 50, 95, 99)


class _Stop(Exception):
    """Raised from the sampler's callback to end `sample_ntp` early (error path)."""


@dataclass
class Reading:
    """One `chronyc tracking` read: realtime ns right before/after, and chrony's numbers."""

    t_a_ns: int
    t_b_ns: int
    tracking: dict[str, Any]

    @property
    def t_read_ns(self) -> int:
        return (self.t_a_ns + self.t_b_ns) // 2

    def clockbound_at(self, t_ns: int) -> tuple[int, int, float]:
        """(earliest_ns, latest_ns, bound_s) of ClockBound-from-chrony at local realtime `t_ns`."""
        tr = self.tracking
        grow_s = max(0.0, (t_ns - self.t_a_ns) / NS_PER_S)
        bound_s = tr["root_dispersion_s"] + tr["root_delay_s"] / 2 + CLOCKBOUND_MAX_DRIFT_PPM * PPM * grow_s
        since_s = (t_ns - self.t_read_ns) / NS_PER_S
        centre_ns = t_ns + round((tr["system_time_s"] - tr["frequency_ppm"] * PPM * since_s) * NS_PER_S)
        half_ns = int(np.ceil(bound_s * NS_PER_S))
        return centre_ns - half_ns, centre_ns + half_ns, bound_s

    @property
    def synchronized(self) -> bool:
        return self.tracking.get("leap_status") == "Normal"


@dataclass
class Check:
    """One interval computation and the truth at its instant (both intervals: None = none given)."""

    t_s: float  # since sampling started
    as_of_ns: int
    cost_s: float
    status: str
    tk: tuple[int, int] | None
    naive_s: float | None
    truth_ns: dict[str, int]
    peer: tuple[int, int] | None
    peer_status: str
    peer_age_s: float | None
    reading: Reading | None = None
    tk_alt: tuple[int, int] | None = None  # timekit with max_drift_ppm = ClockBound's (every ALT_EVERY-th)


@dataclass
class _Workers:
    """The sampler and chronyc-reader threads; `stop()` ends both (idempotent)."""

    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=JOIN_TIMEOUT_S)
        alive = [t.name for t in self.threads if t.is_alive()]
        self.threads = [t for t in self.threads if t.is_alive()]  # a second stop() reports only these
        if alive:
            self.errors.append(f"threads still running after {JOIN_TIMEOUT_S:g} s: {alive}")


def _pct(xs: list[float]) -> dict[str, float] | None:
    """Percentiles (and min/max/mean) of `xs`, or None for no data."""
    if not xs:
        return None
    a = np.asarray(xs, dtype=np.float64)
    out = {f"p{p}": float(np.percentile(a, p)) for p in PERCENTILES}
    out.update(min=float(a.min()), max=float(a.max()), mean=float(a.mean()), n=int(a.size))
    return out


def _contains(iv: tuple[int, int] | None, t_ns: int) -> bool:
    return iv is not None and iv[0] <= t_ns <= iv[1]


def _miss(iv: tuple[int, int], t_ns: int) -> tuple[str, float]:
    """('early'/'late', µs outside): truth before earliest / after latest."""
    return ("early", (iv[0] - t_ns) / 1e3) if t_ns < iv[0] else ("late", (t_ns - iv[1]) / 1e3)


def _slack_us(iv: tuple[int, int] | None, truths: list[int]) -> float | None:
    """Smallest distance (µs) from any truth to the nearer edge; negative = outside."""
    if iv is None:
        return None
    return min(min(t - iv[0], iv[1] - t) for t in truths) / 1e3


def _sampler(db: Path, lab: Lab, duration_s: float, w: _Workers, samples: list[NtpSample]) -> None:
    """timekit's 4 Hz sampling of every lab server into the store, until the budget or `w.stop()`."""
    def on_sample(sample: NtpSample) -> None:
        samples.append(sample)
        if w.stop_event.is_set():
            raise _Stop  # committed already: emit() stores before calling back

    try:
        with Store.open(db) as st:
            plan = QueryPlan(count=int(duration_s / SAMPLE_INTERVAL_S) + 8, interval_s=SAMPLE_INTERVAL_S,
                             timeout_s=SAMPLE_TIMEOUT_S)
            targets = [parse_server(s.address) for s in lab.servers]
            sample_ntp(st, targets, plan, budget_s=duration_s + 0.5, on_sample=on_sample,
                       command="bench interval")
    except Exception as exc:  # reported by run(); the thread must not die silently
        if not (w.stop_event.is_set() and isinstance(exc, _Stop | ExceptionGroup)):
            w.errors.append(f"sampler: {type(exc).__name__}: {exc}")


def _peer_reader(cli: ChronyClient, deadline_mono: float, w: _Workers, readings: list[Reading],
                 latest: list[Reading]) -> None:
    next_t = mono_s()
    failures = 0
    while not w.stop_event.is_set() and mono_s() < deadline_mono:
        t_a = realtime_ns()
        try:
            tr = cli.tracking()
        except Exception as exc:  # a failed chronyc read is counted, the peer keeps its last reading
            failures += 1
            if failures <= 3:
                w.errors.append(f"chronyc tracking: {type(exc).__name__}: {exc}")
            tr = None
        t_b = realtime_ns()
        if tr is not None:
            r = Reading(t_a, t_b, tr)
            readings.append(r)
            latest[:] = [r]
        next_t += PEER_READ_INTERVAL_S
        w.stop_event.wait(max(0.0, next_t - mono_s()))


def _measure(workdir: Path, duration_s: float, res: BenchResult
             ) -> tuple[list[Check], list[Reading], list[NtpSample], float, Lab]:
    """Run the lab, both clients and the check loop.

    Returns (checks, chronyc readings, timekit's samples, loop wall s, the (stopped) lab for its truth).
    """
    specs = tuple(ChronySpec(n, GROUP_OFFSET_S, GROUP_SERVER_DRIFT_PPM) for n in SERVER_NAMES)
    lab = start_lab(workdir / "interval-lab", chrony=specs, good_ports=(), fault_kinds=(), detach=False)
    with stopping(lab):
        cli = ChronyClient.start(int(lab.server(TRACKED).address.rsplit(":", 1)[1]),
                                 workdir / "interval-client", poll=CHRONY_POLL)
        w = _Workers()
        with stopping(cli, w):
            db = workdir / "interval.db"
            for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                p.unlink(missing_ok=True)
            Store.open(db).close()
            readings: list[Reading] = []
            latest: list[Reading] = []
            samples: list[NtpSample] = []
            t0_ns, t0_mono = realtime_ns(), mono_s()
            w.threads = [
                threading.Thread(target=_sampler, args=(db, lab, duration_s, w, samples), daemon=True,
                                 name="interval-sampler"),
                threading.Thread(target=_peer_reader, args=(cli, t0_mono + duration_s, w, readings, latest),
                                 daemon=True, name="interval-chronyc"),
            ]
            for t in w.threads:
                t.start()
            checks = _check_loop(lab, db, t0_ns, t0_mono + duration_s, latest)
            loop_s = mono_s() - t0_mono
            w.stop()
            if w.errors:
                res.notes.extend(w.errors)
            if any(e.startswith("sampler") for e in w.errors):
                raise RuntimeError(w.errors[0])
    return checks, readings, samples, loop_s, lab



def _check_loop(lab: Lab, db: Path, t0_ns: int, deadline_mono: float, latest: list[Reading]) -> list[Check]:
    """Compute `assess_store` until the deadline; record truth and the peer's interval each time."""
    policy = IntervalPolicy()
    alt_policy = IntervalPolicy(max_drift_ppm=CLOCKBOUND_MAX_DRIFT_PPM)
    servers = [lab.server(n) for n in SERVER_NAMES]
    checks: list[Check] = []
    with Store.open(db) as st:
        while mono_s() < deadline_mono:
            now = read_now_with_kernel()  # the kernel's slews since the evidence are followed
            c0 = time.perf_counter()
            est = assess_store(st, Policy(interval=policy), now=now).interval
            cost = time.perf_counter() - c0
            as_of = est.as_of_ns
            truth = {s.name: as_of + round(s.true_offset_at(as_of) * NS_PER_S) for s in servers}
            tk = None
            if est.earliest_ns is not None and est.latest_ns is not None:
                tk = (est.earliest_ns, est.latest_ns)
            peer, peer_status, peer_age = None, "no_reading", None
            r = latest[0] if latest else None
            if r is not None:
                lo, hi, _ = r.clockbound_at(as_of)
                peer, peer_age = (lo, hi), (as_of - r.t_a_ns) / NS_PER_S
                peer_status = "synchronized" if r.synchronized else f"chrony:{r.tracking.get('leap_status')}"
            alt = None
            if len(checks) % ALT_EVERY == 0:
                e2 = assess_store(st, Policy(interval=alt_policy), now=now).interval
                if e2.earliest_ns is not None and e2.latest_ns is not None:
                    alt = (e2.earliest_ns, e2.latest_ns)
            checks.append(Check((as_of - t0_ns) / NS_PER_S, as_of, cost, est.status, tk,
                                est.naive_uncertainty_s, truth, peer, peer_status, peer_age, r, alt))
            time.sleep(CHECK_PAUSE_S)
    return checks


def _side(checks: list[Check], which: str) -> dict[str, Any]:
    """Coverage, widths, slack, centre error and misses of one side ('timekit' or 'clockbound')."""
    pick = {"timekit": lambda c: c.tk, "clockbound": lambda c: c.peer,
            "timekit_alt": lambda c: c.tk_alt}[which]
    if which == "timekit_alt":
        checks = [c for c in checks if c.tk_alt is not None]
    ivs = [(c, pick(c)) for c in checks]
    n = len(ivs)
    cov_all = sum(1 for c, iv in ivs if all(_contains(iv, t) for t in c.truth_ns.values()))
    cov_tracked = sum(1 for c, iv in ivs if _contains(iv, c.truth_ns[TRACKED]))
    half_us = [(iv[1] - iv[0]) / 2e3 for _, iv in ivs if iv is not None]
    centre_err_us = [((iv[0] + iv[1]) / 2 - c.truth_ns[TRACKED]) / 1e3 for c, iv in ivs if iv is not None]
    slack = [s for c, iv in ivs if (s := _slack_us(iv, list(c.truth_ns.values()))) is not None]
    misses: list[dict[str, Any]] = []
    for c, iv in ivs:
        for name, t in c.truth_ns.items():
            if iv is None:
                misses.append({"t_s": round(c.t_s, 3), "server": name, "side": "no_interval", "by_us": None})
            elif not _contains(iv, t):
                side, by = _miss(iv, t)
                misses.append({"t_s": round(c.t_s, 3), "server": name, "side": side, "by_us": round(by, 3)})
    return {
        "n_checks": n,
        "coverage_all_pct": 100.0 * cov_all / n if n else None,
        "coverage_tracked_pct": 100.0 * cov_tracked / n if n else None,
        "half_width_us": _pct(half_us),
        "centre_error_vs_tracked_us": _pct(centre_err_us),
        "slack_us": _pct(slack),
        "n_misses": len(misses),
        "n_checks_missing": n - cov_all,
        "misses": misses[:MAX_MISSES_LISTED],
        "worst_miss_us": max((m["by_us"] for m in misses if m["by_us"] is not None), default=None),
    }


def _statuses(xs: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in xs:
        out[x] = out.get(x, 0) + 1
    return out


def _readings_summary(readings: list[Reading], tracked: LabServer) -> dict[str, Any]:
    """chronyc tracking over the run: its numbers and its own centre error at the read instant."""
    sync = [r for r in readings if r.synchronized]
    err = [(r.tracking["system_time_s"] - tracked.true_offset_at(r.t_read_ns)) * 1e6 for r in sync]
    return {
        "n_readings": len(readings), "n_synchronized": len(sync),
        "first_synchronized_s": None if not sync else (sync[0].t_read_ns - readings[0].t_a_ns) / NS_PER_S,
        "chronyc_call_ms": _pct([(r.t_b_ns - r.t_a_ns) / 1e6 for r in readings]),
        "root_delay_us": _pct([r.tracking["root_delay_s"] * 1e6 for r in sync]),
        "root_dispersion_us": _pct([r.tracking["root_dispersion_s"] * 1e6 for r in sync]),
        "system_time_error_at_read_us": _pct(err),
        "frequency_ppm_last": sync[-1].tracking["frequency_ppm"] if sync else None,
        "last_tracking": readings[-1].tracking if readings else None,
    }


def _samples_summary(samples: list[NtpSample], lab: Lab) -> dict[str, Any]:
    """Per server: timekit's ok/failed samples, delay percentiles (µs), offset error vs truth (µs)."""
    out: dict[str, Any] = {}
    for srv in lab.servers:
        mine = [s for s in samples if s.server == srv.address]
        ok = [s for s in mine if s.ok and s.offset_s is not None and s.delay_s is not None]
        out[srv.name] = {
            "n_ok": len(ok), "n_failed": len(mine) - len(ok),
            "delay_us": _pct([s.delay_s * 1e6 for s in ok if s.delay_s is not None]),
            "offset_error_us": _pct([(s.offset_s - srv.true_offset_at(s.t_local_ns)) * 1e6
                                     for s in ok if s.offset_s is not None]),
        }
    return out


def _literal_clockbound(checks: list[Check]) -> dict[str, Any]:
    """ClockBound applied as-is to the undisciplined (-x) clock: centre = local t, + |system_time|."""
    n = cov = 0
    half_us: list[float] = []
    for c in checks:
        if c.reading is None:
            continue
        _, _, bound_s = c.reading.clockbound_at(c.as_of_ns)
        half_ns = int(np.ceil((bound_s + abs(c.reading.tracking["system_time_s"])) * NS_PER_S))
        iv = (c.as_of_ns - half_ns, c.as_of_ns + half_ns)
        n += 1
        cov += all(_contains(iv, t) for t in c.truth_ns.values())
        half_us.append(half_ns / 1e3)
    return {"coverage_all_pct": 100.0 * cov / n if n else None, "half_width_us": _pct(half_us)}


def run(quick: bool, workdir: Path) -> BenchResult:
    """Run the interval benchmark (~40 s of checks, 15 s with `quick`, plus lab start/stop)."""
    res = BenchResult("interval")
    duration_s = DURATION_S[quick]
    workdir.mkdir(parents=True, exist_ok=True)
    checks, readings, samples, loop_s, lab = _measure(workdir, duration_s, res)
    scored = [c for c in checks if c.t_s >= WARMUP_S]
    warm = [c for c in checks if c.t_s < WARMUP_S]
    tk, cb, alt = _side(scored, "timekit"), _side(scored, "clockbound"), _side(scored, "timekit_alt")
    costs_ms = [c.cost_s * 1e3 for c in checks]
    naive_us = [c.naive_s * 1e6 for c in scored if c.naive_s is not None]
    chrony = _readings_summary(readings, lab.server(TRACKED))
    res.details = {
        "duration_s": duration_s, "loop_wall_s": loop_s, "warmup_s": WARMUP_S,
        "servers": {"names": list(SERVER_NAMES), "offset_s": GROUP_OFFSET_S,
                    "server_drift_ppm": GROUP_SERVER_DRIFT_PPM, "tracked_by_chronyd": TRACKED},
        "n_checks": len(checks), "n_checks_scored": len(scored), "n_samples": len(samples),
        "timekit": tk, "clockbound_from_chrony": cb,
        f"timekit_max_drift_{CLOCKBOUND_MAX_DRIFT_PPM:g}ppm": alt,
        "timekit_samples": _samples_summary(samples, lab),
        "timekit_status": _statuses([c.status for c in scored]),
        "clockbound_status": _statuses([c.peer_status for c in scored]),
        "warmup": {"timekit_status": _statuses([c.status for c in warm]),
                   "clockbound_status": _statuses([c.peer_status for c in warm]),
                   "timekit": _side(warm, "timekit") if warm else None,
                   "clockbound": _side(warm, "clockbound") if warm else None},
        "naive_half_width_us": _pct(naive_us),
        "clockbound_reading_age_s": _pct([c.peer_age_s for c in scored if c.peer_age_s is not None]),
        "truth_spread_between_servers_us": _pct(
            [(max(c.truth_ns.values()) - min(c.truth_ns.values())) / 1e3 for c in scored]),
        "assess_store_ms": _pct(costs_ms),
        "chronyd": chrony,
        "clockbound_literal": _literal_clockbound(scored),
        "clockbound_model": {"max_drift_ppm": CLOCKBOUND_MAX_DRIFT_PPM,
                             "bound": "root_dispersion + root_delay/2 + max_drift*(t - t_a)",
                             "centre": "t + system_time - frequency*(t - t_read)"},
    }

    def v(d: dict[str, Any] | None, k: str) -> float | None:
        return None if d is None else d[k]

    res.row("coverage, every server's truth", "%", tk["coverage_all_pct"], "ClockBound(chrony)",
            cb["coverage_all_pct"], f"{len(scored)} checks after {WARMUP_S:g} s warm-up; missed: timekit "
            f"{tk['n_checks_missing']}, ClockBound {cb['n_checks_missing']}")
    res.row(f"coverage, {TRACKED}'s truth", "%", tk["coverage_tracked_pct"], "ClockBound(chrony)",
            cb["coverage_tracked_pct"], "the server chronyd tracks")
    res.row("median half-width", "us", v(tk["half_width_us"], "p50"), "ClockBound(chrony)",
            v(cb["half_width_us"], "p50"))
    res.row("p99 half-width", "us", v(tk["half_width_us"], "p99"), "ClockBound(chrony)",
            v(cb["half_width_us"], "p99"))
    res.row(f"median half-width, timekit at {CLOCKBOUND_MAX_DRIFT_PPM:g} ppm", "us",
            v(alt["half_width_us"], "p50"), "ClockBound(chrony)", v(cb["half_width_us"], "p50"),
            f"same max drift as ClockBound; every {ALT_EVERY}th check; coverage {alt['coverage_all_pct']}%")
    res.row("median half-width", "us", v(tk["half_width_us"], "p50"), "naive",
            median(naive_us), "|offset| + root distance, newest sample")
    res.row("assess_store cost, median", "ms", median(costs_ms), "chronyc tracking",
            v(chrony["chronyc_call_ms"], "p50"), "peer: one chronyc tracking read (ClockBound's poll)")
    res.row("checks per second", "1/s", len(checks) / loop_s if loop_s > 0 else None, "-", None,
            f"{CHECK_PAUSE_S * 1e3:g} ms pause between checks")
    spread = v(res.details["truth_spread_between_servers_us"], "p50")
    res.notes.append(
        f"misses: timekit {tk['n_checks_missing']} of {tk['n_checks']} checks "
        f"(worst {tk['worst_miss_us']} us), "
        f"ClockBound(chrony) {cb['n_checks_missing']} (worst {cb['worst_miss_us']} us); the 3 servers' "
        f"truths differ by {spread} us (30 ppm x start gaps)")
    res.notes.append(f"closest truth to an edge: timekit {v(tk['slack_us'], 'min')} us, ClockBound(chrony) "
                     f"{v(cb['slack_us'], 'min')} us (negative = outside)")
    res.notes.append(f"{len(samples)} samples stored, {len(readings)} chronyc readings, {len(checks)} checks "
                     f"over {loop_s:.1f} s")
    return res
