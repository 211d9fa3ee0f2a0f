"""Resilience against a real PostgreSQL: lost connections, an unreachable server, the breaker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from servo.catalog import ExecutionSpec, SqlCatalog, open_catalog
from servo.catalog.postgres import PostgresBackend
from servo.config.settings import (
    BreakerSettings,
    CircuitBreakerSettings,
    DatabaseSettings,
    Settings,
)
from servo.errors import CatalogIntegrityError, CatalogUnavailableError
from servo.observability import metrics
from servo.resilience.circuit_breaker import BreakerState
from servo.resilience.clock import ManualClock
from servo.resilience.retry import RetryPolicy

pytestmark = pytest.mark.integration

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05, jitter=0)


def settings(url: str, home: Path, threshold: int = 5) -> Settings:
    breaker = BreakerSettings(failure_threshold=threshold, half_open_timeout_secs=30)
    return Settings(
        home=home,
        database=DatabaseSettings(url=url, pool_size=2, connection_timeout=2),
        circuit_breaker=CircuitBreakerSettings(postgres=breaker),
    )


@pytest.fixture
def catalog(postgres_url: str, tmp_path: Path) -> Iterator[SqlCatalog]:
    with open_catalog(settings(postgres_url, tmp_path), retry=FAST_RETRY) as opened:
        yield opened


def test_a_lost_connection_is_retried_transparently(catalog: SqlCatalog, postgres_url: str) -> None:
    catalog.executions.create("acme", ExecutionSpec("before"))  # a pooled connection exists
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    with capture_logs() as logs:
        created, _ = catalog.executions.create("acme", ExecutionSpec("after"))
    assert created.execution_id == "after"
    assert any(e["event"] == "catalog.retry" and e["tenant_id"] == "acme" for e in logs)
    assert catalog.db.breaker is not None and catalog.db.breaker.state is BreakerState.CLOSED


def test_constraint_and_programming_errors_do_not_trip_the_breaker(catalog: SqlCatalog) -> None:
    insert = sa.text(
        "INSERT INTO workflows (id, tenant_id, name, version, definition, definition_hash, "
        "created_at) VALUES ('w1', 'acme', 'w', 1, '{}', 'h', 1)"
    )
    catalog.db.run("test.insert", "acme", lambda c: c.execute(insert), write=True)
    for _ in range(8):
        with pytest.raises(CatalogIntegrityError):
            catalog.db.run("test.insert", "acme", lambda c: c.execute(insert), write=True)
    assert catalog.db.breaker is not None and catalog.db.breaker.state is BreakerState.CLOSED
    backend = PostgresBackend()
    with pytest.raises(sa.exc.ProgrammingError) as programming, catalog.db.engine.connect() as c:
        c.exec_driver_sql("SELEC 1")
    assert backend.is_transient(programming.value) is False


def test_an_unreachable_server_opens_the_breaker_which_fails_fast_then_recovers(
    postgres_url: str, tmp_path: Path
) -> None:
    unreachable = sa.make_url(postgres_url).set(port=9).render_as_string(hide_password=False)
    clock = ManualClock()
    before = metrics.sample("servo_circuit_breaker_opens_total", {"dependency": "postgres"})
    with pytest.raises(CatalogUnavailableError, match="circuit breaker is open"):
        open_catalog(
            settings(unreachable, tmp_path, threshold=2), retry=FAST_RETRY, breaker_clock=clock
        )
    assert (
        metrics.sample("servo_circuit_breaker_opens_total", {"dependency": "postgres"})
        == before + 1
    )
    assert metrics.sample("servo_circuit_breaker_state", {"dependency": "postgres"}) == 1

    # the same breaker machinery, against the real server: a probe after the timeout closes it
    with open_catalog(settings(postgres_url, tmp_path, threshold=1), breaker_clock=clock) as up:
        breaker = up.db.breaker
        assert breaker is not None
        engine = up.db.engine
        up.db.engine = sa.create_engine(
            unreachable.replace("postgresql://", "postgresql+psycopg://", 1)
        )
        try:
            with pytest.raises(CatalogUnavailableError):
                up.executions.list("acme")
            assert breaker.state is BreakerState.OPEN
            with pytest.raises(CatalogUnavailableError, match="circuit breaker is open"):
                up.executions.list("acme")
        finally:
            up.db.engine.dispose()
            up.db.engine = engine
        clock.advance(30)
        assert up.executions.list("acme").items == ()
        assert breaker.state is BreakerState.CLOSED
    assert metrics.sample("servo_circuit_breaker_state", {"dependency": "postgres"}) == 0
