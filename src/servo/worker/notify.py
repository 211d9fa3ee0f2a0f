"""A worker's events reach a remote reconciler: written to the ledger, then notified.

In the scale-out modes the reconciler runs elsewhere (`servo.runner.workspace`).
`NotifyingSink` writes each event of an attempt to the ledger as a numbered batch
(create-only) and, for the events that call for a decision (`TaskFinished`), hands
that object's path to `notify` (a Cloud Task to the reconciler's
`/internal/reconcile`, a Celery message). A start or a heartbeat decides nothing by
itself: every reconcile step folds the numbered batches appended since its last one,
so the next step — a report, a timer's wake-up, a sweep — sees them, and a heartbeat
check judges an attempt only after reading them. That halves the queue's traffic.

A notification that fails raises: the attempt's HTTP answer is then an error, the
queue delivers the attempt again, and the redelivery reports the recorded result
(notifying again). A notification lost silently is covered by the next step's fold
of newer batches, and by the sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from servo.engine import events as ev
from servo.engine.ledger import PROBE_WIDTH
from servo.storage.base import ObjectStore
from servo.worker.runtime import LedgerSink

#: Hands ledger objects to the reconciler of (tenant, workspace).
Notify = Callable[[str, str, Sequence[str]], None]


#: Events whose ledger object is notified (the others wait for the next step).
NOTIFIED = (ev.TaskFinished,)


class NotifyingSink:
    """An `EventSink` that writes each event to the ledger and notifies the path of
    those in `NOTIFIED`."""

    def __init__(self, store: ObjectStore, notify: Notify) -> None:
        # Many workers append to one batch sequence: a lost race probes a window of
        # numbers at once instead of one object-store call after another.
        self._probes = ThreadPoolExecutor(max_workers=PROBE_WIDTH, thread_name_prefix="servo-probe")
        self._ledger = LedgerSink(store, probe=self._probes.map)
        self._notify = notify

    def emit(self, event: ev.Event) -> str:
        path = self._ledger.emit(event)
        if isinstance(event.payload, NOTIFIED):
            self._notify(event.tenant_id, event.workspace_id, [path])
        return path
