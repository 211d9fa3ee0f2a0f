"""Public ids become ULIDs: assets, workflows, executions, materializations.

Their ``id`` was a 64-bit identity, one sequence per table shared by every tenant,
so the gaps between a tenant's ids counted the other tenants' inserts. It becomes
TEXT holding a ULID that the writer makes. Existing rows get:

- executions: the id derived from (tenant, execution id) at ``requested_at``;
- materializations: the id derived from (tenant, execution, asset, partition) at
  ``finished_at`` (else ``created_at``) — the ids that projecting them again gives;
- assets, workflows: a fresh ULID at the row's ``created_at``.

The derivation is a frozen copy of `servo.catalog.ids` as of this revision. The
internal keys of ``asset_dependencies`` and ``execution_tasks`` stay identities.

SQLite cannot change a column's type: each table is renamed, created again with the
new DDL, its rows copied, the old table dropped and its indexes created again.
PostgreSQL alters the column in place (policies and grants stay); row-level
security is not forced on the table owner while the ids are rewritten, inside the
migration's transaction. Downgrading numbers the rows 1..n in id order (ULIDs sort
by time) and restores the identities.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BATCH = 1000

#: The converted tables, in 0001's creation order.
_TABLES = ("assets", "workflows", "executions", "materializations")


# ------------------------------------------------------------------ frozen ids
def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _millis(at_us: int | None) -> int:
    return min(max((at_us or 0) // 1000, 0), (1 << 48) - 1)


def _derived(at_us: int | None, kind: str, *key: str) -> str:
    material = "\x00".join((kind, *key)).encode("utf-8")
    entropy = int.from_bytes(hashlib.sha256(material).digest()[:10], "big")
    return _encode(_millis(at_us) << 80 | entropy)


def _fresh(row: Any) -> str:
    return _encode(_millis(row.created_at) << 80 | int.from_bytes(os.urandom(10), "big"))


def _execution(row: Any) -> str:
    return _derived(row.requested_at, "executions", row.tenant_key, row.execution_id)


def _materialization(row: Any) -> str:
    at = row.created_at if row.finished_at is None else row.finished_at
    key = (row.tenant_key, row.execution_id, row.asset_key, row.partition_key or "")
    return _derived(at, "materializations", *key)


_NEW_ID: dict[str, tuple[str, Callable[[Any], str]]] = {
    "assets": ("created_at", _fresh),
    "workflows": ("created_at", _fresh),
    "executions": ("requested_at, execution_id", _execution),
    "materializations": (
        "execution_id, asset_key, partition_key, finished_at, created_at",
        _materialization,
    ),
}


# --------------------------------------------------------------- frozen tables
def _tenant() -> tuple[sa.Column[str], sa.Column[str]]:
    return (
        sa.Column("tenant_id", sa.Text, nullable=True),
        sa.Column(
            "tenant_key",
            sa.Text,
            sa.Computed("coalesce(tenant_id, '')", persisted=True),
            nullable=False,
        ),
    )


def _columns(table: str) -> list[Any]:
    """The columns and constraints of `table` after its id and tenant columns."""
    us = sa.BigInteger
    if table == "assets":
        return [
            sa.Column("name", sa.Text, nullable=False),
            sa.Column("description", sa.Text),
            sa.Column("owner", sa.Text),
            sa.Column("asset_type", sa.Text),
            sa.Column("tags", _JSON, nullable=False),
            sa.Column("timeout_s", sa.Float),
            sa.Column("created_at", us, nullable=False),
            sa.Column("updated_at", us, nullable=False),
        ]
    if table == "workflows":
        return [
            sa.Column("name", sa.Text, nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("definition", _JSON, nullable=False),
            sa.Column("definition_hash", sa.Text, nullable=False),
            sa.Column("description", sa.Text),
            sa.Column("created_at", us, nullable=False),
            sa.CheckConstraint("version >= 1", name="ck_workflows_version"),
        ]
    if table == "executions":
        counts = ("n_tasks", "n_succeeded", "n_failed", "n_skipped", "n_cancelled")
        return [
            sa.Column("execution_id", sa.Text, nullable=False),
            sa.Column("workspace_id", sa.Text, nullable=False),
            sa.Column("idempotency_key", sa.Text),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("selection", sa.Text),
            sa.Column("defs_source", sa.Text),
            *(sa.Column(name, sa.Integer, nullable=False) for name in counts),
            sa.Column("requested_at", us, nullable=False),
            sa.Column("completed_at", us),
            sa.Column("cancel_requested_at", us),
            sa.Column("created_at", us, nullable=False),
            sa.Column("updated_at", us, nullable=False),
            sa.CheckConstraint(
                "status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')",
                name="ck_executions_status",
            ),
        ]
    return [
        sa.Column("execution_id", sa.Text, nullable=False),
        sa.Column("asset_key", sa.Text, nullable=False),
        sa.Column("partition_key", sa.Text),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("format", sa.Text),
        sa.Column("row_count", sa.BigInteger),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("started_at", us),
        sa.Column("finished_at", us),
        sa.Column("created_at", us, nullable=False),
    ]


#: name -> (table, columns, unique), as 0001 created them.
_INDEXES: dict[str, tuple[str, list[Any], bool]] = {
    "ux_assets_name": ("assets", ["tenant_key", "name"], True),
    "ux_workflows_version": ("workflows", ["tenant_key", "name", "version"], True),
    "ux_executions_execution_id": ("executions", ["tenant_key", "execution_id"], True),
    "ux_executions_idempotency_key": (
        "executions",
        ["tenant_key", "workspace_id", "idempotency_key"],
        True,
    ),
    "ix_executions_recent": ("executions", ["tenant_key", "requested_at", "id"], False),
    "ix_executions_status": (
        "executions",
        ["tenant_key", "status", "requested_at", "id"],
        False,
    ),
    "ux_materializations_value": (
        "materializations",
        ["tenant_key", "execution_id", "asset_key", sa.text("coalesce(partition_key, '')")],
        True,
    ),
    "ix_materializations_recent": ("materializations", ["tenant_key", "id"], False),
    "ix_materializations_asset": ("materializations", ["tenant_key", "asset_key", "id"], False),
}


def _batches(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _assign_ids(connection: sa.Connection, table: str) -> None:
    """Give every row of `table` (ids as text) its ULID."""
    columns, new_id = _NEW_ID[table]
    rows = connection.execute(sa.text(f"SELECT id, tenant_key, {columns} FROM {table}")).all()
    changes = [{"old": str(row.id), "new": new_id(row)} for row in rows]
    update = sa.text(f"UPDATE {table} SET id = :new WHERE id = :old")
    for batch in _batches(changes):
        connection.execute(update, batch)


def _rebuild_sqlite(table: str, id_column: sa.Column[Any], id_expression: str) -> None:
    """Create `table` again around `id_column`, its rows copied (id from `id_expression`)."""
    old = f"_old_{table}"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    options = {"sqlite_autoincrement": True} if isinstance(id_column.type, sa.Integer) else {}
    created = op.create_table(table, id_column, *_tenant(), *_columns(table), **options)
    names = [c.name for c in created.columns if c.name not in ("id", "tenant_key")]
    listed = ", ".join(names)
    op.execute(f"INSERT INTO {table} (id, {listed}) SELECT {id_expression}, {listed} FROM {old}")
    op.execute(f"DROP TABLE {old}")
    for name, (owner, columns, unique) in _INDEXES.items():
        if owner == table:
            op.create_index(name, table, columns, unique=unique)


def upgrade() -> None:
    connection = op.get_bind()
    postgres = connection.dialect.name == "postgresql"
    for table in _TABLES:
        if postgres:
            op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} ALTER COLUMN id DROP IDENTITY IF EXISTS")
            op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE TEXT USING id::text")
            _assign_ids(connection, table)
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        else:
            _rebuild_sqlite(table, sa.Column("id", sa.Text, primary_key=True), "CAST(id AS TEXT)")
            _assign_ids(connection, table)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    numbered = "row_number() OVER (ORDER BY id)"
    for table in _TABLES:
        if postgres:
            op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
            op.execute(
                f"UPDATE {table} SET id = n.num::text FROM "
                f"(SELECT id, {numbered} AS num FROM {table}) AS n WHERE {table}.id = n.id"
            )
            op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE BIGINT USING id::bigint")
            op.execute(f"ALTER TABLE {table} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY")
            op.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) "
                f"FROM {table} HAVING count(*) > 0"
            )
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        else:
            column = sa.Column("id", _ID, sa.Identity(), primary_key=True)
            _rebuild_sqlite(table, column, numbered)
