"""A worker's events reach a remote reconciler inside the notification (ADR 0025).

In the scale-out modes the reconciler runs elsewhere (`servo.runner.workspace`).
`NotifyingSink` hands an attempt's `TaskFinished` — the event that calls for a
decision — to `report`, which sends the event itself to the reconciler (a Cloud Task
to ``/internal/reconcile``, a Celery message). The queue holds it durably once the
call returns; the reconciler writes it to the ledger in its next batch, as the
embedded runner writes its workers' reports (ADR 0023). A report costs the worker
one queue call and no ledger write, and the many workers of a wide run do not all
race for the next number of one batch sequence.

The `TaskStarted` of an attempt is held for `hold_s`: an attempt that finishes by
then sends it with its `TaskFinished`; one still running has it written to the
ledger (a numbered batch, not notified: every reconcile step folds the batches
appended since its last), so the reconciler sees long attempts start before their
start deadline. Heartbeats go to the ledger the same way. An event too large for
a queue message (`MAX_REPORT_BYTES`) goes to the ledger, and its path is notified.

A report that fails raises: the attempt's HTTP answer is then an error, the queue
delivers the attempt again, and the redelivery reports the recorded result (a new
`TaskFinished` that reuses it). A report lost on the way (the queue acknowledged a
push that never arrived) is recovered by the sweep: the attempt passes its
deadline, the task is dispatched again with the lost attempt among its reusable
ones, and that attempt's result record answers it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from servo.engine import events as ev
from servo.engine.ledger import PROBE_WIDTH
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.storage.base import ObjectStore
from servo.worker.runtime import LedgerSink

#: Hands ledger objects to the reconciler of (tenant, workspace).
Notify = Callable[[str, str, Sequence[str]], None]
#: Hands events (not in the ledger yet) to the reconciler of (tenant, workspace).
Report = Callable[[str, str, Sequence[ev.Event]], None]

#: Events the reconciler is told about at once (the others wait for its next step).
NOTIFIED = (ev.TaskFinished,)
#: Largest report sent inside a queue message (Cloud Tasks takes up to 1 MiB).
MAX_REPORT_BYTES = 256 * 1024
#: Seconds an attempt's start is held for its finish (then written to the ledger).
DEFAULT_HOLD_S = 0.25

log = get_logger(__name__)

REPORTS = metrics.counter(
    "servo_worker_reports_total",
    "Worker events handed to the reconciler, by route: inline (inside the "
    "notification), ledger (written, then notified or folded by the next step).",
    ["route"],
)
HELD_WRITE_ERRORS = metrics.counter(
    "servo_worker_held_start_errors_total",
    "Held TaskStarted events that could not be written (the attempt's TaskFinished "
    "reports the start instead, or its heartbeat does).",
)


class NotifyingSink:
    """An `EventSink` for workers whose reconciler runs elsewhere (see the module
    docstring).

    Args:
        store: the ledger's store (starts of long attempts, heartbeats, large events).
        notify: hands ledger paths to the reconciler.
        report: hands events to the reconciler inside a message.
        hold_s: how long an attempt's start waits for its finish (0: never held).
    """

    def __init__(
        self,
        store: ObjectStore,
        notify: Notify,
        report: Report,
        *,
        hold_s: float = DEFAULT_HOLD_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # The ledger's batch sequence is shared: a lost race probes a window of
        # numbers at once instead of one object-store call after another.
        self._probes = ThreadPoolExecutor(max_workers=PROBE_WIDTH, thread_name_prefix="servo-probe")
        self._ledger = LedgerSink(store, probe=self._probes.map)
        self._notify = notify
        self._report = report
        self._hold_s = hold_s
        self._monotonic = monotonic
        self._held: dict[str, tuple[float, ev.Event]] = {}  # attempt id -> (until, start)
        self._changed = threading.Condition()
        self._closed = False
        self._writer: threading.Thread | None = None

    def emit(self, event: ev.Event) -> str | None:
        """Hold, report or write `event`; its ledger path, or None when it was held
        or handed to the reconciler inside the report."""
        attempt_id = event.attempt_id
        if isinstance(event.payload, ev.TaskStarted) and self._hold_s > 0 and attempt_id:
            with self._changed:
                self._held[attempt_id] = (self._monotonic() + self._hold_s, event)
                self._ensure_writer()
                self._changed.notify()
            return None
        events = [event]
        if attempt_id:
            with self._changed:  # a start still held goes first, in the same report
                held = self._held.pop(attempt_id, None)
            if held is not None:
                events.insert(0, held[1])
        notified = isinstance(event.payload, NOTIFIED)
        if notified and len(ev.encode_events(events)) <= MAX_REPORT_BYTES:
            self._report(event.tenant_id, event.workspace_id, events)
            REPORTS.labels("inline").inc()
            return None
        path = self._ledger.append(events)
        REPORTS.labels("ledger").inc()
        if notified:
            self._notify(event.tenant_id, event.workspace_id, [path])
        return path

    def close(self) -> None:
        """Write the starts still held and stop the writer thread."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._writer is not None:
            self._writer.join(5)
        self._write_held(self._take_held(due_only=False))
        self._probes.shutdown(wait=False)

    # ------------------------------------------------------------------ held starts
    def _ensure_writer(self) -> None:
        if self._writer is None:  # called under the lock
            self._writer = threading.Thread(
                target=self._write_loop, name="servo-held-starts", daemon=True
            )
            self._writer.start()

    def _write_loop(self) -> None:
        while True:
            with self._changed:
                while not self._closed:
                    until = min((u for u, _ in self._held.values()), default=None)
                    wait = None if until is None else until - self._monotonic()
                    if wait is not None and wait <= 0:
                        break
                    self._changed.wait(wait)
                if self._closed:
                    return
            self._write_held(self._take_held(due_only=True))

    def _take_held(self, *, due_only: bool) -> list[ev.Event]:
        now = self._monotonic()
        with self._changed:
            due = [a for a, (until, _) in self._held.items() if not due_only or until <= now]
            return [self._held.pop(a)[1] for a in due]

    def _write_held(self, starts: Sequence[ev.Event]) -> None:
        """Write held starts, one batch per workspace. A start that cannot be written
        is dropped: the attempt's heartbeat or finish tells the reconciler it ran."""
        by_scope: dict[tuple[str, str], list[ev.Event]] = defaultdict(list)
        for start in starts:
            by_scope[(start.tenant_id, start.workspace_id)].append(start)
        for events in by_scope.values():
            try:
                self._ledger.append(events)
                REPORTS.labels("ledger").inc(len(events))
            except Exception as exc:  # a thread that must keep running
                HELD_WRITE_ERRORS.inc()
                first = events[0]
                log.warning(
                    "worker.held_start_write_failed",
                    tenant_id=first.tenant_id,
                    run_id=first.run_id,
                    task_key=first.task_key,
                    attempt_id=first.attempt_id,
                    starts=len(events),
                    error_type=type(exc).__name__,
                    error=str(exc),
                )
