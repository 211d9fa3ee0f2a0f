"""The dispatcher protocol (`servo.engine.effects`) and what pools report.

A dispatcher enqueues a `TaskRequest` under its deterministic `cloud_task_id`. An
"already exists" answer from the queue is success: the same attempt was handed over
before. Because queue-side deduplication is temporary (Cloud Tasks: 24 hours), the
outbox in the projections is the real guard against dispatching twice.
"""

from __future__ import annotations

from servo.engine.effects import Dispatcher, EnqueueOutcome

__all__ = ["Dispatcher", "EnqueueOutcome", "NotStarted"]


class NotStarted(Exception):
    """The result of an attempt the pool never started because it was held (`hold`)."""
