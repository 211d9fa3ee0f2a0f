"""A Celery worker running Servo's tasks: the same code as the HTTP routes.

`worker_app` builds a Celery app (`servo.dispatch.celery_edge.app_for`) whose tasks
call what ``servo serve`` calls:

- ``servo.execute(request)``: the worker runtime runs the attempt; its finish
  travels to the reconciler inside a ``servo.reconcile`` report (ADR 0025);
- ``servo.reconcile(tenant, workspace, paths, events)``: one reconcile step of the
  `ReconcilerService` (dispatches go out as ``servo.execute`` messages);
- ``servo.timers(tenant, workspace, due_at)``: a wake-up; one sent before its time
  (a hop of a long countdown) is sent again for the rest of the way;
- ``servo.sweep()``: anti-entropy over every registered workspace.

Delivery is at least once (late acks; a killed worker's message comes back), so
every task is idempotent: a repeated execute finds its result record, a repeated
report is folded once. A message delivered again (a retry, or the broker's
redelivery after a crash) for an attempt the engine has ended is acknowledged
without running (``servo_celery_ended_attempts_dropped_total``): it would only
loop, since its report would be stale. A task that fails for a reason a retry can fix (the store or
the broker) is retried after `RETRY_S`; a message that cannot be decoded is dropped
(logged, ``servo_celery_dropped_total``): delivering it again would fail again.

The worker runs its tasks in threads of one process (``--pool threads``): the
runtime, its store clients and the reconciler's state are shared by them and are
not safe to fork.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from servo.dispatch.celery_edge import (
    EXECUTE,
    RECONCILE,
    SWEEP,
    TIMERS,
    CeleryDispatcher,
    CeleryReconcileQueue,
    CeleryTimers,
    app_for,
)
from servo.engine import events as ev
from servo.engine.ids import now_us
from servo.engine.request import TaskRequest
from servo.engine.schema import TERMINAL_TASK_STATUSES
from servo.engine.snapshot import SnapshotReader
from servo.errors import ServoError
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.runner.service import ReconcilerService
from servo.serve.factory import catalog_listener_for, reconciler_settings
from servo.worker.notify import NotifyingSink
from servo.worker.runtime import TaskRuntime

if TYPE_CHECKING:
    from servo.config.settings import Settings
    from servo.sdk.definitions import Definitions
    from servo.storage.base import ObjectStore

log = get_logger(__name__)

#: Seconds before a task that failed for a transient reason is delivered again.
RETRY_S = 1.0
#: A wake-up arriving this much (µs) before its due time is a hop: sent again.
EARLY_TOLERANCE_US = 1_000_000

ENDED = metrics.counter(
    "servo_celery_ended_attempts_dropped_total",
    "Redelivered execute messages of attempts the engine had ended (acked, not run).",
)
DROPPED = metrics.counter(
    "servo_celery_dropped_total",
    "Celery messages dropped because they cannot be decoded, by task.",
    ["task"],
)


def worker_app(
    settings: Settings,
    defs: Definitions,
    store: ObjectStore,
    *,
    heartbeat_interval_s: float = 5.0,
) -> Any:
    """The Celery app of a Servo worker (see the module docstring)."""
    celery = settings.cloud.celery
    app = app_for(celery)
    # No remote control: its per-host pidbox queue is exclusive, and Servo stops
    # attempts through the ledger, not through broadcast commands.
    app.conf.worker_enable_remote_control = False
    reports = CeleryReconcileQueue(app, celery)
    timers = CeleryTimers(app, celery)
    runtime = TaskRuntime(
        store,
        defs,
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        heartbeat_interval_s=heartbeat_interval_s,
        sink=NotifyingSink(store, reports.notify, reports.report),
        check_code_version=not settings.worker.accept_code_version_mismatch,
    )
    service = ReconcilerService(
        store,
        defs,
        CeleryDispatcher(app, celery),
        timers,
        reconciler_settings(settings),
        max_workspaces=settings.reconciler.max_workspaces,
        listener_for=catalog_listener_for(settings, store, defs),
    )
    retried = {"bind": True, "max_retries": None, "acks_late": True}

    @app.task(name=EXECUTE, **retried)  # type: ignore[untyped-decorator]
    def execute(task: Any, raw: Any) -> str:
        try:
            request = TaskRequest.from_dict(raw)
        except (TypeError, ValueError, KeyError) as exc:
            return _drop(EXECUTE, exc)
        if _delivered_before(task) and attempt_ended(store, request):
            ENDED.inc()  # a poison loop ends here: the engine gave up on this attempt
            log.warning("celery.ended_attempt_dropped", tenant_id=request.tenant_id,
                        run_id=request.run_id, task_key=request.task_key,
                        attempt_id=request.attempt_id)  # fmt: skip
            return "ended"
        try:
            return "reused" if runtime.execute(request).reused else "ran"
        except Exception as exc:  # the report could not be made: deliver it again
            _retrying(task, EXECUTE, exc, run_id=request.run_id, attempt_id=request.attempt_id)
            raise

    @app.task(name=RECONCILE, **retried)  # type: ignore[untyped-decorator]
    def reconcile(task: Any, tenant: str, workspace: str, paths: Any, events: Any) -> int:
        try:
            decoded = [ev.Event.from_dict(e) for e in events]
        except (ServoError, TypeError, ValueError, KeyError) as exc:
            _drop(RECONCILE, exc)
            return 0
        try:
            return service.reconcile(tenant, workspace, list(paths), decoded).enqueued
        except (ServoError, OSError) as exc:
            _retrying(task, RECONCILE, exc, tenant_id=tenant)
            raise  # unreachable: retry raises

    @app.task(name=TIMERS, **retried)  # type: ignore[untyped-decorator]
    def wake(task: Any, tenant: str, workspace: str, due_at: int) -> int:
        try:
            if due_at - now_us() > EARLY_TOLERANCE_US:  # a hop of a long countdown
                timers.wake(tenant, workspace, due_at)
                return 0
            return service.fire_due(tenant, workspace).armed
        except (ServoError, OSError) as exc:
            _retrying(task, TIMERS, exc, tenant_id=tenant)
            raise

    @app.task(name=SWEEP, **retried)  # type: ignore[untyped-decorator]
    def sweep(task: Any) -> int:
        try:
            return len(service.sweep())
        except (ServoError, OSError) as exc:
            _retrying(task, SWEEP, exc)
            raise

    app.servo_runtime = runtime  # closed by the command when the worker stops
    return app


def _delivered_before(task: Any) -> bool:
    """Whether this message was delivered before (a retry, or the broker's redelivery)."""
    delivery = getattr(task.request, "delivery_info", None) or {}
    return bool(task.request.retries) or bool(delivery.get("redelivered"))


def attempt_ended(store: ObjectStore, request: TaskRequest) -> bool:
    """Whether the published state says `request`'s attempt is over: its task has
    ended, or another attempt has replaced it. A run or task not published yet (the
    dispatch may precede the publish) cannot be judged: not ended."""
    snapshot = SnapshotReader(store, request.tenant_id, request.workspace_id).load()
    for task in snapshot.tasks_of(request.run_id):
        if task.task_key == request.task_key:
            return task.status in TERMINAL_TASK_STATUSES or task.attempt_id != request.attempt_id
    return False


def _drop(name: str, exc: BaseException) -> str:
    DROPPED.labels(name).inc()
    log.error("celery.message_dropped", task=name, error_type=type(exc).__name__,
              error=str(exc), recovery="none: the message cannot be decoded")  # fmt: skip
    return "dropped"


def _retrying(task: Any, name: str, exc: BaseException, **context: Any) -> None:
    log.warning("celery.task_retried", task=name, error_type=type(exc).__name__,
                error=str(exc), retry_in_s=RETRY_S, **context)  # fmt: skip
    raise task.retry(exc=exc, countdown=RETRY_S)
