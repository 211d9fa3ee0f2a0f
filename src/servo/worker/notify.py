"""A worker's events reach a remote reconciler: written to the ledger, then notified.

In the scale-out modes the reconciler runs elsewhere and folds only the ledger
objects it is told about (`servo.runner.workspace`). `NotifyingSink` writes each
event of an attempt to the ledger (create-only) and then hands that object's path
to `notify` (a Cloud Task to the reconciler's `/internal/reconcile`, a Celery
message). A notification that fails raises: for a `TaskStarted` or `TaskFinished`
the attempt's HTTP answer is then an error, the queue delivers the attempt again,
and the redelivery reports the recorded result (notifying again); a missed
heartbeat is counted and the next one notifies. A notification that is lost
silently is found by the reconciler's sweep, which lists the ledger for liveness.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from servo.engine import events as ev
from servo.storage.base import ObjectStore
from servo.worker.runtime import LedgerSink

#: Hands ledger objects to the reconciler of (tenant, workspace).
Notify = Callable[[str, str, Sequence[str]], None]


class NotifyingSink:
    """An `EventSink` that writes each event to the ledger and notifies its path."""

    def __init__(self, store: ObjectStore, notify: Notify) -> None:
        self._ledger = LedgerSink(store)
        self._notify = notify

    def emit(self, event: ev.Event) -> str:
        path = self._ledger.emit(event)
        self._notify(event.tenant_id, event.workspace_id, [path])
        return path
