"""Property: whatever the interleaving of timeouts, cancels, lost workers, late results,
redeliveries and retries, a task's recorded result comes from an attempt that returned
before the engine ended it for a timeout or a cancel.

A state machine drives the real worker runtime (result records, value writes) and the
real fold for one task with three attempts. Each step is one of: dispatch the next
attempt when the task is READY; run (or re-run: a redelivery) any dispatched attempt,
optionally with the engine ending it while its body runs; end the open attempt
(timeout, lost worker, missed heartbeat, cancel); fire the retry timer.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from servo import Definitions, RetryPolicy, asset
from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.controllers.run import plan_tasks
from servo.engine.derive import reusable_attempt_ids
from servo.engine.fold import EngineState
from servo.engine.ids import dispatch_id, new_ulid, timer_id
from servo.engine.request import TaskRequest, build_request
from servo.sdk.context import AssetContext
from servo.sdk.io import is_inline, read_value
from servo.storage.memory import MemoryObjectStore
from servo.worker.runtime import TaskRuntime

TENANT, WORKSPACE, RUN, TASK = "t", "w", "r1", "work"
ENGINE_ENDED = frozenset({"timeout", "cancelled"})


@dataclass
class Model:
    """What really happened, to judge the engine's record against."""

    now: itertools.count[int] = field(default_factory=lambda: itertools.count(1_000_000, 10))
    #: attempt_id -> why the engine ended it, if it did.
    ended: dict[str, str] = field(default_factory=dict)
    #: attempt_id -> the engine ends it while its body runs, on the next run.
    end_during_body: dict[str, str] = field(default_factory=dict)
    #: attempt number -> whether the body that wrote its value returned while the
    #: attempt was not ended for a timeout or cancel.
    legit_value: dict[int, bool] = field(default_factory=dict)
    runtime: Any = None
    machine: Any = None


