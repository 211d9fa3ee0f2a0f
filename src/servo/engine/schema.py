"""Projection tables: their rows, keys and Arrow schemas.

This module is the contract between the fold (which produces rows) and the
compactor (which writes them as Parquet and reads them back). Every table has a
primary key; a table's logical content is its rows sorted by key.

Fact tables hold what events said, merged with idempotent, order-insensitive
operations (min, max, argmin by `(emitted_at, event_id)`): `runs` (request part),
`attempts`, `timers`. Derived tables are pure functions of the facts: `tasks`,
`dep_satisfaction`, `dispatch_outbox` and the derived columns of `runs`.
`partition_status`, `schedules` and `sensors` are reserved for Layer 2.

Times are epoch microseconds (int64); absent values are null. Statuses and timer
kinds are `StrEnum` members (`servo.engine.vocabulary`): stored as their string
values, read back as members.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any, Final, Literal

import pyarrow as pa

from servo.engine.vocabulary import (
    OutboxStatus,
    RunStatus,
    TaskStatus,
    TimerKind,
    TimerStatus,
)

# Members of the vocabularies (servo.engine.vocabulary) under their historical names.
# Task statuses (tasks.status).
PENDING: Final = TaskStatus.PENDING
READY: Final = TaskStatus.READY
DISPATCHED: Final = TaskStatus.DISPATCHED
RUNNING: Final = TaskStatus.RUNNING
RETRY_WAIT: Final = TaskStatus.RETRY_WAIT
SUCCEEDED: Final = TaskStatus.SUCCEEDED
FAILED: Final = TaskStatus.FAILED
SKIPPED: Final = TaskStatus.SKIPPED
CANCELLED: Final = TaskStatus.CANCELLED
TERMINAL_TASK_STATUSES: Final = frozenset({SUCCEEDED, FAILED, SKIPPED, CANCELLED})

# Edge resolutions (dep_satisfaction.resolution).
RESOLUTION_SUCCESS: Final = "SUCCESS"
RESOLUTION_FAILED: Final = "FAILED"
RESOLUTION_SKIPPED: Final = "SKIPPED"
RESOLUTION_CANCELLED: Final = "CANCELLED"

# Outbox statuses (dispatch_outbox.status).
OUTBOX_PENDING: Final = OutboxStatus.PENDING
OUTBOX_ENQUEUED: Final = OutboxStatus.ENQUEUED
OUTBOX_COMPLETED: Final = OutboxStatus.COMPLETED

# Timer statuses (timers.status).
TIMER_SCHEDULED: Final = TimerStatus.SCHEDULED
TIMER_FIRED: Final = TimerStatus.FIRED

# Run statuses (runs.status).
RUN_RUNNING: Final = RunStatus.RUNNING
RUN_SUCCEEDED: Final = RunStatus.SUCCEEDED
RUN_FAILED: Final = RunStatus.FAILED
RUN_CANCELLED: Final = RunStatus.CANCELLED

#: `TimerRow.kind` of a timer whose firing was folded before its request.
KIND_NOT_YET_KNOWN: Final = ""

_S = pa.string()
_I64 = pa.int64()
_I32 = pa.int32()
_F64 = pa.float64()
_B = pa.bool_()


@dataclass(slots=True)
class RunRow:
    """One run. Request facts plus derived status and counts."""

    run_id: str
    tenant_id: str
    workspace_id: str
    request_event_id: str
    requested_at: int
    idempotency_key: str | None = None
    selection: str | None = None
    defs_source: str | None = None
    cancel_requested_at: int | None = None
    status: RunStatus = RUN_RUNNING
    n_tasks: int = 0
    n_succeeded: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    n_cancelled: int = 0
    #: Latest end time of its tasks once every task is terminal (RunCompleted).
    completed_at: int | None = None
    #: The version of the definitions it was planned from (None: not recorded).
    code_version: str | None = None


@dataclass(slots=True)
class TaskRow:
    """One task of a run: plan columns, then status derived from facts."""

    run_id: str
    task_key: str
    asset_key: str
    partition_key: str | None = None
    deps_total: int = 0
    deps_satisfied_count: int = 0
    max_attempts: int = 1
    #: The planned retry policy as JSON (`RetryPolicy.to_json`), or None.
    retry: str | None = None
    timeout_s: float | None = None
    status: TaskStatus = PENDING
    #: Current attempt number (0 before the first dispatch).
    attempt: int = 0
    attempt_id: str | None = None
    #: When every edge became satisfied (TaskBecameReady), or None.
    ready_at: int | None = None
    started_at: int | None = None
    heartbeat_at: int | None = None
    finished_at: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    output_location: str | None = None
    output_format: str | None = None
    output_size: int | None = None
    output_rows: int | None = None
    #: JSON list of [dependency, location, format] fixed at planning, or None.
    pinned_inputs: str | None = None


@dataclass(slots=True)
class AttemptRow:
    """Facts about one attempt_id of one attempt number of a task.

    Several rows may share an attempt number (racing dispatches, or events carrying
    an unknown attempt_id); the one whose dispatch sorts first is the attempt, the
    others are stale and never affect status.
    """

    run_id: str
    task_key: str
    attempt: int
    attempt_id: str
    dispatch_event_id: str | None = None
    dispatch_at: int | None = None
    enqueued_at: int | None = None
    started_at: int | None = None
    worker_id: str | None = None
    heartbeat_at: int | None = None
    end_event_id: str | None = None
    end_at: int | None = None
    #: "finished" (worker) or "abandoned" (engine: timeout, heartbeat, cancel).
    end_kind: str | None = None
    outcome: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    retryable: bool | None = None
    output_location: str | None = None
    output_format: str | None = None
    output_size: int | None = None
    output_rows: int | None = None
    duration_s: float | None = None
    #: A success that reports an earlier attempt's recorded result (nothing ran).
    reused_attempt_id: str | None = None


@dataclass(slots=True)
class DepRow:
    """One dependency edge of a task and how it was resolved."""

    run_id: str
    task_key: str
    upstream_task_key: str
    dep_type: str = "data"
    #: None while unresolved; SUCCESS / FAILED / SKIPPED / CANCELLED once resolved.
    resolution: str | None = None
    resolved_at: int | None = None


@dataclass(slots=True)
class OutboxRow:
    """A dispatch to hand to the queue under its deterministic ids."""

    dispatch_id: str
    cloud_task_id: str
    run_id: str
    task_key: str
    attempt: int
    attempt_id: str
    asset_key: str
    partition_key: str | None
    status: OutboxStatus
    requested_at: int
    enqueued_at: int | None = None


@dataclass(slots=True)
class TimerRow:
    """A durable timer and whether it fired."""

    timer_id: str
    cloud_task_id: str
    run_id: str
    task_key: str
    attempt: int
    #: What the timer does; `KIND_NOT_YET_KNOWN` until its request is folded.
    kind: TimerKind | Literal[""]
    due_at: int
    request_event_id: str
    requested_at: int
    fired_at: int | None = None
    status: TimerStatus = TIMER_SCHEDULED


@dataclass(slots=True)
class PartitionStatusRow:
    """Reserved (Layer 2): latest materialization status per asset partition."""

    asset_key: str
    partition_key: str
    status: str
    run_id: str | None = None
    updated_at: int | None = None


@dataclass(slots=True)
class ScheduleRow:
    """Reserved (Layer 2): schedule state."""

    schedule_id: str
    cron: str
    status: str
    next_tick_at: int | None = None
    last_tick_at: int | None = None


@dataclass(slots=True)
class SensorRow:
    """Reserved (Layer 2): sensor state."""

    sensor_id: str
    status: str
    cursor: str | None = None
    last_evaluated_at: int | None = None


@dataclass(slots=True)
class LatestRow:
    """The newest successful materialization of an asset partition among archived runs.

    Runs still in the hot state are not in it (their tasks are); `partition_key` is
    "" for an unpartitioned asset.
    """

    asset_key: str
    partition_key: str
    run_id: str
    task_key: str
    finished_at: int
    output_location: str
    output_format: str


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A projection table: name, row type, key columns and Arrow schema.

    `vocabulary` maps the index of each column that holds a vocabulary (a `StrEnum`)
    to its value -> member table, so rows read back from Parquet hold members.
    """

    name: str
    row_type: type[Any]
    key: tuple[str, ...]
    schema: pa.Schema
    vocabulary: tuple[tuple[int, Mapping[str, str]], ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)

    def key_of(self, row: Any) -> tuple[Any, ...]:
        return tuple(getattr(row, k) for k in self.key)

    def to_arrow(self, rows: Iterable[Any]) -> pa.Table:
        """Rows -> an Arrow table sorted by key (the canonical form)."""
        ordered = sorted(rows, key=self.key_of)
        arrays = [pa.array([getattr(r, f.name) for r in ordered], type=f.type) for f in self.schema]
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def from_arrow(self, table: pa.Table) -> list[Any]:
        """An Arrow table with this schema -> rows (vocabulary columns as members).

        Raises:
            ValueError: a vocabulary column holds a value outside its vocabulary.
        """
        columns = [table.column(name).to_pylist() for name in self.columns]
        for index, members in self.vocabulary:
            try:
                columns[index] = [None if x is None else members[x] for x in columns[index]]
            except KeyError as exc:
                raise ValueError(
                    f"{self.name}.{self.columns[index]}: unknown value {exc.args[0]!r}"
                ) from None
        make = self.row_type
        return [make(*values) for values in zip(*columns, strict=True)]


