"""`servo materialize` and `servo runs` through the real command in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from servo.engine.snapshot import SnapshotReader
from servo.sdk.io import read_value
from servo.storage.local import LocalObjectStore

from ._cli import COMMAND, QUICKSTART, run, write

pytestmark = pytest.mark.e2e

# Each asset appends "<name>" to effects.log once its work is done, so the file
# counts how many times each asset really ran.
COUNTING = """
import os, time
from pathlib import Path
from servo import asset

LOG = Path(os.environ["EFFECTS"])
PAUSE = float(os.environ.get("PAUSE", "0"))

def effect(name, value):
    with LOG.open("a") as f:
        f.write(f"started {name}\\n")
    time.sleep(PAUSE)
    with LOG.open("a") as f:
        f.write(f"done {name}\\n")
    return value

@asset
def a():
    return effect("a", 1)

@asset
def b(a):
    return effect("b", a * 10)

@asset
def c(a):
    return effect("c", a + 5)

@asset
def d(b, c):
    return effect("d", {"b": b, "c": c, "sum": b + c})

@asset
def e(d):
    return effect("e", d["sum"] * 2)

@asset
def f(e):
    return effect("f", e + 1)
"""


def done_counts(log: Path) -> Counter[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(line.split()[1] for line in lines if line.startswith("done "))


def stored_values(home: Path, run_id: str) -> dict[str, object]:
    store = LocalObjectStore(home, fsync=False)
    out = {}
    for task in SnapshotReader(store, "default", "default").load().tasks_of(run_id):
        if task.output_location and task.output_format:
            out[task.task_key] = read_value(store, task.output_location, task.output_format)
    return out


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    defs = write(tmp_path / "defs.py", COUNTING)
    log = tmp_path / "effects.log"
    return defs, log, {"EFFECTS": str(log)}


def test_quickstart_materializes_with_zero_services(tmp_path: Path) -> None:
    result = run("materialize", "--defs", str(QUICKSTART), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["status"] == "succeeded"
    assert set(payload["tasks"].values()) == {"succeeded"}
    report = stored_values(tmp_path / ".servo", payload["run_id"])["sales_report"]
    assert isinstance(report, str) and "revenue" in report.lower()


def test_values_flow_through_a_diamond(
    tmp_path: Path, project: tuple[Path, Path, dict[str, str]]
) -> None:
    defs, log, env = project
    home = tmp_path / "home"
    result = run("materialize", "--defs", str(defs), "--home", str(home), "--json", **env)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["tasks"] == dict.fromkeys("abcdef", "succeeded")
    values = stored_values(home, payload["run_id"])
    assert values["d"] == {"b": 10, "c": 6, "sum": 16}
    assert values["f"] == 33
    assert done_counts(log) == Counter("abcdef")


def test_failing_asset_skips_downstream_and_exits_1(tmp_path: Path) -> None:
    defs = write(
        tmp_path / "defs.py",
        "from servo import asset\n\n"
        "@asset\ndef root():\n    return 1\n\n"
        "@asset\ndef broken(root):\n    raise RuntimeError('upstream API said no')\n\n"
        "@asset\ndef after(broken):\n    return broken\n\n"
        "@asset\ndef independent(root):\n    return root + 1\n",
    )
    result = run("materialize", "--defs", str(defs), "--home", str(tmp_path / "h"), "--json")
    assert result.returncode == 1, result.stderr
    payload = json.loads(result.stdout)
    assert payload["status"] == "failed"
    assert payload["tasks"] == {
        "root": "succeeded", "broken": "failed", "after": "skipped", "independent": "succeeded"
    }  # fmt: skip
    assert payload["errors"]["broken"] == {
        "type": "RuntimeError",
        "message": "upstream API said no",
    }
    table = run("materialize", "--defs", str(defs), "--home", str(tmp_path / "h2"))
    assert table.returncode == 1
    assert "upstream API said no" in table.stdout


def test_repeated_idempotency_key_after_success_runs_nothing(
    tmp_path: Path, project: tuple[Path, Path, dict[str, str]]
) -> None:
    defs, log, env = project
    args = ("materialize", "--defs", str(defs), "--home", str(tmp_path / "h"), "--json",
            "--idempotency-key", "daily-2026-11-22")  # fmt: skip
    first = run(*args, **env)
    second = run(*args, **env)
    assert first.returncode == second.returncode == 0, second.stderr
    assert json.loads(first.stdout)["run_id"] == json.loads(second.stdout)["run_id"]
    assert done_counts(log) == Counter("abcdef")


def test_kill_9_mid_run_then_resume_runs_no_succeeded_asset_twice(
    tmp_path: Path, project: tuple[Path, Path, dict[str, str]]
) -> None:
    defs, log, env = project
    home = tmp_path / "h"
    args = ["materialize", "--defs", str(defs), "--home", str(home), "--json",
            "--idempotency-key", "crash-test"]  # fmt: skip
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVO_")}
    environ.update(env, PAUSE="0.3")
    victim = subprocess.Popen(
        [*COMMAND, *args], env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        # Kill while "e" is working: a..d are done and recorded, e is mid-flight.
        while "started e" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the run never reached asset e"
            assert victim.poll() is None, "the run ended before it could be killed"
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.wait(timeout=10)
    assert victim.returncode == -signal.SIGKILL
    assert done_counts(log) == Counter("abcd")

    resumed = run(*args, timeout=60, **env)
    assert resumed.returncode == 0, resumed.stderr
    payload = json.loads(resumed.stdout)
    assert payload["tasks"] == dict.fromkeys("abcdef", "succeeded")
    assert done_counts(log) == Counter("abcdef")  # no succeeded asset ran twice
    assert stored_values(home, payload["run_id"])["f"] == 33


def test_runs_list_and_show_read_the_home(
    tmp_path: Path, project: tuple[Path, Path, dict[str, str]]
) -> None:
    defs, _, env = project
    home = str(tmp_path / "h")
    made = json.loads(
        run("materialize", "--defs", str(defs), "--home", home, "--json", **env).stdout
    )
    listed = json.loads(run("runs", "list", "--home", home, "--json").stdout)
    assert [r["run_id"] for r in listed["runs"]] == [made["run_id"]]
    assert listed["runs"][0]["succeeded"] == 6
    shown = json.loads(run("runs", "show", made["run_id"], "--home", home, "--json").stdout)
    assert shown["tasks"] == made["tasks"]
    missing = run("runs", "show", "nope", "--home", home)
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr


def test_home_defaults_to_servo_home(
    tmp_path: Path, project: tuple[Path, Path, dict[str, str]]
) -> None:
    defs, _, env = project
    result = run(
        "materialize",
        "--defs",
        str(defs),
        "--json",
        cwd=tmp_path,
        SERVO_HOME=str(tmp_path / "elsewhere"),
        **env,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "elsewhere" / "ledger").is_dir()
    assert not (tmp_path / ".servo").exists()


def test_unknown_selection_is_a_usage_error(tmp_path: Path) -> None:
    result = run("materialize", "nope", "--defs", str(QUICKSTART), "--home", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "nope" in result.stderr
