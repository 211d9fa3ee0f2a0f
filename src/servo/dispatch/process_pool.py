"""Worker processes of the local dispatcher: a pool that notices it broke and replaces itself.

Two parts, each replaced on its own when it breaks:

- the **channel**: a manager process with a queue that workers put their events on
  (`LedgerSink` writes each event to the ledger first), and a forwarder thread here
  that hands them to the runner. Each worker talks to the manager over its own
  connection, so a worker frozen or killed mid-write holds no lock the others need.
- a **generation**: one spawn `ProcessPoolExecutor` bound to the channel, and the
  attempts submitted to it. Before running an attempt a worker *claims* it: it puts
  ``(attempt_id, pid)`` on the channel, so the dispatcher knows which process ran what.

A generation is **lost** when one of its workers dies (the executor is then broken
and ends every process in it) or when its channel dies (its workers can no longer
report). It is noticed by the executor's own failure callback, by the forwarder
(the manager's connection closes), and by a health check before each submit. Then,
once: the dead workers' exit codes are read, the channel is flushed so every claim
is in, the generation's other workers are killed and waited for (nothing of it
writes any more), and each attempt it held ends with an error handed to `done`:

- `WorkerCrashedError` for the attempt whose worker died ("worker process exited
  with code 1 while running a"): it alone is charged (the runner records
  ``worker_lost``, which counts against its redelivery budget);
- `PoolLostError` for every other attempt, started or not: ended through no fault
  of its own (the runner records ``pool_lost``, which is redelivered free).

The next submit builds a fresh generation (and channel, if that was lost). Every
loss is logged and counted (`servo_worker_pool_losses_total{cause}`).

What runs inside a worker process is `servo.dispatch.process_worker`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for
from multiprocessing.managers import SyncManager
from multiprocessing.process import BaseProcess
from typing import Any

from servo.dispatch.base import NotStarted
from servo.dispatch.process_worker import (
    Claim,
    ProcessRuntimeSpec,
    execute_in_process,
    init_process,
    name_process,
)
from servo.engine.events import Event
from servo.engine.request import TaskRequest
from servo.errors import PoolLostError, WorkerCrashedError, WorkerPoolError
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.worker.runtime import TaskReport

log = get_logger(__name__)

Done = Callable[[TaskRequest, TaskReport | BaseException], None]
#: Called with events a worker process wrote to the ledger and the paths it wrote.
EventsCallback = Callable[[list[Event], list[str]], None]

POOL_RESTARTS = metrics.counter(
    "servo_worker_pool_restarts_total", "Worker pools replaced after a worker died."
)
POOL_LOSSES = metrics.counter(
    "servo_worker_pool_losses_total",
    "Worker pools torn down because they broke, by cause.",
    ["cause"],
)
WORKERS_KILLED = metrics.counter(
    "servo_worker_processes_killed_total", "Unresponsive worker processes killed.", ["reason"]
)
#: How long a lost generation's teardown waits for claims and for its workers to exit.
_TEARDOWN_WAIT_S = 5.0
_SPAWN = multiprocessing.get_context("spawn")


@dataclass(frozen=True, slots=True)
class _Flush:
    """A marker: every claim put on the channel before it has been read."""

    number: int


# ---------------------------------------------------------------- the channel
class _Channel:
    """A manager process, its event queue, and the forwarder thread reading it."""

    def __init__(
        self, on_events: EventsCallback | None, on_lost: Callable[[_Channel], None]
    ) -> None:
        self._on_events = on_events
        self._on_lost = on_lost
        self.manager = SyncManager(ctx=_SPAWN)
        self.manager.start(name_process, ("servo-manager",))
        self.queue: Any = self.manager.Queue()
        self.claims: dict[str, int] = {}
        self._flushed = threading.Condition()
        self._flush_seen = 0
        self._flush_numbers = itertools.count(1)
        self.closing = False
        self.forwarder = threading.Thread(target=self._forward, name="servo-worker-events",
                                          daemon=True)  # fmt: skip
        self.forwarder.start()

    @property
    def manager_pid(self) -> int | None:
        process = getattr(self.manager, "_process", None)
        return None if process is None else process.pid

    def alive(self) -> bool:
        """Whether the manager process and the forwarder still run."""
        process: BaseProcess | None = getattr(self.manager, "_process", None)
        return self.forwarder.is_alive() and (process is None or process.is_alive())

    def _forward(self) -> None:
        try:
            while (item := self.queue.get()) is not None:
                if isinstance(item, Claim):
                    self.claims[item.attempt_id] = item.pid
                elif isinstance(item, _Flush):
                    with self._flushed:
                        self._flush_seen = item.number
                        self._flushed.notify_all()
                elif self._on_events is not None:
                    self._on_events(*item)  # (events, the ledger paths they are in)
        except (OSError, EOFError):  # the manager is gone
            if not self.closing:
                self._on_lost(self)

    def flush(self, timeout: float) -> bool:
        """Wait until everything put on the queue before now was read; False if not."""
        number = next(self._flush_numbers)
        try:
            self.queue.put(_Flush(number))
        except (OSError, EOFError):
            return False
        with self._flushed:
            return self._flushed.wait_for(lambda: self._flush_seen >= number, timeout)

    def close(self, timeout: float) -> None:
        self.closing = True
        with contextlib.suppress(OSError, EOFError):
            self.queue.put(None)
        self.forwarder.join(timeout)
        with contextlib.suppress(OSError, EOFError):
            self.manager.shutdown()


# ------------------------------------------------------------- a generation
@dataclass(eq=False)
class _Generation:
    """One executor and the attempts it holds (by attempt id)."""

    channel: _Channel
    executor: ProcessPoolExecutor
    attempts: dict[str, tuple[TaskRequest, Future[TaskReport]]] = field(default_factory=dict)
    workers: dict[int, BaseProcess] = field(default_factory=dict)
    lost: bool = False
    reaped: bool = False

    def note_workers(self) -> None:
        """Remember the executor's processes (it spawns them on submit)."""
        self.workers.update(getattr(self.executor, "_processes", None) or {})

    def exit_codes(self) -> dict[int, int]:
        """Exit codes of workers that ended by themselves (the executor ends the others
        with SIGTERM once it is broken)."""
        codes = {}
        for pid, process in list(self.workers.items()):
            if process not in _running([process]):
                process.join(1.0)  # its sentinel closes a moment before it can be reaped
                code = process.exitcode
                if code is not None and code != -signal.SIGTERM:
                    codes[pid] = code
        return codes


