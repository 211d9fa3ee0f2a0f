"""The run lifecycle through the real ``servo``: Ctrl-C/SIGTERM, resume, cancel, retry.

Each asset of COUNTING appends "started X" and "done X" to the effects log, so the
log tells how many times each asset really ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from servo.engine.ids import run_id_for_key

from ._cli import COMMAND, QUICKSTART, run, run_json, write
from .test_materialize import COUNTING, done_counts, stored_values

pytestmark = pytest.mark.e2e


def started_counts(log: Path) -> Counter[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(line.split()[1] for line in lines if line.startswith("started "))


def await_condition(check: Callable[[], bool], what: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert proc.poll() is None, f"the run ended before {what}"
        time.sleep(0.02)


class Driver:
    """`servo materialize` in the background, stdout and stderr going to files."""

    def __init__(self, tmp: Path, args: list[str], env: dict[str, str], **popen: Any) -> None:
        self.out, self.err = tmp / "driver.out", tmp / "driver.err"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVO_")}
        environ.update(env)
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [*COMMAND, "materialize", *args], env=environ, stdout=out, stderr=err, **popen
            )

    def stderr(self) -> str:
        return self.err.read_text()

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return code, self.out.read_text(), self.stderr()


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(definitions, effects log, home)."""
    return write(tmp_path / "defs.py", COUNTING), tmp_path / "effects.log", tmp_path / "home"


def no_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warn" in line.lower()]


def test_sigint_lets_running_assets_finish_then_resume_runs_the_rest_once(
    tmp_path: Path, project: tuple[Path, Path, Path]
) -> None:
    defs, log, home = project
    env = {"EFFECTS": str(log), "PAUSE": "0.5"}
    driver = Driver(tmp_path, ["--defs", str(defs), "--home", str(home), "--json"], env)
    await_condition(lambda: {"b", "c"} <= set(started_counts(log)), "b and c", driver.proc)
    driver.proc.send_signal(signal.SIGINT)
    code, out, err = driver.finish()
    assert code == 130, err
    payload = json.loads(out)
    run_id = payload["run_id"]
    resume = f"servo runs resume {run_id} --home {home}"
    assert payload["status"] == "running" and payload["interrupted"] is True
    assert payload["resume"] == resume and resume in err
    # b and c were running: they finished within the grace period; d never started.
    assert done_counts(log) == Counter("abc") and "d" not in started_counts(log)
    assert payload["tasks"]["b"] == payload["tasks"]["c"] == "succeeded"

    resumed = run("runs", "resume", run_id, "--home", str(home), "--json", EFFECTS=str(log))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["tasks"] == dict.fromkeys("abcdef", "succeeded")
    assert done_counts(log) == Counter("abcdef")  # every asset ran exactly once
    assert started_counts(log) == Counter("abcdef")
    assert stored_values(home, run_id)["f"] == 33
    assert no_warnings(resumed.stderr) == []


def test_sigterm_after_the_grace_period_leaves_the_attempt_for_resume(
    tmp_path: Path, project: tuple[Path, Path, Path]
) -> None:
    defs, log, home = project
    env = {"EFFECTS": str(log), "PAUSE": "30"}
    args = ["--defs", str(defs), "--home", str(home), "--grace", "0.3",
            "--idempotency-key", "nightly"]  # fmt: skip
    driver = Driver(tmp_path, args, env)
    await_condition(lambda: "a" in started_counts(log), "a", driver.proc)
    sent = time.monotonic()
    driver.proc.send_signal(signal.SIGTERM)
    code, out, err = driver.finish()
    assert code == 130, err
    assert time.monotonic() - sent < 10  # the grace period, not the asset's 30 s
    run_id = run_id_for_key("default", "default", "nightly")
    assert f"servo runs resume {run_id} --home {home}" in err
    assert f"run {run_id}: running" in out
    shown = run_json("runs", "show", run_id, "--home", str(home))
    assert shown["status"] == "running" and shown["tasks"]["a"] == "running"

    # The left attempt is given up as lost and run again; nothing else runs twice.
    resumed = run("runs", "resume", run_id, "--home", str(home), EFFECTS=str(log))
    assert resumed.returncode == 0, resumed.stderr
    assert f"run {run_id}: succeeded" in resumed.stdout
    assert done_counts(log) == Counter("abcdef")
    assert started_counts(log) == Counter("abcdef") + Counter("a")
    assert no_warnings(resumed.stderr) == []
    again = run("runs", "resume", run_id, "--home", str(home), EFFECTS=str(log))
    assert again.returncode == 0 and "already finished (succeeded)" in again.stderr


