"""The hash of the definitions last registered, per tenant (``definitions_state``).

``servo materialize`` registers the definitions only when their hash differs from
the one stored here. On PostgreSQL the table gets row-level security, its policies
and the grants to ``servo_app``, like every catalog table. This file is frozen: its
SQL is a copy, not an import, of `servo.catalog.rls` as it was when the revision was
written.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TABLE = "definitions_state"
_CURRENT = "coalesce(current_setting('app.tenant_id', true), '')"
_READ = f"(tenant_key = '' OR tenant_key = {_CURRENT})"
_WRITE = f"(tenant_key = {_CURRENT})"

_RLS_SQL = f"""
ALTER TABLE {_TABLE} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {_TABLE} FORCE ROW LEVEL SECURITY;
CREATE POLICY {_TABLE}_read ON {_TABLE} FOR SELECT USING {_READ};
CREATE POLICY {_TABLE}_insert ON {_TABLE} FOR INSERT WITH CHECK {_WRITE};
CREATE POLICY {_TABLE}_update ON {_TABLE} FOR UPDATE USING {_WRITE} WITH CHECK {_WRITE};
CREATE POLICY {_TABLE}_delete ON {_TABLE} FOR DELETE USING {_WRITE};
GRANT SELECT, INSERT, UPDATE, DELETE ON {_TABLE} TO servo_app;
"""


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column(
            "tenant_key",
            sa.Text,
            sa.Computed("coalesce(tenant_id, '')", persisted=True),
            nullable=False,
        ),
        sa.Column("definitions_hash", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_RLS_SQL)


def downgrade() -> None:
    op.drop_table(_TABLE)
