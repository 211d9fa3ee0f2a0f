"""The run controller: turn a selection of assets into a run's plan.

Dependencies inside the selection become edges of the run. A dependency outside
the selection is read from that asset's latest successful materialization, pinned
into the plan so that every attempt of the task reads the same value; an asset
never materialized before cannot be read, and planning says which one to select.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from servo.engine import events as ev
from servo.engine import schema as s
from servo.errors import DefinitionError

if TYPE_CHECKING:
    from servo.sdk.definitions import Definitions


#: A materialized value: (location, format).
Materialization = tuple[str, str]


def plan_tasks(
    defs: Definitions,
    selected: Sequence[str],
    latest: Mapping[str, Materialization] | None = None,
) -> tuple[ev.PlannedTask, ...]:
    """The planned tasks of a run over `selected` assets (in the given order).

    Args:
        defs: the loaded definitions.
        selected: asset names to materialize, in topological order.
        latest: latest successful materialization per asset, for dependencies
            outside the selection.

    Raises:
        DefinitionError: a dependency outside the selection was never materialized.
    """
    chosen = set(selected)
    latest = latest or {}
    tasks = []
    for name in selected:
        definition = defs.assets[name]
        deps: list[tuple[str, ev.DependencyType]] = []
        pinned: list[tuple[str, str, str]] = []
        for dep in definition.dependencies:
            if dep.name in chosen:
                deps.append((dep.name, dep.type))
                continue
            found = latest.get(dep.name)
            if found is None:
                raise DefinitionError(
                    f"asset '{name}' needs '{dep.name}', which is not selected and has never "
                    f"been materialized; select it too (e.g. '+{name}')"
                )
            if dep.type == "data":
                pinned.append((dep.name, found[0], found[1]))
        retry = definition.retry
        tasks.append(
            ev.PlannedTask(
                task_key=name,
                asset_key=name,
                deps=tuple(deps),
                max_attempts=1 if retry is None else retry.max_attempts,
                retry=retry,
                timeout_s=definition.timeout,
                pinned_inputs=tuple(pinned),
            )
        )
    return tuple(tasks)


def latest_materializations(
    tasks: Iterable[s.TaskRow], archived: Iterable[s.LatestRow] = ()
) -> dict[str, Materialization]:
    """Per asset, the output of its most recently finished successful task: what a new
    run reads for dependencies outside its selection.

    Args:
        tasks: the tasks of the runs in the hot state.
        archived: the newest successful output per asset partition among archived
            runs (`EngineState.latest`).
    """
    latest: dict[str, tuple[tuple[int, str, str], Materialization]] = {}

    def offer(asset: str, order: tuple[int, str, str], found: Materialization) -> None:
        seen = latest.get(asset)
        if seen is None or order > seen[0]:
            latest[asset] = (order, found)

    for row in archived:
        offer(row.asset_key, (row.finished_at, row.run_id, row.task_key),
              (row.output_location, row.output_format))  # fmt: skip
    for task in tasks:
        if task.status != s.SUCCEEDED:
            continue
        if task.output_location is None or task.output_format is None:
            continue
        offer(task.asset_key, (task.finished_at or 0, task.run_id, task.task_key),
              (task.output_location, task.output_format))  # fmt: skip
    return {name: found for name, (_, found) in latest.items()}
