"""The projector's checkpoint, written in the same transaction as what it projected.

`apply` locks the checkpoint row of the engine scope (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises writers), checks it is still
at the generation the batch was computed from (the first batch of a scope creates
the row first, so concurrent first batches queue on it too), upserts executions, tasks and
materializations, and moves the checkpoint — all or nothing. A checkpoint that
moved meanwhile (another projector of the same scope) makes the batch stale:
nothing is written and the caller recomputes from the newer checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from servo.catalog import materializations as m
from servo.catalog import queries as q
from servo.catalog.database import Database
from servo.catalog.executions import execution_rows, task_rows
from servo.catalog.run_records import Checkpoint, ProjectedFiles, ProjectionBatch


def _files_document(files: Mapping[str, ProjectedFiles]) -> dict[str, Any]:
    return {name: {"base": f.base, "deltas": list(f.deltas)} for name, f in sorted(files.items())}


def _checkpoint(row: Any) -> Checkpoint:
    files = {
        name: ProjectedFiles(doc.get("base"), tuple(doc.get("deltas", ())))
        for name, doc in (row.files or {}).items()
    }
    return Checkpoint(
        tenant_id=row.tenant_id,
        workspace_id=row.workspace_id,
        generation=row.generation,
        files=files,
        updated_at=row.updated_at,
    )


class SqlProjectionCatalog:
    """`servo.catalog.protocol.ProjectionCatalog` over a `Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def checkpoint(self, tenant: str, workspace_id: str) -> Checkpoint | None:
        query = q.checkpoint(tenant, workspace_id, lock=False)

        def work(connection: sa.Connection) -> Checkpoint | None:
            row = connection.execute(query).first()
            return None if row is None else _checkpoint(row)

        return self._db.run("projection.checkpoint", tenant, work)

    def apply(self, tenant: str, batch: ProjectionBatch) -> bool:
        if not tenant:
            raise ValueError("the projector writes for an engine tenant, never for the system")
        now = self._db.now()
        executions = execution_rows(tenant, batch.executions, now)
        tasks = task_rows(tenant, batch.tasks, now)
        values = m.materialization_rows(tenant, batch.materializations, now)
        lock = q.checkpoint(tenant, batch.workspace_id, lock=self._db.backend.name != "sqlite")
        insert = self._db.insert
        empty = {
            "tenant_id": tenant,
            "workspace_id": batch.workspace_id,
            "generation": 0,
            "files": {},
        }

        def work(connection: sa.Connection) -> bool:
            row = connection.execute(lock).first()
            if row is None:  # create the row first, so that concurrent projectors queue on it
                connection.execute(q.create_checkpoint(insert), {**empty, "updated_at": now})
                row = connection.execute(lock).one()
            current = row.generation
            if current != batch.after_generation:
                return False
            if executions:
                connection.execute(q.upsert_executions(insert), executions)
            if tasks:
                connection.execute(q.upsert_tasks(insert), tasks)
            m.upsert(self._db, connection, values)
            connection.execute(
                q.save_checkpoint(insert),
                {
                    "tenant_id": tenant,
                    "workspace_id": batch.workspace_id,
                    "generation": batch.generation,
                    "files": _files_document(batch.files),
                    "updated_at": now,
                },
            )
            return True

        return self._db.run("projection.apply", tenant, work, write=True)
