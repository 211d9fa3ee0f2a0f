"""`build_serve_config`: the composition root of `servo serve`, from `Settings` to `ServeConfig`.

It opens the store, loads the definitions (roles that run tasks), makes the task
runtime, the authenticator and the rate limiter, registers the readiness checks, and
logs the effective configuration once (``serve.config``; never a secret: the
authenticator and the limiter describe themselves without theirs). Every problem is
raised here, before the server binds a port: `ConfigError` for settings,
`DefinitionError` for code, so ``servo serve`` exits 2 with one line.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from servo._version import __version__
from servo.engine.anti_entropy import SweepSettings
from servo.errors import ConfigError, DefinitionError
from servo.observability.logging import get_logger
from servo.resilience.rate_limit import RateLimiter
from servo.runner.workspace import ReconcilerSettings
from servo.sdk.loader import load_definitions
from servo.serve.auth import Authenticator
from servo.serve.config import InternalHandler, ReadinessCheck, ReportHook, Role, ServeConfig
from servo.storage.factory import open_store
from servo.worker.notify import NotifyingSink
from servo.worker.runtime import EventSink, LedgerSink, TaskRuntime

if TYPE_CHECKING:
    from servo.config.settings import Settings
    from servo.engine.snapshot import PublishListener
    from servo.sdk.definitions import Definitions
    from servo.storage.base import ObjectStore

log = get_logger(__name__)

#: Seconds between heartbeats of a running attempt (the embedded runner's default,
#: well inside the engine's heartbeat timeout).
DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
#: The object the storage readiness check asks about: absent is the cheap answer.
READINESS_PROBE_PATH = "health/readiness-probe"


def worker_id() -> str:
    """This process's worker id, ``{hostname}-{pid}`` (reported in `TaskStarted`)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def storage_check(store: ObjectStore) -> ReadinessCheck:
    """A readiness check that asks the store for one object's metadata (one cheap call)."""

    def check() -> None:
        store.head(READINESS_PROBE_PATH)

    return check


def code_version(defs: Definitions) -> dict[str, str]:
    """The servo version and the definitions' code version (`servo.sdk.code_version`),
    so two instances running different code can be told apart."""
    return {"servo": __version__, "definitions": defs.code_version}


def build_serve_config(
    settings: Settings,
    role: Role,
    defs_path: str | None,
    *,
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
    on_report: ReportHook | None = None,
    internal_handlers: Mapping[str, InternalHandler] | None = None,
    store: ObjectStore | None = None,
) -> ServeConfig:
    """The `ServeConfig` that `settings` describe for `role`.

    Args:
        settings: the loaded settings.
        role: ``worker``, ``reconciler`` or ``all``.
        defs_path: the definitions to run (required by the roles that run tasks).
        heartbeat_interval_s: seconds between heartbeats of running attempts.
        on_report: see `ServeConfig.on_report`.
        internal_handlers: see `ServeConfig.internal_handlers`.
        store: the object store (default: `open_store` from the settings).

    Raises:
        ConfigError: invalid settings (no authentication configured, a bad limit).
        DefinitionError: the definitions are missing or cannot be loaded.
    """
    authenticator = Authenticator.from_settings(
        settings.worker, replay_url=settings.rate_limit.storage_url
    )
    limiter = RateLimiter.from_settings(settings.rate_limit)
    store = store if store is not None else open_store(settings.storage, Path(settings.home))
    checks: dict[str, ReadinessCheck] = {"storage": storage_check(store)}
    if not settings.rate_limit.storage_url.startswith("memory://"):
        checks["rate_limit"] = _limiter_check(limiter)
    runtime = None
    if not defs_path:
        raise DefinitionError(
            f"servo serve --role {role} needs the definitions its runs are planned from: "
            "pass --defs PATH or set SERVO_DEFS"
        )
    defs = load_definitions(defs_path)
    version = code_version(defs)
    remote = settings.cloud.provider == "gcp"
    if role in ("reconciler", "all"):
        if not remote:
            raise ConfigError(
                f"servo serve --role {role} dispatches through Cloud Tasks: set "
                "cloud.provider: gcp (SERVO_CLOUD_PROVIDER=gcp) and the cloud_tasks and "
                "cloud_run settings"
            )
        if internal_handlers is None:
            internal_handlers = _reconciler(settings, store, defs)
    if role in ("worker", "all"):
        sink: EventSink = _remote_sink(settings, store) if remote else LedgerSink(store)
        runtime = TaskRuntime(
            store,
            defs,
            worker_id=worker_id(),
            heartbeat_interval_s=heartbeat_interval_s,
            sink=sink,
            check_code_version=not settings.worker.accept_code_version_mismatch,
        )
    config = ServeConfig(
        role=role,
        authenticator=authenticator,
        rate_limiter=limiter,
        runtime=runtime,
        readiness_checks=checks,
        metrics_token=settings.metrics.token,
        on_report=on_report,
        internal_handlers=dict(internal_handlers or {}),
        max_concurrency=settings.worker.max_concurrency,
        version=version,
    )
    log.info(
        "serve.config",
        role=role,
        authentication=authenticator.describe(),
        rate_limits=limiter.describe(),
        metrics_auth="bearer" if settings.metrics.token else "none",
        max_concurrency=config.max_concurrency,
        heartbeat_interval_s=heartbeat_interval_s,
        storage_backend=settings.storage.backend,
        readiness_checks=sorted(checks),
        version=version,
    )
    return config


