"""`timekit analyze events`: steps, frequency changes, spikes (and leap seconds) in each reference's offsets.

The samples are the evidence the assessment reads (each server's fit window, or every usable sample
since `--since`), on the wall clock of now (this host's own steps taken out: they are clock events of
this host, in `timekit sample clocks`, not of its references).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from timekit.analysis.assessment import Evidence
from timekit.analysis.leap_events import LeapSplit, explain_leap
from timekit.analysis.offset_events import EventKind, EventScan, OffsetEvent, find_events
from timekit.analysis.series import on_the_wall_clock_of_now


def event_scans(ev: Evidence) -> tuple[list[EventScan], LeapSplit | None]:
    """One scan per server with samples (sorted by name), and the leap second in reach, if any."""
    out = []
    walled = {}
    for name in sorted(ev.series):
        s = on_the_wall_clock_of_now(ev.series[name], now_realtime_ns=ev.realtime_ns,
                                     now_boottime_ns=ev.boottime_ns, boot_id=ev.boot_id)
        s = s.select(np.argsort(s.t_local_ns, kind="stable"))
        walled[name] = s
        out.append(find_events(name, s.t_local_ns, s.offset_s, s.delay_s, s.root_distance_s))
    leap = explain_leap({n: s for n, s in walled.items() if len(s)}, ev.leap_seconds_ns)
    if leap is not None:  # the leap's own readings are the events of its servers (a 1 s step is no fault)
        out = [_with_leap(sc, leap) for sc in out]
    return out, leap


LEAP_EVENT_KIND: dict[str, EventKind] = {"stepped": "leap_step", "smearing": "leap_smear",
                                         "smeared": "leap_smear"}


def _with_leap(scan: EventScan, leap: LeapSplit) -> EventScan:
    reading = next((r for r in leap.readings if r.server == scan.server), None)
    if reading is None or reading.behaviour not in LEAP_EVENT_KIND or reading.t_ns is None:
        return scan
    kept = tuple(e for e in scan.events if not (e.kind == "step" and abs(abs(e.size) - 1.0) <= 0.1))
    event = OffsetEvent(scan.server, LEAP_EVENT_KIND[reading.behaviour], reading.t_ns, reading.size_s or 0.0,
                        "s", reading.words, None, None)
    return EventScan(scan.server, "ok" if scan.status != "too_few" else scan.status,
                     f"{reading.words}; {scan.reason}" if scan.status == "ok" else reading.words,
                     tuple(sorted((*kept, event), key=lambda e: e.t_ns)))


def events_doc(scans: list[EventScan], leap: LeapSplit | None = None) -> dict[str, Any]:
    """The JSON document: per server its status and events, every event in time order, and the leap
    second in reach (None: none)."""
    every = sorted((e for sc in scans for e in sc.events), key=lambda e: e.t_ns)
    return {"results": [{"server": sc.server, "status": sc.status, "reason": sc.reason,
                         "events": [e.to_json() for e in sc.events]} for sc in scans],
            "events": [e.to_json() for e in every],
            "leap": None if leap is None else {
                "leap_ns": leap.leap_ns, "inserted": leap.insert, "split": leap.split, "words": leap.words,
                "servers": [{"server": r.server, "behaviour": r.behaviour, "size_s": r.size_s,
                             "rate_ppm": r.rate_ppm, "t_ns": r.t_ns} for r in leap.readings]}}


def events_table(doc: dict[str, Any]) -> Any:
    """A rich table of every event, oldest first, and one line per server without any."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from timekit.outputs.render import _utc as utc_text

    t = Table(title="Events in the references' offsets (offset = reference - local)", title_justify="left")
    for col in ("time (UTC)", "server", "event", "size", "explanation"):
        t.add_column(col, justify="right" if col == "size" else "left")
    for e in doc["events"]:
        size = f"{e['size'] * 1e3:+.3f} ms" if e["unit"] == "s" else f"{e['size']:+.3f} ppm"
        t.add_row(utc_text(e["t_ns"]), e["server"], e["kind"].replace("_", " "), size, e["explanation"])
    quiet = [Text(f"{r['server']}: {r['reason']}") for r in doc["results"] if not r["events"]]
    leap = [Text(doc["leap"]["words"])] if doc.get("leap") else []
    return Group(*leap, t, *quiet) if doc["events"] else Group(*leap, *quiet)
