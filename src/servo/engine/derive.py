"""Derived task state: pure functions from facts to a task's status.

A task's status is a function of its plan row, its attempts' facts, its edges'
resolutions, its retry timers and its run's cancel request — never of the order in
which those facts arrived. This is what makes the fold order-insensitive.

Rules (ADR 0003):
- The *current attempt* is the first attempt that succeeded, else the highest attempt
  number with a dispatch fact: a dispatch after a success is stale, so an edge once
  satisfied is never withdrawn. When several attempt_ids claim one number, the
  dispatch that sorts first by `(dispatch_at, dispatch_event_id)` wins; the others
  are stale.
- An attempt ends with its terminal fact that sorts first by `(end_at, end_event_id)`.
- No attempt yet: CANCELLED if the run was cancelled; SKIPPED (or CANCELLED) when an
  edge resolved FAILED/SKIPPED (or CANCELLED); READY when every edge is satisfied
  (TaskBecameReady); PENDING otherwise.
- Current attempt ended: SUCCEEDED on success. On failure: CANCELLED if the run was
  cancelled; READY at once when its worker was lost or stopped heartbeating
  (redelivery, which does not use the retry budget, at most `MAX_REDELIVERIES`
  times); READY at once when the pool it shared broke through no fault of its own
  (`pool_lost`: uses neither budget, at most `MAX_POOL_LOSSES` times); RETRY_WAIT
  when the error is retryable and attempts remain, READY once that attempt's retry
  timer fired; FAILED otherwise.
- Current attempt open: RUNNING once started, else DISPATCHED.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from servo.engine import schema as s
from servo.engine.schema import AttemptRow, DepRow, RunRow, TaskRow, TimerRow
from servo.engine.vocabulary import AbandonReason, TaskStatus, TimerKind

#: Redeliveries of attempts whose worker was lost, before the loss counts as failure.
MAX_REDELIVERIES = 3
WORKER_LOST = AbandonReason.WORKER_LOST
#: An attempt's worker process ended because its pool broke (another worker died, or
#: the pool's manager): redelivered without using the redelivery or retry budget...
POOL_LOST = AbandonReason.POOL_LOST
#: ...at most this many times (a bound for pool breaks nobody can be blamed for,
#: e.g. worker processes that die while starting, before they take any attempt).
MAX_POOL_LOSSES = 20
#: Abandon reasons that mean "the worker is gone": redelivered, not charged as attempts.
_LOST_REASONS = frozenset({WORKER_LOST, AbandonReason.HEARTBEAT_MISSED})
#: Attempts whose worker may have recorded a result unseen (see `reusable_attempt_ids`).
_UNSEEN_REASONS = _LOST_REASONS | {POOL_LOST}

#: How an upstream's terminal status resolves the edges to its downstream tasks.
RESOLUTION_OF_STATUS = {
    s.SUCCEEDED: s.RESOLUTION_SUCCESS,
    s.FAILED: s.RESOLUTION_FAILED,
    s.SKIPPED: s.RESOLUTION_SKIPPED,
    s.CANCELLED: s.RESOLUTION_CANCELLED,
}


def current_attempts(attempts: Iterable[AttemptRow]) -> dict[int, AttemptRow]:
    """The winning attempt row per attempt number (rows with a dispatch fact only)."""
    winners: dict[int, AttemptRow] = {}
    for row in attempts:
        if row.dispatch_event_id is None or row.dispatch_at is None:
            continue
        best = winners.get(row.attempt)
        if best is None or (row.dispatch_at, row.dispatch_event_id) < (
            best.dispatch_at or 0,
            best.dispatch_event_id or "",
        ):
            winners[row.attempt] = row
    return winners


@dataclass(frozen=True, slots=True)
class TaskState:
    """The derived columns of one task (see `TaskRow` for their meaning)."""

    status: TaskStatus
    deps_satisfied_count: int
    attempt: int = 0
    attempt_id: str | None = None
    ready_at: int | None = None
    started_at: int | None = None
    heartbeat_at: int | None = None
    finished_at: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    output_location: str | None = None
    output_format: str | None = None
    output_size: int | None = None
    output_rows: int | None = None


_BLOCKING = frozenset({s.RESOLUTION_FAILED, s.RESOLUTION_SKIPPED, s.RESOLUTION_CANCELLED})
_SUCCESS = frozenset({s.RESOLUTION_SUCCESS})


def _max_resolved_at(deps: Iterable[DepRow], resolutions: frozenset[str]) -> int | None:
    times = [d.resolved_at for d in deps if d.resolution in resolutions and d.resolved_at]
    return max(times) if times else None


def _retry_fired_at(timers: Iterable[TimerRow], attempt: int) -> int | None:
    for timer in timers:
        if (
            timer.kind == TimerKind.RETRY
            and timer.attempt == attempt
            and timer.fired_at is not None
        ):
            return timer.fired_at
    return None


def derive_task(
    task: TaskRow,
    *,
    attempts: Iterable[AttemptRow],
    deps: list[DepRow],
    timers: Iterable[TimerRow],
    run_requested_at: int,
    cancel_requested_at: int | None,
) -> TaskState:
    """Compute a task's derived columns from its facts (pure)."""
    satisfied = sum(1 for d in deps if d.resolution == s.RESOLUTION_SUCCESS)
    winners = current_attempts(attempts)
    if not winners:
        return _before_first_attempt(deps, satisfied, run_requested_at, cancel_requested_at)

    succeeded = [a for a in winners.values() if a.end_event_id and a.outcome == "succeeded"]
    # Once an attempt succeeded the task has succeeded: a later dispatch of it is stale
    # and can never withdraw a satisfied edge (satisfaction is monotone).
    current = min(succeeded, key=lambda a: a.attempt) if succeeded else winners[max(winners)]
    beats = [t for t in (current.started_at, current.heartbeat_at) if t is not None]
    base = TaskState(
        s.RUNNING if current.started_at is not None else s.DISPATCHED,
        satisfied,
        attempt=current.attempt,
        attempt_id=current.attempt_id,
        ready_at=_max_resolved_at(deps, _SUCCESS) or run_requested_at,
        started_at=current.started_at,
        heartbeat_at=max(beats) if beats else None,
    )
    if current.end_event_id is None:
        return base
    if current.outcome == "succeeded":
        return replace(
            base,
            status=s.SUCCEEDED,
            finished_at=current.end_at,
            output_location=current.output_location,
            output_format=current.output_format,
            output_size=current.output_size,
            output_rows=current.output_rows,
        )
    failed = replace(
        base,
        status=s.FAILED,
        finished_at=current.end_at,
        error_type=current.error_type,
        error_message=current.error_message,
    )
    if cancel_requested_at is not None:
        return replace(failed, status=s.CANCELLED)
    lost = sum(1 for a in winners.values() if _abandoned(a, _LOST_REASONS))
    pooled = sum(1 for a in winners.values() if _abandoned(a, _POOL_LOST))
    if _abandoned(current, _POOL_LOST):
        if pooled <= MAX_POOL_LOSSES:
            return replace(failed, status=s.READY, ready_at=current.end_at)
        return failed
    if _abandoned(current, _LOST_REASONS):
        if lost <= MAX_REDELIVERIES:
            return replace(failed, status=s.READY, ready_at=current.end_at)
        return failed
    if current.retryable and len(winners) - lost - pooled < task.max_attempts:
        fired_at = _retry_fired_at(timers, current.attempt)
        if fired_at is None:
            return replace(failed, status=s.RETRY_WAIT)
        return replace(failed, status=s.READY, ready_at=fired_at)
    return failed


_POOL_LOST = frozenset({POOL_LOST})


def _abandoned(attempt: AttemptRow, reasons: frozenset[str]) -> bool:
    return attempt.end_kind == "abandoned" and attempt.error_type in reasons


def reusable_attempt_ids(attempts: Iterable[AttemptRow], before: int) -> tuple[str, ...]:
    """Attempts before number `before` whose recorded result a new attempt may report.

    Only attempts the engine gave up because their worker was lost (or ended with
    its pool) qualify: such a worker may have finished and recorded its result
    unseen, and reporting it keeps the task's recorded effects exactly-once. An
    attempt ended for a timeout or a cancel never qualifies, nor one that reported
    its own end (its result, if any, was already judged). Newest first.
    """
    winners = current_attempts(attempts)
    return tuple(
        winners[n].attempt_id
        for n in sorted(winners, reverse=True)
        if n < before and _abandoned(winners[n], _UNSEEN_REASONS)
    )


def _before_first_attempt(
    deps: list[DepRow], satisfied: int, run_requested_at: int, cancel_requested_at: int | None
) -> TaskState:
    if cancel_requested_at is not None:
        return TaskState(s.CANCELLED, satisfied, finished_at=cancel_requested_at)
    blocked = [d for d in deps if d.resolution in _BLOCKING]
    if blocked:
        cancelled = any(d.resolution == s.RESOLUTION_CANCELLED for d in blocked)
        status = s.CANCELLED if cancelled else s.SKIPPED
        return TaskState(status, satisfied, finished_at=_max_resolved_at(blocked, _BLOCKING))
    if satisfied == len(deps):
        ready_at = _max_resolved_at(deps, _SUCCESS) or run_requested_at
        return TaskState(s.READY, satisfied, ready_at=ready_at)
    return TaskState(s.PENDING, satisfied)


