"""The serverless mode end to end, every process real: fake-gcs-server, the local Cloud
Tasks server pushing with OIDC tokens, a `servo serve` reconciler and two workers
behind a balancer (`servo.testing.emulator`), and the real `servo materialize`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servo.config.settings import load_settings
from servo.dispatch.cloud_tasks import CloudTasksReconcileQueue
from servo.engine import schema as s
from servo.runner.remote import RunFollower, cancel_remote, submit_run
from servo.sdk.io import read_value
from servo.sdk.loader import load_definitions
from servo.storage.base import ObjectStore
from servo.storage.factory import open_store
from servo.testing.emulator import EmulatorOptions, GcpEmulator

from ._cli import run, write

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DEFINITIONS = """
import time
from pathlib import Path

from servo import RetryPolicy, asset

HERE = Path(__file__).parent


@asset
def root() -> int:
    return 1


@asset
def left(root: int) -> int:
    return root + 1


@asset
def right(root: int) -> int:
    return root * 10


@asset
def tip(left: int, right: int) -> int:
    return left + right


@asset
def broken() -> int:
    raise ValueError("broken on purpose")


@asset
def after_broken(broken: int) -> int:
    return broken + 1


@asset
def beside_broken() -> str:
    return "fine"


@asset(retry=RetryPolicy(max_attempts=3, initial_delay=0.2, jitter=0.0))
def flaky() -> str:
    marker = HERE / "flaky.attempts"
    attempts = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempts))
    if attempts < 2:
        raise ConnectionError("the first attempt loses its connection")
    return f"ok after {attempts}"


@asset(timeout=1.0, retry=RetryPolicy(max_attempts=2, initial_delay=0.1, jitter=0.0))
def too_slow() -> str:
    time.sleep(4)
    return "late"


@asset
def sleepy() -> int:
    time.sleep(30)
    return 0


@asset
def after_sleepy(sleepy: int) -> int:
    return sleepy