class ProcessPool:
    """Runs attempts in worker processes; see the module docstring.

    Args:
        spec: how workers build their runtime.
        size: worker processes per generation.
        done: receives each attempt's report, or the error that ended it.
        on_events: receives worker events as they are reported.
    """

    def __init__(
        self, spec: ProcessRuntimeSpec, size: int, done: Done, on_events: EventsCallback | None
    ) -> None:
        self._spec = spec
        self._size = size
        self._done = done
        self._on_events = on_events
        self._lock = threading.Lock()
        self._channel: _Channel | None = None
        self._generation: _Generation | None = None
        self._reapers: list[threading.Thread] = []
        self._generation_for()  # start the manager now: the first submit is then quick

    # ----------------------------------------------------------------- submit
    def submit(self, request: TaskRequest) -> None:
        """Hand `request` to a healthy generation (building one if needed)."""
        generation = self._generation_for()
        with _sigint_ignored_while_spawning():
            try:
                future = generation.executor.submit(execute_in_process, request)
            except (BrokenProcessPool, RuntimeError):  # broke since the health check
                self._lose(generation, "worker_died")
                generation = self._generation_for()
                future = generation.executor.submit(execute_in_process, request)
        generation.note_workers()
        with self._lock:
            generation.attempts[request.attempt_id] = (request, future)
            reaped = generation.reaped
        if reaped:  # lost, and its teardown ended what it held before this was in
            self._end(generation, request.attempt_id, PoolLostError("the worker pool broke"))
            return
        # No lock is held here: a future that is already done runs this callback inline.
        future.add_done_callback(lambda f: self._finished(generation, request, f))

    def _generation_for(self) -> _Generation:
        """The current generation, after a health check; a new one if it was lost."""
        lost: list[tuple[_Generation, str]] = []
        with self._lock:
            current = self._generation
            if current is not None and not current.channel.alive():
                lost.append((current, "manager_died"))
            elif current is not None and getattr(current.executor, "_broken", False):
                lost.append((current, "worker_died"))
        for generation, cause in lost:
            self._lose(generation, cause)
        with self._lock:
            if self._generation is None:
                if self._channel is None or not self._channel.alive():
                    self._channel = _Channel(self._on_events, self._channel_lost)
                self._generation = _Generation(self._channel, self._new_executor(self._channel))
                if lost:
                    POOL_RESTARTS.inc()
            return self._generation

    def _new_executor(self, channel: _Channel) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._size,
            mp_context=_SPAWN,
            initializer=functools.partial(init_process, self._spec, channel.queue, os.getpid()),
        )

    # ----------------------------------------------------------------- endings
    def _finished(
        self, generation: _Generation, request: TaskRequest, future: Future[TaskReport]
    ) -> None:
        error = None if future.cancelled() else future.exception()
        if isinstance(error, BrokenProcessPool):
            self._lose(generation, "worker_died")  # its teardown ends this attempt
            return
        if future.cancelled():
            self._end(generation, request.attempt_id, NotStarted(request.attempt_id))
        else:
            self._end(generation, request.attempt_id, future.result() if error is None else error)

    def _end(
        self, generation: _Generation, attempt_id: str, result: TaskReport | BaseException
    ) -> None:
        """Report an attempt's end unless something reported it already."""
        with self._lock:
            found = generation.attempts.pop(attempt_id, None)
            generation.channel.claims.pop(attempt_id, None)
        if found is not None:
            self._done(found[0], result)

    def _channel_lost(self, channel: _Channel) -> None:
        with self._lock:
            generation = self._generation
        if generation is not None and generation.channel is channel:
            self._lose(generation, "manager_died")

    def _lose(self, generation: _Generation, cause: str) -> None:
        """Tear `generation` down once (see the module docstring); no lock held after."""
        with self._lock:
            if generation.lost:
                return
            generation.lost = True
            if self._generation is generation:
                self._generation = None
            if cause == "manager_died" and self._channel is generation.channel:
                self._channel = None
            codes = generation.exit_codes()  # now, before anything else ends workers
        POOL_LOSSES.labels(cause).inc()
        log.warning(
            "dispatch.worker_pool_lost",
            cause=cause,
            attempts=len(generation.attempts),
            dead_workers=codes,
            manager_pid=generation.channel.manager_pid,
        )
        reaper = threading.Thread(
            target=self._tear_down, args=(generation, cause, codes), name="servo-pool-reaper",
            daemon=True,
        )  # fmt: skip
        with self._lock:
            self._reapers.append(reaper)
        reaper.start()

    def _tear_down(self, generation: _Generation, cause: str, codes: dict[int, int]) -> None:
        channel = generation.channel
        if cause != "manager_died":
            channel.flush(_TEARDOWN_WAIT_S)  # every claim of a started attempt is in
        with self._lock:  # taken before the shutdown cancels some (not a `hold`)
            held, generation.attempts = generation.attempts, {}
            generation.reaped = True
            claims = {attempt_id: channel.claims.pop(attempt_id, None) for attempt_id in held}
        generation.executor.shutdown(wait=False, cancel_futures=True)
        # After a worker died the executor ends the others itself; a lost manager ends
        # none, and they could not report: end them now.
        wait = 0.0 if cause == "manager_died" else _TEARDOWN_WAIT_S
        _end_processes(list(generation.workers.values()), wait)
        if cause == "manager_died":
            channel.close(0.0)
        for attempt_id, (request, _) in held.items():
            self._done(request, _loss_error(request, cause, claims[attempt_id], codes))

    # ------------------------------------------------------------------ control
    def kill(self, attempt_id: str, reason: str) -> bool:
        """SIGKILL the worker process running `attempt_id`; False if none runs it.

        For a worker that stopped answering (its heartbeats stopped): it would hold
        its slot forever, and with it the pool. Its pool breaks and is replaced; the
        other attempts it held are lost with it, free (`PoolLostError`).
        """
        with self._lock:
            generation = self._generation
            pid = None if generation is None else generation.channel.claims.get(attempt_id)
            worker = None if generation is None or pid is None else generation.workers.get(pid)
        if worker is None or not _running([worker]):
            return False
        log.warning("dispatch.worker_killed", pid=pid, attempt_id=attempt_id, reason=reason)
        WORKERS_KILLED.labels(reason).inc()
        worker.kill()
        return True

    def hold(self) -> None:
        """Cancel attempts no worker has taken yet (they end with `NotStarted`)."""
        with self._lock:
            held = [] if self._generation is None else list(self._generation.attempts.values())
        for _, future in held:
            future.cancel()

    def close(self, timeout: float) -> None:
        """Stop the pool; workers still running after `timeout` are killed."""
        with self._lock:
            generation, self._generation = self._generation, None
            channel, self._channel = self._channel, None
            reapers = list(self._reapers)
            if generation is not None:
                generation.lost = True  # a worker killed now is not a loss to report
        if generation is not None:
            generation.note_workers()
            generation.executor.shutdown(wait=False, cancel_futures=True)
            _end_processes(list(generation.workers.values()), timeout, quiet=timeout == 0)
        for reaper in reapers:
            reaper.join(_TEARDOWN_WAIT_S)
        if channel is not None:
            channel.close(_TEARDOWN_WAIT_S)


