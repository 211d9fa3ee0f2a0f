"""Pieces the in-process chaos modes share: definitions, effects, and the checks.

The in-process modes (`tests.chaos.faults`, `tests.chaos.clocks`) drive
`EmbeddedRunner` directly on one object store instead of the ``servo`` CLI: they
reuse the harness's random DAGs (`TrialPlan`) but build the assets in this process,
so a trial takes tens of milliseconds and a fault or a crash can be placed exactly.

Checks, each returning problems as messages (empty: the guarantee held):

- `check_published`: a full replay of the ledger (`servo.engine.replay`, the check
  ``servo doctor`` runs) equals the newest published projections, table by table.
- `check_no_phantoms`: the published projections hold no row the ledger lacks (what
  must hold even right after a failure, when the projections may lag the ledger).
- `check_recovered`: a fresh runner on the store recovers and publishes exactly the
  ledger (what every restart relies on), then `check_published`.
- `check_run`: a finished run succeeded, each task once, with the right values, and
  each asset's effect recorded once with the right value (`failed_by_faults` tells a
  run that failed only because faults used up its retries).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from servo import Definitions, asset
from servo.engine import schema as s
from servo.engine.fold import EngineState
from servo.engine.ids import now_us
from servo.engine.replay import ReplayComparison, replay_and_compare, replay_ledger
from servo.resilience.retry import ErrorKind, RetryPolicy
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.sdk.context import AssetContext
from servo.sdk.io import read_value
from servo.storage.base import ObjectStore

from .harness import TENANT, WORKSPACE, AssetPlan, TrialPlan

#: Every kind retried, quickly: a storage fault while an asset writes its value must
#: cost an attempt, never the run (runs must end correctly once faults stop).
RETRY_ALL = RetryPolicy(
    max_attempts=25,
    initial_delay=0.001,
    max_delay=0.002,
    jitter=0.0,
    retry_on=frozenset(ErrorKind),
    dont_retry_on=frozenset(),
)
#: Fast timers, so lost attempts are found within a trial.
FAST = RunnerOptions(
    publish_interval_s=0.02,
    sweep_interval_s=0.02,
    heartbeat_interval_s=0.05,
    heartbeat_timeout_s=0.5,
)


class Effects:
    """Side effects of the assets: recorded once per (run, asset), executions counted.

    `record` is create-if-absent, the pattern for effects under at-least-once
    execution; `conflicts` lists a second record with a different value (a wrong
    result), which must never happen.
    """

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], int] = {}
        self.executions: Counter[tuple[str, str]] = Counter()
        self.conflicts: list[str] = []
        self._failed_once: set[str] = set()
        self._lock = threading.Lock()

    def record(self, run_id: str, name: str, value: int) -> None:
        with self._lock:
            self.executions[(run_id, name)] += 1
            found = self.values.setdefault((run_id, name), value)
            if found != value:
                self.conflicts.append(f"{name} in {run_id}: recorded {found}, then {value}")

    def fail_once(self, name: str) -> None:
        """A retryable error the first time `name` runs in this trial, never again."""
        with self._lock:
            if name in self._failed_once:
                return
            self._failed_once.add(name)
        raise ConnectionError(f"{name}: transient failure injected by the chaos harness")


def build_definitions(plan: TrialPlan, effects: Effects) -> Definitions:
    """The plan's DAG as in-process assets: each returns the sum of its parents plus
    its index and records that value as its effect."""
    return Definitions(assets=[_asset(a, effects) for a in plan.assets])


def _asset(plan: AssetPlan, effects: Effects) -> Callable[..., Any]:
    def body(context: AssetContext, **upstream: int) -> int:
        if plan.flaky:
            effects.fail_once(plan.name)
        value = sum(upstream.values()) + plan.index
        effects.record(context.run_id, plan.name, value)
        return value

    body.__name__ = plan.name
    return asset(name=plan.name, dependencies=list(plan.parents), retry=RETRY_ALL)(body)


# -------------------------------------------------------------------- checks
def describe(comparison: ReplayComparison) -> str:
    """The differing tables, with a sample of keys."""
    return "; ".join(f"{d.describe()} e.g. {list(d.sample)[:3]}" for d in comparison.diffs)


def check_published(store: ObjectStore) -> list[str]:
    """A full ledger replay equals the published projections."""
    comparison = replay_and_compare(store, TENANT, WORKSPACE)
    if comparison.replay.unreadable:
        paths = [u.path for u in comparison.replay.unreadable]
        return [f"unreadable ledger objects {paths}"]
    if comparison.equal:
        return []
    return [f"published (generation {comparison.generation}) != ledger replay: "
            f"{describe(comparison)}"]  # fmt: skip


def check_no_phantoms(store: ObjectStore) -> list[str]:
    """The published projections have no row whose key the ledger replay lacks."""
    comparison = replay_and_compare(store, TENANT, WORKSPACE)
    extra = [d for d in comparison.diffs if d.extra]
    if not extra:
        return []
    return [f"published (generation {comparison.generation}) has rows the ledger lacks: "
            + "; ".join(f"{d.describe()} e.g. {list(d.sample)[:3]}" for d in extra)]  # fmt: skip


def check_recovered(
    store: ObjectStore, defs: Definitions, *, clock: Callable[[], int] = now_us
) -> list[str]:
    """A fresh runner recovers from the ledger and publishes exactly what it holds."""
    runner = EmbeddedRunner(store, defs, FAST, clock=clock)
    try:
        _ = runner.state  # recovery: folds what the projections may not reflect
    finally:
        runner.close()  # publishes
    return check_published(store)


def check_invariants(state: EngineState) -> list[str]:
    """The asset ran to success at most once per task: every other successful attempt
    reports an earlier attempt's recorded result (`reused_attempt_id`) instead."""
    problems = []
    executed: Counter[tuple[str, str]] = Counter()
    for attempt in state.rows("attempts"):
        if attempt.outcome != "succeeded" or attempt.end_kind != "finished":
            continue
        if attempt.reused_attempt_id is None:
            executed[(attempt.run_id, attempt.task_key)] += 1
    for (run_id, task_key), count in sorted(executed.items()):
        if count > 1:
            problems.append(f"{task_key} in {run_id} succeeded {count} times")
    return problems


