"""NTS sessions kept between runs: each NTS server's keys, NTP address and cookies left, in a file beside
the store that only its owner can read (`<db>.nts`, mode 0600).

Not in the store itself: the store may be readable by a monitoring group (the exporter, a Nagios
user), and whoever holds a session's server-to-client key can forge "authenticated" replies to this
client from the path until the session is keyed again. A missing or unreadable file is no error:
the servers are keyed again (one TLS handshake each).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from timekit.atomic_files import atomic_output
from timekit.collectors.nts import NtsSession

FILE_MODE = 0o600
MAX_BYTES = 1 << 22  # a session is ~1 KB; thousands of NTS servers fit


def sessions_path_for(db: Path) -> Path:
    """`<db>.nts`, beside the store."""
    return db.with_name(db.name + ".nts")


def load_sessions(path: Path) -> dict[str, NtsSession]:
    """Every kept session by server name; {} when there is none (or the file cannot be read)."""
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_mode & 0o077:  # someone else could read it: do not trust it
                return {}
            doc = json.loads(fh.read(MAX_BYTES))
        return {name: NtsSession(bytes.fromhex(s["c2s"]), bytes.fromhex(s["s2c"]), s["host"],
                                 int(s["port"]), [bytes.fromhex(c) for c in s["cookies"]], int(s["ke_ns"]),
                                 s.get("trust", "")) for name, s in doc.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save_sessions(path: Path, changed: Mapping[str, NtsSession | None]) -> None:
    """Update the kept sessions (None: drop that server's), atomically, mode 0600."""
    if not changed and not path.exists():
        return
    sessions = load_sessions(path)
    for name, s in changed.items():
        if s is None:
            sessions.pop(name, None)
        else:
            sessions[name] = s
    doc = {name: {"c2s": s.c2s_key.hex(), "s2c": s.s2c_key.hex(), "host": s.ntp_host, "port": s.ntp_port,
                  "cookies": [c.hex() for c in s.cookies], "ke_ns": s.ke_ns, "trust": s.trust}
           for name, s in sorted(sessions.items())}
    with atomic_output(path, chmod=FILE_MODE) as fh:
        json.dump(doc, fh)
