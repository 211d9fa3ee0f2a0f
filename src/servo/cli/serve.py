"""``servo serve``: run the HTTP edge of the serverless mode (`servo.serve`) under uvicorn.

``--role worker`` answers Cloud Tasks pushes on ``POST /execute``; ``--role
reconciler`` the ``/internal/*`` routes; ``--role all`` both (local trials). Every
role serves the health probes and ``/metrics``.

Everything is checked before the port is bound: settings (``SERVO_*``, ``--config``),
authentication (an HMAC secret or an OIDC audience is required), rate limits, the
definitions. A problem prints one ``error:`` line and exits 2, as every command does.

Logs are Servo's structured logs (uvicorn's own logging config is not installed);
the level is INFO unless ``log.level`` / ``SERVO_LOG_LEVEL`` says otherwise, because
a server that prints nothing at startup looks hung. SIGTERM (Cloud Run's stop) and
Ctrl-C shut down gracefully: no new requests, running ones finish (up to
`GRACEFUL_TIMEOUT_S`), then the process exits 0.

This module imports neither starlette nor uvicorn at import time: ``servo --help``
stays fast.
"""

from __future__ import annotations

import signal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from servo.cli._session import find_target, with_home
from servo.cli.options import ConfigOption, DefsOption, HomeOption, state_of

if TYPE_CHECKING:
    from types import FrameType

    from servo.config.settings import Settings

#: Seconds running requests get to finish after SIGTERM (Cloud Run sends SIGKILL 10 s
#: after SIGTERM).
GRACEFUL_TIMEOUT_S = 8


class ServeRole(StrEnum):
    """What a `servo serve` process answers."""

    WORKER = "worker"
    RECONCILER = "reconciler"
    ALL = "all"


def serve(
    ctx: typer.Context,
    role: Annotated[
        ServeRole, typer.Option("--role", help="Routes to serve: worker, reconciler or all.")
    ] = ServeRole.WORKER,
    defs: DefsOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")
    ] = 8080,
    heartbeat_interval: Annotated[
        float,
        typer.Option(
            "--heartbeat-interval", min=0.1, help="Seconds between heartbeats of running tasks."
        ),
    ] = 5.0,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> int:
    """Serve task pushes (/execute) or reconciler calls over HTTP, with probes and metrics."""
    from servo.config.settings import load_settings

    state = state_of(ctx)
    settings = with_home(load_settings(config_file=state.config if state else None), home)
    _configure_logging(settings)

    from servo.serve.app import create_app
    from servo.serve.factory import build_serve_config

    serve_config = build_serve_config(
        settings,
        role.value,
        find_target(defs),
        heartbeat_interval_s=heartbeat_interval,
    )
    forwarded = settings.cloud.cloud_run.forwarded_allow_ips
    return _run_server(create_app(serve_config), host, port, forwarded)


def _configure_logging(settings: Settings) -> None:
    """Servo's logging at the configured level, INFO when none was set explicitly."""
    from servo.observability.logging import configure_logging

    explicit = "level" in settings.log.model_fields_set
    configure_logging(settings.log.level if explicit else "INFO", settings.log.format)


def _run_server(app: object, host: str, port: int, forwarded_allow_ips: str) -> int:
    """Serve `app` until SIGTERM or Ctrl-C; 0 after a graceful stop.

    uvicorn handles both signals itself (stop accepting, drain, run the lifespan's
    shutdown), then re-raises the signal it caught to the handler that was installed
    before it. That handler is ours and ignores it, so the process ends with 0 rather
    than being killed by the re-raised SIGTERM. The client address is taken from
    ``X-Forwarded-For`` only when the peer is in `forwarded_allow_ips`.
    """
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            server_header=False,
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips,
            timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
        )
    )

    def after_uvicorn(signum: int, frame: FrameType | None) -> None:
        """uvicorn re-raises the signal it handled; the stop already happened."""

    previous = {sig: signal.signal(sig, after_uvicorn) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind or start the app
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1
