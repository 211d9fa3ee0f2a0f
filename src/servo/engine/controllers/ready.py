"""The ready controller: every READY task gets a `DispatchRequested`.

The next attempt number is the task's current attempt + 1 (READY after a fired
retry timer keeps the failed attempt's number until the new dispatch is folded).
Each dispatch carries a fresh attempt_id (from the caller's `new_id`), which the
worker echoes.

If the controller runs twice on the same snapshot, the fold keeps the dispatch that
sorts first for each attempt number and the dispatcher enqueues only that one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from servo.engine import events as ev
from servo.engine.schema import READY, TaskRow


def dispatch_ready(
    tasks: Iterable[TaskRow],
    *,
    tenant_id: str,
    workspace_id: str,
    now: int,
    new_id: Callable[[], str],
) -> list[ev.Event]:
    """`DispatchRequested` for each READY task among `tasks`."""
    out = []
    for task in tasks:
        if task.status != READY:
            continue
        out.append(
            ev.Event(
                event_id=new_id(),
                tenant_id=tenant_id,
                workspace_id=workspace_id,
                run_id=task.run_id,
                payload=ev.DispatchRequested(),
                task_key=task.task_key,
                attempt=task.attempt + 1,
                attempt_id=new_id(),
                emitted_at=now,
            )
        )
    return out
