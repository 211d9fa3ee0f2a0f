"""What runs inside a worker process of the local process pool.

The pool's initializer (`init_process`) builds one `TaskRuntime` per worker process
from a `ProcessRuntimeSpec` (definitions loaded again, store opened again: nothing
unpicklable crosses the boundary), names the process ``servo-worker``, ignores
SIGINT (the runner decides what a Ctrl-C stops) and exits within a fraction of a
second once the runner that started it is gone.

`execute_in_process` first *claims* the attempt on the pool's channel
(`Claim(attempt_id, pid)`), so the dispatcher knows which process ran what if one
dies; then runs it. Each event is written to the ledger, then put on the channel;
when the channel is gone the event comes back with the attempt's report instead
(it is in the ledger already, and the runner must fold what the ledger holds).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from servo.engine.events import Event
from servo.engine.request import TaskRequest
from servo.storage.base import ObjectStore
from servo.worker.runtime import LedgerSink, TaskReport, TaskRuntime

#: How often a worker process checks that the runner that started it is alive.
_PARENT_CHECK_S = 0.2


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


@dataclass(frozen=True, slots=True)
class Claim:
    """A worker process is about to run an attempt."""

    attempt_id: str
    pid: int


class _NotifyingLedgerSink(LedgerSink):
    """In a worker process: write each event to the ledger, then notify the runner.

    When the channel is gone the event is kept; `take_undelivered` hands it to the
    attempt's report, so the runner still folds what the ledger holds.
    """

    def __init__(self, store: ObjectStore, notify: Any) -> None:
        super().__init__(store)
        self._notify = notify
        self._undelivered: list[Event] = []
        self._lock = threading.Lock()

    def emit(self, event: Event) -> str:
        path = super().emit(event)
        try:
            self._notify.put(([event], [path]))
        except (OSError, EOFError):  # the manager is gone: report it with the result
            with self._lock:
                self._undelivered.append(event)
        return path

    def claim(self, attempt_id: str) -> None:
        """Tell the dispatcher this process runs `attempt_id` (before it starts)."""
        with contextlib.suppress(OSError, EOFError):  # no channel: it runs unclaimed
            self._notify.put(Claim(attempt_id, os.getpid()))

    def take_undelivered(self) -> list[Event]:
        with self._lock:
            taken, self._undelivered = self._undelivered, []
        return taken


_process_runtime: TaskRuntime | None = None
_process_sink: _NotifyingLedgerSink | None = None


def name_process(name: str) -> None:
    """Name this process for ``ps``/``top`` (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w", encoding="ascii") as comm:
        comm.write(name)


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


def init_process(spec: ProcessRuntimeSpec, notify: Any, parent: int) -> None:
    global _process_runtime, _process_sink  # noqa: PLW0603 - one runtime per worker process
    from servo.sdk.loader import load_definitions

    if os.getppid() != parent:
        os._exit(3)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides what a Ctrl-C stops
    name_process("servo-worker")
    threading.Thread(
        target=_exit_with_parent, args=(parent,), name="servo-parent-watch", daemon=True
    ).start()
    store = spec.open_store()
    _process_sink = _NotifyingLedgerSink(store, notify)
    _process_runtime = TaskRuntime(
        store,
        load_definitions(spec.defs_source),
        worker_id=f"process-{os.getpid()}",
        sink=_process_sink,
        heartbeat_interval_s=spec.heartbeat_interval_s,
    )


def execute_in_process(request: TaskRequest) -> TaskReport:
    if _process_runtime is None or _process_sink is None:  # pragma: no cover - initialised
        raise RuntimeError("worker process was not initialised")
    _process_sink.claim(request.attempt_id)
    report = _process_runtime.execute(request)
    report.events = _process_sink.take_undelivered()  # the rest went through the channel
    return report
