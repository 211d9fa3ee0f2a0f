"""The runner's freshness watermark is the time up to which every report is folded."""

from __future__ import annotations

from pathlib import Path

import pytest

from servo import Definitions, asset
from servo.dispatch.base import EnqueueOutcome
from servo.engine import schema as s
from servo.engine.events import Event, TaskHeartbeat, TaskStarted
from servo.engine.report import Report
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.storage.local import LocalObjectStore


@asset
def one() -> int:
    return 1


def test_a_partial_drain_of_a_backlog_does_not_advance_the_watermark(tmp_path: Path) -> None:
    now = [1_000_000]
    store = LocalObjectStore(tmp_path / "home", fsync=False)
    with EmbeddedRunner(store, Definitions(assets=[one]), clock=lambda: now[0]) as runner:
        inbox = runner.inbox
        inbox.take()
        assert inbox.fresh_at == 1_000_000  # nothing queued: fresh up to now
        for _ in range(200):  # a backlog of reports, all put before t = 2 s
            inbox.put(Report())
        now[0] = 2_000_000
        inbox.take()  # takes at most a batch of them
        assert inbox.fresh_at == 1_000_000, "reports put before now are still queued"
        inbox.take()
        assert inbox.empty() and inbox.fresh_at == 2_000_000


def test_a_heartbeat_check_due_during_a_backlog_waits_for_the_backlog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check is due, the clock says so, but a heartbeat still queued behind a
    backlog would change its decision: it must wait instead of giving the attempt up."""
    now = [1_000_000]
    store = LocalObjectStore(tmp_path / "home", fsync=False)
    options = RunnerOptions(heartbeat_interval_s=5.0, heartbeat_timeout_s=30.0)
    with EmbeddedRunner(store, Definitions(assets=[one]), options, clock=lambda: now[0]) as runner:
        monkeypatch.setattr(runner.pool, "enqueue", lambda _: EnqueueOutcome.CREATED)
        run_id = runner.start_run().run_id
        runner.begin(run_id)
        runner.turn(run_id)  # dispatches the attempt (to no worker)
        task = runner.state.task(run_id, "one")
        assert task is not None and task.attempt_id is not None
        scope = {"tenant_id": "default", "workspace_id": "default", "run_id": run_id,
                 "task_key": "one", "attempt": 1, "attempt_id": task.attempt_id}  # fmt: skip
        started = Event.new(TaskStarted(worker_id="w"), emitted_at=now[0], **scope)
        runner.inbox.put(Report((started,)))
        runner.turn(run_id)  # requests the heartbeat check, due at 31 s
        for _ in range(200):  # a backlog; the heartbeat of 25 s waits behind it
            runner.inbox.put(Report())
        beat = Event.new(TaskHeartbeat(), emitted_at=25_000_000, **scope)
        runner.inbox.put(Report((beat,)))
        now[0] = 32_000_000
        runner.turn(run_id)  # takes part of the backlog: the due check waits
        task = runner.state.task(run_id, "one")
        assert task is not None and (task.status, task.attempt) == (s.RUNNING, 1)
        now[0] += 10_000  # the held-back check is delivered again
        runner.turn(run_id)  # the rest of the backlog and the heartbeat; the check
        # fires and finds the attempt healthy
        task = runner.state.task(run_id, "one")
        assert task is not None and (task.status, task.attempt) == (s.RUNNING, 1)
        assert task.heartbeat_at == 25_000_000
        checks = sorted((t.timer_id[-17:], t.status) for t in runner.state.rows("timers"))
        assert checks == [
            ("heartbeat_check.0", s.TIMER_FIRED), ("heartbeat_check.1", s.TIMER_SCHEDULED)
        ]  # fmt: skip
