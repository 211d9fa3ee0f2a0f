"""What a reconcile step asks the world to do, and the protocols that do it.

The step (`servo.engine.reconcile`) returns `Effects` only after the events that
caused them are in the ledger. A caller applies them through two injected protocols:

- a `Dispatcher` hands each `TaskRequest` to an execution backend under the
  request's deterministic `cloud_task_id` ("already exists" is success: the same
  attempt was handed over before) and asks attempts the engine ended to stop;
- a `TimerDelivery` wakes the engine when a timer is due (the embedded timer wheel,
  Cloud Tasks `schedule_time`, Celery `eta`).

Outcomes go back to the engine as events through the next step (`apply_effects`
returns the `DispatchEnqueued` events to report).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from servo.engine import events as ev
from servo.engine.request import TaskRequest


class EnqueueOutcome(StrEnum):
    """What the queue answered."""

    CREATED = "created"
    ALREADY_EXISTS = "already_exists"


class Dispatcher(Protocol):
    """Hands task requests to an execution backend."""

    def enqueue(self, request: TaskRequest) -> EnqueueOutcome:
        """Enqueue `request` under `request.cloud_task_id`.

        Returns CREATED, or ALREADY_EXISTS when that id was enqueued before (success).

        Raises:
            TransientStorageError: the queue failed in a way worth retrying.
        """
        ...

    def stop(self, attempt_id: str, reason: str = "stopped") -> bool:
        """Ask a running attempt to stop because the engine ended it (`reason`);
        True when a running attempt was found."""
        ...

    def close(self) -> None:
        """Stop accepting work and release resources (running work may finish)."""
        ...


class TimerDelivery(Protocol):
    """Wakes the engine when a timer is due."""

    def schedule(self, timer_id: str, due_at: int) -> None:
        """Deliver `timer_id` at `due_at` (epoch µs); scheduling again moves it."""
        ...


@dataclass(slots=True)
class Effects:
    """What to do once a step's events are durable.

    Attributes:
        enqueue: requests to hand to the dispatcher.
        stop: (attempt id, reason) of attempts the engine ended.
        arm: (timer id, due at) of timers to deliver.
        published: whether the step published the projections.
        swept: tasks the step's anti-entropy sweep examined (0: no sweep); a caller
            spaces its sweeps by it, so sweeping a huge run stays a small share of
            the work.
    """

    enqueue: list[TaskRequest] = field(default_factory=list)
    stop: list[tuple[str, str]] = field(default_factory=list)
    arm: list[tuple[str, int]] = field(default_factory=list)
    published: bool = False
    swept: int = 0


def apply_effects(
    effects: Effects,
    dispatcher: Dispatcher,
    timers: TimerDelivery,
    *,
    now: int,
    new_id: Callable[[], str],
    skip: Container[str] = (),
) -> list[ev.Event]:
    """Stop, enqueue and arm what `effects` say; return the `DispatchEnqueued` events
    to report through the next step.

    Args:
        now: when (epoch µs) the requests were handed over.
        new_id: event ids.
        skip: dispatch ids the caller's backend holds already (not enqueued again).
    """
    for attempt_id, reason in effects.stop:
        dispatcher.stop(attempt_id, reason)
    outcomes = []
    for request in effects.enqueue:
        if request.dispatch_id in skip:
            continue
        dispatcher.enqueue(request)  # already-exists is success too
        outcomes.append(
            ev.Event(
                event_id=new_id(),
                tenant_id=request.tenant_id,
                workspace_id=request.workspace_id,
                run_id=request.run_id,
                payload=ev.DispatchEnqueued(cloud_task_id=request.cloud_task_id),
                task_key=request.task_key,
                attempt=request.attempt,
                attempt_id=request.attempt_id,
                emitted_at=now,
            )
        )
    for timer_id, due_at in effects.arm:
        timers.schedule(timer_id, due_at)
    return outcomes
