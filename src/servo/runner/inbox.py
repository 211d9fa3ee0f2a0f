"""The embedded runner's inbox: every worker report reaches the loop through it.

Thread workers hand over each event (`QueueSink`); the pool reports each attempt
that leaves it (`ended`), and worker processes forward the events they wrote. `take`
drains what arrived into one input of the reconcile step and says how fresh that
makes the state: when the queue was found empty, every report made before that
instant is taken (the watermark due timers are judged against).
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass, field

from servo.dispatch.base import NotStarted
from servo.engine import events as ev
from servo.engine.report import Report
from servo.engine.request import TaskRequest
from servo.engine.vocabulary import AbandonReason
from servo.errors import PoolLostError, WorkerPoolError
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.worker.runtime import TaskReport

log = get_logger(__name__)

RUNTIME_FAILURES = metrics.counter(
    "servo_runtime_failures_total", "Attempts ended without a report, by reason.", ["reason"]
)

#: Most reports taken at once: short iterations keep timers punctual.
MAX_TAKE = 128


def attempt_ended(request: TaskRequest, result: TaskReport | BaseException) -> Report:
    """The report of an attempt that left a pool, with its events or its error."""
    if isinstance(result, NotStarted):
        return Report(ended=request, not_started=True)
    if isinstance(result, BaseException):
        return Report(ended=request, error=result)
    return Report(tuple(result.events), written=True, paths=tuple(result.paths), ended=request)


@dataclass(slots=True)
class Taken:
    """What `Inbox.take` drained.

    Attributes:
        written: events workers wrote to the ledger already (in `paths`).
        paths: the ledger objects holding `written`.
        reported: events to write (thread workers' events, attempts given up).
        ended: dispatch ids of attempts that left the pool.
        pool_broke: a pool broke; its workers may have written events they never
            reported (look in the ledger).
        count: reports taken (an empty wake-up counts).
    """

    written: list[ev.Event] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    reported: list[ev.Event] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    pool_broke: bool = False
    count: int = 0


class Inbox:
    """A thread-safe queue of `Report`s, drained by the loop."""

    def __init__(self, clock: Callable[[], int], new_id: Callable[[], str]) -> None:
        self._queue: queue.SimpleQueue[Report] = queue.SimpleQueue()
        self._clock = clock
        self._new_id = new_id
        self.fresh_at = 0  # every report made before this instant (epoch µs) is taken

    def put(self, report: Report) -> None:
        self._queue.put(report)

    def wake(self) -> None:
        """Wake a loop waiting in `take` (an empty report)."""
        self._queue.put(Report(written=True))

    def empty(self) -> bool:
        return self._queue.empty()

    def take(
        self, timeout: float = 0.0, *, into: Taken | None = None, limit: int = MAX_TAKE
    ) -> Taken:
        """Drain up to `limit` reports, waiting up to `timeout` for the first.

        Args:
            into: add to what an earlier take of the same turn drained.
        """
        taken = Taken() if into is None else into
        block = timeout > 0
        for _ in range(limit):
            try:
                report = self._queue.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                # The queue was empty just now: every report put before this instant
                # is taken, so the state is fresh up to here. After a partial drain
                # (a backlog) it is not, and timers must not act as if it were.
                self.fresh_at = max(self.fresh_at, self._clock())
                break
            block = False
            taken.count += 1
            if report.written:
                taken.written.extend(report.events)
                taken.paths.extend(report.paths)
            else:
                taken.reported.extend(report.events)
            request = report.ended
            if request is None:
                continue
            taken.ended.append(request.dispatch_id)
            if report.error is not None:
                taken.pool_broke |= isinstance(report.error, WorkerPoolError)
                taken.reported.append(self._given_up(request, report.error))
        return taken

    def _given_up(self, request: TaskRequest, error: BaseException) -> ev.Event:
        """The runtime could not report (a ledger write failed, a worker died): the
        attempt is redelivered; as `pool_lost` (free) when its pool broke under it,
        else as `worker_lost` (counted against its attempts)."""
        pool_lost = isinstance(error, PoolLostError)
        reason = AbandonReason.POOL_LOST if pool_lost else AbandonReason.WORKER_LOST
        (log.warning if pool_lost else log.error)(
            "runner.runtime_failed",
            run_id=request.run_id,
            task_key=request.task_key,
            attempt_id=request.attempt_id,
            reason=reason,
            error_type=type(error).__name__,
            error=str(error),
        )
        RUNTIME_FAILURES.labels(reason).inc()
        detail = str(error) if isinstance(error, WorkerPoolError) else None
        return ev.Event(
            event_id=self._new_id(),
            tenant_id=request.tenant_id,
            workspace_id=request.workspace_id,
            run_id=request.run_id,
            payload=ev.AttemptAbandoned(reason=reason, detail=detail),
            task_key=request.task_key,
            attempt=request.attempt,
            attempt_id=request.attempt_id,
            emitted_at=self._clock(),
        )


class QueueSink:
    """In-process workers hand events to the runner, which batches them into the ledger."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    def emit(self, event: ev.Event) -> None:
        self._inbox.put(Report((event,)))
