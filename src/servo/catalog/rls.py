"""PostgreSQL tenant isolation: the application role and the row-level security policies.

Every catalog table has a nullable ``tenant_id`` and the generated column
``tenant_key = coalesce(tenant_id, '')``, so the global rows (tenant NULL) have the
key ``''``, which is also the key of the system (a transaction with no tenant set).
The tenant is set per transaction with ``set_config('app.tenant_id', tenant, true)``.

- read (SELECT): the row's tenant is the transaction's, or the row is global;
- write (INSERT, UPDATE, DELETE): the row's tenant key equals the transaction's
  tenant key — a tenant writes only its own rows, the system only global rows.

Tables are ``FORCE ROW LEVEL SECURITY`` so the owner is bound too (superusers and
``BYPASSRLS`` roles never are, which is why the application acts as ``servo_app``,
a ``NOLOGIN`` role with plain DML grants). The migrations create the role when it
is missing (it is cluster-wide and outlives a downgrade).

`APP_ROLE_SQL` and `table_rls_sql` are the declared schema; the migration that
created it holds its own frozen copy, and a test checks both produce the same
database.
"""

from __future__ import annotations

from typing import Final

#: The non-superuser role the application acts as (``SET ROLE`` on every connection).
APP_ROLE: Final = "servo_app"

#: The transaction's tenant key, '' for the system.
_CURRENT: Final = "coalesce(current_setting('app.tenant_id', true), '')"
_READ: Final = f"(tenant_key = '' OR tenant_key = {_CURRENT})"
_WRITE: Final = f"(tenant_key = {_CURRENT})"

APP_ROLE_SQL: Final = f"""
DO $$
BEGIN
    CREATE ROLE {APP_ROLE} NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- exists, or a racing creator
END
$$;
GRANT USAGE ON SCHEMA public TO {APP_ROLE};
"""


def table_rls_sql(table: str) -> str:
    """Enable and force row-level security on `table`, with its policies and grants."""
    return f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
CREATE POLICY {table}_read ON {table} FOR SELECT USING {_READ};
CREATE POLICY {table}_insert ON {table} FOR INSERT WITH CHECK {_WRITE};
CREATE POLICY {table}_update ON {table} FOR UPDATE USING {_WRITE} WITH CHECK {_WRITE};
CREATE POLICY {table}_delete ON {table} FOR DELETE USING {_WRITE};
GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE};
"""
