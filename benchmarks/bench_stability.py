"""`stability`: (1) ADEV/MDEV/TDEV with confidence intervals of 10^6 offsets, timekit against allantools
called directly on the same phase, time and peak memory; (2) the holdover interval on the lab: three
chronyd references (+20 ms, -30 ppm) sampled at 4 Hz, then silenced, and the interval of their
evidence at several ages under three growth models (measured stability; 15 ppm, RFC 5905's PHI;
the fixed 200 ppm), each scored against the lab's truth.

(1) timekit's figure is the whole `analysis.stability` path: the samples put on an even grid (burst and
jitter handling, the line taken out), overlapping ADEV, MDEV, TDEV, the noise type at every τ and
Greenhall's EDF intervals; the peer is allantools.oadev + mdev + tdev on the already even phase (no
intervals). The numpy bound the interval uses (`stability_bound`, what `check` pays) is timed beside.
"""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks.common import BenchResult, mono_s, realtime_ns, stopping
from timekit.analysis.interval import IntervalPolicy
from timekit.units import NS_PER_S

N_OFFSETS = 1_000_000
GROUP_OFFSET_S, GROUP_DRIFT_PPM = 0.020, -30.0
RATE_HZ = 4.0
EVIDENCE_S = {False: 60.0, True: 20.0}
AGES_S = {False: (5.0, 15.0, 30.0, 60.0), True: (5.0, 15.0)}


def _timed(fn, *args, **kw):  # type: ignore[no-untyped-def]
    """(result, seconds, peak MiB of Python/numpy allocations) of fn(*args): timed on its own, the memory
    from a second run under tracemalloc (which slows Python code several times)."""
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    dt = time.perf_counter() - t0
    tracemalloc.start()
    fn(*args, **kw)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, dt, peak


def _compute(res: BenchResult, n: int) -> None:
    import allantools

    from timekit.analysis.stability import deviations, octave_factors, phase_grid, stability_bound

    rng = np.random.default_rng(7)
    tau0 = 1.0
    t = (1_790_000_000 * NS_PER_S + np.round((np.arange(n) * tau0 + rng.uniform(-0.02, 0.02, n)) * NS_PER_S)
         ).astype(np.int64)
    phase = rng.normal(0, 20e-6, n) + np.cumsum(np.cumsum(rng.normal(0, 1e-10, n)))  # white PM + RW FM
    offsets = 0.02 + 30e-6 * np.arange(n) * tau0 + phase
    delays = rng.uniform(1e-4, 2e-4, n)

    def timekit_path():  # type: ignore[no-untyped-def]
        return deviations(phase_grid(t, offsets, delays))

    dev, tk_s, tk_mib = _timed(timekit_path)
    grid = phase_grid(t, offsets, delays)
    taus = octave_factors(len(grid.x_s)) * grid.tau0_s

    def allantools_path():  # type: ignore[no-untyped-def]
        r = 1.0 / grid.tau0_s
        return (allantools.oadev(grid.x_s, rate=r, data_type="phase", taus=taus),
                allantools.mdev(grid.x_s, rate=r, data_type="phase", taus=taus),
                allantools.tdev(grid.x_s, rate=r, data_type="phase", taus=taus))

    (ad, _md, _td), at_s, at_mib = _timed(allantools_path)
    bound, nb_s, nb_mib = _timed(stability_bound, grid)
    assert dev is not None and bound is not None
    same = float(np.max(np.abs(dev.adev / ad[1] - 1)))
    res.row(f"ADEV+MDEV+TDEV with CIs of {n:,} offsets", "s", tk_s, "allantools direct (no CIs)", at_s,
            f"{len(taus)} octave τ; timekit also grids, identifies noise, EDF intervals; max |rel diff| of "
            f"ADEV {same:.1e}")
    res.row("peak memory of the same", "MiB", tk_mib, "allantools direct", at_mib, "tracemalloc peak")
    res.row("numpy ADEV bound the interval uses", "s", nb_s, "allantools oadev", None,
            f"stability_bound on {n:,} points, peak {nb_mib:.0f} MiB (what check/now pay per server)")
    res.details["compute"] = {"n": n, "taus": taus.tolist(), "timekit_s": tk_s, "allantools_s": at_s,
                              "timekit_peak_mib": tk_mib, "allantools_peak_mib": at_mib, "bound_s": nb_s}


