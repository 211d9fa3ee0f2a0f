"""What workers report to the embedded runner, through one queue.

In-process (thread) workers hand each event to the runner (`QueueSink`), which folds
it and writes it to the ledger with its next batch. Worker processes write their
events to the ledger themselves and forward them with the paths they wrote
(`WorkerEvents(written=True)`), so the runner folds and acknowledges them without
reading them back. When the pool finishes an attempt it reports `AttemptEnded`, with
the attempt's report or the error that ended it.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass

from servo.engine import events as ev
from servo.engine.request import TaskRequest
from servo.worker.runtime import TaskReport


@dataclass(frozen=True, slots=True)
class WorkerEvents:
    """Events of running attempts; `written` when a worker process wrote them already
    (to the ledger objects `paths`)."""

    events: list[ev.Event]
    written: bool
    paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """An attempt the pool finished (or the runtime failure that ended it)."""

    request: TaskRequest
    result: TaskReport | BaseException


Report = WorkerEvents | AttemptEnded


class QueueSink:
    """In-process workers hand events to the runner, which batches them into the ledger."""

    def __init__(self, items: queue.SimpleQueue[Report]) -> None:
        self._items = items

    def emit(self, event: ev.Event) -> None:
        self._items.put(WorkerEvents([event], written=False))
