"""`QueueDispatcher`: an in-memory queue dispatcher whose deliveries a test drives.

It enqueues into a `FakeTaskQueue` (task names deduplicated like Cloud Tasks) and
runs nothing until `deliver` is called, which hands each queued request to a
`TaskRuntime` and reports the end through `on_done`, as a queue pushing to an HTTP
worker would. It is the reference the dispatcher contract suite holds the local
pools (and the serverless and Celery dispatchers) to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from servo.dispatch.base import EnqueueOutcome
from servo.engine.request import TaskRequest
from servo.testing.queue import FakeTaskQueue
from servo.worker.runtime import TaskReport, TaskRuntime

DoneCallback = Callable[[TaskRequest, TaskReport | BaseException], None]


class QueueDispatcher:
    """A `servo.dispatch.base.Dispatcher` over an in-memory queue; see the module doc."""

    def __init__(
        self,
        runtime: TaskRuntime,
        on_done: DoneCallback,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = FakeTaskQueue(clock)
        self._runtime = runtime
        self._on_done = on_done
        self._delivered = 0
        self._lock = threading.Lock()

    def enqueue(self, request: TaskRequest) -> EnqueueOutcome:
        return self.queue.enqueue(request)

    def deliver(self) -> int:
        """Run every request queued and not delivered yet; how many ran."""
        with self._lock:
            pending = self.queue.created[self._delivered :]
            self._delivered += len(pending)
        for request in pending:
            try:
                result: TaskReport | BaseException = self._runtime.execute(request)
            except Exception as exc:  # the worker's answer is an error: reported as such
                result = exc
            self._on_done(request, result)
        return len(pending)

    def stop(self, attempt_id: str, reason: str = "stopped") -> bool:
        """Ask a running attempt to stop (cooperative, as a thread pool's)."""
        return self._runtime.stop(attempt_id, reason)

    def close(self) -> None:
        """Nothing to release."""
