"""A frozen worker process is killed once its heartbeats stop, so its slot is freed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servo.engine import schema as s

from .test_resilience import freezing_worker_runner, output


def test_a_frozen_worker_does_not_hold_the_only_slot_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, store, mark = freezing_worker_runner(tmp_path, monkeypatch, concurrency=1)
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
