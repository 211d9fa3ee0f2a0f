"""The reconcile step: one pass of the engine over one tenant/workspace.

Every mode calls it — the embedded runner's loop, an HTTP handler woken by a worker
report or a timer, a Celery task — and applies what it returns. One step:

1. folds the events it is given: those already in the ledger (`Inputs.written`, in
   the objects `Inputs.paths`) and those reported but not yet written
   (`Inputs.reported`: a thread worker's events, a dispatch outcome, the end of an
   attempt whose worker died);
2. runs the pure controllers on the tasks that changed (the state's change feed):
   a cancelled run's open attempts are abandoned, due timers fire once the state is
   fresh enough (`Inputs.fresh_at`), READY tasks are dispatched, running and waiting
   tasks get their timers, and, when asked, the anti-entropy sweep looks for stuck
   work;
3. writes every event it folded and that was not in the ledger as ONE create-only
   batch, and only then
4. publishes the projections when asked (compare-and-swap), and
5. returns the `Effects`: requests to enqueue, attempts to stop, timers to arm.

A failed write raises `LedgerWriteError` and returns nothing: the events are dropped
from the folded state, so no effect of an event that is not durable can be applied
— not by this call, and not by any later one (the step refuses to go on).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field

from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.anti_entropy import SweepSettings, sweep
from servo.engine.changes import ChangeFeed
from servo.engine.compactor import Compactor
from servo.engine.controllers.ready import dispatch_ready
from servo.engine.controllers.timers import (
    TimerSettings,
    abandon_cancelled,
    fire_due_timers,
    request_timers,
)
from servo.engine.effects import Effects
from servo.engine.fold import EngineState
from servo.engine.ids import dispatch_id
from servo.engine.ledger import LedgerWriter
from servo.engine.recovery import FINDINGS
from servo.engine.request import TaskRequest
from servo.engine.schema import OutboxRow, TaskRow
from servo.engine.vocabulary import AbandonReason
from servo.errors import LedgerWriteError, StorageError
from servo.observability import metrics
from servo.observability.logging import get_logger

log = get_logger(__name__)

TaskId = tuple[str, str]
#: Builds the request of a PENDING outbox row (inputs, definitions source).
RequestFor = Callable[[EngineState, TaskRow, OutboxRow], TaskRequest]

TIMERS_SCHEDULED = metrics.counter("servo_timers_scheduled_total", "Timers requested.", ["kind"])
TIMERS_FIRED = metrics.counter("servo_timers_fired_total", "Timers fired.", ["kind"])
TIMERS_RESCHEDULED = metrics.counter(
    "servo_timers_rescheduled_total",
    "Due timers held back because the projection lagged behind their due time.",
    ["kind"],
)
ATTEMPTS_TIMED_OUT = metrics.counter(
    "servo_attempts_timed_out_total", "Attempts ended by the engine.", ["reason"]
)
RETRIES = metrics.counter(
    "servo_task_retries_total", "Attempts that failed and will be retried.", ["error_type"]
)
WRITE_HALTS = metrics.counter(
    "servo_runner_ledger_write_halts_total",
    "Runs stopped because their events could not be written to the ledger.",
)

#: Least microseconds after which a timer held back for a lagging watermark is
#: delivered again (in one process the backlog that held it back is taken at once).
LAG_RETRY_US = 1_000


@dataclass(frozen=True, slots=True)
class Holding:
    """What the caller's backends hold, so the sweep does not call it stuck.

    Attributes:
        inflight: dispatch ids of attempts handed to workers and not ended.
        delivering: ids of timers the timer delivery will deliver.
        listening_since: since when (epoch µs) the caller has been receiving
            reports; an attempt's start deadline runs from then at the earliest, as
            reports made while nobody listened may still wait in a queue.
    """

    inflight: Container[str] = ()
    delivering: Container[str] = ()
    listening_since: int = 0


@dataclass(frozen=True, slots=True)
class Inputs:
    """What one step takes.

    Attributes:
        written: events already in the ledger...
        paths: ...in these ledger objects (acknowledged once folded).
        reported: events not yet in the ledger (the step writes them).
        due: ids of timers the timer delivery says are due.
        fresh_at: every report made before this instant (epoch µs) is folded: the
            watermark due timers are judged against, and the publish's.
        run_id: act on this run only (the embedded runner drives one); None: all.
        dispatch: False while stopping: READY tasks stay READY for a resume.
        sweep: look for stuck work, given what the caller holds.
        publish: publish the projections after the write.
        now: when (epoch µs) the inputs were taken, so a timer fires as of the
            moment its delivery woke the caller; the step's clock if None.
        report_lag_us: how far `fresh_at` trails the clock when reports cross a queue
            (scale-out modes): a timer held back for the watermark is delivered again
            at its due time plus this lag, not in a tight loop.
    """

    written: Sequence[ev.Event] = ()
    paths: Sequence[str] = ()
    reported: Sequence[ev.Event] = ()
    due: Sequence[str] = ()
    fresh_at: int = 0
    run_id: str | None = None
    dispatch: bool = True
    sweep: Holding | None = None
    publish: bool = False
    now: int | None = None
    report_lag_us: int = 0


@dataclass(slots=True)
class _Step:
    """What one step folded and must write, and what it will ask for."""

    unwritten: list[ev.Event] = field(default_factory=list)
    effects: Effects = field(default_factory=Effects)


class Reconciler:
    """Runs reconcile steps for one tenant/workspace; see the module docstring.

    Args:
        compactor: holds the folded state and publishes it.
        ledger: where the step's events are written.
        request_for: builds the request of a PENDING outbox row.
        clock: now, in epoch µs.
        new_id: fresh event and attempt ids.
        timers: timing rules of the timer controller.
        sweep_settings: deadlines of the anti-entropy sweep.
    """

    def __init__(
        self,
        compactor: Compactor,
        ledger: LedgerWriter,
        request_for: RequestFor,
        *,
        clock: Callable[[], int],
        new_id: Callable[[], str],
        timers: TimerSettings,
        sweep_settings: SweepSettings,
    ) -> None:
        self.compactor = compactor
        self._ledger = ledger
        self._request_for = request_for
        self._clock = clock
        self._new_id = new_id
        self._timers = timers
        self._sweep = sweep_settings
        self._scope = {"tenant_id": compactor.tenant_id, "workspace_id": compactor.workspace_id}
        self._feed: tuple[EngineState, str | None, ChangeFeed] | None = None
        self._held: dict[TaskId, None] = {}  # READY tasks a stop held back
        self._halted: LedgerWriteError | None = None

    @property
    def state(self) -> EngineState:
        """The folded state (possibly ahead of the published projections)."""
        return self.compactor.state

    @property
    def halted(self) -> LedgerWriteError | None:
        """Why the step refuses to go on (a failed ledger write), or None."""
        return self._halted

    def step(self, inputs: Inputs) -> Effects:
        """One reconcile step; see the module docstring.

        Raises:
            LedgerWriteError: the events could not be written (now or before).
            ManifestConflictError: the publish lost its race too often (the events
                are written; the next publish makes them visible).
        """
        if self._halted is not None:
            raise self._halted
        now = self._clock() if inputs.now is None else inputs.now
        compactor = self.compactor
        if inputs.written or inputs.paths:
            compactor.fold(inputs.written, paths=inputs.paths)
        step = _Step()
        self._fold(step, list(inputs.reported))
        self._count_retries([*inputs.written, *inputs.reported])
        changed, runs = self._changed(inputs.run_id)
        self._cancel(step, [inputs.run_id] if inputs.run_id is not None else runs, now)
        self._fire(step, inputs, now)
        if len(step.unwritten) > len(inputs.reported):  # the cancel or a timer acted
            changed.update(self._changed(inputs.run_id)[0])
        if inputs.sweep is not None:
            self._sweep_run(step, changed, inputs.run_id, inputs.sweep, now)
        tasks = [t for tid in changed if (t := self.state.task(*tid)) is not None]
        follow_ups = request_timers(
            tasks, self.state.timer, now=now, settings=self._timers, new_id=self._new_id,
            **self._scope,
        )  # fmt: skip
        for event in follow_ups:
            assert isinstance(event.payload, ev.TimerRequested)
            TIMERS_SCHEDULED.labels(event.payload.kind).inc()
        if inputs.dispatch:
            follow_ups.extend(dispatch_ready(tasks, now=now, new_id=self._new_id, **self._scope))
            self._held.clear()
        else:
            self._held.update(((t.run_id, t.task_key), None) for t in tasks if t.status == s.READY)
        if follow_ups:
            self._fold(step, follow_ups)
            changed.update(self._changed(inputs.run_id)[0])
        self._write(step.unwritten)
        self._arm_requested(step)
        self._outbox(step, changed)
        if inputs.publish:
            compactor.publish(taken_at=inputs.fresh_at or now)
            step.effects.published = True
        return step.effects

    def flush(self, reported: Sequence[ev.Event], *, publish: bool, fresh_at: int = 0) -> None:
        """Fold and write `reported` (no controllers run) and publish when asked.

        Raises:
            LedgerWriteError: as `step`.
        """
        if self._halted is not None:
            raise self._halted
        step = _Step()
        self._fold(step, list(reported))
        self._write(step.unwritten)
        if publish:
            self.compactor.publish(taken_at=fresh_at or self._clock())

    # ---------------------------------------------------------------- folding
    def _fold(self, step: _Step, events: list[ev.Event]) -> None:
        if events:
            self.compactor.fold(events)
            step.unwritten.extend(events)

    def _changed(self, run_id: str | None) -> tuple[dict[TaskId, None], set[str]]:
        """Tasks that may need an action — those whose row or timers changed since the
        last call, or every task in scope when the state was (re)loaded — and the runs
        they or a changed run row belong to."""
        state = self.state
        watched = self._feed
        if watched is None or watched[0] is not state or watched[1] != run_id:
            self._feed = (state, run_id, state.follow())
            if run_id is not None:
                runs = {run_id}
            else:
                runs = {r.run_id for r in state.rows("runs") if r.status == s.RUN_RUNNING}
            tasks = {(t.run_id, t.task_key): None for r in runs for t in state.tasks_of(r)}
            return tasks, runs
        keys = watched[2].take()
        changed: dict[TaskId, None] = dict(self._held)
        for key in keys.get("tasks", ()):
            changed[key] = None
        for (timer_id,) in keys.get("timers", ()):
            timer = state.timer(timer_id)
            if timer is not None:
                changed[(timer.run_id, timer.task_key)] = None
        if run_id is not None:
            return {tid: None for tid in changed if tid[0] == run_id}, {run_id}
        return changed, {tid[0] for tid in changed} | {rid for (rid,) in keys.get("runs", ())}

    # ------------------------------------------------------------ controllers
    def _cancel(self, step: _Step, runs: Iterable[str], now: int) -> None:
        """Abandon the open attempts of cancelled runs and ask their workers to stop."""
        state = self.state
        for rid in runs:
            run = state.run(rid)
            if run is None or run.cancel_requested_at is None or run.status != s.RUN_RUNNING:
                continue
            abandoned = abandon_cancelled(
                state.tasks_of(rid), now=now, new_id=self._new_id, **self._scope
            )
            for event in abandoned:
                assert event.attempt_id is not None
                step.effects.stop.append((event.attempt_id, AbandonReason.CANCELLED))
            self._fold(step, abandoned)

    def _fire(self, step: _Step, inputs: Inputs, now: int) -> None:
        """Fire the due timers the state is fresh enough to judge; deliver the others
        again a little later."""
        if not inputs.due:
            return
        state = self.state
        due = []
        for timer_id in inputs.due:
            row = state.timer(timer_id)
            if row is None or row.status != s.TIMER_SCHEDULED:
                continue
            if row.due_at > now:  # delivered early (a clock stepped back): later
                step.effects.arm.append((row.timer_id, row.due_at))
            else:
                due.append(row)
        decisions = fire_due_timers(
            due,
            state.task,
            now=now,
            watermark=inputs.fresh_at,
            settings=self._timers,
            new_id=self._new_id,
            **self._scope,
        )
        for timer in decisions.lagging:
            TIMERS_RESCHEDULED.labels(timer.kind).inc()
            # Due again once a watermark trailing the clock by the lag passes it.
            again = max(now + LAG_RETRY_US, timer.due_at + inputs.report_lag_us)
            step.effects.arm.append((timer.timer_id, again))
        for timer in decisions.fired:
            TIMERS_FIRED.labels(timer.kind).inc()
        for _, reason in decisions.stop:
            ATTEMPTS_TIMED_OUT.labels(reason).inc()
        step.effects.stop.extend(decisions.stop)
        self._fold(step, decisions.events)

    def _sweep_run(
        self,
        step: _Step,
        changed: dict[TaskId, None],
        run_id: str | None,
        holding: Holding,
        now: int,
    ) -> None:
        """Look for stuck work (of `run_id`, or of every run) and drive it again."""
        state = self.state
        found = sweep(
            state.swept_tasks(run_id),
            state.timers_of_run(run_id) if run_id is not None else state.timers(),
            state.outbox,
            inflight=holding.inflight,
            delivering=holding.delivering,
            listening_since=holding.listening_since,
            now=now,
            settings=self._sweep,
            new_id=self._new_id,
            **self._scope,
        )
        step.effects.swept = found.examined
        if not found.findings:
            return
        for kind, count in found.findings.items():
            FINDINGS.labels(kind).inc(count)
        log.warning("reconcile.anti_entropy", run_id=run_id, findings=dict(found.findings))
        changed.update(((t.run_id, t.task_key), None) for t in found.ready)
        changed.update(((r.run_id, r.task_key), None) for r in found.redispatch)
        step.effects.arm.extend((t.timer_id, t.due_at) for t in found.timers)
        self._fold(step, found.events)

    def _count_retries(self, events: Iterable[ev.Event]) -> None:
        for event in events:
            payload = event.payload
            if isinstance(payload, ev.TaskFinished) and payload.retryable:
                RETRIES.labels(payload.error_type or "unknown").inc()

    # ------------------------------------------------------------------ write
    def _write(self, events: list[ev.Event]) -> None:
        """Write the step's events as one batch, or halt.

        Raises:
            LedgerWriteError: the write failed. The events are dropped from the folded
                state (which reloads from the last manifest), so nothing they caused is
                published or acted on.
        """
        if not events:
            return
        try:
            path = self._ledger.append(events)
        except StorageError as exc:
            self._halted = self._halt(events, exc)
            raise self._halted from exc
        self.compactor.acknowledge([path])

    def _halt(self, unwritten: list[ev.Event], exc: StorageError) -> LedgerWriteError:
        """Forget events that could not be written and say how to go on."""
        self.compactor.forget(unwritten)
        self._feed = None  # the state object is replaced: recompute what to act on
        runs = sorted({e.run_id for e in unwritten if e.run_id})
        WRITE_HALTS.inc()
        log.error(
            "reconcile.ledger_write_failed",
            run_id=runs[0] if len(runs) == 1 else None,
            events=len(unwritten),
            error_type=type(exc).__name__,
            error=str(exc),
            **self._scope,
        )
        resume = f"'servo runs resume {runs[0]}'" if len(runs) == 1 else "'servo runs resume'"
        return LedgerWriteError(
            f"could not write to the ledger: {exc}; the run stopped and nothing that "
            f"was not written is recorded; fix the store (e.g. free disk space), then "
            f"resume with {resume}"
        )

    # ---------------------------------------------------------------- effects
    def _arm_requested(self, step: _Step) -> None:
        """Timers requested by this step (now durable) are to be delivered."""
        state = self.state
        for event in step.unwritten:
            if isinstance(event.payload, ev.TimerRequested):
                row = state.timer(event.payload.timer_id)
                if row is not None and row.status == s.TIMER_SCHEDULED:
                    step.effects.arm.append((row.timer_id, row.due_at))

    def _outbox(self, step: _Step, changed: dict[TaskId, None]) -> None:
        """PENDING outbox rows of dispatched tasks are to be enqueued."""
        state = self.state
        tenant, workspace = self.compactor.tenant_id, self.compactor.workspace_id
        for tid in changed:
            task = state.task(*tid)
            if task is None or task.status != s.DISPATCHED:
                continue
            did = dispatch_id(tenant, workspace, task.run_id, task.task_key, task.attempt)
            row = state.outbox(did)
            if row is not None and row.status == s.OUTBOX_PENDING:
                step.effects.enqueue.append(self._request_for(state, task, row))
