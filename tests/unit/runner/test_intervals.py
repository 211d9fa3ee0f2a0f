"""The runner's intervals run on the clock it is given, not on sleeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from servo import Definitions, asset
from servo.dispatch.base import EnqueueOutcome
from servo.engine.cancellation import request_cancel
from servo.engine.ledger import LedgerWriter
from servo.runner import EmbeddedRunner, RunnerOptions
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
