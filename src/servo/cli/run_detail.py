"""One run read for display: its tasks in plan order with every attempt.

The run and task rows come from the catalog when one is configured (as ``runs list``
reads them), else from the home's published projections. Attempts always come from
the projections (the catalog keeps runs and tasks, not attempts): one row per
attempt number, the winning one (`servo.engine.derive.current_attempts`), so racing
or stale dispatches never show. Plan order is the run's dependency edges in
topological levels, names sorted within a level, as ``servo plan`` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from servo.engine.ids import DEFAULT_WORKSPACE
from servo.errors import RunNotFoundError

# Engine and Arrow modules are imported where used: every `servo` command imports
# this module when it starts, and must stay quick to start.
if TYPE_CHECKING:
    from servo.engine.schema import AttemptRow, DepRow, RunRow, TaskRow
    from servo.engine.snapshot import Snapshot
    from servo.storage.base import ObjectStore

#: The workspace the CLI's runs live in.


@dataclass(frozen=True, slots=True)
class RunDetail:
    """A run with its tasks in plan order and their attempts.

    Attributes:
        run: the run row.
        tasks: its tasks, in plan order.
        attempts: per task key, its attempts by ascending number (winning rows only).
    """

    run: RunRow
    tasks: list[TaskRow]
    attempts: dict[str, list[AttemptRow]]

    def task(self, task_key: str) -> TaskRow | None:
        """The task `task_key`, or None."""
        return next((t for t in self.tasks if t.task_key == task_key), None)


def plan_order(task_keys: list[str], deps: list[DepRow]) -> list[str]:
    """`task_keys` in topological levels of `deps`, sorted within a level."""
    from servo.graph.planner import topological_levels

    names = sorted(task_keys)
    index = {name: i for i, name in enumerate(names)}
    parents: list[list[int]] = [[] for _ in names]
    children: list[list[int]] = [[] for _ in names]
    for dep in deps:
        child, parent = index.get(dep.task_key), index.get(dep.upstream_task_key)
        if child is not None and parent is not None:
            parents[child].append(parent)
            children[parent].append(child)
    ordered = [names[i] for level in topological_levels(names, parents, children) for i in level]
    placed = set(ordered)
    return ordered + [n for n in names if n not in placed]  # a cycle cannot be planned


def run_attempts(snapshot: Snapshot, run_id: str) -> dict[str, list[AttemptRow]]:
    """The winning attempts of each task of `run_id`, by ascending attempt number."""
    import pyarrow.compute as pc

    from servo.engine.derive import current_attempts

    table = snapshot.table("attempts")
    rows: list[AttemptRow] = snapshot.rows(
        "attempts", table.filter(pc.equal(table.column("run_id"), run_id))
    )
    by_task: dict[str, list[AttemptRow]] = {}
    for row in rows:
        by_task.setdefault(row.task_key, []).append(row)
    return {
        key: [won[n] for n in sorted(won)]
        for key, found in by_task.items()
        if (won := current_attempts(found))
    }


def run_deps(snapshot: Snapshot, run_id: str) -> list[DepRow]:
    """The dependency edges of `run_id`'s tasks."""
    import pyarrow.compute as pc

    table = snapshot.table("dep_satisfaction")
    found: list[DepRow] = snapshot.rows(
        "dep_satisfaction", table.filter(pc.equal(table.column("run_id"), run_id))
    )
    return found


def detail_from_snapshot(
    snapshot: Snapshot, run_id: str, run: RunRow | None = None, tasks: list[TaskRow] | None = None
) -> RunDetail:
    """The run `run_id` from `snapshot` (or `run` and `tasks` when given, e.g. the catalog's).

    Raises:
        ServoError: the run is unknown.
    """
    if run is None:
        run = snapshot.run(run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        tasks = snapshot.tasks_of(run_id)
    tasks = tasks or []
    by_key = {t.task_key: t for t in tasks}
    order = plan_order(list(by_key), run_deps(snapshot, run_id))
    return RunDetail(run, [by_key[k] for k in order], run_attempts(snapshot, run_id))


def load_detail(
    store: ObjectStore,
    tenant: str,
    run_id: str,
    run: RunRow | None = None,
    tasks: list[TaskRow] | None = None,
) -> RunDetail:
    """`detail_from_snapshot` of the latest published projections of `tenant`."""
    from servo.engine.snapshot import SnapshotReader

    snapshot = SnapshotReader(store, tenant, DEFAULT_WORKSPACE).load()
    return detail_from_snapshot(snapshot, run_id, run, tasks)
