"""Servo's exception hierarchy: every error Servo raises derives from `ServoError`.

```
ServoError
├── ConfigError                 settings that cannot be used (names the key)
├── DefinitionError             user definitions that cannot be planned (names the asset)
│   └── CycleError              a dependency cycle (names one cycle path)
├── SelectionError              an asset selection that matches nothing or does not parse
├── HomeError                   a Servo home that cannot be used (a file, read-only, no parent)
├── HomeBusyError               another live process drives runs on the home (exit code 75)
├── StorageError                object store failures, backend-neutral
│   ├── ObjectExistsError       a create-only write found the object already there
│   ├── PreconditionFailedError a conditional write lost (generation mismatch)
│   ├── ObjectNotFoundError     a read of an object that does not exist
│   │   └── ValueRemovedError   a stored value that ``servo gc`` removed (names its record)
│   └── TransientStorageError   a failure worth retrying (network, 5xx, throttling)
├── EngineError                 engine invariants and ledger/projection problems
│   ├── CorruptObjectError      a stored ledger, manifest or projection object that cannot be
│   │   │                       read (names it and ``servo doctor --repair``)
│   │   └── EventDecodeError    a ledger object that is not a valid event
│   ├── ManifestConflictError   a manifest publish lost the compare-and-swap race
│   └── RunBusyError            another live process drives the run (its run lock is held)
├── WorkerPoolError             a local worker process pool broke under an attempt (handed to
│   │                           the runner as the attempt's result, never raised to users)
│   ├── WorkerCrashedError      the attempt's own worker process died (names the exit code)
│   └── PoolLostError           the attempt's worker was ended with its broken pool (another
│                               worker died, or the pool's manager): not the attempt's doing
├── CircuitOpenError            a circuit breaker refused a call: the dependency is presumed down
├── AttemptStoppedError         an async asset's coroutine was cancelled (attempt asked to stop)
├── RunFailedError              `servo.materialize(..., raise_on_error=True)`: an asset did not
│                               succeed (names the assets and their errors)
├── ValueNotFoundError          an asset value that does not exist (never materialized, unknown
│                               run, or the asset did not succeed in that run)
├── RunNotFoundError            a run id that this home or catalog does not hold
└── CatalogError                metadata catalog failures, backend-neutral
    ├── CatalogUnavailableError a transient failure (connection, timeout, lock, open breaker)
    │   │                       that outlived the catalog's own retries
    │   └── CatalogDiskError    the SQLite catalog's file cannot be written (disk full, file
    │                           size limit, I/O error): never retried, usable once space is freed
    ├── CatalogIntegrityError   a constraint refused a write (duplicate key, invalid value)
    ├── TenantIsolationError    row-level security refused a write outside the caller's tenant
    ├── CatalogSchemaError      the database schema is not the one this Servo needs (migrate)
    └── CatalogCorruptError     the SQLite catalog file is damaged (``servo doctor --repair``)
```

Driver errors are translated at the boundary (`raise ... from exc`) so callers only
ever see these classes. Only `TransientStorageError` (and subclasses introduced for
the same purpose) are retried; the catalog retries its transient errors itself and
raises `CatalogUnavailableError` when they persist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servo.embedded.result import MaterializeResult


class ServoError(Exception):
    """Root of every error Servo raises on purpose."""


class ConfigError(ServoError):
    """Settings that cannot be used; the message names the key and the fix."""


class DefinitionError(ServoError):
    """Asset or workflow definitions that cannot be planned; names the asset."""


class CycleError(DefinitionError):
    """The dependency graph has a cycle.

    Attributes:
        cycle: the assets on one cycle, first repeated last (``a -> b -> a``).
    """

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(f"dependency cycle: {' -> '.join(cycle)}")


class SelectionError(ServoError):
    """An asset selection that does not parse or names an unknown asset."""


class HomeError(ServoError):
    """A Servo home that cannot be used as it is; names the path and what to do."""


class StorageError(ServoError):
    """An object store operation failed."""


class ObjectExistsError(StorageError):
    """A create-only write found an object already at the path."""


class PreconditionFailedError(StorageError):
    """A conditional write's expected generation did not match."""


