"""Rows written under revision 0001 (integer ids) and the checks that 0002 converted them.

Shared by the SQLite test (``tests/unit/catalog``) and the PostgreSQL one
(``tests/integration/catalog``): the same rows, the same expectations.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from ulid import ULID

from servo.catalog.ids import execution_id_of, materialization_id_of

#: Two tenants and the system, interleaved, as a busy catalog would hold them.
TENANTS = ("acme", "globex", None)


def seed_0001(connection: sa.Connection) -> None:
    """Insert assets, workflows, executions and materializations the 0001 way."""
    for index in range(6):
        tenant = TENANTS[index % 3]
        stamp = 1_700_000_000_000_000 + index * 1000
        connection.execute(
            sa.text(
                "INSERT INTO assets (tenant_id, name, tags, created_at, updated_at) "
                "VALUES (:t, :name, :tags, :at, :at)"
            ),
            {"t": tenant, "name": f"asset{index}", "tags": json.dumps({}), "at": stamp},
        )
        connection.execute(
            sa.text(
                "INSERT INTO workflows (tenant_id, name, version, definition, definition_hash, "
                "created_at) VALUES (:t, 'daily', :v, :d, 'h', :at)"
            ),
            {"t": tenant, "v": index + 1, "d": json.dumps({"assets": []}), "at": stamp},
        )
        connection.execute(
            sa.text(
                "INSERT INTO executions (tenant_id, execution_id, workspace_id, status, n_tasks, "
                "n_succeeded, n_failed, n_skipped, n_cancelled, requested_at, created_at, "
                "updated_at) VALUES (:t, :e, 'default', 'SUCCEEDED', 1, 1, 0, 0, 0, :at, :at, :at)"
            ),
            {"t": tenant, "e": f"run{index}", "at": stamp},
        )
        connection.execute(
            sa.text(
                "INSERT INTO materializations (tenant_id, execution_id, asset_key, partition_key, "
                "location, finished_at, created_at) VALUES (:t, :e, 'a', :p, 'loc', :f, :at)"
            ),
            {
                "t": tenant,
                "e": f"run{index}",
                "p": "2024" if index % 2 else None,
                "f": stamp + 500 if index % 2 else None,
                "at": stamp,
            },
        )


def _rows(connection: sa.Connection, table: str) -> list[Any]:
    return connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY created_at")).all()


def check_converted(connection: sa.Connection) -> None:
    """Every public id is a ULID; derived ones are what projecting the facts gives."""
    for table in ("assets", "workflows", "executions", "materializations"):
        rows = _rows(connection, table)
        assert len(rows) == 6, table
        for row in rows:
            assert isinstance(row.id, str) and len(row.id) == 26, (table, row.id)
            ULID.from_str(row.id)  # parses
        if table in ("assets", "workflows"):  # fresh ULIDs at the row's creation time
            assert [ULID.from_str(r.id).milliseconds for r in rows] == [
                r.created_at // 1000 for r in rows
            ]
    for row in _rows(connection, "executions"):
        assert row.id == execution_id_of(row.tenant_id, row.execution_id, row.requested_at)
    for row in _rows(connection, "materializations"):
        at = row.created_at if row.finished_at is None else row.finished_at
        expected = materialization_id_of(
            row.tenant_id, row.execution_id, row.asset_key, row.partition_key, at
        )
        assert row.id == expected


def check_downgraded(connection: sa.Connection) -> None:
    """Integer ids 1..n again, in the order of the ULIDs (creation time)."""
    for table in ("assets", "workflows", "executions", "materializations"):
        ids = [row.id for row in _rows(connection, table)]
        assert ids == list(range(1, 7)), (table, ids)
