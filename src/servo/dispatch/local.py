"""The in-process dispatcher: a pool of threads (default) or processes.

`enqueue` submits the request to the pool under its `cloud_task_id`; an id seen
before answers ALREADY_EXISTS, like a real queue. The pool's concurrency is the
limit on attempts running at once. When an attempt ends, `on_done` receives its
report (or the exception if the runtime itself failed), so the runner can fold
the events at once instead of waiting for a ledger notification.

Process mode loads the definitions and opens the store again in each worker
process (`ProcessRuntimeSpec`), so nothing unpicklable crosses the boundary.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from servo.dispatch.base import EnqueueOutcome
from servo.dispatch.request import TaskRequest
from servo.errors import ConfigError
from servo.observability import metrics
from servo.storage.base import ObjectStore
from servo.worker.runtime import TaskReport, TaskRuntime

PoolMode = Literal["thread", "process"]
DoneCallback = Callable[[TaskRequest, TaskReport | BaseException], None]

QUEUE_DEPTH = metrics.gauge("servo_queue_depth", "Dispatched attempts not yet finished.")
ENQUEUE_SECONDS = metrics.histogram(
    "servo_queue_enqueue_duration_seconds", "Time to hand one attempt to the queue."
)
ENQUEUED = metrics.counter("servo_dispatch_enqueued_total", "Enqueue answers.", ["outcome"])


@dataclass(frozen=True, slots=True)
class ProcessRuntimeSpec:
    """How a worker process builds its own `TaskRuntime`.

    Attributes:
        defs_source: what `servo.sdk.loader.load_definitions` loads.
        open_store: a picklable callable returning the object store.
    """

    defs_source: str
    open_store: Callable[[], ObjectStore]


_process_runtime: TaskRuntime | None = None


def _init_process(spec: ProcessRuntimeSpec) -> None:
    global _process_runtime  # noqa: PLW0603 - one runtime per worker process
    from servo.sdk.loader import load_definitions

    _process_runtime = TaskRuntime(
        spec.open_store(), load_definitions(spec.defs_source), worker_id="process"
    )


def _execute_in_process(request: TaskRequest) -> TaskReport:
    if _process_runtime is None:  # pragma: no cover - the initializer always ran
        raise RuntimeError("worker process was not initialised")
    return _process_runtime.execute(request)


class LocalPoolDispatcher:
    """Runs attempts in a local pool; see the module docstring."""

    def __init__(
        self,
        runtime: TaskRuntime | None,
        on_done: DoneCallback,
        *,
        concurrency: int = 4,
        mode: PoolMode = "thread",
        process_spec: ProcessRuntimeSpec | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
        self._on_done = on_done
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._pending = 0
        self._executor: Executor
        if mode == "thread":
            if runtime is None:
                raise ConfigError("a thread pool needs a TaskRuntime")
            self._execute: Callable[[TaskRequest], TaskReport] = runtime.execute
            self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="servo-task")
        elif mode == "process":
            if process_spec is None:
                raise ConfigError("a process pool needs the definitions source and store")
            self._execute = _execute_in_process
            self._executor = ProcessPoolExecutor(
                concurrency, initializer=_init_process, initargs=(process_spec,)
            )
        else:
            raise ConfigError(f"unknown pool mode {mode!r}; use 'thread' or 'process'")

    @property
    def pending(self) -> int:
        """Attempts handed over and not finished."""
        return self._pending

    def enqueue(self, request: TaskRequest) -> EnqueueOutcome:
        with ENQUEUE_SECONDS.time(), self._lock:
            if request.cloud_task_id in self._seen:
                ENQUEUED.labels(EnqueueOutcome.ALREADY_EXISTS.value).inc()
                return EnqueueOutcome.ALREADY_EXISTS
            self._seen.add(request.cloud_task_id)
            self._pending += 1
            QUEUE_DEPTH.inc()
            future = self._executor.submit(self._execute, request)
        future.add_done_callback(lambda f: self._finished(request, f))
        ENQUEUED.labels(EnqueueOutcome.CREATED.value).inc()
        return EnqueueOutcome.CREATED

    def _finished(self, request: TaskRequest, future: Future[TaskReport]) -> None:
        with self._lock:
            self._pending -= 1
        QUEUE_DEPTH.dec()
        error = future.exception()
        self._on_done(request, future.result() if error is None else error)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