class ResultReuse(RuleBasedStateMachine):
    #: The runtime's inline limit: 0 writes every value to a file (ADR 0021).
    inline_max_bytes = 0
    #: Records in memory, the ledger durable (the embedded thread pool, ADR 0023).
    records_in_ledger = False

    def __init__(self) -> None:
        super().__init__()
        self.model = model = Model()
        self.store = MemoryObjectStore()
        self.state = EngineState(TENANT, WORKSPACE)
        self.requests: dict[int, TaskRequest] = {}

        @asset(name=TASK, retry=RetryPolicy(max_attempts=3, initial_delay=0.01, jitter=0))
        def work(context: AssetContext) -> str:
            reason = model.end_during_body.pop(context.attempt_id, None)
            if reason is not None:  # the engine gives up on it while the body runs
                model.machine.engine_ends(context.attempt_id, reason)
                model.runtime.stop(context.attempt_id, reason)
            return f"value of attempt {context.attempt}"

        self.defs = Definitions(assets=[work])
        self.runtime = TaskRuntime(
            self.store,
            self.defs,
            worker_id="w1",
            sink=_Sink(),
            clock=lambda: next(model.now),
            inline_max_bytes=self.inline_max_bytes,
            records_in_ledger=self.records_in_ledger,
        )
        model.runtime, model.machine = self.runtime, self
        planned = plan_tasks(self.defs, [TASK])
        self.fold(ev.RunRequested(tasks=planned))

    # ----------------------------------------------------------------- helpers
    def fold(self, payload: ev.Payload, attempt: int | None = None, aid: str | None = None) -> None:
        task_key = None if isinstance(payload, ev.RunRequested | ev.RunCancelRequested) else TASK
        self.state.apply(
            [
                ev.Event.new(
                    payload,
                    tenant_id=TENANT,
                    workspace_id=WORKSPACE,
                    run_id=RUN,
                    task_key=task_key,
                    attempt=attempt,
                    attempt_id=aid,
                    emitted_at=next(self.model.now),
                )
            ]
        )

    @property
    def task(self) -> s.TaskRow:
        task = self.state.task(RUN, TASK)
        assert task is not None
        return task

    def engine_ends(self, attempt_id: str, reason: str) -> None:
        task = self.task
        if task.attempt_id != attempt_id or task.status not in (s.DISPATCHED, s.RUNNING):
            return  # the engine only ends the open current attempt
        if reason == "cancelled":
            self.fold(ev.RunCancelRequested(reason="test"))
        self.fold(
            ev.AttemptAbandoned(reason=reason, retryable=reason != "cancelled"),  # type: ignore[arg-type]
            task.attempt,
            attempt_id,
        )
        self.model.ended[attempt_id] = reason

    # ------------------------------------------------------------------- rules
    @precondition(lambda self: self.task.status == s.READY)
    @rule()
    def dispatch(self) -> None:
        number, aid = self.task.attempt + 1, new_ulid()
        self.fold(ev.DispatchRequested(), number, aid)
        outbox = self.state.outbox(dispatch_id(TENANT, WORKSPACE, RUN, TASK, number))
        assert outbox is not None and outbox.attempt_id == aid
        reusable = reusable_attempt_ids(self.state.attempts_of(RUN, TASK), number)
        self.requests[number] = build_request(
            TENANT, WORKSPACE, outbox, self.task, {}, (), None, reusable
        )

    @precondition(lambda self: bool(self.requests))
    @rule(data=st.data(), end_during=st.sampled_from([None, "timeout", "cancelled"]))
    def run(self, data: st.DataObject, end_during: str | None) -> None:
        """Run a dispatched attempt: the first delivery, a redelivery, or a late one."""
        number = data.draw(st.sampled_from(sorted(self.requests)), label="attempt")
        request = self.requests[number]
        if end_during is not None:
            self.model.end_during_body[request.attempt_id] = end_during
        value_existed = any(
            self.store.head(f"outputs/{TASK}/__all__/{name}.json") is not None
            for name in (RUN if number == 1 else f"{RUN}-{number}",)
        )
        report = self.runtime.execute(request)
        self.model.end_during_body.pop(request.attempt_id, None)
        if not value_existed and not report.reused and _succeeded(report):
            # A lost worker's late result may count (exactly-once recorded effects);
            # one returned after a timeout or cancel may not.
            ended = self.model.ended.get(request.attempt_id)
            self.model.legit_value[number] = ended not in ENGINE_ENDED
        self.state.apply(report.events)

    @rule(reason=st.sampled_from(["timeout", "worker_lost", "heartbeat_missed", "cancelled"]))
    def end_open_attempt(self, reason: str) -> None:
        if self.task.attempt_id is not None:
            self.engine_ends(self.task.attempt_id, reason)

    @precondition(lambda self: self.task.status == s.RETRY_WAIT)
    @rule()
    def fire_retry_timer(self) -> None:
        tid = timer_id(TENANT, WORKSPACE, RUN, TASK, self.task.attempt, "retry")
        self.fold(ev.TimerRequested(timer_id=tid, kind="retry", due_at=0), self.task.attempt)
        self.fold(ev.TimerFired(timer_id=tid), self.task.attempt)

    # -------------------------------------------------------------- invariants
    @invariant()
    def a_result_comes_from_an_attempt_that_was_not_ended(self) -> None:
        task = self.task
        if task.status != s.SUCCEEDED:
            return
        assert task.output_location is not None and task.output_format is not None
        value = read_value(self.store, task.output_location, task.output_format)
        producer = _attempt_of(task.output_location, value)
        assert self.model.legit_value.get(producer) is True, (producer, self.model.legit_value)
        assert value == f"value of attempt {producer}"

    @invariant()
    def an_attempt_ended_by_the_engine_stays_ended(self) -> None:
        for row in self.state.rows("attempts"):
            reason = self.model.ended.get(row.attempt_id)
            if reason is not None and row.dispatch_event_id is not None:
                assert (row.end_kind, row.error_type) == ("abandoned", reason)

    @invariant()
    def all_attempts_timed_out_means_failed_with_timeout(self) -> None:
        task = self.task
        winners = [self.requests[n].attempt_id for n in sorted(self.requests)]
        if len(winners) == 3 and all(self.model.ended.get(a) == "timeout" for a in winners):
            assert (task.status, task.error_type) == (s.FAILED, "timeout")


class _Sink:
    def emit(self, event: ev.Event) -> str:
        return f"ledger/{event.event_id}"


def _succeeded(report: Any) -> bool:
    return any(
        isinstance(e.payload, ev.TaskFinished) and e.payload.outcome == "succeeded"
        for e in report.events
    )


def _attempt_of(location: str, value: str) -> int:
    """The attempt that wrote a value: from its file name, or for an inline value
    (which has no file) from the value itself."""
    if is_inline(location):
        return int(value.rsplit(" ", 1)[1])
    name = location.rsplit("/", 1)[1].split(".", 1)[0]
    return int(name.rsplit("-", 1)[1]) if "-" in name else 1


class InlineResultReuse(ResultReuse):
    """The same properties when values travel inline: the record alone arbitrates."""

    inline_max_bytes = 256


class LedgerRecordedResultReuse(ResultReuse):
    """The same properties for the embedded thread pool's runtime, which keeps its
    records in memory (the ledger holds the durable copy)."""

    records_in_ledger = True


class InlineLedgerRecordedResultReuse(InlineResultReuse):
    """Inline values and records in memory: nothing but memory arbitrates."""

    records_in_ledger = True


for _machine in (
    ResultReuse,
    InlineResultReuse,
    LedgerRecordedResultReuse,
    InlineLedgerRecordedResultReuse,
):
    _machine.TestCase.settings = settings(max_examples=150, stateful_step_count=25)
test_result_reuse = ResultReuse.TestCase
test_inline_result_reuse = InlineResultReuse.TestCase
test_ledger_recorded_result_reuse = LedgerRecordedResultReuse.TestCase
test_inline_ledger_recorded_result_reuse = InlineLedgerRecordedResultReuse.TestCase
