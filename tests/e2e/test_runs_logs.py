"""`servo runs logs`: what each attempt printed and logged, per asset and attempt."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from servo.engine.ids import run_id_for_key
from servo.engine.snapshot import SnapshotReader
from servo.storage.local import LocalObjectStore

from ._cli import COMMAND, run, write

pytestmark = pytest.mark.e2e

DEFS = """
import os, sys, time
from pathlib import Path
from servo import RetryPolicy, asset

BARRIER = Path(os.environ["BARRIER"])

def together(name):
    # Both assets run at once: each waits until the other has started.
    (BARRIER / name).touch()
    deadline = time.monotonic() + 20
    while len(list(BARRIER.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)

@asset
def left(context):
    together("left")
    for i in range(20):
        print(f"left says {i}")
        time.sleep(0.002)
    context.log.info("left done", lines=20)
    return 1

@asset
def right(context):
    together("right")
    for i in range(20):
        sys.stderr.write(f"right says {i}\\n")
        time.sleep(0.002)
    context.log.warning("right done", lines=20)
    return 2

@asset(retry=RetryPolicy(max_attempts=2, initial_delay=0.05, jitter=0))
def retried(context, left, right):
    print(f"attempt {context.attempt} starts")
    if context.attempt == 1:
        raise RuntimeError("first attempt fails")
    return left + right
"""


def materialize(tmp_path: Path, *extra: str) -> tuple[str, str]:
    defs = write(tmp_path / "defs.py", DEFS)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    home = str(tmp_path / "home")
    made = run("materialize", "--defs", str(defs), "--home", home, "--json", *extra,
               BARRIER=str(barrier))  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "says" not in made.stdout + made.stderr  # captured, not printed
    return home, json.loads(made.stdout)["run_id"]


def test_logs_of_concurrent_assets_and_of_each_attempt(tmp_path: Path) -> None:
    home, run_id = materialize(tmp_path, "--concurrency", "2")
    everything = run("runs", "logs", run_id, "--home", home)
    assert everything.returncode == 0, everything.stderr
    text = everything.stdout
    headers = [line for line in text.splitlines() if line.startswith("==> ")]
    assert headers == [
        "==> left (attempt 1, succeeded) <==",
        "==> right (attempt 1, succeeded) <==",
        "==> retried (attempt 1, failed) <==",
        "==> retried (attempt 2, succeeded) <==",
    ]
    left = text.split(headers[0])[1].split(headers[1])[0]
    right = text.split(headers[1])[1].split(headers[2])[0]
    assert [ln for ln in left.splitlines() if "says" in ln] == [f"left says {i}" for i in range(20)]
    assert [ln for ln in right.splitlines() if "says" in ln] == [
        f"right says {i}" for i in range(20)
    ]
    assert "left done" in left and "lines=20" in left and "right" not in left
    assert "[warning" in right and "right done" in right

    second = run("runs", "logs", run_id, "retried", "--attempt", "2", "--home", home)
    assert (second.returncode, second.stdout) == (0, "attempt 2 starts\n")
    both = run("runs", "logs", run_id, "retried", "--home", home).stdout
    as_json = json.loads(run("runs", "logs", run_id, "retried", "--home", home, "--json").stdout)
    assert as_json["logs"] == [
        {"asset": "retried", "attempt": 1, "status": "failed", "text": "attempt 1 starts\n"},
        {"asset": "retried", "attempt": 2, "status": "succeeded", "text": "attempt 2 starts\n"},
    ]
    assert both.count("==> retried") == 2 and "attempt 1 starts" in both

    missing = run("runs", "logs", run_id, "retried", "--attempt", "3", "--home", home)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: asset 'retried' of run") and "attempts 1, 2" in (
        missing.stderr
    )
    unknown = run("runs", "logs", run_id, "lefty", "--home", home)
    assert unknown.returncode == 2 and "did you mean 'left'?" in unknown.stderr


def test_logs_are_captured_in_worker_processes(tmp_path: Path) -> None:
    home, run_id = materialize(tmp_path, "--processes", "--concurrency", "2")
    left = run("runs", "logs", run_id, "left", "--home", home).stdout
    assert "left says 19" in left and "left done" in left
    right = run("runs", "logs", run_id, "right", "--attempt", "1", "--home", home).stdout
    assert right.startswith("right says 0\n") and "left" not in right


FOLLOWED = """
import os, time
from pathlib import Path
from servo import asset

GO = Path(os.environ["GO"])

@asset
def slow(context):
    print("first line", flush=True)
    deadline = time.monotonic() + 30
    while not GO.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    context.log.info("second line")
    return 1
"""


def _lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)
    into.put("")


def _run_is_published(home: Path, run_id: str) -> bool:
    reader = SnapshotReader(LocalObjectStore(home, fsync=False), "default", "default")
    return reader.load().run(run_id) is not None


def test_follow_prints_output_as_it_comes_until_the_run_ends(tmp_path: Path) -> None:
    defs = write(tmp_path / "defs.py", FOLLOWED)
    home, go = tmp_path / "home", tmp_path / "go"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVO_")}
    environ["GO"] = str(go)
    run_id = run_id_for_key("default", "default", "followed")
    driver = subprocess.Popen(
        [*COMMAND, "materialize", "--defs", str(defs), "--home", str(home), "--json",
         "--idempotency-key", "followed"],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    follower = None
    try:
        deadline = time.monotonic() + 30
        while not _run_is_published(home, run_id):
            assert time.monotonic() < deadline and driver.poll() is None, "run never published"
            time.sleep(0.05)
        follower = subprocess.Popen(
            [*COMMAND, "runs", "logs", run_id, "--follow", "--home", str(home)],
            env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert follower.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_lines, args=(follower.stdout, lines), daemon=True).start()
        seen: list[str] = []
        while "first line\n" not in seen:
            seen.append(lines.get(timeout=30))
            assert seen[-1], f"follow ended early: {seen}"
        assert seen[-2:] == ["==> slow (attempt 1) <==\n", "first line\n"]
        go.touch()
        assert follower.wait(30) == 0
        while line := lines.get(timeout=10):
            seen.append(line)
        assert "second line" in "".join(seen)
        assert driver.wait(30) == 0
    finally:
        for process in (driver, follower):
            if process is not None:
                if process.poll() is None:
                    process.kill()
                process.communicate(timeout=10)
