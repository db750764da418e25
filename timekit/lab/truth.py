"""Ground truth for lab servers: what each server's offset really is, and how far we were off."""

from __future__ import annotations

import statistics
from typing import Any

from timekit.atomic_files import pid_alive
from timekit.collectors.clocks import realtime_ns
from timekit.lab.manager import Lab
from timekit.store.database import Store


def lab_status_rows(lab: Lab) -> list[dict[str, Any]]:
    """One row per lab server: address, kind, configured truth and the true offset now."""
    now_ns = realtime_ns()
    return [{"name": s.name, "address": s.address, "kind": s.kind, "pid": s.pid,
             "alive": pid_alive(s.pid), "offset_s": s.offset_s, "server_drift_ppm": s.server_drift_ppm,
             "step_after_s": s.step_after_s, "step_s": s.step_s, "step_until_s": s.step_until_s,
             "true_offset_now_s": s.true_offset_at(now_ns)} for s in lab.servers]


def compare_with_truth(lab: Lab, store: Store) -> list[dict[str, Any]]:
    """Per lab server: stored valid samples vs the true offset at each sample's instant.

    `error_*` fields are measured − true offset in seconds; `n_ok`/`n_total` count attempts.
    """
    rows = []
    for srv in lab.servers:
        samples = store.ntp_samples(server=srv.address)
        ok = [s for s in samples if s.ok and s.offset_s is not None]
        errors = [s.offset_s - srv.true_offset_at(s.t_local_ns) for s in ok]  # type: ignore[operator]
        row: dict[str, Any] = {"name": srv.name, "address": srv.address, "kind": srv.kind,
                               "n_total": len(samples), "n_ok": len(ok),
                               "errors": sorted({s.error for s in samples if s.error})}
        if errors and srv.answers_truthfully:
            row.update(error_median_s=statistics.median(errors),
                       error_max_abs_s=max(abs(e) for e in errors),
                       delay_median_s=statistics.median(s.delay_s for s in ok))  # type: ignore[type-var]
        rows.append(row)
    return rows
