"""Worker processes and the pool's manager dying under the real `servo materialize --processes`.

A crashing asset is blamed alone (its worker's exit code names it); attempts that
shared the broken pool are redelivered without using their budget; a killed pool
manager is noticed and replaced, and the run finishes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from servo.engine.snapshot import SnapshotReader
from servo.storage.local import LocalObjectStore

from ._cli import COMMAND, write

pytestmark = pytest.mark.e2e

#: `crasher` exits its worker process (code 1) once `innocent` runs beside it.
CRASH = """
import os
import time
from pathlib import Path
from servo import asset

ROOT = Path({root!r})


@asset
def innocent():
    (ROOT / f"innocent-{{os.getpid()}}-{{time.monotonic_ns()}}").touch()
    time.sleep(1.0)
    return 1


@asset
def crasher():
    deadline = time.monotonic() + 10
    while not any(ROOT.glob("innocent-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    os._exit(1)
"""

#: `first` waits for the harness to kill the pool's manager, then both finish.
MANAGER_KILL = """
import time
from pathlib import Path
from servo import asset

ROOT = Path({root!r})


@asset
def first():
    (ROOT / "first-started").touch()
    deadline = time.monotonic() + 20
    while not (ROOT / "manager-killed").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return 1


@asset
def second(first):
    return first + 1


@asset
def third(second):
    return second + 1
"""


def _attempts(home: Path, run_id: str) -> dict[str, list[tuple[int, str | None, str | None]]]:
    snapshot = SnapshotReader(LocalObjectStore(home), "default", "default").load()
    found: dict[str, list[tuple[int, str | None, str | None]]] = {}
    for row in sorted(snapshot.rows("attempts"), key=lambda r: r.attempt):
        if row.run_id == run_id:
            found.setdefault(row.task_key, []).append((row.attempt, row.outcome, row.error_type))
    return found


def _children(parent: int) -> dict[int, str]:
    """Descendants' comm names by pid (Linux /proc)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent:
            found[int(entry.name)] = stat[stat.index("(") + 1 : stat.rindex(")")]
    return found


def test_a_crashing_asset_fails_alone_and_the_innocent_one_keeps_its_budget(
    tmp_path: Path,
) -> None:
    defs = write(tmp_path / "defs.py", CRASH.format(root=str(tmp_path)))
    home = tmp_path / "home"
    result = subprocess.run(
        [*COMMAND, "materialize", "--defs", str(defs), "--home", str(home), "--json",
         "--processes", "--concurrency", "2"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    payload = json.loads(result.stdout)
    assert payload["tasks"] == {"crasher": "failed", "innocent": "succeeded"}, payload
    error = payload["errors"]["crasher"]
    assert error["type"] == "worker_lost"
    assert error["message"] == "worker process exited with code 1 while running crasher"
    attempts = _attempts(home, payload["run_id"])
    assert [a[2] for a in attempts["crasher"]] == ["worker_lost"] * 4  # 1 + 3 redeliveries
    innocent = attempts["innocent"]
    assert innocent[-1][1] == "succeeded"
    assert all(a[2] != "worker_lost" for a in innocent), innocent


def test_a_killed_pool_manager_is_replaced_and_the_run_finishes(tmp_path: Path) -> None:
    defs = write(tmp_path / "defs.py", MANAGER_KILL.format(root=str(tmp_path)))
    home = tmp_path / "home"
    command = [*COMMAND, "materialize", "--defs", str(defs), "--home", str(home), "--json",
               "--processes", "--concurrency", "2"]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "first-started").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the first asset never started"
            time.sleep(0.02)
        managers = [pid for pid, name in _children(process.pid).items() if name == "servo-manager"]
        assert len(managers) == 1, _children(process.pid)
        os.kill(managers[0], signal.SIGKILL)
        (tmp_path / "manager-killed").touch()
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, err
    payload = json.loads(out)
    assert payload["tasks"] == dict.fromkeys(("first", "second", "third"), "succeeded"), payload
    attempts = _attempts(home, payload["run_id"])
    assert all(a[2] != "worker_lost" for rows in attempts.values() for a in rows), attempts
