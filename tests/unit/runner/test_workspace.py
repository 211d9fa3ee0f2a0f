"""The request-driven reconciler (`servo.runner.workspace`): a run goes to its end
through reports alone, across instances, lost notifications and lagging reports."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from servo import Definitions, asset
from servo.dispatch.base import EnqueueOutcome
from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.ledger import LedgerReader
from servo.engine.request import TaskRequest
from servo.errors import LedgerWriteError, TransientStorageError
from servo.observability import metrics
from servo.runner.remote import RunFollower, submit_run
from servo.runner.service import ReconcilerService, registered_workspaces
from servo.runner.workspace import ReconcilerSettings, WorkspaceReconciler
from servo.sdk.io import read_value
from servo.storage.memory import MemoryObjectStore
from servo.worker.notify import NotifyingSink
from servo.worker.runtime import LedgerSink, TaskReport, TaskRuntime

T, W = "default", "default"


@asset
def root() -> int:
    return 1


@asset
def left(root: int) -> int:
    return root + 1


@asset
def right(root: int) -> int:
    return root * 10


@asset
def tip(left: int, right: int) -> int:
    return left + right


DEFS = Definitions(assets=[root, left, right, tip])


@dataclass
class Queue:
    """A dispatcher that holds requests until the test delivers them."""

    queued: list[TaskRequest] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def enqueue(self, request: TaskRequest) -> EnqueueOutcome:
        if request.cloud_task_id in self.names:
            return EnqueueOutcome.ALREADY_EXISTS
        self.names.add(request.cloud_task_id)
        self.queued.append(request)
        return EnqueueOutcome.CREATED

    def stop(self, attempt_id: str, reason: str = "stopped") -> bool:
        return False

    def close(self) -> None:
        pass

    def take(self) -> list[TaskRequest]:
        taken, self.queued = self.queued, []
        return taken


@dataclass
class Timers:
    armed: dict[str, int] = field(default_factory=dict)

    def schedule(self, timer_id: str, due_at: int) -> None:
        self.armed[timer_id] = due_at


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


def _world(store: MemoryObjectStore, clock: Clock) -> tuple[WorkspaceReconciler, Queue, Timers]:
    queue, timers = Queue(), Timers()
    settings = ReconcilerSettings(report_lag_us=2_000_000)
    return (
        WorkspaceReconciler(store, T, W, DEFS, queue, timers, settings, clock=clock),
        queue,
        timers,
    )


def _values(store: MemoryObjectStore, run_id: str) -> dict[str, object]:
    follower = RunFollower(store, T, W, run_id)
    run, tasks = follower.poll()
    assert run is not None
    return {
        t.asset_key: read_value(store, t.output_location, t.output_format)
        for t in tasks
        if t.output_location and t.output_format
    }


def test_a_diamond_runs_to_its_end_through_reports_alone() -> None:
    store, clock = MemoryObjectStore(), Clock()
    reconciler, queue, _ = _world(store, clock)
    runtime = TaskRuntime(store, DEFS, worker_id="w1", clock=clock)
    submitted = submit_run(
        store, DEFS, lambda t, w, paths: reconciler.reconcile(paths), tenant_id=T, workspace_id=W
    )
    for _ in range(10):
        for request in queue.take():
            report = runtime.execute(request)
            reconciler.reconcile(report.paths)
    follower = RunFollower(store, T, W, submitted.run_id)
    run, tasks = follower.poll()
    assert run is not None and run.status == s.RUN_SUCCEEDED
    assert sorted(t.status for t in tasks) == [s.SUCCEEDED] * 4
    assert _values(store, submitted.run_id) == {"root": 1, "left": 2, "right": 10, "tip": 12}


def test_a_report_handled_by_another_instance_is_seen_by_reloading() -> None:
    store, clock = MemoryObjectStore(), Clock()
    first, queue_a, _ = _world(store, clock)
    second, queue_b, _ = _world(store, clock)
    runtime = TaskRuntime(store, DEFS, worker_id="w1", clock=clock)
    submitted = submit_run(
        store, DEFS, lambda t, w, paths: first.reconcile(paths), tenant_id=T, workspace_id=W
    )
    instances = [second, first]
    for turn in range(12):
        for request in [*queue_a.take(), *queue_b.take()]:
            report = runtime.execute(request)
            instances[turn % 2].reconcile(report.paths)  # alternate instances
    run, _ = RunFollower(store, T, W, submitted.run_id).poll()
    assert run is not None and run.status == s.RUN_SUCCEEDED
    assert _values(store, submitted.run_id)["tip"] == 12


def test_a_lost_notification_is_found_by_the_sweep() -> None:
    store, clock = MemoryObjectStore(), Clock()
    reconciler, queue, _ = _world(store, clock)
    runtime = TaskRuntime(store, DEFS, worker_id="w1", clock=clock)
    submitted = submit_run(
        store, DEFS, lambda t, w, paths: reconciler.reconcile(paths), tenant_id=T, workspace_id=W
    )
    (request,) = queue.take()
    runtime.execute(request)  # its report never reaches the reconciler
    assert queue.take() == []
    summary = reconciler.sweep()
    assert summary.swept >= 1
    dispatched = {r.asset_key for r in queue.take()}
    assert dispatched == {"left", "right"}, "the sweep folded the unreported result"
    run, _ = RunFollower(store, T, W, submitted.run_id).poll()
    assert run is not None and run.status == s.RUN_RUNNING


def test_a_timer_is_not_acted_on_before_every_report_could_have_arrived() -> None:
    store, clock = MemoryObjectStore(), Clock()
    reconciler, queue, timers = _world(store, clock)
    submit_run(
        store, DEFS, lambda t, w, paths: reconciler.reconcile(paths), tenant_id=T, workspace_id=W
    )
    (request,) = queue.take()
    started = TaskReport()
    # The worker starts the attempt (its TaskStarted is reported), then goes silent.
    event = ev.Event.new(
        ev.TaskStarted(worker_id="w1"),
        tenant_id=T,
        workspace_id=W,
        run_id=request.run_id,
        task_key=request.task_key,
        attempt=request.attempt,
        attempt_id=request.attempt_id,
        emitted_at=clock(),
    )
    started.paths.append(LedgerSink(store).emit(event))
    reconciler.reconcile(started.paths)
    assert timers.armed, "a heartbeat check was armed"
    timer_id, due_at = next(iter(timers.armed.items()))
    clock.now = due_at + 1  # due, but a report made just before may still be in flight
    timers.armed.clear()
    reconciler.fire(timer_id)
    assert timers.armed[timer_id] >= due_at + 2_000_000 - 10, "delivered again after the lag"
    assert queue.take() == [], "the attempt was not given up yet"
    clock.now = due_at + 2_000_001
    reconciler.fire(timer_id)
    redelivered = queue.take()
    assert [r.attempt for r in redelivered] == [2], "the silent attempt is given up and redone"


def test_a_failed_write_drops_the_state_and_the_next_call_starts_from_the_manifest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, clock = MemoryObjectStore(), Clock()
    reconciler, queue, _ = _world(store, clock)
    submitted = submit_run(store, DEFS, lambda *_: None, tenant_id=T, workspace_id=W)

    real_put = store.put_if_absent
    monkeypatch.setattr(
        store,
        "put_if_absent",
        lambda *a, **k: (_ for _ in ()).throw(TransientStorageError("disk said no")),
    )
    with pytest.raises(LedgerWriteError):
        reconciler.reconcile([submitted.path])
    monkeypatch.setattr(store, "put_if_absent", real_put)
    assert reconciler.state_generation() == 0
    reconciler.reconcile([submitted.path])  # the queue delivers it again
    assert [r.asset_key for r in queue.take()] == ["root"]
    assert LedgerReader(store).read(submitted.path)[0].run_id == submitted.run_id


def test_the_service_routes_timers_by_their_scope_and_sweeps_registered_workspaces() -> None:
    store, clock = MemoryObjectStore(), Clock()
    queue, timers = Queue(), Timers()
    service = ReconcilerService(store, DEFS, queue, timers, clock=clock)
    assert service.sweep() == {}, "nothing registered yet"
    scope = {"tenant_id": "acme", "workspace_id": "prod", "idempotency_key": "k"}
    submitted = submit_run(store, DEFS, lambda *_: None, **scope)
    assert submit_run(store, DEFS, lambda *_: None, **scope).resumed
    assert registered_workspaces(store) == [("acme", "prod")]
    swept = service.sweep()  # the lost notification of the request is found
    assert list(swept) == [("acme", "prod")]
    assert [r.tenant_id for r in queue.take()] == ["acme"]
    with pytest.raises(ValueError, match="not a timer id"):
        service.fire("d_123")
    run, _ = RunFollower(store, "acme", "prod", submitted.run_id).poll()
    assert run is not None and run.status == s.RUN_RUNNING


def test_concurrent_reports_are_folded_by_a_few_steps_and_each_caller_answered() -> None:
    @asset
    def base() -> int:
        return 1

    leaves = [asset(name=f"leaf_{i}")(lambda base: base + 1) for i in range(24)]
    defs = Definitions(assets=[base, *leaves])
    store, clock = MemoryObjectStore(), Clock()
    queue, timers = Queue(), Timers()
    reconciler = WorkspaceReconciler(store, T, W, defs, queue, timers, clock=clock)
    runtime = TaskRuntime(store, defs, worker_id="w1", clock=clock)
    submitted = submit_run(
        store, defs, lambda t, w, paths: reconciler.reconcile(paths), tenant_id=T, workspace_id=W
    )
    (first,) = queue.take()
    reconciler.reconcile(runtime.execute(first).paths)
    reports = [runtime.execute(request).paths for request in queue.take()]
    assert len(reports) == 24
    steps_before = metrics.sample("servo_reconciler_steps_total", {"trigger": "reconcile"})
    barrier = threading.Barrier(len(reports))
    answers: list[object] = []

    def report(paths: list[str]) -> None:
        barrier.wait()
        answers.append(reconciler.reconcile(paths))

    threads = [threading.Thread(target=report, args=(paths,)) for paths in reports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    steps = metrics.sample("servo_reconciler_steps_total", {"trigger": "reconcile"}) - steps_before
    assert len(answers) == 24 and steps < 24, f"{steps} steps for 24 reports"
    run, _ = RunFollower(store, T, W, submitted.run_id).poll()
    assert run is not None and run.status == s.RUN_SUCCEEDED


def test_reports_are_published_within_the_interval_and_a_run_end_at_once() -> None:
    store, clock = MemoryObjectStore(), Clock()
    queue, timers = Queue(), Timers()
    settings = ReconcilerSettings(publish_interval_s=0.2)
    reconciler = WorkspaceReconciler(store, T, W, DEFS, queue, timers, settings, clock=clock)
    runtime = TaskRuntime(store, DEFS, worker_id="w1", clock=clock)
    submitted = submit_run(
        store, DEFS, lambda t, w, paths: reconciler.reconcile(paths), tenant_id=T, workspace_id=W
    )
    follower = RunFollower(store, T, W, submitted.run_id)
    assert follower.poll()[0] is None, "the submission's step is not published yet"
    time.sleep(0.4)
    run, tasks = follower.poll()
    assert run is not None and [t.status for t in tasks if t.asset_key == "root"] == [
        s.DISPATCHED
    ], "published by the deferred flush"
    for _ in range(6):
        for request in queue.take():
            reconciler.reconcile(runtime.execute(request).paths)
    run, _ = follower.poll()
    assert run is not None and run.status == s.RUN_SUCCEEDED, "the end is published at once"


def test_workspaces_the_service_forgets_leave_no_threads_behind() -> None:
    def step_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("servo-reconcile")}

    before = step_threads()
    store, clock = MemoryObjectStore(), Clock()
    service = ReconcilerService(store, DEFS, Queue(), Timers(), clock=clock, max_workspaces=2)
    for index in range(12):
        submitted = submit_run(store, DEFS, lambda *_: None, tenant_id=f"t{index}",
                               workspace_id="w")  # fmt: skip
        service.reconcile(f"t{index}", "w", [submitted.path])
    added = step_threads() - before
    assert len(added) <= 16, f"{len(added)} step threads for 12 workspaces"


# -- reports that carry their events (ADR 0025) ---------------------------------------


class _Reports:
    """Collects what a `NotifyingSink` hands on: paths notified, events reported."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.events: list[ev.Event] = []

    def notify(self, tenant: str, workspace: str, paths: list[str]) -> None:
        self.paths.extend(paths)

    def report(self, tenant: str, workspace: str, events: list[ev.Event]) -> None:
        self.events.extend(events)

    def take(self) -> tuple[list[str], list[ev.Event]]:
        taken = (self.paths, self.events)
        self.paths, self.events = [], []
        return taken


