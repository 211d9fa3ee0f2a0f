"""The dispatcher protocol.

A dispatcher enqueues a `TaskRequest` under its deterministic `cloud_task_id`. An
"already exists" answer from the queue is success: the same attempt was handed over
before. Because queue-side deduplication is temporary (Cloud Tasks: 24 hours), the
outbox in the projections is the real guard against dispatching twice.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from servo.engine.request import TaskRequest


class EnqueueOutcome(StrEnum):
    """What the queue answered."""

    CREATED = "created"
    ALREADY_EXISTS = "already_exists"


class NotStarted(Exception):
    """The result of an attempt the pool never started because it was held (`hold`)."""


class Dispatcher(Protocol):
    """Hands task requests to an execution backend."""

    def enqueue(self, request: TaskRequest) -> EnqueueOutcome:
        """Enqueue `request` under `request.cloud_task_id`.

        Returns CREATED, or ALREADY_EXISTS when that id was enqueued before (success).

        Raises:
            TransientStorageError: the queue failed in a way worth retrying.
        """
        ...

    def close(self) -> None:
        """Stop accepting work and release resources (running work may finish)."""
        ...
