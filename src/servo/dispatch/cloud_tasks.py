"""Cloud Tasks edges of the serverless mode: dispatches, timers, reconcile requests.

Three small clients, one per queue, on `CloudTasksQueue` (the official client with
names, OIDC, trace context, the ``cloud_tasks`` circuit breaker and error translation;
see `servo.dispatch.cloud_tasks_queue`):

- `CloudTasksDispatcher` (the `Dispatcher` protocol): a task named
  ``{queue}/tasks/{request.cloud_task_id}`` POSTs ``request.to_json()`` to
  ``{cloud_run.worker_url}/execute``. ALREADY_EXISTS is success; Cloud Tasks forgets
  names about an hour after the task ran, so the outbox, not the queue, is the real
  guard against dispatching twice.
- `CloudTasksTimers` (the `TimerDelivery` protocol): a task on the timer queue
  POSTs ``{"timer_id", "due_at"}`` to ``{cloud_run.reconciler_url}/internal/timers``
  at ``schedule_time`` = due time. Cloud Tasks schedules at most 30 days ahead, so a
  later timer *hops*: it is scheduled inside the horizon with the real ``due_at`` in
  the body, and the handler, finding it early, schedules it again.
- `CloudTasksReconcileQueue.enqueue_reconcile`: asks the reconciler to fold ledger
  objects (``{cloud_run.reconciler_url}/internal/reconcile``), e.g. after a worker
  wrote its report.

With `service_account_email` set, Cloud Tasks attaches an OIDC token for that
account to every push (audience: `cloud_tasks.audience`, else the receiving
service's URL), which the receiver verifies. With `cloud_tasks.emulator_host` set,
the client talks plaintext gRPC to that address (`servo.testing.cloud_tasks`).

Errors: `TransientStorageError` (worth retrying; an open breaker too) and
`ConfigError` (queue, permission or request to fix); see `cloud_tasks_queue`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Self

from servo.dispatch.base import EnqueueOutcome
from servo.dispatch.cloud_tasks_queue import (
    CloudTasksClient,
    CloudTasksQueue,
    required_setting,
    sha256_hex,
)
from servo.engine import events as ev
from servo.engine.ids import now_us, timer_scope
from servo.engine.request import TaskRequest
from servo.resilience.circuit_breaker import BreakerConfig, CircuitBreaker

if TYPE_CHECKING:
    from servo.config.settings import CloudSettings, Settings

__all__ = [
    "HOP_US",
    "CloudTasksDispatcher",
    "CloudTasksQueue",
    "CloudTasksReconcileQueue",
    "CloudTasksTimers",
    "breaker_from",
]

#: A timer due later is scheduled this far ahead at most (Cloud Tasks' 30 days minus
#: a day's margin for clock skew and the time the request takes), then hops.
HOP_US = 29 * 24 * 3600 * 1_000_000
#: Timers are woken by the whole second: all due within one share a wake-up.
SECOND_US = 1_000_000
#: A wake-up due this soon is created unnamed: its named task may have run already.
NEAR_US = 2 * SECOND_US


def breaker_from(settings: Settings) -> CircuitBreaker:
    """The ``cloud_tasks`` circuit breaker as configured (``SERVO_CB_CLOUD_TASKS_*``);
    share one between the three edges so they trip together."""
    return CircuitBreaker(
        "cloud_tasks", BreakerConfig.from_settings(settings.circuit_breaker.cloud_tasks)
    )


class _QueueEdge(ABC):
    """What the three edges share: one queue of the configured Cloud Tasks location,
    built from the settings with the shared ``cloud_tasks`` breaker."""

    _queue: CloudTasksQueue

    @abstractmethod
    def __init__(
        self,
        cloud: CloudSettings,
        *,
        breaker: CircuitBreaker | None = None,
        client: CloudTasksClient | None = None,
    ) -> None:
        """Build the edge's queue from `cloud` (see each edge)."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        breaker: CircuitBreaker | None = None,
        client: CloudTasksClient | None = None,
    ) -> Self:
        """From the full settings; `breaker` defaults to `breaker_from(settings)`."""
        return cls(settings.cloud, breaker=breaker or breaker_from(settings), client=client)

    @property
    def queue_path(self) -> str:
        """The queue's full name."""
        return self._queue.queue_path

    def close(self) -> None:
        """Close the client (if this object built it)."""
        self._queue.close()


