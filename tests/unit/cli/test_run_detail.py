"""Plan order and attempt statuses as `servo runs show` and `servo runs logs` print them."""

from __future__ import annotations

import pytest

from servo.cli.run_detail import plan_order
from servo.cli.run_show import attempt_seconds, attempt_status
from servo.engine.schema import AttemptRow, DepRow


def dep(task: str, upstream: str) -> DepRow:
    return DepRow("r", task, upstream)


def test_plan_order_is_levels_sorted_by_name() -> None:
    deps = [dep("b", "a"), dep("c", "a"), dep("d", "b"), dep("d", "c"), dep("z", "ghost")]
    assert plan_order(["d", "c", "b", "a", "z", "e"], deps) == ["a", "e", "z", "b", "c", "d"]


def test_tasks_on_a_cycle_still_show_last() -> None:
    assert plan_order(["x", "y", "a"], [dep("x", "y"), dep("y", "x")]) == ["a", "x", "y"]


def attempt(**facts: object) -> AttemptRow:
    return AttemptRow("r", "a", 1, "id", dispatch_event_id="e", dispatch_at=1, **facts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("facts", "status"),
    [
        ({}, "dispatched"),
        ({"started_at": 5}, "running"),
        ({"end_event_id": "f", "outcome": "succeeded"}, "succeeded"),
        ({"end_event_id": "f", "end_kind": "finished", "outcome": "failed"}, "failed"),
        ({"end_event_id": "f", "end_kind": "abandoned", "error_type": "timeout"}, "timed out"),
        ({"end_event_id": "f", "end_kind": "abandoned", "error_type": "worker_lost"}, "lost"),
        ({"end_event_id": "f", "end_kind": "abandoned", "error_type": "cancelled"}, "cancelled"),
    ],
)
def test_attempt_status(facts: dict[str, object], status: str) -> None:
    assert attempt_status(attempt(**facts)) == status


def test_attempt_seconds_prefers_the_workers_measure() -> None:
    assert attempt_seconds(attempt(duration_s=1.5, started_at=0, end_at=9_000_000)) == 1.5
    assert attempt_seconds(attempt(started_at=1_000_000, end_at=3_500_000)) == 2.5
    assert attempt_seconds(attempt(started_at=1)) is None
