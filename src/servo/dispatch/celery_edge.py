"""The Celery edge: dispatches, reports and timers as Celery messages.

The same engine as the serverless mode, another queue (`cloud.provider: celery`):

- `CeleryDispatcher` sends each attempt as a ``servo.execute`` message whose Celery task
  id is the deterministic `cloud_task_id`. Celery does not deduplicate: a message sent
  twice runs twice, and the second execution finds the attempt's result record (or
  loses to it), so duplicates change nothing;
- `CeleryReconcileQueue` sends reports (``servo.reconcile``: ledger paths, or worker
  events that the reconciler writes, ADR 0025) and run submissions;
- `CeleryTimers` wakes a workspace with a ``servo.timers`` message counted down to its
  due time. A countdown never exceeds ``max_eta_s``: a Redis broker redelivers an
  unacknowledged message after its visibility timeout (and RabbitMQ cancels a
  consumer holding one past its consumer timeout), so a later timer is sent as a hop
  that re-arms itself, as the serverless mode does past Cloud Tasks' 30 days.

Messages are JSON and acknowledged late (`app_for`: ``acks_late``,
``reject_on_worker_lost``, prefetch 1): a worker killed mid-task leaves its message
to be delivered again. Publishing failures raise `TransientStorageError` (retry) and
are counted in ``servo_celery_publish_total{outcome}``. Celery is imported when an
edge is built, so ``import servo.dispatch.celery_edge`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from servo.dispatch.base import EnqueueOutcome
from servo.engine import events as ev
from servo.engine.ids import now_us, timer_scope
from servo.engine.request import TaskRequest
from servo.errors import ConfigError, TransientStorageError
from servo.observability import metrics
from servo.observability.logging import get_logger

if TYPE_CHECKING:
    from servo.config.settings import CelerySettings

log = get_logger(__name__)

#: Task names: the worker (`servo.serve.celery_worker`) registers the same.
EXECUTE = "servo.execute"
RECONCILE = "servo.reconcile"
TIMERS = "servo.timers"
SWEEP = "servo.sweep"

PUBLISHED = metrics.counter(
    "servo_celery_publish_total", "Celery messages sent, by task and outcome.", ["task", "outcome"]
)


def app_for(settings: CelerySettings, name: str = "servo") -> Any:
    """A Celery app on the configured broker, configured for at-least-once delivery.

    Raises:
        ConfigError: celery is not installed.
    """
    try:
        from celery import Celery  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigError(
            "cloud.provider 'celery' needs celery: pip install 'servo[celery]'"
        ) from exc
    app = Celery(name, broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,  # a message is acked once its task ran (or failed)
        task_reject_on_worker_lost=True,  # a killed worker's message is delivered again
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # outcomes live in the ledger, not a result backend
        broker_connection_timeout=settings.timeout_s,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": int(settings.max_eta_s * 1.2) + 60},
        task_default_queue=settings.queue,
        worker_hijack_root_logger=False,
    )
    return app


class _Publisher:
    """Sends named tasks on one app; failures become `TransientStorageError`."""

    def __init__(self, app: Any, settings: CelerySettings) -> None:
        self.app = app
        self.settings = settings

    def send(self, task: str, args: list[Any], *, queue: str, **options: Any) -> None:
        try:
            self.app.send_task(task, args=args, queue=queue, **options)
        except Exception as exc:  # kombu raises its own and OS errors
            PUBLISHED.labels(task, "error").inc()
            log.warning("celery.publish_failed", task=task, queue=queue,
                        error_type=type(exc).__name__, error=str(exc))  # fmt: skip
            raise TransientStorageError(f"cannot send {task} to {queue}: {exc}") from exc
        PUBLISHED.labels(task, "sent").inc()

    def close(self) -> None:
        self.app.close()


class CeleryDispatcher(_Publisher):
    """A `Dispatcher` sending ``servo.execute`` messages (see the module docstring)."""

    def enqueue(self, request: TaskRequest) -> EnqueueOutcome:
        """Send `request`; Celery does not deduplicate, so it is always CREATED.

        Raises:
            TransientStorageError: the broker did not take it (retry).
        """
        self.send(EXECUTE, [request.to_dict()], queue=self._queue_of(request.executor),
                  task_id=request.cloud_task_id)  # fmt: skip
        return EnqueueOutcome.CREATED

    def _queue_of(self, spec: str | None) -> str:
        """The queue of the executor `spec`: an `executor.Celery`'s own, else the
        configured one.

        Raises:
            ConfigError: the executor is not a Celery one.
        """
        if spec is None:
            return self.settings.queue
        from servo.executor import Celery, dispatchable

        return dispatchable(spec, Celery, "Celery").queue or self.settings.queue

    def stop(self, attempt_id: str, reason: str = "stopped") -> bool:
        """False: a remote attempt is not stopped from here; its late report is stale."""
        return False


class CeleryReconcileQueue(_Publisher):
    """Reports and submissions for the reconciler, as ``servo.reconcile`` messages."""

    def notify(self, tenant_id: str, workspace_id: str, paths: Sequence[str]) -> None:
        """`servo.worker.notify.Notify`: fold these ledger objects."""
        self.send(RECONCILE, [tenant_id, workspace_id, list(paths), []],
                  queue=self.settings.reconcile_queue)  # fmt: skip

    def report(self, tenant_id: str, workspace_id: str, events: Sequence[ev.Event]) -> None:
        """`servo.worker.notify.Report`: write and fold these worker events."""
        self.send(RECONCILE, [tenant_id, workspace_id, [], [e.to_dict() for e in events]],
                  queue=self.settings.reconcile_queue)  # fmt: skip

    def sweep(self) -> None:
        """Ask for an anti-entropy sweep of every registered workspace."""
        self.send(SWEEP, [], queue=self.settings.reconcile_queue)


class CeleryTimers(_Publisher):
    """A `TimerDelivery` waking a workspace with a counted-down ``servo.timers``."""

    def __init__(self, app: Any, settings: CelerySettings, *, clock: Any = now_us) -> None:
        super().__init__(app, settings)
        self._clock = clock

    def schedule(self, timer_id: str, due_at: int) -> None:
        """Wake the reconciler of `timer_id`'s workspace at `due_at` (epoch µs)."""
        self.wake(*timer_scope(timer_id), due_at)

    def wake(self, tenant_id: str, workspace_id: str, due_at: int) -> None:
        """Wake (tenant, workspace) at `due_at`, at most ``max_eta_s`` ahead: a later
        wake-up is a hop the handler re-arms (see the module docstring)."""
        countdown = max(0.0, (due_at - self._clock()) / 1_000_000)
        self.send(TIMERS, [tenant_id, workspace_id, due_at], queue=self.settings.reconcile_queue,
                  countdown=min(countdown, self.settings.max_eta_s))  # fmt: skip
