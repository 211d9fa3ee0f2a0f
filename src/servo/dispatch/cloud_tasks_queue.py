"""`CloudTasksQueue`: create HTTP tasks on one Cloud Tasks queue, errors translated.

The shared core of the Cloud Tasks edges (`servo.dispatch.cloud_tasks`): it names
tasks ``{queue}/tasks/{id}``, POSTs a JSON body to a path of the receiving service,
adds the trace context and the OIDC token configuration, sets the dispatch deadline
and `schedule_time`, and turns the official client's answers into Servo's:

- ALREADY_EXISTS is success (`EnqueueOutcome.ALREADY_EXISTS`).
- UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, 5xx and network
  errors raise `TransientStorageError` naming the queue and the task, and count
  against the ``cloud_tasks`` circuit breaker. An open breaker raises
  `TransientStorageError` too (caused by the `CircuitOpenError`) without a call, so
  callers handle every passing failure of the queue one way.
- NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT and the other refusals are
  configuration problems: `ConfigError` says what is wrong and the fix; the breaker
  does not trip (the service answered).

One attempt per call (``retry=None``) within `cloud_tasks.timeout_s`: retrying is
the caller's policy (the engine re-enqueues pending outbox rows, under the same
names). Trace context: a W3C ``traceparent`` header (the current OpenTelemetry
span's, else a fresh one), repeated as ``X-Servo-Traceparent`` because Cloud Run may
replace ``traceparent`` on the way in.

``google-cloud-tasks`` is imported when a client is built or a task created, never
when this module is imported, and through `importlib`: once mypy follows the typed
``google.cloud.tasks_v2`` it takes the ``google.cloud`` namespace as known and then
refuses ``from google.cloud import storage`` (untyped) elsewhere in Servo. Its
proto-plus types are dynamic anyway; `CloudTasksClient` is ``Any`` to the checker.

Metrics: ``servo_queue_enqueue_duration_seconds`` (every create call) and
``servo_cloud_tasks_enqueue_total{outcome}`` (created, already_exists, transient,
config_error, circuit_open).
"""

from __future__ import annotations

import hashlib
import importlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

from servo.dispatch.base import EnqueueOutcome
from servo.errors import CircuitOpenError, ConfigError, TransientStorageError
from servo.observability import metrics, tracecontext
from servo.observability.logging import get_logger
from servo.resilience.circuit_breaker import CircuitBreaker

if TYPE_CHECKING:
    from servo.config.settings import CloudSettings

log = get_logger(__name__)

#: ``google.cloud.tasks_v2.CloudTasksClient`` (see the module docstring).
CloudTasksClient: TypeAlias = Any

ENQUEUE_SECONDS = metrics.histogram(
    "servo_queue_enqueue_duration_seconds", "Time to hand one attempt to the queue."
)
ENQUEUED = metrics.counter(
    "servo_cloud_tasks_enqueue_total",
    "Cloud Tasks create calls by outcome (created, already_exists, transient, "
    "config_error, circuit_open).",
    ["outcome"],
)


def sha256_hex(text: str) -> str:
    """The sha256 of `text` (UTF-8) in hex: the stable part of task ids."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def traceparent() -> str:
    """The trace context a task carries (`servo.observability.tracecontext.current`)."""
    return tracecontext.current()


def _tasks_v2() -> Any:
    """``google.cloud.tasks_v2`` (see the module docstring).

    Raises:
        ConfigError: the serverless extra is not installed.
    """
    try:
        return importlib.import_module("google.cloud.tasks_v2")
    except ImportError as exc:  # pragma: no cover - the serverless extra is missing
        raise ConfigError(
            "cloud.provider gcp needs google-cloud-tasks: pip install 'servo[serverless]'"
        ) from exc


def _client(cloud: CloudSettings) -> CloudTasksClient:
    """The official client: Google's endpoint, or plaintext gRPC to `emulator_host`."""
    from google.auth.exceptions import DefaultCredentialsError

    tasks_v2 = _tasks_v2()

    host = cloud.cloud_tasks.emulator_host
    if not host:
        try:
            return tasks_v2.CloudTasksClient()
        except DefaultCredentialsError as exc:
            raise ConfigError(
                f"Cloud Tasks: no Google credentials ({exc}); set GOOGLE_APPLICATION_CREDENTIALS "
                "or run on Cloud Run, or set cloud.cloud_tasks.emulator_host for a local server"
            ) from exc
    import grpc  # type: ignore[import-untyped]

    transports = importlib.import_module("google.cloud.tasks_v2.services.cloud_tasks.transports")
    transport = transports.CloudTasksGrpcTransport(channel=grpc.insecure_channel(host))
    return tasks_v2.CloudTasksClient(transport=transport)


