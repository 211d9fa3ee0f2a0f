"""Clocks for resilience code: the monotonic default and a manual one for tests.

Breakers and backoff loops take ``clock: Callable[[], float]`` (seconds, only
differences matter) and ``sleep: Callable[[float], None]``; `ManualClock` provides
both, so a test moves time forward instead of waiting for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Seconds from an arbitrary origin; only differences are meaningful.
Clock = Callable[[], float]

monotonic: Clock = time.monotonic


class ManualClock:
    """A clock that only moves when told to; `sleep` advances it instantly.

    Args:
        start: the initial reading, seconds.

    Attributes:
        slept: every duration passed to `sleep`, in order (for assertions on backoff).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` (>= 0)."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Record `seconds` and advance by it, without waiting."""
        self.slept.append(seconds)
        self.advance(max(0.0, seconds))
