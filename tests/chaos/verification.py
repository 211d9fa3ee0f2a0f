"""Verification of a finished chaos trial: every guarantee the harness checks.

See `tests.chaos.harness` (step 3 of its docstring) for what is checked and why.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from servo.engine import events as ev
from servo.engine.ledger import LedgerReader
from servo.engine.schema import TABLES_BY_NAME, AttemptRow, TaskRow
from servo.engine.snapshot import Snapshot, SnapshotReader
from servo.sdk.io import read_value
from tests.chaos.harness import INVOCATION_TIMEOUT_S, REPLAYED_TABLES, TENANT, WORKSPACE

if TYPE_CHECKING:
    from tests.chaos.harness import ChaosTrial, TrialResult


def verify(trial: ChaosTrial, result: TrialResult) -> list[str]:
    """Every broken guarantee of a finished trial, as messages (empty: all held)."""
    plan = trial.plan
    names = plan.names
    problems: list[str] = []
    final = result.invocations[-1]
    problems.extend(_check_invocations(result, names))
    if final.returncode != 0:  # the checks below need a finished run; say where it stopped
        with contextlib.suppress(Exception):
            rows = SnapshotReader(trial.store, TENANT, WORKSPACE).load().tasks_of(result.run_id)
            problems.append(f"published task statuses: { {t.task_key: t.status for t in rows} }")
        return problems

    expected = plan.expected_values()
    effects = trial.workdir / "effects"
    on_disk = sorted(p.name for p in effects.iterdir())
    if on_disk != sorted(names):
        problems.append(f"effect files {on_disk} != assets {sorted(names)}")
    for name in names:
        path = effects / name
        if path.exists() and path.read_text() != str(expected[name]):
            problems.append(f"effect of {name} is {path.read_text()!r}, expected {expected[name]}")

    snapshot = SnapshotReader(trial.store, TENANT, WORKSPACE).load()
    runs = snapshot.runs()
    if [r.run_id for r in runs] != [result.run_id]:
        problems.append(f"runs in the home {[r.run_id for r in runs]}, expected [{result.run_id}]")
    run = snapshot.run(result.run_id)
    if run is None or run.status != "SUCCEEDED" or run.completed_at is None:
        problems.append(f"published run row is not terminal and succeeded: {run}")
    tasks = {t.task_key: t for t in snapshot.tasks_of(result.run_id)}
    if sorted(tasks) != sorted(names):
        problems.append(f"published tasks {sorted(tasks)} != assets {sorted(names)}")
    for name, task in sorted(tasks.items()):
        if task.status != "SUCCEEDED" or not task.output_location or not task.output_format:
            problems.append(f"published task {name} is {task.status} without output")
            continue
        value = read_value(trial.store, task.output_location, task.output_format)
        if value != expected.get(name):
            problems.append(f"stored output of {name} is {value!r}, expected {expected.get(name)}")
    problems.extend(_check_attempts(snapshot, result.run_id, tasks))
    problems.extend(_check_ledger(trial, result, snapshot))
    return problems


def _check_invocations(result: TrialResult, names: list[str]) -> list[str]:
    """Exit codes and output; no recorded result computed again. (Skipped after a
    runner-only kill: an orphan may have started an execution before the record.)"""
    problems = []
    orphaning = False
    for invocation in result.invocations:
        label = f"invocation {invocation.number} ({invocation.point})"
        if invocation.point == "hung":
            problems.append(f"{label} did not end within {INVOCATION_TIMEOUT_S:.0f} s")
            continue
        rerun = sorted(set(invocation.executions) & invocation.recorded_before)
        if rerun and not orphaning:
            problems.append(f"{label} ran {rerun} again although their results were recorded")
        orphaning = invocation.kill is not None and invocation.kill.scope == "runner"
        if invocation.point not in ("final", "exited"):
            continue  # killed: no output expected
        if invocation.returncode != 0:
            problems.append(
                f"{label} exited {invocation.returncode}; stdout: {invocation.stdout[-2000:]!r}; "
                f"stderr: {invocation.stderr!r}"
            )
            continue
        payload = json.loads(invocation.stdout)
        want = {"run_id": result.run_id, "status": "succeeded",
                "tasks": dict.fromkeys(names, "succeeded")}  # fmt: skip
        if (got := {k: payload.get(k) for k in want}) != want:
            problems.append(f"{label} reported {got}, expected {want}")
    return problems


def _check_attempts(snapshot: Snapshot, run_id: str, tasks: dict[str, TaskRow]) -> list[str]:
    """Per task, the current attempt succeeded and is the only one that ran the asset
    to success: any other success reports a recorded result; the others failed."""
    problems = []
    by_task: dict[str, list[AttemptRow]] = {}
    for row in snapshot.rows("attempts"):
        if row.run_id == run_id:
            by_task.setdefault(row.task_key, []).append(row)
    for name, task in sorted(tasks.items()):
        rows = by_task.get(name, [])
        wins = [(r.attempt, r.attempt_id) for r in rows if r.outcome == "succeeded"]
        ran = [r for r in rows if r.outcome == "succeeded" and r.reused_attempt_id is None]
        current = (task.attempt, task.attempt_id)
        if current not in wins or len(ran) > 1:
            problems.append(
                f"task {name}: successful attempts {wins} ({len(ran)} ran the asset), "
                f"expected the current {current} and no other run of it"
            )
        if any(r.outcome not in ("succeeded", "failed") for r in rows):
            ends = [(r.attempt, r.end_kind, r.outcome) for r in rows]
            problems.append(f"task {name}: attempts left open or unknown: {ends}")
    return problems


def _check_ledger(trial: ChaosTrial, result: TrialResult, snapshot: Snapshot) -> list[str]:
    """The run's request is in the ledger, and a full replay equals the projections.

    One allowance: workers orphaned by a runner-only kill may report on their stale
    attempts after the restarted runner read the ledger; nobody notifies it of those
    objects, so the projections miss them until a later start folds them. Attempt
    rows that are not their task's current attempt may therefore differ in such
    trials; they are counted (`TrialResult.orphan_facts`), not failed on.
    """
    problems = []
    orphans = any(i.kill is not None and i.kill.scope == "runner" for i in result.invocations)
    current = {
        (t.run_id, t.task_key, t.attempt, t.attempt_id) for t in snapshot.tasks_of(result.run_id)
    }
    requests = LedgerReader(trial.store).read(trial.request_path)
    if [(type(e.payload), e.run_id) for e in requests] != [(ev.RunRequested, result.run_id)]:
        problems.append(f"the ledger's request object of {result.run_id} holds {requests}")
    state, result.ledger_events, result.stale_rejected = trial.replay()
    for table in REPLAYED_TABLES:
        replayed = {k: r for k, r in state.tables[table].items() if r.run_id == result.run_id}
        key_of = TABLES_BY_NAME[table].key_of
        published = {key_of(r): r for r in snapshot.rows(table) if r.run_id == result.run_id}
        if table == "attempts" and orphans:
            stale = (replayed.keys() | published.keys()) - current
            differ = {k for k in stale if replayed.get(k) != published.get(k)}
            result.orphan_facts = len(differ)
            for k in differ:
                replayed.pop(k, None)
                published.pop(k, None)
        if replayed != published:
            problems.append(
                f"table {table}: the published projections and a full ledger replay differ: "
                + _diff(published, replayed)
            )
    return problems


def _diff(published: dict[Any, Any], replayed: dict[Any, Any]) -> str:
    lines = []
    for key in sorted(set(published) | set(replayed), key=repr):
        mine, theirs = published.get(key), replayed.get(key)
        if mine is None or theirs is None:
            lines.append(f"{key}: only {'replayed' if mine is None else 'published'}")
        elif mine != theirs:
            old, new = asdict(mine), asdict(theirs)
            changed = [f"{k}: published {v!r} / replayed {new[k]!r}" for k, v in old.items()
                       if v != new[k]]  # fmt: skip
            lines.append(f"{key}: " + "; ".join(changed))
    return "\n      " + "\n      ".join(lines[:20])
