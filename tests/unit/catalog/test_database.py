"""The guard around every catalog operation: retries, breaker, error translation, logs."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from servo.catalog import AssetSpec, SqlCatalog
from servo.catalog.catalog import open_catalog
from servo.catalog.database import Database
from servo.catalog.schema import assets
from servo.catalog.sqlite import SqliteBackend, create_sqlite_engine
from servo.config.settings import Settings
from servo.errors import (
    CatalogError,
    CatalogIntegrityError,
    CatalogSchemaError,
    CatalogUnavailableError,
)
from servo.observability import metrics
from servo.observability.logging import configure_logging
from servo.resilience.circuit_breaker import BreakerConfig, BreakerState, CircuitBreaker
from servo.resilience.clock import ManualClock
from servo.resilience.retry import RetryPolicy


def locked() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db(tmp_path: Path, clock: ManualClock) -> Iterator[Database]:
    engine = create_sqlite_engine(f"sqlite:///{tmp_path / 'c.db'}", pool_size=2, timeout_s=1.0)
    breaker = CircuitBreaker(
        f"test-{uuid.uuid4().hex[:8]}",
        BreakerConfig(failure_threshold=6, half_open_timeout_s=30),
        trips=SqliteBackend().is_transient,
        clock=clock,
    )
    database = Database(
        engine,
        SqliteBackend(),
        breaker,
        retry=RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=1, jitter=0),
        sleep=clock.sleep,
    )
    yield database
    database.close()


def raising(error: BaseException) -> Any:
    def work(_connection: sa.Connection) -> None:
        raise error

    return work


def test_transient_errors_are_retried_with_backoff_then_reported_unavailable(
    db: Database, clock: ManualClock
) -> None:
    attempts: list[int] = []

    def work(_connection: sa.Connection) -> None:
        attempts.append(1)
        raise locked()

    before = metrics.sample("servo_catalog_retries_total", {"operation": "test.locked"})
    with capture_logs() as logs, pytest.raises(CatalogUnavailableError, match="database is locked"):
        db.run("test.locked", "acme", work, write=True)
    assert len(attempts) == 3 and clock.slept == pytest.approx([0.05, 0.1])
    assert metrics.sample("servo_catalog_retries_total", {"operation": "test.locked"}) == before + 2
    retries = [entry for entry in logs if entry["event"] == "catalog.retry"]
    assert [r["attempt"] for r in retries] == [1, 2]
    assert all(r["tenant_id"] == "acme" and r["operation"] == "test.locked" for r in retries)
    (error,) = [entry for entry in logs if entry["event"] == "catalog.unavailable"]
    assert error["log_level"] == "error" and error["tenant_id"] == "acme"


def test_a_transient_error_that_clears_is_invisible(db: Database) -> None:
    attempts: list[int] = []

    def work(connection: sa.Connection) -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise locked()
        return int(connection.exec_driver_sql("SELECT 41 + 1").scalar_one())

    assert db.run("test.flaky", None, work) == 42 and len(attempts) == 2


def test_persistent_transient_failures_open_the_breaker_which_then_fails_fast(
    db: Database, clock: ManualClock
) -> None:
    assert db.breaker is not None
    for _ in range(2):  # 2 operations x 3 attempts = 6 consecutive failures
        with pytest.raises(CatalogUnavailableError):
            db.run("test.down", None, raising(locked()))
    assert db.breaker.state is BreakerState.OPEN
    called: list[int] = []
    with pytest.raises(CatalogUnavailableError, match="circuit breaker is open"):
        db.run("test.down", None, lambda c: called.append(1))
    assert called == []
    clock.advance(30)
    assert db.run("test.up", None, lambda c: "probe ok") == "probe ok"
    assert db.breaker.state is BreakerState.CLOSED


def test_constraint_violations_warn_and_do_not_trip_the_breaker(db: Database) -> None:
    with db.engine.begin() as connection:
        assets.create(connection)
    row = {
        "id": "a1",
        "tenant_id": "acme",
        "name": "a",
        "tags": {},
        "created_at": 1,
        "updated_at": 1,
    }
    db.run("test.insert", "acme", lambda c: c.execute(sa.insert(assets), row), write=True)
    assert db.breaker is not None
    for _ in range(8):
        with capture_logs() as logs, pytest.raises(CatalogIntegrityError):
            db.run("test.insert", "acme", lambda c: c.execute(sa.insert(assets), row), write=True)
    (warning,) = [e for e in logs if e["event"] == "catalog.constraint_violation"]
    assert warning["log_level"] == "warning"
    assert (warning["tenant_id"], warning["operation"]) == ("acme", "test.insert")
    assert db.breaker.state is BreakerState.CLOSED


def test_missing_tables_are_a_schema_error_and_others_a_catalog_error(db: Database) -> None:
    with pytest.raises(CatalogSchemaError, match="servo catalog migrate"):
        db.run("test.select", None, lambda c: c.execute(sa.select(assets)).all())
    with capture_logs() as logs, pytest.raises(CatalogError):
        db.run("test.bad", "acme", lambda c: c.exec_driver_sql("SELEC 1"))
    (error,) = [e for e in logs if e["event"] == "catalog.error"]
    assert error["tenant_id"] == "acme" and error["log_level"] == "error"


class _ServerBackend(SqliteBackend):
    """SQLite standing in for a database server (only the name differs)."""

    name = "postgresql"


@pytest.mark.parametrize(
    ("backend", "level"), [(_ServerBackend(), "warning"), (SqliteBackend(), "info")]
)
def test_slow_operations_log_tenant_and_duration_and_warn_only_for_a_server(
    tmp_path: Path, backend: SqliteBackend, level: str
) -> None:
    engine = create_sqlite_engine(f"sqlite:///{tmp_path / 'c.db'}", pool_size=2, timeout_s=1.0)
    db = Database(engine, backend, None)
    configure_logging("DEBUG", "json")  # info must not be filtered out before capture
    try:
        with capture_logs() as logs:
            db.run("test.slow", "acme", lambda c: time.sleep(0.11))
            db.run("test.fast", "acme", lambda c: None)
    finally:
        db.close()
        configure_logging("WARNING", "console")  # the default
    (slow,) = [e for e in logs if e["event"] == "catalog.slow_operation"]
    assert slow["log_level"] == level and slow["operation"] == "test.slow"
    assert slow["tenant_id"] == "acme" and slow["duration_ms"] >= 110


def test_the_sqlite_catalog_has_no_breaker_and_migrates_itself(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "fresh" / "home")
    with open_catalog(settings) as catalog:
        assert catalog.backend == "sqlite" and catalog.db.breaker is None
        catalog.assets.upsert(None, AssetSpec("a"))
    assert (tmp_path / "fresh" / "home" / "catalog.db").is_file()
    with open_catalog(settings) as catalog:
        assert catalog.assets.get(None, "a") is not None


def test_catalog_repr_hides_the_password() -> None:
    engine = sa.create_engine("postgresql+psycopg://servo:s3cret@db.internal/servo")
    db = Database(engine, SqliteBackend(), None)
    assert repr(SqlCatalog(db)) == "SqlCatalog(postgresql+psycopg://servo:***@db.internal/servo)"
    db.close()
