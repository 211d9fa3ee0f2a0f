"""The in-process dispatcher: a pool of threads (default) or processes.

`enqueue` submits the request to the pool under its `cloud_task_id`; an id seen
before answers ALREADY_EXISTS, like a real queue. The pool's concurrency is the
limit on attempts running at once. When an attempt ends, `on_done` receives its
report (or the exception if the runtime itself failed), so the runner can fold
the events at once instead of waiting for a ledger notification.

Threads are daemon threads of our own: an asset that never returns cannot keep the
process alive after the run ended (the engine gives up on it by timeout or missed
heartbeat and ignores what it reports later).

Process mode (`servo.dispatch.process_pool`) loads the definitions and opens the
store again in each worker process, so nothing unpicklable crosses the boundary;
worker events reach the runner through the pool's manager as they happen. A pool
that breaks (a worker or the manager died) is noticed, torn down and replaced; the
attempt whose worker died ends with `WorkerCrashedError`, the others it held with
`PoolLostError` (the runner redelivers them without charging them).

`hold` (a graceful stop) starts nothing more: attempts waiting in the pool end with
`NotStarted` instead of running (in process mode, those the pool has not handed to a
worker yet).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Literal

from servo.dispatch.base import EnqueueOutcome, NotStarted
from servo.dispatch.process_pool import ProcessPool
from servo.dispatch.process_worker import ProcessRuntimeSpec
from servo.engine.events import Event
from servo.engine.request import TaskRequest
from servo.engine.vocabulary import AbandonReason
from servo.errors import ConfigError
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.worker.runtime import TaskReport, TaskRuntime

__all__ = ["LocalPoolDispatcher", "NotStarted", "PoolMode", "ProcessRuntimeSpec"]

log = get_logger(__name__)

PoolMode = Literal["thread", "process"]
DoneCallback = Callable[[TaskRequest, TaskReport | BaseException], None]
#: Called with events a worker process wrote to the ledger and the paths it wrote.
EventsCallback = Callable[[list[Event], list[str]], None]

QUEUE_DEPTH = metrics.gauge("servo_queue_depth", "Dispatched attempts not yet finished.")
ENQUEUE_SECONDS = metrics.histogram(
    "servo_queue_enqueue_duration_seconds", "Time to hand one attempt to the queue."
)
ENQUEUED = metrics.counter("servo_dispatch_enqueued_total", "Enqueue answers.", ["outcome"])


class _DaemonThreadPool:
    """A fixed number of daemon threads running submitted calls in order."""

    def __init__(self, size: int, run: Callable[[TaskRequest], TaskReport]) -> None:
        self._run = run
        self._work: queue.SimpleQueue[
            tuple[TaskRequest, Callable[[TaskReport | BaseException], None]] | None
        ] = queue.SimpleQueue()
        self._held = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"servo-task-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, request: TaskRequest, done: Callable[[TaskReport | BaseException], None]
    ) -> None:
        self._work.put((request, done))

    def _loop(self) -> None:
        while (item := self._work.get()) is not None:
            request, done = item
            if self._held:
                done(NotStarted(request.attempt_id))
                continue
            try:
                result: TaskReport | BaseException = self._run(request)
            except BaseException as exc:  # reported to the runner, which redelivers
                result = exc
            done(result)

    def hold(self) -> None:
        """Start nothing more: what waits in the queue ends with `NotStarted` now."""
        self._held = True
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                return
            if item is None:  # closing: leave the sentinel for a thread
                self._work.put(None)
                return
            request, done = item
            done(NotStarted(request.attempt_id))

    def close(self, timeout: float) -> None:
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join(timeout)


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
        on_events: EventsCallback | None = None,
        close_timeout_s: float = 5.0,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
        if mode not in ("thread", "process"):
            raise ConfigError(f"unknown pool mode {mode!r}; use 'thread' or 'process'")
        self._on_done = on_done
        self._close_timeout_s = close_timeout_s
        self._seen: set[str] = set()
        self._lock = threading.Lock()  # enqueues only: workers never take it
        # Pending = submitted - finished, each counted by one side without a lock: a
        # lock shared with the workers made the loop wait for a worker that held it
        # while it waited for the interpreter lock (a convoy, ~0.1 ms per enqueue).
        self._submitted = 0
        self._done = 0
        self._done_lock = threading.Lock()  # between workers only
        self._runtime = runtime
        self._threads: _DaemonThreadPool | None = None
        self._processes: ProcessPool | None = None
        if mode == "thread":
            if runtime is None:
                raise ConfigError("a thread pool needs a TaskRuntime")
            self._threads = _DaemonThreadPool(concurrency, runtime.execute)
        else:
            if process_spec is None:
                raise ConfigError("a process pool needs the definitions source and store")
            self._processes = ProcessPool(process_spec, concurrency, self._finished, on_events)

    @property
    def pending(self) -> int:
        """Attempts handed over and not finished."""
        return self._submitted - self._done

    def stop(self, attempt_id: str, reason: str = "stopped") -> bool:
        """Ask a running attempt to stop; `reason` is why the engine ended it
        (``timeout``, ``cancelled``, ...). Threads: cooperative. Processes: only a
        worker that stopped heartbeating is stopped, by killing its process (else it
        would hold its slot forever); other attempts there run on to their end."""
        if self._processes is not None and reason == AbandonReason.HEARTBEAT_MISSED:
            return self._processes.kill(attempt_id, reason)
        return self._runtime is not None and self._runtime.stop(attempt_id, reason)

    def hold(self) -> None:
        """Start no attempt that has not started; they end with `NotStarted`.

        Attempts already running go on (a graceful stop gives them a grace period).
        In process mode, the attempts the pool already handed to its call queue (at
        most one more than the workers) cannot be held back.
        """
        if self._threads is not None:
            self._threads.hold()
        if self._processes is not None:
            self._processes.hold()

    def enqueue(self, request: TaskRequest) -> EnqueueOutcome:
        with ENQUEUE_SECONDS.time():
            with self._lock:
                if request.cloud_task_id in self._seen:
                    ENQUEUED.labels(EnqueueOutcome.ALREADY_EXISTS.value).inc()
                    return EnqueueOutcome.ALREADY_EXISTS
                self._seen.add(request.cloud_task_id)
                self._submitted += 1
            QUEUE_DEPTH.inc()
            # No lock is held from here: an attempt may end (and its completion
            # callback, which takes the lock, run) before the submit returns.
            if self._threads is not None:
                self._threads.submit(request, lambda result: self._finished(request, result))
            else:
                assert self._processes is not None
                self._processes.submit(request)
        ENQUEUED.labels(EnqueueOutcome.CREATED.value).inc()
        return EnqueueOutcome.CREATED

    def _finished(self, request: TaskRequest, result: TaskReport | BaseException) -> None:
        with self._done_lock:
            self._done += 1
        QUEUE_DEPTH.dec()
        self._on_done(request, result)

    def close(self, timeout_s: float | None = None) -> None:
        """Stop the pool; attempts still running after `timeout_s` are left behind.

        Args:
            timeout_s: how long to wait for running attempts (default: the
                dispatcher's `close_timeout_s`); 0 after a stop whose grace has passed.
        """
        timeout = self._close_timeout_s if timeout_s is None else timeout_s
        if self._threads is not None:
            self._threads.close(timeout)
        if self._runtime is not None:
            self._runtime.close()
        if self._processes is not None:
            self._processes.close(timeout)
