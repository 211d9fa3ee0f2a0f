"""Open the catalog the settings choose, and migrate it.

The catalog is ``database.url`` (``SERVO_DATABASE_URL``) when set — a
``postgresql://`` URL (psycopg 3 is used whatever driver it names) or a
``sqlite:///`` file — else the SQLite file ``{home}/catalog.db``. Pool size and
timeouts come from ``database.pool_size`` and ``database.connection_timeout``; the
PostgreSQL circuit breaker from ``circuit_breaker.postgres`` (``SERVO_CB_POSTGRES_*``).

Schema: a SQLite catalog is migrated when opened (the embedded mode needs no setup
step) — a new file gets the head schema directly, without Alembic
(`servo.catalog.migrate.create_fresh`); a PostgreSQL catalog must already be at this
Servo's revision — migrating needs the owner's rights, which the application
(``servo_app``) does not have — so opening one that is not raises
`CatalogSchemaError` naming ``servo catalog migrate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa

from servo.catalog.assets import SqlAssetCatalog
from servo.catalog.database import DEFAULT_RETRY, Backend, Database, now_us
from servo.catalog.executions import SqlExecutionCatalog
from servo.catalog.lineage import SqlLineageCatalog
from servo.catalog.materializations import SqlMaterializationCatalog
from servo.catalog.migrate import HEAD_REVISION, create_fresh, stored_revision, upgrade
from servo.catalog.postgres import PostgresBackend, create_postgres_engine, migration_engine
from servo.catalog.projection import SqlProjectionCatalog
from servo.catalog.registrations import SqlRegistrationCatalog
from servo.catalog.sqlite import SqliteBackend, create_sqlite_engine, sqlite_url
from servo.catalog.sqlite_file import check_home_catalog, damaged, home_catalog_path, is_damaged
from servo.catalog.workflows import SqlWorkflowCatalog
from servo.config.settings import Settings
from servo.errors import (
    CatalogCorruptError,
    CatalogDiskError,
    CatalogError,
    CatalogSchemaError,
    ConfigError,
)
from servo.observability.logging import get_logger
from servo.resilience.circuit_breaker import BreakerConfig, CircuitBreaker
from servo.resilience.clock import Clock, monotonic
from servo.resilience.retry import RetryPolicy

log = get_logger(__name__)


class SqlCatalog:
    """`servo.catalog.protocol.Catalog` over SQLAlchemy Core (SQLite or PostgreSQL).

    Args:
        db: the guarded database the role objects share.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.backend = db.backend.name
        self.assets = SqlAssetCatalog(db)
        self.workflows = SqlWorkflowCatalog(db)
        self.executions = SqlExecutionCatalog(db)
        self.materializations = SqlMaterializationCatalog(db)
        self.lineage = SqlLineageCatalog(db)
        self.projection = SqlProjectionCatalog(db)
        self.registrations = SqlRegistrationCatalog(db)

    def close(self) -> None:
        """Close every pooled connection."""
        self.db.close()

    def __enter__(self) -> SqlCatalog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqlCatalog({self.db.engine.url.render_as_string(hide_password=True)})"


def catalog_url(settings: Settings) -> str:
    """The catalog's URL: ``database.url``, else the SQLite file under the home."""
    return settings.database.url or sqlite_url(home_catalog_path(settings.home))


def is_postgres(url: str) -> bool:
    """Whether `url` names a PostgreSQL database."""
    return sa.make_url(url).get_backend_name() in {"postgresql", "postgres"}


def _backend_of(url: str) -> Backend:
    try:
        name = sa.make_url(url).get_backend_name()
    except sa.exc.ArgumentError as exc:
        raise ConfigError(
            f"database.url (or SERVO_DATABASE_URL): not a database URL: {exc}"
        ) from exc
    if name in {"postgresql", "postgres"}:
        return PostgresBackend()
    if name == "sqlite":
        return SqliteBackend()
    raise ConfigError(
        f"database.url (or SERVO_DATABASE_URL): {name!r} is not supported; "
        "use postgresql://... or sqlite:///PATH"
    )


