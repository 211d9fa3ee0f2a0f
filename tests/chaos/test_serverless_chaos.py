"""Serverless chaos in CI: a bounded sample of seeded trials, seeds printed.

`test_serverless_faults_lose_nothing` runs ``SERVO_SERVERLESS_CHAOS_TRIALS`` (default
20) trials of `tests.chaos.serverless_chaos` on one emulator, trial ``i`` with seed
``SERVO_CHAOS_SEED + i`` (fixed in CI), cycling through the four fault modes. Longer::

    python -m tests.chaos.serverless_chaos --trials 200 --seed 7
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .harness import base_seed
from .serverless_chaos import MODES, run_campaign

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

#: Trials per run of the suite (``SERVO_SERVERLESS_CHAOS_TRIALS``).
DEFAULT_TRIALS = 20


def test_serverless_faults_lose_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = base_seed()
    trials = int(os.environ.get("SERVO_SERVERLESS_CHAOS_TRIALS", DEFAULT_TRIALS))

    def report(line: str) -> None:
        with capsys.disabled():
            print(line, flush=True)

    report("")
    outcomes = run_campaign(seed, trials, tmp_path, report=report)
    assert len(outcomes) == trials
    if trials >= len(MODES):
        assert {o.mode for o in outcomes} == set(MODES)
    failed = [o for o in outcomes if not o.ok]
    assert not failed, "\n\n".join("\n".join((o.line(), *o.problems)) for o in failed[:3])