def test_a_diamond_runs_to_its_end_on_reports_that_carry_their_events() -> None:
    """Workers write no ledger object: each finish reaches the reconciler with its
    start inside the report, and the reconciler writes both to the ledger."""
    store, clock = MemoryObjectStore(), Clock()
    reconciler, queue, _ = _world(store, clock)
    reports = _Reports()
    sink = NotifyingSink(store, reports.notify, reports.report, hold_s=60.0)
    runtime = TaskRuntime(store, DEFS, worker_id="w1", clock=clock, sink=sink)
    before = set(store.list_prefix("ledger/"))
    submitted = submit_run(
        store, DEFS, lambda t, w, paths: reconciler.reconcile(paths), tenant_id=T, workspace_id=W
    )
    for _ in range(10):
        for request in queue.take():
            report = runtime.execute(request)
            assert report.paths == [] and [type(e.payload) for e in report.handed] == [
                ev.TaskStarted,
                ev.TaskFinished,
            ]
            paths, events = reports.take()
            assert paths == [] and [e.event_id for e in events] == [
                e.event_id for e in report.handed
            ]
            reconciler.reconcile(paths, events)
    sink.close()
    run, tasks = RunFollower(store, T, W, submitted.run_id).poll()
    assert run is not None and run.status == s.RUN_SUCCEEDED
    assert all(t.started_at is not None for t in tasks), "the held starts were folded"
    assert _values(store, submitted.run_id) == {"root": 1, "left": 2, "right": 10, "tip": 12}
    written = [
        e
        for path in set(store.list_prefix("ledger/")) - before
        for e in LedgerReader(store).read(path)
    ]
    finished = [e for e in written if isinstance(e.payload, ev.TaskFinished)]
    assert len(finished) == 4, "the reconciler wrote each reported finish to the ledger"


