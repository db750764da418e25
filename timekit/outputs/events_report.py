"""`timekit analyze events`: steps, frequency changes, spikes (and leap seconds) in each reference's offsets.

The samples are the evidence the assessment reads (each server's fit window, or every usable sample
since `--since`), on the wall clock of now (this host's own steps taken out: they are clock events of
this host, in `timekit sample clocks`, not of its references).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from timekit.analysis.assessment import Evidence
from timekit.analysis.offset_events import EventScan, find_events
from timekit.analysis.series import on_the_wall_clock_of_now


def event_scans(ev: Evidence) -> list[EventScan]:
    """One scan per server with samples (sorted by name)."""
    out = []
    for name in sorted(ev.series):
        s = on_the_wall_clock_of_now(ev.series[name], now_realtime_ns=ev.realtime_ns,
                                     now_boottime_ns=ev.boottime_ns, boot_id=ev.boot_id)
        order = np.argsort(s.t_local_ns, kind="stable")
        s = s.select(order)
        out.append(find_events(name, s.t_local_ns, s.offset_s, s.delay_s, s.root_distance_s))
    return out


def events_doc(scans: list[EventScan]) -> dict[str, Any]:
    """The JSON document: per server its status and events, and every event in time order."""
    every = sorted((e for sc in scans for e in sc.events), key=lambda e: e.t_ns)
    return {"results": [{"server": sc.server, "status": sc.status, "reason": sc.reason,
                         "events": [e.to_json() for e in sc.events]} for sc in scans],
            "events": [e.to_json() for e in every]}


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
    return Group(t, *quiet) if doc["events"] else Group(*quiet)
