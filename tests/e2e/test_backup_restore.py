"""``servo backup`` while a run writes, the run killed, ``servo restore`` into a new
home, and ``servo runs resume`` there finishes it: the assets that had finished are
not run again."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from servo.engine.ids import run_id_for_key

from ._cli import run, write
from .test_home_lock import DEFS, Servo, await_file, ran

pytestmark = pytest.mark.e2e


def test_a_restored_home_resumes_the_run_the_backup_caught_running(tmp_path: Path) -> None:
    defs = str(write(tmp_path / "defs.py", DEFS))
    env = {"EFFECTS": str(tmp_path / "effects.log"), "STARTED": str(tmp_path / "started"),
           "GO": str(tmp_path / "go")}  # fmt: skip
    home, copy, restored = tmp_path / "home", tmp_path / "backup", tmp_path / "restored"
    driver = Servo(tmp_path, "driver", ["materialize", "--defs", defs, "--home", str(home),
                                        "--idempotency-key", "k"], env)  # fmt: skip
    try:
        await_file(tmp_path / "started", driver)
        backed = run("backup", str(copy), "--home", str(home), "--json", **env)
        assert backed.returncode == 0, backed.stderr  # no lock: the run goes on meanwhile
        assert driver.proc.poll() is None
    finally:
        driver.proc.send_signal(signal.SIGKILL)
        driver.finish()
    assert json.loads(backed.stdout)["scopes"][0]["generation"] >= 1

    done = run("restore", str(copy), "--home", str(restored), "--defs", defs, **env)
    assert done.returncode == 0, done.stderr
    assert "servo runs resume" in done.stdout
    write(tmp_path / "go", "go")
    run_id = run_id_for_key("default", "default", "k")
    resumed = run("runs", "resume", run_id, "--home", str(restored), "--json", **env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["tasks"] == {
        "first": "succeeded",
        "slow": "succeeded",
        "last": "succeeded",
    }
    # first finished before the backup: its recorded result is reused, never re-run;
    # slow was running when the home was copied: it runs again in the restored home.
    assert ran(tmp_path / "effects.log") == {"first": 1, "slow": 2, "last": 1}
    checked = run("doctor", "--home", str(restored), "--json", **env)
    assert checked.returncode == 0, checked.stdout
    again = run("restore", str(copy), "--home", str(restored), **env)
    assert again.returncode == 2
    assert again.stderr.startswith(f"error: the Servo home {restored} is not empty"), again.stderr
