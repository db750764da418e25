"""Simulated fleet hosts' metrics endpoints, for a real Prometheus to judge with `timekit rules --fleet`.

One process serves N hosts, each on its own loopback port (`/metrics`), exporting what a host running
`timekit collect` + the exporter would: `timekit_clock_offset_seconds` (reference − local: the negative
of the host clock's error from its truth line, the fault server's PortSpec line) and
`timekit_clock_uncertainty_seconds`. The truth is each spec's, so a test knows which hosts are off.

    python -m timekit.lab.fleet_exporters SPEC.json READY.json
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from timekit.collectors.clocks import realtime_ns
from timekit.lab.faultserver import PortSpec, until_stopped, write_json_atomic

UNCERTAINTY_S = 0.001


def body(spec: PortSpec, start_ns: int, uncertainty_s: float) -> bytes:
    """The host's exposition now."""
    offset = -spec.server_offset_s(realtime_ns(), start_ns)
    return ("# HELP timekit_clock_offset_seconds Offset of this clock (reference - local), seconds.\n"
            "# TYPE timekit_clock_offset_seconds gauge\n"
            f"timekit_clock_offset_seconds {offset!r}\n"
            "# HELP timekit_clock_uncertainty_seconds Half-width of the interval, seconds.\n"
            "# TYPE timekit_clock_uncertainty_seconds gauge\n"
            f"timekit_clock_uncertainty_seconds {uncertainty_s!r}\n").encode()


async def serve(specs: list[PortSpec], ready: Path, start_ns: int, uncertainty_s: float) -> None:
    servers = []
    ports = []
    for spec in specs:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         spec: PortSpec = spec) -> None:
            try:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                data = body(spec, start_ns, uncertainty_s)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                             + f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
                await writer.drain()
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                pass
            finally:
                writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(srv)
        ports.append(srv.sockets[0].getsockname()[1])
    hosts = [{"name": s.name, "port": p} for s, p in zip(specs, ports, strict=True)]
    write_json_atomic(ready, {"pid": os.getpid(), "start_ns": start_ns, "hosts": hosts})
    await until_stopped()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m timekit.lab.fleet_exporters SPEC.json READY.json", file=sys.stderr)
        return 2
    doc: dict[str, Any] = json.loads(Path(args[0]).read_text())
    specs = [PortSpec(**d) for d in doc["hosts"]]
    uncertainty_s = float(doc.get("uncertainty_s", UNCERTAINTY_S))
    asyncio.run(serve(specs, Path(args[1]), int(doc["start_ns"]), uncertainty_s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
