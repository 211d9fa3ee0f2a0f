"""The timer controller: durable timers for retries (pure; no clock, no I/O).

- `request_retry_timers`: a task in RETRY_WAIT without a retry timer for its attempt
  gets `TimerRequested(kind="retry")`, due after the policy's backoff (with
  deterministic jitter seeded by the timer id).
- `fire_due_timers`: a scheduled timer whose due time has passed fires
  (`TimerFired`) — but only when the snapshot is fresh: if the watermark
  (`last_processed_at`) is older than the due time, events that would change the
  decision may not be folded yet, so the timer is reported as lagging instead
  (the caller reschedules it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from servo.engine import events as ev
from servo.engine.ids import new_ulid, timer_id
from servo.engine.schema import RETRY_WAIT, TIMER_SCHEDULED, TaskRow, TimerRow
from servo.resilience.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class TimerDecisions:
    """What `fire_due_timers` decided.

    Attributes:
        events: `TimerFired` events for timers that may act.
        lagging: due timers held back because the watermark is older than their due time.
    """

    events: list[ev.Event]
    lagging: list[TimerRow]


def _policy(task: TaskRow) -> RetryPolicy:
    if not task.retry:
        return RetryPolicy(max_attempts=task.max_attempts, jitter=0)
    params = json.loads(task.retry)
    return RetryPolicy(
        max_attempts=params["max_attempts"],
        initial_delay=params["initial_delay"],
        max_delay=params["max_delay"],
        backoff_multiplier=params["backoff_multiplier"],
        jitter=params["jitter"],
    )


def request_retry_timers(
    tasks: Iterable[TaskRow],
    has_timer: Callable[[str], bool],
    *,
    tenant_id: str,
    workspace_id: str,
    now: int,
) -> list[ev.Event]:
    """`TimerRequested` for each RETRY_WAIT task whose retry timer does not exist yet."""
    out = []
    for task in tasks:
        if task.status != RETRY_WAIT or task.attempt_id is None:
            continue
        tid = timer_id(tenant_id, workspace_id, task.run_id, task.task_key, task.attempt, "retry")
        if has_timer(tid):
            continue
        delay_s = _policy(task).delay(task.attempt, seed=tid)
        due_at = (task.finished_at or now) + int(delay_s * 1_000_000)
        out.append(
            ev.Event(
                event_id=new_ulid(),
                tenant_id=tenant_id,
                workspace_id=workspace_id,
                run_id=task.run_id,
                payload=ev.TimerRequested(timer_id=tid, kind="retry", due_at=due_at),
                task_key=task.task_key,
                attempt=task.attempt,
                attempt_id=task.attempt_id,
                emitted_at=now,
            )
        )
    return out


def fire_due_timers(
    timers: Iterable[TimerRow],
    *,
    tenant_id: str,
    workspace_id: str,
    now: int,
    watermark: int,
) -> TimerDecisions:
    """`TimerFired` for due timers, unless the watermark lags behind their due time."""
    fired: list[ev.Event] = []
    lagging: list[TimerRow] = []
    for timer in timers:
        if timer.status != TIMER_SCHEDULED or timer.due_at > now:
            continue
        if watermark < timer.due_at:
            lagging.append(timer)
            continue
        fired.append(
            ev.Event(
                event_id=new_ulid(),
                tenant_id=tenant_id,
                workspace_id=workspace_id,
                run_id=timer.run_id,
                payload=ev.TimerFired(timer_id=timer.timer_id),
                task_key=timer.task_key,
                attempt=timer.attempt,
                emitted_at=now,
            )
        )
    return TimerDecisions(fired, lagging)


def next_due(timers: Iterable[TimerRow]) -> int | None:
    """The earliest due time among scheduled timers, or None."""
    due = [t.due_at for t in timers if t.status == TIMER_SCHEDULED]
    return min(due) if due else None
