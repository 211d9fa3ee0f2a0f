"""The PostgreSQL backend (psycopg 3): row-level security, the app role, a bounded pool.

- **The application acts as ``servo_app``.** Every pooled connection runs
  ``SET ROLE servo_app`` when it opens, so row-level security applies even when the
  login user owns the tables or is a superuser (who would bypass it). The login
  user must be ``servo_app`` itself (``ALTER ROLE servo_app LOGIN PASSWORD ...``)
  or a member of it (``GRANT servo_app TO servo``); otherwise opening a connection
  fails with a message saying so. Migrations use a separate engine without the
  role switch (`migration_engine`): they need the owner's rights.
- **The tenant is set per transaction**: ``set_config('app.tenant_id', tenant,
  true)`` as the first statement; it ends with the transaction, so a pooled
  connection never carries a tenant into the next one. The system (no tenant) sets
  ``''``, which the policies read as "global rows only".
- **Pool**: ``database.pool_size`` connections at most (no overflow), waiting up to
  ``database.connection_timeout`` for one; the same timeout bounds connecting.
- **Transient errors** (retried, and counted by the breaker): connection failures
  and losses, SQLSTATE classes 08 (connection), 40 (serialization, deadlock), 53
  (resources), 57P01-57P03 (shutdown), 57014 (statement timeout), 55P03 (lock not
  available), and pool timeouts. Constraint violations and programming errors are
  not transient: the breaker stays closed for them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from servo.catalog.rls import APP_ROLE
from servo.errors import CatalogError, ConfigError

if TYPE_CHECKING:  # imported when a PostgreSQL catalog is used, not with this module
    from sqlalchemy.dialects import postgresql

_TRANSIENT_CLASSES = ("08", "40", "53")
_TRANSIENT_STATES = frozenset({"57P01", "57P02", "57P03", "57014", "55P03"})
_BIND_TENANT = "SELECT set_config('app.tenant_id', %s, true)"


def _sqlstate(error: BaseException) -> str | None:
    original = getattr(error, "orig", error)
    state = getattr(original, "sqlstate", None)
    return state if isinstance(state, str) else None


class PostgresBackend:
    """`servo.catalog.database.Backend` for PostgreSQL."""

    name = "postgresql"

    def insert(self, table: sa.Table) -> postgresql.Insert:
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)

    def begin(self, connection: sa.Connection, tenant: str | None, *, write: bool) -> None:
        # driver-level SQL: this runs before every catalog transaction
        connection.exec_driver_sql(_BIND_TENANT, (tenant or "",))

    def is_transient(self, error: BaseException) -> bool:
        if isinstance(error, sa.exc.TimeoutError):
            return True
        if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
            return True
        state = _sqlstate(error)
        if state is None:
            # no SQLSTATE: the server never answered (refused, reset, timed out)
            return isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError)
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES

    def is_isolation_violation(self, error: sa.exc.DBAPIError) -> bool:
        return _sqlstate(error) == "42501" and "row-level security" in str(error.orig)

    def is_missing_schema(self, error: sa.exc.DBAPIError) -> bool:
        return _sqlstate(error) in {"42P01", "42703"}

    def is_disk_error(self, error: BaseException) -> bool:
        """Never: a server's full disk (SQLSTATE 53100) is its operator's to fix, and
        is retried as a transient error until the breaker opens."""
        return False


def normalize_url(url: str) -> sa.URL:
    """The URL with the psycopg 3 driver (``postgresql://`` would pick psycopg2)."""
    parsed = sa.make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _engine(url: str, *, pool_size: int, timeout_s: float) -> sa.Engine:
    try:
        import psycopg  # noqa: F401  # the driver SQLAlchemy will load
    except ImportError as exc:
        raise ConfigError(
            "database.url (or SERVO_DATABASE_URL) names PostgreSQL, but psycopg is not "
            "installed: pip install 'servo[postgres]'"
        ) from exc
    return sa.create_engine(
        normalize_url(url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=timeout_s,
        connect_args={"connect_timeout": max(1, math.ceil(timeout_s)), "application_name": "servo"},
    )


def create_postgres_engine(url: str, *, pool_size: int, timeout_s: float) -> sa.Engine:
    """The application's engine: every connection acts as ``servo_app``.

    Raises:
        CatalogError: (when a connection opens) the login user cannot act as servo_app.
    """
    engine = _engine(url, pool_size=pool_size, timeout_s=timeout_s)

    @sa.event.listens_for(engine, "connect")
    def _act_as_app_role(dbapi_connection: Any, _record: Any) -> None:
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET ROLE {APP_ROLE}")
            dbapi_connection.commit()
        except Exception as exc:
            if _sqlstate(exc) not in {"42501", "22023"}:  # privilege / role does not exist
                raise
            dbapi_connection.rollback()
            user = sa.make_url(str(engine.url)).username or "the login user"
            raise CatalogError(
                f"the catalog connects as {user!r}, which cannot act as {APP_ROLE!r} "
                f"({str(exc).strip()}): run 'servo catalog migrate' (it creates the role), "
                f"then GRANT {APP_ROLE} TO {user}, or log in as {APP_ROLE}"
            ) from exc

    return engine


def migration_engine(url: str, *, timeout_s: float) -> sa.Engine:
    """An engine acting as the login user itself (the owner), for migrations."""
    return _engine(url, pool_size=1, timeout_s=timeout_s)
