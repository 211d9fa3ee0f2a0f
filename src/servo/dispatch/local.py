"""The in-process dispatcher: a pool of threads (default) or processes.

`enqueue` submits the request to the pool under its `cloud_task_id`; an id seen
before answers ALREADY_EXISTS, like a real queue. The pool's concurrency is the
limit on attempts running at once. When an attempt ends, `on_done` receives its
report (or the exception if the runtime itself failed), so the runner can fold
the events at once instead of waiting for a ledger notification.

Threads are daemon threads of our own: an asset that never returns cannot keep the
process alive after the run ended (the engine gives up on it by timeout or missed
heartbeat and ignores what it reports later).

Process mode loads the definitions and opens the store again in each worker process
(`ProcessRuntimeSpec`), so nothing unpicklable crosses the boundary. Worker processes
write their events to the ledger and notify the runner through a manager queue
(`on_events`), heartbeats included; each worker has its own connection to it, so a
frozen worker cannot block the others. If a worker process dies, the pool is
broken: every attempt in it ends with the error (the runner redelivers them) and
the next enqueue starts a fresh pool. If the runner dies, its worker processes exit
within a fraction of a second instead of finishing attempts the restarted runner
will redeliver.

`hold` (a graceful stop) starts nothing more: attempts waiting in the pool end with
`NotStarted` instead of running (in process mode, those the pool has not handed to a
worker yet). Worker processes ignore SIGINT: a Ctrl-C reaches the whole process group,
and the runner, not each worker, decides what it stops.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Literal

from servo.dispatch.base import EnqueueOutcome
from servo.dispatch.request import TaskRequest
from servo.engine.events import Event
from servo.errors import ConfigError
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.storage.base import ObjectStore
from servo.worker.runtime import LedgerSink, TaskReport, TaskRuntime

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
POOL_RESTARTS = metrics.counter(
    "servo_worker_pool_restarts_total", "Worker pools replaced after a worker died."
)


@dataclass(frozen=True, slots=True)
class ProcessRuntimeSpec:
    """How a worker process builds its own `TaskRuntime`.

    Attributes:
        defs_source: what `servo.sdk.loader.load_definitions` loads.
        open_store: a picklable callable returning the object store.
        heartbeat_interval_s: seconds between heartbeats of a running attempt.
    """

    defs_source: str
    open_store: Callable[[], ObjectStore]
    heartbeat_interval_s: float | None = None


class NotStarted(Exception):
    """The result of an attempt the pool never started because it was held (`hold`)."""


class _NotifyingLedgerSink(LedgerSink):
    """In a worker process: write each event to the ledger, then notify the runner."""

    def __init__(self, store: ObjectStore, notify: Any) -> None:
        super().__init__(store)
        self._notify = notify

    def emit(self, event: Event) -> str:
        path = super().emit(event)
        self._notify.put(([event], [path]))
        return path


_process_runtime: TaskRuntime | None = None

#: How often a worker process checks that the runner that started it is alive.
_PARENT_CHECK_S = 0.2


def _exit_with_parent(parent: int) -> None:
    """Exit this worker process as soon as its runner is gone.

    A killed runner's workers would otherwise finish attempts the restarted runner
    has already given up on, racing the redelivered attempts. Work in flight is
    lost, which at-least-once delivery allows: the restarted runner redelivers it.
    """
    while True:
        time.sleep(_PARENT_CHECK_S)
        if os.getppid() != parent:
            os._exit(3)


def _init_process(spec: ProcessRuntimeSpec, notify: Any, parent: int) -> None:
    global _process_runtime  # noqa: PLW0603 - one runtime per worker process
    from servo.sdk.loader import load_definitions

    if os.getppid() != parent:
        os._exit(3)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides what a Ctrl-C stops
    threading.Thread(
        target=_exit_with_parent, args=(parent,), name="servo-parent-watch", daemon=True
    ).start()

    store = spec.open_store()
    _process_runtime = TaskRuntime(
        store,
        load_definitions(spec.defs_source),
        worker_id=f"process-{multiprocessing.current_process().pid}",
        sink=_NotifyingLedgerSink(store, notify),
        heartbeat_interval_s=spec.heartbeat_interval_s,
    )


def _execute_in_process(request: TaskRequest) -> TaskReport:
    if _process_runtime is None:  # pragma: no cover - the initializer always ran
        raise RuntimeError("worker process was not initialised")
    report = _process_runtime.execute(request)
    report.events = []  # already delivered through the notification queue
    return report


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
        self._on_events = on_events
        self._concurrency = concurrency
        self._close_timeout_s = close_timeout_s
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._pending = 0
        self._runtime = runtime
        self._threads: _DaemonThreadPool | None = None
        self._processes: ProcessPoolExecutor | None = None
        self._futures: dict[str, Future[TaskReport]] = {}
        self._futures_lock = threading.Lock()
        self._process_spec = process_spec
        self._notify: Any = None
        self._manager: Any = None
        if mode == "thread":
            if runtime is None:
                raise ConfigError("a thread pool needs a TaskRuntime")
            self._threads = _DaemonThreadPool(concurrency, runtime.execute)
        else:
            if process_spec is None:
                raise ConfigError("a process pool needs the definitions source and store")
            # A manager queue, not a multiprocessing.Queue: each worker talks to the
            # manager over its own connection, so a worker frozen or killed mid-write
            # cannot hold a lock that every other worker's events (and close) wait on.
            self._manager = multiprocessing.get_context("spawn").Manager()
            self._notify = self._manager.Queue()
            self._forwarder = threading.Thread(
                target=self._forward, name="servo-worker-events", daemon=True
            )
            self._forwarder.start()
            self._processes = self._new_process_pool()

    def _new_process_pool(self) -> ProcessPoolExecutor:
        assert self._process_spec is not None
        return ProcessPoolExecutor(
            self._concurrency,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=functools.partial(
                _init_process, self._process_spec, self._notify, os.getpid()
            ),
        )

    def _forward(self) -> None:
        try:
            while (written := self._notify.get()) is not None:
                if self._on_events is not None:
                    self._on_events(*written)
        except (EOFError, OSError):  # the manager is gone: the dispatcher is closing
            return

    @property
    def pending(self) -> int:
        """Attempts handed over and not finished."""
        return self._pending

    def stop(self, attempt_id: str, reason: str = "stopped") -> bool:
        """Ask a running attempt to stop (threads only; cooperative); `reason` is why
        the engine ended it (``timeout``, ``cancelled``, ...)."""
        return self._runtime is not None and self._runtime.stop(attempt_id, reason)

    def hold(self) -> None:
        """Start no attempt that has not started; they end with `NotStarted`.

        Attempts already running go on (a graceful stop gives them a grace period).
        In process mode, the attempts the pool already handed to its call queue (at
        most one more than the workers) cannot be held back.
        """
        if self._threads is not None:
            self._threads.hold()
        with self._futures_lock:
            futures = list(self._futures.values())
        for future in futures:
            future.cancel()  # only succeeds for work no worker has taken

    def enqueue(self, request: TaskRequest) -> EnqueueOutcome:
        with ENQUEUE_SECONDS.time():
            with self._lock:
                if request.cloud_task_id in self._seen:
                    ENQUEUED.labels(EnqueueOutcome.ALREADY_EXISTS.value).inc()
                    return EnqueueOutcome.ALREADY_EXISTS
                self._seen.add(request.cloud_task_id)
                self._pending += 1
            QUEUE_DEPTH.inc()
            # No lock is held from here: a future that is already done runs its
            # completion callback inline, and that callback takes the lock.
            if self._threads is not None:
                self._threads.submit(request, lambda result: self._finished(request, result))
            else:
                self._submit_to_processes(request)
        ENQUEUED.labels(EnqueueOutcome.CREATED.value).inc()
        return EnqueueOutcome.CREATED

    def _submit_to_processes(self, request: TaskRequest) -> None:
        assert self._processes is not None
        with _sigint_ignored_while_spawning():
            try:
                future = self._processes.submit(_execute_in_process, request)
            except BrokenProcessPool:
                with self._lock:  # a completion callback may be restarting it too
                    if _is_broken(self._processes):
                        self._restart_processes()
                future = self._processes.submit(_execute_in_process, request)
        with self._futures_lock:
            self._futures[request.attempt_id] = future
        future.add_done_callback(lambda f: self._process_finished(request, f))

    def _restart_processes(self) -> None:
        POOL_RESTARTS.inc()
        log.warning("dispatch.worker_pool_restarted", reason="a worker process died")
        assert self._processes is not None
        self._processes.shutdown(wait=False, cancel_futures=True)
        self._processes = self._new_process_pool()

    def _process_finished(self, request: TaskRequest, future: Future[TaskReport]) -> None:
        with self._futures_lock:
            self._futures.pop(request.attempt_id, None)
        if future.cancelled():
            self._finished(request, NotStarted(request.attempt_id))
            return
        error = future.exception()
        if isinstance(error, BrokenProcessPool):
            with self._lock:
                if self._processes is not None and _is_broken(self._processes):
                    self._restart_processes()
        self._finished(request, future.result() if error is None else error)

    def _finished(self, request: TaskRequest, result: TaskReport | BaseException) -> None:
        with self._lock:
            self._pending -= 1
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
            workers = list(getattr(self._processes, "_processes", {}).values())
            self._processes.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + timeout
            for worker in workers:  # a stuck worker must not hang the runner's exit
                worker.join(max(0.0, deadline - time.monotonic()))
                if worker.is_alive():  # expected when the caller gave no time (a stop)
                    killed = log.info if timeout == 0 else log.warning
                    killed("dispatch.worker_terminated", pid=worker.pid)
                    worker.kill()
                    worker.join(1.0)
            self._notify.put(None)
            self._forwarder.join(self._close_timeout_s)
            self._manager.shutdown()


@contextlib.contextmanager
def _sigint_ignored_while_spawning() -> Iterator[None]:
    """Workers spawned now (the pool spawns them on submit) start with SIGINT ignored.

    An ignored signal stays ignored across exec, and Python keeps it so: a Ctrl-C
    while a worker is still importing cannot kill it (which would break the pool and
    every attempt running in it). The parent ignores SIGINT for the few milliseconds
    of the submit (a Ctrl-C landing exactly then is lost: press it again); only the
    main thread can change it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _is_broken(pool: ProcessPoolExecutor) -> bool:
    return bool(getattr(pool, "_broken", False))