def check_run(store: ObjectStore, run_id: str, plan: TrialPlan, effects: Effects) -> list[str]:
    """The run succeeded: every task once, with the right values and effects."""
    replay = replay_ledger(store, TENANT, WORKSPACE)
    state = replay.state
    run = state.run(run_id)
    if run is None or run.status != s.RUN_SUCCEEDED:
        statuses = {t.task_key: t.status for t in state.tasks_of(run_id)}
        return [f"run {run_id} is {None if run is None else run.status}: {statuses}"]
    problems = check_invariants(state)
    expected = plan.expected_values()
    tasks = {t.task_key: t for t in state.tasks_of(run_id)}
    if sorted(tasks) != sorted(expected):
        problems.append(f"tasks {sorted(tasks)} != assets {sorted(expected)}")
    for name, task in sorted(tasks.items()):
        if task.status != s.SUCCEEDED or not task.output_location or not task.output_format:
            problems.append(f"task {name} is {task.status} without output")
            continue
        value = read_value(store, task.output_location, task.output_format)
        if value != expected.get(name):
            problems.append(f"stored output of {name} is {value!r}, expected {expected.get(name)}")
        if effects.values.get((run_id, name)) != expected.get(name):
            found = effects.values.get((run_id, name))
            problems.append(f"effect of {name} is {found!r}, expected {expected.get(name)}")
    problems.extend(effects.conflicts)
    return problems


def failed_by_faults(store: ObjectStore, run_id: str) -> bool:
    """Whether `run_id` FAILED only because injected faults used up its retries: every
    failed attempt of a failed task names an injected fault or was given up."""
    state = replay_ledger(store, TENANT, WORKSPACE).state
    run = state.run(run_id)
    if run is None or run.status != s.RUN_FAILED:
        return False
    for task in state.tasks_of(run_id):
        if task.status != s.FAILED:
            continue
        for attempt in state.attempts_of(run_id, task.task_key):
            injected = "injected" in (attempt.error_message or "")
            if attempt.outcome == "failed" and attempt.end_kind != "abandoned" and not injected:
                return False
    return True


def first(problems: Iterable[str], limit: int = 3) -> list[str]:
    """At most `limit` problems (the first ones are the informative ones)."""
    return list(problems)[:limit]