def _holdover(res: BenchResult, quick: bool, workdir: Path) -> None:
    from timekit.analysis.assessment import projected_interval
    from timekit.lab.manager import ChronySpec, reap, start_lab
    from timekit.pipeline.assess import read_now_with_kernel
    from timekit.store.database import Store
    from timekit.store.evidence import read_evidence

    refs_spec = tuple(ChronySpec(f"ref-{x}", GROUP_OFFSET_S, GROUP_DRIFT_PPM) for x in "abc")
    lab = start_lab(workdir / "stability-lab", chrony=refs_spec, good_ports=(), fault_kinds=(), detach=False)
    with stopping(lab):
        db = workdir / "stability.db"
        for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            p.unlink(missing_ok=True)
        Store.open(db).close()
        refs = [s.address for s in lab.servers]
        evidence_s = EVIDENCE_S[quick]
        subprocess.run([sys.executable, "-m", "timekit.cli", "sample", "ntp", *refs, "--count",
                        str(int(evidence_s * RATE_HZ)), "--interval", str(1 / RATE_HZ), "--db", str(db)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        for s in lab.servers:  # silenced: the evidence stops here
            reap(s.pid)
        models = {"stability": IntervalPolicy(), "15 ppm": IntervalPolicy(use_stability=False),
                  "200 ppm": IntervalPolicy(wander_ppm=200.0, use_stability=False)}
        t_silent = mono_s()
        points = []
        with Store.open(db, readonly=True) as st:
            for age in AGES_S[quick]:
                time.sleep(max(0.0, t_silent + age - mono_s()))
                now = read_now_with_kernel()
                ev = read_evidence(st, models["stability"], servers=refs, now=now)
                row: dict = {"age_s": age}
                for name, pol in models.items():
                    est = projected_interval(ev, pol, 0.0)  # the interval now, as `timekit now` gives it
                    assert est.earliest_ns is not None and est.latest_ns is not None, est.reason
                    truths = [now[0] + round(s.true_offset_at(now[0]) * NS_PER_S) for s in lab.servers]
                    row[name] = {"half_width_s": (est.latest_ns - est.earliest_ns) / 2 / NS_PER_S,
                                 "contains": all(est.earliest_ns <= x <= est.latest_ns for x in truths),
                                 "needed_s": max(abs(x - (est.earliest_ns + est.latest_ns) / 2)
                                                 for x in truths) / NS_PER_S}
                points.append(row)
    last = points[-1]
    at = f"{last['age_s']:g} s after {evidence_s:g} s of {RATE_HZ:g} Hz evidence from 3 chronyd"
    res.row("holdover half-width, measured stability", "us", last["stability"]["half_width_s"] * 1e6,
            "fixed 200 ppm", last["200 ppm"]["half_width_s"] * 1e6, at)
    res.row("holdover half-width, measured stability", "us", last["stability"]["half_width_s"] * 1e6,
            "15 ppm (PHI)", last["15 ppm"]["half_width_s"] * 1e6, at)
    first = points[0]
    res.row("holdover half-width, measured stability", "us", first["stability"]["half_width_s"] * 1e6,
            "15 ppm (PHI)", first["15 ppm"]["half_width_s"] * 1e6,
            f"{first['age_s']:g} s silent (within the τ measured)")
    held = {m: sum(p[m]["contains"] for p in points) for m in models}
    ages = ", ".join(f"{p['age_s']:g}" for p in points)
    res.row("intervals containing the truth", "%", 100.0 * held["stability"] / len(points), "fixed 200 ppm",
            100.0 * held["200 ppm"] / len(points), f"at {ages} s silent")
    res.details["holdover"] = {"points": points, "evidence_s": evidence_s, "t0_ns": realtime_ns()}


def run(quick: bool, workdir: Path) -> BenchResult:
    """Run the stability benchmark (~2.5 min, ~45 s with `quick`)."""
    res = BenchResult("stability")
    workdir.mkdir(parents=True, exist_ok=True)
    _compute(res, N_OFFSETS // (10 if quick else 1))
    _holdover(res, quick, workdir)
    return res
