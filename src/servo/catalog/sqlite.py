"""The SQLite backend: the embedded catalog, a file under the Servo home.

- **Tenancy** is enforced by the statements: every one filters on the tenant key
  (`servo.catalog.queries`); SQLite has no row-level security.
- **Concurrency**: WAL journal (readers never block the writer), ``busy_timeout``
  from ``database.connection_timeout``, and write transactions start with
  ``BEGIN IMMEDIATE`` so two writers queue on the lock instead of failing when a
  read lock would have to be upgraded. pysqlite's own transaction handling is off
  (``isolation_level=None``); SQLAlchemy's ``begin`` event issues the BEGIN.
- ``synchronous=NORMAL``: in WAL mode a crash loses at most the last transactions,
  never consistency; the catalog is a read model rebuilt from the engine anyway.
- Transient errors: "database is locked" / "busy" after the busy timeout.
- Disk errors: "database or disk is full" (ENOSPC) and "disk I/O error" (what SQLite
  reports for EFBIG, a file size limit, or a failing disk) are not retried: they last
  until space is freed (`servo.errors.CatalogDiskError`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

_TRANSIENT_MESSAGES = ("database is locked", "database table is locked", "busy")
_DISK_MESSAGES = ("database or disk is full", "disk i/o error")


class SqliteBackend:
    """`servo.catalog.database.Backend` for SQLite."""

    name = "sqlite"

    def insert(self, table: sa.Table) -> sqlite.Insert:
        return sqlite.insert(table)

    def begin(self, connection: sa.Connection, tenant: str | None, *, write: bool) -> None:
        """Nothing to bind: statements filter by tenant themselves."""

    def is_transient(self, error: BaseException) -> bool:
        if isinstance(error, sa.exc.TimeoutError):
            return True
        original = getattr(error, "orig", error)
        if not isinstance(original, sqlite3.OperationalError):
            return False
        message = str(original).lower()
        return any(marker in message for marker in _TRANSIENT_MESSAGES)

    def is_isolation_violation(self, error: sa.exc.DBAPIError) -> bool:
        return False

    def is_disk_error(self, error: BaseException) -> bool:
        original = getattr(error, "orig", error)
        if not isinstance(original, sqlite3.OperationalError):
            return False
        message = str(original).lower()
        return any(marker in message for marker in _DISK_MESSAGES)

    def is_missing_schema(self, error: sa.exc.DBAPIError) -> bool:
        message = str(error.orig).lower()
        return "no such table" in message or "no such column" in message


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite catalog file at `path`."""
    return f"sqlite:///{path}"


def create_sqlite_engine(url: str, *, pool_size: int, timeout_s: float) -> sa.Engine:
    """An engine for the SQLite file at `url` (its folder is created when missing).

    Args:
        url: ``sqlite:///PATH``.
        pool_size: connections kept open.
        timeout_s: how long a writer waits for the lock (``busy_timeout``), and
            for a pooled connection.
    """
    parsed = sa.make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=timeout_s,
        connect_args={"timeout": timeout_s, "check_same_thread": False},
    )
    busy_ms = int(timeout_s * 1000)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        write = connection.get_execution_options().get("servo_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
