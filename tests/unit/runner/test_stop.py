"""Stopping the embedded runner (`request_stop`), the run lock and idle cancellation."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from servo import Definitions, asset
from servo.dispatch.local import NotStarted, _DaemonThreadPool
from servo.engine import schema as s
from servo.engine.cancellation import cancel_idle_run
from servo.engine.run_lock import RunLock, lock_path
from servo.engine.snapshot import SnapshotReader
from servo.errors import EngineError, RunBusyError
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.sdk.io import read_value
from servo.storage.local import LocalObjectStore

WAIT_S = 10


class Gate:
    """Lets a test hold an asset's body until it says so, and count the bodies run."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls: Counter[str] = Counter()

    def enter(self, name: str, *, hold: bool) -> None:
        self.calls[name] += 1
        self.started.set()
        if hold:
            assert self.release.wait(WAIT_S)


def gated_defs(gate: Gate, *, hold_first_only: bool = False) -> Definitions:
    @asset
    def slow() -> int:
        gate.enter("slow", hold=not hold_first_only or gate.calls["slow"] == 0)
        return 1

    @asset
    def after(slow: int) -> int:
        gate.calls["after"] += 1
        return slow + 1

    return Definitions(assets=[slow, after])


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "home", fsync=False)


def stop_when_started(runner: EmbeddedRunner, gate: Gate, grace_s: float, *, release: bool) -> None:
    def stopper() -> None:
        assert gate.started.wait(WAIT_S)
        runner.request_stop(grace_s)
        if release:
            gate.release.set()

    threading.Thread(target=stopper, daemon=True).start()


