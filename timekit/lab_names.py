"""Lab servers by name (`lab:chrony-near`) wherever a server is accepted: the running lab's state
file maps each name to its loopback address. Core layer: a file read, no lab code imported."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from timekit.errors import UsageError

LAB_PREFIX = "lab:"
STATE_FILE = "lab.json"


def default_lab_dir() -> Path:
    """$TIMEKIT_LAB_DIR, else $XDG_RUNTIME_DIR/timekit-lab, else /tmp/timekit-lab-UID."""
    env = os.environ.get("TIMEKIT_LAB_DIR")
    if env:
        return Path(env)
    run = os.environ.get("XDG_RUNTIME_DIR")
    return Path(run) / "timekit-lab" if run else Path(tempfile.gettempdir()) / f"timekit-lab-{os.getuid()}"


def lab_address(name: str, directory: Path | None = None) -> str:
    """The address (`127.0.0.1:PORT`) of the running lab's server `name`; UsageError in words."""
    directory = directory or default_lab_dir()
    path = directory / STATE_FILE
    try:
        servers = json.loads(path.read_text())["servers"]
    except FileNotFoundError:
        raise UsageError(f"lab:{name}: no lab running in {directory} (timekit lab start)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"lab:{name}: lab state {path} is unreadable: {exc}") from None
    for s in servers:
        if s.get("name") == name:
            return str(s["address"])
    names = ", ".join(sorted(str(s.get("name")) for s in servers))
    raise UsageError(f"lab:{name}: no such lab server (the lab has: {names})")
