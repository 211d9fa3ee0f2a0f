"""Chaos: SIGKILL the embedded runner at random points; every run still succeeds once.

`test_sigkill_at_random_points_loses_nothing` runs ``SERVO_CHAOS_TRIALS`` (default
20) trials of `tests.chaos.harness.ChaosTrial`, trial ``i`` with seed
``SERVO_CHAOS_SEED + i`` (default base seed: fixed in CI, from the clock locally).
Each trial's seed, plan and kill points are written to the terminal even when the
test passes and without ``-s``; a failure names every failing seed and how to
replay it. The other tests check the harness itself: plans are reproducible and
shaped as promised, and verification catches a wrong effect and a lost ledger object.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from servo.engine.ledger import ledger_prefix

from .harness import (
    CI_SEED,
    TENANT,
    WORKSPACE,
    ChaosTrial,
    KillPlan,
    TrialPlan,
    base_seed,
    failure_message,
    run_campaign,
)
from .verification import verify

pytestmark = pytest.mark.chaos

#: Trials per run of the suite (``SERVO_CHAOS_TRIALS``); CI needs at least 20.
DEFAULT_TRIALS = 20


def test_sigkill_at_random_points_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = base_seed()
    trials = int(os.environ.get("SERVO_CHAOS_TRIALS", DEFAULT_TRIALS))

    def report(line: str) -> None:
        with capsys.disabled():
            print(line, flush=True)

    report("")  # start on a fresh line after pytest's progress
    results = run_campaign(seed, trials, tmp_path, report=report)
    assert len(results) == trials
    assert all(r.ok for r in results), failure_message(results)


def test_base_seed_is_fixed_in_ci_and_overridable() -> None:
    assert base_seed({"SERVO_CHAOS_SEED": "42", "CI": "true"}) == 42
    assert base_seed({"CI": "true"}) == CI_SEED
    assert base_seed({}) >= 0  # from the clock, printed by the campaign


def test_plans_are_reproducible_and_shaped_as_promised() -> None:
    for seed in range(200):
        plan = TrialPlan.from_seed(seed)
        assert plan == TrialPlan.from_seed(seed), f"seed={seed}: plan is not reproducible"
        assert 8 <= len(plan.assets) <= 15, f"seed={seed}"
        assert 1 <= len(plan.kills) <= 3, f"seed={seed}"
        assert 1 <= plan.concurrency <= 4, f"seed={seed}"
        seen: set[str] = set()
        for a in plan.assets:
            assert 0 <= a.pause_s <= 0.040, f"seed={seed}"
            assert len(a.parents) <= 3 and set(a.parents) <= seen, f"seed={seed}: {a}"
            assert a.parents or a.index < 3, f"seed={seed}: {a.name} is a late root"
            seen.add(a.name)
        for kill in plan.kills:
            assert kill.anchor in ("start", "write") and kill.delay_s >= 0, f"seed={seed}"
    assert TrialPlan.from_seed(1) != TrialPlan.from_seed(2)


def test_expected_values_sum_parents_plus_index() -> None:
    plan = TrialPlan.from_seed(7)
    values = plan.expected_values()
    for a in plan.assets:
        assert values[a.name] == sum(values[p] for p in a.parents) + a.index
    source = plan.definitions(Path("/nowhere"))
    compile(source, "definitions.py", "exec")  # the generated file is valid Python
    assert source.count("@asset") == len(plan.assets)


def test_kills_cover_both_anchors_and_orphan_only_worker_processes() -> None:
    plans = [TrialPlan.from_seed(seed) for seed in range(200)]
    kills = [k for p in plans for k in p.kills]
    assert Counter(k.anchor for k in kills).keys() == {"start", "write"}
    assert all(k.scope == "group" for p in plans if not p.processes for k in p.kills)
    assert any(k.scope == "runner" for p in plans for k in p.kills)
    assert str(KillPlan("write", 0.25, "runner")) == "write+0.250s/runner"


def test_verification_catches_a_wrong_effect_and_a_lost_ledger_object(tmp_path: Path) -> None:
    trial = ChaosTrial(TrialPlan.from_seed(3, process_share=0.0), tmp_path / "trial", keep=True)
    result = trial.run()
    assert result.ok, result.summary()

    name = trial.plan.names[-1]
    (trial.workdir / "effects" / name).write_text("-1")
    assert any(f"effect of {name}" in p for p in verify(trial, result))

    (trial.workdir / "effects" / name).write_text(str(trial.plan.expected_values()[name]))
    assert verify(trial, result) == []
    store = trial.store
    batches = sorted(store.list_prefix(ledger_prefix(TENANT, WORKSPACE) + "batches/"))
    store.delete(batches[-1])  # an event the projections reflect is no longer in the ledger
    problems = verify(trial, result)
    assert any("full ledger replay differ" in p for p in problems), problems
