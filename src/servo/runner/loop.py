"""The embedded runner: one process drives compactor, controllers, dispatcher and pool.

Loop, until the run ends:

1. take the events of running and ended attempts (heartbeats included) and fold them;
2. run the controllers on the folded state: a cancelled run's open attempts are
   abandoned; READY tasks get `DispatchRequested`; tasks waiting to retry, running
   attempts (heartbeat checks) and assets with a timeout get durable timers; due
   timers fire once the state is fresh enough (watermark); fold those events;
3. write every event folded since the last write to the ledger as ONE batch, then
   hand new timers to the timer wheel;
4. hand every PENDING outbox row of the run to the pool under its deterministic id
   (`DispatchEnqueued` is folded now and written with the next batch);
5. every `sweep_interval_s`, look for stuck work (`servo.engine.anti_entropy`) and for
   a cancel request written by another process;
6. publish the projections when `publish_interval_s` has passed, and when the run ends.

Every event is in the ledger before anything it caused happens — an attempt is
enqueued, a timer armed, projections published — so `kill -9` at any point loses
nothing: on start the runner folds the ledger objects the last manifest may not
reflect (`servo.engine.recovery`), re-arms the scheduled timers, and gives up on
attempts no live worker holds (`AttemptAbandoned(worker_lost)`, which redelivers
them). A task whose result was recorded is not run again (the worker runtime's
idempotency record).

Stopping (ADR 0011): after `request_stop(grace_s)` (signal-handler safe) nothing more
is dispatched, running attempts get `grace_s`, the state is written and published, and
`wait` returns the run RUNNING with `interrupted` set; the next `wait` gives attempts
left running up as `worker_lost`. With `RunnerOptions.lock_dir`, `wait` holds the run's
lock (`servo.engine.run_lock`) and refuses a run another live process drives.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from servo.dispatch.local import LocalPoolDispatcher, NotStarted
from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.anti_entropy import sweep
from servo.engine.cancellation import cancel_path, request_cancel
from servo.engine.compactor import Compactor
from servo.engine.controllers.ready import dispatch_ready
from servo.engine.controllers.run import Materialization, latest_materializations, plan_tasks
from servo.engine.controllers.timers import (
    TimerSettings,
    abandon_cancelled,
    fire_due_timers,
    request_timers,
)
from servo.engine.derive import reusable_attempt_ids
from servo.engine.fold import EngineState
from servo.engine.ids import dispatch_id, new_ulid, now_us, run_id_for_key
from servo.engine.ledger import LedgerReader, LedgerWriter
from servo.engine.recovery import FINDINGS
from servo.engine.request import TaskRequest, build_request
from servo.engine.run_lock import RunLock, lock_path
from servo.engine.snapshot import PublishListener, Snapshot
from servo.engine.timer_wheel import TimerWheel
from servo.errors import (
    EngineError,
    LedgerWriteError,
    ObjectNotFoundError,
    PoolLostError,
    StorageError,
    WorkerPoolError,
)
from servo.graph import select
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.runner.options import Progress, RunnerOptions, RunStart
from servo.runner.reports import AttemptEnded, QueueSink, Report, WorkerEvents
from servo.storage.base import ObjectStore
from servo.worker.runtime import TaskRuntime

if TYPE_CHECKING:
    from servo.sdk.definitions import Definitions

log = get_logger(__name__)

TaskId = tuple[str, str]

LISTENER_ERRORS = metrics.counter(
    "servo_publish_listener_errors_total", "Publish listeners that raised.", ["error_type"]
)
WRITE_HALTS = metrics.counter(
    "servo_runner_ledger_write_halts_total",
    "Runs stopped because their events could not be written to the ledger.",
)
RUNTIME_FAILURES = metrics.counter(
    "servo_runtime_failures_total", "Attempts ended without a report, by reason.", ["reason"]
)
RETRIES = metrics.counter(
    "servo_task_retries_total", "Attempts that failed and will be retried.", ["error_type"]
)

#: Microseconds after which a timer held back for a lagging watermark is delivered again.
_LAG_RETRY_US = 1_000
#: Most reports taken per loop iteration: short iterations keep timers punctual.
_MAX_DRAIN = 128
#: A periodic publish waits while a timer is due within this horizon...
_TIMER_HORIZON_US = 100_000
#: ...but never past this many publish intervals.
_MAX_PUBLISH_DELAY = 5


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
        self.options = options = options or RunnerOptions()
        if options.heartbeat_timeout_s <= options.heartbeat_interval_s:
            raise EngineError(
                "heartbeat_timeout_s must be longer than heartbeat_interval_s, or every "
                "running attempt would be given up"
            )
        self._store = store
        self._defs = defs
        self._clock = clock
        tenant, workspace = options.tenant_id, options.workspace_id
        self.compactor = Compactor(
            store, tenant, workspace, clock=clock, max_l0_files=options.max_l0_files
        )
        self._ledger = LedgerWriter(store, tenant, workspace)
        self._reports: queue.SimpleQueue[Report] = queue.SimpleQueue()
        self._timer_settings = TimerSettings(int(options.heartbeat_timeout_s * 1_000_000))
        runtime = TaskRuntime(
            store,
            defs,
            worker_id=f"embedded-{new_ulid()}",
            sink=QueueSink(self._reports),
            clock=clock,
            heartbeat_interval_s=options.heartbeat_interval_s,
        )
        self._dispatcher = LocalPoolDispatcher(
            runtime,
            lambda request, result: self._reports.put(AttemptEnded(request, result)),
            concurrency=options.concurrency,
            mode=options.pool,
            process_spec=options.process_spec,
            on_events=lambda events, paths: self._reports.put(
                WorkerEvents(events, written=True, paths=tuple(paths))
            ),
        )
        self._wheel = TimerWheel()
        self._inflight: set[str] = set()
        self._unwritten: list[ev.Event] = []
        self._watched: tuple[EngineState, str] | None = None
        self._pending: set[TaskId] = set()
        self._listeners: list[PublishListener] = []
        self._recovered = False
        self._last_publish = 0.0
        self._last_sweep = 0.0
        self._last_scan = 0.0
        self._drained_at = 0
        self._stop_deadline: float | None = None
        self._interrupted = False
        self._left_running = 0
        self._write_failed: LedgerWriteError | None = None

    # ------------------------------------------------------------------ public
    @property
    def state(self) -> EngineState:
        """The folded state (possibly ahead of the published projections)."""
        self._recover()
        return self.compactor.state

    def start_run(
        self,
        selection: str | None = None,
        idempotency_key: str | None = None,
        *,
        upstream: Mapping[str, Materialization] | None = None,
    ) -> RunStart:
        """Plan and request a run, or find the run of `idempotency_key`.

        Args:
            selection: the assets to run (a selection expression; default all).
            idempotency_key: the same key finds the same run instead of a new one.
            upstream: values to pin for dependencies outside the selection, by
                asset, in place of their latest materializations (a retry passes the
                values of the run it retries); other assets use their latest.

        Raises:
            SelectionError: the selection matches nothing or names an unknown asset.
            DefinitionError: a dependency outside the selection was never materialized.
        """
        self._recover()
        tenant, workspace = self.options.tenant_id, self.options.workspace_id
        if idempotency_key is None:
            run_id = new_ulid()
        else:
            run_id = run_id_for_key(tenant, workspace, idempotency_key)
            if self.state.run(run_id) is not None:
                return RunStart(run_id, resumed=True)
        selected = select(self._defs.graph, selection or "*")
        pinned = {**latest_materializations(self.state.rows("tasks")), **(upstream or {})}
        tasks = plan_tasks(self._defs, selected, pinned)
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

    def cancel(self, run_id: str, reason: str = "") -> bool:
        """Request cancellation of `run_id`; False when it was requested before."""
        self._recover()
        written = request_cancel(self._ledger, run_id, reason, self._clock())
        self._poll_cancel(run_id)
        return written

    def request_stop(self, grace_s: float) -> None:
        """Ask `wait` to stop driving its run, giving running attempts `grace_s` seconds.

        Safe from a signal handler or any thread (it stores a deadline and wakes the
        loop). A later call may shorten the deadline (`request_stop(0)`), not extend it.
        """
        deadline = time.monotonic() + max(0.0, grace_s)
        current = self._stop_deadline
        if current is None or deadline < current:
            self._stop_deadline = deadline
        self._reports.put(WorkerEvents([], written=True))  # wakes a waiting loop

    @property
    def interrupted(self) -> bool:
        """Whether the last `wait` returned because of `request_stop`, the run unfinished."""
        return self._interrupted

    def wait(self, run_id: str, on_progress: Progress | None = None) -> s.RunRow:
        """Drive the run until it ends, or until `request_stop`; returns its row.

        The row is final unless `interrupted` is set: then the run is still RUNNING
        and the next `wait` on it (in this process or another) resumes it.

        Raises:
            EngineError: the run does not exist.
            RunBusyError: another live process drives the run (`lock_dir` set).
        """
        self._recover()
        if self.state.run(run_id) is None:
            scope = f"{self.options.tenant_id}/{self.options.workspace_id}"
            raise EngineError(f"no run {run_id} in {scope}")
        lock = None
        if (locks := self.options.lock_dir) is not None:
            tenant, workspace = self.options.tenant_id, self.options.workspace_id
            lock = RunLock(lock_path(locks, tenant, workspace, run_id))
            if not lock.try_acquire():
                holder = lock.holder_pid()
                log.info("runner.run_busy", run_id=run_id, holder_pid=holder, **self._scope())
                lock.acquire(run_id)  # RunBusyError naming the holder (unless just freed)
        try:
            return self._drive(run_id, on_progress)
        finally:
            if lock is not None:
                lock.release()

    def _drive(self, run_id: str, on_progress: Progress | None) -> s.RunRow:
        self._interrupted, self._left_running = False, 0
        self._poll_cancel(run_id)
        self._abandon_orphans(run_id)
        self._arm_timers(run_id)
        last_seen: tuple[int, ...] = ()
        self._drain()
        while True:
            stopping = self._stop_deadline is not None
            if stopping:
                self._dispatcher.hold()
            self._control(run_id, dispatch=not stopping)
            self._flush()
            if not stopping:  # nor sweep: READY tasks wait for the resume on purpose
                self._dispatch(run_id)
                self._maybe_sweep(run_id)
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
            if stopping and self._stopped(run_id):
                return run
            self._publish(force=False)
            self._drain(self._wait_timeout())

    def _stopped(self, run_id: str) -> bool:
        """After a stop request: True (state written and published) once nothing runs
        here any more or the grace period has passed."""
        deadline = self._stop_deadline
        assert deadline is not None
        if self._inflight and time.monotonic() < deadline:
            return False
        self._publish(force=True)
        self._interrupted = True
        self._left_running = left = len(self._inflight)
        log.info("runner.stopped", run_id=run_id, left_running=left, **self._scope())
        return True

    def add_publish_listener(self, listener: PublishListener) -> None:
        """Call `listener` with every snapshot published from now on.

        A listener that raises is logged and counted; the run goes on (listeners feed
        read models, which catch up from the next snapshot).
        """
        self._listeners.append(listener)

    def close(self) -> None:
        """Publish what is folded and stop the pool.

        After an interrupted `wait` that left attempts running, they are left behind
        at once (their grace period has passed; a resume redelivers them).
        """
        try:
            if self._recovered and self._write_failed is None:
                self._publish(force=True)
        finally:
            self._dispatcher.close(0.0 if self._left_running else None)

    def __enter__(self) -> EmbeddedRunner:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------- event flow
    def _scope(self) -> dict[str, str]:
        return {"tenant_id": self.options.tenant_id, "workspace_id": self.options.workspace_id}

    def _fold(self, events: list[ev.Event], paths: list[str] | None = None) -> None:
        """Fold events that are in the ledger already (in the objects `paths`)."""
        if events:
            self.compactor.fold(events, paths=paths or ())

    def _append(self, events: list[ev.Event]) -> None:
        """Fold events now; `_flush` writes them before anything acts on them."""
        if events:
            self._fold(events)
            self._unwritten.extend(events)

    def _flush(self) -> None:
        """Write every folded-but-unwritten event to the ledger as one batch.

        Raises:
            LedgerWriteError: the write failed. The events are dropped from the folded
                state (which reloads from the last manifest), so nothing they caused is
                published or acted on; this runner refuses to go on.
        """
        if self._write_failed is not None:
            raise self._write_failed
        if not self._unwritten:
            return
        written, self._unwritten = self._unwritten, []
        try:
            path = self._ledger.append(written)
        except StorageError as exc:
            self._write_failed = self._halt(written, exc)
            raise self._write_failed from exc
        self.compactor.acknowledge([path])
        timers = self.state.tables["timers"]
        for event in written:
            if isinstance(event.payload, ev.TimerRequested):
                row = timers.get((event.payload.timer_id,))
                if row is not None and row.status == s.TIMER_SCHEDULED:
                    self._wheel.schedule(row.timer_id, row.due_at)

    def _halt(self, unwritten: list[ev.Event], exc: StorageError) -> LedgerWriteError:
        """Forget events that could not be written and say how to go on."""
        self.compactor.forget(unwritten)
        self._watched = None  # the state object is replaced: recompute what to act on
        runs = sorted({e.run_id for e in unwritten if e.run_id})
        WRITE_HALTS.inc()
        log.error(
            "runner.ledger_write_failed",
            run_id=runs[0] if len(runs) == 1 else None,
            events=len(unwritten),
            error_type=type(exc).__name__,
            error=str(exc),
            **self._scope(),
        )
        resume = f"'servo runs resume {runs[0]}'" if len(runs) == 1 else "'servo runs resume'"
        return LedgerWriteError(
            f"could not write to the ledger: {exc}; the run stopped and nothing that "
            f"was not written is recorded; fix the store (e.g. free disk space), then "
            f"resume with {resume}"
        )

    def _drain(self, timeout: float = 0.0) -> None:
        """Take worker events and ended attempts, waiting up to `timeout` for the first."""
        written: list[ev.Event] = []
        paths: list[str] = []
        unwritten: list[ev.Event] = []
        pool_broke = False
        block = timeout > 0
        for _ in range(_MAX_DRAIN):
            try:
                item = self._reports.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                # The queue was empty just now: every report put before this instant
                # is taken, so the state is fresh up to here. After a partial drain
                # (a backlog) it is not, and timers must not act as if it were.
                self._drained_at = max(self._drained_at, self._clock())
                break
            block = False
            if isinstance(item, WorkerEvents):
                (written if item.written else unwritten).extend(item.events)
                paths.extend(item.paths)
                continue
            self._inflight.discard(item.request.dispatch_id)
            if isinstance(item.result, NotStarted):
                continue  # held back by a stop: still open, a resume redelivers it
            if isinstance(item.result, BaseException):
                pool_broke = pool_broke or isinstance(item.result, WorkerPoolError)
                unwritten.extend(self._runtime_failed(item.request, item.result))
            else:
                written.extend(item.result.events)
                paths.extend(item.result.paths)
        self._fold(written, paths)
        if pool_broke:  # its workers may have died between a ledger write and its report
            self._scan_ledger(force=True)
        self._append(unwritten)
        for event in unwritten:
            payload = event.payload
            if isinstance(payload, ev.TaskFinished) and payload.retryable:
                RETRIES.labels(payload.error_type or "unknown").inc()

    def _runtime_failed(self, request: TaskRequest, error: BaseException) -> list[ev.Event]:
        """The runtime could not report (a ledger write failed, a worker died): redeliver;
        as `pool_lost` (free) when its pool broke under it, else `worker_lost` (counted)."""
        pool_lost = isinstance(error, PoolLostError)
        reason = ev.AbandonReason.POOL_LOST if pool_lost else ev.AbandonReason.WORKER_LOST
        (log.warning if pool_lost else log.error)(
            "runner.runtime_failed",
            run_id=request.run_id,
            task_key=request.task_key,
            attempt_id=request.attempt_id,
            reason=reason,
            error_type=type(error).__name__,
            error=str(error),
            **self._scope(),
        )
        RUNTIME_FAILURES.labels(reason).inc()
        detail = str(error) if isinstance(error, WorkerPoolError) else None
        return [self._abandon(request.run_id, request.task_key, request.attempt,
                              request.attempt_id, reason, detail)]  # fmt: skip

    def _abandon(
        self, run_id: str, task_key: str, attempt: int, attempt_id: str,
        reason: ev.AbandonReason, detail: str | None = None,
    ) -> ev.Event:  # fmt: skip
        return ev.Event.new(
            ev.AttemptAbandoned(reason=reason, detail=detail),
            run_id=run_id,
            task_key=task_key,
            attempt=attempt,
            attempt_id=attempt_id,
            emitted_at=self._clock(),
            **self._scope(),
        )

    # --------------------------------------------------------------- recovery
    def _recover(self) -> None:
        if self._recovered:
            return
        self._recovered = True
        self._scan_ledger(force=True)

    def _scan_ledger(self, *, force: bool = False) -> None:
        """Fold ledger objects the state may not reflect (liveness; lists the ledger)."""
        now = time.monotonic()
        if not force and now - self._last_scan < self.options.ledger_scan_interval_s:
            return
        self._last_scan = now
        paths = self.compactor.unfolded_paths()
        if paths:
            log.info("runner.recovering", paths=len(paths), **self._scope())
            self._fold(LedgerReader(self._store).read_many(paths), paths)
            if force:
                self._publish(force=True)

    def _abandon_orphans(self, run_id: str) -> None:
        """End attempts of `run_id` that no worker of this runner holds."""
        events = []
        for task in self.state.tasks_of(run_id):
            if task.status not in (s.DISPATCHED, s.RUNNING) or task.attempt_id is None:
                continue
            if self._dispatch_id(run_id, task) in self._inflight:
                continue
            events.append(
                self._abandon(
                    run_id,
                    task.task_key,
                    task.attempt,
                    task.attempt_id,
                    ev.AbandonReason.WORKER_LOST,
                )
            )
        if events:
            FINDINGS.labels("orphaned_attempt").inc(len(events))
            log.info(  # expected after a stop or a crash: resuming is the recovery
                "runner.orphaned_attempts", run_id=run_id, count=len(events), **self._scope()
            )
            self._append(events)
            self._flush()

    def _arm_timers(self, run_id: str) -> None:
        """Hand the run's scheduled timers to the wheel (after a restart, too)."""
        for timer in self.state.tables["timers"].values():
            if timer.run_id == run_id and timer.status == s.TIMER_SCHEDULED:
                self._wheel.schedule(timer.timer_id, timer.due_at)

    def _poll_cancel(self, run_id: str) -> None:
        """Fold a cancel request another process wrote for `run_id`."""
        run = self.state.run(run_id)
        if run is None or run.cancel_requested_at is not None:
            return
        path = self._ledger.path_for(cancel_path(run_id))
        if self._store.head(path) is None:
            return
        try:
            self._fold(LedgerReader(self._store).read(path))
        except ObjectNotFoundError:  # pragma: no cover - deleted between head and get
            return

    # ------------------------------------------------------------- controllers
    def _dispatch_id(self, run_id: str, task: s.TaskRow) -> str:
        return dispatch_id(
            self.options.tenant_id, self.options.workspace_id, run_id, task.task_key, task.attempt
        )

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

    def _control(self, run_id: str, *, dispatch: bool = True) -> None:
        state = self.state
        now = self._clock()
        scope = self._scope()
        run = state.run(run_id)
        assert run is not None
        events: list[ev.Event] = []
        if run.cancel_requested_at is not None:
            abandoned = abandon_cancelled(state.tasks_of(run_id), now=now, **scope)
            for event in abandoned:
                assert event.attempt_id is not None
                self._dispatcher.stop(event.attempt_id, "cancelled")
            self._append(abandoned)
        due_ids = self._wheel.pop_due(now)
        timers = state.tables["timers"]
        decisions = fire_due_timers(
            (row for tid in due_ids if (row := timers.get((tid,))) is not None),
            state.task,
            now=now,
            watermark=self._drained_at,
            settings=self._timer_settings,
            **scope,
        )
        for lagging in decisions.lagging:
            self._wheel.schedule(lagging.timer_id, now + _LAG_RETRY_US)
        for attempt_id, reason in decisions.stop:
            self._dispatcher.stop(attempt_id, reason)
        events.extend(decisions.events)
        self._append(events)
        for event in decisions.events:
            if isinstance(event.payload, ev.TimerFired) and event.task_key is not None:
                self._pending.add((event.run_id, event.task_key))  # may need its next timer
        tasks = self._changed(run_id)
        follow_ups = request_timers(
            tasks,
            lambda tid: timers.get((tid,)),
            now=now,
            settings=self._timer_settings,
            **scope,
        )
        if dispatch:  # stopping: READY tasks stay READY for the resume
            follow_ups.extend(
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
        self._append(follow_ups)

    def _dispatch(self, run_id: str) -> None:
        state = self.state
        enqueued = []
        for task in self._changed(run_id):
            if task.status in (s.READY, s.RETRY_WAIT):
                continue  # the controllers act on it next
            if task.status != s.RUNNING:
                self._pending.discard((task.run_id, task.task_key))
            if task.status != s.DISPATCHED:
                continue
            did = self._dispatch_id(run_id, task)
            row = state.outbox(did)
            if row is None or row.status != s.OUTBOX_PENDING or did in self._inflight:
                continue
            request = self._request(run_id, task, row)
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

    def _request(self, run_id: str, task: s.TaskRow, row: s.OutboxRow) -> TaskRequest:
        state = self.state
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
        return build_request(
            self.options.tenant_id,
            self.options.workspace_id,
            row,
            task,
            upstream,
            data_deps,
            self._defs.source,
            reusable_attempt_ids(state.attempts_of(run_id, task.task_key), row.attempt),
        )

    def _maybe_sweep(self, run_id: str) -> None:
        """Periodically: a cancel written elsewhere, stuck work, unfolded ledger objects."""
        now_mono = time.monotonic()
        if now_mono - self._last_sweep < self.options.sweep_interval_s:
            return
        self._last_sweep = now_mono
        self._poll_cancel(run_id)
        self._scan_ledger()
        state = self.state
        found = sweep(
            state.tasks_of(run_id),
            (t for t in state.tables["timers"].values() if t.run_id == run_id),
            state.outbox,
            inflight=self._inflight,
            delivering=self._wheel,
            now=self._clock(),
            settings=self.options.sweep,
            **self._scope(),
        )
        if not found.findings:
            return
        log.warning("runner.anti_entropy", run_id=run_id, findings=dict(found.findings),
                    **self._scope())  # fmt: skip
        self._pending.update((t.run_id, t.task_key) for t in found.ready)
        self._pending.update((r.run_id, r.task_key) for r in found.redispatch)
        for timer in found.timers:
            self._wheel.schedule(timer.timer_id, timer.due_at)
        self._append(found.events)

    # ---------------------------------------------------------------- publish
    def _publish(self, *, force: bool) -> None:
        elapsed = time.monotonic() - self._last_publish
        interval = self.options.publish_interval_s
        if not force and elapsed < _MAX_PUBLISH_DELAY * interval:
            if elapsed < interval:
                return
            due = self._wheel.next_due()
            if due is not None and due - self._clock() < _TIMER_HORIZON_US:
                return  # a timer is about to fire: publish after it, not in its way
        if force or elapsed >= interval:
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

    def _wait_timeout(self) -> float:
        """How long to wait for reports: until a timer is due, a sweep, or a publish."""
        timeout = min(self.options.publish_interval_s, self.options.sweep_interval_s)
        due = self._wheel.next_due()
        if due is not None:
            timeout = min(timeout, max(0.0, (due - self._clock()) / 1_000_000))
        if self._stop_deadline is not None:
            timeout = min(timeout, max(0.0, self._stop_deadline - time.monotonic()))
        return max(timeout, 0.0005)


def _counts(tasks: list[s.TaskRow]) -> tuple[int, ...]:
    statuses = [t.status for t in tasks]
    kinds = (s.SUCCEEDED, s.FAILED, s.SKIPPED, s.RUNNING, s.DISPATCHED, s.CANCELLED, s.RETRY_WAIT)
    return tuple(statuses.count(st) for st in kinds)
