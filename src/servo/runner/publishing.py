"""When the embedded runner publishes, and who hears of it.

Projections are published every `interval_s` while a run goes on, and at once when
it ends or stops. A periodic publish gives way to a timer due within
`TIMER_HORIZON_US` (publish after it fires, not in its way), but never for more than
`MAX_DELAY` intervals. After each publish the listeners (read models such as the
catalog) get the snapshot; one that raises is logged and counted, and the run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from servo.engine.snapshot import PublishListener, Snapshot
from servo.observability import metrics
from servo.observability.logging import get_logger

log = get_logger(__name__)

LISTENER_ERRORS = metrics.counter(
    "servo_publish_listener_errors_total", "Publish listeners that raised.", ["error_type"]
)

#: A periodic publish waits while a timer is due within this horizon...
TIMER_HORIZON_US = 100_000
#: ...but never past this many publish intervals.
MAX_DELAY = 5


class Publishing:
    """The publish cadence and the listeners; see the module docstring."""

    def __init__(
        self, interval_s: float, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._monotonic = monotonic
        self._last = 0.0
        self.listeners: list[PublishListener] = []

    def due(self, next_timer_in_us: int | None) -> bool:
        """Whether a periodic publish is due, given when the next timer fires."""
        elapsed = self._monotonic() - self._last
        if elapsed < self.interval_s:
            return False
        if elapsed >= MAX_DELAY * self.interval_s:
            return True
        return next_timer_in_us is None or next_timer_in_us >= TIMER_HORIZON_US

    def seconds_left(self) -> float:
        """Seconds until the next periodic publish is due."""
        return max(0.0, self.interval_s - (self._monotonic() - self._last))

    def published(self, snapshot: Callable[[], Snapshot]) -> None:
        """Record a publish and tell the listeners."""
        self._last = self._monotonic()
        if not self.listeners:
            return
        taken = snapshot()
        for listener in self.listeners:
            try:
                listener(taken)
            except Exception as exc:  # a read model failing must not stop the run
                LISTENER_ERRORS.labels(type(exc).__name__).inc()
                log.error(
                    "runner.publish_listener_failed",
                    listener=getattr(listener, "__qualname__", repr(listener)),
                    generation=taken.generation,
                    error_type=type(exc).__name__,
                    error=str(exc),
                )
