"""`timekit export csv` and `timekit report` through the real CLI, on real lab samples in SQLite."""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import clock_filter_expected, run_cli
from tests.test_cli import assert_one_clean_line
from timekit.lab.manager import Lab
from timekit.outputs.export_csv import INJECTION_PREFIXES, csv_cell, float_text
from timekit.samples import NtpSample
from timekit.store.database import PAUSE_COLUMNS, Store

SAMPLED = ("chrony-ahead", "chrony-behind", "jittery", "lossy", "refid_weird")
NS_COLUMNS = [c for c in NtpSample.column_names() if c.endswith("_ns")]
ULP = 2.0**-52  # relative spacing of doubles
PANDAS_RTOL = 2 * ULP  # pandas' default (fast) float parser is not correctly rounded: measured <= 1.52 ulp
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 10_000
MIN_PNG_W, MIN_PNG_H = 800, 500
C15_NS = 1_795_671_931_903_889_200  # FAULTS C15: a float64 cannot hold it (nearest: ...889_152)
LAB_SLACK_S = 20e-6  # the lab's own slack beyond NTP's delay/2 bound (clock reads, libfaketime arithmetic)
BIG_ROWS = 60_000  # with a 300-character detail: a ~25 MB CSV, long enough to kill mid-write


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


@pytest.fixture(scope="module")
def lab_db(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of 10 Hz samples of two chronyd servers and three fault-server ports, plus pause data."""
    db = tmp_path_factory.mktemp("export") / "tk.db"
    proc = run_cli("sample", "ntp", *(lab.server(n).address for n in SAMPLED), "--count", "30",
                   "--interval", "0.1", "--timeout", "0.3", "--json", db=db)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("sample", "pauses", "--duration", "1.0", "--interval", "0.25", db=db)
    assert proc.returncode == 0, proc.stderr
    return db


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store large enough that an export takes a while (for the kill and disk-full faults)."""
    db = tmp_path_factory.mktemp("big") / "big.db"
    t0 = C15_NS
    with Store.open(db) as st:
        st.add_ntp_samples(NtpSample("192.0.2.1:123", False, "timeout", t0 + i * 1_000_000, detail="x" * 300)
                           for i in range(BIG_ROWS))
    return db


# ----------------------------------------------------------------------------- cells
@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=50))
def test_float_cells_are_exact_and_pandas_reads_them_within_2_ulp(values: list[float]) -> None:
    cells = [float_text(v) for v in values]
    assert [float(c) for c in cells] == values  # the text is exact
    got = pd.read_csv(io.StringIO("x\n" + "\n".join(cells) + "\n"))["x"].to_numpy(dtype=float)
    want = np.array(values)
    np.testing.assert_allclose(got, want, rtol=PANDAS_RTOL, atol=np.finfo(float).smallest_subnormal * 4)


@given(st.text(max_size=20), st.integers(), st.floats(allow_nan=False))
def test_only_text_cells_get_the_injection_guard(text: str, number: int, real: float) -> None:
    cell = csv_cell(text)
    assert cell.startswith("'") == (text.startswith(INJECTION_PREFIXES) or text.startswith("'"))
    assert "\0" not in cell and cell.removeprefix("'" if text.startswith(INJECTION_PREFIXES) else "") == \
        text.replace("\0", "\\x00")
    assert csv_cell(number) == str(number) and float(csv_cell(real)) == real  # numbers: never guarded


