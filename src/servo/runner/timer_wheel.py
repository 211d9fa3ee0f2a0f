"""The embedded runner's delivery of durable timers.

A timer is durable because it is a row of the `timers` projection (written as a
`TimerRequested` event); delivery only wakes the engine at the due time. Delivery is
behind `servo.engine.effects.TimerDelivery` so scale-out backends can use Cloud Tasks
`schedule_time` or Celery `eta` under the timer's `cloud_task_id`; the embedded
runner uses `TimerWheel`, a heap kept in memory and rebuilt from the projection on
start.

A delivered timer does not act by itself: the timer controller first checks the
watermark (`servo.engine.controllers.timers.fire_due_timers`) and, when the
projection is older than the due time, the timer is delivered again a little later.
"""

from __future__ import annotations

import heapq
import threading


class TimerWheel:
    """An in-memory min-heap of (due_at, timer_id); the latest schedule of an id wins."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, timer_id: object) -> bool:
        return timer_id in self._due

    def schedule(self, timer_id: str, due_at: int) -> None:
        with self._lock:
            self._due[timer_id] = due_at
            heapq.heappush(self._heap, (due_at, timer_id))

    def cancel(self, timer_id: str) -> None:
        with self._lock:
            self._due.pop(timer_id, None)

    def next_due(self) -> int | None:
        """The earliest due time scheduled, or None."""
        with self._lock:
            self._drop_stale()
            return self._heap[0][0] if self._heap else None

    def pop_due(self, now: int) -> list[str]:
        """Timer ids due at `now` or earlier, earliest first; they leave the wheel."""
        out = []
        with self._lock:
            while self._heap:
                self._drop_stale()
                if not self._heap or self._heap[0][0] > now:
                    break
                _, timer_id = heapq.heappop(self._heap)
                del self._due[timer_id]
                out.append(timer_id)
        return out

    def _drop_stale(self) -> None:
        # Entries superseded by a later schedule (or cancelled) are skipped lazily.
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
