"""Process-mode chaos in CI: a bounded sample, one trial per mode, seeds printed.

`test_process_faults_lose_nothing` runs ``SERVO_PROCESS_CHAOS_TRIALS`` (default 3)
trials of `tests.chaos.process_chaos`, trial ``i`` with seed ``SERVO_CHAOS_SEED + i``
(fixed in CI): consecutive seeds cycle through the modes ``started``, ``worker`` and
``manager``. Longer campaigns::

    python -m tests.chaos.harness --mode process --trials 60
    python -m tests.chaos.harness --mode process --soak 30
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from .harness import base_seed
from .process_chaos import (
    MAX_STARTED_DELAY_S,
    MODES,
    ProcessTrialPlan,
    process_failure_message,
    run_process_campaign,
)

pytestmark = pytest.mark.chaos

#: Trials per run of the suite (``SERVO_PROCESS_CHAOS_TRIALS``): one per mode.
DEFAULT_TRIALS = 3


def test_process_faults_lose_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = base_seed()
    trials = int(os.environ.get("SERVO_PROCESS_CHAOS_TRIALS", DEFAULT_TRIALS))

    def report(line: str) -> None:
        with capsys.disabled():
            print(line, flush=True)

    report("")
    outcomes = run_process_campaign(seed, trials, tmp_path, report=report)
    assert len(outcomes) == trials
    if trials >= len(MODES):
        assert {o.mode for o in outcomes} == set(MODES)
    assert all(o.ok for o in outcomes), process_failure_message(outcomes)


def test_process_plans_are_reproducible_and_shaped_as_promised() -> None:
    plans = [ProcessTrialPlan.from_seed(seed) for seed in range(150)]
    assert plans == [ProcessTrialPlan.from_seed(seed) for seed in range(150)]
    assert Counter(p.mode for p in plans) == dict.fromkeys(MODES, 50)
    for plan in plans:
        assert plan.base.processes, plan
        delays = [k.delay_s for k in plan.base.kills] + [f.delay_s for f in plan.faults]
        assert all(0 <= d <= MAX_STARTED_DELAY_S for d in delays), plan
        if plan.mode == "started":
            assert plan.base.kills and not plan.faults
            assert {k.anchor for k in plan.base.kills} == {"started"}
        else:
            assert not plan.base.kills and {f.target for f in plan.faults} == {plan.mode}
            assert 1 <= len(plan.faults) <= (3 if plan.mode == "worker" else 2)
    scopes = Counter(k.scope for p in plans for k in p.base.kills)
    assert scopes["group"] and scopes["runner"]  # some started kills orphan the workers
    with pytest.raises(ValueError, match="unknown process chaos mode"):
        ProcessTrialPlan.from_seed(1, "threads")
