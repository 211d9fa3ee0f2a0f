"""What a retry pins: the retried run's own upstream values, whatever the task order."""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st

from servo.cli.lifecycle import retry_upstream
from servo.engine import schema as s

NAMES = st.sampled_from(["a", "b", "c", "d", "e"])
STATUSES = st.sampled_from([s.SUCCEEDED, s.FAILED, s.SKIPPED, s.CANCELLED])


@st.composite
def runs(draw: st.DrawFn) -> list[s.TaskRow]:
    """Tasks of one run: each asset once; pins of earlier runs agree (planned at once)."""
    earlier = {name: (f"old/{name}", "json") for name in "abcde"}
    tasks = []
    for name in draw(st.lists(NAMES, unique=True)):
        status = draw(STATUSES)
        pins = [[dep, *earlier[dep]] for dep in draw(st.lists(NAMES, unique=True))]
        done = status == s.SUCCEEDED
        tasks.append(
            s.TaskRow(
                run_id="r",
                task_key=name,
                asset_key=name,
                status=status,
                output_location=f"new/{name}" if done else None,
                output_format="json" if done else None,
                pinned_inputs=json.dumps(pins) if pins else None,
            )
        )
    return tasks


@given(runs(), st.randoms())
def test_the_run_s_outputs_win_over_its_pins_in_any_order(
    tasks: list[s.TaskRow], rng: random.Random
) -> None:
    pinned = retry_upstream(tasks)
    shuffled = list(tasks)
    rng.shuffle(shuffled)
    assert retry_upstream(shuffled) == pinned
    for task in tasks:
        if task.status == s.SUCCEEDED:
            assert pinned[task.asset_key] == (f"new/{task.asset_key}", "json")
        elif task.asset_key in pinned:
            assert pinned[task.asset_key] == (f"old/{task.asset_key}", "json")