def test_a_report_delivered_twice_changes_nothing() -> None:
    store, clock = MemoryObjectStore(), Clock()
    reconciler, queue, _ = _world(store, clock)
    reports = _Reports()
    runtime = TaskRuntime(
        store, DEFS, worker_id="w1", clock=clock,
        sink=NotifyingSink(store, reports.notify, reports.report, hold_s=60.0),
    )  # fmt: skip
    submit_run(store, DEFS, lambda t, w, p: reconciler.reconcile(p), tenant_id=T, workspace_id=W)
    (request,) = queue.take()
    runtime.execute(request)
    _, events = reports.take()
    reconciler.reconcile([], events)
    first = sorted(r.asset_key for r in queue.take())
    assert first == ["left", "right"]
    reconciler.reconcile([], events)  # the queue delivered the same report again
    assert queue.take() == [], "nothing is dispatched twice"


def test_a_held_start_is_written_to_the_ledger_once_the_attempt_runs_long() -> None:
    """An attempt still running after `hold_s` has its start in the ledger, where
    the next reconcile step (any report, a sweep) folds it."""
    store, clock = MemoryObjectStore(), Clock()
    reconciler, queue, _ = _world(store, clock)
    reports = _Reports()
    sink = NotifyingSink(store, reports.notify, reports.report, hold_s=0.05)
    submit_run(store, DEFS, lambda t, w, p: reconciler.reconcile(p), tenant_id=T, workspace_id=W)
    (request,) = queue.take()
    start = ev.Event.new(
        ev.TaskStarted(worker_id="w1"), tenant_id=T, workspace_id=W, run_id=request.run_id,
        task_key=request.task_key, attempt=request.attempt, attempt_id=request.attempt_id,
        emitted_at=clock(),
    )  # fmt: skip
    assert sink.emit(start) is None
    deadline = time.monotonic() + 5
    while not _ledger_holds(store, start.event_id) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _ledger_holds(store, start.event_id)
    assert reports.take() == ([], []), "a start alone is not reported"
    reconciler.sweep()
    _, tasks = RunFollower(store, T, W, request.run_id).poll()
    (root_task,) = [t for t in tasks if t.asset_key == "root"]
    assert root_task.status == s.RUNNING
    sink.close()


