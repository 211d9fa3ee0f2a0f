"""A frozen worker process is killed once its heartbeats stop, so its slot is freed."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

from servo.dispatch.local import ProcessRuntimeSpec
from servo.engine import schema as s
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.sdk.loader import load_definitions
from servo.storage.local import LocalObjectStore

from .test_resilience import FAST, WORKER_DIES, output


def test_a_frozen_worker_does_not_hold_the_only_slot_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defs_file = tmp_path / "defs.py"
    defs_file.write_text(WORKER_DIES)
    mark = tmp_path / "frozen.pid"
    monkeypatch.setenv("SERVO_TEST_MARK", str(mark))
    home = tmp_path / "home"
    store = LocalObjectStore(home, fsync=False)
    spec = ProcessRuntimeSpec(
        str(defs_file), partial(LocalObjectStore, home, fsync=False), heartbeat_interval_s=0.1
    )
    options = RunnerOptions(pool="process", concurrency=1, process_spec=spec, **FAST)
    runner = EmbeddedRunner(store, load_definitions(str(defs_file)), options)
    try:
        run_id = runner.start_run().run_id
        run = runner.wait(run_id)
        victim = runner.state.task(run_id, "victim")
        value = output(runner, store, run_id, "downstream")
        frozen = int(mark.read_text())
    finally:
        runner.close()
    assert run.status == s.RUN_SUCCEEDED
    # attempt 2 may have waited in the pool behind the frozen worker: lost with it, free
    assert victim is not None and victim.attempt in (2, 3)
    assert value == f"attempt {victim.attempt} then downstream"
    with pytest.raises(ProcessLookupError):  # killed, not left stopped
        os.kill(frozen, 0)