def test_a_stop_lets_running_attempts_finish_and_starts_nothing_new(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    gate = Gate()
    defs = gated_defs(gate)
    options = RunnerOptions(lock_dir=tmp_path / "locks")
    with EmbeddedRunner(store, defs, options) as runner:
        run_id = runner.start_run().run_id
        stop_when_started(runner, gate, grace_s=WAIT_S, release=True)
        run = runner.wait(run_id)
        assert runner.interrupted
        assert run.status == s.RUN_RUNNING
        tasks = {t.task_key: t.status for t in runner.state.tasks_of(run_id)}
        assert tasks == {"slow": s.SUCCEEDED, "after": s.READY}
    published = SnapshotReader(store, "default", "default").load()
    assert {t.task_key: t.status for t in published.tasks_of(run_id)} == tasks

    with EmbeddedRunner(store, defs, options) as resumed:
        run = resumed.wait(run_id)
        assert not resumed.interrupted
    assert run.status == s.RUN_SUCCEEDED
    assert gate.calls == Counter({"slow": 1, "after": 1})


def test_attempts_running_past_the_grace_period_are_redelivered_on_resume(
    store: LocalObjectStore,
) -> None:
    gate = Gate()
    defs = gated_defs(gate, hold_first_only=True)
    try:
        with EmbeddedRunner(store, defs) as runner:
            run_id = runner.start_run().run_id
            stop_when_started(runner, gate, grace_s=0.05, release=False)
            started = time.monotonic()
            run = runner.wait(run_id)
            assert runner.interrupted and run.status == s.RUN_RUNNING
            assert time.monotonic() - started < WAIT_S / 2
            assert runner.state.task(run_id, "slow").status == s.RUNNING  # type: ignore[union-attr]
        with EmbeddedRunner(store, defs) as resumed:
            run = resumed.wait(run_id)
        assert run.status == s.RUN_SUCCEEDED
        slow = resumed.state.task(run_id, "slow")
        assert slow is not None and slow.attempt == 2  # attempt 1 was given up as lost
        assert gate.calls == Counter({"slow": 2, "after": 1})
    finally:
        gate.release.set()


def test_a_stop_requested_before_wait_returns_at_once_and_later_calls_only_shorten(
    store: LocalObjectStore,
) -> None:
    gate = Gate()
    with EmbeddedRunner(store, gated_defs(gate)) as runner:
        run_id = runner.start_run().run_id
        runner.request_stop(0)
        runner.request_stop(60)  # does not extend the deadline
        run = runner.wait(run_id)
    assert runner.interrupted and run.status == s.RUN_RUNNING
    assert gate.calls == Counter()


def test_a_held_pool_ends_waiting_work_as_not_started() -> None:
    release = threading.Event()
    ran: list[str] = []

    def execute(request: Any) -> Any:
        ran.append(request.attempt_id)
        assert release.wait(WAIT_S)
        return "report"

    results: dict[str, object] = {}
    done = threading.Event()

    def record(attempt_id: str) -> Any:
        def finished(result: object) -> None:
            results[attempt_id] = result
            if len(results) == 3:
                done.set()

        return finished

    pool = _DaemonThreadPool(1, execute)
    for attempt_id in ("first", "second", "third"):
        pool.submit(SimpleNamespace(attempt_id=attempt_id), record(attempt_id))  # type: ignore[arg-type]
    deadline = time.monotonic() + WAIT_S
    while not ran:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    pool.hold()
    release.set()
    assert done.wait(WAIT_S)
    pool.close(1.0)
    assert ran == ["first"]
    assert results["first"] == "report"
    assert isinstance(results["second"], NotStarted)
    assert isinstance(results["third"], NotStarted)


def test_the_run_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    path = lock_path(tmp_path / "locks", "acme", "default", "r1")
    first, second = RunLock(path), RunLock(path)
    assert first.try_acquire() and first.held
    assert first.try_acquire()  # held already
    assert not second.try_acquire() and not second.held
    with pytest.raises(RunBusyError, match=r"run r1 is being driven by another process \(pid"):
        second.acquire("r1")
    assert second.holder_pid() is not None
    first.release()
    with second:
        assert second.try_acquire()
    assert not second.held


def test_wait_refuses_a_run_another_process_drives(store: LocalObjectStore, tmp_path: Path) -> None:
    options = RunnerOptions(lock_dir=tmp_path / "locks")
    with EmbeddedRunner(store, gated_defs(Gate()), options) as runner:
        run_id = runner.start_run().run_id
        with RunLock(lock_path(tmp_path / "locks", "default", "default", run_id)) as other:
            assert other.try_acquire()
            with pytest.raises(RunBusyError, match="servo runs cancel"):
                runner.wait(run_id)
        assert runner.state.run(run_id).status == s.RUN_RUNNING  # type: ignore[union-attr]


def test_cancelling_an_idle_run_ends_it_and_records_why(store: LocalObjectStore) -> None:
    gate = Gate()
    defs = gated_defs(gate)
    seen: list[object] = []
    try:
        with EmbeddedRunner(store, defs) as runner:
            run_id = runner.start_run().run_id
            stop_when_started(runner, gate, grace_s=0.0, release=False)
            runner.wait(run_id)
        done = cancel_idle_run(
            store, "default", "default", run_id, reason="typo", listeners=[seen.append]
        )
    finally:
        gate.release.set()
    assert not done.already_finished and done.requested and done.abandoned == 1
    assert done.run.status == s.RUN_CANCELLED and len(seen) == 1
    # Recorded in the ledger and published: a fresh reader and a fresh runner agree.
    snapshot = SnapshotReader(store, "default", "default").load()
    assert snapshot.run(run_id).status == s.RUN_CANCELLED  # type: ignore[union-attr]
    assert {t.status for t in snapshot.tasks_of(run_id)} == {s.CANCELLED}
    with EmbeddedRunner(store, defs) as later:
        assert later.wait(run_id).status == s.RUN_CANCELLED
    again = cancel_idle_run(store, "default", "default", run_id)
    assert again.already_finished and again.run.status == s.RUN_CANCELLED
    with pytest.raises(EngineError, match="no run nope"):
        cancel_idle_run(store, "default", "default", "nope")


def test_start_run_pins_the_given_upstream_values(store: LocalObjectStore) -> None:
    counter = iter(range(1, 100))

    @asset
    def source() -> int:
        return next(counter)

    @asset
    def double(source: int) -> int:
        return source * 2

    defs = Definitions(assets=[source, double])
    with EmbeddedRunner(store, defs) as runner:
        first = runner.start_run().run_id
        runner.wait(first)
        runner.wait(runner.start_run("source").run_id)  # source is 2 from now on
        old = runner.state.task(first, "source")
        assert old is not None and old.output_location and old.output_format
        pinned = {"source": (old.output_location, old.output_format)}
        retry = runner.start_run("double", upstream=pinned).run_id
        runner.wait(retry)
        latest = runner.start_run("double").run_id
        runner.wait(latest)
        outputs = {}
        for run_id in (retry, latest):
            task = runner.state.task(run_id, "double")
            assert task is not None and task.output_location and task.output_format
            outputs[run_id] = read_value(store, task.output_location, task.output_format)
    assert outputs == {retry: 2, latest: 4}
