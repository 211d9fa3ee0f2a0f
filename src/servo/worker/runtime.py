"""The task runtime: run one attempt of one asset and report it to the ledger.

Steps for a `TaskRequest`:
1. If this attempt, or an earlier attempt the engine gave up for a lost worker
   (`TaskRequest.reusable_attempt_ids`), recorded a result under the task's
   idempotency key, the task already completed: report that result (`TaskFinished`
   with the recorded output) without running.
2. Report `TaskStarted`, load the inputs from their recorded locations, run the
   asset, write its value through the IO layer, record the result under the
   idempotency key and the attempt id, report `TaskFinished`. Every event echoes the
   attempt_id.
3. Any exception — the user's or ours — ends the attempt as failed with its type,
   message and traceback, classified for retries by the policy planned with the run
   (`TaskRequest.retry`), never by the definitions this worker loaded. Nothing here
   raises to the caller except a failure to write the ledger itself.

A small JSON value is not written to a file: it travels inline in `TaskFinished`
(``inline_max_bytes``, ADR 0021).

Results are recorded per attempt
(``results/{tenant}/{workspace}/{key[:2]}/{key}.{attempt_id}.json``, 256 shared
directories rather than a new one per task; records of earlier versions, at
``.../{key}/{attempt_id}.json``, are still found) because an attempt the engine
ended for a timeout or a cancel may still return later: its result must never become
the task's result, and the request for the next attempt never lists it as reusable.

In the embedded runner's thread pool (`records_in_ledger`), a result is not written
as a file: the attempt's `TaskFinished`, which the runner appends to the ledger in its
next batch, is the durable record, and the runtime keeps its recent records in memory
for duplicates and reusing attempts (ADR 0023). A file per task cost the thread pool
more than every other step of the task together.

While attempts run, one heartbeat thread per runtime reports `TaskHeartbeat` for each
of them every `heartbeat_interval_s`. `stop(attempt_id, reason)` asks a running attempt
to stop (cooperatively: assets see `context.stop_requested`); an attempt that returns
after a stop was asked for is reported failed with the stop's reason, its value is not
recorded. Python threads cannot be killed, so the engine also ends the attempt itself
and ignores whatever it reports later.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from servo.engine import events as ev
from servo.engine.ids import now_us
from servo.engine.ledger import LedgerWriter, ProbeMap
from servo.engine.request import TaskRequest
from servo.errors import ObjectExistsError, ObjectNotFoundError
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.resilience.retry import classify
from servo.sdk.context import AssetContext
from servo.sdk.io import INLINE_MAX_BYTES, read_value, write_value
from servo.storage.base import ObjectStore
from servo.worker.capture import capture_output

if TYPE_CHECKING:
    from servo.sdk.definitions import Definitions

log = get_logger(__name__)

TASK_DURATION = metrics.histogram(
    "servo_task_execution_duration_seconds", "Time to run one task attempt."
)
TASK_TOTAL = metrics.counter("servo_task_execution_total", "Task attempts by outcome.", ["status"])
ACTIVE = metrics.gauge("servo_active_executions", "Task attempts running now.")
CODE_MISMATCHES = metrics.counter(
    "servo_code_version_mismatches_total",
    "Attempts not run because their run was planned from other definitions.",
)
HEARTBEAT_ERRORS = metrics.counter(
    "servo_heartbeat_errors_total", "Heartbeats that could not be reported.", ["error_type"]
)

UNREADABLE_RESULTS = metrics.counter(
    "servo_result_records_unreadable_total",
    "Task result records that could not be read (treated as absent).",
)
STOPPED_RESULTS = metrics.counter(
    "servo_stopped_results_discarded_total",
    "Attempts that returned after Servo asked them to stop; their value was discarded.",
    ["reason"],
)

_MESSAGE_LIMIT = 4000
_TRACEBACK_LIMIT = 16000


@dataclass(slots=True)
class TaskReport:
    """What one execution reported.

    Attributes:
        events: the events the sink wrote to the ledger, in order (the embedded runner
            folds them in memory without reading them back).
        paths: the ledger objects they were written to.
        handed: the events the sink took without writing them (held, or handed to
            a remote reconciler inside its report).
        reused: the result came from the idempotency record; the asset did not run.
    """

    events: list[ev.Event] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    handed: list[ev.Event] = field(default_factory=list)
    reused: bool = False


class EventSink(Protocol):
    """Where the runtime sends the events of an attempt."""

    def emit(self, event: ev.Event) -> str | None:
        """Deliver `event`; return the ledger path if it was written, else None
        (the receiver then writes it to the ledger before folding it)."""
        ...


class LedgerSink:
    """Writes each event to the ledger at once (HTTP and process workers)."""

    def __init__(self, store: ObjectStore, *, probe: ProbeMap | None = None) -> None:
        self._store = store
        self._probe = probe  # how batch numbers are probed after a lost race
        self._writers: dict[tuple[str, str], LedgerWriter] = {}
        self._lock = threading.Lock()

    def emit(self, event: ev.Event) -> str:
        return self.append([event])

    def append(self, events: Sequence[ev.Event]) -> str:
        """Write `events` (of one tenant and workspace) as one batch; its path."""
        key = (events[0].tenant_id, events[0].workspace_id)
        with self._lock:
            writer = self._writers.get(key)
            if writer is None:
                writer = self._writers[key] = LedgerWriter(self._store, *key, probe=self._probe)
        return writer.append(events)


def result_path(
    request: TaskRequest, attempt_id: str | None = None, *, key: str | None = None
) -> str:
    """Where an attempt (default: the request's) records the result of the task
    (`key`: the request's idempotency key, when the caller has it already)."""
    key = key or request.idempotency_key
    attempt = attempt_id or request.attempt_id
    return f"results/{request.tenant_id}/{request.workspace_id}/{key[:2]}/{key}.{attempt}.json"


def legacy_result_path(request: TaskRequest, attempt_id: str, *, key: str | None = None) -> str:
    """Where versions before ADR 0021 recorded an attempt's result (one directory per
    task); read so that a run resumed across an upgrade still reuses its results."""
    key = key or request.idempotency_key
    return f"results/{request.tenant_id}/{request.workspace_id}/{key}/{attempt_id}.json"


class _RecentResults:
    """The results this process recorded lately, by (idempotency key, attempt id).

    First record wins, as with files. Bounded: a record matters to a duplicate of its
    attempt or to the next attempt of its task, both soon after it (`LIMIT`).
    """

    LIMIT = 10_000

    def __init__(self) -> None:
        self._results: dict[tuple[str, str], ev.OutputRef] = {}
        self._lock = threading.Lock()

    def get(self, key: str, attempt_id: str) -> ev.OutputRef | None:
        return self._results.get((key, attempt_id))

    def remember(self, key: str, attempt_id: str, output: ev.OutputRef) -> ev.OutputRef:
        """Record `output` unless the attempt has a record; return the one kept."""
        with self._lock:
            kept = self._results.setdefault((key, attempt_id), output)
            if len(self._results) > self.LIMIT:
                del self._results[next(iter(self._results))]
        return kept


@dataclass(slots=True)
class _Running:
    """An attempt running in this runtime, and why it was asked to stop (if it was)."""

    request: TaskRequest
    stop_event: threading.Event
    stop_reason: str | None = None

    def stopped(self) -> bool:
        """Whether the engine asked this attempt to stop (it may be asked any time)."""
        return self.stop_reason is not None


class TaskRuntime:
    """Runs task requests against loaded definitions and one object store.

    With `check_code_version`, a request whose run was planned from definitions of
    another version (`TaskRequest.code_version`) is not run: its attempt fails with
    the non-retryable ``code_version_mismatch`` (scale-out workers, unless
    ``worker.accept_code_version_mismatch``).
    """

    def __init__(
        self,
        store: ObjectStore,
        defs: Definitions,
        *,
        worker_id: str = "local",
        sink: EventSink | None = None,
        clock: Callable[[], int] = now_us,
        heartbeat_interval_s: float | None = None,
        inline_max_bytes: int = INLINE_MAX_BYTES,
        records_in_ledger: bool = False,
        check_code_version: bool = False,
    ) -> None:
        self._store = store
        self._check_code_version = check_code_version
        self._records_in_ledger = records_in_ledger
        self._memory = _RecentResults()
        self._inline_max_bytes = inline_max_bytes
        self._defs = defs
        self._worker_id = worker_id
        self._sink = sink if sink is not None else LedgerSink(store)
        self._clock = clock
        self._heartbeat_interval_s = heartbeat_interval_s
        self._active: dict[str, _Running] = {}
        self._active_lock = threading.Lock()
        self._beating = threading.Event()
        self._closed = threading.Event()

    def stop(self, attempt_id: str, reason: str = "stopped") -> bool:
        """Ask a running attempt to stop; False when it is not running here.

        Args:
            attempt_id: the attempt.
            reason: why the engine ended it (``timeout``, ``cancelled``, ...); the
                attempt, if it returns anyway, is reported failed with this type.
        """
        with self._active_lock:
            found = self._active.get(attempt_id)
            if found is None:
                return False
            if found.stop_reason is None:
                found.stop_reason = reason
        found.stop_event.set()
        return True

    def close(self) -> None:
        """Stop the heartbeat thread, then close the sink (if it has `close`)."""
        self._closed.set()
        close = getattr(self._sink, "close", None)
        if close is not None:
            close()

    def _heartbeat_loop(self) -> None:
        interval = self._heartbeat_interval_s
        assert interval is not None
        while not self._closed.wait(interval):
            with self._active_lock:
                running = [attempt.request for attempt in self._active.values()]
            for request in running:
                try:
                    self._emit(TaskReport(), request, ev.TaskHeartbeat())
                except Exception as exc:  # a missed beat is recoverable; keep beating
                    HEARTBEAT_ERRORS.labels(type(exc).__name__).inc()
                    log.warning(
                        "task.heartbeat_failed",
                        tenant_id=request.tenant_id,
                        run_id=request.run_id,
                        task_key=request.task_key,
                        attempt_id=request.attempt_id,
                        error_type=type(exc).__name__,
                    )

    def _start_heartbeats(self) -> None:
        if self._heartbeat_interval_s is None or self._beating.is_set():
            return
        with self._active_lock:
            if self._beating.is_set():
                return
            self._beating.set()
        threading.Thread(target=self._heartbeat_loop, name="servo-heartbeat", daemon=True).start()

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
        else:
            report.handed.append(event)

    def execute(self, request: TaskRequest, *, first_delivery: bool = False) -> TaskReport:
        """Run one attempt and report it (see the module docstring).

        `first_delivery`: the queue says it never delivered this attempt before, so
        no record of it is looked for (a duplicate delivery the queue cannot tell
        from the first runs the asset again, and the first record wins).
        """
        report = TaskReport()
        key = request.idempotency_key  # a hash: made once per execution
        found = self._recorded_result(request, key, own=not first_delivery)
        if found is not None:
            recorded, recorded_by = found
            report.reused = True
            reused = None if recorded_by == request.attempt_id else recorded_by
            finished = ev.TaskFinished(
                outcome="succeeded", output=recorded, reused_attempt_id=reused
            )
            self._emit(report, request, finished)
            TASK_TOTAL.labels("reused").inc()
            return report
        mismatch = self._code_mismatch(request)
        if mismatch is not None:
            self._emit(report, request, mismatch)
            return report
        self._emit(report, request, ev.TaskStarted(worker_id=self._worker_id))
        started = time.perf_counter()
        running = _Running(request, threading.Event())
        with self._active_lock:
            self._active[request.attempt_id] = running
        self._start_heartbeats()
        ACTIVE.inc()
        try:
            finished = self._run(request, running, key)
        finally:
            ACTIVE.dec()
            with self._active_lock:
                self._active.pop(request.attempt_id, None)
        duration = time.perf_counter() - started
        TASK_DURATION.observe(duration)
        TASK_TOTAL.labels(finished.outcome).inc()
        self._emit(report, request, replace(finished, duration_s=round(duration, 6)))
        return report

    def _code_mismatch(self, request: TaskRequest) -> ev.TaskFinished | None:
        """The failure of an attempt planned from other definitions, or None."""
        planned = request.code_version
        if not self._check_code_version or planned is None:
            return None
        loaded = self._defs.code_version
        if planned == loaded:
            return None
        CODE_MISMATCHES.inc()
        log.warning(
            "task.code_version_mismatch",
            tenant_id=request.tenant_id,
            run_id=request.run_id,
            task_key=request.task_key,
            attempt_id=request.attempt_id,
            planned=planned,
            loaded=loaded,
        )
        return ev.TaskFinished(
            outcome="failed",
            error_type="code_version_mismatch",
            error_message=(
                f"run {request.run_id} was planned from definitions of code version "
                f"{planned}; this worker ({self._worker_id}) loaded {loaded}. Deploy the "
                "same definitions to the workers and start the run again, or set "
                "SERVO_WORKER_ACCEPT_CODE_VERSION_MISMATCH=true to run it on this code"
            ),
            retryable=False,
        )

    def _run(self, request: TaskRequest, running: _Running, key: str) -> ev.TaskFinished:
        def bound() -> Any:  # bound on the paths that log only: binding costs per task
            return log.bind(
                tenant_id=request.tenant_id,
                run_id=request.run_id,
                task_key=request.task_key,
                attempt_id=request.attempt_id,
            )

        try:
            definition = self._defs.assets[request.asset_key]
            values = {i.name: read_value(self._store, i.location, i.format) for i in request.inputs}
            with capture_output(self._store, request) as captured:
                context = AssetContext(
                    run_id=request.run_id,
                    asset_key=request.asset_key,
                    partition_key=request.partition_key,
                    attempt=request.attempt,
                    attempt_id=request.attempt_id,
                    log=captured.log,
                    stop_event=running.stop_event,
                )
                value = definition.call(values, context)
            if running.stopped():
                return _stopped(running, bound())
            location, encoded = write_value(
                self._store,
                request.asset_key,
                request.partition_key,
                request.run_id,
                value,
                request.attempt,
                inline_max_bytes=self._inline_max_bytes,
            )
            output = ev.OutputRef(location, encoded.format, len(encoded.data), encoded.row_count)
            if running.stopped():  # ended while its value was written
                return _stopped(running, bound())
            output = self._record_result(request, output, key)
            return ev.TaskFinished(outcome="succeeded", output=output)
        except Exception as exc:  # user code may raise anything
            if running.stopped():  # it failed because it was told to stop
                return replace(_stopped(running, bound()), error_traceback=_traceback(exc))
            kind = classify(exc)
            # The policy planned with the run decides, not the definitions loaded now.
            retryable = request.retry is not None and request.retry.is_retryable(kind)
            bound().info(  # the run summary reports it; a failing asset is no Servo fault
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
                error_traceback=_traceback(exc),
                retryable=retryable,
            )

    def _recorded_result(
        self, request: TaskRequest, key: str, *, own: bool = True
    ) -> tuple[ev.OutputRef, str] | None:
        """The result this attempt (unless not `own`) or a reusable earlier one
        recorded, and the attempt that recorded it; None when there is none.

        A record that cannot be read (torn by a crash mid-write) counts as absent:
        the attempt runs, and its own record is written beside it.

        With `records_in_ledger`, this process's own records are in memory and no
        file is looked for the request's own attempt: the runner that owns this
        runtime minted it and hands it over once (ADR 0023).
        """
        candidates = (request.attempt_id, *request.reusable_attempt_ids)
        for attempt_id in candidates:
            remembered = self._memory.get(key, attempt_id)
            if remembered is not None:
                return remembered, attempt_id
        if self._records_in_ledger or not own:
            candidates = request.reusable_attempt_ids
        for attempt_id in candidates:
            paths = [result_path(request, attempt_id, key=key)]
            if attempt_id != request.attempt_id:  # a lost attempt of an earlier version
                paths.append(legacy_result_path(request, attempt_id, key=key))
            for path in paths:
                found = self._read_record(request, path)
                if found is not None:
                    return found, attempt_id
        return None

    def _record_result(
        self, request: TaskRequest, output: ev.OutputRef, key: str | None = None
    ) -> ev.OutputRef:
        """Record `output` under the attempt; return the output the record holds.

        The record is create-only: when the same attempt ran twice at once, the first
        record wins and both executions report it (an inline value has no file that
        could arbitrate, ADR 0021). A record that cannot be read counts as absent.

        With `records_in_ledger`, the record is kept in memory only: the attempt's
        `TaskFinished`, which the runner writes to the ledger in its next batch, is
        the durable record (ADR 0023).
        """
        if self._records_in_ledger:
            return self._memory.remember(key or request.idempotency_key, request.attempt_id, output)
        data = json.dumps(
            {
                "location": output.location,
                "format": output.format,
                "size_bytes": output.size_bytes,
                "row_count": output.row_count,
                # An inline location names no asset (ADR 0021): the record does.
                "asset_key": request.asset_key,
            },
            sort_keys=True,
        ).encode("utf-8")
        path = result_path(request, key=key)
        try:
            self._store.put_if_absent(path, data)
        except ObjectExistsError:  # this attempt ran twice; the first record wins
            return self._read_record(request, path) or output
        return output

    def _read_record(self, request: TaskRequest, path: str) -> ev.OutputRef | None:
        """The output recorded at `path`; None when absent or unreadable."""
        try:
            raw = json.loads(self._store.get(path).data)
            return ev.OutputRef(
                raw["location"], raw["format"], raw["size_bytes"], raw.get("row_count")
            )
        except ObjectNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as exc:  # torn or foreign record
            UNREADABLE_RESULTS.inc()
            log.warning(
                "task.result_record_unreadable",
                tenant_id=request.tenant_id,
                run_id=request.run_id,
                task_key=request.task_key,
                attempt_id=request.attempt_id,
                path=path,
                error=str(exc),
            )
            return None


def _stopped(running: _Running, bound: Any) -> ev.TaskFinished:
    """The end of an attempt that returned after the engine asked it to stop."""
    reason = running.stop_reason or "stopped"
    STOPPED_RESULTS.labels(reason).inc()
    bound.info("task.stopped_result_discarded", reason=reason, attempt=running.request.attempt)
    return ev.TaskFinished(
        outcome="failed",
        error_type=reason,
        error_message=(
            f"attempt {running.request.attempt} was stopped by Servo ({reason}); "
            "what it returned afterwards is discarded"
        ),
        retryable=False,
    )


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[-_TRACEBACK_LIMIT:]


def _type_name(exc: BaseException) -> str:
    module = type(exc).__module__
    name = type(exc).__qualname__
    return name if module == "builtins" else f"{module}.{name}"
