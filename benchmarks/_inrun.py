"""One Servo run timed in-run and checked, for the benchmarks that compare sizes and tools.

In-run time is what `bench_embedded` measures: from `start_run` to the end of `wait`,
definitions already loaded, on a `LocalObjectStore` home without fsync. Peak RSS is
read right after `wait`, before the values are read back and checked (checking reads
every value, which is the benchmark's cost, not the run's).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass

from servo.engine.schema import TaskRow
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.sdk.definitions import Definitions
from servo.sdk.io import read_value
from servo.storage.base import ObjectStore
from servo.storage.local import LocalObjectStore


@dataclass(frozen=True, slots=True)
class RunFigures:
    """What one checked run measured.

    Attributes:
        in_run_s: seconds from `start_run` to the end of `wait`.
        tasks: tasks the run had (== the expected values).
        peak_rss_kib: this process's peak resident set size right after `wait`.
    """

    in_run_s: float
    tasks: int
    peak_rss_kib: int


def peak_rss_kib() -> int:
    """This process's peak resident set size so far, in KiB (Linux's unit)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def checked_run(
    store: LocalObjectStore, defs: Definitions, expected: dict[str, int], *, concurrency: int = 4
) -> RunFigures:
    """Run every asset of `defs` once with a new runner on `store`; check each value.

    Raises:
        SystemExit: the run did not succeed, or a value or the task count is wrong
            (a benchmark that ran something else must not print a figure).
    """
    with EmbeddedRunner(store, defs, RunnerOptions(concurrency=concurrency)) as runner:
        start = time.perf_counter()
        run_id = runner.start_run().run_id
        run = runner.wait(run_id)
        elapsed = time.perf_counter() - start
        rss = peak_rss_kib()
        if run.status != "SUCCEEDED":
            raise SystemExit(f"run {run_id} ended {run.status}")
        tasks = runner.state.tasks_of(run_id)
    check_values(store, tasks, expected, f"run {run_id}")
    return RunFigures(elapsed, len(tasks), rss)


def check_values(
    store: ObjectStore, tasks: Sequence[TaskRow], expected: dict[str, int], what: str
) -> None:
    """Every task's stored value is the expected one, and no task is missing.

    Raises:
        SystemExit: naming `what` and the first wrong value or count.
    """
    if len(tasks) != len(expected):
        raise SystemExit(f"{what}: {len(tasks)} tasks, expected {len(expected)}")
    for task in tasks:
        assert task.output_location and task.output_format
        value = read_value(store, task.output_location, task.output_format)
        if value != expected[task.asset_key]:
            raise SystemExit(
                f"{what}: {task.asset_key} = {value!r}, expected {expected[task.asset_key]}"
            )
