"""Building the `TaskRequest` of a PENDING outbox row from the loaded definitions.

Every driver of reconcile steps — the embedded runner and the request-driven
reconciler of the scale-out modes — hands the step this builder: the definitions
say which dependencies carry data; the state says where the upstream values are and
which earlier attempts' results a redelivery may report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from servo.engine import schema as s
from servo.engine.derive import reusable_attempt_ids
from servo.engine.fold import EngineState
from servo.engine.request import TaskRequest, build_request
from servo.errors import EngineError

if TYPE_CHECKING:
    from servo.engine.reconcile import RequestFor
    from servo.sdk.definitions import Definitions


def request_builder(defs: Definitions, tenant_id: str, workspace_id: str) -> RequestFor:
    """The `RequestFor` of a reconcile step over runs planned from `defs`.

    The builder raises `EngineError` when a task's asset is not in `defs` (the run was
    planned from other definitions).
    """

    def request_for(state: EngineState, task: s.TaskRow, row: s.OutboxRow) -> TaskRequest:
        definition = defs.assets.get(task.asset_key)
        if definition is None:
            raise EngineError(
                f"run {task.run_id}: asset {task.asset_key!r} is not in the loaded "
                "definitions; load the definitions the run was started with"
            )
        data_deps = tuple(d.name for d in definition.dependencies if d.type == "data")
        upstream = {
            dep.upstream_task_key: found
            for dep in state.deps_of(task.run_id, task.task_key)
            if (found := state.task(task.run_id, dep.upstream_task_key)) is not None
        }
        return build_request(
            tenant_id,
            workspace_id,
            row,
            task,
            upstream,
            data_deps,
            defs.source,
            reusable_attempt_ids(state.attempts_of(task.run_id, task.task_key), row.attempt),
            None if (run := state.run(task.run_id)) is None else run.code_version,
            None if (placed := defs.executor_of(task.asset_key)) is None else placed[1],
        )

    return request_for