class ObjectNotFoundError(StorageError):
    """A read of an object that does not exist."""


class ValueRemovedError(ObjectNotFoundError):
    """A stored value that ``servo gc`` removed; the message names its gc record."""


class TransientStorageError(StorageError):
    """A storage failure that may succeed when retried."""


class EngineError(ServoError):
    """An engine invariant or ledger/projection problem."""


class CorruptObjectError(EngineError):
    """A stored object (ledger, manifest, projection file) that cannot be read."""


class EventDecodeError(CorruptObjectError):
    """A ledger object could not be decoded into events."""


class ManifestConflictError(EngineError):
    """Another compactor published the manifest generation first."""


class LedgerWriteError(EngineError):
    """Events could not be written to the ledger: the run stopped, nothing unwritten
    was published or acted on, and resuming the run once the store is fixed is safe."""


class RunBusyError(EngineError):
    """Another live process drives the run (it holds the run's lock); names the run."""


class HomeBusyError(ServoError):
    """Another live process drives runs on the home (it holds the home lock).

    The command line exits with `exit_code` (EX_TEMPFAIL: try again later), not the
    usage code: nothing is wrong with the command, the home is busy.
    """

    exit_code = 75


class WorkerPoolError(ServoError):
    """A local worker process pool broke while it held an attempt."""


class WorkerCrashedError(WorkerPoolError):
    """The worker process running the attempt died; the message names its exit code."""


class PoolLostError(WorkerPoolError):
    """The attempt's worker process was ended because its pool broke under others."""


class CircuitOpenError(ServoError):
    """A circuit breaker refused the call; the dependency is presumed down.

    Attributes:
        dependency: the guarded dependency (``postgres``, ``cloud_tasks``, ...).
        retry_after_s: seconds until the breaker lets a recovery probe through (0 when
            a probe is already in flight).
    """

    def __init__(self, dependency: str, retry_after_s: float, reason: str) -> None:
        self.dependency = dependency
        self.retry_after_s = retry_after_s
        super().__init__(f"{dependency} circuit breaker is open: {reason}")


class AttemptStoppedError(ServoError):
    """An ``async def`` asset's coroutine was cancelled before it returned.

    Raised in the worker when Servo asked the attempt to stop (run cancelled, attempt
    timed out); the engine has already ended that attempt and ignores its report.
    """


class RunFailedError(ServoError):
    """A run started with ``raise_on_error=True`` ended with an asset not succeeded.

    Attributes:
        result: the run's `MaterializeResult` (statuses, errors with tracebacks).
        run_id: the run.
    """

    def __init__(self, message: str, result: MaterializeResult) -> None:
        self.result = result
        self.run_id = result.run_id
        super().__init__(message)


class RunNotFoundError(ServoError):
    """A run id that the home (or the catalog) does not hold; says how to list runs."""

    def __init__(self, run_id: str, where: str = "this home") -> None:
        super().__init__(f"no run {run_id!r} in {where}; 'servo runs list' shows the runs")
        self.run_id = run_id


class ValueNotFoundError(ServoError):
    """No stored value answers the request; the message says what to run."""


class CatalogError(ServoError):
    """A metadata catalog operation failed."""


class CatalogUnavailableError(CatalogError):
    """The catalog database could not be reached or answered in time, after retries."""


class CatalogDiskError(CatalogUnavailableError):
    """The SQLite catalog's file cannot be written: the disk is full (or the file may not
    grow, or the disk failed). Not retried; the catalog is usable again once space is
    freed, and catches up from the engine's projections then."""


class CatalogIntegrityError(CatalogError):
    """A constraint of the catalog refused a write (duplicate key, invalid value)."""


class TenantIsolationError(CatalogError):
    """Row-level security refused a write outside the caller's tenant."""


class CatalogSchemaError(CatalogError):
    """The catalog schema is missing or at another revision; run ``servo catalog migrate``."""


class CatalogCorruptError(CatalogError):
    """The SQLite catalog file is damaged; ``servo doctor --repair`` rebuilds it."""
