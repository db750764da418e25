"""`startup`: wall time of ``timekit --help`` vs ``python -c pass`` (median of 5 runs each,
interleaved, after one discarded warm-up run each). The CLI must start well under 0.5 s.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.common import BenchResult, median, mono_s

RUNS = 5
TIMEOUT_S = 20.0
LIMIT_S = 0.5


def _timekit_argv() -> list[str]:
    """The installed console script next to this interpreter, else on PATH."""
    here = Path(sys.executable).with_name("timekit")
    exe = str(here) if here.exists() else shutil.which("timekit")
    if exe is None:
        raise RuntimeError("timekit console script not found (pip install -e .)")
    return [exe, "--help"]


def _time(argv: list[str]) -> float:
    """Wall time (s) of one subprocess run; raises if it fails."""
    t0 = mono_s()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT_S)
    dt = mono_s() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{argv} exited {r.returncode}: {r.stderr.decode(errors='replace')[-200:]}")
    return dt


def run(quick: bool, workdir: Path) -> BenchResult:
    """Run the startup benchmark (same size with `quick`: it takes ~2 s)."""
    res = BenchResult("startup")
    tk_argv = _timekit_argv()
    py_argv = [sys.executable, "-c", "pass"]
    _time(tk_argv)
    _time(py_argv)
    tk: list[float] = []
    py: list[float] = []
    for _ in range(RUNS):
        tk.append(_time(tk_argv))
        py.append(_time(py_argv))
    tk_med, py_med = median(tk), median(py)
    assert tk_med is not None and py_med is not None
    res.row("`timekit --help` wall time", "ms", tk_med * 1e3, "python -c pass", py_med * 1e3,
            f"median of {RUNS}")
    res.details = {"timekit_runs_s": tk, "python_runs_s": py, "argv": tk_argv, "limit_s": LIMIT_S}
    verdict = "OK" if tk_med < LIMIT_S else "TOO SLOW"
    res.notes.append(f"{verdict}: timekit --help median {tk_med * 1e3:.0f} ms (limit {LIMIT_S * 1e3:.0f} ms)")
    return res
