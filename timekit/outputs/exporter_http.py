"""The exporter's HTTP server: bounded, and one snapshot shared by every scraper.

prometheus_client's `start_http_server` starts a thread per connection with no limit and no idle
timeout, and renders the store afresh per request: 300 idle connections held 302 threads, and 16×5
concurrent scrapes of a 2 MB store took up to 28.5 s each (~0.3 s of CPU per render on 2 cores).
Here:

- at most MAX_CONNECTIONS connections are served at once; one more is closed at accept (a scraper
  retries at its next interval), so threads stay bounded whatever connects;
- a connection idle for IDLE_TIMEOUT_S (no complete request) is closed;
- the exposition is rendered at most once per `refresh_s`; concurrent scrapes wait for the one
  render in progress and share it, so N scrapers cost one render, not N.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_CONNECTIONS = 32  # twice the 16 concurrent scrapers the tests run: a slot frees just after a reply
IDLE_TIMEOUT_S = 5.0
DEFAULT_REFRESH_S = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text exposition format


class SharedSnapshot:
    """`render()`'s bytes, rendered at most once per `refresh_s` (monotonic), shared by callers."""

    def __init__(self, render: Callable[[], bytes], refresh_s: float = DEFAULT_REFRESH_S) -> None:
        if not 0 <= refresh_s < 86_400:
            raise ValueError(f"refresh interval {refresh_s} s is outside 0-86400 s")
        self._render, self.refresh_s = render, refresh_s
        self._lock = threading.Lock()
        self._body: bytes | None = None
        self._at = 0.0
        self.renders = 0  # how many times the store was read (the bound the tests check)

    def get(self) -> bytes:
        with self._lock:  # the second scraper waits for the first one's render, then shares it
            now = time.monotonic()
            if self._body is None or now - self._at >= self.refresh_s:
                self._body = self._render()
                self._at = time.monotonic()
                self.renders += 1
            return self._body


class _Handler(BaseHTTPRequestHandler):
    timeout = IDLE_TIMEOUT_S  # StreamRequestHandler: the socket's timeout, so an idle client is dropped
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers after the reply
    snapshot: SharedSnapshot  # set on the subclass the server makes

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404, "only /metrics is served here")
            return
        try:
            body = self.snapshot.get()
        except Exception as exc:  # the collector answers store errors itself; this is a bug
            self.send_error(500, f"{type(exc).__name__}")
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass  # scrapes are not news


class BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most `max_connections` connections at once."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0  # connections closed at accept because every slot was busy
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(snapshot: SharedSnapshot, bind: str, port: int,
          max_connections: int = MAX_CONNECTIONS) -> tuple[BoundedServer, threading.Thread]:
    """Listen on `bind`:`port` (IPv4 or IPv6; 0: any free port) and serve in a daemon thread."""
    family = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM)[0][0]
    handler = type("Handler", (_Handler,), {"snapshot": snapshot})
    server_class = type("Server", (BoundedServer,), {"address_family": family})
    server = server_class((bind, port), handler, max_connections)
    thread = threading.Thread(target=server.serve_forever, name="timekit-exporter", daemon=True)
    thread.start()
    return server, thread
