"""Statements on the run history: executions, their tasks, materializations, checkpoints."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from servo.catalog.queries.common import InsertFactory, Tenant, owned, upsert, visible
from servo.catalog.schema import (
    execution_tasks,
    executions,
    materializations,
    partition_or_blank,
    projector_state,
)

# --------------------------------------------------------------------- executions
_EXECUTION_STATE = (
    "status", "selection", "defs_source", "n_tasks", "n_succeeded", "n_failed", "n_skipped",
    "n_cancelled", "completed_at", "cancel_requested_at",
)  # fmt: skip


def create_execution(insert: InsertFactory) -> Any:
    """Insert an execution unless its id or idempotency key exists; returns the row."""
    return insert(executions).on_conflict_do_nothing().returning(*executions.c)


def upsert_executions(insert: InsertFactory) -> Any:
    """Upsert projected executions by (tenant, execution id); a row keeps its id."""
    return upsert(
        insert,
        executions,
        [executions.c.tenant_key, executions.c.execution_id],
        _EXECUTION_STATE,
    )


def execution_by_id(tenant: Tenant, execution_id: str, *, own: bool = False) -> sa.Select[Any]:
    """The execution `execution_id` (only the tenant's own when `own`), own first."""
    own_first = sa.case((executions.c.tenant_id.is_(None), 1), else_=0)
    scope = owned(executions, tenant) if own else visible(executions, tenant)
    return (
        sa.select(executions)
        .where(scope, executions.c.execution_id == execution_id)
        .order_by(own_first)
        .limit(1)
    )


#: The tenant's own execution by idempotency key; params ``tenant`` (the tenant key:
#: '' for the system), ``workspace_id``, ``idempotency_key``. Built once: the
#: idempotent create is the catalog's hottest path.
EXECUTION_BY_KEY = sa.select(executions).where(
    executions.c.tenant_key == sa.bindparam("tenant", type_=sa.Text),
    executions.c.workspace_id == sa.bindparam("workspace_id", type_=sa.Text),
    executions.c.idempotency_key == sa.bindparam("idempotency_key", type_=sa.Text),
)


def set_execution_status(
    tenant: Tenant, execution_id: str, status: str, completed_at: int | None, now: int
) -> sa.Update:
    """Set an execution's status (and completion time); returns the row."""
    return (
        sa.update(executions)
        .where(owned(executions, tenant), executions.c.execution_id == execution_id)
        .values(
            status=status,
            completed_at=sa.func.coalesce(executions.c.completed_at, completed_at),
            updated_at=now,
        )
        .returning(*executions.c)
    )


def delete_execution(tenant: Tenant, execution_id: str) -> list[sa.Delete]:
    """Delete an execution, its tasks and its materializations."""
    return [
        sa.delete(table).where(owned(table, tenant), table.c.execution_id == execution_id)
        for table in (materializations, execution_tasks, executions)
    ]


def upsert_tasks(insert: InsertFactory) -> Any:
    """Upsert projected tasks by (tenant, execution, task key)."""
    return upsert(
        insert,
        execution_tasks,
        [
            execution_tasks.c.tenant_key,
            execution_tasks.c.execution_id,
            execution_tasks.c.task_key,
        ],
        [
            "asset_key", "partition_key", "status", "attempt", "max_attempts", "started_at",
            "finished_at", "error_type", "error_message", "output_rows",
        ],
    )  # fmt: skip


def tasks_of(tenant: Tenant, execution_id: str) -> sa.Select[Any]:
    """The tasks of an execution, by task key."""
    return (
        sa.select(execution_tasks)
        .where(visible(execution_tasks, tenant), execution_tasks.c.execution_id == execution_id)
        .order_by(execution_tasks.c.task_key)
    )


# --------------------------------------------------------------- materializations
def upsert_materializations(insert: InsertFactory) -> Any:
    """Upsert by (tenant, execution, asset, partition); an existing row keeps its id."""
    return upsert(
        insert,
        materializations,
        [
            materializations.c.tenant_key,
            materializations.c.execution_id,
            materializations.c.asset_key,
            partition_or_blank(materializations.c.partition_key),
        ],
        ["location", "format", "row_count", "size_bytes", "started_at", "finished_at"],
        touch=(),
    )


def materialization_by_key(
    tenant: Tenant, execution_id: str, asset_key: str, partition_key: str | None
) -> sa.Select[Any]:
    """The tenant's materialization of (execution, asset, partition)."""
    m = materializations
    return sa.select(m).where(
        owned(m, tenant),
        m.c.execution_id == execution_id,
        m.c.asset_key == asset_key,
        partition_or_blank(m.c.partition_key) == (partition_key or ""),
    )


def latest_materialization(
    tenant: Tenant, asset_key: str, partition_key: str | None
) -> sa.Select[Any]:
    """The newest visible materialization of an asset (partition)."""
    m = materializations
    conditions = [visible(m, tenant), m.c.asset_key == asset_key]
    if partition_key is not None:
        conditions.append(m.c.partition_key == partition_key)
    return sa.select(m).where(*conditions).order_by(m.c.id.desc()).limit(1)


def delete_materialization(tenant: Tenant, materialization_id: str) -> sa.Delete:
    """Delete the tenant's materialization by id."""
    return sa.delete(materializations).where(
        owned(materializations, tenant), materializations.c.id == materialization_id
    )


# ---------------------------------------------------------------- projector state
def checkpoint(tenant: str, workspace_id: str, *, lock: bool) -> sa.Select[Any]:
    """The projector's checkpoint of the scope (``FOR UPDATE`` when `lock`; SQLite
    ignores it and relies on ``BEGIN IMMEDIATE``)."""
    query = sa.select(projector_state).where(
        owned(projector_state, tenant), projector_state.c.workspace_id == workspace_id
    )
    return query.with_for_update() if lock else query


def create_checkpoint(insert: InsertFactory) -> Any:
    """Insert a scope's first checkpoint row unless it exists."""
    return insert(projector_state).on_conflict_do_nothing()


def save_checkpoint(insert: InsertFactory) -> Any:
    """Insert or move the checkpoint of (tenant, workspace)."""
    stmt = insert(projector_state)
    return stmt.on_conflict_do_update(
        index_elements=[projector_state.c.tenant_id, projector_state.c.workspace_id],
        set_={
            "generation": stmt.excluded.generation,
            "files": stmt.excluded.files,
            "updated_at": stmt.excluded.updated_at,
        },
    )
