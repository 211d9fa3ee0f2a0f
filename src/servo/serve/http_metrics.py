"""HTTP request metrics as pure ASGI middleware: count, latency and response size.

Labels stay low-cardinality: ``route`` is the matched route's TEMPLATE (never the raw
path, which a client chooses), ``other`` when no route matched; ``method`` is one of
the standard methods or ``other``. The middleware only wraps ``send`` to see the
status and the body sizes: no buffering, no per-request allocation beyond a closure.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servo.observability import metrics

REQUESTS = metrics.counter(
    "servo_http_requests_total",
    "HTTP requests by route, method and status.",
    ["route", "method", "status"],
)
DURATION = metrics.histogram(
    "servo_http_request_duration_seconds", "Time to answer an HTTP request.", ["route"]
)
#: Response sizes from 100 bytes to 10 MB.
SIZE_BUCKETS = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)
RESPONSE_SIZE = metrics.histogram(
    "servo_http_response_size_bytes", "Size of HTTP response bodies.", ["route"], SIZE_BUCKETS
)

#: Label of requests no route matched.
OTHER = "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(scope: Scope) -> str:
    """The template of the route that handled `scope`, else ``other``.

    Starlette's router records the route it matched (fully, or by path only for a
    405) in ``scope["route"]``.
    """
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else OTHER


class HttpMetricsMiddleware:
    """Records every HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering
        size = 0

        async def observed(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            route = route_label(scope)
            method = scope["method"] if scope["method"] in _METHODS else OTHER
            REQUESTS.labels(route, method, str(status)).inc()
            DURATION.labels(route).observe(time.perf_counter() - started)
            RESPONSE_SIZE.labels(route).observe(size)
