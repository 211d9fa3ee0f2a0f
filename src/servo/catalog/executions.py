"""Executions (runs) and their tasks (`ExecutionCatalog` over SQL).

Idempotent creation (SPEC.md §3): ``INSERT ... ON CONFLICT DO NOTHING RETURNING``;
when nothing comes back, the execution with the same idempotency key (same
tenant and workspace) or the same id already exists and is read and returned. One
transaction, two statements at most, no lock held across them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import sqlalchemy as sa

from servo.catalog import queries as q
from servo.catalog.database import Database
from servo.catalog.ids import execution_id_of
from servo.catalog.pagination import check_page, decode_cursor, to_page
from servo.catalog.records import Page
from servo.catalog.run_records import (
    EXECUTION_STATUSES,
    Execution,
    ExecutionSpec,
    ExecutionStatus,
    ExecutionTask,
    TaskSpec,
    flat_dict,
)
from servo.catalog.schema import executions

#: Statuses after which an execution no longer changes; setting one sets completed_at.
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})

#: The columns of `Execution`, in its field order (rows become records positionally).
COLUMNS = tuple(executions.c[f.name] for f in fields(Execution))
_ORDER = (executions.c.requested_at, executions.c.id)
_PAGE = q.PageQuery(executions, _ORDER, True, COLUMNS)
_PAGE_BY_STATUS = q.PageQuery(executions, _ORDER, True, COLUMNS, equal=("status",))


def _check_status(status: str) -> None:
    if status not in EXECUTION_STATUSES:
        raise ValueError(
            f"execution status {status!r} is not one of {', '.join(EXECUTION_STATUSES)}"
        )


def execution_record(row: Any) -> Execution:
    """An `Execution` from an ``executions`` row."""
    values = dict(row._mapping)
    del values["tenant_key"]
    return Execution(**values)


def task_record(row: Any) -> ExecutionTask:
    """An `ExecutionTask` from an ``execution_tasks`` row."""
    values = dict(row._mapping)
    del values["id"], values["tenant_key"]
    return ExecutionTask(**values)


def execution_rows(
    tenant: str | None, specs: Sequence[ExecutionSpec], now: int
) -> list[dict[str, Any]]:
    """Parameters for inserting or upserting `specs`."""
    rows = []
    for spec in specs:
        _check_status(spec.status)
        row = flat_dict(spec)
        requested_at = spec.requested_at or now
        row.update(
            id=execution_id_of(tenant, spec.execution_id, requested_at),
            tenant_id=tenant,
            requested_at=requested_at,
            created_at=now,
            updated_at=now,
        )
        rows.append(row)
    return rows


def task_rows(tenant: str | None, specs: Sequence[TaskSpec], now: int) -> list[dict[str, Any]]:
    """Parameters for upserting `specs` (the last spec of a task wins)."""
    latest = {(s.execution_id, s.task_key): s for s in specs}
    return [{**flat_dict(s), "tenant_id": tenant, "updated_at": now} for s in latest.values()]


class SqlExecutionCatalog:
    """`servo.catalog.protocol.ExecutionCatalog` over a `Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._insert = q.create_execution(db.insert)

    def create(self, tenant: str | None, spec: ExecutionSpec) -> tuple[Execution, bool]:
        if not spec.execution_id or not spec.workspace_id:
            raise ValueError("an execution needs a non-empty execution_id and workspace_id")
        (values,) = execution_rows(tenant, [spec], self._db.now())
        key = {
            "tenant": tenant or "",
            "workspace_id": spec.workspace_id,
            "idempotency_key": spec.idempotency_key,
        }

        def work(connection: sa.Connection) -> tuple[Execution, bool]:
            row = connection.execute(self._insert, values).first()
            if row is not None:
                return execution_record(row), True
            found = None
            if spec.idempotency_key is not None:
                found = connection.execute(q.EXECUTION_BY_KEY, key).first()
            if found is None:
                found = connection.execute(
                    q.execution_by_id(tenant, spec.execution_id, own=True)
                ).one()
            return execution_record(found), False

        return self._db.run("executions.create", tenant, work, write=True)

    def get(self, tenant: str | None, execution_id: str) -> Execution | None:
        def work(connection: sa.Connection) -> Execution | None:
            row = connection.execute(q.execution_by_id(tenant, execution_id)).first()
            return None if row is None else execution_record(row)

        return self._db.run("executions.get", tenant, work)

    def list(
        self,
        tenant: str | None,
        *,
        status: ExecutionStatus | None = None,
        limit: int = 100,
        offset: int = 0,
        cursor: str | None = None,
    ) -> Page[Execution]:
        check_page(limit, offset, cursor)
        if status is not None:
            _check_status(status)
        after = None if cursor is None else decode_cursor(cursor, (int, str))
        shape = _PAGE if status is None else _PAGE_BY_STATUS
        query = q.page(shape, system=tenant is None, keyset=after is not None)
        equal = None if status is None else {"status": status}
        params = q.page_params(tenant, limit=limit + 1, offset=offset, after=after, equal=equal)

        def work(connection: sa.Connection) -> Page[Execution]:
            rows = connection.execute(query, params).all()
            return to_page(
                rows, limit, lambda r: (r.requested_at, r.id), lambda row: Execution(*row)
            )

        return self._db.run("executions.list", tenant, work)

    def update_status(
        self,
        tenant: str | None,
        execution_id: str,
        status: ExecutionStatus,
        *,
        at: int | None = None,
    ) -> Execution | None:
        _check_status(status)
        now = self._db.now()
        completed_at = (at or now) if status in TERMINAL else None
        update = q.set_execution_status(tenant, execution_id, status, completed_at, now)

        def work(connection: sa.Connection) -> Execution | None:
            row = connection.execute(update).first()
            return None if row is None else execution_record(row)

        return self._db.run("executions.update_status", tenant, work, write=True)

    def delete(self, tenant: str | None, execution_id: str) -> bool:
        def work(connection: sa.Connection) -> bool:
            *dependents, own = q.delete_execution(tenant, execution_id)
            for statement in dependents:
                connection.execute(statement)
            return connection.execute(own).rowcount > 0

        return self._db.run("executions.delete", tenant, work, write=True)

    def tasks(self, tenant: str | None, execution_id: str) -> tuple[ExecutionTask, ...]:
        def work(connection: sa.Connection) -> tuple[ExecutionTask, ...]:
            return tuple(
                task_record(r) for r in connection.execute(q.tasks_of(tenant, execution_id))
            )

        return self._db.run("executions.tasks", tenant, work)