def _spec(
    name: str,
    row_type: type[Any],
    key: Sequence[str],
    types: dict[str, pa.DataType],
    vocabulary: Mapping[str, Mapping[str, str]] | None = None,
) -> TableSpec:
    names = [f.name for f in fields(row_type)]
    if set(names) != set(types):
        raise AssertionError(f"{name}: schema and row type disagree: {set(names) ^ set(types)}")
    nullable_keys = set(key)
    schema = pa.schema([pa.field(n, types[n], nullable=n not in nullable_keys) for n in names])
    members = tuple((names.index(col), table) for col, table in (vocabulary or {}).items())
    return TableSpec(name, row_type, tuple(key), schema, members)


def _members(vocabulary: type[StrEnum], *extra: str) -> dict[str, str]:
    """Value -> member of `vocabulary` (plus `extra` values kept as they are)."""
    table: dict[str, str] = {m.value: m for m in vocabulary}
    table.update((x, x) for x in extra)
    return table


RUNS = _spec(
    "runs", RunRow, ["run_id"],
    {"run_id": _S, "tenant_id": _S, "workspace_id": _S, "request_event_id": _S,
     "requested_at": _I64, "idempotency_key": _S, "selection": _S, "defs_source": _S,
     "cancel_requested_at": _I64, "status": _S, "n_tasks": _I32, "n_succeeded": _I32,
     "n_failed": _I32, "n_skipped": _I32, "n_cancelled": _I32, "completed_at": _I64,
     "code_version": _S},
    {"status": _members(RunStatus)},
)  # fmt: skip
TASKS = _spec(
    "tasks", TaskRow, ["run_id", "task_key"],
    {"run_id": _S, "task_key": _S, "asset_key": _S, "partition_key": _S, "deps_total": _I32,
     "deps_satisfied_count": _I32, "max_attempts": _I32, "retry": _S, "timeout_s": _F64,
     "status": _S, "attempt": _I32, "attempt_id": _S, "ready_at": _I64, "started_at": _I64,
     "heartbeat_at": _I64, "finished_at": _I64, "error_type": _S, "error_message": _S,
     "output_location": _S, "output_format": _S, "output_size": _I64, "output_rows": _I64,
     "pinned_inputs": _S},
    {"status": _members(TaskStatus)},
)  # fmt: skip
ATTEMPTS = _spec(
    "attempts", AttemptRow, ["run_id", "task_key", "attempt", "attempt_id"],
    {"run_id": _S, "task_key": _S, "attempt": _I32, "attempt_id": _S, "dispatch_event_id": _S,
     "dispatch_at": _I64, "enqueued_at": _I64, "started_at": _I64, "worker_id": _S,
     "heartbeat_at": _I64, "end_event_id": _S, "end_at": _I64, "end_kind": _S, "outcome": _S,
     "error_type": _S, "error_message": _S, "error_traceback": _S, "retryable": _B,
     "output_location": _S, "output_format": _S, "output_size": _I64, "output_rows": _I64,
     "duration_s": _F64, "reused_attempt_id": _S},
)  # fmt: skip
DEP_SATISFACTION = _spec(
    "dep_satisfaction", DepRow, ["run_id", "task_key", "upstream_task_key"],
    {"run_id": _S, "task_key": _S, "upstream_task_key": _S, "dep_type": _S,
     "resolution": _S, "resolved_at": _I64},
)  # fmt: skip
DISPATCH_OUTBOX = _spec(
    "dispatch_outbox", OutboxRow, ["dispatch_id"],
    {"dispatch_id": _S, "cloud_task_id": _S, "run_id": _S, "task_key": _S, "attempt": _I32,
     "attempt_id": _S, "asset_key": _S, "partition_key": _S, "status": _S,
     "requested_at": _I64, "enqueued_at": _I64},
    {"status": _members(OutboxStatus)},
)  # fmt: skip
TIMERS = _spec(
    "timers", TimerRow, ["timer_id"],
    {"timer_id": _S, "cloud_task_id": _S, "run_id": _S, "task_key": _S, "attempt": _I32,
     "kind": _S, "due_at": _I64, "request_event_id": _S, "requested_at": _I64,
     "fired_at": _I64, "status": _S},
    {"kind": _members(TimerKind, KIND_NOT_YET_KNOWN), "status": _members(TimerStatus)},
)  # fmt: skip
PARTITION_STATUS = _spec(
    "partition_status", PartitionStatusRow, ["asset_key", "partition_key"],
    {"asset_key": _S, "partition_key": _S, "status": _S, "run_id": _S, "updated_at": _I64},
)  # fmt: skip
SCHEDULES = _spec(
    "schedules", ScheduleRow, ["schedule_id"],
    {"schedule_id": _S, "cron": _S, "status": _S, "next_tick_at": _I64, "last_tick_at": _I64},
)  # fmt: skip
SENSORS = _spec(
    "sensors", SensorRow, ["sensor_id"],
    {"sensor_id": _S, "status": _S, "cursor": _S, "last_evaluated_at": _I64},
)  # fmt: skip

