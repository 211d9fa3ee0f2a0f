"""The embedded runner end to end, in process, on a local store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servo import Definitions, asset
from servo.engine import schema as s
from servo.engine.snapshot import SnapshotReader
from servo.errors import DefinitionError
from servo.resilience.retry import RetryPolicy
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.sdk.io import read_value
from servo.storage.local import LocalObjectStore


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "home", fsync=False)


def values(runner: EmbeddedRunner, store: LocalObjectStore, run_id: str) -> dict[str, Any]:
    out = {}
    for task in runner.state.tasks_of(run_id):
        if task.status == s.SUCCEEDED:
            assert task.output_location and task.output_format
            out[task.task_key] = read_value(store, task.output_location, task.output_format)
    return out


def statuses(runner: EmbeddedRunner, run_id: str) -> dict[str, str]:
    return {t.task_key: t.status for t in runner.state.tasks_of(run_id)}


@asset
def a() -> int:
    return 2


@asset
def b(a: int) -> int:
    return a * 10


@asset
def c(a: int) -> int:
    return a + 1


@asset
def d(b: int, c: int) -> dict[str, int]:
    return {"sum": b + c}


DIAMOND = Definitions(assets=[a, b, c, d])


@pytest.fixture
def runner(store: LocalObjectStore) -> Iterator[EmbeddedRunner]:
    with EmbeddedRunner(store, DIAMOND, RunnerOptions(concurrency=2)) as r:
        yield r


def test_values_flow_through_a_diamond(runner: EmbeddedRunner, store: LocalObjectStore) -> None:
    run_id = runner.start_run().run_id
    run = runner.wait(run_id)
    assert (run.status, run.n_succeeded) == (s.RUN_SUCCEEDED, 4)
    assert values(runner, store, run_id) == {"a": 2, "b": 20, "c": 3, "d": {"sum": 23}}


def test_published_projections_match_the_in_memory_state(
    runner: EmbeddedRunner, store: LocalObjectStore
) -> None:
    run_id = runner.start_run().run_id
    runner.wait(run_id)
    snapshot = SnapshotReader(store, "default", "default").load()
    assert snapshot.run(run_id) == runner.state.run(run_id)
    assert snapshot.tasks_of(run_id) == sorted(
        runner.state.tasks_of(run_id), key=lambda t: t.task_key
    )


def test_selection_runs_a_subset_reading_earlier_values(
    runner: EmbeddedRunner, store: LocalObjectStore
) -> None:
    runner.wait(runner.start_run().run_id)
    second = runner.start_run("d").run_id
    runner.wait(second)
    assert list(statuses(runner, second)) == ["d"]
    assert values(runner, store, second) == {"d": {"sum": 23}}


def test_selection_needing_a_never_materialized_asset_names_it(store: LocalObjectStore) -> None:
    with EmbeddedRunner(store, DIAMOND) as runner, pytest.raises(DefinitionError, match="'\\+d'"):
        runner.start_run("d")


def test_failure_skips_downstream_while_independent_branches_finish(
    store: LocalObjectStore,
) -> None:
    @asset
    def root() -> int:
        return 1

    @asset
    def broken(root: int) -> int:
        raise ValueError(f"bad input {root}")

    @asset
    def after_broken(broken: int) -> int:
        return broken

    @asset
    def fine(root: int) -> int:
        return root + 1

    defs = Definitions(assets=[root, broken, after_broken, fine])
    with EmbeddedRunner(store, defs) as runner:
        run_id = runner.start_run().run_id
        run = runner.wait(run_id)
        got = statuses(runner, run_id)
        broken_row = runner.state.task(run_id, "broken")
    assert run.status == s.RUN_FAILED
    assert got == {
        "root": s.SUCCEEDED,
        "broken": s.FAILED,
        "after_broken": s.SKIPPED,
        "fine": s.SUCCEEDED,
    }
    assert broken_row is not None
    assert (broken_row.error_type, broken_row.error_message) == ("ValueError", "bad input 1")


def test_flaky_asset_succeeds_on_its_third_attempt(store: LocalObjectStore) -> None:
    calls: list[int] = []

    @asset(retry=RetryPolicy(max_attempts=3, initial_delay=0.02, jitter=0))
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return "ok"

    with EmbeddedRunner(store, Definitions(assets=[flaky])) as runner:
        run_id = runner.start_run().run_id
        run = runner.wait(run_id)
        task = runner.state.task(run_id, "flaky")
    assert run.status == s.RUN_SUCCEEDED
    assert task is not None and task.attempt == 3
    assert len(calls) == 3


def test_non_retryable_error_fails_at_once(store: LocalObjectStore) -> None:
    calls: list[int] = []

    @asset(retry=RetryPolicy(max_attempts=5, initial_delay=0.01))
    def strict() -> str:
        calls.append(1)
        raise PermissionError("no access")

    with EmbeddedRunner(store, Definitions(assets=[strict])) as runner:
        run = runner.wait(runner.start_run().run_id)
    assert run.status == s.RUN_FAILED
    assert len(calls) == 1


def test_idempotency_key_returns_the_same_run_and_runs_nothing_again(
    store: LocalObjectStore,
) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    @asset
    def counted() -> int:
        with lock:
            calls.append(1)
        return len(calls)

    defs = Definitions(assets=[counted])
    with EmbeddedRunner(store, defs) as runner:
        first = runner.start_run(idempotency_key="nightly-2026-11-22")
        runner.wait(first.run_id)
    with EmbeddedRunner(store, defs) as runner:
        again = runner.start_run(idempotency_key="nightly-2026-11-22")
        run = runner.wait(again.run_id)
    assert (first.resumed, again.resumed, again.run_id) == (False, True, first.run_id)
    assert run.status == s.RUN_SUCCEEDED
    assert len(calls) == 1


def test_restart_redelivers_attempts_left_running_by_a_dead_runner(
    store: LocalObjectStore,
) -> None:
    release = threading.Event()
    calls: list[str] = []

    @asset
    def slow() -> str:
        calls.append("slow")
        if len(calls) == 1:
            release.wait(5)  # the dead runner's worker hangs until the end
        return "done"

    defs = Definitions(assets=[slow])
    dead = EmbeddedRunner(store, defs)
    run_id = dead.start_run(idempotency_key="k").run_id
    dead.begin(run_id)
    dead.turn(run_id)  # dispatches the attempt
    dead.publish()  # ...and records that it did
    # The dead runner's worker is still blocked; a new runner takes over.
    with EmbeddedRunner(store, defs) as runner:
        start = runner.start_run(idempotency_key="k")
        run = runner.wait(start.run_id)
        task = runner.state.task(run_id, "slow")
    release.set()
    dead.pool.close()
    assert start.resumed and run.status == s.RUN_SUCCEEDED
    assert task is not None and task.attempt == 2
    assert calls == ["slow", "slow"]


def test_process_pool_runs_assets_in_worker_processes(tmp_path: Path) -> None:
    from functools import partial

    from servo.dispatch.local import ProcessRuntimeSpec
    from servo.sdk.loader import load_definitions

    defs_file = tmp_path / "defs.py"
    defs_file.write_text(
        "import os\nfrom servo import asset\n\n@asset\ndef pid():\n    return os.getpid()\n\n"
        "@asset\ndef twice(pid):\n    return [pid, os.getpid()]\n"
    )
    defs = load_definitions(str(defs_file))
    home = tmp_path / "home"
    store = LocalObjectStore(home, fsync=False)
    spec = ProcessRuntimeSpec(str(defs_file), partial(LocalObjectStore, home, fsync=False))
    options = RunnerOptions(pool="process", concurrency=2, process_spec=spec)
    with EmbeddedRunner(store, defs, options) as runner:
        run_id = runner.start_run().run_id
        run = runner.wait(run_id)
        got = values(runner, store, run_id)
    import os

    assert run.status == s.RUN_SUCCEEDED
    assert got["pid"] != os.getpid()
    assert got["twice"][0] == got["pid"]


def test_publish_listeners_see_each_snapshot_and_cannot_break_the_run(
    runner: EmbeddedRunner,
) -> None:
    from servo.engine.snapshot import Snapshot
    from servo.observability import metrics

    seen: list[int] = []

    def record(snapshot: Snapshot) -> None:
        seen.append(snapshot.generation)

    def broken(snapshot: Snapshot) -> None:
        raise RuntimeError("catalog down")

    before = metrics.sample("servo_publish_listener_errors_total", {"error_type": "RuntimeError"})
    runner.add_publish_listener(broken)
    runner.add_publish_listener(record)
    run_id = runner.start_run().run_id
    assert runner.wait(run_id).status == s.RUN_SUCCEEDED
    assert seen and seen == sorted(seen)
    after = metrics.sample("servo_publish_listener_errors_total", {"error_type": "RuntimeError"})
    assert after == before + len(seen)


def test_the_thread_pool_records_results_in_the_ledger_not_in_files(
    store: LocalObjectStore,
) -> None:
    """ADR 0023: each task's `TaskFinished` in the ledger is its record; a resumed or
    later run reads the values from there."""
    from servo.engine import events as ev
    from servo.engine.ledger import LedgerReader

    from .chain import DEFS

    with EmbeddedRunner(store, DEFS) as runner:
        run_id = runner.start_run().run_id
        assert runner.wait(run_id).status == s.RUN_SUCCEEDED
        assert values(runner, store, run_id) == {"a": 1, "b": 2, "c": 3}
    assert list(store.list_prefix("results/")) == []
    finished = {
        e.task_key: e.payload.output
        for e in LedgerReader(store).read_many(list(store.list_prefix("ledger/")))
        if isinstance(e.payload, ev.TaskFinished)
    }
    assert {key: out.location if out else None for key, out in finished.items()} == {
        "a": "inline:1",
        "b": "inline:2",
        "c": "inline:3",
    }
