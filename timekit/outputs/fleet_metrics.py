"""A sweep as Prometheus metrics: per node (`node` label) and the fleet's summary, for the textfile
collector (node_exporter `--collector.textfile.directory`) or any scraper of a text file.

Per node: its offset from the fleet's median (s, + = the node's clock is ahead of the fleet), the
uncertainty of that figure (delay/2), whether it answered, and its status (suspect, quarantined).
Summary: nodes listed, answered, quarantined, the median offset from the sweeper and the spread (MAD),
the sweep's wall time and when it ended. The file is written whole or not at all.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from timekit.atomic_files import atomic_output
from timekit.pipeline.fleet import Sweep


def sweep_metrics(sweep: Sweep) -> bytes:
    """The Prometheus text exposition of one sweep."""
    reg = CollectorRegistry(auto_describe=False)
    doc = sweep.to_json()
    offset = Gauge("timekit_fleet_node_offset_from_median_seconds", "Node clock minus the fleet's median "
                   "(s), as the sweeper measured it; absent when the node did not answer", ["node"],
                   registry=reg)
    unc = Gauge("timekit_fleet_node_offset_uncertainty_seconds", "The NTP bound of that offset (delay/2, s)",
                ["node"], registry=reg)
    up = Gauge("timekit_fleet_node_up", "1 when the node's NTP endpoint answered this sweep", ["node"],
               registry=reg)
    quarantined = Gauge("timekit_fleet_node_quarantined", "1 when the node is quarantined (entered after "
                        "enough sweeps beyond the max offset, left after enough healthy ones)", ["node"],
                        registry=reg)
    suspect = Gauge("timekit_fleet_node_suspect", "1 when the node is suspect (beyond the warning offset, or "
                    "beyond max for fewer sweeps than quarantine needs)", ["node"], registry=reg)
    for r in doc["node_results"]:
        node = r["node"]
        up.labels(node).set(0 if r["offset_s"] is None else 1)
        if r["from_consensus_s"] is not None:
            offset.labels(node).set(-r["from_consensus_s"])
            unc.labels(node).set(r["uncertainty_s"])
        quarantined.labels(node).set(1 if r["status"] == "quarantined" else 0)
        suspect.labels(node).set(1 if r["status"] == "suspect" else 0)
    summary = {
        "timekit_fleet_nodes": ("Nodes in the sweeper's list", doc["nodes"]),
        "timekit_fleet_nodes_answered": ("Nodes that answered this sweep", doc["answered"]),
        "timekit_fleet_nodes_quarantined": ("Nodes quarantined after this sweep", len(doc["quarantined"])),
        "timekit_fleet_quorum": ("1 when a majority of the answering nodes agree (nodes are judged)",
                                 1 if doc["quorum"] else 0),
        "timekit_fleet_sweep_duration_seconds": ("Wall time of the sweep's measurement (s)", doc["wall_s"]),
        "timekit_fleet_last_sweep_timestamp_seconds": ("When the sweep ended (Unix s)", doc["t_ns"] / 1e9),
    }
    for name, (help_text, value) in summary.items():
        Gauge(name, help_text, registry=reg).set(value)
    if doc["median_offset_s"] is not None:
        Gauge("timekit_fleet_median_offset_seconds", "The fleet's median clock minus the sweeper's (s)",
              registry=reg).set(doc["median_offset_s"])
        Gauge("timekit_fleet_spread_seconds", "Median absolute deviation of the nodes' offsets (s)",
              registry=reg).set(doc["spread_s"])
    return generate_latest(reg)


def write_sweep_metrics(path: Path, sweep: Sweep) -> None:
    """Write the sweep's metrics to `path` atomically (a scraper never reads half a file)."""
    with atomic_output(path, binary=True, chmod=0o644) as fh:
        fh.write(sweep_metrics(sweep))