def required_setting(value: str | None, key: str, env: str, what: str) -> str:
    """`value` (without a trailing slash: URLs get paths appended).

    Raises:
        ConfigError: it is not set (the message names `key`, `env` and `what`).
    """
    if not value:
        raise ConfigError(f"{key} ({env}) is not set: {what}")
    return value.rstrip("/")


class _QueueUnavailable(TransientStorageError):
    """The queue failed in a way worth retrying; trips the circuit breaker
    (`trips_on_unavailability` reads `error_kind`)."""

    error_kind = "unavailable"


class CloudTasksQueue:
    """Creates HTTP POST tasks on one queue of the official client; see the module doc.

    Args:
        cloud: project, region, OIDC, deadline, timeout and emulator settings.
        queue_id: the queue's id (its full name is built from project and region).
        target: the receiving service's base URL (also the default OIDC audience).
        breaker: the ``cloud_tasks`` circuit breaker (default: default thresholds).
        client: an official client to use (it is then the caller's to close).

    Raises:
        ConfigError: project or region is not set, or no credentials are found.
    """

    def __init__(
        self,
        cloud: CloudSettings,
        queue_id: str,
        target: str,
        *,
        breaker: CircuitBreaker | None,
        client: CloudTasksClient | None,
    ) -> None:
        settings = cloud.cloud_tasks
        project = required_setting(
            cloud.gcp.project, "cloud.gcp.project", "SERVO_CLOUD_GCP_PROJECT", "the GCP project"
        )
        region = required_setting(
            cloud.gcp.region, "cloud.gcp.region", "SERVO_CLOUD_GCP_REGION", "the queues' region"
        )
        self.queue_path = f"projects/{project}/locations/{region}/queues/{queue_id}"
        self._target = target
        self._settings = settings
        self._breaker = breaker or CircuitBreaker("cloud_tasks")
        self._owns_client = client is None
        self._client = client if client is not None else _client(cloud)

    @property
    def client(self) -> CloudTasksClient:
        """The official client (shared by queues built with it)."""
        return self._client

    def task_name(self, task_id: str) -> str:
        """The full name of task `task_id` in this queue."""
        return f"{self.queue_path}/tasks/{task_id}"

    def create(
        self,
        path: str,
        body: bytes,
        *,
        task_id: str | None,
        schedule_at_us: int | None = None,
        context: Mapping[str, Any],
    ) -> EnqueueOutcome:
        """POST `body` to the target's `path` as a task named `task_id` (None: the
        service names it), due at `schedule_at_us` (None: now).

        Raises:
            TransientStorageError: worth retrying (or the breaker is open).
            ConfigError: the queue, permissions or request need fixing.
        """
        tasks_v2 = _tasks_v2()
        name = self.task_name(task_id) if task_id else ""
        trace = traceparent()
        http = tasks_v2.HttpRequest(
            url=self._target + path,
            http_method=tasks_v2.HttpMethod.POST,
            headers={
                "Content-Type": "application/json",
                "traceparent": trace,
                "X-Servo-Traceparent": trace,
            },
            body=body,
        )
        if self._settings.service_account_email:
            http.oidc_token = tasks_v2.OidcToken(
                service_account_email=self._settings.service_account_email,
                audience=self._settings.audience or self._target,
            )
        task = tasks_v2.Task(
            name=name,
            http_request=http,
            dispatch_deadline=timedelta(seconds=self._settings.dispatch_deadline_s),
        )
        if schedule_at_us is not None:
            task.schedule_time = datetime.fromtimestamp(schedule_at_us / 1e6, UTC)
        return self._call(task, name or "(unnamed)", context)

    def _call(self, task: Any, name: str, context: Mapping[str, Any]) -> EnqueueOutcome:
        from google.api_core import exceptions as google

        started = time.perf_counter()
        try:
            with self._breaker.guard():
                try:
                    self._client.create_task(
                        parent=self.queue_path,
                        task=task,
                        timeout=self._settings.timeout_s,
                        retry=None,
                    )
                except google.AlreadyExists:
                    outcome = EnqueueOutcome.ALREADY_EXISTS
                except Exception as exc:
                    translated = self._translate(exc, name)
                    if translated is None:
                        raise  # not the queue's answer: a bug, left as it is
                    raise translated from exc
                else:
                    outcome = EnqueueOutcome.CREATED
        except CircuitOpenError as exc:
            ENQUEUED.labels("circuit_open").inc()
            log.warning("cloud_tasks.circuit_open", queue=self.queue_path, task=name, **context)
            raise TransientStorageError(
                f"Cloud Tasks queue {self.queue_path}: task {name} not enqueued, the "
                f"cloud_tasks circuit breaker is open (retry in {exc.retry_after_s:.1f}s)"
            ) from exc
        except TransientStorageError as exc:
            ENQUEUED.labels("transient").inc()
            log.warning(
                "cloud_tasks.enqueue_failed",
                queue=self.queue_path,
                task=name,
                error_type=type(exc.__cause__).__name__,
                error=str(exc),
                **context,
            )
            raise
        except ConfigError as exc:
            ENQUEUED.labels("config_error").inc()
            log.error(
                "cloud_tasks.enqueue_refused",
                queue=self.queue_path,
                task=name,
                error_type=type(exc.__cause__).__name__,
                error=str(exc),
                **context,
            )
            raise
        finally:
            ENQUEUE_SECONDS.observe(time.perf_counter() - started)
        ENQUEUED.labels(outcome.value).inc()
        return outcome

    def _translate(self, exc: Exception, name: str) -> Exception | None:
        """The Servo error for a failed create (see the module docstring); None for
        an exception that is not an answer of the queue or the network."""
        from google.api_core import exceptions as google
        from google.auth import exceptions as auth

        where = f"Cloud Tasks queue {self.queue_path}, task {name}"
        transient = (
            google.ServiceUnavailable,
            google.DeadlineExceeded,
            google.TooManyRequests,
            google.Aborted,
            google.InternalServerError,
            google.BadGateway,
            google.GatewayTimeout,
            google.Unknown,
            google.RetryError,
            auth.TransportError,
            ConnectionError,
            TimeoutError,
        )
        if isinstance(exc, transient):
            return _QueueUnavailable(f"{where}: {type(exc).__name__}: {exc}; retry later")
        queue_id = self.queue_path.rsplit("/", 1)[-1]
        region = self.queue_path.split("/")[3]
        if isinstance(exc, google.NotFound):
            fix = (
                f"create it (gcloud tasks queues create {queue_id} --location {region}) or "
                "point cloud.cloud_tasks.* (SERVO_CLOUD_CLOUD_TASKS_*) and cloud.gcp.* "
                "at an existing queue"
            )
            return ConfigError(f"{where}: the queue does not exist; {fix}")
        if isinstance(exc, google.PermissionDenied):
            account = self._settings.service_account_email
            act_as = (
                f", and roles/iam.serviceAccountUser on {account} to attach its OIDC token"
                if account
                else ""
            )
            return ConfigError(
                f"{where}: permission denied ({exc.message}); grant the identity Servo runs "
                f"as roles/cloudtasks.enqueuer on the queue{act_as}"
            )
        if isinstance(exc, google.Unauthenticated | auth.RefreshError):
            return ConfigError(
                f"{where}: not authenticated ({exc}); provide credentials "
                "(GOOGLE_APPLICATION_CREDENTIALS or the Cloud Run service account)"
            )
        if isinstance(exc, google.InvalidArgument):
            return ConfigError(
                f"{where}: the request was refused as invalid ({exc.message}); check "
                "cloud.cloud_run.*_url, cloud.cloud_tasks.dispatch_deadline_s (15 to 1800) "
                "and cloud.cloud_tasks.service_account_email"
            )
        if isinstance(exc, google.MethodNotImplemented):
            return ConfigError(
                f"{where}: the server does not implement CreateTask ({exc.message}); check "
                "cloud.cloud_tasks.emulator_host (SERVO_CLOUD_CLOUD_TASKS_EMULATOR_HOST)"
            )
        if isinstance(exc, google.GoogleAPICallError):
            return ConfigError(
                f"{where}: refused ({type(exc).__name__}: {exc.message}); check the queue's "
                "state (disabled?) and Servo's cloud.* settings"
            )
        return None

    def close(self) -> None:
        """Close the client's transport if this object built the client."""
        if self._owns_client:
            self._client.transport.close()