def test_second_signal_stops_at_once_and_cancel_ends_the_idle_run(
    tmp_path: Path, project: tuple[Path, Path, Path]
) -> None:
    defs, log, home = project
    env = {"EFFECTS": str(log), "PAUSE": "30"}
    driver = Driver(tmp_path, ["--defs", str(defs), "--home", str(home)], env)
    await_condition(lambda: "a" in started_counts(log), "a", driver.proc)
    sent = time.monotonic()
    driver.proc.send_signal(signal.SIGINT)
    await_condition(lambda: "stopping" in driver.stderr(), "the first stop", driver.proc)
    driver.proc.send_signal(signal.SIGINT)
    code, out, _ = driver.finish()
    assert code == 130
    assert time.monotonic() - sent < 8  # well inside the default 10 s grace period
    run_id = out.split()[1].rstrip(":")
    unfinished = run("runs", "retry", run_id, "--home", str(home), EFFECTS=str(log))
    assert unfinished.returncode == 2 and "is unfinished; resume it" in unfinished.stderr

    cancelled = run("runs", "cancel", run_id, "--home", str(home), "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout) == {"run_id": run_id, "cancel": "cancelled",
                                            "status": "cancelled"}  # fmt: skip
    shown = run_json("runs", "show", run_id, "--home", str(home))  # from the catalog
    assert shown["status"] == "cancelled"
    assert set(shown["tasks"].values()) == {"cancelled"}
    again = run("runs", "cancel", run_id, "--home", str(home))
    assert again.returncode == 1 and "already finished (cancelled)" in again.stdout
    resumed = run("runs", "resume", run_id, "--home", str(home), EFFECTS=str(log))
    assert resumed.returncode == 1 and "nothing to resume" in resumed.stderr
    assert done_counts(log) == Counter()


