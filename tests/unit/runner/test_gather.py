"""A turn gathers reports that call for no prompt decision; an urgent one ends it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servo import Definitions, asset
from servo.dispatch.base import EnqueueOutcome
from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.replay import ledger_paths
from servo.engine.report import Report
from servo.runner import EmbeddedRunner, loop
from servo.storage.local import LocalObjectStore


@asset
def one() -> int:
    return 1


@pytest.fixture
def dispatched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[EmbeddedRunner, str, dict[str, object]]]:
    """A runner whose one task is dispatched (to no worker), and the attempt's scope."""
    store = LocalObjectStore(tmp_path / "home", fsync=False)
    with EmbeddedRunner(store, Definitions(assets=[one])) as runner:
        monkeypatch.setattr(runner.pool, "enqueue", lambda _: EnqueueOutcome.CREATED)
        run_id = runner.start_run().run_id
        runner.begin(run_id)
        runner.turn(run_id)
        task = runner.state.task(run_id, "one")
        assert task is not None and task.attempt_id is not None
        scope: dict[str, object] = {
            "tenant_id": "default", "workspace_id": "default", "run_id": run_id,
            "task_key": "one", "attempt": 1, "attempt_id": task.attempt_id,
        }  # fmt: skip
        yield runner, run_id, scope


def _put_later(runner: EmbeddedRunner, event: ev.Event, delay_s: float) -> threading.Thread:
    def put() -> None:
        time.sleep(delay_s)
        runner.inbox.put(Report((event,)))

    thread = threading.Thread(target=put)
    thread.start()
    return thread


def _batches(runner: EmbeddedRunner) -> int:
    return len(ledger_paths(runner._store, "default", "default"))


def test_a_start_and_the_finish_after_it_are_one_step_and_one_batch(
    dispatched: tuple[EmbeddedRunner, str, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, run_id, scope = dispatched
    monkeypatch.setattr(loop, "GATHER_S", 5.0)
    before = _batches(runner)
    runner.inbox.put(Report((ev.Event.new(ev.TaskStarted(worker_id="w"), **scope),)))  # type: ignore[arg-type]
    output = ev.OutputRef("inline:1", "json", 1)
    finished = ev.Event.new(ev.TaskFinished(outcome="succeeded", output=output), **scope)  # type: ignore[arg-type]
    thread = _put_later(runner, finished, 0.05)
    started = time.monotonic()
    run = runner.turn(run_id, 1.0)
    thread.join()
    assert run.status == s.RUN_SUCCEEDED, "the turn waited for the finish"
    assert time.monotonic() - started < 2.5, "the finish ended the gathering"
    assert _batches(runner) == before + 1


def test_an_urgent_report_is_stepped_at_once(
    dispatched: tuple[EmbeddedRunner, str, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, run_id, scope = dispatched
    monkeypatch.setattr(loop, "GATHER_S", 5.0)
    failed = ev.TaskFinished(outcome="failed", error_type="E", retryable=False)
    runner.inbox.put(Report((ev.Event.new(failed, **scope),)))  # type: ignore[arg-type]
    started = time.monotonic()
    run = runner.turn(run_id, 1.0)
    assert run.status == s.RUN_FAILED and time.monotonic() - started < 2.5


def test_only_patient_reports_wait_at_most_the_gathering_time(
    dispatched: tuple[EmbeddedRunner, str, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, run_id, scope = dispatched
    monkeypatch.setattr(loop, "GATHER_S", 0.2)
    runner.inbox.put(Report((ev.Event.new(ev.TaskStarted(worker_id="w"), **scope),)))  # type: ignore[arg-type]
    started = time.monotonic()
    runner.turn(run_id, 1.0)
    waited = time.monotonic() - started
    task = runner.state.task(run_id, "one")
    assert task is not None and task.status == s.RUNNING
    assert 0.15 <= waited < 2.0


def test_a_success_waits_while_the_pool_holds_a_backlog(
    dispatched: tuple[EmbeddedRunner, str, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a success makes ready would queue behind the backlog: no need to hurry."""
    runner, run_id, scope = dispatched
    monkeypatch.setattr(loop, "GATHER_S", 0.2)
    runner._pump.held.update(f"queued-{i}" for i in range(100))
    output = ev.OutputRef("inline:1", "json", 1)
    finished = ev.TaskFinished(outcome="succeeded", output=output)
    runner.inbox.put(Report((ev.Event.new(finished, **scope),)))  # type: ignore[arg-type]
    started = time.monotonic()
    run = runner.turn(run_id, 1.0)
    assert run.status == s.RUN_SUCCEEDED and time.monotonic() - started >= 0.15


def test_a_stop_asked_while_gathering_ends_the_gathering(
    dispatched: tuple[EmbeddedRunner, str, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, run_id, scope = dispatched
    monkeypatch.setattr(loop, "GATHER_S", 5.0)
    runner.inbox.put(Report((ev.Event.new(ev.TaskStarted(worker_id="w"), **scope),)))  # type: ignore[arg-type]
    timer = threading.Timer(0.05, runner.request_stop, args=(10.0,))
    timer.start()
    started = time.monotonic()
    runner.turn(run_id, 1.0)
    timer.join()
    assert time.monotonic() - started < 0.6  # not the 1 s the publish interval allows