def test_an_event_too_large_for_a_message_goes_to_the_ledger_and_is_notified(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, clock = MemoryObjectStore(), Clock()
    reports = _Reports()
    monkeypatch.setattr("servo.worker.notify.MAX_REPORT_BYTES", 10)
    sink = NotifyingSink(store, reports.notify, reports.report, hold_s=0)
    finished = ev.Event.new(
        ev.TaskFinished(outcome="failed", error_message="x" * 100), tenant_id=T,
        workspace_id=W, run_id="r1", task_key="k", attempt=1, attempt_id="a1",
        emitted_at=clock(),
    )  # fmt: skip
    path = sink.emit(finished)
    assert path is not None and reports.take() == ([path], [])
    assert [e.event_id for e in LedgerReader(store).read(path)] == [finished.event_id]
    sink.close()


def _ledger_holds(store: MemoryObjectStore, event_id: str) -> bool:
    reader = LedgerReader(store)
    return any(
        e.event_id == event_id for path in store.list_prefix("ledger/") for e in reader.read(path)
    )


def test_a_run_records_its_code_version_and_every_request_carries_it() -> None:
    store, clock = MemoryObjectStore(), Clock()
    reconciler, queue, _ = _world(store, clock)
    submitted = submit_run(
        store, DEFS, lambda t, w, paths: reconciler.reconcile(paths), tenant_id=T, workspace_id=W
    )
    (request,) = queue.take()
    assert request.code_version == DEFS.code_version
    reconciler.sweep()  # publishes
    run, _ = RunFollower(store, T, W, submitted.run_id).poll()
    assert run is not None and run.code_version == DEFS.code_version


def test_every_publish_reaches_the_listener_and_a_failing_one_stops_nothing() -> None:
    store, clock = MemoryObjectStore(), Clock()
    seen: list[int] = []

    def listener(snapshot: object) -> None:
        seen.append(snapshot.generation)  # type: ignore[attr-defined]
        raise RuntimeError("the catalog is down")

    queue, timers = Queue(), Timers()
    reconciler = WorkspaceReconciler(
        store, T, W, DEFS, queue, timers, ReconcilerSettings(), clock=clock, on_publish=listener
    )
    before = metrics.sample("servo_publish_listener_errors_total", {"error_type": "RuntimeError"})
    submit_run(store, DEFS, lambda t, w, p: reconciler.reconcile(p), tenant_id=T, workspace_id=W)
    reconciler.sweep()
    assert seen and seen == sorted(seen)
    assert seen[-1] == reconciler.state_generation()
    errors = metrics.sample("servo_publish_listener_errors_total", {"error_type": "RuntimeError"})
    assert errors == before + len(seen)


class _Listener:
    def __init__(self) -> None:
        self.closed = threading.Event()

    def __call__(self, snapshot: object) -> None:
        pass

    def close(self) -> None:
        self.closed.set()


def test_each_workspace_gets_one_listener_closed_when_the_service_forgets_it() -> None:
    store, clock = MemoryObjectStore(), Clock()
    made: dict[tuple[str, str], _Listener] = {}

    def listener_for(tenant: str, workspace: str) -> _Listener:
        assert (tenant, workspace) not in made
        made[(tenant, workspace)] = _Listener()
        return made[(tenant, workspace)]

    service = ReconcilerService(store, DEFS, Queue(), Timers(), clock=clock, max_workspaces=1,
                                listener_for=listener_for)  # fmt: skip
    for tenant in ("t1", "t1", "t2"):
        submitted = submit_run(store, DEFS, lambda *_: None, tenant_id=tenant, workspace_id="w")
        service.reconcile(tenant, "w", [submitted.path])
    assert sorted(made) == [("t1", "w"), ("t2", "w")]
    assert made[("t1", "w")].closed.wait(5), "forgotten: closed"
    assert not made[("t2", "w")].closed.is_set()
