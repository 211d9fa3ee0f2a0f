"""The engine's closed vocabularies: statuses, timer kinds and abandon reasons.

Each is a `StrEnum`, so a member *is* its string: it compares equal to the value,
hashes like it, and is written as that value to Parquet projections, the catalog and
JSON ledger events. The on-disk form is therefore unchanged; what changes is that a
misspelt status is a type error (and an `AttributeError`) instead of a silent miss.

Readers turn values back into members at the boundary (`schema.TableSpec.from_arrow`,
`events.Event.from_dict`), so code inside the engine sees members; a plain string of
the same value still compares equal, e.g. in tests.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    """A task's status (`tasks.status`), derived from its facts (`servo.engine.derive`)."""

    PENDING = "PENDING"
    READY = "READY"
    DISPATCHED = "DISPATCHED"
    RUNNING = "RUNNING"
    RETRY_WAIT = "RETRY_WAIT"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


class RunStatus(StrEnum):
    """A run's status (`runs.status`): RUNNING until every task is terminal."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class OutboxStatus(StrEnum):
    """Where a dispatch is (`dispatch_outbox.status`): to send, sent, or done with."""

    PENDING = "PENDING"
    ENQUEUED = "ENQUEUED"
    COMPLETED = "COMPLETED"


class TimerStatus(StrEnum):
    """Whether a durable timer fired (`timers.status`)."""

    SCHEDULED = "SCHEDULED"
    FIRED = "FIRED"


class TimerKind(StrEnum):
    """What a durable timer does when it fires (`timers.kind`, `TimerRequested.kind`).

    The value is also the suffix of the timer's id (`servo.engine.ids.timer_id`).
    """

    #: Make a task in RETRY_WAIT ready again after its backoff.
    RETRY = "retry"
    #: End a started attempt whose heartbeat is overdue.
    HEARTBEAT_CHECK = "heartbeat_check"
    #: End a started attempt that ran past its asset's timeout.
    TASK_TIMEOUT = "task_timeout"


class AbandonReason(StrEnum):
    """Why the engine ended an attempt (`AttemptAbandoned.reason`; ADR 0016).

    Stored as the attempt's `error_type`, which `servo.engine.derive` reads back.
    """

    #: It ran past its asset's timeout.
    TIMEOUT = "timeout"
    #: Its worker stopped heartbeating: the worker is presumed gone.
    HEARTBEAT_MISSED = "heartbeat_missed"
    #: Its run was cancelled.
    CANCELLED = "cancelled"
    #: The process running it is gone (a crash of the runner, or its own worker died).
    WORKER_LOST = "worker_lost"
    #: Its worker was ended because the pool it shared broke; not the attempt's doing.
    POOL_LOST = "pool_lost"