def _reconciler(
    settings: Settings, store: ObjectStore, defs: Definitions
) -> dict[str, InternalHandler]:
    """The /internal/* handlers over Cloud Tasks dispatch and timers."""
    from servo.dispatch.cloud_tasks import CloudTasksDispatcher, CloudTasksTimers, breaker_from
    from servo.runner.service import ReconcilerService
    from servo.serve.reconciler import reconciler_handlers

    breaker = breaker_from(settings)
    timers = CloudTasksTimers.from_settings(settings, breaker=breaker)
    service = ReconcilerService(
        store,
        defs,
        CloudTasksDispatcher.from_settings(settings, breaker=breaker),
        timers,
        reconciler_settings(settings),
        max_workspaces=settings.reconciler.max_workspaces,
        listener_for=catalog_listener_for(settings, store, defs),
    )
    return reconciler_handlers(service, timers.wake)


def catalog_listener_for(
    settings: Settings, store: ObjectStore, defs: Definitions
) -> Callable[[str, str], PublishListener] | None:
    """With ``database.url``, each workspace's published snapshots are projected into
    the PostgreSQL catalog by a background thread (`servo.embedded.catalog_sync`);
    a catalog that is down is logged and counted, and catches up from its checkpoint
    once it answers. Without it, the projections in the store are the only read
    model."""
    if settings.database.url is None:
        return None
    from servo.serve.catalog_listener import CatalogListener

    def listener_for(tenant_id: str, workspace_id: str) -> PublishListener:
        return CatalogListener(settings, tenant_id, workspace_id, defs, store)

    return listener_for


def reconciler_settings(settings: Settings) -> ReconcilerSettings:
    """The reconciler's timing from the ``reconciler`` settings section."""
    section = settings.reconciler
    return ReconcilerSettings(
        report_lag_us=int(section.report_lag_s * 1_000_000),
        heartbeat_timeout_us=int(section.heartbeat_timeout_s * 1_000_000),
        sweep=SweepSettings(
            ready_deadline_us=int(section.ready_deadline_s * 1_000_000),
            enqueue_deadline_us=int(section.ready_deadline_s * 1_000_000),
            start_deadline_us=int(section.start_deadline_s * 1_000_000),
            timer_grace_us=int(section.timer_grace_s * 1_000_000),
        ),
    )


def _remote_sink(settings: Settings, store: ObjectStore) -> NotifyingSink:
    """A worker's events to the reconcile queue: finishes inside the report, the
    rest through the ledger (ADR 0025)."""
    from servo.dispatch.cloud_tasks import CloudTasksReconcileQueue

    queue = CloudTasksReconcileQueue.from_settings(settings)
    return NotifyingSink(store, queue.notify, queue.report)


def _limiter_check(limiter: RateLimiter) -> ReadinessCheck:
    """A readiness check of a shared (Redis) limiter store."""

    def check() -> None:
        if not limiter.check():
            raise ConnectionError("rate limit storage")

    return check
