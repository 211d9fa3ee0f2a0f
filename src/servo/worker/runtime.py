"""The task runtime: run one attempt of one asset and report it to the ledger.

Steps for a `TaskRequest`:
1. If the task's idempotency key has a recorded result, the task already completed:
   report that result (`TaskFinished` with the recorded output) without running.
2. Report `TaskStarted`, load the inputs from their recorded locations, run the
   asset, write its value through the IO layer, record the result under the
   idempotency key, report `TaskFinished`. Every event echoes the attempt_id.
3. Any exception — the user's or ours — ends the attempt as failed with its type,
   message and traceback, classified for retries. Nothing here raises to the caller
   except a failure to write the ledger itself.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from servo.dispatch.request import TaskRequest
from servo.engine import events as ev
from servo.engine.ids import now_us
from servo.engine.ledger import LedgerWriter
from servo.errors import ObjectExistsError, ObjectNotFoundError
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.resilience.retry import RetryPolicy, classify
from servo.sdk.context import AssetContext
from servo.sdk.io import read_value, write_value
from servo.storage.base import ObjectStore

if TYPE_CHECKING:
    from servo.sdk.definitions import Definitions

log = get_logger(__name__)

TASK_DURATION = metrics.histogram(
    "servo_task_execution_duration_seconds", "Time to run one task attempt."
)
TASK_TOTAL = metrics.counter("servo_task_execution_total", "Task attempts by outcome.", ["status"])
ACTIVE = metrics.gauge("servo_active_executions", "Task attempts running now.")

_MESSAGE_LIMIT = 4000
_TRACEBACK_LIMIT = 16000


@dataclass(slots=True)
class TaskReport:
    """What one execution reported.

    Attributes:
        events: the events the sink wrote to the ledger, in order (the embedded runner
            folds them in memory without reading them back).
        paths: the ledger objects they were written to.
        reused: the result came from the idempotency record; the asset did not run.
    """

    events: list[ev.Event] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    reused: bool = False


class EventSink(Protocol):
    """Where the runtime sends the events of an attempt."""

    def emit(self, event: ev.Event) -> str | None:
        """Deliver `event`; return the ledger path if it was written, else None
        (the receiver then writes it to the ledger before folding it)."""
        ...


class LedgerSink:
    """Writes each event to the ledger at once (HTTP and process workers)."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._writers: dict[tuple[str, str], LedgerWriter] = {}
        self._lock = threading.Lock()

    def emit(self, event: ev.Event) -> str:
        key = (event.tenant_id, event.workspace_id)
        with self._lock:
            writer = self._writers.get(key)
            if writer is None:
                writer = self._writers[key] = LedgerWriter(self._store, *key)
        return writer.append([event])


def result_path(request: TaskRequest) -> str:
    """Where the result of a completed task is recorded, by idempotency key."""
    return f"results/{request.tenant_id}/{request.workspace_id}/{request.idempotency_key}.json"


class TaskRuntime:
    """Runs task requests against loaded definitions and one object store."""

    def __init__(
        self,
        store: ObjectStore,
        defs: Definitions,
        *,
        worker_id: str = "local",
        sink: EventSink | None = None,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self._store = store
        self._defs = defs
        self._worker_id = worker_id
        self._sink = sink if sink is not None else LedgerSink(store)
        self._clock = clock

    def _emit(self, report: TaskReport, request: TaskRequest, payload: ev.Payload) -> None:
        event = ev.Event.new(
            payload,
            tenant_id=request.tenant_id,
            workspace_id=request.workspace_id,
            run_id=request.run_id,
            task_key=request.task_key,
            attempt=request.attempt,
            attempt_id=request.attempt_id,
            emitted_at=self._clock(),
        )
        path = self._sink.emit(event)
        if path is not None:
            report.paths.append(path)
            report.events.append(event)

    def execute(self, request: TaskRequest) -> TaskReport:
        """Run one attempt and report it (see the module docstring)."""
        report = TaskReport()
        recorded = self._recorded_result(request)
        if recorded is not None:
            report.reused = True
            self._emit(report, request, ev.TaskFinished(outcome="succeeded", output=recorded))
            TASK_TOTAL.labels("reused").inc()
            return report
        self._emit(report, request, ev.TaskStarted(worker_id=self._worker_id))
        started = time.perf_counter()
        ACTIVE.inc()
        try:
            finished = self._run(request)
        finally:
            ACTIVE.dec()
        duration = time.perf_counter() - started
        TASK_DURATION.observe(duration)
        TASK_TOTAL.labels(finished.outcome).inc()
        self._emit(report, request, replace(finished, duration_s=round(duration, 6)))
        return report

    def _run(self, request: TaskRequest) -> ev.TaskFinished:
        bound = log.bind(
            tenant_id=request.tenant_id,
            run_id=request.run_id,
            task_key=request.task_key,
            attempt_id=request.attempt_id,
        )
        definition = None
        try:
            definition = self._defs.assets[request.asset_key]
            values = {i.name: read_value(self._store, i.location, i.format) for i in request.inputs}
            context = AssetContext(
                run_id=request.run_id,
                asset_key=request.asset_key,
                partition_key=request.partition_key,
                attempt=request.attempt,
                attempt_id=request.attempt_id,
                log=bound,
            )
            value = definition.call(values, context)
            location, encoded = write_value(
                self._store, request.asset_key, request.partition_key, request.run_id, value
            )
            output = ev.OutputRef(location, encoded.format, len(encoded.data), encoded.row_count)
            self._record_result(request, output)
            return ev.TaskFinished(outcome="succeeded", output=output)
        except Exception as exc:  # user code may raise anything
            policy = getattr(definition, "retry", None)
            kind = classify(exc)
            retryable = isinstance(policy, RetryPolicy) and policy.is_retryable(kind)
            bound.warning(
                "task.failed",
                error_type=type(exc).__name__,
                error_kind=kind.value,
                retryable=retryable,
                attempt=request.attempt,
            )
            return ev.TaskFinished(
                outcome="failed",
                error_type=_type_name(exc),
                error_message=str(exc)[:_MESSAGE_LIMIT],
                error_traceback="".join(traceback.format_exception(exc))[-_TRACEBACK_LIMIT:],
                retryable=retryable,
            )

    def _recorded_result(self, request: TaskRequest) -> ev.OutputRef | None:
        try:
            raw = json.loads(self._store.get(result_path(request)).data)
        except ObjectNotFoundError:
            return None
        return ev.OutputRef(**raw)

    def _record_result(self, request: TaskRequest, output: ev.OutputRef) -> None:
        data = json.dumps(
            {
                "location": output.location,
                "format": output.format,
                "size_bytes": output.size_bytes,
                "row_count": output.row_count,
            },
            sort_keys=True,
        ).encode("utf-8")
        with contextlib.suppress(ObjectExistsError):  # another attempt recorded it first
            self._store.put_if_absent(result_path(request), data)


def _type_name(exc: BaseException) -> str:
    module = type(exc).__module__
    name = type(exc).__qualname__
    return name if module == "builtins" else f"{module}.{name}"
