"""A hypothesis state machine driving the embedded runner one loop step at a time.

`RunnerMachine` owns an in-memory store behind a `FaultyObjectStore`, a manual clock,
and an `EmbeddedRunner` whose pool is replaced by a `HeldDispatcher`: attempts are
held until a rule executes them, and what the worker reports waits in a mailbox until
a rule delivers it — in any order, any number of times, to whichever runner is alive.

Rules: request a run (the same key twice is a duplicate request), run one loop step
(`step`: controllers, ledger write, dispatch, drain — the body of the runner's own
loop), execute a held attempt, let the loop run a while with prompt workers,
deliver / redeliver / reorder reports, send a
heartbeat, skew the clock by hours (once, first), move it (timers fire on the next
step) or step it back, publish, sweep, crash
(drop the runner without closing it, its pool with or without its running
attempts), fail (a storage error: the runner is closed as ``servo materialize``
closes it), restart, turn the periodic faults on and off, and break one chosen call.

Invariants after every step: in the live runner's state no task's
``deps_satisfied_count`` decreases; and whenever the ledger or the manifest changed,
the published projections hold no row the ledger lacks, and right after a publish
they equal a full replay of the ledger; in the replay, an edge once satisfied stays
satisfied and no task's ``deps_satisfied_count`` decreases; no task succeeds twice.
At the end (`teardown`) the faults stop and every requested run is driven to its
end: it must succeed, with the right values — or have failed only because faults
and crashes used up a task's attempts (`failed_by_faults`: each failed attempt of a
failed task names an injected fault or was given up as lost).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import seed as with_seed
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from servo import Definitions
from servo.dispatch.base import EnqueueOutcome
from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.ids import now_us, run_id_for_key
from servo.engine.replay import replay_ledger
from servo.engine.report import Report
from servo.engine.request import TaskRequest
from servo.errors import LedgerWriteError, StorageError
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.runner.inbox import attempt_ended
from servo.storage.memory import MemoryObjectStore
from servo.worker.runtime import TaskReport, TaskRuntime

from .faulty import FaultKind, FaultRule, FaultyObjectStore, Op
from .harness import TENANT, WORKSPACE, AssetPlan, TrialPlan
from .inprocess import (
    Effects,
    build_definitions,
    check_invariants,
    check_no_phantoms,
    failed_by_faults,
)
from .inprocess import check_published as published_problems

#: Examples per run of the machine's test (``SERVO_CHAOS_EXAMPLES``).
DEFAULT_EXAMPLES = 100
#: Loop iterations `teardown` may take to finish every run once faults stop.
FINISH_ROUNDS = 90
KEYS = ("k0", "k1")
OPTIONS = RunnerOptions(
    concurrency=2,
    publish_interval_s=3600.0,  # publishing is a rule
    sweep_interval_s=3600.0,  # and so is sweeping
    ledger_scan_interval_s=3600.0,
    heartbeat_interval_s=5.0,
    heartbeat_timeout_s=30.0,
)
#: A diamond plus a flaky root: a0 -> a1, a2 -> a3; a4 fails once, then succeeds.
PLAN = TrialPlan(
    seed=0,
    assets=(
        AssetPlan("a0", 0, (), 0.0),
        AssetPlan("a1", 1, ("a0",), 0.0),
        AssetPlan("a2", 2, ("a0",), 0.0),
        AssetPlan("a3", 3, ("a1", "a2"), 0.0),
        AssetPlan("a4", 4, (), 0.0, flaky=True),
    ),
    layers=3,
    kills=(),
    concurrency=2,
    processes=False,
)
FAULTS = (
    FaultRule("put_if_absent", 5, "fail", offset=2),
    FaultRule("put_if_absent", 7, "transient", offset=3),
    FaultRule("put_if_generation", 4, "lost_ack", offset=1),
    FaultRule("get", 9, "fail", offset=4),
    FaultRule("put_if_absent", 11, "enospc", offset=6),
)


def examples(environ: dict[str, str] | None = None) -> int:
    """``SERVO_CHAOS_EXAMPLES``, else `DEFAULT_EXAMPLES`."""
    env = os.environ if environ is None else environ
    return int(env.get("SERVO_CHAOS_EXAMPLES") or DEFAULT_EXAMPLES)


class HeldDispatcher:
    """A pool that starts nothing by itself: `held` waits for the machine."""

    def __init__(self) -> None:
        self.held: list[TaskRequest] = []
        self.stopped: list[tuple[str, str]] = []
        self._seen: set[str] = set()

    @property
    def pending(self) -> int:
        return len(self.held)

    def enqueue(self, request: TaskRequest) -> EnqueueOutcome:
        if request.cloud_task_id in self._seen:
            return EnqueueOutcome.ALREADY_EXISTS
        self._seen.add(request.cloud_task_id)
        self.held.append(request)
        return EnqueueOutcome.CREATED

    def stop(self, attempt_id: str, reason: str = "stopped") -> bool:
        self.stopped.append((attempt_id, reason))
        return False

    def hold(self) -> None:
        return None

    def close(self, timeout_s: float | None = None) -> None:
        return None


class _Mailbox:
    """The runtime's sink: each event becomes a report waiting for delivery."""

    def __init__(self) -> None:
        self.items: list[Report] = []

    def emit(self, event: ev.Event) -> None:
        self.items.append(Report((event,)))


