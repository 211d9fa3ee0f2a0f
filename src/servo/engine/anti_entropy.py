"""The anti-entropy sweeper: finds stuck work and drives it again (liveness).

Every finding is re-driven idempotently — the fold ignores duplicates and the queue
deduplicates by deterministic id — and counted by kind in
`servo_anti_entropy_findings_total{kind}`:

- ``ready_without_dispatch``: a task READY for longer than a deadline with no dispatch
  (a lost controller step) — dispatch it;
- ``outbox_not_enqueued``: a PENDING outbox row older than a deadline that no worker
  holds — hand it to the dispatcher again;
- ``dispatched_not_started``: an enqueued attempt nobody started within a deadline
  (a lost queue message) — end it as `worker_lost`, which redelivers it;
- ``timer_overdue``: a scheduled timer past due that nothing will deliver — deliver it;
- ``unfolded_ledger_object``: ledger objects the projections may not reflect
  (`servo.engine.recovery`, the one place that lists the ledger).

`sweep` is pure: the reconcile step gives it the state, what the caller's pool and
timer delivery hold, the time and a source of event ids; it acts on the result and
counts the findings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field

from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.ids import dispatch_id
from servo.engine.schema import OutboxRow, TaskRow, TimerRow
from servo.engine.vocabulary import AbandonReason


@dataclass(frozen=True, slots=True)
class SweepSettings:
    """Deadlines after which work counts as stuck (microseconds).

    Attributes:
        ready_deadline_us: READY without a dispatch.
        enqueue_deadline_us: a PENDING outbox row not handed to the queue.
        start_deadline_us: an enqueued attempt not started.
        timer_grace_us: a scheduled timer past its due time.
    """

    ready_deadline_us: int = 5_000_000
    enqueue_deadline_us: int = 5_000_000
    start_deadline_us: int = 120_000_000
    timer_grace_us: int = 1_000_000


@dataclass(slots=True)
class SweepResult:
    """What the sweep found and what to do about it.

    Attributes:
        ready: READY tasks to dispatch.
        redispatch: outbox rows to enqueue again.
        events: events to fold (attempts given up on).
        timers: overdue timers to deliver again.
        findings: findings by kind.
        examined: tasks looked at (what the sweep cost; the caller spaces sweeps by it).
    """

    ready: list[TaskRow] = field(default_factory=list)
    redispatch: list[OutboxRow] = field(default_factory=list)
    events: list[ev.Event] = field(default_factory=list)
    timers: list[TimerRow] = field(default_factory=list)
    findings: Counter[str] = field(default_factory=Counter)
    examined: int = 0


def sweep(
    tasks: Iterable[TaskRow],
    timers: Iterable[TimerRow],
    outbox_of: Callable[[str], OutboxRow | None],
    *,
    tenant_id: str,
    workspace_id: str,
    inflight: Container[str],
    delivering: Container[str],
    now: int,
    settings: SweepSettings,
    new_id: Callable[[], str],
    listening_since: int = 0,
) -> SweepResult:
    """Find stuck work among `tasks` and `timers` (see the module docstring).

    `listening_since`: since when the caller receives reports; an enqueued
    attempt's start deadline runs from then at the earliest (a start reported while
    nobody listened may still wait in a queue).
    """
    result = SweepResult()
    tasks = tasks if isinstance(tasks, Sequence) else list(tasks)
    result.examined = len(tasks)
    for task in tasks:
        if task.status == s.READY:
            if (task.ready_at or now) <= now - settings.ready_deadline_us:
                result.ready.append(task)
                result.findings["ready_without_dispatch"] += 1
            continue
        if task.status != s.DISPATCHED or task.attempt_id is None:
            continue
        did = dispatch_id(tenant_id, workspace_id, task.run_id, task.task_key, task.attempt)
        row = outbox_of(did)
        if row is None or did in inflight:
            continue
        if row.status == s.OUTBOX_PENDING:
            if row.requested_at <= now - settings.enqueue_deadline_us:
                result.redispatch.append(row)
                result.findings["outbox_not_enqueued"] += 1
        elif (
            row.status == s.OUTBOX_ENQUEUED
            and max(row.enqueued_at or now, listening_since) <= now - settings.start_deadline_us
        ):
            result.events.append(
                ev.Event(
                    event_id=new_id(),
                    tenant_id=tenant_id,
                    workspace_id=workspace_id,
                    run_id=task.run_id,
                    payload=ev.AttemptAbandoned(reason=AbandonReason.WORKER_LOST),
                    task_key=task.task_key,
                    attempt=task.attempt,
                    attempt_id=task.attempt_id,
                    emitted_at=now,
                )
            )
            result.findings["dispatched_not_started"] += 1
    for timer in timers:
        if (
            timer.status == s.TIMER_SCHEDULED
            and timer.due_at <= now - settings.timer_grace_us
            and timer.timer_id not in delivering
        ):
            result.timers.append(timer)
            result.findings["timer_overdue"] += 1
    return result
