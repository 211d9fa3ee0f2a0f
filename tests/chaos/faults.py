"""Fault chaos: runs under a fault-injecting store, restarted after every failure.

One seed decides a trial (`FaultPlan.from_seed`): a random DAG (the harness's
`TrialPlan`, built in this process by `tests.chaos.inprocess`), 1-3 `FaultRule`s for
a `FaultyObjectStore` over one in-memory store, and 1-2 runs. Each run is invoked
(`EmbeddedRunner.start_run` + `wait` + `close`, like ``servo materialize``) under the
faulty store up to `FaultPlan.faulty_invocations` times; an invocation that fails is
restarted (after freeing space when the disk filled up). Then the faults stop and the
run is invoked on the healthy store until it ends.

After EVERY invocation (in ``torn`` trials after the startup salvage of
`servo.maintenance.salvage`, which sets torn objects aside as every start on a home
does):

- the published projections hold no row the ledger lacks (`check_no_phantoms`);
- an invocation that ended cleanly published exactly the ledger (`check_published`);
- a fresh runner on the healthy store recovers exactly the ledger (`check_recovered`).

At the end each run succeeded: every task once, values and effects right. A run that
FAILED because faults used up an asset's retries (every failed attempt of its failed
tasks names an injected fault, or was given up as lost) is a correct outcome too:
then a rerun on the healthy store must succeed.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from servo.engine.ids import run_id_for_key
from servo.errors import ServoError
from servo.maintenance.salvage import salvage_scope
from servo.runner import EmbeddedRunner
from servo.storage.memory import MemoryObjectStore

from .faulty import ATOMIC_KINDS, KINDS, FaultRule, FaultyObjectStore
from .harness import TENANT, WORKSPACE, TrialPlan
from .inprocess import (
    FAST,
    Effects,
    build_definitions,
    check_no_phantoms,
    check_published,
    check_recovered,
    check_run,
    failed_by_faults,
    first,
)

#: An invocation still running after this long is stopped and reported as hung.
INVOCATION_TIMEOUT_S = 20.0
#: Healthy invocations allowed to finish a run once faults stop.
HEALTHY_INVOCATIONS = 3


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Everything one seed decides about a fault trial.

    Attributes:
        seed: the seed.
        trial: the DAG (and concurrency) of the runs.
        rules: the faults of the faulty store.
        runs: how many runs, one after the other.
        faulty_invocations: invocations of each run under faults.
        torn: torn writes were among the kinds drawn (``--mode torn``).
    """

    seed: int
    trial: TrialPlan
    rules: tuple[FaultRule, ...]
    runs: int
    faulty_invocations: int
    torn: bool = False

    @classmethod
    def from_seed(cls, seed: int, *, torn: bool = False) -> FaultPlan:
        """Draw a plan; torn writes only with `torn` (a store that writes atomically,
        as the local store does, never shows them; power loss is another suite's)."""
        rng = random.Random(seed)
        trial = TrialPlan.from_seed(seed, process_share=0.0)
        kinds = KINDS if torn else ATOMIC_KINDS
        rules = tuple(FaultRule.draw(rng, kinds=kinds) for _ in range(rng.randint(1, 3)))
        if torn:  # every torn trial tears writes: a draw alone may pick none (or reads)
            every = rng.randint(3, 12)
            rules = (FaultRule("put_if_absent", every, "torn", rng.randrange(every)), *rules)
        return cls(seed, trial, rules, rng.randint(1, 2), rng.randint(1, 4), torn)

    def describe(self) -> str:
        rules = ", ".join(map(str, self.rules))
        return (f"seed={self.seed}: {self.trial.describe()}; {self.runs} run(s) x "
                f"{self.faulty_invocations} faulty invocation(s); faults {rules}")  # fmt: skip


