"""Run every benchmark in turn and print a summary table: ``python -m benchmarks [--quick]``.

Results also go to ``benchmarks/results/latest.json`` (``latest-quick.json`` with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    bench_check,
    bench_daemon,
    bench_drift,
    bench_drift_lab,
    bench_fanout,
    bench_fleet,
    bench_interval,
    bench_now,
    bench_nts,
    bench_precision,
    bench_qps,
    bench_stability,
    bench_startup,
    bench_store,
    bench_sweep,
    bench_timeouts,
)
from benchmarks.common import BenchResult, Row, fmt, mono_s

BENCHMARKS: dict[str, Callable[[bool, Path], BenchResult]] = {
    "qps": bench_qps.run,
    "precision": bench_precision.run,
    "fanout": bench_fanout.run,
    "startup": bench_startup.run,
    "check": bench_check.run,
    "drift": bench_drift.run,
    "drift_lab": bench_drift_lab.run,
    "timeouts": bench_timeouts.run,
    "interval": bench_interval.run,
    "daemon": bench_daemon.run,
    "now": bench_now.run,
    "store": bench_store.run,
    "sweep": bench_sweep.run,
    "stability": bench_stability.run,
    "fleet": bench_fleet.run,
    "nts": bench_nts.run,
}
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _table(rows: list[Row]) -> str:
    """Fixed-width text table of summary rows (ratio = timekit / peer)."""
    head = ("bench", "metric", "unit", "timekit", "peer", "peer value", "ratio tk/peer", "note")
    body = [(r.bench, r.metric, r.unit, fmt(r.timekit), r.peer_name, fmt(r.peer),
             "-" if r.ratio is None else f"{r.ratio:.3g}", r.note) for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    num = {3, 5, 6}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in num else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def _host() -> dict[str, Any]:
    """Machine facts worth quoting next to the figures."""
    chronyd = shutil.which("chronyd") or "/usr/sbin/chronyd"
    try:
        version = subprocess.run([chronyd, "--version"], capture_output=True, text=True,
                                 timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        version = None
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
            "machine": platform.machine(), "chronyd": version}


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the selected benchmarks, print and save results; exit 1 on any failure."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short run (~1 min instead of ~2)")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    ap.add_argument("--json", type=Path, help="where to write results (default benchmarks/results/)")
    args = ap.parse_args(argv)

    names = args.only or list(BENCHMARKS)
    results: list[BenchResult] = []
    t_all = mono_s()
    workdir = Path(tempfile.mkdtemp(prefix="timekit-bench-"))
    try:
        for name in names:
            print(f"== {name} ...", flush=True)
            t0 = mono_s()
            try:
                res = BENCHMARKS[name](args.quick, workdir)
            except Exception as exc:  # one broken benchmark must not hide the others
                res = BenchResult(name, error=f"{type(exc).__name__}: {exc}")
                traceback.print_exc()
            res.elapsed_s = mono_s() - t0
            results.append(res)
            if res.rows:
                print(_table(res.rows))
            for note in res.notes:
                print(f"   note: {note}")
            if res.error:
                print(f"   FAILED: {res.error}")
            print(f"   ({res.elapsed_s:.1f} s)", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    total_s = mono_s() - t_all

    rows = [r for res in results for r in res.rows]
    print()
    print(f"SUMMARY ({'quick' if args.quick else 'full'} run, {total_s:.1f} s, "
          f"{os.cpu_count()} CPUs; ratio = timekit / peer, same run)")
    print(_table(rows))
    failed = [r.name for r in results if r.error]
    if failed:
        print("FAILED: " + ", ".join(failed))

    out = args.json or RESULTS_DIR / ("latest-quick.json" if args.quick else "latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"generated_utc": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
           "total_s": total_s, "host": _host(), "command": " ".join([sys.executable, "-m", "benchmarks",
                                                                     *(argv or sys.argv[1:])]),
           "summary": [r.to_dict() for r in rows], "benchmarks": {r.name: r.to_dict() for r in results}}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(out)
    print(f"results: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