# ----------------------------------------------------------------------------- CSV
def test_csv_round_trip_through_pandas_equals_store(lab: Lab, lab_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "samples.csv"
    proc = run_cli("export", "csv", "--out", str(out), "--json", db=lab_db)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    with Store.open(lab_db) as st:
        stored = st.ntp_samples()
    df = pd.read_csv(out)  # no options
    assert list(df.columns) == NtpSample.column_names() == doc["columns"]
    assert len(df) == len(stored) == doc["rows"] == 30 * len(SAMPLED)
    assert df["t_local_ns"].dtype == np.int64  # never empty: exact integers
    assert df["t_local_ns"].tolist() == [s.t_local_ns for s in stored]
    assert df["ok"].dtype == bool and df["ok"].tolist() == [s.ok for s in stored]
    assert df["server"].tolist() == [s.server for s in stored]
    ok = np.array([s.ok for s in stored])
    assert 0 < (~ok).sum() < len(stored)  # the lossy port lost some: empty cells are exercised
    for col in ("offset_s", "delay_s", "root_dispersion_s", "timeout_s"):
        want = np.array([np.nan if getattr(s, col) is None else getattr(s, col) for s in stored])
        np.testing.assert_allclose(df[col].to_numpy(dtype=float), want, rtol=PANDAS_RTOL, atol=0.0,
                                   equal_nan=True)
    assert df["offset_s"][~ok].isna().all() and (df["error"][~ok] == "timeout").all()
    assert df["error"][ok].isna().all()  # missing is an empty cell, read as NaN
    # the text itself is exact: every ns column and every float (pandas makes float64 of integer
    # columns with empty cells, README)
    rows = _rows(out)
    header = rows[0]
    floats = [c for c in NtpSample.column_names() if c.endswith("_s")]
    for row, s in zip(rows[1:], stored, strict=True):
        for col in NS_COLUMNS:
            cell, value = row[header.index(col)], getattr(s, col)
            assert (cell == "") if value is None else (int(cell) == value), (col, cell, value)
        for col in floats:
            cell, value = row[header.index(col)], getattr(s, col)
            assert (cell == "") if value is None else (float(cell) == value), (col, cell, value)
    exact = pd.read_csv(out, dtype={c: "Int64" for c in NS_COLUMNS})  # the README's recipe
    for col in NS_COLUMNS:
        assert [None if v is pd.NA else v for v in exact[col]] == [getattr(s, col) for s in stored], col


def test_csv_ok_only_gives_exact_int64_instants_with_no_options(lab_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "ok.csv"
    assert run_cli("export", "csv", "--out", str(out), "--ok-only", db=lab_db).returncode == 0
    with Store.open(lab_db) as st:
        stored = st.ntp_samples(ok_only=True)
    df = pd.read_csv(out)  # no options
    assert len(df) == len(stored) and df["ok"].all()
    for col in ("t_local_ns", "t1_ns", "t2_ns", "t3_ns", "t4_ns", "rx_latency_ns", "tx_latency_ns",
                "boottime_ns"):
        assert df[col].dtype == np.int64, col  # complete, so exact
        assert df[col].tolist() == [getattr(s, col) for s in stored], col


def test_csv_c15_nanosecond_instant_round_trips_exactly(tmp_path: Path) -> None:  # FAULTS C15
    db, out = tmp_path / "t.db", tmp_path / "c15.csv"
    assert int(float(C15_NS)) != C15_NS  # the trap: a float would lose 48 ns here
    with Store.open(db) as st:
        st.add_ntp_samples([NtpSample("192.0.2.1:123", True, None, C15_NS, 0.25, 0.001, 2, 0, 0.0, 0.0,
                                      t1_ns=C15_NS - 1_000_001, t2_ns=C15_NS + 249_999_999,
                                      t3_ns=C15_NS + 250_000_001, t4_ns=C15_NS)])
    assert run_cli("export", "csv", "--out", str(out), db=db).returncode == 0
    df = pd.read_csv(out)
    assert df["t_local_ns"].dtype == np.int64 and int(df["t_local_ns"][0]) == C15_NS
    assert int(df["t1_ns"][0]) == C15_NS - 1_000_001 and int(df["t2_ns"][0]) == C15_NS + 249_999_999
    assert bool(df["ok"][0]) is True and float(df["offset_s"][0]) == 0.25


def test_csv_filters_server_since_kind(lab: Lab, lab_db: Path, tmp_path: Path) -> None:
    a, b = lab.server("chrony-ahead").address, lab.server("jittery").address
    out = tmp_path / "f.csv"
    with Store.open(lab_db) as st:
        stored = st.ntp_samples()
        pauses = st.pause_rows()
    # --server, repeatable
    proc = run_cli("export", "csv", "--out", str(out), "--server", a, "--server", b, db=lab_db)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out)
    assert sorted(set(df["server"])) == sorted([a, b]) and len(df) == 60
    # --since: relative to the CLI's own clock, so bracket the call with two readings
    t = np.array(sorted(s.t_local_ns for s in stored))
    cut = int(t[len(t) // 2])
    before = time.clock_gettime_ns(time.CLOCK_REALTIME)
    since_s = (before - cut) / 1e9
    proc = run_cli("export", "csv", "--out", str(out), "--since", f"{since_s:.6f}s", "--json", db=lab_db)
    after = time.clock_gettime_ns(time.CLOCK_REALTIME)
    assert proc.returncode == 0, proc.stderr
    n = json.loads(proc.stdout)["rows"]
    lo_cut, hi_cut = cut - 1_000, cut + (after - before) + 1_000  # 1 µs: the duration's rounding
    assert (t >= hi_cut).sum() <= n <= (t >= lo_cut).sum() and n < len(t)
    assert (pd.read_csv(out)["t_local_ns"] >= lo_cut).all()
    # nothing that recent: a header-only file pandas still reads
    assert run_cli("export", "csv", "--out", str(out), "--since", "1ms", db=lab_db).returncode == 0
    empty = pd.read_csv(out)
    assert len(empty) == 0 and list(empty.columns) == NtpSample.column_names()
    # --kind pauses: the pause meter's rows, ns exact
    assert run_cli("export", "csv", "--out", str(out), "--kind", "pauses", db=lab_db).returncode == 0
    dfp = pd.read_csv(out)
    assert list(dfp.columns) == PAUSE_COLUMNS and len(dfp) == len(pauses) >= 3
    assert dfp["t_local_ns"].tolist() == [p["t_local_ns"] for p in pauses]
    np.testing.assert_allclose(dfp["p99_s"], [p["p99_s"] for p in pauses], rtol=PANDAS_RTOL, atol=0.0)
    for kind, first in (("clocks", "t_local_ns"), ("events", "t_local_ns")):
        assert run_cli("export", "csv", "--out", str(out), "--kind", kind, db=lab_db).returncode == 0
        assert pd.read_csv(out).columns[0] == first


@pytest.mark.parametrize("args,needle", [
    (["--kind", "bogus"], "unknown kind 'bogus'"),
    (["--kind", "pauses", "--server", "127.0.0.1:123"], "apply to --kind ntp only"),
])
def test_csv_bad_options_one_line_no_file(lab_db: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "x.csv"
    proc = run_cli("export", "csv", "--out", str(out), *args, db=lab_db)
    assert proc.returncode == 2
    assert_one_clean_line(proc, needle)
    assert not out.exists() and _temps(tmp_path) == []


def test_csv_injection_guard_on_text_not_numbers(lab: Lab, lab_db: Path, tmp_path: Path) -> None:  # S12
    out = tmp_path / "inj.csv"
    assert run_cli("export", "csv", "--out", str(out), db=lab_db).returncode == 0
    rows = _rows(out)
    h = rows[0]
    weird = lab.server("refid_weird").address
    behind = lab.server("chrony-behind").address
    refids = {r[h.index("refid")] for r in rows[1:] if r[h.index("server")] == weird}
    assert refids and all(r.startswith("'=") for r in refids), refids  # the server sent refid "=cm\xff"
    # numbers untouched: negative offsets are not quoted, and each is the lab's truth at its instant
    # within NTP's own bound (delay/2, plus the lab's slack)
    behind_rows = [r for r in rows[1:] if r[h.index("server")] == behind and r[h.index("ok")] == "true"]
    assert behind_rows
    for r in behind_rows:
        offset, delay = r[h.index("offset_s")], float(r[h.index("delay_s")])
        truth = lab.server("chrony-behind").true_offset_at(int(r[h.index("t_local_ns")]))
        assert offset.startswith("-") and abs(float(offset) - truth) <= delay / 2 + LAB_SLACK_S, offset
    assert pd.read_csv(out)["offset_s"].dtype == np.float64

    # every dangerous first character, in a text column and in the server column
    texts = ["=HYPERLINK(\"http://x\")", "+1+2", "-1+2", "@SUM(A1)", "\tcmd", "\rcmd", "\0cmd", "ok=text"]
    db = tmp_path / "inj.db"
    with Store.open(db) as st:
        st.add_ntp_samples(NtpSample(f"={i}" if i == 0 else "host:123", False, "malformed", C15_NS + i,
                                     detail=text, delay_s=-0.5) for i, text in enumerate(texts))
    assert run_cli("export", "csv", "--out", str(out), db=db).returncode == 0
    rows = _rows(out)
    h = rows[0]
    assert len(rows) == 1 + len(texts)  # a CR in a cell did not split a row
    details = [r[h.index("detail")] for r in rows[1:]]
    want = ["'" + t.replace("\0", "\\x00") for t in texts[:-1]] + ["ok=text"]
    assert details == want
    assert rows[1][h.index("server")] == "'=0"
    assert all(r[h.index("delay_s")] == "-0.5" for r in rows[1:])
    df = pd.read_csv(out)
    assert df["detail"].tolist() == want and (df["delay_s"] == -0.5).all()


def test_csv_failed_export_keeps_previous_file(big_db: Path, tmp_path: Path) -> None:  # S7, S9
    out = tmp_path / "out.csv"
    previous = "server,ok\nprevious,true\n"
    out.write_text(previous)
    # corrupt database: refused before anything is written
    bad = tmp_path / "corrupt.db"
    bad.write_bytes(b"SQLite format 3\x00" + b"\x01" * 500)
    proc = run_cli("export", "csv", "--out", str(out), db=bad)
    assert proc.returncode == 1
    assert_one_clean_line(proc, "corrupt.db")
    assert out.read_text() == previous and _temps(tmp_path) == []
    # the disk fills up halfway (a 2 MB file size limit; Python ignores SIGXFSZ, so writes get EFBIG)
    limit = 2 << 20

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = run_cli("export", "csv", "--out", str(out), db=big_db, preexec_fn=small_disk)
    assert proc.returncode == 1
    assert_one_clean_line(proc, "cannot write")
    assert out.read_text() == previous and _temps(tmp_path) == []
    # a database that does not exist is not created
    proc = run_cli("export", "csv", "--out", str(out), db=tmp_path / "missing.db")
    assert proc.returncode == 1 and not (tmp_path / "missing.db").exists()
    assert_one_clean_line(proc, "no database")
    # --out in a missing directory, or a directory
    for target, needle in ((tmp_path / "no" / "x.csv", "does not exist"), (tmp_path, "is a directory")):
        proc = run_cli("export", "csv", "--out", str(target), db=big_db)
        assert proc.returncode == 2
        assert_one_clean_line(proc, needle)


def test_csv_killed_export_keeps_previous_and_next_run_cleans(big_db: Path, tmp_path: Path) -> None:  # S11
    out = tmp_path / "out.csv"
    previous = "server,ok\nprevious,true\n"
    out.write_text(previous)
    proc = subprocess.Popen([sys.executable, "-m", "timekit.cli", "export", "csv", "--out", str(out),
                             "--db", str(big_db)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not any(os.path.getsize(tmp_path / n) > 0 for n in _temps(tmp_path)):
        assert proc.poll() is None and time.monotonic() < deadline, "export ended before it could be killed"
        time.sleep(0.002)
    proc.kill()  # SIGKILL mid-write: no handler runs
    proc.wait()
    leftover = _temps(tmp_path)
    assert len(leftover) == 1 and leftover[0].startswith(".out.csv.tmp-")
    assert out.read_text() == previous
    done = run_cli("export", "csv", "--out", str(out), "--json", db=big_db)
    assert done.returncode == 0, done.stderr
    assert _temps(tmp_path) == []  # the dead writer's temp file is gone
    assert json.loads(done.stdout)["rows"] == BIG_ROWS
    df = pd.read_csv(out)
    assert len(df) == BIG_ROWS and int(df["t_local_ns"].iloc[-1]) == C15_NS + (BIG_ROWS - 1) * 1_000_000


# ----------------------------------------------------------------------------- report
@pytest.fixture(scope="module")
def report(lab_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report") / "r"
    proc = run_cli("report", "--out", str(out), "--json", db=lab_db, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def _summary_rows(text: str) -> dict[str, list[str]]:
    """The rows of the summary's server table (its "## Servers" section), by server."""
    rows = {}
    section = text.split("## Servers", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and ":" in cells[0] and not cells[0].startswith("-"):
            rows[cells[0]] = cells
    return rows


def test_report_files_are_readable_pngs_linked_from_summary(lab: Lab, lab_db: Path,
                                                            report: tuple[Path, dict]) -> None:
    import matplotlib.image

    out, doc = report
    with Store.open(lab_db) as st:
        stored = st.ntp_samples()
    servers = sorted({s.server for s in stored if s.ok})
    slugs = [s.replace(":", "_") for s in servers]
    expected = {"summary.md", "offset.png", "rtt.png", "pauses.png", "samples.csv", "stability.png",
                *(f"drift-{x}.png" for x in slugs)}
    assert set(doc["files"]) == expected and doc["notes"] == []
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == expected
    summary = (out / "summary.md").read_text()
    for name in expected - {"summary.md"}:
        assert f"]({name})" in summary, name  # linked
        if name.endswith(".png"):
            data = (out / name).read_bytes()
            assert data[:8] == PNG_MAGIC and len(data) > MIN_PNG_BYTES, (name, len(data))
            h, w = matplotlib.image.imread(out / name).shape[:2]
            assert w >= MIN_PNG_W and h >= MIN_PNG_H, (name, w, h)
    assert len(pd.read_csv(out / "samples.csv")) == len(stored)
    assert "## What time is it?" in summary and "Status **" in summary


def test_report_summary_numbers_match_analyze_drift(lab_db: Path, report: tuple[Path, dict]) -> None:
    out, _doc = report
    rows = _summary_rows((out / "summary.md").read_text())
    proc = run_cli("analyze", "drift", "--json", db=lab_db)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    with Store.open(lab_db) as st:
        stored = st.ntp_samples()
    assert {r["server"] for r in results} == set(rows)
    header = ["server", "ok / attempts", "offset (filtered)", "delay", "root distance", "jitter",
              "drift (ppm)", "drift 95% CI (ppm)", "drift fit", "status"]
    for r in results:
        cells = dict(zip(header, rows[r["server"]], strict=True))
        n_ok = sum(s.ok for s in stored if s.server == r["server"])
        n_all = sum(s.server == r["server"] for s in stored)
        assert cells["ok / attempts"] == f"{n_ok} / {n_all}"
        if r["drift_ppm"] is None:
            assert cells["drift (ppm)"] == "–"
            continue
        assert cells["drift (ppm)"] == f"{r['drift_ppm']:+.3f}"
        lo, hi = r["drift_ci95_ppm"]
        assert cells["drift 95% CI (ppm)"] == f"[{lo:+.3f}, {hi:+.3f}]"
        assert cells["drift fit"].startswith(r["status"])
        # the clock filter's offset: the lowest delay of the newest 8 within 16 s, carried to the newest
        # instant by the drift when that is known
        ok = [s for s in stored if s.server == r["server"] and s.ok]
        _, carried = clock_filter_expected(ok, r["drift_ppm"] if r["status"] == "ok" else None)
        unit = cells["offset (filtered)"].split()[-1]
        scale = {"s": 1.0, "ms": 1e3, "µs": 1e6, "ns": 1e9}[unit]
        shown = float(cells["offset (filtered)"].split()[0])
        assert abs(shown - carried * scale) <= 0.051  # rounded to 3 (ms) or 1 (µs, ns) decimals


def test_report_failure_keeps_previous_report_and_replaces_only_its_files(
        lab: Lab, lab_db: Path, report: tuple[Path, dict], tmp_path: Path) -> None:
    out, doc = report
    before = {n: (out / n).read_bytes() for n in doc["files"]}
    proc = run_cli("report", "--out", str(out), "--since", "1ms", db=lab_db)  # nothing that recent
    assert proc.returncode == 1
    assert_one_clean_line(proc, "no usable NTP samples")
    assert {n: (out / n).read_bytes() for n in doc["files"]} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".timekit-report.tmp")]
    # a new report with one server: the other drift plots go, a user's file stays
    (out / "notes.txt").write_text("mine")
    one = tmp_path / "one.db"
    assert run_cli("sample", "ntp", lab.server("chrony-near").address, "--count", "5", "--interval", "0.05",
                   db=one).returncode == 0
    proc = run_cli("report", "--out", str(out), "--json", db=one, timeout=120)
    assert proc.returncode == 0, proc.stderr
    new = json.loads(proc.stdout)
    assert "pauses.png" not in new["files"] and new["notes"] == ["no pause data"]
    left = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert left == set(new["files"]) | {"notes.txt"}
    assert "no pause data" in (out / "summary.md").read_text().lower()


def test_report_empty_or_missing_store_one_line_no_dir(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    Store.open(empty).close()
    for db, needle in ((empty, "no usable NTP samples"), (tmp_path / "missing.db", "no database")):
        out = tmp_path / "r"
        proc = run_cli("report", "--out", str(out), db=db)
        assert proc.returncode == 1
        assert_one_clean_line(proc, needle)
        assert not out.exists()
    assert not (tmp_path / "missing.db").exists()
