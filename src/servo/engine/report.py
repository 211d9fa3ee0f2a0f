"""What a worker tells the engine: one report type for every kind of worker.

A thread worker hands over each event as it happens (`written=False`: the reconcile
step writes it with its next batch); a worker process or an HTTP worker writes its
events to the ledger itself and reports them with the objects it wrote
(`written=True`, `paths`), so they are folded and acknowledged without being read
back. When an attempt leaves the worker, the report names it (`ended`), with the
`error` that ended it when the worker could not report by itself (it died, a ledger
write failed), or `not_started` when a stop held it back before it began.
"""

from __future__ import annotations

from dataclasses import dataclass

from servo.engine import events as ev
from servo.engine.request import TaskRequest


@dataclass(frozen=True, slots=True)
class Report:
    """Events of running attempts and, maybe, the end of one.

    Attributes:
        events: the events, in the order the worker made them.
        written: the worker wrote them to the ledger already...
        paths: ...in these objects.
        ended: the attempt that left the worker with this report.
        error: why `ended` ended without a report of its own.
        not_started: `ended` was never started (held back by a stop).
    """

    events: tuple[ev.Event, ...] = ()
    written: bool = False
    paths: tuple[str, ...] = ()
    ended: TaskRequest | None = None
    error: BaseException | None = None
    not_started: bool = False
