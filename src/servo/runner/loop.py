"""The embedded runner: one process plans runs, drives them and runs their tasks.

It owns an inbox (`servo.runner.inbox`), a local pool behind the `Dispatcher`
protocol and a timer wheel; the engine's work is the reconcile step
(`servo.engine.reconcile`), which every mode shares. Each turn of the loop:

1. takes what workers reported (waiting until a timer is due, a sweep or a publish);
2. calls the step with it, the due timers and the dispatch outcomes of the last turn;
   the step writes its events to the ledger before it returns any effect;
3. applies the effects: attempts to stop, requests to enqueue, timers to arm
   (`servo.runner.outbox`);
   reports that call for no prompt decision (an attempt started, a heartbeat, an
   attempt left the pool, or while the pool holds a backlog a success) are gathered
   for up to `GATHER_S` more, so a burst becomes one step and one ledger batch
   while a chain step (upstream finished -> downstream dispatched) is not delayed;
4. every `sweep_interval_s` the step also looks for stuck work and the runner for a
   cancel request written by another process (a sweep that examined many tasks spaces
   the next one by `SWEEP_SPACING_PER_TASK_S` per task, so on a huge run the sweep
   stays about 2 % of the work instead of growing with the run's size); every
   `publish_interval_s`, and when the run ends, the step publishes
   (`servo.runner.publishing`).

Taking over after a crash is `servo.runner.recovery`; planning a run is
`servo.runner.planning`.

Stopping (ADR 0011): after `request_stop(grace_s)` (signal-handler safe) nothing more
is dispatched, running attempts get `grace_s`, the state is written and published, and
`wait` returns the run RUNNING with `interrupted` set; the next `wait` gives attempts
left running up as `worker_lost`. With `RunnerOptions.lock_dir`, `wait` holds the run's
lock (`servo.engine.run_lock`) and refuses a run another live process drives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import structlog

from servo.dispatch.local import LocalPoolDispatcher
from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.cancellation import request_cancel
from servo.engine.compactor import Compactor
from servo.engine.controllers.run import Materialization
from servo.engine.controllers.timers import TimerSettings
from servo.engine.effects import Dispatcher
from servo.engine.fold import EngineState
from servo.engine.ids import new_ulid, now_us
from servo.engine.ledger import LedgerWriter
from servo.engine.reconcile import Holding, Inputs, Reconciler
from servo.engine.report import Report
from servo.engine.run_lock import RunLock, lock_path
from servo.engine.snapshot import PublishListener
from servo.errors import EngineError
from servo.observability.logging import get_logger
from servo.runner import planning, recovery
from servo.runner.inbox import MAX_TAKE, Inbox, QueueSink, Taken, attempt_ended
from servo.runner.options import Progress, RunnerOptions, RunStart
from servo.runner.outbox import OutboxPump
from servo.runner.publishing import Publishing
from servo.runner.requests import request_builder
from servo.runner.timer_wheel import TimerWheel
from servo.storage.base import ObjectStore
from servo.worker.runtime import TaskRuntime

if TYPE_CHECKING:
    from servo.sdk.definitions import Definitions

log = get_logger(__name__)

#: Longest a turn gathers reports that call for no prompt decision (see the module
#: docstring); capped by the time to the next due timer, sweep or publish.
GATHER_S = 0.005
#: Events whose fold decides nothing that cannot wait `GATHER_S`.
_PATIENT = (ev.TaskStarted, ev.TaskHeartbeat)
#: Attempts held per pool slot beyond which a success dispatches nothing that would
#: start sooner (what it makes ready queues behind the backlog anyway).
_BACKLOG_PER_SLOT = 2
#: Seconds of spacing per task a sweep examined: a sweep costs about 1 µs a task, so
#: 50 µs keeps it near 2 % of the loop (100,000 tasks in flight: a sweep every 5 s;
#: the sweep's own deadlines are 5 s and more, so nothing stuck waits much longer).
SWEEP_SPACING_PER_TASK_S = 50e-6

_COUNTED = (s.SUCCEEDED, s.FAILED, s.SKIPPED, s.RUNNING, s.DISPATCHED, s.CANCELLED, s.RETRY_WAIT)


class Pool(Dispatcher, Protocol):
    """A dispatcher whose workers live in this process's care."""

    def hold(self) -> None:
        """Start nothing more; what has not started ends as not started."""
        ...

    def close(self, timeout_s: float | None = None) -> None:
        """Stop the pool; attempts still running after `timeout_s` are left behind."""
        ...