"""


class Cloud:
    """The emulator and a client of it (the test process is the user's machine)."""

    def __init__(self, emulator: GcpEmulator, defs_path: Path) -> None:
        self.emulator = emulator
        self.defs_path = defs_path
        self.settings = load_settings(emulator.config_path, environ={})
        self.store: ObjectStore = open_store(self.settings.storage, Path(self.settings.home))
        self.defs = load_definitions(str(defs_path))
        self.queue = CloudTasksReconcileQueue.from_settings(self.settings)

    def submit(self, selection: str) -> str:
        submitted = submit_run(
            self.store,
            self.defs,
            self.queue.notify,
            tenant_id="default",
            workspace_id="default",
            selection=selection,
        )
        return submitted.run_id

    def follow(self, run_id: str, timeout_s: float = 60) -> tuple[s.RunRow, list[s.TaskRow]]:
        follower = RunFollower(self.store, "default", "default", run_id)
        try:
            run = follower.wait(timeout_s=timeout_s, poll_s=0.05)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{self.emulator.logs()}") from exc
        assert run is not None
        return run, follower.poll()[1]

    def values(self, tasks: list[s.TaskRow]) -> dict[str, Any]:
        return {
            t.asset_key: read_value(self.store, t.output_location, t.output_format)
            for t in tasks
            if t.output_location and t.output_format
        }


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    folder = tmp_path_factory.mktemp("serverless")
    defs = write(folder / "defs.py", DEFINITIONS)
    options = EmulatorOptions(
        defs=defs,
        workers=2,
        database=True,  # as `servo emulate gcp`: the config names a PostgreSQL catalog
        sweep_interval_s=1.0,
        settings={"reconciler": {"report_lag_s": 0.5, "start_deadline_s": 10.0}},
    )
    with GcpEmulator(options) as emulator:
        client = Cloud(emulator, defs)
        try:
            yield client
        finally:
            client.queue.close()


def test_a_diamond_through_the_real_cli_gives_the_right_values(cloud: Cloud) -> None:
    result = run(
        "materialize", "+tip", "--defs", str(cloud.defs_path), "--json",
        SERVO_CONFIG=str(cloud.emulator.config_path), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + cloud.emulator.logs()
    payload = json.loads(result.stdout)
    assert payload["status"] == "succeeded"
    assert payload["tasks"] == dict.fromkeys(["left", "right", "root", "tip"], "succeeded")
    _, tasks = cloud.follow(payload["run_id"])
    assert cloud.values(tasks) == {"root": 1, "left": 2, "right": 10, "tip": 12}
    shown = run(
        "runs", "show", payload["run_id"], "--json",
        SERVO_CONFIG=str(cloud.emulator.config_path),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "succeeded", "read from the projections"


def test_a_failure_skips_only_its_downstream(cloud: Cloud) -> None:
    run_id = cloud.submit("broken+ beside_broken")
    run, tasks = cloud.follow(run_id)
    assert run.status == s.RUN_FAILED
    statuses = {t.asset_key: t.status for t in tasks}
    assert statuses == {
        "broken": s.FAILED, "after_broken": s.SKIPPED, "beside_broken": s.SUCCEEDED
    }  # fmt: skip
    broken = next(t for t in tasks if t.asset_key == "broken")
    assert broken.attempt == 1, "a ValueError is not retried by default"


def test_a_retryable_failure_is_retried_and_succeeds(cloud: Cloud) -> None:
    run_id = cloud.submit("flaky")
    run, tasks = cloud.follow(run_id)
    assert run.status == s.RUN_SUCCEEDED, tasks
    (flaky,) = tasks
    assert flaky.attempt == 2
    assert cloud.values(tasks) == {"flaky": "ok after 2"}


def test_an_attempt_past_its_timeout_is_given_up_and_its_late_value_never_counts(
    cloud: Cloud,
) -> None:
    run_id = cloud.submit("too_slow")
    run, tasks = cloud.follow(run_id, timeout_s=90)
    assert run.status == s.RUN_FAILED
    (task,) = tasks
    assert (task.status, task.error_type, task.attempt) == (s.FAILED, "timeout", 2)
    time.sleep(4.5)  # the abandoned attempts finish on their workers meanwhile
    _, tasks = cloud.follow(run_id)
    assert tasks[0].output_location is None, "a timed-out attempt's value was recorded"


def test_a_cancel_ends_the_run_and_skips_what_did_not_start(cloud: Cloud) -> None:
    run_id = cloud.submit("sleepy+")
    follower = RunFollower(cloud.store, "default", "default", run_id)
    deadline = time.monotonic() + 30
    while True:  # wait for the attempt to start on a worker
        run, tasks = follower.poll()
        if any(t.status == s.RUNNING for t in tasks):
            break
        assert time.monotonic() < deadline, cloud.emulator.logs()
        time.sleep(0.05)
    cancel_args = {"tenant_id": "default", "workspace_id": "default", "run_id": run_id}
    assert cancel_remote(cloud.store, cloud.queue.notify, reason="test", **cancel_args)
    started = time.monotonic()
    run, tasks = cloud.follow(run_id, timeout_s=20)
    assert time.monotonic() - started < 10, "the cancel did not wait for the asset"
    assert run.status == s.RUN_CANCELLED
    assert {t.asset_key: t.status for t in tasks} == {
        "sleepy": s.CANCELLED, "after_sleepy": s.CANCELLED
    }  # fmt: skip


def test_concurrent_submissions_all_end(cloud: Cloud) -> None:
    run_ids: list[str] = []
    lock = threading.Lock()

    def submit() -> None:
        run_id = cloud.submit("+tip")
        with lock:
            run_ids.append(run_id)

    threads = [threading.Thread(target=submit) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(run_ids) == 3
    for run_id in run_ids:
        run, tasks = cloud.follow(run_id)
        assert run.status == s.RUN_SUCCEEDED
        assert cloud.values(tasks)["tip"] == 12


def test_workers_with_other_code_fail_the_run_instead_of_running_it(
    cloud: Cloud, tmp_path: Path
) -> None:
    """The client planned from edited definitions; the workers loaded the old file."""
    edited = write(tmp_path / "defs.py", DEFINITIONS + "\n# edited on the laptop only\n")
    defs = load_definitions(str(edited))
    assert defs.code_version != cloud.defs.code_version
    submitted = submit_run(cloud.store, defs, cloud.queue.notify, tenant_id="default",
                           workspace_id="default", selection="root")  # fmt: skip
    run, tasks = cloud.follow(submitted.run_id)
    assert run.status == s.RUN_FAILED and run.code_version == defs.code_version
    (root,) = tasks
    assert root.status == s.FAILED and root.attempt == 1, "not retried"
    assert root.error_type == "code_version_mismatch"
    assert defs.code_version in (root.error_message or "")


def test_a_run_whose_workflow_needs_another_executor_is_refused_before_it_starts(
    cloud: Cloud, tmp_path: Path
) -> None:
    defs = write(
        tmp_path / "celery_defs.py",
        "from servo import asset, executor, workflow\n\n\n@asset\ndef raw() -> int:\n"
        "    return 1\n\n\n@workflow(executor=executor.Celery(queue='etl'))\n"
        "def etl() -> None:\n    raw()\n",
    )
    before = len(list(cloud.store.list_prefix("ledger/default/default/runs/")))
    result = run("materialize", "--defs", str(defs),
                 SERVO_CONFIG=str(cloud.emulator.config_path), timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert "workflow 'etl' runs on executor celery" in result.stderr
    assert len(list(cloud.store.list_prefix("ledger/default/default/runs/"))) == before
