"""`timekit export csv`: stored samples as CSV for pandas, spreadsheets and colleagues.

One row per stored sample, columns named as the JSON fields (for NTP exactly
`NtpSample.column_names()`, the DESIGN.md contract fields first). Cells are written so that
`pandas.read_csv(path)` needs no options:

- integers as plain decimal (ns instants round-trip exactly, FAULTS C15), floats as the shortest
  digits that round-trip (exponent form when long, see `float_text`), booleans as `true`/`false`,
  missing values as an empty cell;
- text cells starting with = + - @ TAB CR or NUL get a leading `'` so a spreadsheet never runs
  them as a formula (FAULTS S12, CSV injection); numeric cells are never touched. A NUL inside
  text is written as the four characters `\x00` (C parsers, pandas among them, stop at NUL);
- RFC 4180 layout: comma separated, CRLF line ends, cells with a comma, quote, CR or LF quoted.

The file is written atomically: rows stream from one SQLite read (a consistent snapshot, never
all in memory) into a temp file next to the target, which is fsynced and `os.replace`d into
place. Any failure (corrupt database, disk full, kill) leaves the previous file as it was; a temp
file left by a killed export is removed by the next export to the same path (FAULTS S11).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from timekit.atomic_files import atomic_output
from timekit.errors import UsageError
from timekit.samples import NtpSample

if TYPE_CHECKING:
    from timekit.store.database import Store

MAX_POSITIONAL_DIGITS = 17  # longer positional floats are written in exponent form (float_text)
FETCH_ROWS = 5_000  # rows per fetchmany(): memory stays flat however large the store
INJECTION_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\0")  # OWASP CSV injection list + NUL
INJECTION_GUARD = "'"
NUL_ESCAPE = "\\x00"  # C-based readers (pandas) end a cell at NUL: written as the 4 characters \x00
LINE_END = "\r\n"  # RFC 4180; with it the csv module also quotes cells holding a bare CR


@dataclass(frozen=True)
class CsvKind:
    """One exportable table: its columns in CSV order and which of them are booleans (0/1 in SQLite)."""

    name: str
    table: str
    columns: tuple[str, ...]
    bool_columns: frozenset[str] = frozenset()
    has_server: bool = False


CSV_KINDS: dict[str, CsvKind] = {
    "ntp": CsvKind("ntp", "ntp_samples", tuple(NtpSample.column_names()), frozenset({"ok", "authenticated"}),
                   has_server=True),
    "clocks": CsvKind("clocks", "clock_samples", (
        "t_local_ns", "monotonic_ns", "raw_ns", "boottime_ns", "tai_ns", "bracket_ns", "kernel_state",
        "kernel_unsynchronized", "kernel_offset_s", "kernel_frequency_ppm", "kernel_maxerror_s",
        "kernel_esterror_s", "kernel_status", "kernel_tai_offset_s"), frozenset({"kernel_unsynchronized"})),
    "pauses": CsvKind("pauses", "pause_intervals", (
        "t_local_ns", "boottime_ns", "interval_s", "n_wakeups", "p50_s", "p90_s", "p99_s", "p999_s",
        "max_s", "suspend_s")),
    "events": CsvKind("events", "clock_events", ("t_local_ns", "kind", "magnitude_s")),
}


@dataclass(frozen=True)
class ExportResult:
    """What `export_csv` wrote: `rows` data rows (plus one header line) of `kind` to `path`."""

    path: Path
    kind: str
    rows: int
    columns: tuple[str, ...]


def float_text(value: float) -> str:
    """The shortest digits that read back as the same double, in a form pandas parses closely.

    Python's repr is exact, but pandas' default (fast) parser drops digits beyond about 17
    characters, so 0.0020795572781935334 would come back 1e-13 relative off. Such values are
    written with the same digits in exponent form (2.0795572781935334e-03); pandas then reads
    every double within 2 ulp (exactly with float_precision="round_trip"), the csv module exactly.
    """
    text = repr(value)
    if "e" in text or "n" in text:  # already exponent form, inf, nan
        return text
    digits = text.lstrip("-").replace(".", "")
    if len(digits) <= MAX_POSITIONAL_DIGITS:
        return text
    return f"{value:.{len(digits.lstrip('0')) - 1}e}"


def csv_cell(value: Any, is_bool: bool = False) -> str:
    """One cell: '' for missing, true/false, exact ints, round-trip floats, guarded text."""
    if value is None:
        return ""
    if is_bool or isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, bytes):
        value = value.hex()
    text = str(value)
    guard = INJECTION_GUARD if text.startswith(INJECTION_PREFIXES) else ""
    return guard + text.replace("\0", NUL_ESCAPE)


# ----------------------------------------------------------------------------- export
def _query(kind: CsvKind, since_ns: int | None, servers: list[str] | None,
           ok_only: bool = False) -> tuple[str, list[Any]]:
    conds: list[str] = ["ok = 1"] if ok_only else []
    args: list[Any] = []
    if since_ns is not None:
        conds.append("t_local_ns >= ?")
        args.append(int(since_ns))
    if servers:
        conds.append(f"server IN ({', '.join('?' * len(servers))})")
        args.extend(servers)
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    return f"SELECT {', '.join(kind.columns)} FROM {kind.table}{where} ORDER BY t_local_ns, id", args


def export_csv(store: Store, out: Path, *, kind: str = "ntp", since_ns: int | None = None,
               servers: list[str] | None = None, ok_only: bool = False) -> ExportResult:
    """Write every stored sample of `kind` (optionally since `since_ns`, of `servers`) to `out`.

    `ok_only` (ntp): usable samples only. A failed attempt has no T2/T3 (often no T1/T4), and an
    integer column with empty cells is float64 to pandas, which cannot hold a 2026 instant to the
    ns; without failed rows every *_ns column is complete and pandas reads it as exact int64.
    """
    spec = CSV_KINDS.get(kind)
    if spec is None:
        raise UsageError(f"--kind: unknown kind {kind!r} (choose one of {', '.join(CSV_KINDS)})")
    if (servers or ok_only) and not spec.has_server:
        raise UsageError(f"--server and --ok-only apply to --kind ntp only, not {kind}")
    sql, args = _query(spec, since_ns, servers, ok_only)
    is_bool = [c in spec.bool_columns for c in spec.columns]
    rows = 0
    with atomic_output(Path(out)) as fh, store.reading() as conn:
        writer = csv.writer(fh, lineterminator=LINE_END)
        writer.writerow(spec.columns)
        cur = conn.execute(sql, args)  # one statement: one consistent snapshot under WAL
        while batch := cur.fetchmany(FETCH_ROWS):
            writer.writerows([csv_cell(v, b) for v, b in zip(row, is_bool, strict=True)] for row in batch)
            rows += len(batch)
    return ExportResult(Path(out), kind, rows, spec.columns)
