"""Two ``servo`` processes on one home: one drives runs, the other is refused at once.

Each asset appends ``ran NAME`` to the effects log, so the log tells how many times
each really ran. The slow asset waits for a GO file the test writes, so every step
below happens while the first process is known to be running it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from servo.engine.ids import run_id_for_key

from ._cli import COMMAND, run, write

pytestmark = pytest.mark.e2e

EXIT_BUSY = 75

DEFS = """
import os, time
from pathlib import Path
from servo import asset

def _ran(name):
    with open(os.environ["EFFECTS"], "a") as log:
        log.write(f"ran {name}\\n")

@asset
def first():
    _ran("first")
    return 1

@asset
def slow(first):
    _ran("slow")
    Path(os.environ["STARTED"]).write_text("started")
    go = Path(os.environ["GO"])
    deadline = time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return first + 1

@asset
def last(slow):
    _ran("last")
    return slow + 1
"""

#: Injected with PYTHONPATH into one process: once that process has read the run's
#: state and is about to drive it, it says so and waits for the test (a seam to hit
#: the window between reading the state and taking the run's lock, every time).
PAUSE_BEFORE_DRIVING = """
import os, time
from pathlib import Path
if os.environ.get("PAUSED"):
    import servo.runner.loop as runner

    drive = runner.EmbeddedRunner.wait

    def wait(self, run_id, on_progress=None):
        Path(os.environ["PAUSED"]).write_text("paused")
        while not Path(os.environ["RESUME"]).exists():
            time.sleep(0.01)
        return drive(self, run_id, on_progress)

    runner.EmbeddedRunner.wait = wait
"""


class Servo:
    """A ``servo`` command in the background."""

    def __init__(self, tmp: Path, name: str, args: list[str], env: dict[str, str]) -> None:
        self.out, self.err = tmp / f"{name}.out", tmp / f"{name}.err"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVO_")}
        environ.update(env)
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen([*COMMAND, *args], env=environ, stdout=out, stderr=err)

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return code, self.out.read_text(), self.err.read_text()


def await_file(path: Path, *procs: Servo) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < deadline, f"timed out waiting for {path.name}"
        for proc in procs:
            assert proc.proc.poll() is None, proc.err.read_text()
        time.sleep(0.01)


def ran(effects: Path) -> Counter[str]:
    lines = effects.read_text().splitlines() if effects.exists() else []
    return Counter(line.split()[1] for line in lines)


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Any]:
    defs = write(tmp_path / "defs.py", DEFS)
    env = {"EFFECTS": str(tmp_path / "effects.log"), "STARTED": str(tmp_path / "started"),
           "GO": str(tmp_path / "go")}  # fmt: skip
    return {"tmp": tmp_path, "defs": str(defs), "home": str(tmp_path / "home"), "env": env}


def test_a_second_process_is_refused_while_reads_still_work(
    setup: dict[str, Any],
) -> None:
    tmp, defs, home, env = setup["tmp"], setup["defs"], setup["home"], setup["env"]
    first = Servo(tmp, "first", ["materialize", "--defs", defs, "--home", home, "--json",
                                 "--idempotency-key", "k"], env)  # fmt: skip
    run_id = run_id_for_key("default", "default", "k")
    try:
        await_file(tmp / "started", first)
        holder = f"error: another servo process (pid {first.proc.pid}: servo materialize) is "
        for args in (
            ["materialize", "--defs", defs],  # another run
            ["materialize", "--defs", defs, "--idempotency-key", "k", "--json"],  # the same
            ["runs", "resume", run_id, "--defs", defs],
            ["gc", "--keep-runs", "0"],
        ):
            refused = run(*args, "--home", home, timeout=15, **env)
            if "--json" in args:
                assert refused.returncode == EXIT_BUSY, refused.stderr
                assert json.loads(refused.stdout)["error"] == "home_busy"
                continue
            assert refused.returncode == EXIT_BUSY, (args, refused.stdout, refused.stderr)
            assert refused.stderr.startswith(holder), refused.stderr
            assert "Traceback" not in refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        for args in (["runs", "list"], ["runs", "show", run_id]):
            read = run(*args, "--home", home, **env)
            assert read.returncode == 0, (args, read.stdout, read.stderr)
        write(tmp / "go", "go")
        code, out, err = first.finish()
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
    assert code == 0, err
    assert json.loads(out)["status"] == "succeeded"
    assert ran(tmp / "effects.log") == {"first": 1, "slow": 1, "last": 1}


def test_the_same_run_is_never_taken_over_from_stale_state(setup: dict[str, Any]) -> None:
    """A second driver of the same keyed run reads the state while the first drives
    it; the first then finishes. Without the home lock the second takes the run over
    from what it read, gives the finished attempt up as an orphan and runs it again."""
    tmp, defs, home, env = setup["tmp"], setup["defs"], setup["home"], setup["env"]
    write(tmp / "sitecustomize.py", PAUSE_BEFORE_DRIVING)
    args = ["materialize", "--defs", defs, "--home", home, "--json", "--idempotency-key", "k"]
    first = Servo(tmp, "first", args, env)
    try:
        await_file(tmp / "started", first)
        path = os.pathsep.join([str(tmp), os.environ.get("PYTHONPATH", "")])
        second = Servo(tmp, "second", args, {**env, "PYTHONPATH": path,
                       "PAUSED": str(tmp / "paused"), "RESUME": str(tmp / "resume")})  # fmt: skip
        deadline = time.monotonic() + 30
        while not (tmp / "paused").exists() and second.proc.poll() is None:
            assert time.monotonic() < deadline, "the second process neither paused nor ended"
            time.sleep(0.01)
        write(tmp / "go", "go")
        assert first.finish()[0] == 0
        write(tmp / "resume", "resume")
        code, _, err = second.finish()
    finally:
        for proc in (first.proc, *([second.proc] if "second" in locals() else [])):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
    assert code == EXIT_BUSY, err
    assert ran(tmp / "effects.log") == {"first": 1, "slow": 1, "last": 1}
    shown = run("runs", "show", run_id_for_key("default", "default", "k"), "--home", home,
                "--json", **env)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    attempts = {a["asset"]: len(a["attempts"]) for a in json.loads(shown.stdout)["assets"]}
    assert attempts == {"first": 1, "slow": 1, "last": 1}
