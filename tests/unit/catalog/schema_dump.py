"""A comparable description of a catalog database's schema, per backend.

Alembic's `compare_metadata` checks tables, columns and types; these dumps add
what it does not see — expression indexes (SQLite cannot even reflect them),
CHECK constraints, and on PostgreSQL the row-level security flags, the policies
and the grants to ``servo_app`` — so that "the migrations build the declared
schema" means the whole schema.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

_IGNORED = ("alembic_version",)


def _squash(sql: str | None) -> str:
    return re.sub(r"\s+", " ", sql or "").strip()


def sqlite_schema(connection: sa.Connection) -> dict[str, Any]:
    """Every table, index and trigger of a SQLite database, as normalised DDL."""
    rows = connection.exec_driver_sql(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    )
    return {(row.type, row.name): _squash(row.sql) for row in rows if row.tbl_name not in _IGNORED}


_PG_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default,
               is_identity, identity_generation, ordinal_position
        FROM information_schema.columns WHERE table_schema = 'public'
    """,
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "constraints": """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'public'
    """,
    "row_security": """
        SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
        WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
    """,
    "policies": """
        SELECT tablename, policyname, permissive, roles::text, cmd, qual, with_check
        FROM pg_policies WHERE schemaname = 'public'
    """,
    "grants": """
        SELECT table_name, privilege_type FROM information_schema.role_table_grants
        WHERE grantee = 'servo_app' AND table_schema = 'public'
    """,
}


def postgres_schema(connection: sa.Connection) -> dict[str, Any]:
    """Columns, indexes, constraints, RLS flags, policies and app grants (public schema)."""
    dump: dict[str, Any] = {}
    for name, query in _PG_QUERIES.items():
        rows = connection.exec_driver_sql(query).all()
        dump[name] = sorted(tuple(row) for row in rows if row[0] not in _IGNORED)
    return dump
