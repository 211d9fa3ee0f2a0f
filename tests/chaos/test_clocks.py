"""Clock chaos: jumping clocks, crashes and skewed writers lose nothing.

`test_clock_jumps_crashes_and_skewed_writers_lose_nothing` runs
``SERVO_CHAOS_CLOCK_TRIALS`` (default 30) trials of `tests.chaos.clocks`, trial ``i``
with seed ``SERVO_CHAOS_SEED + i`` (fixed in CI, from the clock locally), each seed
printed; ``python -m tests.chaos.harness --mode clocks --trials N`` runs more.
"""

from __future__ import annotations

import os
import random
import threading

import pytest

from servo.engine.ids import now_us

from .clocks import HOUR_US, MINUTE_US, ChaosClock, ClockPlan, Killed, jump, run_clock_campaign
from .harness import base_seed

pytestmark = pytest.mark.chaos

#: Trials per run of the suite (``SERVO_CHAOS_CLOCK_TRIALS``).
DEFAULT_TRIALS = 30


def test_clock_jumps_crashes_and_skewed_writers_lose_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = base_seed()
    trials = int(os.environ.get("SERVO_CHAOS_CLOCK_TRIALS", DEFAULT_TRIALS))

    def report(line: str) -> None:
        with capsys.disabled():
            print(line, flush=True)

    report(f"\nclocks: {trials} trials, base seed {seed} (trial i uses seed {seed} + i)")
    outcomes = run_clock_campaign(seed, trials, report)
    kills = sum(o.invocations.count("killed") for o in outcomes)
    jumps = sum(o.jumps for o in outcomes)
    report(f"clocks: {trials} trials, {kills} kills, {jumps} clock jumps within invocations")
    failed = [o for o in outcomes if not o.ok]
    assert not failed, "\n".join(o.summary() for o in failed)


def test_chaos_clock_kills_only_the_thread_that_armed_it() -> None:
    clock = ChaosClock(random.Random(1), offset_us=HOUR_US)
    assert clock() - now_us() > HOUR_US - MINUTE_US
    clock.arm(3)
    clock(), clock()
    readings: list[int] = []
    other = threading.Thread(target=lambda: readings.extend(clock() for _ in range(5)))
    other.start()
    other.join()
    assert len(readings) == 5  # worker threads are never killed
    with pytest.raises(Killed):
        clock()
    clock()  # once only


def test_clock_jumps_both_ways_by_minutes_and_hours() -> None:
    rng = random.Random(7)
    steps = [jump(rng) for _ in range(400)]
    assert any(s < 0 for s in steps) and any(s > 0 for s in steps)
    assert any(abs(s) < HOUR_US for s in steps) and any(abs(s) >= HOUR_US for s in steps)
    assert all(MINUTE_US <= abs(s) <= 3 * HOUR_US for s in steps)
    clock = ChaosClock(random.Random(3), jump_share=1.0)
    for _ in range(20):
        clock()
    assert clock.jumps == 20


def test_plans_are_reproducible_and_kill_most_invocations() -> None:
    plans = [ClockPlan.from_seed(seed) for seed in range(200)]
    assert plans == [ClockPlan.from_seed(seed) for seed in range(200)]
    steps = [step for plan in plans for step in plan.invocations]
    assert sum(s.kill_after is not None for s in steps) > len(steps) / 2
    assert any(s.cancel_skew_us is not None for s in steps)
    assert any(s.partner_skew_us is not None for s in steps)
    assert all(s.partner_skew_us is None for p in plans if p.runs == 1 for s in p.invocations)
    assert {s.jump_share for s in steps} == {0.0, 0.02, 0.1}
