"""Timeouts, missed heartbeats and cancellation, through the embedded runner."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from servo import AssetDep, Definitions, RetryPolicy, asset
from servo.dispatch.local import ProcessRuntimeSpec
from servo.engine import schema as s
from servo.engine.cancellation import request_cancel
from servo.engine.ledger import LedgerWriter
from servo.observability import metrics
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.sdk.context import AssetContext
from servo.sdk.io import read_value
from servo.sdk.loader import load_definitions
from servo.storage.local import LocalObjectStore

FAST = {"heartbeat_interval_s": 0.1, "heartbeat_timeout_s": 1.0, "sweep_interval_s": 0.1}


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "home", fsync=False)


def output(runner: EmbeddedRunner, store: LocalObjectStore, run_id: str, key: str) -> object:
    task = runner.state.task(run_id, key)
    assert task is not None and task.output_location and task.output_format
    return read_value(store, task.output_location, task.output_format)


def test_hanging_asset_is_timed_out_retried_and_its_late_success_rejected(
    store: LocalObjectStore,
) -> None:
    attempts: list[int] = []
    first_may_finish = threading.Event()

    @asset(timeout=0.3, retry=RetryPolicy(max_attempts=2, initial_delay=0.01, jitter=0))
    def hangs(context: AssetContext) -> str:
        attempts.append(context.attempt)
        if context.attempt == 1:
            first_may_finish.wait(5)  # hangs past its timeout, then "succeeds" late
            return "late"
        return "fresh"

    stale_before = metrics.sample("servo_stale_events_rejected_total")
    with EmbeddedRunner(store, Definitions(assets=[hangs]), RunnerOptions(**FAST)) as runner:
        run_id = runner.start_run().run_id
        run = runner.wait(run_id)
        first_may_finish.set()
        time.sleep(0.2)  # the late success arrives...
        runner.turn(run_id)
        task = runner.state.task(run_id, "hangs")
        value = output(runner, store, run_id, "hangs")
    assert run.status == s.RUN_SUCCEEDED
    assert task is not None and task.attempt == 2
    assert value == "fresh" and attempts == [1, 2]
    assert metrics.sample("servo_attempts_timed_out_total", {"reason": "timeout"}) >= 1
    assert metrics.sample("servo_stale_events_rejected_total") > stale_before


def test_timeout_without_retry_fails_the_asset(store: LocalObjectStore) -> None:
    @asset(timeout=0.2)
    def slow(context: AssetContext) -> str:
        for _ in range(100):
            if context.stop_requested:  # Servo asked it to stop: return early
                return "stopped"
            time.sleep(0.02)
        return "done"

    with EmbeddedRunner(store, Definitions(assets=[slow]), RunnerOptions(**FAST)) as runner:
        run_id = runner.start_run().run_id
        run = runner.wait(run_id)
        task = runner.state.task(run_id, "slow")
    assert run.status == s.RUN_FAILED
    assert task is not None and (task.status, task.error_type) == (s.FAILED, "timeout")


WORKER_DIES = """
import os, signal
from pathlib import Path
from servo import asset

MARK = Path(os.environ["SERVO_TEST_MARK"])

@asset
def victim(context):
    if context.attempt == 1:
        MARK.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGSTOP)  # the worker freezes: no more heartbeats
    return f"attempt {context.attempt}"

@asset
def downstream(victim):
    return victim + " then downstream"
"""


def freezing_worker_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, concurrency: int
) -> tuple[EmbeddedRunner, LocalObjectStore, Path]:
    """A process-pool runner over `WORKER_DIES`; the frozen worker's pid lands in the
    returned mark file."""
    defs_file = tmp_path / "defs.py"
    defs_file.write_text(WORKER_DIES)
    mark = tmp_path / "frozen.pid"
    monkeypatch.setenv("SERVO_TEST_MARK", str(mark))
    home = tmp_path / "home"
    store = LocalObjectStore(home, fsync=False)
    spec = ProcessRuntimeSpec(
        str(defs_file), partial(LocalObjectStore, home, fsync=False), heartbeat_interval_s=0.1
    )
    options = RunnerOptions(pool="process", concurrency=concurrency, process_spec=spec, **FAST)
    return EmbeddedRunner(store, load_definitions(str(defs_file)), options), store, mark


def test_worker_that_dies_mid_task_is_redispatched_after_missed_heartbeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, store, mark = freezing_worker_runner(tmp_path, monkeypatch, concurrency=2)
    try:
        run_id = runner.start_run().run_id
        run = runner.wait(run_id)
        victim = runner.state.task(run_id, "victim")
        value = output(runner, store, run_id, "downstream")
    finally:
        if mark.exists():
            with contextlib.suppress(ProcessLookupError):  # the runner killed it already
                os.kill(int(mark.read_text()), signal.SIGKILL)
        runner.close()
    assert run.status == s.RUN_SUCCEEDED
    # killing the frozen worker breaks its pool: attempt 2 may be lost with it, free
    assert victim is not None and victim.attempt in (2, 3)
    assert value == f"attempt {victim.attempt} then downstream"


def test_cancel_stops_running_attempts_and_cancels_downstream(store: LocalObjectStore) -> None:
    started = threading.Event()
    saw_stop: list[bool] = []

    @asset
    def quick() -> int:
        return 7

    # `quick` has ended before `long_running` starts (a control edge), so the cancel
    # cannot catch it in flight on a loaded machine.
    @asset(dependencies=[AssetDep("quick", type="control")])
    def long_running(context: AssetContext) -> int:
        started.set()
        for _ in range(500):
            if context.stop_requested:
                saw_stop.append(True)
                return -1
            time.sleep(0.01)
        return 1

    @asset
    def after(long_running: int) -> int:
        return long_running + 1

    defs = Definitions(assets=[long_running, after, quick])
    with EmbeddedRunner(store, defs, RunnerOptions(**FAST)) as runner:
        run_id = runner.start_run().run_id
        canceller = threading.Timer(0.0, lambda: (started.wait(5), runner.cancel(run_id, "user")))
        canceller.start()
        run = runner.wait(run_id)
        canceller.join()
        statuses = {t.task_key: t.status for t in runner.state.tasks_of(run_id)}
    assert run.status == s.RUN_CANCELLED
    assert statuses == {"long_running": s.CANCELLED, "after": s.CANCELLED, "quick": s.SUCCEEDED}
    assert saw_stop == [True]


def test_cancel_written_by_another_process_is_picked_up(store: LocalObjectStore) -> None:
    release = threading.Event()

    @asset
    def waits() -> int:
        release.wait(10)
        return 1

    with EmbeddedRunner(store, Definitions(assets=[waits]), RunnerOptions(**FAST)) as runner:
        run_id = runner.start_run().run_id
        other = LedgerWriter(store, "default", "default")  # e.g. `servo runs cancel`
        threading.Timer(0.3, lambda: request_cancel(other, run_id, "from cli", 0)).start()
        run = runner.wait(run_id)
        release.set()
    assert run.status == s.RUN_CANCELLED
