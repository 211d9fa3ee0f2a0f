"""One guarded transaction per catalog operation: tenant, retries, breaker, logs, errors.

`Database.run(operation, tenant, work)` is the only way the catalog touches the
database. Around ``work(connection)`` it stacks, outermost first:

1. **timing**: ``servo_catalog_operation_duration_seconds{operation}``; an operation
   slower than 100 ms logs ``catalog.slow_operation`` (warning) with tenant and ms;
2. **error translation**: driver errors become `servo.errors` classes (`raise ...
   from`), logged with tenant and operation — constraint violations and refused
   cross-tenant writes as warnings, a SQLite file that cannot be written
   (`CatalogDiskError`) as info because its caller says it once (a warning when a
   run goes on without the catalog, the CLI's ``error:`` line when a read stops),
   the rest as errors — and counted in ``servo_catalog_errors_total{operation,error_type}``;
3. **retries**: transient errors (connection lost, timeout, lock, serialization)
   are retried with jittered exponential backoff, a bounded number of times;
4. **circuit breaker** (PostgreSQL): consecutive transient failures open it (SPEC.md
   §6); while open every operation fails fast with `CatalogUnavailableError`;
5. **the transaction**: one per attempt, the tenant bound first
   (`Backend.begin`), committed when ``work`` returns.

A `Backend` supplies what differs between SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import sqlalchemy as sa

from servo.errors import (
    CatalogDiskError,
    CatalogError,
    CatalogIntegrityError,
    CatalogSchemaError,
    CatalogUnavailableError,
    CircuitOpenError,
    TenantIsolationError,
)
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.resilience.backoff import call_with_retries
from servo.resilience.circuit_breaker import CircuitBreaker
from servo.resilience.retry import RetryPolicy

log = get_logger(__name__)

T = TypeVar("T")

#: Operations slower than this log a warning (SPEC.md §3).
SLOW_OPERATION_S = 0.1

#: Transient errors: 4 attempts, 50 ms then x2 (capped at 1 s), jitter 20 %.
DEFAULT_RETRY = RetryPolicy(max_attempts=4, initial_delay=0.05, max_delay=1.0, jitter=0.2)

DURATION = metrics.histogram(
    "servo_catalog_operation_duration_seconds",
    "Catalog operations, retries included.",
    ["operation"],
)
ERRORS = metrics.counter(
    "servo_catalog_errors_total",
    "Catalog operations that failed, by error.",
    ["operation", "error_type"],
)
RETRIES = metrics.counter(
    "servo_catalog_retries_total",
    "Catalog attempts retried after a transient error.",
    ["operation"],
)

if TYPE_CHECKING:  # a SQLite catalog never loads the PostgreSQL dialect
    from sqlalchemy.dialects import postgresql, sqlite

    Insert = postgresql.Insert | sqlite.Insert


class Backend(Protocol):
    """What differs between the catalog's databases."""

    #: ``sqlite`` or ``postgresql``; the breaker and metrics use it.
    name: str

    def insert(self, table: sa.Table) -> Insert:
        """An INSERT supporting ``on_conflict_do_update`` / ``on_conflict_do_nothing``."""
        ...

    def begin(self, connection: sa.Connection, tenant: str | None, *, write: bool) -> None:
        """Prepare a new transaction (write intent) and bind `tenant` to it."""
        ...

    def is_transient(self, error: BaseException) -> bool:
        """Whether `error` may pass when retried (connection, timeout, lock...)."""
        ...

    def is_isolation_violation(self, error: sa.exc.DBAPIError) -> bool:
        """Whether the database refused a write outside the transaction's tenant."""
        ...

    def is_missing_schema(self, error: sa.exc.DBAPIError) -> bool:
        """Whether a table or column of the catalog does not exist (not migrated)."""
        ...

    def is_disk_error(self, error: BaseException) -> bool:
        """Whether the database's file cannot be written (disk full, size limit, I/O)."""
        ...


def now_us() -> int:
    """The wall clock in epoch microseconds (the catalog's time unit)."""
    return time.time_ns() // 1000


def check_tenant(tenant: str | None) -> None:
    """Raise `ValueError` unless `tenant` is None (the system) or a non-empty string."""
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise ValueError(f"tenant must be None (the system) or a non-empty string, not {tenant!r}")


