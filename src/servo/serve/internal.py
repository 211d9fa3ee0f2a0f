"""The reconciler's ``POST /internal/{reconcile,timers,sweep}`` routes: authenticated
first, then handed to the handler plugged in `ServeConfig.internal_handlers`.

The handlers themselves live with the reconcile step; this module only guarantees
that nothing reaches them unauthenticated, and answers 501 for a route no handler
was plugged for, so the routes exist (and are protected) before their code does.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from servo.observability import metrics
from servo.serve import responses
from servo.serve.auth import AuthError, AuthUnavailable, Principal
from servo.serve.config import InternalCall, ServeConfig
from servo.serve.execute import AUTH_RETRY_AFTER_S

REJECTED = metrics.counter(
    "servo_internal_rejected_total",
    "Refused /internal/* requests, by route and reason.",
    ["route", "reason"],
)


class InternalEndpoint:
    """Serves ``POST /internal/{name}`` for one app."""

    def __init__(self, config: ServeConfig, name: str) -> None:
        self._config = config
        self._name = name
        self._route = f"/internal/{name}"

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        client = request.client.host if request.client else None
        try:
            principal: Principal = await run_in_threadpool(
                self._config.authenticator.authenticate, request.headers, body, client=client
            )
        except AuthError as exc:
            REJECTED.labels(self._route, "unauthenticated").inc()
            return responses.error(401, "unauthenticated", reason=str(exc.reason))
        except AuthUnavailable:
            REJECTED.labels(self._route, "auth_unavailable").inc()
            return responses.error(
                503,
                "auth_unavailable",
                message="cannot verify credentials now; retry later",
                retry_after_s=AUTH_RETRY_AFTER_S,
            )
        handler = self._config.internal_handlers.get(self._name)
        if handler is None:
            return responses.not_implemented(self._name)
        return await handler(InternalCall(self._name, request, body, principal))
