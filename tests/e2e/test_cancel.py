"""`servo runs cancel` stops a run that `servo materialize` drives in another process,
and ends at once a run that no live process drives."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from servo.engine.ids import run_id_for_key

from ._cli import COMMAND, run, write

pytestmark = pytest.mark.e2e

DEFS = """
import os, time
from pathlib import Path
from servo import asset

MARK = Path(os.environ["MARK"])

@asset
def quick():
    return 1

@asset
def long_running(context, quick):
    MARK.write_text("started")
    for _ in range(3000):
        if context.stop_requested:
            return -1
        time.sleep(0.01)
    return quick

@asset
def after(long_running):
    return long_running
"""


def test_cancel_stops_a_running_materialize(tmp_path: Path) -> None:
    defs = write(tmp_path / "defs.py", DEFS)
    mark = tmp_path / "started"
    home = tmp_path / "home"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVO_")}
    environ["MARK"] = str(mark)
    driver = subprocess.Popen(
        [*COMMAND, "materialize", "--defs", str(defs), "--home", str(home), "--json",
         "--idempotency-key", "to-cancel"],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not mark.exists():
            assert time.monotonic() < deadline and driver.poll() is None, "never started"
            time.sleep(0.02)
        run_id = run_id_for_key("default", "default", "to-cancel")
        busy = run("runs", "resume", run_id, "--home", str(home), MARK=str(mark))
        assert busy.returncode == 75  # one driver per home (the home lock)
        assert f"error: another servo process (pid {driver.pid}: " in busy.stderr
        cancelled = run("runs", "cancel", run_id, "--home", str(home), "--json")
        assert cancelled.returncode == 0, cancelled.stderr
        assert json.loads(cancelled.stdout)["cancel"] == "requested"
        out, err = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 1, err
    payload = json.loads(out)
    assert payload["status"] == "cancelled"
    assert payload["tasks"] == {"quick": "succeeded", "long_running": "cancelled",
                                "after": "cancelled"}  # fmt: skip
    again = run("runs", "cancel", run_id, "--home", str(home), "--json")
    assert again.returncode == 1  # a finished run: nothing to cancel
    assert json.loads(again.stdout) == {"run_id": run_id, "cancel": "finished",
                                        "status": "cancelled"}  # fmt: skip
    said = run("runs", "cancel", run_id, "--home", str(home))
    assert said.returncode == 1 and "already finished (cancelled)" in said.stdout
    missing = run("runs", "cancel", "nope", "--home", str(home))
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr
