"""``servo celery worker``: a Celery worker running Servo's tasks (`servo.serve.celery_worker`).

It reads the same configuration as every command (``cloud.provider: celery``,
``cloud.celery.broker_url``), loads the definitions and consumes the task and
reconcile queues (``--queues`` narrows them: a worker pool of its own for the
reconciler, say). Tasks run in ``--concurrency`` threads of this process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from servo.cli._session import configure, resolve_target
from servo.cli.options import DefsOption, state_of

celery_app = typer.Typer(help="Run Servo on Celery workers.", no_args_is_help=True)


@celery_app.command("worker")
def worker(
    ctx: typer.Context,
    defs: DefsOption = None,
    queues: Annotated[
        str | None,
        typer.Option("--queues", help="Comma-separated queues to consume (default: both)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=256, help="Tasks run at once.")
    ] = 4,
) -> None:
    """Consume Servo's Celery queues: run tasks, reconcile steps, timers and sweeps."""
    from servo.errors import ConfigError
    from servo.sdk.loader import load_definitions
    from servo.serve.celery_worker import worker_app
    from servo.storage.factory import open_store

    settings = configure(state_of(ctx))
    if settings.cloud.provider != "celery":
        raise ConfigError(
            "servo celery worker needs cloud.provider: celery (SERVO_CLOUD_PROVIDER=celery) "
            "and cloud.celery.broker_url"
        )
    definitions = load_definitions(resolve_target(defs))
    store = open_store(settings.storage, Path(settings.home))
    app = worker_app(settings, definitions, store)
    celery = settings.cloud.celery
    consumed = queues or f"{celery.queue},{celery.reconcile_queue}"
    try:
        argv = ["worker", "--pool", "threads", "--concurrency", str(concurrency)]
        argv += ["--queues", consumed, "--loglevel", "WARNING"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        argv += ["--hostname", f"servo-{os.getpid()}@%h"]  # workers of one host apart
        app.worker_main(argv)
    finally:
        app.servo_runtime.close()
