"""The embedded runner: one process drives compactor, controllers, dispatcher and pool.

Loop, until the run ends:

1. take the events of running and ended attempts and fold them;
2. run the controllers on the folded state: READY tasks get `DispatchRequested`,
   tasks waiting to retry get a retry timer, due timers fire; fold those events;
3. write every event folded since the last write to the ledger as ONE batch;
4. hand every PENDING outbox row of the run to the pool under its deterministic id
   (`DispatchEnqueued` is folded now and written with the next batch);
5. publish the projections when `publish_interval_s` has passed, and when the run ends.

Every event is in the ledger before anything it caused happens — an attempt is
enqueued, or projections are published — so `kill -9` at any point loses nothing:
on start the runner folds the ledger objects the last manifest may not reflect
(`servo.engine.recovery`) and gives up on attempts no live worker holds
(`AttemptAbandoned(worker_lost)`, which redelivers them). A task whose result was
recorded is not run again (the worker runtime's idempotency record).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from servo.dispatch.local import LocalPoolDispatcher, PoolMode, ProcessRuntimeSpec
from servo.dispatch.request import TaskRequest, build_request
from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.compactor import Compactor
from servo.engine.controllers.ready import dispatch_ready
from servo.engine.controllers.run import Materialization, plan_tasks
from servo.engine.controllers.timers import fire_due_timers, next_due, request_retry_timers
from servo.engine.fold import EngineState
from servo.engine.ids import dispatch_id, new_ulid, now_us, run_id_for_key
from servo.engine.ledger import LedgerReader, LedgerWriter
from servo.engine.recovery import FINDINGS, unfolded_ledger_paths
from servo.engine.snapshot import Snapshot
from servo.errors import EngineError
from servo.graph import select
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.storage.base import ObjectStore
from servo.worker.runtime import TaskReport, TaskRuntime

if TYPE_CHECKING:
    from servo.sdk.definitions import Definitions

log = get_logger(__name__)

Progress = Callable[[s.RunRow, list[s.TaskRow]], None]
#: Called with each snapshot the runner publishes (e.g. the catalog projector).
PublishListener = Callable[[Snapshot], None]

LISTENER_ERRORS = metrics.counter(
    "servo_publish_listener_errors_total", "Publish listeners that raised.", ["error_type"]
)
TaskId = tuple[str, str]
#: Queue items: events from in-process workers, or an attempt that ended.
_Item = tuple[list[ev.Event], None] | tuple[TaskRequest, TaskReport | BaseException]


class _QueueSink:
    """In-process workers hand events to the runner, which batches them into the ledger."""

    def __init__(self, items: queue.SimpleQueue[_Item]) -> None:
        self._items = items

    def emit(self, event: ev.Event) -> None:
        self._items.put(([event], None))


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """How the embedded runner runs.

    Attributes:
        tenant_id: tenant of the runs.
        workspace_id: workspace of the runs.
        concurrency: attempts running at once.
        pool: "thread" (default) or "process".
        publish_interval_s: longest time folded state stays unpublished.
        process_spec: how worker processes load definitions and open the store
            (required for the process pool).
    """

    tenant_id: str = "default"
    workspace_id: str = "default"
    concurrency: int = 4
    pool: PoolMode = "thread"
    publish_interval_s: float = 1.0
    process_spec: ProcessRuntimeSpec | None = None


@dataclass(frozen=True, slots=True)
class RunStart:
    """The run `start_run` created or found.

    Attributes:
        run_id: the run.
        resumed: an existing run (same idempotency key) was found, nothing new created.
    """

    run_id: str
    resumed: bool


class EmbeddedRunner:
    """Runs assets in this process; see the module docstring."""

    def __init__(
        self,
        store: ObjectStore,
        defs: Definitions,
        options: RunnerOptions | None = None,
        *,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.options = options or RunnerOptions()
        self._store = store
        self._defs = defs
        self._clock = clock
        tenant, workspace = self.options.tenant_id, self.options.workspace_id
        self.compactor = Compactor(store, tenant, workspace, clock=clock)
        self._ledger = LedgerWriter(store, tenant, workspace)
        self._reports: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        runtime = TaskRuntime(
            store,
            defs,
            worker_id=f"embedded-{new_ulid()}",
            sink=_QueueSink(self._reports),
            clock=clock,
        )
        self._dispatcher = LocalPoolDispatcher(
            runtime,
            lambda request, report: self._reports.put((request, report)),
            concurrency=self.options.concurrency,
            mode=self.options.pool,
            process_spec=self.options.process_spec,
        )
        self._inflight: set[str] = set()
        self._unwritten: list[ev.Event] = []
        self._watched: tuple[EngineState, str] | None = None
        self._pending: set[TaskId] = set()
        self._listeners: list[PublishListener] = []
        self._recovered = False
        self._last_publish = 0.0
        self._drained_at = 0

    # ------------------------------------------------------------------ public
    @property
    def state(self) -> EngineState:
        """The folded state (possibly ahead of the published projections)."""
        self._recover()
        return self.compactor.state

    def start_run(
        self, selection: str | None = None, idempotency_key: str | None = None
    ) -> RunStart:
        """Plan and request a run, or find the run of `idempotency_key`.

        Raises:
            SelectionError: the selection matches nothing or names an unknown asset.
            DefinitionError: a dependency outside the selection was never materialized.
        """
        self._recover()
        tenant, workspace = self.options.tenant_id, self.options.workspace_id
        run_id = (
            new_ulid()
            if idempotency_key is None
            else run_id_for_key(tenant, workspace, idempotency_key)
        )
        if idempotency_key is not None and self.state.run(run_id) is not None:
            return RunStart(run_id, resumed=True)
        selected = select(self._defs.graph, selection or "*")
        tasks = plan_tasks(self._defs, selected, self._latest_materializations())
        event = ev.Event.new(
            ev.RunRequested(
                tasks=tasks,
                idempotency_key=idempotency_key,
                selection=selection,
                defs_source=self._defs.source,
            ),
            tenant_id=tenant,
            workspace_id=workspace,
            run_id=run_id,
            emitted_at=self._clock(),
        )
        suffix = f"runs/{run_id}/requested"
        if self._ledger.append_at(suffix, event):
            self._fold([event])
            return RunStart(run_id, resumed=False)
        self._fold(LedgerReader(self._store).read(self._ledger.path_for(suffix)))
        return RunStart(run_id, resumed=True)

    def wait(self, run_id: str, on_progress: Progress | None = None) -> s.RunRow:
        """Drive the run until it ends; returns its final row.

        Raises:
            EngineError: the run does not exist.
        """
        self._recover()
        if self.state.run(run_id) is None:
            raise EngineError(
                f"no run {run_id} in {self.options.tenant_id}/{self.options.workspace_id}"
            )
        self._abandon_orphans(run_id)
        last_seen: tuple[int, ...] = ()
        self._drain()
        while True:
            self._control(run_id)
            self._flush()
            self._dispatch(run_id)
            run = self.state.run(run_id)
            assert run is not None
            if on_progress is not None:
                counts = _counts(self.state.tasks_of(run_id))
                if counts != last_seen:
                    last_seen = counts
                    on_progress(run, self.state.tasks_of(run_id))
            if run.status != s.RUN_RUNNING:
                self._publish(force=True)
                return run
            self._publish(force=False)
            self._drain(self._wait_timeout(run_id))

    def add_publish_listener(self, listener: PublishListener) -> None:
        """Call `listener` with every snapshot published from now on.

        A listener that raises is logged and counted; the run goes on (listeners feed
        read models, which catch up from the next snapshot).
        """
        self._listeners.append(listener)

    def close(self) -> None:
        """Publish what is folded and stop the pool."""
        try:
            if self._recovered:
                self._publish(force=True)
        finally:
            self._dispatcher.close()

    def __enter__(self) -> EmbeddedRunner:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --------------------------------------------------------------- internals
    def _scope(self) -> dict[str, str]:
        return {"tenant_id": self.options.tenant_id, "workspace_id": self.options.workspace_id}

    def _fold(self, events: list[ev.Event]) -> None:
        if events:
            self.compactor.fold(events)

    def _append(self, events: list[ev.Event]) -> None:
        """Fold events now; `_flush` writes them before anything acts on them."""
        if events:
            self._fold(events)
            self._unwritten.extend(events)

    def _flush(self) -> None:
        """Write every folded-but-unwritten event to the ledger as one batch."""
        if self._unwritten:
            self._ledger.append(self._unwritten)
            self._unwritten = []

    def _recover(self) -> None:
        if self._recovered:
            return
        self._recovered = True
        state = self.compactor.state
        manifest = self.compactor.manifest
        paths = unfolded_ledger_paths(
            self._store,
            self.options.tenant_id,
            self.options.workspace_id,
            has_run=lambda run_id: state.run(run_id) is not None,
            watermark=None if manifest is None else manifest.last_processed_at,
        )
        if paths:
            log.info("runner.recovering", paths=len(paths), **self._scope())
            self._fold(LedgerReader(self._store).read_many(paths))
            self._publish(force=True)

    def _abandon_orphans(self, run_id: str) -> None:
        """End attempts of `run_id` that no worker of this runner holds."""
        events = []
        for task in self.state.tasks_of(run_id):
            if task.status not in (s.DISPATCHED, s.RUNNING) or task.attempt_id is None:
                continue
            did = dispatch_id(
                self.options.tenant_id,
                self.options.workspace_id,
                run_id,
                task.task_key,
                task.attempt,
            )
            if did in self._inflight:
                continue
            events.append(
                ev.Event.new(
                    ev.AttemptAbandoned(reason="worker_lost"),
                    run_id=run_id,
                    task_key=task.task_key,
                    attempt=task.attempt,
                    attempt_id=task.attempt_id,
                    emitted_at=self._clock(),
                    **self._scope(),
                )
            )
        if events:
            FINDINGS.labels("orphaned_attempt").inc(len(events))
            log.warning(
                "runner.orphaned_attempts", run_id=run_id, count=len(events), **self._scope()
            )
            self._append(events)

    def _drain(self, timeout: float = 0.0) -> None:
        """Take worker events and ended attempts, waiting up to `timeout` for the first.

        Events from in-process workers are written to the ledger here, as one batch,
        before they are folded; events a worker process already wrote are folded as
        they are.
        """
        to_write: list[ev.Event] = []
        written: list[ev.Event] = []
        block = timeout > 0
        while True:
            try:
                first, second = self._reports.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                break
            block = False
            if second is None:
                assert isinstance(first, list)
                to_write.extend(first)
                continue
            assert isinstance(first, TaskRequest)
            self._inflight.discard(first.dispatch_id)
            if isinstance(second, BaseException):
                to_write.extend(self._runtime_failed(first, second))
            else:
                written.extend(second.events)
        self._drained_at = self._clock()
        self._fold(written)
        self._append(to_write)

    def _runtime_failed(self, request: TaskRequest, error: BaseException) -> list[ev.Event]:
        """The runtime could not report (e.g. the ledger write failed): redeliver."""
        log.error(
            "runner.runtime_failed",
            run_id=request.run_id,
            task_key=request.task_key,
            attempt_id=request.attempt_id,
            error_type=type(error).__name__,
            error=str(error),
            **self._scope(),
        )
        return [
            ev.Event.new(
                ev.AttemptAbandoned(reason="worker_lost"),
                run_id=request.run_id,
                task_key=request.task_key,
                attempt=request.attempt,
                attempt_id=request.attempt_id,
                emitted_at=self._clock(),
                **self._scope(),
            )
        ]

    def _changed(self, run_id: str) -> list[s.TaskRow]:
        """Tasks of `run_id` that may need an action: those whose status changed since
        the last call, or every task when the state was (re)loaded or the run is new."""
        state = self.state
        if self._watched != (state, run_id):
            self._watched = (state, run_id)
            state.take_status_changes()
            self._pending = {(t.run_id, t.task_key) for t in state.tasks_of(run_id)}
        else:
            self._pending.update(
                (t.run_id, t.task_key) for t in state.take_status_changes() if t.run_id == run_id
            )
        return [t for tid in self._pending if (t := state.task(*tid)) is not None]

    def _control(self, run_id: str) -> None:
        state = self.state
        tasks = self._changed(run_id)
        now = self._clock()
        timers = state.tables["timers"]
        events = request_retry_timers(tasks, lambda tid: (tid,) in timers, now=now, **self._scope())
        due = fire_due_timers(
            (t for t in timers.values() if t.run_id == run_id),
            now=now,
            watermark=self._drained_at,
            **self._scope(),
        )
        events.extend(due.events)
        events.extend(
            dispatch_ready(
                tasks,
                tenant_id=self.options.tenant_id,
                workspace_id=self.options.workspace_id,
                now=now,
            )
        )
        self._pending.difference_update(
            (t.run_id, t.task_key) for t in tasks if t.status in (s.READY, s.RETRY_WAIT)
        )
        self._append(events)

    def _dispatch(self, run_id: str) -> None:
        state = self.state
        enqueued = []
        for task in self._changed(run_id):
            if task.status in (s.READY, s.RETRY_WAIT):
                continue  # the controllers act on it next
            self._pending.discard((task.run_id, task.task_key))
            if task.status != s.DISPATCHED:
                continue
            did = dispatch_id(
                self.options.tenant_id,
                self.options.workspace_id,
                run_id,
                task.task_key,
                task.attempt,
            )
            row = state.outbox(did)
            if row is None or row.status != s.OUTBOX_PENDING or did in self._inflight:
                continue
            definition = self._defs.assets.get(task.asset_key)
            if definition is None:
                raise EngineError(
                    f"run {run_id}: asset {task.asset_key!r} is not in the loaded definitions; "
                    "load the definitions the run was started with"
                )
            data_deps = tuple(d.name for d in definition.dependencies if d.type == "data")
            upstream = {
                dep.upstream_task_key: found
                for dep in state.deps_of(run_id, task.task_key)
                if (found := state.task(run_id, dep.upstream_task_key)) is not None
            }
            request = build_request(
                self.options.tenant_id,
                self.options.workspace_id,
                row,
                task,
                upstream,
                data_deps,
                self._defs.source,
            )
            self._inflight.add(did)
            outcome = self._dispatcher.enqueue(request)
            enqueued.append(
                ev.Event.new(
                    ev.DispatchEnqueued(cloud_task_id=row.cloud_task_id),
                    run_id=run_id,
                    task_key=task.task_key,
                    attempt=row.attempt,
                    attempt_id=row.attempt_id,
                    emitted_at=self._clock(),
                    **self._scope(),
                )
            )
            log.debug("runner.enqueued", run_id=run_id, task_key=task.task_key, outcome=outcome)
        self._append(enqueued)

    def _publish(self, *, force: bool) -> None:
        elapsed = time.monotonic() - self._last_publish
        if force or elapsed >= self.options.publish_interval_s:
            self._flush()
            self.compactor.publish(taken_at=self._drained_at or self._clock())
            self._last_publish = time.monotonic()
            if self._listeners:
                self._notify(self.compactor.snapshot())

    def _notify(self, snapshot: Snapshot) -> None:
        for listener in self._listeners:
            try:
                listener(snapshot)
            except Exception as exc:  # a read model failing must not stop the run
                LISTENER_ERRORS.labels(type(exc).__name__).inc()
                log.error(
                    "runner.publish_listener_failed",
                    listener=getattr(listener, "__qualname__", repr(listener)),
                    generation=snapshot.generation,
                    error_type=type(exc).__name__,
                    error=str(exc),
                    **self._scope(),
                )

    def _wait_timeout(self, run_id: str) -> float:
        """How long to wait for reports: until a timer is due or it is time to publish."""
        timeout = self.options.publish_interval_s
        due = next_due(t for t in self.state.tables["timers"].values() if t.run_id == run_id)
        if due is not None:
            timeout = min(timeout, max(0.0, (due - self._clock()) / 1_000_000))
        return max(timeout, 0.001)

    def _latest_materializations(self) -> dict[str, Materialization]:
        latest: dict[str, tuple[int, Materialization]] = {}
        for task in self.state.rows("tasks"):
            if task.status != s.SUCCEEDED:
                continue
            if task.output_location is None or task.output_format is None:
                continue
            seen = latest.get(task.asset_key)
            finished = task.finished_at or 0
            if seen is None or finished > seen[0]:
                latest[task.asset_key] = (finished, (task.output_location, task.output_format))
        return {name: found for name, (_, found) in latest.items()}


def _counts(tasks: list[s.TaskRow]) -> tuple[int, ...]:
    statuses = [t.status for t in tasks]
    return tuple(
        statuses.count(st)
        for st in (s.SUCCEEDED, s.FAILED, s.SKIPPED, s.RUNNING, s.DISPATCHED, s.CANCELLED)
    )