def test_ctrl_c_to_the_process_group_stops_worker_processes_gracefully(
    tmp_path: Path, project: tuple[Path, Path, Path]
) -> None:
    defs, log, home = project
    env = {"EFFECTS": str(log), "PAUSE": "0.5"}
    args = ["--defs", str(defs), "--home", str(home), "--json", "--processes"]
    driver = Driver(tmp_path, args, env, start_new_session=True)
    # Both started: the runner is not submitting (it ignores SIGINT for the few
    # milliseconds in which the pool spawns a worker, see servo.dispatch.local).
    await_condition(lambda: {"b", "c"} <= set(started_counts(log)), "b and c", driver.proc)
    os.killpg(driver.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    code, out, err = driver.finish()
    assert code == 130, err
    run_id = json.loads(out)["run_id"]
    assert done_counts(log) == Counter("abc")  # the workers were not interrupted
    resumed = run("runs", "resume", run_id, "--home", str(home), "--json", EFFECTS=str(log))
    assert resumed.returncode == 0, resumed.stderr
    assert done_counts(log) == Counter("abcdef")


FLAKY = """
import os
from pathlib import Path
from servo import asset

COUNT = Path(os.environ["COUNT"])

@asset
def root():
    n = int(COUNT.read_text()) + 1 if COUNT.exists() else 1
    COUNT.write_text(str(n))
    return n

@asset
def broken(root):
    if os.environ.get("FAIL") == "1":
        raise RuntimeError("not today")
    return root * 100

@asset
def after(broken):
    return broken + 1

@asset
def side(root):
    return root
"""


def test_retry_reruns_failed_and_skipped_assets_with_the_run_s_upstream_values(
    tmp_path: Path,
) -> None:
    defs = write(tmp_path / "defs.py", FLAKY)
    home = str(tmp_path / "home")
    env = {"COUNT": str(tmp_path / "count")}
    base = ("--defs", str(defs), "--home", home, "--json")
    keyed = ("materialize", *base, "--idempotency-key", "k1")
    failed = run(*keyed, FAIL="1", **env)
    assert failed.returncode == 1, failed.stderr
    first = json.loads(failed.stdout)
    run_id = first["run_id"]
    assert first["tasks"] == {"root": "succeeded", "broken": "failed", "after": "skipped",
                              "side": "succeeded"}  # fmt: skip

    # The same key again: not the old result as if new, but what failed and the way out.
    repeated = run(*keyed, **env)
    assert repeated.returncode == 1
    assert f"servo runs retry {run_id}" in repeated.stderr
    assert "broken (failed)" in repeated.stderr and "after (skipped)" in repeated.stderr
    assert json.loads(repeated.stdout)["status"] == "failed"

    newer = run("materialize", "root", *base, **env)  # root is 2 from now on
    assert newer.returncode == 0, newer.stderr
    retried = run("runs", "retry", run_id, "--home", home, "--json", **env)
    assert retried.returncode == 0, retried.stderr
    payload = json.loads(retried.stdout)
    assert payload["retry_of"] == run_id and payload["run_id"] != run_id
    assert payload["tasks"] == {"broken": "succeeded", "after": "succeeded"}
    # broken read root as the failed run made it (1), not the latest value (2).
    assert stored_values(Path(home), payload["run_id"]) == {"broken": 100, "after": 101}

    nothing = run("runs", "retry", payload["run_id"], "--home", home, **env)
    assert nothing.returncode == 0 and "nothing to retry" in nothing.stderr
    finished = run("runs", "resume", run_id, "--home", home, **env)
    assert finished.returncode == 1 and f"servo runs retry {run_id}" in finished.stderr
    unknown = run("runs", "resume", "nope", "--home", home)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: no run 'nope'")
    unknown = run("runs", "retry", "nope", "--home", home)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: no run 'nope'")


RETRYING = """
import os
from pathlib import Path
from servo import RetryPolicy, asset

COUNT = Path(os.environ["COUNT"])

@asset(retry=RetryPolicy(max_attempts=3, initial_delay=0.05))
def flaky():
    n = int(COUNT.read_text()) + 1 if COUNT.exists() else 1
    COUNT.write_text(str(n))
    if n < 3:
        raise ConnectionError("try again")
    return n

@asset
def after(flaky):
    return flaky
"""


def test_healthy_runs_print_no_warnings(tmp_path: Path) -> None:
    quickstart = run("materialize", "--defs", str(QUICKSTART), cwd=tmp_path)
    assert quickstart.returncode == 0, quickstart.stderr
    defs = write(tmp_path / "retrying.py", RETRYING)
    retrying = run("materialize", "--defs", str(defs), "--home", str(tmp_path / "h"),
                   COUNT=str(tmp_path / "count"))  # fmt: skip
    assert retrying.returncode == 0, retrying.stderr
    assert "│ flaky │ succeeded │ 3 " in retrying.stdout
    assert no_warnings(quickstart.stderr + retrying.stderr) == []


FAILING = """
from servo import asset

@asset
def bad():
    raise ValueError("bad data")
"""


def test_a_failing_asset_is_reported_once_in_the_summary_not_as_warnings(tmp_path: Path) -> None:
    defs = write(tmp_path / "failing.py", FAILING)
    result = run("materialize", "--defs", str(defs), "--home", str(tmp_path / "h"))
    assert result.returncode == 1
    assert "bad failed: ValueError: bad data" in result.stdout
    assert no_warnings(result.stderr) == []
