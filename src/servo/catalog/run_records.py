"""The run history's records: executions, their tasks, materializations, projection.

Records come back from reads, specs go into writes; times are epoch microseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal

from servo.engine.ids import DEFAULT_WORKSPACE

#: Execution statuses the catalog accepts (the engine's run statuses, plus PENDING for
#: executions created through the API before the engine saw them).
ExecutionStatus = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
EXECUTION_STATUSES: Final[tuple[str, ...]] = (
    "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ExecutionSpec:
    """An execution (a run) to create or to project from the engine.

    Attributes:
        execution_id: the run id, unique per tenant.
        workspace_id: the engine workspace of the run.
        idempotency_key: creating again with the same key (in the same workspace)
            returns the existing execution.
        status: one of `EXECUTION_STATUSES`.
        selection: the asset selection the run was asked for.
        defs_source: where its definitions were loaded from.
        n_tasks: tasks in the run.
        n_succeeded: tasks that succeeded.
        n_failed: tasks that failed.
        n_skipped: tasks skipped because an upstream failed.
        n_cancelled: tasks cancelled.
        requested_at: when the run was requested (epoch µs); 0 means now.
        completed_at: when its last task ended, once every task is terminal.
        cancel_requested_at: when a cancel was requested, if it was.
    """

    execution_id: str
    workspace_id: str = DEFAULT_WORKSPACE
    idempotency_key: str | None = None
    status: ExecutionStatus = "PENDING"
    selection: str | None = None
    defs_source: str | None = None
    n_tasks: int = 0
    n_succeeded: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    n_cancelled: int = 0
    requested_at: int = 0
    completed_at: int | None = None
    cancel_requested_at: int | None = None


@dataclass(frozen=True, slots=True)
class Execution:
    """An execution (a run) as the catalog knows it.

    Attributes:
        id: public id, a ULID derived from the tenant, the run id and its request
            time (`servo.catalog.ids`); keyset cursors use it to break ties.
        tenant_id: owning tenant; None for a system execution.
        execution_id: the run id.
        workspace_id: the engine workspace.
        idempotency_key: the key it was created with, if any.
        status: one of `EXECUTION_STATUSES`.
        selection: the asset selection.
        defs_source: where its definitions were loaded from.
        n_tasks: tasks in the run.
        n_succeeded: tasks that succeeded.
        n_failed: tasks that failed.
        n_skipped: tasks skipped.
        n_cancelled: tasks cancelled.
        requested_at: when it was requested (epoch µs).
        completed_at: when it ended, or None.
        cancel_requested_at: when a cancel was requested, or None.
        created_at: when the catalog first saw it (epoch µs).
        updated_at: its last change in the catalog (epoch µs).
    """

    id: str
    tenant_id: str | None
    execution_id: str
    workspace_id: str
    idempotency_key: str | None
    status: str
    selection: str | None
    defs_source: str | None
    n_tasks: int
    n_succeeded: int
    n_failed: int
    n_skipped: int
    n_cancelled: int
    requested_at: int
    completed_at: int | None
    cancel_requested_at: int | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """The state of one task (one asset) of an execution, as projected from the engine.

    Attributes:
        execution_id: the run.
        task_key: the task, unique within the run.
        asset_key: the asset it materializes.
        partition_key: the partition, if any.
        status: the engine's task status (``SUCCEEDED``, ``FAILED``, ...).
        attempt: the current attempt number.
        max_attempts: attempts allowed by its retry policy.
        started_at: when the current attempt started.
        finished_at: when the current attempt ended.
        error_type: the error class of a failed attempt.
        error_message: the error message of a failed attempt.
        output_rows: rows of the value written, when known.
    """

    execution_id: str
    task_key: str
    asset_key: str
    partition_key: str | None = None
    status: str = "PENDING"
    attempt: int = 0
    max_attempts: int = 1
    started_at: int | None = None
    finished_at: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    output_rows: int | None = None


@dataclass(frozen=True, slots=True)
class ExecutionTask:
    """A task of an execution, as stored.

    Attributes:
        tenant_id: owning tenant.
        execution_id: the run.
        task_key: the task, unique within the run.
        asset_key: the asset it materializes.
        partition_key: the partition, if any.
        status: the engine's task status.
        attempt: the current attempt number.
        max_attempts: attempts allowed by its retry policy.
        started_at: when the current attempt started.
        finished_at: when the current attempt ended.
        error_type: the error class of a failed attempt.
        error_message: the error message of a failed attempt.
        output_rows: rows of the value written, when known.
        updated_at: its last change in the catalog (epoch µs).
    """

    tenant_id: str | None
    execution_id: str
    task_key: str
    asset_key: str
    partition_key: str | None
    status: str
    attempt: int
    max_attempts: int
    started_at: int | None
    finished_at: int | None
    error_type: str | None
    error_message: str | None
    output_rows: int | None
    updated_at: int


@dataclass(frozen=True, slots=True)
class MaterializationSpec:
    """A value an execution wrote for an asset (partition).

    Attributes:
        execution_id: the run that wrote it.
        asset_key: the asset.
        location: where the value is, in the object store.
        partition_key: the partition, if any.
        format: ``parquet``, ``json`` or ``pickle``.
        row_count: rows, when the value is a table.
        size_bytes: bytes written.
        started_at: when the attempt that wrote it started (epoch µs).
        finished_at: when it ended (epoch µs).
    """

    execution_id: str
    asset_key: str
    location: str
    partition_key: str | None = None
    format: str | None = None
    row_count: int | None = None
    size_bytes: int | None = None
    started_at: int | None = None
    finished_at: int | None = None


@dataclass(frozen=True, slots=True)
class Materialization:
    """A recorded materialization.

    Attributes:
        id: public id, a ULID derived from the tenant, the key and the time the value
            was made (`servo.catalog.ids`); lists are newest first by id.
        tenant_id: owning tenant.
        execution_id: the run that wrote it.
        asset_key: the asset.
        location: where the value is, in the object store.
        partition_key: the partition, if any.
        format: ``parquet``, ``json`` or ``pickle``.
        row_count: rows, when the value is a table.
        size_bytes: bytes written.
        started_at: when the attempt that wrote it started (epoch µs).
        finished_at: when it ended (epoch µs).
        created_at: when the catalog recorded it (epoch µs).
    """

    id: str
    tenant_id: str | None
    execution_id: str
    asset_key: str
    location: str
    partition_key: str | None
    format: str | None
    row_count: int | None
    size_bytes: int | None
    started_at: int | None
    finished_at: int | None
    created_at: int


@dataclass(frozen=True, slots=True)
class ProjectedFiles:
    """The projection files of one engine table the projector has read.

    Attributes:
        base: the base file, or None.
        deltas: the L0 delta files, oldest first.
    """

    base: str | None = None
    deltas: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far the catalog projector got for one engine scope (tenant, workspace).

    Attributes:
        tenant_id: the engine scope's tenant.
        workspace_id: the engine scope's workspace.
        generation: the last manifest generation projected.
        files: per engine table, the files of that generation already read.
        updated_at: when it was written (epoch µs).
    """

    tenant_id: str
    workspace_id: str
    generation: int
    files: Mapping[str, ProjectedFiles] = field(hash=False)
    updated_at: int