class RunnerMachine(RuleBasedStateMachine):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = MemoryObjectStore()
        self.store = FaultyObjectStore(self.inner, FAULTS)
        self.store.enabled = False
        self.now = now_us()  # ULIDs carry the real time: start beside it
        self.broken = False  # a check failed: teardown only cleans up
        self.effects = Effects()
        self.defs: Definitions = build_definitions(PLAN, self.effects)
        self.mailbox = _Mailbox()
        self.delivered: list[Report] = []
        self.workers = TaskRuntime(
            self.store, self.defs, worker_id="machine", sink=self.mailbox, clock=self.clock
        )
        self.zombies: list[TaskRequest] = []  # attempts of a crashed runner still running
        self.runner: EmbeddedRunner | None = None
        self.pool: HeldDispatcher | None = None
        self.focus: str | None = None
        self.requested: set[str] = set()
        self.satisfied: dict[tuple[str, str], int] = {}  # in the ledger replay
        self.live: dict[tuple[str, str], int] = {}  # in the live runner's state
        self.edges: set[tuple[str, str, str]] = set()
        self.seen: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self.open()

    def clock(self) -> int:
        return self.now

    def expect(self, problems: list[str], context: str) -> None:
        """Fail the example with `problems` (if any)."""
        if problems:
            self.broken = True
            raise AssertionError(f"{context}: {problems}")

    # ------------------------------------------------------------- the runner
    def open(self) -> None:
        """A fresh runner (a restart); it recovers and resumes the focused run."""
        self.pool = HeldDispatcher()  # the machine runs what the runner hands over
        runner = EmbeddedRunner(self.store, self.defs, OPTIONS, clock=self.clock, pool=self.pool)
        self.runner = runner
        self.live = {}  # a new runner starts from the published state
        if not self.guard(lambda r: r.state):
            return
        if self.focus is not None:
            self.resume(self.focus)

    def resume(self, run_id: str) -> None:
        """What `EmbeddedRunner.wait` does before its loop."""

        def begin(runner: EmbeddedRunner) -> None:
            if runner.run_record(run_id) is None:  # hot, or archived (begin restores it)
                return
            runner.begin(run_id)

        self.guard(begin)

    def guard(self, action: Callable[[EmbeddedRunner], Any]) -> bool:
        """Run `action` on the runner; a storage error ends the runner as the CLI
        would (`close`, which publishes). False when it failed."""
        runner = self.runner
        assert runner is not None
        try:
            action(runner)
        except (StorageError, LedgerWriteError):
            self.runner = None
            with contextlib.suppress(StorageError, LedgerWriteError):
                runner.close()
            return False
        return True

    # ------------------------------------------------------------------ rules
    @precondition(lambda self: self.runner is not None)
    @rule(key=st.sampled_from(KEYS))
    def request(self, key: str) -> None:
        def start(runner: EmbeddedRunner) -> None:
            run_id = runner.start_run(idempotency_key=key).run_id
            self.requested.add(key)
            self.focus = run_id

        if self.guard(start) and self.focus is not None:
            self.resume(self.focus)

    @precondition(lambda self: self.runner is not None and self.focus is not None)
    @rule()
    def step(self) -> None:
        run_id = self.focus
        assert run_id is not None

        def body(runner: EmbeddedRunner) -> None:
            if runner.state.run(run_id) is None:
                return  # its request is not folded (a lost publish, a restart)
            run = runner.turn(run_id)
            if run.status != s.RUN_RUNNING:
                runner.publish()

        self.guard(body)

    @precondition(lambda self: bool(self.pool and self.pool.held) or bool(self.zombies))
    @rule(index=st.integers(0, 7), zombie=st.booleans(), report=st.booleans())
    def execute(self, index: int, zombie: bool, report: bool = False) -> None:
        """A worker runs a held attempt (or a crashed runner's orphan) to its end; with
        `report` its reports reach the runner at once, in order, else they wait."""
        queue = self.zombies if zombie and self.zombies else self.pool.held if self.pool else []
        if not queue:
            return
        request = queue.pop(index % len(queue))
        waiting = len(self.mailbox.items)
        try:
            result: TaskReport | BaseException = self.workers.execute(request)
        except StorageError as exc:  # the runtime could not report: the runner redelivers
            result = exc
        self.mailbox.items.append(attempt_ended(request, result))
        while report and self.runner is not None and len(self.mailbox.items) > waiting:
            self.deliver(waiting)

    @precondition(lambda self: self.runner is not None and self.focus is not None)
    @rule()
    def run_a_while(self) -> None:
        """The runner's loop turns with workers reporting promptly (progress)."""
        self.step()
        while self.runner is not None and self.pool is not None and self.pool.held:
            self.execute(0, zombie=False, report=True)
        if self.runner is not None:
            self.step()

    @precondition(lambda self: self.runner is not None and bool(self.mailbox.items))
    @rule(index=st.integers(0, 7))
    def deliver(self, index: int) -> None:
        """A report reaches the runner (any of them: reports are reordered)."""
        item = self.mailbox.items.pop(index % len(self.mailbox.items))
        self.delivered.append(item)
        assert self.runner is not None
        self.runner.inbox.put(item)

    @precondition(lambda self: self.runner is not None and bool(self.delivered))
    @rule(index=st.integers(0, 7))
    def redeliver(self, index: int) -> None:
        """A report arrives again (at-least-once delivery)."""
        item = self.delivered[index % len(self.delivered)]
        if item.ended is not None:  # the attempt's events, without its end
            item = Report(item.events)
        assert self.runner is not None
        self.runner.inbox.put(item)

    @precondition(lambda self: self.runner is not None and self.pool is not None)
    @rule(index=st.integers(0, 7))
    def heartbeat(self, index: int) -> None:
        """A worker says a held (or orphaned) attempt is alive."""
        assert self.pool is not None and self.runner is not None
        requests = self.pool.held + self.zombies
        if not requests:
            return
        r = requests[index % len(requests)]
        event = ev.Event.new(
            ev.TaskHeartbeat(), tenant_id=r.tenant_id, workspace_id=r.workspace_id,
            run_id=r.run_id, task_key=r.task_key, attempt=r.attempt,
            attempt_id=r.attempt_id, emitted_at=self.now,
        )  # fmt: skip
        self.runner.inbox.put(Report((event,)))

    @initialize(hours=st.sampled_from([0, 0, 2, -2]))
    def skew(self, hours: int) -> None:
        """This machine's clock is off by `hours` (ids carry the real time)."""
        self.now += hours * 3_600_000_000

    @rule(seconds=st.sampled_from([0.001, 0.05, 1.0, 6.0, 31.0, 120.0, 3600.0, -600.0]))
    def advance(self, seconds: float) -> None:
        """Time passes (due timers fire on the next step), or the clock steps back."""
        self.now += int(seconds * 1_000_000)

    @precondition(lambda self: self.runner is not None)
    @rule()
    def publish(self) -> None:
        if self.guard(lambda r: r.publish()):
            self.expect(published_problems(self.inner), "right after a publish")

    @precondition(lambda self: self.runner is not None and self.focus is not None)
    @rule()
    def sweep(self) -> None:
        run_id = self.focus
        assert run_id is not None

        def body(runner: EmbeddedRunner) -> None:
            if runner.state.run(run_id) is not None:
                runner.turn(run_id, sweep=True)

        self.guard(body)

    @precondition(lambda self: self.runner is not None)
    @rule(orphans=st.booleans())
    def crash(self, orphans: bool) -> None:
        """``kill -9``: the runner is gone without a word; with `orphans`, attempts
        it held go on running somewhere (their reports may still arrive)."""
        if orphans and self.pool is not None:
            self.zombies.extend(self.pool.held)
        self.runner = self.pool = None

    @precondition(lambda self: self.runner is None)
    @rule()
    def restart(self) -> None:
        try:
            self.open()
        except StorageError:
            self.runner = None

    @rule()
    def toggle_faults(self) -> None:
        self.store.enabled = not self.store.enabled

    @rule(
        op=st.sampled_from(["put_if_absent", "put_if_generation", "get", "head"]),
        kind=st.sampled_from(["fail", "transient", "lost_ack", "enospc"]),
        after=st.integers(0, 3),
    )
    def inject(self, op: Op, kind: FaultKind, after: int) -> None:
        """One chosen call fails: the `after`+1-th next call of `op`."""
        self.store.arm(op, kind, after)

    @precondition(lambda self: self.store.disk_full)
    @rule()
    def free_space(self) -> None:
        self.store.free_space()

    # ------------------------------------------------------------- invariants
    @invariant()
    def live_edges_never_go_back(self) -> None:
        """Within one runner's life, no task's deps_satisfied_count decreases."""
        if self.runner is None:
            return
        problems = []
        for task in self.runner.compactor.state.rows("tasks"):
            key = (task.run_id, task.task_key)
            before, now = self.live.get(key, 0), task.deps_satisfied_count
            if now < before:
                problems.append(f"{key}: deps_satisfied_count fell from {before} to {now}")
            self.live[key] = max(before, now)
        self.expect(problems, "live runner state")

    @invariant()
    def ledger_and_projections_agree(self) -> None:
        """No phantom rows; replayed edges monotone; at most one success per task."""
        ledger = tuple(self.inner.list_prefix("ledger/"))
        manifests = tuple(self.inner.list_prefix("projections/"))
        if (ledger, manifests) == self.seen:
            return
        self.seen = (ledger, manifests)
        self.expect(check_no_phantoms(self.inner), "published")
        state = replay_ledger(self.inner, TENANT, WORKSPACE).state
        problems = check_invariants(state)
        for task in state.rows("tasks"):
            key = (task.run_id, task.task_key)
            before, now = self.satisfied.get(key, 0), task.deps_satisfied_count
            if now < before:
                problems.append(f"{key}: deps_satisfied_count fell from {before} to {now}")
            self.satisfied[key] = max(before, now)
        edges = {(d.run_id, d.task_key, d.upstream_task_key)
                 for d in state.rows("dep_satisfaction")
                 if d.resolution == s.RESOLUTION_SUCCESS}  # fmt: skip
        if not self.edges <= edges:
            problems.append(f"edges withdrawn: {sorted(self.edges - edges)}")
        self.edges |= edges
        self.expect(problems, "ledger replay")

    # --------------------------------------------------------------- the end
    def teardown(self) -> None:
        """Faults stop; every requested run must then end, and succeed."""
        if self.broken:
            return  # the failure is reported; finishing would only add noise
        self.store.enabled = False
        self.store.disarm()
        self.store.free_space()
        run_ids = [run_id_for_key(TENANT, WORKSPACE, key) for key in sorted(self.requested)]
        for run_id in run_ids:
            self.finish(run_id)
        if self.runner is not None:
            self.runner.close()
        problems = published_problems(self.inner)
        state = replay_ledger(self.inner, TENANT, WORKSPACE).state
        expected = PLAN.expected_values()
        for run_id in run_ids:
            run = state.run(run_id)
            if run is None:
                continue  # its request never reached the ledger (a fault, then a crash)
            if run.status != s.RUN_SUCCEEDED and not failed_by_faults(self.inner, run_id):
                statuses = {t.task_key: t.status for t in state.tasks_of(run_id)}
                failed = [(t.task_key, a.attempt, a.error_type)
                          for t in state.tasks_of(run_id) if t.status == s.FAILED
                          for a in state.attempts_of(run_id, t.task_key)]  # fmt: skip
                problems.append(f"run {run_id} ended {run.status} once faults stopped: "
                                f"{statuses}; attempts of failed tasks: {failed}")  # fmt: skip
            for task in state.tasks_of(run_id):
                if task.status != s.SUCCEEDED and run.status != s.RUN_SUCCEEDED:
                    continue  # the run failed for the faults and crashes (checked above)
                if self.effects.values.get((run_id, task.task_key)) != expected[task.task_key]:
                    problems.append(f"{task.task_key} of {run_id}: wrong or missing effect")
        self.expect(problems, "once faults stopped")

    def finish(self, run_id: str) -> None:
        """Drive `run_id` with every report delivered at once until it ends."""
        self.zombies.clear()
        for _ in range(FINISH_ROUNDS):
            if self.runner is None:
                self.focus = run_id
                self.open()
            assert self.runner is not None
            if self.focus != run_id:
                self.focus = run_id
                self.resume(run_id)
            record = self.runner.run_record(run_id)  # archived once it ended
            if record is not None and record[0].status != s.RUN_RUNNING:
                return
            self.step()
            while self.pool is not None and self.pool.held:
                self.execute(0, zombie=False)
            while self.runner is not None and self.mailbox.items:
                self.deliver(0)
            self.advance(60.0)  # past any retry delay and a clock stepped back
        raise AssertionError(f"run {run_id} did not end within {FINISH_ROUNDS} rounds")


def run_machine(max_examples: int, seed: int | None = None) -> None:
    """Run the machine for `max_examples` examples (`seed` fixes hypothesis' draw);
    raises with the shortest failing program found."""
    factory: Any = RunnerMachine
    if seed is not None:
        factory = with_seed(seed)(type("SeededRunnerMachine", (RunnerMachine,), {}))
    run_state_machine_as_test(
        factory,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=50,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