_DERIVED = TaskState.__slots__
#: Reads the derived columns of a `TaskState` or a `TaskRow` as one tuple (in C): most
#: derivations change nothing, and one tuple compare settles that.
_DERIVED_OF = operator.attrgetter(*_DERIVED)


def apply_task_state(task: TaskRow, state: TaskState) -> bool:
    """Copy derived columns onto `task`; True when anything changed."""
    new, old = _DERIVED_OF(state), _DERIVED_OF(task)
    if new == old:
        return False
    for name, value, current in zip(_DERIVED, new, old, strict=True):
        if current != value:
            setattr(task, name, value)
    return True


def summarize_run(run: RunRow, counts: Mapping[str, int], tasks: Sequence[TaskRow]) -> bool:
    """Set the run's status, counts and completion from its tasks; True if changed.

    A run ends when every task is terminal: CANCELLED if a cancel was requested and a
    task was cancelled, else FAILED if any task failed or was skipped, else SUCCEEDED;
    it completed when its last task finished.
    """
    terminal = sum(counts.get(st, 0) for st in s.TERMINAL_TASK_STATUSES)
    completed_at: int | None = None
    if terminal < len(tasks):
        status = s.RUN_RUNNING
    else:
        if run.cancel_requested_at is not None and counts.get(s.CANCELLED, 0):
            status = s.RUN_CANCELLED
        elif counts.get(s.FAILED, 0) or counts.get(s.SKIPPED, 0):
            status = s.RUN_FAILED
        else:
            status = s.RUN_SUCCEEDED
        completed_at = max(
            (t.finished_at for t in tasks if t.finished_at is not None),
            default=run.requested_at,
        )
    new = (status, len(tasks), counts.get(s.SUCCEEDED, 0), counts.get(s.FAILED, 0),
           counts.get(s.SKIPPED, 0), counts.get(s.CANCELLED, 0), completed_at)  # fmt: skip
    old = (run.status, run.n_tasks, run.n_succeeded, run.n_failed, run.n_skipped,
           run.n_cancelled, run.completed_at)  # fmt: skip
    if new == old:
        return False
    (run.status, run.n_tasks, run.n_succeeded, run.n_failed, run.n_skipped,
     run.n_cancelled, run.completed_at) = new  # fmt: skip
    return True