class CloudTasksDispatcher(_QueueEdge):
    """A `Dispatcher` that creates Cloud Tasks pushing to the workers' ``/execute``.

    A request whose asset's workflow runs on an `executor.CloudRun` with its own
    project, region, queue or worker URL goes there (the rest from the settings); a
    request for another kind of executor is a `ConfigError` (the client refuses such
    runs before they start: `servo.executor.check_servable`).

    Args:
        cloud: project, region, queue, OIDC and worker URL settings.
        breaker: the ``cloud_tasks`` circuit breaker (default: default thresholds;
            `from_settings` uses the configured ones).
        client: an official client to use (it is then the caller's to close).

    Raises:
        ConfigError: project, region or `cloud_run.worker_url` is not set.
    """

    def __init__(
        self,
        cloud: CloudSettings,
        *,
        breaker: CircuitBreaker | None = None,
        client: CloudTasksClient | None = None,
    ) -> None:
        worker = required_setting(
            cloud.cloud_run.worker_url,
            "cloud.cloud_run.worker_url",
            "SERVO_CLOUD_CLOUD_RUN_WORKER_URL",
            "the URL of the Cloud Run worker service that runs tasks",
        )
        self._queue = CloudTasksQueue(
            cloud, cloud.cloud_tasks.queue, worker, breaker=breaker, client=client
        )
        self._cloud, self._worker, self._breaker = cloud, worker, breaker
        self._routes: dict[str, CloudTasksQueue] = {}

    def task_name(self, request: TaskRequest) -> str:
        """The full task name `request` is enqueued under."""
        return self._route(request.executor).task_name(request.cloud_task_id)

    def _route(self, spec: str | None) -> CloudTasksQueue:
        """The queue of the executor `spec` (None: the configured one)."""
        if spec is None:
            return self._queue
        found = self._routes.get(spec)
        if found is not None:
            return found
        from servo.executor import CloudRun, dispatchable

        chosen = dispatchable(spec, CloudRun, "Cloud Tasks")
        project = chosen.project or self._cloud.gcp.project
        region = chosen.region or self._cloud.gcp.region
        gcp = self._cloud.gcp.model_copy(update={"project": project, "region": region})
        found = self._routes[spec] = CloudTasksQueue(
            self._cloud.model_copy(update={"gcp": gcp}),
            chosen.queue or self._cloud.cloud_tasks.queue,
            chosen.worker_url or self._worker,
            breaker=self._breaker,
            client=self._queue.client,
        )
        return found

    def enqueue(self, request: TaskRequest) -> EnqueueOutcome:
        """Create the task for `request`; ALREADY_EXISTS is success.

        Raises:
            TransientStorageError: worth retrying (or the breaker is open).
            ConfigError: the queue, permissions or request need fixing.
        """
        context = {
            "tenant_id": request.tenant_id,
            "run_id": request.run_id,
            "task_key": request.task_key,
            "attempt_id": request.attempt_id,
        }
        return self._route(request.executor).create(
            "/execute", request.to_json(), task_id=request.cloud_task_id, context=context
        )

    def stop(self, attempt_id: str, reason: str = "stopped") -> bool:
        """False: an attempt running on a remote worker cannot be stopped from here.

        The engine has ended the attempt already; whatever the worker reports later
        carries the old `attempt_id` and the fold ignores it (the attempt_id guard).
        """
        return False


