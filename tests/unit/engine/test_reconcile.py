"""The reconcile step: effects only once their causes are in the ledger."""

from __future__ import annotations

import itertools

import pytest

from servo import Definitions, RetryPolicy, asset
from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.anti_entropy import SweepSettings
from servo.engine.compactor import Compactor
from servo.engine.controllers.run import plan_tasks
from servo.engine.controllers.timers import TimerSettings
from servo.engine.effects import Effects, EnqueueOutcome, apply_effects
from servo.engine.fold import EngineState
from servo.engine.ledger import LedgerReader, LedgerWriter
from servo.engine.reconcile import Inputs, Reconciler
from servo.engine.request import TaskRequest, build_request
from servo.engine.schema import OutboxRow, TaskRow
from servo.errors import LedgerWriteError, StorageError
from servo.graph import select
from servo.testing import MemoryObjectStore

TENANT = WORKSPACE = "default"


@asset(retry=RetryPolicy(max_attempts=3, initial_delay=1.0, jitter=0))
def source() -> int:
    return 1


@asset
def sink(source: int) -> int:
    return source + 1


DEFS = Definitions(assets=[source, sink])


class FailingLedger(MemoryObjectStore):
    """A store whose ledger writes fail while `failing` is set."""

    failing = False

    def put_if_absent(self, path: str, data: bytes) -> int:
        if self.failing and path.startswith("ledger/"):
            raise StorageError(f"disk full writing {path}")
        return super().put_if_absent(path, data)


class MicroClock:
    """A manual clock in epoch microseconds."""

    def __init__(self, start: int) -> None:
        self.now = start

    def now_us(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)


class Recorder:
    """A dispatcher and a timer delivery that remember what they were asked."""

    def __init__(self) -> None:
        self.enqueued: list[str] = []
        self.stopped: list[tuple[str, str]] = []
        self.armed: list[tuple[str, int]] = []

    def enqueue(self, request: TaskRequest) -> EnqueueOutcome:
        self.enqueued.append(request.dispatch_id)
        return EnqueueOutcome.CREATED

    def stop(self, attempt_id: str, reason: str = "stopped") -> bool:
        self.stopped.append((attempt_id, reason))
        return False

    def close(self) -> None:
        return None

    def schedule(self, timer_id: str, due_at: int) -> None:
        self.armed.append((timer_id, due_at))


def _request_for(state: EngineState, task: TaskRow, row: OutboxRow) -> TaskRequest:
    return build_request(TENANT, WORKSPACE, row, task, {}, (), None)


def _setup() -> tuple[FailingLedger, MicroClock, Reconciler]:
    store = FailingLedger()
    clock = MicroClock(1_000_000)
    counter = itertools.count()
    reconciler = Reconciler(
        Compactor(store, TENANT, WORKSPACE, clock=clock.now_us),
        LedgerWriter(store, TENANT, WORKSPACE),
        _request_for,
        clock=clock.now_us,
        new_id=lambda: f"01J{next(counter):023d}",
        timers=TimerSettings(),
        sweep_settings=SweepSettings(),
    )
    return store, clock, reconciler


def _requested(clock: MicroClock) -> ev.Event:
    tasks = plan_tasks(DEFS, select(DEFS.graph, "*"), {})
    return ev.Event(
        event_id="01JREQUEST0000000000000000", tenant_id=TENANT, workspace_id=WORKSPACE,
        run_id="run1", payload=ev.RunRequested(tasks=tasks), emitted_at=clock.now_us(),
    )  # fmt: skip


def _apply(effects: Effects, recorder: Recorder, clock: MicroClock) -> list[ev.Event]:
    return apply_effects(
        effects, recorder, recorder, now=clock.now_us(), new_id=lambda: "01JOUTCOME000000000000000"
    )


def _first_attempt_failed(reconciler: Reconciler, clock: MicroClock) -> ev.Event:
    """A retryable failure of `source`'s current attempt."""
    task = reconciler.state.task("run1", "source")
    assert task is not None and task.attempt_id is not None
    return ev.Event(
        event_id="01JFAILED00000000000000000", tenant_id=TENANT, workspace_id=WORKSPACE,
        run_id="run1", task_key="source", attempt=1, attempt_id=task.attempt_id,
        payload=ev.TaskFinished(outcome="failed", error_type="IOError", retryable=True),
        emitted_at=clock.now_us(),
    )  # fmt: skip


def test_a_failed_ledger_write_applies_no_effect_now_or_later() -> None:
    store, clock, reconciler = _setup()
    recorder = Recorder()
    store.failing = True
    with pytest.raises(LedgerWriteError, match="could not write to the ledger"):
        # The step would dispatch `source`: its DispatchRequested cannot be written.
        _apply(reconciler.step(Inputs(reported=[_requested(clock)])), recorder, clock)
    assert recorder.enqueued == [] and recorder.armed == [] and recorder.stopped == []
    assert reconciler.state.run("run1") is None, "an unwritten event stays out of the state"
    store.failing = False  # the store is fixed, but this step refuses to go on
    with pytest.raises(LedgerWriteError):
        reconciler.step(Inputs())
    assert recorder.enqueued == []


def test_effects_follow_only_what_the_ledger_holds() -> None:
    store, clock, reconciler = _setup()
    recorder = Recorder()
    effects = reconciler.step(Inputs(reported=[_requested(clock)]))
    written = [e for p in store.list_prefix("") if p.startswith("ledger/")
               for e in LedgerReader(store).read(p)]  # fmt: skip
    dispatched = {e.task_key for e in written if isinstance(e.payload, ev.DispatchRequested)}
    assert dispatched == {"source"}, "the dispatch is durable before it is enqueued"
    outcomes = _apply(effects, recorder, clock)
    assert len(recorder.enqueued) == 1 and len(outcomes) == 1
    # The outcome comes back through the next step, which records it.
    reconciler.step(Inputs(reported=outcomes))
    (row,) = [r for r in reconciler.state.rows("dispatch_outbox")]
    assert row.status == s.OUTBOX_ENQUEUED


def test_a_retry_timer_is_armed_only_once_written() -> None:
    store, clock, reconciler = _setup()
    recorder = Recorder()
    _apply(reconciler.step(Inputs(reported=[_requested(clock)])), recorder, clock)
    failed = _first_attempt_failed(reconciler, clock)
    store.failing = True
    with pytest.raises(LedgerWriteError):
        _apply(reconciler.step(Inputs(reported=[failed])), recorder, clock)
    assert recorder.armed == []


def test_a_timer_due_is_fired_once_and_its_effects_follow() -> None:
    _, clock, reconciler = _setup()
    recorder = Recorder()
    _apply(reconciler.step(Inputs(reported=[_requested(clock)])), recorder, clock)
    failed = _first_attempt_failed(reconciler, clock)
    _apply(reconciler.step(Inputs(reported=[failed])), recorder, clock)
    ((timer_id, due_at),) = recorder.armed
    assert due_at == clock.now_us() + 1_000_000  # the policy's initial delay
    clock.advance(2.0)
    fresh = clock.now_us()
    effects = reconciler.step(Inputs(due=[timer_id], fresh_at=fresh))
    assert [r.attempt for r in effects.enqueue] == [2]
    again = reconciler.step(Inputs(due=[timer_id], fresh_at=fresh))  # delivered twice
    assert again.enqueue == []
