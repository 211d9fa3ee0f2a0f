"""The outbox pump: applies a step's effects to the runner's pool and timer wheel.

It remembers which attempts its pool holds (`held`: handed over, not yet reported
ended), so a request is not handed over twice and the sweep does not call a running
attempt stuck, and it keeps the `DispatchEnqueued` outcomes until the next step
writes them.
"""

from __future__ import annotations

from collections.abc import Callable

from servo.engine import events as ev
from servo.engine.effects import Dispatcher, Effects, TimerDelivery, apply_effects


class OutboxPump:
    """Hands effects to a dispatcher and a timer delivery; see the module docstring."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        timers: TimerDelivery,
        *,
        clock: Callable[[], int],
        new_id: Callable[[], str],
    ) -> None:
        self.dispatcher = dispatcher
        self._timers = timers
        self._clock = clock
        self._new_id = new_id
        self.held: set[str] = set()
        self._outcomes: list[ev.Event] = []

    def apply(self, effects: Effects) -> None:
        """Stop, enqueue and arm what the (durable) step asked for."""
        fresh = [r.dispatch_id for r in effects.enqueue if r.dispatch_id not in self.held]
        self._outcomes.extend(
            apply_effects(
                effects,
                self.dispatcher,
                self._timers,
                now=self._clock(),
                new_id=self._new_id,
                skip=self.held,
            )
        )
        self.held.update(fresh)

    def ended(self, dispatch_ids: list[str]) -> None:
        """These attempts left the pool."""
        self.held.difference_update(dispatch_ids)

    def take_outcomes(self) -> list[ev.Event]:
        """The `DispatchEnqueued` events to report through the next step."""
        outcomes, self._outcomes = self._outcomes, []
        return outcomes
