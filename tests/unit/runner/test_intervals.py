"""The runner's intervals run on the clock it is given, not on sleeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from servo import Definitions, asset
from servo.dispatch.base import EnqueueOutcome
from servo.engine.cancellation import request_cancel
from servo.engine.ledger import LedgerWriter
from servo.runner import EmbeddedRunner, RunnerOptions, loop
from servo.runner.publishing import MAX_DELAY, TIMER_HORIZON_US, Publishing
from servo.storage.local import LocalObjectStore


@asset
def one() -> int:
    return 1


def test_a_cancel_written_elsewhere_is_seen_at_the_next_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mono = [1_000.0]
    store = LocalObjectStore(tmp_path / "home", fsync=False)
    options = RunnerOptions(sweep_interval_s=2.0)
    with EmbeddedRunner(
        store, Definitions(assets=[one]), options, monotonic=lambda: mono[0]
    ) as runner:
        monkeypatch.setattr(runner.pool, "enqueue", lambda _: EnqueueOutcome.CREATED)
        run_id = runner.start_run().run_id
        runner.begin(run_id)
        runner.turn(run_id)  # the first turn sweeps
        request_cancel(LedgerWriter(store, "default", "default"), run_id, "elsewhere", 1)
        mono[0] += 1.9
        assert runner.turn(run_id).cancel_requested_at is None, "no sweep before 2 s"
        mono[0] += 0.2
        assert runner.turn(run_id).cancel_requested_at is not None


def test_a_periodic_publish_waits_for_its_interval_and_a_timer_about_to_fire() -> None:
    mono = [100.0]
    publishing = Publishing(1.0, monotonic=lambda: mono[0])
    publishing.published(lambda: pytest.fail("no listener, no snapshot"))
    mono[0] += 0.5
    assert not publishing.due(None)
    mono[0] += 0.6
    assert publishing.due(None)
    assert not publishing.due(TIMER_HORIZON_US - 1), "a timer fires first"
    mono[0] += MAX_DELAY
    assert publishing.due(0), "but not for ever"


@asset
def two() -> int:
    return 2


@asset
def three() -> int:
    return 3


def test_a_sweep_of_many_tasks_spaces_the_next_by_their_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sweeping costs a pass over the tasks in flight: on a huge run the sweeps are
    spaced by the number examined, so they stay a small share of the loop."""
    mono = [1_000.0]
    monkeypatch.setattr(loop, "SWEEP_SPACING_PER_TASK_S", 1.0)  # 3 tasks -> 3 s
    store = LocalObjectStore(tmp_path / "home", fsync=False)
    options = RunnerOptions(sweep_interval_s=1.0)
    definitions = Definitions(assets=[one, two, three])
    with EmbeddedRunner(store, definitions, options, monotonic=lambda: mono[0]) as runner:
        monkeypatch.setattr(runner.pool, "enqueue", lambda _: EnqueueOutcome.CREATED)
        run_id = runner.start_run().run_id
        runner.begin(run_id)
        runner.turn(run_id)  # dispatches the three roots
        runner.turn(run_id, sweep=True)  # examines the three DISPATCHED tasks
        request_cancel(LedgerWriter(store, "default", "default"), run_id, "elsewhere", 1)
        mono[0] += 2.5
        assert runner.turn(run_id).cancel_requested_at is None, "spaced 3 s, not 1 s"
        mono[0] += 0.6
        assert runner.turn(run_id).cancel_requested_at is not None
