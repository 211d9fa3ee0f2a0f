"""``GET /metrics``: the Prometheus scrape, limited per client IP, optionally behind a token.

Order: the per-IP rate limit first (429, ``Retry-After: 60``), so guessing tokens is
as slow as scraping; then the bearer token when one is configured (401), compared in
constant time; then the registry in the exposition format.
"""

from __future__ import annotations

import hmac

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from servo.observability import metrics
from servo.serve import responses
from servo.serve.config import ServeConfig

#: The text format `metrics.render` writes (prometheus_client's own handler sends this;
#: its CONTENT_TYPE_LATEST names a newer format version in recent releases).
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
#: Retry-After of a scrape over the per-IP limit (the limit is per minute).
METRICS_RETRY_AFTER_S = 60

REJECTED = metrics.counter(
    "servo_metrics_scrapes_rejected_total", "Refused /metrics requests, by reason.", ["reason"]
)


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (constant time)."""
    scheme, _, value = (header or "").partition(" ")
    given = value.strip().encode("utf-8") if scheme.lower() == "bearer" else b""
    return hmac.compare_digest(given, token.encode("utf-8"))


class MetricsEndpoint:
    """Serves /metrics for one app."""

    def __init__(self, config: ServeConfig) -> None:
        self._limiter = config.rate_limiter
        self._token = config.metrics_token

    async def handle(self, request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        # A shared (Redis) limiter does network I/O: keep it off the event loop.
        decision = await run_in_threadpool(self._limiter.metrics_client, client)
        if not decision.allowed:
            REJECTED.labels("rate_limited").inc()
            return responses.error(
                429,
                "rate_limited",
                message="too many /metrics requests from this client",
                retry_after_s=max(decision.retry_after_s, METRICS_RETRY_AFTER_S),
            )
        if self._token is not None and not bearer_matches(
            request.headers.get("authorization"), self._token
        ):
            REJECTED.labels("unauthenticated").inc()
            return responses.error(
                401,
                "unauthenticated",
                reason="bad_token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(metrics.render(), media_type=PROMETHEUS_TEXT)
