"""Builders of realistic run lifecycles with globally unique event ids.

For tests and benchmarks of code that reads the ledger or the projections.
"""

from __future__ import annotations

from servo.engine import events as ev
from servo.engine.ids import cloud_task_id, dispatch_id, new_ulid

TENANT = "t1"
WORKSPACE = "w1"


def _event(
    payload: ev.Payload,
    run_id: str,
    at: int,
    task: str | None = None,
    attempt: int | None = None,
    attempt_id: str | None = None,
    tenant: str = TENANT,
    workspace: str = WORKSPACE,
) -> ev.Event:
    return ev.Event(
        event_id=new_ulid(),
        tenant_id=tenant,
        workspace_id=workspace,
        run_id=run_id,
        payload=payload,
        task_key=task,
        attempt=attempt,
        attempt_id=attempt_id,
        emitted_at=at,
    )


def lifecycle(
    run_id: str,
    n_tasks: int = 3,
    *,
    start: int = 1_000_000,
    chain: bool = False,
    tenant: str = TENANT,
    workspace: str = WORKSPACE,
) -> list[ev.Event]:
    """A run of `n_tasks` tasks that all succeed on their first attempt.

    RunRequested, then per task DispatchRequested, DispatchEnqueued, TaskStarted and
    TaskFinished. With `chain`, task i depends on task i-1.
    """
    clock = start
    names = [f"asset_{i}" for i in range(n_tasks)]
    planned = tuple(
        ev.PlannedTask(
            task_key=name,
            asset_key=name,
            deps=((names[i - 1], "data"),) if chain and i else (),
        )
        for i, name in enumerate(names)
    )
    out = [_event(ev.RunRequested(tasks=planned, idempotency_key=run_id), run_id, clock,
                  tenant=tenant, workspace=workspace)]  # fmt: skip
    for name in names:
        attempt_id = new_ulid()
        dispatch = dispatch_id(tenant, workspace, run_id, name, 1)
        payloads: list[ev.Payload] = [
            ev.DispatchRequested(),
            ev.DispatchEnqueued(cloud_task_id=cloud_task_id(dispatch)),
            ev.TaskStarted(worker_id="worker-1"),
            ev.TaskFinished(
                outcome="succeeded",
                output=ev.OutputRef(f"outputs/{name}/{run_id}.json", "json", 128, None),
                duration_s=0.5,
            ),
        ]
        for payload in payloads:
            clock += 1000
            out.append(_event(payload, run_id, clock, name, 1, attempt_id, tenant, workspace))
    return out