@dataclass(slots=True)
class FaultOutcome:
    """What a fault trial did and found.

    Attributes:
        plan: the plan.
        invocations: one line per invocation (``faulty: DiskFullError``, ``healthy: ok``).
        faults: injected faults by kind.
        problems: broken guarantees (empty: the trial passed).
        seconds: how long the trial took.
    """

    plan: FaultPlan
    invocations: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        status = "ok" if self.ok else "FAILED"
        faults = ",".join(f"{k}={v}" for k, v in sorted(self.faults.items())) or "none"
        invocations = " ".join(self.invocations)
        line = (f"[faults] {status} {self.plan.describe()} | invocations {invocations} | "
                f"injected {faults} | {self.seconds:.2f}s")  # fmt: skip
        if self.problems:
            line += "".join(f"\n    - {p}" for p in first(self.problems, 5))
            mode = "torn" if self.plan.torn else "faults"
            replay = f"--mode {mode} --trials 1 --seed {self.plan.seed}"
            line += f"\n    replay: python -m tests.chaos.harness {replay}"
        return line


def invoke(runner: EmbeddedRunner, key: str, timeout_s: float = INVOCATION_TIMEOUT_S) -> str:
    """Start (or find) the run of `key` and drive it; close the runner. Returns the
    run's status, ``interrupted`` when it hung, or the error's type name."""
    timer = threading.Timer(timeout_s, runner.request_stop, (0.0,))
    timer.daemon = True
    timer.start()
    try:
        try:
            run_id = runner.start_run(idempotency_key=key).run_id
            row = runner.wait(run_id)
            outcome = "interrupted" if runner.interrupted else row.status
        finally:
            timer.cancel()
            runner.close()
    except ServoError as exc:
        return type(exc).__name__
    return outcome


def run_fault_trial(plan: FaultPlan) -> FaultOutcome:
    """Run one trial (see the module docstring)."""
    started = time.perf_counter()
    outcome = FaultOutcome(plan)
    inner = MemoryObjectStore()
    faulty = FaultyObjectStore(inner, plan.rules)
    effects = Effects()
    defs = build_definitions(plan.trial, effects)
    options = replace(FAST, concurrency=plan.trial.concurrency)

    def after(label: str, result: str) -> bool:
        outcome.invocations.append(f"{label}:{result}")
        clean = result in ("SUCCEEDED", "FAILED", "CANCELLED", "RUNNING")
        if plan.torn:  # what a start of servo materialize does first on a home
            salvage_scope(inner, TENANT, WORKSPACE)
        problems = check_no_phantoms(inner)
        if clean and not problems:
            problems = check_published(inner)
        if not problems:
            problems = check_recovered(inner, defs)
        outcome.problems.extend(f"after invocation {len(outcome.invocations)} ({label}: "
                                f"{result}): {p}" for p in problems)  # fmt: skip
        return not problems

    try:
        for number in range(plan.runs):
            key = f"fault-trial-{number}"
            for _ in range(plan.faulty_invocations):
                result = invoke(EmbeddedRunner(faulty, defs, options), key)
                if faulty.disk_full:
                    faulty.free_space()
                if not after("faulty", result) or result == "SUCCEEDED":
                    break
            if outcome.problems:
                break
            for _ in range(HEALTHY_INVOCATIONS):
                result = invoke(EmbeddedRunner(inner, defs, options), key)
                if not after("healthy", result) or result in ("SUCCEEDED", "FAILED"):
                    break
            if outcome.problems:
                break
            run_id = run_id_for_key(TENANT, WORKSPACE, key)
            if failed_by_faults(inner, run_id):  # faults used up an asset's retries: rerun
                rerun = f"{key}-rerun"
                if not after("rerun", invoke(EmbeddedRunner(inner, defs, options), rerun)):
                    break
                run_id = run_id_for_key(TENANT, WORKSPACE, rerun)
            outcome.problems.extend(check_run(inner, run_id, plan.trial, effects))
    except Exception as exc:  # a crash of the trial itself is a finding, with its seed
        outcome.problems.append(f"trial raised {type(exc).__name__}: {exc}")
    outcome.faults.update(f.kind for f in faulty.injected)
    outcome.seconds = time.perf_counter() - started
    return outcome


def run_fault_campaign(
    base: int, trials: int, report: Callable[[str], None] = print, *, torn: bool = False
) -> list[FaultOutcome]:
    """Trials ``base .. base + trials - 1``, each reported as it ends."""
    outcomes = []
    for seed in range(base, base + trials):
        found = run_fault_trial(FaultPlan.from_seed(seed, torn=torn))
        report(found.summary())
        outcomes.append(found)
    return outcomes
