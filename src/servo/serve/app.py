"""`create_app`: the Starlette app of `servo serve`, its routes chosen by role.

Every role serves the probes (``/health``, ``/health/live``, ``/health/ready``,
``/health/startup``, ``/ready``) and ``GET /metrics``; the worker role adds
``POST /execute`` (`servo.serve.execute`), the reconciler role the
``/internal/*`` routes (`servo.serve.internal`), ``all`` both. A route a role does
not serve does not exist (404), so a misrouted push fails loudly.

The app is handed everything it uses (`ServeConfig`); its lifespan builds the task
runtime when given a factory, marks the app started (``/health/startup``), and
stops the runtime's heartbeats at shutdown after the server drained requests.
HTTP metrics wrap the whole app as ASGI middleware (`servo.serve.http_metrics`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from servo.observability.logging import get_logger
from servo.serve.config import INTERNAL_ROUTES, ServeConfig
from servo.serve.execute import ExecuteEndpoint
from servo.serve.http_metrics import HttpMetricsMiddleware
from servo.serve.internal import InternalEndpoint
from servo.serve.metrics_endpoint import MetricsEndpoint
from servo.serve.probes import Probes, Readiness
from servo.serve.state import ServeState

log = get_logger(__name__)


def create_app(config: ServeConfig) -> Starlette:
    """The app serving `config.role`'s routes (see the module docstring)."""
    state = ServeState(config)
    readiness = Readiness(
        config.readiness_checks,
        timeout_s=config.readiness_timeout_s,
        cache_s=config.readiness_cache_s,
    )
    probes = Probes(state, readiness)
    routes: list[BaseRoute] = [
        Route("/health", probes.health, methods=["GET"]),
        Route("/health/live", probes.live, methods=["GET"]),
        Route("/health/ready", probes.ready, methods=["GET"]),
        Route("/health/startup", probes.startup, methods=["GET"]),
        Route("/ready", probes.ready, methods=["GET"]),
        Route("/metrics", MetricsEndpoint(config).handle, methods=["GET"]),
    ]
    if config.serves_worker:
        routes.append(
            Route(
                "/execute",
                ExecuteEndpoint(state).handle,
                methods=["POST"],
                max_body_size=config.max_body_bytes,
            )
        )
    if config.serves_reconciler:
        routes.extend(
            Route(
                f"/internal/{name}",
                InternalEndpoint(config, name).handle,
                methods=["POST"],
                max_body_size=config.max_body_bytes,
            )
            for name in INTERNAL_ROUTES
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        log.info("serve.started", role=config.role, routes=[getattr(r, "path", "") for r in routes])
        try:
            yield
        finally:
            state.stop()
            log.info("serve.stopped", role=config.role)

    app = Starlette(
        routes=routes, lifespan=lifespan, middleware=[Middleware(HttpMetricsMiddleware)]
    )
    app.state.serve = state
    return app
