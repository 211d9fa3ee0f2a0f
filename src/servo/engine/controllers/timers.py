"""The timer controller: durable timers for retries, heartbeat checks and timeouts.

Pure functions (no clock, no I/O, no metrics: the caller is given the time and a
source of event ids, and counts what the decisions say):

- `request_timers`: a task in RETRY_WAIT gets a `retry` timer (due after the policy's
  backoff, with jitter seeded by the timer id); a started attempt gets a
  `heartbeat_check` timer (due when its heartbeat would be overdue) and, when the
  asset has a timeout, a `task_timeout` timer.
- `fire_due_timers`: a scheduled timer whose due time has passed fires — but only
  when the state is fresh: if the watermark (`last_processed_at`) is older than the
  due time, events that would change the decision (a heartbeat, a finish) may not
  be folded yet, so the timer is reported as lagging and delivered again later.
  Firing a heartbeat check or timeout of an attempt that is still open ends the
  attempt (`AttemptAbandoned`).

Heartbeat checks recur: check `n` of an attempt has id suffix `heartbeat_check.{n}`;
when it fires and the heartbeat is fresh, the next request makes check `n + 1`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.ids import timer_id
from servo.engine.schema import TaskRow, TimerRow
from servo.engine.vocabulary import AbandonReason, TimerKind
from servo.resilience.retry import ErrorKind, RetryPolicy

_OPEN = frozenset({s.DISPATCHED, s.RUNNING})


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """Timing rules of the timer controller.

    Attributes:
        heartbeat_timeout_us: a started attempt whose last heartbeat is older than this
            is considered lost.
    """

    heartbeat_timeout_us: int = 30_000_000


@dataclass(frozen=True, slots=True)
class TimerDecisions:
    """What `fire_due_timers` decided.

    Attributes:
        events: `TimerFired` events, and `AttemptAbandoned` for attempts they end.
        fired: the timers that fired.
        lagging: due timers held back because the watermark is older than their due time.
        stop: (attempt id, abandon reason) of the attempts the engine gave up on (their
            workers should be asked to stop).
    """

    events: list[ev.Event]
    fired: list[TimerRow]
    lagging: list[TimerRow]
    stop: list[tuple[str, AbandonReason]]


def policy_of(task: TaskRow) -> RetryPolicy:
    """The task's retry policy as planned with its run (never the live definition)."""
    if not task.retry:
        return RetryPolicy(max_attempts=task.max_attempts, jitter=0)
    return RetryPolicy.from_json(task.retry)


def _event(
    event_id: str,
    task: TaskRow,
    payload: ev.Payload,
    tenant_id: str,
    workspace_id: str,
    now: int,
    attempt_id: str | None = None,
) -> ev.Event:
    return ev.Event(
        event_id=event_id,
        tenant_id=tenant_id,
        workspace_id=workspace_id,
        run_id=task.run_id,
        payload=payload,
        task_key=task.task_key,
        attempt=task.attempt,
        attempt_id=attempt_id,
        emitted_at=now,
    )


def request_timers(
    tasks: Iterable[TaskRow],
    timer_of: Callable[[str], TimerRow | None],
    *,
    tenant_id: str,
    workspace_id: str,
    now: int,
    settings: TimerSettings,
    new_id: Callable[[], str],
) -> list[ev.Event]:
    """`TimerRequested` for every timer the tasks need and do not have yet."""
    out = []
    for task in tasks:
        if task.attempt_id is None:
            continue
        ids = (tenant_id, workspace_id, task.run_id, task.task_key, task.attempt)
        wanted: list[tuple[str, TimerKind, int]] = []
        if task.status == s.RETRY_WAIT:
            tid = timer_id(*ids, TimerKind.RETRY)
            delay_s = policy_of(task).delay(task.attempt, seed=tid)
            due = (task.finished_at or now) + int(delay_s * 1_000_000)
            wanted.append((tid, TimerKind.RETRY, due))
        if task.status == s.RUNNING and task.started_at is not None:
            if task.timeout_s is not None:
                due = task.started_at + int(task.timeout_s * 1_000_000)
                wanted.append((timer_id(*ids, TimerKind.TASK_TIMEOUT), TimerKind.TASK_TIMEOUT, due))
            check = _next_heartbeat_check(ids, timer_of)
            if check is not None:
                due = (task.heartbeat_at or task.started_at) + settings.heartbeat_timeout_us
                wanted.append((check, TimerKind.HEARTBEAT_CHECK, due))
        for tid, kind, due_at in wanted:
            if timer_of(tid) is not None:
                continue
            payload = ev.TimerRequested(timer_id=tid, kind=kind, due_at=due_at)
            out.append(_event(new_id(), task, payload, tenant_id, workspace_id, now))
    return out