LATEST = _spec(
    "latest_materializations", LatestRow, ["asset_key", "partition_key"],
    {"asset_key": _S, "partition_key": _S, "run_id": _S, "task_key": _S, "finished_at": _I64,
     "output_location": _S, "output_format": _S},
)  # fmt: skip

#: Every table the fold keeps (the hot state), in a fixed order.
TABLES: Final[tuple[TableSpec, ...]] = (
    RUNS, TASKS, ATTEMPTS, DEP_SATISFACTION, DISPATCH_OUTBOX, TIMERS,
    PARTITION_STATUS, SCHEDULES, SENSORS,
)  # fmt: skip
#: The tables whose rows belong to one run: an archived run's rows leave them for
#: their history twin (`HISTORY_OF`).
RUN_TABLES: Final[tuple[TableSpec, ...]] = (
    RUNS, TASKS, ATTEMPTS, DEP_SATISFACTION, DISPATCH_OUTBOX, TIMERS,
)  # fmt: skip
#: Table name -> its history twin: same rows and key, named ``history_{name}``.
HISTORY_OF: Final[dict[str, TableSpec]] = {
    t.name: replace(t, name=f"history_{t.name}") for t in RUN_TABLES
}
#: Every table a manifest may name: the hot tables, their history twins, the index of
#: archived materializations.
TABLES_BY_NAME: Final[dict[str, TableSpec]] = {
    t.name: t for t in (*TABLES, *HISTORY_OF.values(), LATEST)
}
