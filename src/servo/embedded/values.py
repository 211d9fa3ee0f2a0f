"""`servo.load_value`: read an asset's materialized value from a Servo home.

The latest value is the output of the asset's most recently finished successful
task, across runs, as published in the home's projections (the source of truth the
catalog is built from); with ``run_id``, the value that run produced. Values come
back in their Python type (`servo.sdk.io`): tables as the table kind written, plain
data from JSON, anything else unpickled.

``home=None`` is the configured home (``SERVO_HOME``, the config file's ``home``,
else ``./.servo``); nothing is written to the home. A value that does not exist —
an asset never materialized, an unknown run, an asset that did not succeed in that
run — raises `ValueNotFoundError` saying what to run.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from servo.embedded.result import asset_name
from servo.engine.ids import DEFAULT_WORKSPACE
from servo.engine.vocabulary import TaskStatus
from servo.errors import ValueNotFoundError
from servo.graph.suggest import did_you_mean

if TYPE_CHECKING:
    from servo.engine.schema import TaskRow
    from servo.engine.snapshot import Snapshot


def _tasks_of_asset(snapshot: Snapshot, name: str) -> list[TaskRow]:
    import pyarrow.compute as pc

    tasks = snapshot.table("tasks")
    found: list[TaskRow] = snapshot.rows("tasks", tasks.filter(pc.equal(tasks["asset_key"], name)))
    return found


def _materialized_names(snapshot: Snapshot) -> list[str]:
    names: list[str] = snapshot.table("tasks").column("asset_key").unique().to_pylist()
    return names


def _describe(task: TaskRow) -> str:
    status = task.status.lower()
    error = f": {task.error_type}: {task.error_message}" if task.error_type else ""
    return f"it {status if status == 'failed' else 'was ' + status} in run {task.run_id}{error}"


def _in_run(snapshot: Snapshot, name: str, run_id: str, where: str, retry: str) -> TaskRow:
    if snapshot.run(run_id) is None:
        raise ValueNotFoundError(
            f"no run {run_id!r} in {where}; 'servo runs list' there shows the runs"
        )
    tasks = snapshot.tasks_of(run_id)
    task = next((t for t in tasks if t.asset_key == name), None)
    if task is None:
        hint = did_you_mean(name, [t.asset_key for t in tasks])
        raise ValueNotFoundError(
            f"run {run_id} did not run asset {name!r}{hint}; its assets: "
            f"{', '.join(t.asset_key for t in tasks)}"
        )
    if task.status != TaskStatus.SUCCEEDED or task.output_location is None:
        raise ValueNotFoundError(
            f"asset {name!r} has no value in run {run_id}: {_describe(task)}; {retry}"
        )
    return task


def _latest(snapshot: Snapshot, name: str, where: str, retry: str) -> TaskRow:
    tasks = _tasks_of_asset(snapshot, name)
    if not tasks:
        hint = did_you_mean(name, _materialized_names(snapshot))
        raise ValueNotFoundError(f"asset {name!r} was never materialized in {where}{hint}; {retry}")
    succeeded = [
        t for t in tasks if t.status == TaskStatus.SUCCEEDED and t.output_location is not None
    ]
    if not succeeded:
        last = max(tasks, key=lambda t: (t.finished_at or 0, t.run_id))
        raise ValueNotFoundError(
            f"asset {name!r} never succeeded in {where}; the last time, {_describe(last)}; {retry}"
        )
    return max(succeeded, key=lambda t: (t.finished_at or 0, t.run_id))


def load_value(
    asset: object,
    *,
    home: str | os.PathLike[str] | None = None,
    run_id: str | None = None,
    tenant: str = "default",
) -> Any:
    """The value `asset` last materialized in a Servo home (or in run `run_id`).

    Args:
        asset: the asset's name or its ``@asset`` function.
        home: the Servo home; None for the configured one (``SERVO_HOME``, the config
            file, else ``./.servo``).
        run_id: the run whose value to load; None for the latest successful one.
        tenant: the tenant whose runs to read.

    Returns:
        The value in the Python type it was stored from.

    Raises:
        ValueNotFoundError: the asset was never materialized (or never succeeded),
            the run does not exist, or the asset did not succeed in it; the message
            says what to run.
        ConfigError: the settings cannot be used.
    """
    from servo.config.settings import load_settings
    from servo.embedded.materialize import home_settings
    from servo.engine.snapshot import SnapshotReader
    from servo.sdk.io import read_value
    from servo.storage.factory import open_store

    name = asset_name(asset)
    settings = load_settings() if home is None else home_settings(home)
    store = open_store(settings.storage, settings.home)
    snapshot = SnapshotReader(store, tenant, DEFAULT_WORKSPACE).load()
    where = f"the Servo home {str(settings.home)!r} (tenant {tenant!r})"
    scope = "" if tenant == "default" else f" --tenant {tenant}"
    retry = f"run 'servo materialize +{name} --home {settings.home}{scope}' to materialize it"
    if run_id is None:
        task = _latest(snapshot, name, where, retry)
    else:
        task = _in_run(snapshot, name, run_id, where, retry)
    assert task.output_location is not None and task.output_format is not None
    return read_value(store, task.output_location, task.output_format)
