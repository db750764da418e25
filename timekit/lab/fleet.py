"""A fleet lab: thousands of simulated nodes' NTP endpoints on loopback, served by one fault-server process.

Each node is a port with its own clock (offset, drift), path (delay, jitter, request-leg asymmetry)
and loss, drawn from a seeded generator, so a run is repeatable. Healthy nodes are a synchronised
cluster: within ±HEALTHY_OFFSET_S of each other, drifting at most ±HEALTHY_DRIFT_PPM. A chosen few are
skewed: `stepped` ones jump by STEP_S mid-run, `drifting` ones run DRIFT_PPM fast from the start (they
cross a threshold after a while), `recovering` ones jump and come back. The truth of every node is
the fault server's (`PortSpec.server_offset_s`), recorded in lab.json like every lab server's.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from timekit.atomic_files import atomic_output
from timekit.errors import CollectorError
from timekit.lab.faultserver import PortSpec, write_json_atomic

HEALTHY_OFFSET_S = 0.002
HEALTHY_DRIFT_PPM = 20.0
HEALTHY_JITTER_S = 0.0005
HEALTHY_ASYMMETRY_S = 0.0002
HEALTHY_LOSS = 0.02
STEP_S = 0.300
DRIFT_PPM = 20_000.0  # 20 ms a second: past a 50 ms threshold in a few seconds, slowly enough to watch


@dataclass(frozen=True)
class FleetPlan:
    """How many nodes, which are skewed and how (counts; seconds after the lab's start)."""

    n: int
    stepped: int = 0
    drifting: int = 0
    recovering: int = 0
    step_after_s: float = 5.0
    recover_after_s: float = 15.0
    seed: int = 1

    def __post_init__(self) -> None:
        skewed = self.stepped + self.drifting + self.recovering
        if not 1 <= self.n <= 60_000:
            raise ValueError(f"a fleet lab has 1..60000 nodes, got {self.n}")
        if min(self.stepped, self.drifting, self.recovering) < 0 or 2 * skewed >= self.n:
            raise ValueError(f"skewed nodes ({skewed}) must be a minority of {self.n}")


def node_name(i: int) -> str:
    return f"node-{i:05d}"


def fleet_ports(plan: FleetPlan) -> list[PortSpec]:
    """One PortSpec per node, named node-NNNNN; the skewed ones spread over the fleet at random."""
    rng = random.Random(plan.seed)
    skewed = rng.sample(range(plan.n), plan.stepped + plan.drifting + plan.recovering)
    kind = {i: "stepped" for i in skewed[:plan.stepped]}
    kind |= {i: "drifting" for i in skewed[plan.stepped:plan.stepped + plan.drifting]}
    kind |= {i: "recovering" for i in skewed[plan.stepped + plan.drifting:]}
    ports = []
    for i in range(plan.n):
        spec = PortSpec(name=node_name(i), offset_s=rng.uniform(-HEALTHY_OFFSET_S, HEALTHY_OFFSET_S),
                        drift_ppm=rng.uniform(-HEALTHY_DRIFT_PPM, HEALTHY_DRIFT_PPM),
                        jitter_s=rng.uniform(0, HEALTHY_JITTER_S),
                        asymmetry_s=rng.uniform(0, HEALTHY_ASYMMETRY_S),
                        loss=HEALTHY_LOSS, seed=plan.seed * 100_003 + i)
        k = kind.get(i)
        if k == "stepped":
            spec.step_after_s, spec.step_s = plan.step_after_s, rng.choice((-1, 1)) * STEP_S
        elif k == "drifting":
            spec.drift_ppm = rng.choice((-1, 1)) * DRIFT_PPM
        elif k == "recovering":
            spec.step_after_s, spec.step_s = plan.step_after_s, rng.choice((-1, 1)) * STEP_S
            spec.step_until_s = plan.recover_after_s
        ports.append(spec)
    return ports


def skew_kind(spec: PortSpec) -> str:
    """'healthy', 'stepped', 'drifting' or 'recovering': what the plan made of a node's port."""
    if spec.step_until_s is not None:
        return "recovering"
    if spec.step_after_s is not None:
        return "stepped"
    return "drifting" if abs(spec.drift_ppm) >= DRIFT_PPM else "healthy"


def write_nodes_file(path: Path, nodes: list[tuple[str, str]]) -> None:
    """The sweeper's nodes file: `NAME HOST:PORT` a line, for (name, address) pairs."""
    with atomic_output(path) as fh:
        fh.write("".join(f"{name} {address}\n" for name, address in nodes))


def start_fleet_exporters(directory: Path, specs: list[PortSpec], start_ns: int,
                          ready_timeout_s: float = 30.0) -> tuple[subprocess.Popen, list[tuple[str, int]]]:
    """Serve the hosts' metrics (`timekit.lab.fleet_exporters`) in one process: (process, [(name, port)])."""
    directory.mkdir(parents=True, exist_ok=True)
    spec_path, ready = directory / "exporters.spec.json", directory / "exporters.ready.json"
    ready.unlink(missing_ok=True)
    write_json_atomic(spec_path, {"start_ns": start_ns, "hosts": [asdict(s) for s in specs]})
    with open(directory / "exporters.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-P", "-m", "timekit.lab.fleet_exporters", str(spec_path),
                                 str(ready)], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if ready.exists():
            doc = json.loads(ready.read_text())
            return proc, [(h["name"], int(h["port"])) for h in doc["hosts"]]
        time.sleep(0.05)
    proc.kill()
    proc.wait(5)
    raise CollectorError(f"fleet exporters did not start: see {directory / 'exporters.log'}")
