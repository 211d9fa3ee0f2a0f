"""The declared catalog schema (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Tables (SPEC.md §3 plus the run history): ``assets``, ``asset_dependencies``
(lineage edges, ``dependency_type`` data | metadata | control), ``workflows``
(versioned definitions), ``executions`` (runs; unique idempotency key),
``execution_tasks`` (the state of each task of a run), ``materializations`` (values
written), ``projector_state`` (the catalog projector's checkpoint) and
``definitions_state`` (the hash of the definitions last registered per tenant).

Conventions:

- every table has a nullable ``tenant_id`` (None = global) and a stored generated
  column ``tenant_key = coalesce(tenant_id, '')``. Uniqueness and the lookup
  indexes are on ``tenant_key``, so a global row and a tenant's row may share a
  name while two global rows may not, and every lookup by tenant is an index scan.
  A plain column matters on PostgreSQL: under row-level security the planner only
  turns *leakproof* conditions into index conditions, and ``coalesce(...) = x`` is
  not one, while ``tenant_key = x`` is. Statements filter on ``tenant_key``.
- times are epoch microseconds (BIGINT), like the engine's projections;
- public row ids (``assets``, ``workflows``, ``executions``, ``materializations``:
  returned in records and keyset cursors) are ULIDs made by the writer
  (`servo.catalog.ids`), never a sequence shared by the tenants; the internal
  surrogate keys of ``asset_dependencies`` and ``execution_tasks``, which the
  catalog never returns, are 64-bit identities (INTEGER PRIMARY KEY AUTOINCREMENT on
  SQLite: never reused);
- JSON is JSONB on PostgreSQL.

On PostgreSQL, creating the tables also creates the ``servo_app`` role, the grants
and the row-level security policies (`servo.catalog.rls`). The migrations under
``servo/catalog/migrations`` build the same schema; a test compares them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from servo.catalog.rls import APP_ROLE_SQL, table_rls_sql

metadata = sa.MetaData()

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class _Json(sa.types.TypeDecorator[Any]):
    """JSON; JSONB on PostgreSQL, whose dialect is imported only when it is used.

    (``sa.JSON().with_variant(postgresql.JSONB(), ...)`` needs the PostgreSQL dialect
    at import, which cost every SQLite catalog tens of milliseconds at start.)
    """

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(sa.JSON())


_JSON = _Json()
_US = sa.BigInteger


def partition_or_blank(column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    """``coalesce(partition_key, '')``: materializations are unique per partition or none."""
    return sa.func.coalesce(column, sa.literal_column("''"), type_=sa.Text)


def _id() -> sa.Column[int]:
    """An internal surrogate key (never returned by the catalog)."""
    return sa.Column("id", _ID, sa.Identity(), primary_key=True)


def _public_id() -> sa.Column[str]:
    """A public id: a ULID made by the writer (`servo.catalog.ids`)."""
    return sa.Column("id", sa.Text, primary_key=True)


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


assets = sa.Table(
    "assets",
    metadata,
    _public_id(),
    *_tenant(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("owner", sa.Text),
    sa.Column("asset_type", sa.Text),
    sa.Column("tags", _JSON, nullable=False),
    sa.Column("timeout_s", sa.Float),
    sa.Column("created_at", _US, nullable=False),
    sa.Column("updated_at", _US, nullable=False),
)
sa.Index("ux_assets_name", assets.c.tenant_key, assets.c.name, unique=True)

asset_dependencies = sa.Table(
    "asset_dependencies",
    metadata,
    _id(),
    *_tenant(),
    sa.Column("asset_name", sa.Text, nullable=False),
    sa.Column("depends_on", sa.Text, nullable=False),
    sa.Column("dependency_type", sa.Text, nullable=False),
    sa.Column("created_at", _US, nullable=False),
    sa.CheckConstraint(
        "dependency_type IN ('data', 'metadata', 'control')",
        name="ck_asset_dependencies_type",
    ),
    sqlite_autoincrement=True,
)
sa.Index(
    "ux_asset_dependencies_edge",
    asset_dependencies.c.tenant_key,
    asset_dependencies.c.asset_name,
    asset_dependencies.c.depends_on,
    unique=True,
)
sa.Index(
    "ix_asset_dependencies_upstream",
    asset_dependencies.c.tenant_key,
    asset_dependencies.c.depends_on,
)

workflows = sa.Table(
    "workflows",
    metadata,
    _public_id(),
    *_tenant(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("definition", _JSON, nullable=False),
    sa.Column("definition_hash", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("created_at", _US, nullable=False),
    sa.CheckConstraint("version >= 1", name="ck_workflows_version"),
)
sa.Index(
    "ux_workflows_version",
    workflows.c.tenant_key,
    workflows.c.name,
    workflows.c.version,
    unique=True,
)

executions = sa.Table(
    "executions",
    metadata,
    _public_id(),
    *_tenant(),
    sa.Column("execution_id", sa.Text, nullable=False),
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("selection", sa.Text),
    sa.Column("defs_source", sa.Text),
    sa.Column("n_tasks", sa.Integer, nullable=False),
    sa.Column("n_succeeded", sa.Integer, nullable=False),
    sa.Column("n_failed", sa.Integer, nullable=False),
    sa.Column("n_skipped", sa.Integer, nullable=False),
    sa.Column("n_cancelled", sa.Integer, nullable=False),
    sa.Column("requested_at", _US, nullable=False),
    sa.Column("completed_at", _US),
    sa.Column("cancel_requested_at", _US),
    sa.Column("created_at", _US, nullable=False),
    sa.Column("updated_at", _US, nullable=False),
    sa.CheckConstraint(
        "status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')",
        name="ck_executions_status",
    ),
)
sa.Index(
    "ux_executions_execution_id",
    executions.c.tenant_key,
    executions.c.execution_id,
    unique=True,
)
sa.Index(
    "ux_executions_idempotency_key",
    executions.c.tenant_key,
    executions.c.workspace_id,
    executions.c.idempotency_key,
    unique=True,
)
sa.Index(
    "ix_executions_recent",
    executions.c.tenant_key,
    executions.c.requested_at,
    executions.c.id,
)
sa.Index(
    "ix_executions_status",
    executions.c.tenant_key,
    executions.c.status,
    executions.c.requested_at,
    executions.c.id,
)

execution_tasks = sa.Table(
    "execution_tasks",
    metadata,
    _id(),
    *_tenant(),
    sa.Column("execution_id", sa.Text, nullable=False),
    sa.Column("task_key", sa.Text, nullable=False),
    sa.Column("asset_key", sa.Text, nullable=False),
    sa.Column("partition_key", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("started_at", _US),
    sa.Column("finished_at", _US),
    sa.Column("error_type", sa.Text),
    sa.Column("error_message", sa.Text),
    sa.Column("output_rows", sa.BigInteger),
    sa.Column("updated_at", _US, nullable=False),
    sqlite_autoincrement=True,
)
sa.Index(
    "ux_execution_tasks_task",
    execution_tasks.c.tenant_key,
    execution_tasks.c.execution_id,
    execution_tasks.c.task_key,
    unique=True,
)

materializations = sa.Table(
    "materializations",
    metadata,
    _public_id(),
    *_tenant(),
    sa.Column("execution_id", sa.Text, nullable=False),
    sa.Column("asset_key", sa.Text, nullable=False),
    sa.Column("partition_key", sa.Text),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("format", sa.Text),
    sa.Column("row_count", sa.BigInteger),
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("started_at", _US),
    sa.Column("finished_at", _US),
    sa.Column("created_at", _US, nullable=False),
)
sa.Index(
    "ux_materializations_value",
    materializations.c.tenant_key,
    materializations.c.execution_id,
    materializations.c.asset_key,
    partition_or_blank(materializations.c.partition_key),
    unique=True,
)
sa.Index("ix_materializations_recent", materializations.c.tenant_key, materializations.c.id)
sa.Index(
    "ix_materializations_asset",
    materializations.c.tenant_key,
    materializations.c.asset_key,
    materializations.c.id,
)

projector_state = sa.Table(
    "projector_state",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column(
        "tenant_key",
        sa.Text,
        sa.Computed("coalesce(tenant_id, '')", persisted=True),
        nullable=False,
    ),
    sa.Column("workspace_id", sa.Text, primary_key=True),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("files", _JSON, nullable=False),
    sa.Column("updated_at", _US, nullable=False),
)

definitions_state = sa.Table(
    "definitions_state",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column(
        "tenant_key",
        sa.Text,
        sa.Computed("coalesce(tenant_id, '')", persisted=True),
        nullable=False,
    ),
    sa.Column("definitions_hash", sa.Text, nullable=False),
    sa.Column("updated_at", _US, nullable=False),
)

#: Every catalog table, in creation order; all are tenant-scoped.
TABLES: tuple[sa.Table, ...] = (
    assets,
    asset_dependencies,
    workflows,
    executions,
    execution_tasks,
    materializations,
    projector_state,
    definitions_state,
)


def _on_postgresql(sql: str) -> Callable[..., None]:
    """A DDL event listener running `sql` on PostgreSQL only."""

    def run(_target: object, connection: sa.Connection, **_: object) -> None:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(sql)

    return run


sa.event.listen(metadata, "before_create", _on_postgresql(APP_ROLE_SQL))
for _table in TABLES:
    sa.event.listen(_table, "after_create", _on_postgresql(table_rls_sql(_table.name)))