class Database:
    """The engine of one catalog and the guard around its transactions.

    Args:
        engine: a SQLAlchemy engine configured by the backend's module.
        backend: the backend's specifics.
        breaker: the dependency's circuit breaker (tripping on `Backend.is_transient`);
            None for an embedded database (SQLite is not a remote dependency).
        retry: attempts and backoff for transient errors.
        sleep: waits between attempts (tests pass a manual clock's).
        clock: epoch microseconds for the rows' ``created_at``/``updated_at``.
    """

    def __init__(
        self,
        engine: sa.Engine,
        backend: Backend,
        breaker: CircuitBreaker | None,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.engine = engine
        self.backend = backend
        self.breaker = breaker
        self._retry = retry
        self._sleep = sleep
        self._clock = clock

    def now(self) -> int:
        """The time to stamp rows with (epoch µs)."""
        return self._clock()

    def insert(self, table: sa.Table) -> Insert:
        """The backend's INSERT with ON CONFLICT support."""
        return self.backend.insert(table)

    def run(
        self,
        operation: str,
        tenant: str | None,
        work: Callable[[sa.Connection], T],
        *,
        write: bool = False,
    ) -> T:
        """Run `work` in one transaction bound to `tenant`; see the module docstring.

        Args:
            operation: a fixed name (``executions.create``): a metric label.
            tenant: the tenant of every row `work` reads or writes; None = the system.
            work: the statements; it must be safe to run again (one transaction).
            write: the transaction writes (SQLite takes the write lock up front).

        Raises:
            CatalogUnavailableError: transient failures outlived the retries, or the
                breaker is open.
            CatalogIntegrityError: a constraint refused a write.
            TenantIsolationError: row-level security refused a write.
            CatalogSchemaError: the catalog tables do not exist.
            CatalogError: any other database error.
        """
        check_tenant(tenant)
        started = time.perf_counter()
        try:
            return self._retried(operation, tenant, work, write)
        except CircuitOpenError as exc:
            ERRORS.labels(operation, "CircuitOpenError").inc()
            raise CatalogUnavailableError(f"catalog unavailable ({operation}): {exc}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise self.translate(exc, operation, tenant) from exc
        finally:
            elapsed = time.perf_counter() - started
            DURATION.labels(operation).observe(elapsed)
            if elapsed > SLOW_OPERATION_S:
                # A server is expected to answer in time (SPEC §3); an embedded SQLite
                # file on a laptop (fsync, a busy disk) is not worth a warning.
                slow = log.warning if self.backend.name == "postgresql" else log.info
                slow(
                    "catalog.slow_operation",
                    operation=operation,
                    tenant_id=tenant,
                    duration_ms=round(elapsed * 1000, 1),
                    backend=self.backend.name,
                )

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # ------------------------------------------------------------------ layers
    def _retried(
        self,
        operation: str,
        tenant: str | None,
        work: Callable[[sa.Connection], T],
        write: bool,
    ) -> T:
        def on_retry(attempt: int, error: BaseException, delay: float) -> None:
            RETRIES.labels(operation).inc()
            log.warning(
                "catalog.retry",
                operation=operation,
                tenant_id=tenant,
                attempt=attempt,
                delay_ms=round(delay * 1000, 1),
                error_type=type(error).__name__,
                error=_first_line(error),
            )

        def attempt() -> T:
            if self.breaker is None:
                return self._transaction(tenant, work, write)
            return self.breaker.call(lambda: self._transaction(tenant, work, write))

        return call_with_retries(
            attempt,
            retryable=self.backend.is_transient,
            policy=self._retry,
            sleep=self._sleep,
            on_retry=on_retry,
        )

    def _transaction(
        self, tenant: str | None, work: Callable[[sa.Connection], T], write: bool
    ) -> T:
        with self.engine.connect() as connection:
            if write:
                connection.execution_options(servo_write=True)
            with connection.begin():
                self.backend.begin(connection, tenant, write=write)
                return work(connection)

    def translate(
        self, error: sa.exc.SQLAlchemyError, operation: str, tenant: str | None
    ) -> CatalogError:
        """The `servo.errors` class for a driver error, logged and counted (see `run`).

        Also for statements run outside `run` (migrations), so that no driver error
        reaches a user untranslated.
        """
        context: dict[str, Any] = {
            "operation": operation,
            "tenant_id": tenant,
            "backend": self.backend.name,
            "error_type": type(getattr(error, "orig", None) or error).__name__,
            "error": _first_line(error),
        }
        translated: CatalogError
        if self.backend.is_disk_error(error):
            translated = CatalogDiskError(f"{operation}: {_first_line(error)}")
            log.info("catalog.disk_error", **context)
        elif self.backend.is_transient(error):
            translated = CatalogUnavailableError(
                f"catalog unavailable ({operation}): {_first_line(error)}"
            )
            log.error("catalog.unavailable", **context)
        elif isinstance(error, sa.exc.IntegrityError):
            translated = CatalogIntegrityError(f"{operation}: {_first_line(error)}")
            log.warning("catalog.constraint_violation", **context)
        elif isinstance(error, sa.exc.DBAPIError) and self.backend.is_isolation_violation(error):
            translated = TenantIsolationError(
                f"{operation}: row-level security refused a write outside tenant {tenant!r}"
            )
            log.warning("catalog.tenant_isolation_violation", **context)
        elif isinstance(error, sa.exc.DBAPIError) and self.backend.is_missing_schema(error):
            translated = CatalogSchemaError(
                f"the catalog schema is missing ({_first_line(error)}); run 'servo catalog migrate'"
            )
            log.error("catalog.schema_missing", **context)
        else:
            translated = CatalogError(f"{operation}: {_first_line(error)}")
            log.error("catalog.error", **context)
        ERRORS.labels(operation, type(translated).__name__).inc()
        return translated


def _first_line(error: BaseException) -> str:
    """The driver's message without SQLAlchemy's statement dump and background link."""
    source = getattr(error, "orig", None) or error
    text = str(source).strip().splitlines()
    return text[0] if text else type(source).__name__