@dataclass(frozen=True, slots=True)
class ProjectionBatch:
    """What one manifest generation changed, applied atomically with its checkpoint.

    Attributes:
        workspace_id: the engine scope's workspace (the tenant is the call's).
        after_generation: the checkpoint generation the batch was computed from
            (0 when there was none); another projector moving it first makes the
            batch stale.
        generation: the manifest generation the batch brings the catalog to.
        files: the checkpoint's new file lists.
        executions: runs that changed.
        tasks: tasks that changed.
        materializations: values written by tasks that succeeded.
    """

    workspace_id: str
    after_generation: int
    generation: int
    files: Mapping[str, ProjectedFiles] = field(hash=False)
    executions: tuple[ExecutionSpec, ...] = ()
    tasks: tuple[TaskSpec, ...] = ()
    materializations: tuple[MaterializationSpec, ...] = ()


def flat_dict(spec: Any) -> dict[str, Any]:
    """The fields of a flat spec dataclass (scalars only) as a new dict.

    `dataclasses.asdict` copies recursively, field by field, through deep copies: it
    was half of the catalog projection's time on a 1,000-task run. The specs hold
    only scalars, so one ``getattr`` per field is the same dict.
    """
    names = _FIELD_NAMES.get(type(spec))
    if names is None:
        names = _FIELD_NAMES[type(spec)] = tuple(f.name for f in fields(spec))
    return {name: getattr(spec, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