def open_catalog(
    settings: Settings,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], int] = now_us,
    breaker_clock: Clock = monotonic,
) -> SqlCatalog:
    """The catalog the settings choose, ready to use (see the module docstring).

    Raises:
        ConfigError: ``database.url`` is not a supported URL.
        HomeError: the home holding the SQLite catalog cannot be used.
        CatalogCorruptError: the SQLite catalog file is damaged or read-only.
        CatalogSchemaError: a PostgreSQL catalog is not at this Servo's revision.
        CatalogDiskError: the SQLite catalog cannot be written (disk full); the message
            names the file and says to free space.
        CatalogUnavailableError: the database cannot be reached.
    """
    url = catalog_url(settings)
    backend = _backend_of(url)
    if settings.database.url is None:
        check_home_catalog(settings.home)
    options = settings.database
    if isinstance(backend, PostgresBackend):
        engine = create_postgres_engine(
            url, pool_size=options.pool_size, timeout_s=options.connection_timeout
        )
    else:
        engine = create_sqlite_engine(
            url, pool_size=options.pool_size, timeout_s=options.connection_timeout
        )
    breaker = None
    if isinstance(backend, PostgresBackend):
        breaker = CircuitBreaker(
            "postgres",
            BreakerConfig.from_settings(settings.circuit_breaker.postgres),
            trips=backend.is_transient,
            clock=breaker_clock,
        )
    db = Database(engine, backend, breaker, retry=retry, sleep=sleep, clock=clock)
    try:
        revision = db.run("catalog.revision", None, stored_revision)
        if revision != HEAD_REVISION:
            if isinstance(backend, PostgresBackend):
                raise CatalogSchemaError(
                    f"the PostgreSQL catalog is at revision {revision or 'none'}, this Servo "
                    f"needs {HEAD_REVISION}: run 'servo catalog migrate'"
                )
            _upgrade(db, engine)
    except CatalogError as exc:
        db.close()
        if isinstance(backend, SqliteBackend) and isinstance(exc, CatalogDiskError):
            raise _disk_error(settings, url, exc) from exc
        if isinstance(backend, SqliteBackend) and is_damaged(exc):
            raise _damaged(settings, url, exc) from exc
        raise
    except BaseException:
        db.close()
        raise
    return SqlCatalog(db)


def _upgrade(db: Database, engine: sa.Engine) -> None:
    """Bring a SQLite catalog to the head revision: created directly when the file is
    new, else migrated by Alembic; driver errors translated like any operation's."""
    if db.run("catalog.migrate", None, create_fresh, write=True):
        return
    try:
        upgrade(engine)
    except sa.exc.SQLAlchemyError as exc:
        raise db.translate(exc, "catalog.migrate", None) from exc


def _damaged(settings: Settings, url: str, exc: CatalogError) -> CatalogCorruptError:
    home = settings.home if settings.database.url is None else None
    return damaged(sa.make_url(url).database or url, home, exc)


def _disk_error(settings: Settings, url: str, exc: CatalogError) -> CatalogDiskError:
    """The error naming the SQLite file that cannot be written, and what to do."""
    path = sa.make_url(url).database or url
    problem = str(exc).split(": ", 1)[-1]
    elsewhere = " (or pass another --home)" if settings.database.url is None else ""
    return CatalogDiskError(
        f"cannot write the catalog {path} ({problem}): the disk may be full; free space "
        f"on it{elsewhere} and run the command again"
    )


def migrate_catalog(settings: Settings, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the settings' catalog (as the login user, not ``servo_app``).

    Returns:
        The revisions before and after.

    Raises:
        CatalogDiskError: the SQLite catalog cannot be written (disk full).
        CatalogError: any other database error, translated.
    """
    url = catalog_url(settings)
    timeout = settings.database.connection_timeout
    backend = _backend_of(url)
    if isinstance(backend, PostgresBackend):
        engine = migration_engine(url, timeout_s=timeout)
    else:
        engine = create_sqlite_engine(url, pool_size=1, timeout_s=timeout)
    db = Database(engine, backend, None)
    try:
        return upgrade(engine, revision)
    except sa.exc.SQLAlchemyError as exc:
        error = db.translate(exc, "catalog.migrate", None)
        if isinstance(error, CatalogDiskError):
            raise _disk_error(settings, url, error) from exc
        raise error from exc
    finally:
        engine.dispose()
