"""A result produced by an attempt the engine ended (timeout, cancel) never becomes the
task's result, directly or through the task's idempotency record."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from servo import Definitions, RetryPolicy, asset
from servo.engine import schema as s
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.sdk.context import AssetContext
from servo.storage.local import LocalObjectStore

FAST = {"heartbeat_interval_s": 0.1, "heartbeat_timeout_s": 1.0, "sweep_interval_s": 0.1}


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "home", fsync=False)


def test_late_results_of_timed_out_attempts_are_never_reused(store: LocalObjectStore) -> None:
    calls: list[int] = []

    @asset(timeout=0.3, retry=RetryPolicy(max_attempts=3, initial_delay=0.05, jitter=0))
    def always_slow(context: AssetContext) -> str:
        calls.append(context.attempt)
        time.sleep(0.45)  # past its timeout every time, but it does return a value
        return f"late {context.attempt}"

    with EmbeddedRunner(store, Definitions(assets=[always_slow]), RunnerOptions(**FAST)) as r:
        run_id = r.start_run().run_id
        run = r.wait(run_id)
        task = r.state.task(run_id, "always_slow")
    assert run.status == s.RUN_FAILED
    assert task is not None
    assert (task.status, task.error_type, task.attempt) == (s.FAILED, "timeout", 3)
    assert task.output_location is None
    assert calls == [1, 2, 3]  # every attempt ran: none reused an ended attempt's result


def test_cooperative_early_return_after_a_stop_is_not_a_success(
    store: LocalObjectStore,
) -> None:
    returned = threading.Event()

    @asset(timeout=0.2, retry=RetryPolicy(max_attempts=2, initial_delay=0.01, jitter=0))
    def polite(context: AssetContext) -> str:
        while not context.stop_requested:
            time.sleep(0.01)
        returned.set()
        return "partial"  # returned early because Servo asked it to stop

    with EmbeddedRunner(store, Definitions(assets=[polite]), RunnerOptions(**FAST)) as r:
        run_id = r.start_run().run_id
        run = r.wait(run_id)
        task = r.state.task(run_id, "polite")
        attempts = [
            a for a in r.state.rows("attempts") if a.run_id == run_id and a.end_kind is not None
        ]
    assert returned.is_set()
    assert run.status == s.RUN_FAILED
    assert task is not None and (task.status, task.error_type) == (s.FAILED, "timeout")
    assert task.attempt == 2 and task.output_location is None
    assert all(a.outcome == "failed" for a in attempts)
