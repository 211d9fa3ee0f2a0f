"""The runner as a hypothesis state machine (`tests.chaos.machine.RunnerMachine`).

Runs ``SERVO_CHAOS_EXAMPLES`` (default 100) examples with hypothesis' draw fixed by
``SERVO_CHAOS_SEED`` (fixed in CI, from the clock locally; printed);
``python -m tests.chaos.harness --mode machine --trials N --seed S`` runs more.
The last test is the shortest program the machine found for a known defect of the
fold (expected to fail until the fold decides it; then remove the mark).
"""

from __future__ import annotations

import pytest

from servo.engine.replay import replay_ledger
from servo.engine.request import TaskRequest

from .harness import TENANT, WORKSPACE, base_seed
from .inprocess import check_invariants
from .machine import DEFAULT_EXAMPLES, RunnerMachine, examples, run_machine

pytestmark = pytest.mark.chaos


def test_runner_state_machine_keeps_ledger_and_projections_equal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed, count = base_seed(), examples()
    with capsys.disabled():
        print(f"\nmachine: {count} examples, seed {seed}", flush=True)
    run_machine(count, seed)


def test_examples_come_from_the_environment() -> None:
    assert examples({}) == DEFAULT_EXAMPLES
    assert examples({"SERVO_CHAOS_EXAMPLES": "500"}) == 500


def _by_task(requests: list[TaskRequest], task_key: str) -> int:
    return next(i for i, r in enumerate(requests) if r.task_key == task_key)


def test_an_orphans_late_success_and_its_redelivery_are_not_two_successes() -> None:
    machine = RunnerMachine()
    machine.request("k0")
    machine.step()  # a0 and a4 are dispatched and held by the pool
    machine.crash(orphans=True)  # their worker goes on without a runner
    assert machine.pool is None
    machine.execute(_by_task(machine.zombies, "a0"), zombie=True)  # a0 attempt 1 succeeds...
    machine.advance(1.0)
    machine.restart()  # ...unreported: the new runner gives attempt 1 up as worker_lost
    machine.step()  # and redelivers a0 as attempt 2, which reuses attempt 1's result
    assert machine.pool is not None
    machine.execute(_by_task(machine.pool.held, "a0"), zombie=False, report=True)
    machine.step()
    while machine.mailbox.items:  # attempt 1's reports arrive at last
        machine.deliver(0)
    machine.step()
    machine.step()
    state = replay_ledger(machine.inner, TENANT, WORKSPACE).state
    assert check_invariants(state) == []
    attempts = sorted(
        (a for a in state.rows("attempts") if a.task_key == "a0" and a.outcome == "succeeded"),
        key=lambda a: a.attempt,
    )
    first, second = attempts  # attempt 1 ran the asset; attempt 2 reports its result
    assert (first.reused_attempt_id, second.reused_attempt_id) == (None, first.attempt_id)
    task = next(t for t in state.rows("tasks") if t.task_key == "a0")
    assert (task.status, task.attempt_id) == ("SUCCEEDED", first.attempt_id)