def _loss_error(
    request: TaskRequest, cause: str, pid: int | None, codes: dict[int, int]
) -> WorkerPoolError:
    if pid is not None and pid in codes:
        code = codes[pid]
        how = f"exited with code {code}" if code >= 0 else f"was killed by signal {-code}"
        return WorkerCrashedError(f"worker process {how} while running {request.task_key}")
    if cause == "manager_died":
        return PoolLostError("the worker pool's manager process died; redelivered")
    return PoolLostError(
        "another worker process of the pool died "
        f"({', '.join(f'pid {p} code {c}' for p, c in codes.items()) or 'unknown'}); redelivered"
    )


def _end_processes(workers: list[BaseProcess], timeout: float, *, quiet: bool = False) -> None:
    """Wait up to `timeout` for `workers` to exit, then kill the rest and wait again.

    Liveness is read from each process's sentinel, never by reaping it: the
    executor's own thread may reap the same processes at the same time.
    """
    alive = _running(workers)
    if alive and timeout > 0:
        wait_for([w.sentinel for w in alive], timeout)
        alive = _running(alive)
    for worker in alive:
        (log.info if quiet else log.warning)("dispatch.worker_terminated", pid=worker.pid)
        worker.kill()
    if alive:
        wait_for([w.sentinel for w in alive], 1.0)


def _running(workers: list[BaseProcess]) -> list[BaseProcess]:
    ended = set(wait_for([w.sentinel for w in workers], 0)) if workers else set()
    return [w for w in workers if w.sentinel not in ended]


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
