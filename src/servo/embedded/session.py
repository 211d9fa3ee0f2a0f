"""One code path for running assets in this process: the CLI and the Python API share it.

`run_assets` does what ``servo materialize`` and `servo.materialize` both need, in
this order:

1. open the home's object store (`servo.storage.factory.open_store`), or use the store
   given (an in-memory home);
2. in a home (`open_runner`): take the home lock, then set aside what the runner could
   not read (a torn file after a power loss; `servo.maintenance.salvage`), then start
   the catalog's background thread (`servo.embedded.catalog_sync`), which opens the
   catalog, registers the definitions (`catalog_for_run`) and projects what the run
   publishes; an in-memory home has no lock and no catalog;
3. build the `EmbeddedRunner` with that thread as its publish listener;
4. start the run (or find the run of the idempotency key) and drive it to its end,
   inside the caller's `Watch` (the CLI's progress bar);
5. let the catalog catch up (a bounded wait), and return the run, its tasks and each
   task's current attempt (`RunOutcome`).

A catalog that cannot be reached does not stop the run: a warning says so and the
next run catches up from the projector's checkpoint. What must stop it is checked
before the run, in this thread: a home's catalog file that is not SQLite
(`servo.catalog.sqlite_file`), and a PostgreSQL catalog that was never migrated
(``servo catalog migrate``) — a server catalog (``database.url``) is opened here;
only the home's SQLite file is opened in the background.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING

from servo.errors import ConfigError

if TYPE_CHECKING:
    from servo.catalog.protocol import Catalog
    from servo.config.settings import Settings
    from servo.embedded.catalog_sync import CatalogSync
    from servo.engine.schema import AttemptRow, RunRow, TaskRow
    from servo.engine.snapshot import Snapshot
    from servo.runner import EmbeddedRunner, Progress, RunnerOptions, RunStart
    from servo.sdk.definitions import Definitions
    from servo.storage.base import ObjectStore

#: Called once the run is started; the run is driven inside the context it returns,
#: and the context's value (when not None) receives progress.
Watch = Callable[["EmbeddedRunner", "RunStart"], AbstractContextManager["Progress | None"]]


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What to run and how.

    Attributes:
        selection: a selection expression (``servo.graph.selection``); None selects
            every asset.
        idempotency_key: run again with the same key to resume, not repeat.
        tenant: tenant of the run (engine scope and catalog alike).
        concurrency: attempts running at once.
        processes: run attempts in worker processes (needs a home on disk and
            definitions loaded from a file), not threads.
    """

    selection: str | None = None
    idempotency_key: str | None = None
    tenant: str = "default"
    concurrency: int = 4
    processes: bool = False


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """A run that ended, as the runner left it.

    Attributes:
        run: the run's final row.
        tasks: its tasks, in plan order.
        attempts: task key -> the task's current attempt (its error traceback), for
            tasks that had one.
        store: the object store holding the run's values.
        resumed: an existing run (same idempotency key) was found, nothing new created.
        interrupted: the run was stopped (`EmbeddedRunner.request_stop`, e.g. on
            Ctrl-C) before it ended; `run` is still RUNNING and can be resumed.
    """

    run: RunRow
    tasks: tuple[TaskRow, ...]
    attempts: Mapping[str, AttemptRow]
    store: ObjectStore
    resumed: bool
    interrupted: bool = False


def catalog_for_run(settings: Settings, tenant: str, definitions: Definitions) -> Catalog | None:
    """The catalog with the definitions registered; None (and a warning) when it is down.

    A catalog that cannot be reached or written (`CatalogUnavailableError`, e.g. a full
    disk under the SQLite file) is a read model the run does not need: one warning line
    says why and what to do, ``servo_runs_without_catalog_total`` counts it, and the run
    goes on; the next run's projector catches up from its checkpoint.
    """
    catalog = _open_or_warn(settings, tenant)
    return None if catalog is None else _registered(catalog, tenant, definitions)


def _open_or_warn(settings: Settings, tenant: str) -> Catalog | None:
    from servo.catalog import open_catalog
    from servo.errors import CatalogUnavailableError
    from servo.observability import metrics
    from servo.observability.logging import get_logger

    try:
        return open_catalog(settings)
    except CatalogUnavailableError as exc:
        metrics.counter(
            "servo_runs_without_catalog_total",
            "Runs that went on without the catalog (it catches up later), by error.",
            ["error_type"],
        ).labels(type(exc).__name__).inc()
        get_logger(__name__).warning(
            "catalog.unavailable_run_continues",
            tenant_id=tenant,
            error_type=type(exc).__name__,
            error=str(exc),
            recovery="the run goes on; the catalog catches up on the next run",
        )
        return None


def _registered(catalog: Catalog, tenant: str, definitions: Definitions) -> Catalog:
    """`catalog`, the definitions registered in it (only when they changed)."""
    from servo.catalog.registry import register_if_changed
    from servo.errors import CatalogUnavailableError
    from servo.observability.logging import get_logger

    try:
        register_if_changed(catalog, tenant, definitions)
    except CatalogUnavailableError as exc:
        get_logger(__name__).warning(
            "catalog.definitions_not_registered", tenant_id=tenant, error=str(exc)
        )
    except BaseException:
        catalog.close()
        raise
    return catalog


