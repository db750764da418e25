"""A cluster lab: a handful of nodes, each a real chronyd serving its peers with the node's own clock,
and the environment under which that node's timekit runs on the same clock.

A node's clock is this host's clock plus the node's skew (libfaketime), for its chronyd and for its
timekit alike: timekit's client under the lab's shim (`shim.c`: kernel receive stamps rewritten to
the faked clock, transmit stamps refused) measures its peers as that node would, so from node X a
peer Y reads skew_Y − skew_X and a reference R reads offset_R − skew_X, within NTP's bound delay/2.
Every process of one node shares one view of time (libfaketime runs its monotonic clocks with the
faked wall clock, the same in every process), so a node's store is written and read consistently.

    nodes = start_cluster(workdir, {"a": 0.0, "b": 0.003, "c": -0.002, "d": 0.001, "e": 0.8})
    subprocess.run(["timekit", "collect", ...], env=nodes[4].env)   # node e's view
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from timekit.errors import CollectorError
from timekit.lab.chrony import (
    ChronyServer,
    _base_env,
    build_shim,
    default_cache_dir,
    faketime_spec,
    find_libfaketime,
)


@dataclass
class ClusterNode:
    """One node: its name, its clock's skew (s, node − true), its chronyd and its timekit environment."""

    name: str
    skew_s: float
    server: ChronyServer
    env: dict[str, str]

    @property
    def address(self) -> str:
        return self.server.address

    def peer_lines(self, nodes: Sequence[ClusterNode]) -> list[str]:
        """The `[cluster] peers` entries of this node: every other node, `NAME HOST:PORT`."""
        return [f"{n.name} {n.address}" for n in nodes if n.name != self.name]

    def true_peer_offset_s(self, peer: ClusterNode, t_ns: int) -> float:
        """What this node should measure of `peer` (peer − this node, s) at true time `t_ns`."""
        return peer.server.truth.offset_at(t_ns) - self.skew_s


def node_env(skew_s: float, workdir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a process running on a node whose clock is `skew_s` ahead of this host's."""
    libfaketime = find_libfaketime()
    if libfaketime is None:
        raise CollectorError("cluster lab unavailable: libfaketime is not installed")
    env = {**(_base_env() if base is None else dict(base))}
    env["LD_PRELOAD"] = f"{libfaketime}:{build_shim(default_cache_dir())}"
    env["FAKETIME"] = faketime_spec(skew_s, 0.0)
    env["TIMEKIT_LAB_ANCHOR"] = str(workdir / "client-anchor")  # the shim's; unused by the analysis
    return env


def start_cluster(workdir: Path, skews: Mapping[str, float]) -> list[ClusterNode]:
    """Start one chronyd per node on a free loopback port, at the node's skew; stop them all on a
    failure. Each node's directory under `workdir` holds its chronyd and its timekit files."""
    from timekit.lab.manager import free_port

    nodes: list[ClusterNode] = []
    try:
        for name, skew_s in skews.items():
            d = Path(workdir) / name
            d.mkdir(parents=True, exist_ok=True)
            server = ChronyServer.start(free_port(), skew_s, 0.0, d / "chronyd")
            nodes.append(ClusterNode(name, skew_s, server, node_env(skew_s, d)))
    except BaseException:
        stop_cluster(nodes)
        raise
    return nodes


def stop_cluster(nodes: Sequence[ClusterNode]) -> None:
    """Stop every node's chronyd (idempotent)."""
    for n in nodes:
        with contextlib.suppress(OSError, CollectorError):
            n.server.stop()


def write_node_config(node: ClusterNode, nodes: Sequence[ClusterNode], path: Path, *,
                      references: Sequence[str] = (), extra: str = "") -> Path:
    """A collect config for `node`: its peers (every other node), `references`, fast loopback polling
    and the [skew] section `extra` (TOML lines)."""
    return write_cluster_config(path, node.peer_lines(nodes), references, extra)


def write_cluster_config(path: Path, peer_lines: Sequence[str], references: Sequence[str] = (),
                         extra: str = "") -> Path:
    """A collect config naming `peer_lines` as [cluster] peers and `references` as ntp.servers, polled
    fast (loopback), without the clock and pause samplers (the lab's nodes share this host's kernel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    refs = ", ".join(f'"{r}"' for r in references)
    peers = ", ".join(f'"{p}"' for p in peer_lines)
    path.write_text(f"[ntp]\nservers = [{refs}]\ncount = 4\ninterval_s = 0.05\ntimeout_s = 1.0\n"
                    "min_poll_s = 15\n"
                    f"[cluster]\npeers = [{peers}]\n[clocks]\nenabled = false\n[pauses]\nenabled = false\n"
                    "[daemon]\nkind = \"none\"\n" + extra, encoding="utf-8")
    os.chmod(path, 0o644)
    return path


# --- `timekit lab start --cluster N`: the same lab, detached, for a person to try ---------------------------

HEALTHY_SKEW_S = 0.002  # healthy nodes' clocks within ±2 ms of true time
REFERENCES = 3  # honest references at true time: "off from UTC" is judged against them


def cluster_skews(n: int, skewed: int, skew_s: float, seed: int = 1) -> dict[str, float]:
    """Node name -> clock skew (s): healthy nodes seeded within ±HEALTHY_SKEW_S, the last `skewed`
    ones `skew_s` off. Raises ValueError unless the skewed are a minority of at least 3 nodes."""
    import random

    if not 3 <= n <= 50:
        raise ValueError(f"a cluster lab has 3..50 nodes, got {n}")
    if skewed < 0 or 2 * skewed >= n:
        raise ValueError(f"skewed nodes ({skewed}) must be a minority of {n}")
    rng = random.Random(seed)
    healthy = [round(rng.uniform(-HEALTHY_SKEW_S, HEALTHY_SKEW_S), 6) for _ in range(n - skewed)]
    return {f"node-{i + 1}": skew for i, skew in enumerate([*healthy, *[skew_s] * skewed])}


def write_node_wrapper(path: Path, name: str, env: Mapping[str, str]) -> Path:
    """A shell script that runs `timekit` as node `name` sees time (its clock's environment)."""
    import shlex
    import sys

    keys = ("LD_PRELOAD", "FAKETIME", "LC_ALL", "TIMEKIT_LAB_ANCHOR")
    exports = " ".join(f"{k}={shlex.quote(env[k])}" for k in keys if k in env)
    path.write_text(f"#!/bin/sh\n# timekit on cluster-lab node {name}'s clock (libfaketime, the lab's shim)\n"
                    f"export {exports}\nexec {shlex.quote(sys.executable)} -m timekit.cli \"$@\"\n",
                    encoding="utf-8")
    os.chmod(path, 0o755)
    return path