def _next_heartbeat_check(
    ids: tuple[str, str, str, str, int], timer_of: Callable[[str], TimerRow | None]
) -> str | None:
    """The id of the next heartbeat check to request, or None if one is scheduled."""
    n = 0
    while True:
        tid = timer_id(*ids, f"{TimerKind.HEARTBEAT_CHECK}.{n}")
        found = timer_of(tid)
        if found is None:
            return tid
        if found.fired_at is None:
            return None
        n += 1


def fire_due_timers(
    timers: Iterable[TimerRow],
    task_of: Callable[[str, str], TaskRow | None],
    *,
    tenant_id: str,
    workspace_id: str,
    now: int,
    watermark: int,
    settings: TimerSettings,
    new_id: Callable[[], str],
) -> TimerDecisions:
    """Fire due timers whose decision the state is fresh enough to make."""
    events: list[ev.Event] = []
    fired_timers: list[TimerRow] = []
    lagging: list[TimerRow] = []
    stop: list[tuple[str, AbandonReason]] = []
    for timer in timers:
        if timer.status != s.TIMER_SCHEDULED or timer.due_at > now:
            continue
        if watermark < timer.due_at:
            lagging.append(timer)
            continue
        task = task_of(timer.run_id, timer.task_key)
        if task is None:
            continue
        fired_timers.append(timer)
        fired = ev.Event(
            event_id=new_id(),
            tenant_id=tenant_id,
            workspace_id=workspace_id,
            run_id=timer.run_id,
            payload=ev.TimerFired(timer_id=timer.timer_id),
            task_key=timer.task_key,
            attempt=timer.attempt,
            emitted_at=now,
        )
        events.append(fired)
        ended = _ends_attempt(timer, task, now, settings)
        if ended is not None:
            assert task.attempt_id is not None
            attempt_id = task.attempt_id
            events.append(_event(new_id(), task, ended, tenant_id, workspace_id, now, attempt_id))
            stop.append((task.attempt_id, ended.reason))
    return TimerDecisions(events, fired_timers, lagging, stop)


def _ends_attempt(
    timer: TimerRow, task: TaskRow, now: int, settings: TimerSettings
) -> ev.AttemptAbandoned | None:
    if task.attempt != timer.attempt or task.status not in _OPEN:
        return None  # the attempt ended (or moved on) before the timer fired
    if timer.kind == TimerKind.TASK_TIMEOUT:
        retryable = policy_of(task).is_retryable(ErrorKind.TIMEOUT)
        return ev.AttemptAbandoned(reason=AbandonReason.TIMEOUT, retryable=retryable)
    if timer.kind == TimerKind.HEARTBEAT_CHECK:
        last = task.heartbeat_at or task.started_at or 0
        if last + settings.heartbeat_timeout_us <= now:
            return ev.AttemptAbandoned(reason=AbandonReason.HEARTBEAT_MISSED, retryable=True)
    return None


def abandon_cancelled(
    tasks: Iterable[TaskRow],
    *,
    tenant_id: str,
    workspace_id: str,
    now: int,
    new_id: Callable[[], str],
) -> list[ev.Event]:
    """`AttemptAbandoned(cancelled)` for the open attempts of a cancelled run's tasks."""
    payload = ev.AttemptAbandoned(reason=AbandonReason.CANCELLED)
    return [
        _event(new_id(), task, payload, tenant_id, workspace_id, now, task.attempt_id)
        for task in tasks
        if task.status in _OPEN and task.attempt_id is not None
    ]
