"""`FakeTaskQueue`: an in-memory queue that names tasks like Cloud Tasks does.

Creating a task whose name exists answers ALREADY_EXISTS (Cloud Tasks' 409), which
a `Dispatcher` treats as success. Names are remembered for `dedup_window_s` (Cloud
Tasks: 24 hours); after that the same name is accepted again, which is why Servo's
outbox, not the queue, is the real guard against dispatching twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from servo.dispatch.base import EnqueueOutcome
from servo.engine.request import TaskRequest

#: Cloud Tasks remembers a task name for this long after the task was created.
DEDUP_WINDOW_S = 24 * 3600.0


@dataclass
class FakeTaskQueue:
    """Records created tasks; answers ALREADY_EXISTS for a name seen in the window.

    Attributes:
        clock: seconds, for the deduplication window.
        dedup_window_s: how long a name is remembered.
        created: the requests accepted, in order.
        conflicts: how many creates answered ALREADY_EXISTS.
    """

    clock: Callable[[], float]
    dedup_window_s: float = DEDUP_WINDOW_S
    created: list[TaskRequest] = field(default_factory=list)
    conflicts: int = 0
    _names: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enqueue(self, request: TaskRequest) -> EnqueueOutcome:
        now = self.clock()
        with self._lock:
            seen = self._names.get(request.cloud_task_id)
            if seen is not None and now - seen < self.dedup_window_s:
                self.conflicts += 1
                return EnqueueOutcome.ALREADY_EXISTS
            self._names[request.cloud_task_id] = now
            self.created.append(request)
            return EnqueueOutcome.CREATED

    def close(self) -> None:
        """Nothing to release."""