class EmbeddedRunner:
    """Runs assets in this process; see the module docstring.

    Args:
        store: where the ledger, projections and values live.
        defs: the definitions runs are planned from and tasks run.
        options: how it runs.
        clock: now, in epoch µs (a manual clock in tests).
        new_id: fresh run, attempt and event ids.
        monotonic: seconds for intervals (sweeps, publishes, a stop's grace period).
        pool: a pool to use instead of the local one `options` describe; it reports
            to `inbox`.
    """

    def __init__(
        self,
        store: ObjectStore,
        defs: Definitions,
        options: RunnerOptions | None = None,
        *,
        clock: Callable[[], int] = now_us,
        new_id: Callable[[], str] = new_ulid,
        monotonic: Callable[[], float] = time.monotonic,
        pool: Pool | None = None,
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
        self._new_id = new_id
        self._monotonic = monotonic
        tenant, workspace = options.tenant_id, options.workspace_id
        self.compactor = Compactor(
            store, tenant, workspace, clock=clock, max_l0_files=options.max_l0_files, archive=True
        )
        self._ledger = LedgerWriter(store, tenant, workspace)
        self.inbox = Inbox(clock, new_id)
        self.pool = pool if pool is not None else self._local_pool()
        self._wheel = TimerWheel()
        self._pump = OutboxPump(self.pool, self._wheel, clock=clock, new_id=new_id)
        self._reconciler = Reconciler(
            self.compactor,
            self._ledger,
            request_builder(defs, tenant, workspace),
            clock=clock,
            new_id=new_id,
            timers=TimerSettings(int(options.heartbeat_timeout_s * 1_000_000)),
            sweep_settings=options.sweep,
        )
        self._publishing = Publishing(options.publish_interval_s, monotonic=monotonic)
        self._recovered = False
        #: Runs the close archived that `state` restores when read afterwards.
        self._released: set[str] = set()
        self._last_sweep = 0.0
        self._sweep_spacing = options.sweep_interval_s
        self._last_scan = 0.0
        self._stop_deadline: float | None = None
        self._interrupted = False
        self._left_running = 0

    def _local_pool(self) -> LocalPoolDispatcher:
        options, inbox = self.options, self.inbox
        runtime = TaskRuntime(
            self._store,
            self._defs,
            worker_id=f"embedded-{self._new_id()}",
            sink=QueueSink(inbox),
            clock=self._clock,
            heartbeat_interval_s=options.heartbeat_interval_s,
            records_in_ledger=True,  # only this pool's threads use it (ADR 0023)
        )
        return LocalPoolDispatcher(
            runtime,
            lambda request, result: inbox.put(attempt_ended(request, result)),
            concurrency=options.concurrency,
            mode=options.pool,
            process_spec=options.process_spec,
            on_events=lambda events, paths: inbox.put(
                Report(tuple(events), written=True, paths=tuple(paths))
            ),
        )

    # ------------------------------------------------------------------ public
    @property
    def state(self) -> EngineState:
        """The folded state (possibly ahead of the published projections)."""
        self._recover()
        if self._released:  # read after the close: this runner's runs, as they ended
            released, self._released = self._released, set()
            for run_id in sorted(released):
                self.compactor.retain(run_id)
        return self.compactor.state

    def run_record(self, run_id: str) -> tuple[s.RunRow, list[s.TaskRow]] | None:
        """A run and its tasks, whether in the hot state or archived; None if unknown."""
        self._recover()
        return self.compactor.run_record(run_id)

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
        start = planning.start_run(
            self._store,
            self.compactor,
            self._defs,
            selection=selection,
            idempotency_key=idempotency_key,
            upstream=upstream,
            clock=self._clock,
            new_id=self._new_id,
        )
        self.compactor.retain(start.run_id)  # readable from `state` until the runner closes
        return start

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
        deadline = self._monotonic() + max(0.0, grace_s)
        current = self._stop_deadline
        if current is None or deadline < current:
            self._stop_deadline = deadline
        self.inbox.wake()

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
            LedgerWriteError: the run's events could not be written (it stopped).
        """
        self._recover()
        self.compactor.retain(run_id)  # back from the history if it was archived
        if self.state.run(run_id) is None:
            scope = f"{self.options.tenant_id}/{self.options.workspace_id}"
            raise EngineError(f"no run {run_id} in {scope}")
        lock = None
        if (locks := self.options.lock_dir) is not None:
            tenant, workspace = self.options.tenant_id, self.options.workspace_id
            lock = RunLock(lock_path(locks, tenant, workspace, run_id))
            if not lock.try_acquire():
                log.info("runner.run_busy", run_id=run_id, holder_pid=lock.holder_pid())
                lock.acquire(run_id)  # RunBusyError naming the holder (unless just freed)
        try:
            with structlog.contextvars.bound_contextvars(
                tenant_id=self.options.tenant_id,
                workspace_id=self.options.workspace_id,
                run_id=run_id,
            ):
                return self._drive(run_id, on_progress)
        finally:
            if lock is not None:
                lock.release()

    def begin(self, run_id: str) -> None:
        """Take the run over (what `wait` does before its loop): fold a cancel written
        elsewhere, give up attempts no worker here holds, arm the run's timers."""
        self._interrupted, self._left_running = False, 0
        self.compactor.retain(run_id)
        self._poll_cancel(run_id)
        orphans = recovery.orphans(
            self.state, run_id, self._pump.held, now=self._clock(), new_id=self._new_id
        )
        self._step(Inputs(reported=orphans, run_id=run_id, dispatch=False))
        for timer_id, due_at in recovery.scheduled_timers(self.state, run_id):
            self._wheel.schedule(timer_id, due_at)

    def turn(self, run_id: str, wait_s: float = 0.0, *, sweep: bool = False) -> s.RunRow:
        """One turn of the loop (see the module docstring); returns the run's row.

        Args:
            wait_s: how long to wait for the first report.
            sweep: sweep now, whenever the last sweep was.
        """
        taken = self._gather(self.inbox.take(wait_s))
        now = self._clock()  # the step acts as of this wake-up
        self._pump.ended(taken.ended)
        written, paths = taken.written, taken.paths
        if taken.pool_broke:  # its workers may have died between a write and a report
            found, found_paths = recovery.unfolded(self._store, self.compactor)
            written, paths = [*written, *found], [*paths, *found_paths]
        stopping = self._stop_deadline is not None
        if stopping:
            self.pool.hold()
        sweeping = not stopping and (sweep or self._sweep_due())  # stopping: READY waits
        next_due = self._wheel.next_due()
        self._step(
            Inputs(
                written=written,
                paths=paths,
                reported=taken.reported,
                due=self._wheel.pop_due(now),
                fresh_at=self.inbox.fresh_at,
                run_id=run_id,
                dispatch=not stopping,
                sweep=Holding(self._pump.held, self._wheel) if sweeping else None,
                publish=self._publishing.due(None if next_due is None else next_due - now),
                now=now,
            )
        )
        if sweeping:  # after the step, so this I/O never delays a due timer
            self._poll_cancel(run_id)
            if sweep or self._scan_due():
                found, found_paths = recovery.unfolded(self._store, self.compactor)
                if found or found_paths:
                    self.compactor.fold(found, paths=found_paths)
        run = self.state.run(run_id)
        assert run is not None
        return run

    def add_publish_listener(self, listener: PublishListener) -> None:
        """Call `listener` with every snapshot published from now on.

        A listener that raises is logged and counted; the run goes on (listeners feed
        read models, which catch up from the next snapshot).
        """
        self._publishing.listeners.append(listener)

    def publish(self) -> None:
        """Write what is folded and publish it now."""
        self._reconciler.flush(
            self._pump.take_outcomes(), publish=True, fresh_at=self.inbox.fresh_at
        )
        self._publishing.published(self.compactor.snapshot)

    def close(self) -> None:
        """Publish what is folded and stop the pool.

        After an interrupted `wait` that left attempts running, they are left behind
        at once (their grace period has passed; a resume redelivers them).
        """
        try:
            if self._recovered and self._reconciler.halted is None:
                # Archive the runs this runner kept readable: the next runner of the
                # home then loads only active work (ADR 0022). `state` brings them
                # back if it is read after the close.
                self._released = self.compactor.release()
                self.publish()
        finally:
            self.pool.close(0.0 if self._left_running else None)

    def __enter__(self) -> EmbeddedRunner:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -------------------------------------------------------------------- loop
    def _drive(self, run_id: str, on_progress: Progress | None) -> s.RunRow:
        self.begin(run_id)
        last_seen: tuple[int, ...] = ()
        wait_s = 0.0
        while True:
            run = self.turn(run_id, wait_s)
            if on_progress is not None:
                counts = self.state.status_counts(run_id)
                seen = tuple(counts.get(status, 0) for status in _COUNTED)
                if seen != last_seen:
                    last_seen = seen
                    on_progress(run, dict(counts))
            if run.status != s.RUN_RUNNING:
                self.publish()
                return run
            if self._stop_deadline is not None and self._stopped(run_id):
                return run
            wait_s = self._wait_timeout()

    def _gather(self, taken: Taken) -> Taken:
        """Add reports arriving within `GATHER_S` while none of those taken is urgent."""
        if taken.count == 0 or self._stop_asked():
            return taken  # a timer, sweep or publish is due, or a stop was asked
        until = time.monotonic() + min(GATHER_S, self._wait_timeout())
        while taken.count < MAX_TAKE and not self._urgent(taken):
            if self._stop_asked():  # asked while gathering (another thread)
                break
            left = until - time.monotonic()
            if left <= 0:
                break
            before = taken.count
            self.inbox.take(left, into=taken, limit=MAX_TAKE - taken.count)
            if taken.count == before:
                break
        return taken

    def _stop_asked(self) -> bool:
        return self._stop_deadline is not None

    def _urgent(self, taken: Taken) -> bool:
        """Whether `taken` holds a report whose step should not wait (module docstring)."""
        if taken.pool_broke:
            return True
        backlog = len(self._pump.held) > _BACKLOG_PER_SLOT * self.options.concurrency
        for events in (taken.written, taken.reported):
            for event in events:
                payload = event.payload
                if isinstance(payload, _PATIENT):
                    continue
                if backlog and isinstance(payload, ev.TaskFinished) and payload.output:
                    continue
                return True
        return False

    def _step(self, inputs: Inputs) -> None:
        """One reconcile step with this turn's dispatch outcomes; apply its effects."""
        outcomes = self._pump.take_outcomes()
        if outcomes:
            inputs = replace(inputs, reported=[*outcomes, *inputs.reported])
        effects = self._reconciler.step(inputs)
        if effects.swept:
            self._sweep_spacing = max(
                self.options.sweep_interval_s, effects.swept * SWEEP_SPACING_PER_TASK_S
            )
        self._pump.apply(effects)
        if effects.published:
            self._publishing.published(self.compactor.snapshot)

    def _stopped(self, run_id: str) -> bool:
        """After a stop request: True (state written and published) once nothing runs
        here any more or the grace period has passed."""
        deadline = self._stop_deadline
        assert deadline is not None
        if self._pump.held and self._monotonic() < deadline:
            return False
        self.publish()
        self._interrupted = True
        self._left_running = left = len(self._pump.held)
        log.info("runner.stopped", run_id=run_id, left_running=left)
        return True

    def _wait_timeout(self) -> float:
        """How long to wait for reports: until a timer is due, a sweep, or a publish."""
        timeout = min(self._publishing.interval_s, self._sweep_spacing)
        due = self._wheel.next_due()
        if due is not None:
            timeout = min(timeout, max(0.0, (due - self._clock()) / 1_000_000))
        if self._stop_deadline is not None:
            timeout = min(timeout, max(0.0, self._stop_deadline - self._monotonic()))
        return max(timeout, 0.0005)

    def _sweep_due(self) -> bool:
        now = self._monotonic()
        if now - self._last_sweep < self._sweep_spacing:
            return False
        self._last_sweep = now
        return True

    def _scan_due(self) -> bool:
        now = self._monotonic()
        if now - self._last_scan < self.options.ledger_scan_interval_s:
            return False
        self._last_scan = now
        return True

    # ---------------------------------------------------------------- recovery
    def _recover(self) -> None:
        """Once: fold the ledger objects the last manifest may not reflect."""
        if self._recovered:
            return
        self._recovered = True
        self._last_scan = self._monotonic()
        events, paths = recovery.unfolded(self._store, self.compactor)
        if events or paths:
            self.compactor.fold(events, paths=paths)
            self.publish()

    def _poll_cancel(self, run_id: str) -> None:
        """Fold a cancel request another process wrote for `run_id`."""
        found = recovery.cancel_request(self._store, self._ledger, self.compactor.state, run_id)
        if found is not None:
            events, path = found
            self.compactor.fold(events, paths=[path])