def start_catalog_sync(
    settings: Settings,
    tenant: str,
    definitions: Definitions,
    store: ObjectStore,
    workspace_id: str,
) -> CatalogSync:
    """The running background thread that keeps the catalog up with this runner.

    The home's SQLite catalog is checked here (a home that cannot be written or a
    file that is not SQLite stops the command) and opened in the thread; a server
    catalog (``database.url``) is opened here, so that one never migrated stops the
    run before it starts, and only registering and projecting are left to the thread.

    Raises:
        HomeError: the home cannot be written.
        CatalogCorruptError: the home's catalog file is not a SQLite database.
        CatalogSchemaError: the PostgreSQL catalog is not at this Servo's revision.
        ConfigError: ``database.url`` is not a supported URL.
    """
    from servo.embedded.catalog_sync import CatalogSync

    opener: Callable[[], Catalog | None]
    if settings.database.url is None:
        from servo.catalog.sqlite_file import check_home_catalog

        check_home_catalog(settings.home)
        opener = partial(catalog_for_run, settings, tenant, definitions)
    else:
        catalog = _open_or_warn(settings, tenant)
        opener = (
            (lambda: None)
            if catalog is None
            else partial(_registered, catalog, tenant, definitions)
        )

    def projector(catalog: Catalog) -> Callable[[Snapshot], object]:
        from servo.catalog.projector import CatalogProjector

        return CatalogProjector(catalog, store, tenant, workspace_id)

    return CatalogSync(opener, projector).start()


def runner_options(
    definitions: Definitions, request: RunRequest, settings: Settings | None
) -> RunnerOptions:
    """The runner options `request` asks for.

    Raises:
        ConfigError: worker processes without a home on disk or without definitions
            loaded from a file (a worker process must load both again).
    """
    from servo.dispatch.local import ProcessRuntimeSpec
    from servo.engine.run_lock import home_lock_dir
    from servo.runner import RunnerOptions
    from servo.storage.factory import open_store

    spec = None
    if request.processes:
        if settings is None or definitions.source is None:
            raise ConfigError(
                "worker processes need a Servo home (--home, or home=PATH) and definitions "
                "loaded from a file (--defs, or servo.sdk.load_definitions); use threads "
                "otherwise"
            )
        spec = ProcessRuntimeSpec(
            definitions.source, partial(open_store, settings.storage, settings.home)
        )
    return RunnerOptions(
        tenant_id=request.tenant,
        concurrency=request.concurrency,
        pool="process" if request.processes else "thread",
        process_spec=spec,
        lock_dir=None if settings is None else home_lock_dir(settings.home),
        max_l0_files=16 if settings is None else settings.engine.max_l0_files,
    )


@contextmanager
def open_runner(
    definitions: Definitions,
    options: RunnerOptions,
    store: ObjectStore,
    settings: Settings | None,
    *,
    purpose: str = "servo materialize",
) -> Iterator[EmbeddedRunner]:
    """An `EmbeddedRunner` projecting into the home's catalog (none when `settings` is None).

    With a home (`settings`), the home lock (`servo.engine.home_lock`) is taken first,
    before any state is read or the catalog opened, and held until the context ends;
    `purpose` is what the lock file says the holder does. Under it, unreadable objects
    the runner would read are set aside (`servo.maintenance.salvage`). The catalog is
    opened, the definitions registered and the run projected in the background
    (`start_catalog_sync`); when the context ends the catalog is given a bounded
    wait to catch up, then closed.

    Raises:
        HomeBusyError: another live process drives runs on the home.
    """
    from servo.engine.home_lock import HomeLock

    lock = nullcontext() if settings is None else HomeLock(settings.home, purpose)
    with lock:
        yield from _runner_in(definitions, options, store, settings)


def _runner_in(
    definitions: Definitions,
    options: RunnerOptions,
    store: ObjectStore,
    settings: Settings | None,
) -> Iterator[EmbeddedRunner]:
    from servo.runner import EmbeddedRunner

    tenant = options.tenant_id
    if settings is not None:
        from servo.maintenance.salvage import salvage_scope

        salvage_scope(store, tenant, options.workspace_id)
    sync = None
    if settings is not None:
        sync = start_catalog_sync(settings, tenant, definitions, store, options.workspace_id)
    try:
        with EmbeddedRunner(store, definitions, options) as runner:
            if sync is not None:
                runner.add_publish_listener(sync)
            yield runner
    finally:
        if sync is not None:
            sync.close()


def _no_watch(_runner: EmbeddedRunner, _start: RunStart) -> AbstractContextManager[None]:
    return nullcontext()


def run_assets(
    definitions: Definitions,
    request: RunRequest,
    settings: Settings | None,
    *,
    store: ObjectStore | None = None,
    watch: Watch | None = None,
) -> RunOutcome:
    """Run `request` in this process to its end (see the module docstring).

    Args:
        definitions: the assets.
        request: what to run and how.
        settings: the home's settings; None for an in-memory home without a catalog.
        store: the object store; None opens the one `settings` configure (or a new
            in-memory store when `settings` is None).
        watch: called once the run started; the run is driven inside its context.

    Raises:
        SelectionError: the selection matches nothing or names an unknown asset.
        DefinitionError: a dependency outside the selection was never materialized.
        ConfigError: the store or the pool cannot be built from the settings.
    """
    if store is None:
        store = _open_store(settings)
    options = runner_options(definitions, request, settings)
    with open_runner(definitions, options, store, settings) as runner:
        start = runner.start_run(request.selection, request.idempotency_key)
        with (watch or _no_watch)(runner, start) as on_progress:
            run = runner.wait(start.run_id, on_progress)
        state = runner.state
        tasks = tuple(state.tasks_of(start.run_id))
        current = {
            task.task_key: found
            for task in tasks
            if (found := state.current_attempt(task)) is not None
        }
    return RunOutcome(
        run, tasks, MappingProxyType(current), store, start.resumed, runner.interrupted
    )


def _open_store(settings: Settings | None) -> ObjectStore:
    if settings is None:
        from servo.storage.memory import MemoryObjectStore

        return MemoryObjectStore()
    from servo.storage.factory import open_store

    return open_store(settings.storage, settings.home)
