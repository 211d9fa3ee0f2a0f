"""The initial catalog: assets, lineage, workflows, executions, tasks, materializations.

On PostgreSQL it also creates the ``servo_app`` role (when missing), grants it DML
on every table, and enables and forces row-level security with per-command
policies on ``app.tenant_id``. This file is frozen: its SQL is a copy, not an
import, of `servo.catalog.rls` as it was when the revision was written.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

_TABLES = (
    "assets",
    "asset_dependencies",
    "workflows",
    "executions",
    "execution_tasks",
    "materializations",
    "projector_state",
)

_CURRENT = "coalesce(current_setting('app.tenant_id', true), '')"
_READ = f"(tenant_key = '' OR tenant_key = {_CURRENT})"
_WRITE = f"(tenant_key = {_CURRENT})"

_APP_ROLE_SQL = """
DO $$
BEGIN
    CREATE ROLE servo_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- exists, or a racing creator
END
$$;
GRANT USAGE ON SCHEMA public TO servo_app;
"""


def _rls_sql(table: str) -> str:
    return f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
CREATE POLICY {table}_read ON {table} FOR SELECT USING {_READ};
CREATE POLICY {table}_insert ON {table} FOR INSERT WITH CHECK {_WRITE};
CREATE POLICY {table}_update ON {table} FOR UPDATE USING {_WRITE} WITH CHECK {_WRITE};
CREATE POLICY {table}_delete ON {table} FOR DELETE USING {_WRITE};
GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO servo_app;
"""


def _id() -> sa.Column[int]:
    return sa.Column("id", _ID, sa.Identity(), primary_key=True)


def _tenant_key() -> sa.Column[str]:
    return sa.Column(
        "tenant_key",
        sa.Text,
        sa.Computed("coalesce(tenant_id, '')", persisted=True),
        nullable=False,
    )


def _tenant() -> tuple[sa.Column[str], sa.Column[str]]:
    return sa.Column("tenant_id", sa.Text, nullable=True), _tenant_key()


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(_APP_ROLE_SQL)
    op.create_table(
        "assets",
        _id(),
        *_tenant(),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("owner", sa.Text),
        sa.Column("asset_type", sa.Text),
        sa.Column("tags", _JSON, nullable=False),
        sa.Column("timeout_s", sa.Float),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ux_assets_name", "assets", ["tenant_key", "name"], unique=True)

    op.create_table(
        "asset_dependencies",
        _id(),
        *_tenant(),
        sa.Column("asset_name", sa.Text, nullable=False),
        sa.Column("depends_on", sa.Text, nullable=False),
        sa.Column("dependency_type", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.CheckConstraint(
            "dependency_type IN ('data', 'metadata', 'control')",
            name="ck_asset_dependencies_type",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ux_asset_dependencies_edge",
        "asset_dependencies",
        ["tenant_key", "asset_name", "depends_on"],
        unique=True,
    )
    op.create_index(
        "ix_asset_dependencies_upstream", "asset_dependencies", ["tenant_key", "depends_on"]
    )

    op.create_table(
        "workflows",
        _id(),
        *_tenant(),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("definition", _JSON, nullable=False),
        sa.Column("definition_hash", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.CheckConstraint("version >= 1", name="ck_workflows_version"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ux_workflows_version", "workflows", ["tenant_key", "name", "version"], unique=True
    )

    op.create_table(
        "executions",
        _id(),
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
        sa.Column("requested_at", sa.BigInteger, nullable=False),
        sa.Column("completed_at", sa.BigInteger),
        sa.Column("cancel_requested_at", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.CheckConstraint(
            "status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')",
            name="ck_executions_status",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ux_executions_execution_id", "executions", ["tenant_key", "execution_id"], unique=True
    )
    op.create_index(
        "ux_executions_idempotency_key",
        "executions",
        ["tenant_key", "workspace_id", "idempotency_key"],
        unique=True,
    )
    op.create_index("ix_executions_recent", "executions", ["tenant_key", "requested_at", "id"])
    op.create_index(
        "ix_executions_status", "executions", ["tenant_key", "status", "requested_at", "id"]
    )

    op.create_table(
        "execution_tasks",
        _id(),
        *_tenant(),
        sa.Column("execution_id", sa.Text, nullable=False),
        sa.Column("task_key", sa.Text, nullable=False),
        sa.Column("asset_key", sa.Text, nullable=False),
        sa.Column("partition_key", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("finished_at", sa.BigInteger),
        sa.Column("error_type", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("output_rows", sa.BigInteger),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ux_execution_tasks_task",
        "execution_tasks",
        ["tenant_key", "execution_id", "task_key"],
        unique=True,
    )

    op.create_table(
        "materializations",
        _id(),
        *_tenant(),
        sa.Column("execution_id", sa.Text, nullable=False),
        sa.Column("asset_key", sa.Text, nullable=False),
        sa.Column("partition_key", sa.Text),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("format", sa.Text),
        sa.Column("row_count", sa.BigInteger),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("finished_at", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ux_materializations_value",
        "materializations",
        ["tenant_key", "execution_id", "asset_key", sa.text("coalesce(partition_key, '')")],
        unique=True,
    )
    op.create_index("ix_materializations_recent", "materializations", ["tenant_key", "id"])
    op.create_index(
        "ix_materializations_asset", "materializations", ["tenant_key", "asset_key", "id"]
    )

    op.create_table(
        "projector_state",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        _tenant_key(),
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("files", _JSON, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )

    if postgres:
        for table in _TABLES:
            op.execute(_rls_sql(table))
        op.execute("GRANT SELECT ON alembic_version TO servo_app")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("REVOKE ALL ON alembic_version FROM servo_app")
    for table in reversed(_TABLES):
        op.drop_table(table)
