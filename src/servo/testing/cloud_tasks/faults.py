"""Fault injection for chaos tests: pushes dropped, duplicated or delayed, by seed.

Each push draws three numbers from one ``random.Random(seed)``, whatever the
probabilities, so the same seed and the same order of pushes give the same faults.
Pushes are decided in dispatch order by the server's single pusher loop, so tasks
created one after the other on one queue meet the same faults run after run.

The faults:

- **drop**: the push is lost and the task is *not* retried, as if the delivery was
  acknowledged on the way and never reached the handler. Cloud Tasks promises
  at-least-once delivery, so this is harsher than the real service; it stands for
  the worst case Servo must survive (a lost push), which its anti-entropy sweep and
  timers must recover from.
- **duplicate**: the push is sent twice at once; the first answer decides the task's
  fate, the copy's answer is only counted (Cloud Tasks may deliver a task more than
  once).
- **delay**: the push waits `delay_s` before it is sent (the dispatch deadline starts
  after the wait).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Faults:
    """What can go wrong with a push, and how often.

    Attributes:
        drop: probability that a push is lost (the task is not retried).
        duplicate: probability that a push is sent twice.
        delay: probability that a push is delayed by `delay_s`.
        delay_s: seconds a delayed push waits.
        seed: seed of the generator (None: unpredictable).
    """

    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    delay_s: float = 0.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "delay"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Faults.{name} is a probability (0 to 1), not {value}")
        if self.delay_s < 0:
            raise ValueError("Faults.delay_s must be >= 0")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What happens to one push.

    Attributes:
        drop: the push is lost.
        duplicate: the push is sent twice.
        delay_s: seconds to wait before sending (0: none).
    """

    drop: bool = False
    duplicate: bool = False
    delay_s: float = 0.0


NO_FAULT = FaultPlan()


class FaultInjector:
    """Draws a `FaultPlan` per push from the current `Faults`; thread-safe."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._lock = threading.Lock()
        self.set(faults or Faults())

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    def set(self, faults: Faults) -> None:
        """Put `faults` in force and restart the generator from their seed."""
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)

    def plan(self) -> FaultPlan:
        """The fate of the next push."""
        with self._lock:
            f = self._faults
            if not (f.drop or f.duplicate or f.delay):
                return NO_FAULT
            drop, duplicate, delay = self._rng.random(), self._rng.random(), self._rng.random()
        return FaultPlan(
            drop=drop < f.drop,
            duplicate=duplicate < f.duplicate,
            delay_s=f.delay_s if delay < f.delay else 0.0,
        )
