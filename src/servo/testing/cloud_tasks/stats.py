"""What the local Cloud Tasks server counts, for tests to assert on.

`Stats` is a snapshot (a copy): reading it never races the server. `PushRecord`
describes one HTTP push as it was sent, in send order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PushRecord:
    """One HTTP push.

    Attributes:
        queue: the queue's full name.
        task: the task's full name.
        url: where it was sent.
        retry_count: the task's ``X-CloudTasks-TaskRetryCount`` for this push.
        sent_at: when it was sent (epoch seconds).
        outcome: the HTTP status as text ("200"), "timeout" (dispatch deadline),
            "error" (connection failure) or "dropped" (fault injection: never sent).
        duplicate: whether this is the extra copy of a duplicated push.
    """

    queue: str
    task: str
    url: str
    retry_count: int
    sent_at: float
    outcome: str
    duplicate: bool = False


@dataclass(slots=True)
class Stats:
    """Counters since the server started.

    Attributes:
        tasks_created: CreateTask calls that created a task.
        already_exists: CreateTask calls refused with ALREADY_EXISTS.
        pushes_attempted: HTTP pushes sent (duplicate copies included, drops not).
        pushes_by_outcome: pushes by `PushRecord.outcome` (drops included).
        delivered: tasks done after a 2xx.
        gave_up: tasks deleted because their retry limits were spent.
        deleted: tasks deleted through DeleteTask or PurgeQueue.
        dropped: pushes lost by fault injection.
        duplicated: pushes sent twice by fault injection.
        delayed: pushes delayed by fault injection.
    """

    tasks_created: int = 0
    already_exists: int = 0
    pushes_attempted: int = 0
    pushes_by_outcome: Counter[str] = field(default_factory=Counter)
    delivered: int = 0
    gave_up: int = 0
    deleted: int = 0
    dropped: int = 0
    duplicated: int = 0
    delayed: int = 0

    def copy(self) -> Stats:
        """A snapshot of these counters."""
        return Stats(
            tasks_created=self.tasks_created,
            already_exists=self.already_exists,
            pushes_attempted=self.pushes_attempted,
            pushes_by_outcome=Counter(self.pushes_by_outcome),
            delivered=self.delivered,
            gave_up=self.gave_up,
            deleted=self.deleted,
            dropped=self.dropped,
            duplicated=self.duplicated,
            delayed=self.delayed,
        )