class CloudTasksTimers(_QueueEdge):
    """A `TimerDelivery` on the timer queue: one wake-up per workspace and second.

    Timers are rows of the projections; the queue only has to wake the reconciler
    when some are due. A timer due at ``due_at`` arms the wake-up of its workspace
    at the next whole second, named ``t_`` + sha256(``{tenant}:{workspace}:{second}``),
    so every timer due within that second shares one task (ALREADY_EXISTS: armed
    already), and the reconciler fires all of the workspace's due timers when it
    comes. A wake-up due within `NEAR_US` may have been delivered already under its
    name, so it is created unnamed. A due time beyond the 30-day horizon is armed at
    the latest hop point ``due_at - k * 29 days`` inside it; the handler arms the
    rest of the way.

    Args:
        cloud: project, region, timer queue, OIDC and reconciler URL settings.
        breaker: the ``cloud_tasks`` circuit breaker.
        client: an official client to use (it is then the caller's to close).
        clock: now, in epoch µs (for the horizon).

    Raises:
        ConfigError: project, region or `cloud_run.reconciler_url` is not set.
    """

    def __init__(
        self,
        cloud: CloudSettings,
        *,
        breaker: CircuitBreaker | None = None,
        client: CloudTasksClient | None = None,
        clock: Callable[[], int] = now_us,
    ) -> None:
        reconciler = _reconciler_url(cloud)
        self._queue = CloudTasksQueue(
            cloud, cloud.cloud_tasks.timer_queue, reconciler, breaker=breaker, client=client
        )
        self._clock = clock

    def plan(self, timer_id: str, due_at: int) -> tuple[str | None, int, int]:
        """The task id (None: unnamed), the schedule time and the wake-up's due time
        (epoch µs) for `timer_id` due at `due_at`."""
        return self._plan(*timer_scope(timer_id), due_at)

    def _plan(self, tenant_id: str, workspace_id: str, due_at: int) -> tuple[str | None, int, int]:
        now = self._clock()
        wake = -(-due_at // SECOND_US) * SECOND_US  # the next whole second
        if wake > now + HOP_US:
            hops = -(-(wake - now - HOP_US) // HOP_US)  # the fewest that land inside
            at = wake - hops * HOP_US
            name = sha256_hex(f"{tenant_id}:{workspace_id}:{wake}:hop:{at}")
            return "t_" + name, at, wake
        if wake <= now + NEAR_US:
            return None, wake, wake
        return "t_" + sha256_hex(f"{tenant_id}:{workspace_id}:{wake}"), wake, wake

    def schedule(self, timer_id: str, due_at: int) -> None:
        """Wake the reconciler of `timer_id`'s workspace at `due_at` (epoch µs).

        Raises:
            TransientStorageError: worth retrying (or the breaker is open).
            ConfigError: the queue, permissions or request need fixing.
            ValueError: `timer_id` is not a timer id.
        """
        self.wake(*timer_scope(timer_id), due_at, context={"timer_id": timer_id})

    def wake(
        self,
        tenant_id: str,
        workspace_id: str,
        due_at: int,
        *,
        context: dict[str, object] | None = None,
    ) -> None:
        """Wake the reconciler of (tenant, workspace) at `due_at` (see `plan`); the
        handler re-arms with it after a hop."""
        task_id, at, wake = self._plan(tenant_id, workspace_id, due_at)
        body = {"tenant_id": tenant_id, "workspace_id": workspace_id, "due_at": wake}
        self._queue.create(
            "/internal/timers",
            json.dumps(body, separators=(",", ":")).encode("utf-8"),
            task_id=task_id,
            schedule_at_us=at,
            context={**(context or {}), "tenant_id": tenant_id, "due_at": due_at},
        )


def _reconciler_url(cloud: CloudSettings) -> str:
    return required_setting(
        cloud.cloud_run.reconciler_url,
        "cloud.cloud_run.reconciler_url",
        "SERVO_CLOUD_CLOUD_RUN_RECONCILER_URL",
        "the URL of the Cloud Run reconciler service",
    )


class CloudTasksReconcileQueue(_QueueEdge):
    """Asks the reconciler, through the reconcile queue, to fold ledger objects.

    Args:
        cloud: project, region, reconcile queue, OIDC and reconciler URL settings.
        breaker: the ``cloud_tasks`` circuit breaker.
        client: an official client to use (it is then the caller's to close).

    Raises:
        ConfigError: project, region or `cloud_run.reconciler_url` is not set.
    """

    def __init__(
        self,
        cloud: CloudSettings,
        *,
        breaker: CircuitBreaker | None = None,
        client: CloudTasksClient | None = None,
    ) -> None:
        self._queue = CloudTasksQueue(
            cloud,
            cloud.cloud_tasks.reconcile_queue,
            _reconciler_url(cloud),
            breaker=breaker,
            client=client,
        )

    def enqueue_reconcile(
        self,
        tenant_id: str,
        workspace_id: str,
        paths: Sequence[str],
        *,
        events: Sequence[ev.Event] = (),
        key: str | None = None,
    ) -> EnqueueOutcome:
        """POST ``{"tenant_id", "workspace_id", "paths", "events"}`` to
        ``{reconciler_url}/internal/reconcile``.

        Args:
            paths: the ledger objects written (the reconciler folds them).
            events: events not in the ledger yet (the reconciler writes them).
            key: makes the request idempotent: the task is named ``n_`` +
                sha256(tenant, workspace, key), so the same key within Cloud Tasks'
                dedup window is ALREADY_EXISTS. None: the service names the task.

        Raises:
            TransientStorageError: worth retrying (or the breaker is open).
            ConfigError: the queue, permissions or request need fixing.
        """
        task_id = (
            None if key is None else "n_" + sha256_hex(f"{tenant_id}\x00{workspace_id}\x00{key}")
        )
        body: dict[str, object] = {
            "tenant_id": tenant_id,
            "workspace_id": workspace_id,
            "paths": list(paths),
        }
        if events:
            body["events"] = [e.to_dict() for e in events]
        return self._queue.create(
            "/internal/reconcile",
            json.dumps(body, separators=(",", ":")).encode("utf-8"),
            task_id=task_id,
            context={"tenant_id": tenant_id, "workspace_id": workspace_id},
        )

    def notify(self, tenant_id: str, workspace_id: str, paths: Sequence[str]) -> None:
        """`servo.worker.notify.Notify`: one reconcile request per batch of ledger objects,
        named after its first object, so notifying the same objects again (a retried
        attempt, a resubmitted run) is ALREADY_EXISTS within the dedup window."""
        self.enqueue_reconcile(tenant_id, workspace_id, paths, key=paths[0])

    def report(self, tenant_id: str, workspace_id: str, events: Sequence[ev.Event]) -> None:
        """`servo.worker.notify.Report`: one reconcile request carrying `events`,
        named after the last one, so sending the same report again is
        ALREADY_EXISTS within the dedup window."""
        self.enqueue_reconcile(tenant_id, workspace_id, (), events=events,
                               key=events[-1].event_id)  # fmt: skip
