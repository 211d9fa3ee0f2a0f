"""The runner hands its pool only PENDING outbox rows that are not in flight."""

from __future__ import annotations

from pathlib import Path

import pytest

from servo import Definitions, asset
from servo.dispatch.base import EnqueueOutcome
from servo.engine import schema as s
from servo.engine.ids import dispatch_id
from servo.engine.request import TaskRequest
from servo.runner import EmbeddedRunner
from servo.storage.local import LocalObjectStore


@asset
def one() -> int:
    return 1


def _runner_with_recorded_enqueues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[EmbeddedRunner, list[str], str]:
    """A runner whose pool records what it is handed (and runs nothing)."""
    runner = EmbeddedRunner(
        LocalObjectStore(tmp_path / "home", fsync=False), Definitions(assets=[one])
    )
    handed: list[str] = []

    def enqueue(request: TaskRequest) -> EnqueueOutcome:
        handed.append(request.dispatch_id)
        return EnqueueOutcome.CREATED

    monkeypatch.setattr(runner.pool, "enqueue", enqueue)
    run_id = runner.start_run().run_id
    runner.begin(run_id)
    return runner, handed, run_id


def _outbox_status(runner: EmbeddedRunner, run_id: str) -> str:
    (row,) = [r for r in runner.state.rows("dispatch_outbox") if r.run_id == run_id]
    return row.status


def _look_at_every_task_again(runner: EmbeddedRunner) -> None:
    """As a new reconciler would (after a restart): no change feed to go by."""
    runner._reconciler._feed = None


def test_an_enqueued_outbox_row_is_not_enqueued_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, handed, run_id = _runner_with_recorded_enqueues(tmp_path, monkeypatch)
    with runner:
        runner.turn(run_id)  # dispatches and hands the attempt over
        runner.turn(run_id)  # records that it did
        assert len(handed) == 1 and _outbox_status(runner, run_id) == s.OUTBOX_ENQUEUED
        # The pool let the attempt go without a report (held back by a stop); every
        # task is looked at again. Its row is ENQUEUED: only a PENDING row is handed.
        runner._pump.ended(handed)
        _look_at_every_task_again(runner)
        runner.turn(run_id)
        assert len(handed) == 1


def test_a_pending_outbox_row_in_flight_is_not_enqueued_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, handed, run_id = _runner_with_recorded_enqueues(tmp_path, monkeypatch)
    with runner:
        did = dispatch_id("default", "default", run_id, "one", 1)
        runner._pump.held.add(did)  # the pool holds the attempt already
        runner.turn(run_id)
        assert handed == [] and _outbox_status(runner, run_id) == s.OUTBOX_PENDING
        runner._pump.ended([did])
        _look_at_every_task_again(runner)
        runner.turn(run_id)
        runner.turn(run_id)
        assert handed == [did] and _outbox_status(runner, run_id) == s.OUTBOX_ENQUEUED
