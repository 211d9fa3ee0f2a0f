"""A tiny loopback HTTP server that records the pushes it receives.

Tests give it a `handle` function deciding each answer (status, headers, and how
long to take); by default every request gets a 200.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as received (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def task(self) -> str:
        return self.headers.get("x-cloudtasks-taskname", "")


@dataclass(frozen=True)
class Reply:
    """How to answer: `status` with `headers`, after `delay_s`."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


Handle = Callable[[Received], Reply]


class Receiver:
    """Records requests on ``http://127.0.0.1:PORT``; see the module docstring."""

    def __init__(self, handle: Handle | None = None) -> None:
        self.handle: Handle = handle or (lambda _: Reply())
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.in_flight = 0
        self.max_in_flight = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._serve(self)

            do_GET = do_PUT = do_DELETE = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the pusher gave up on a slow answer: a broken pipe is expected

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        received = Received(
            method=request.command,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.rfile.read(length) if length else b"",
            at=time.time(),
        )
        with self._changed:
            self.received.append(received)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._changed.notify_all()
        try:
            reply = self.handle(received)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            request.send_response(reply.status)
            for name, value in reply.headers.items():
                request.send_header(name, value)
            request.send_header("Content-Length", "0")
            request.end_headers()
        finally:
            with self._changed:
                self.in_flight -= 1

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        """The first `count` requests, once they arrived (AssertionError on timeout)."""
        with self._changed:
            ok = self._changed.wait_for(lambda: len(self.received) >= count, timeout_s)
            got = list(self.received)
        assert ok, f"{len(got)} of {count} requests arrived in {timeout_s}s"
        return got[:count]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
