"""Clock chaos: the runner under a clock that jumps, crashes, and skewed writers.

One seed decides a trial (`ClockPlan.from_seed`): a random DAG (`TrialPlan`, built
in this process), 1-2 runs, and a list of invocations. Each invocation drives one of
the runs with a fresh `EmbeddedRunner` whose `ChaosClock` starts at a skew of
``-3 h .. +3 h`` and jumps, between and within calls, forward and backward by minutes
or hours. Most invocations are *killed*: the clock raises `Killed` (a BaseException,
like ``kill -9`` it runs no cleanup) at its K-th reading by the runner's thread, and
the runner object is dropped without `close` — its pool is told to start nothing
more, attempts already running finish as orphans. Other writers with their own
skewed clocks run beside some invocations: one writes the run's cancel request
(create-only, from another thread, while the run is driven), or, in trials with two
runs, a second runner drives the other run at the same time.

After EVERY invocation a fresh runner must recover exactly the ledger
(`check_recovered`: replay equals published). Then the clock settles (at the latest
time it showed, so that no timer is pushed past the end of the trial) and each run
is driven to its end: a run without a cancel request succeeded with the right values
and effects; a cancelled one is terminal, and no task of any run succeeded twice.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from servo.engine import schema as s
from servo.engine.cancellation import request_cancel
from servo.engine.ids import now_us, run_id_for_key
from servo.engine.ledger import LedgerWriter
from servo.engine.replay import replay_ledger
from servo.errors import ServoError
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.sdk.definitions import Definitions
from servo.storage.memory import MemoryObjectStore

from .harness import TENANT, WORKSPACE, TrialPlan
from .inprocess import (
    FAST,
    Effects,
    build_definitions,
    check_invariants,
    check_recovered,
    check_run,
    first,
)

MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US
#: An invocation still running after this long is stopped and reported as hung.
INVOCATION_TIMEOUT_S = 20.0
#: Invocations with the settled clock allowed to finish each run.
SETTLED_INVOCATIONS = 3


class Killed(BaseException):
    """Raised by a `ChaosClock` to crash the runner at an arbitrary point."""


class ChaosClock:
    """Epoch microseconds: the real time plus an offset that jumps.

    Each reading jumps the offset with probability `jump_share`, by a random step of
    ±1-30 minutes or ±1-3 hours. After `arm(k)`, the k-th reading by the arming thread
    raises `Killed` (readings by worker threads never do). `furthest` is the latest
    time any reading returned. Thread-safe.
    """

    def __init__(self, rng: random.Random, offset_us: int = 0, jump_share: float = 0.0) -> None:
        self._rng = rng
        self.offset_us = offset_us
        self.jump_share = jump_share
        self.jumps = 0
        self.furthest = 0
        self._kill_at: int | None = None
        self._driver: int | None = None
        self._readings = 0
        self._lock = threading.Lock()

    def arm(self, kill_after: int | None) -> None:
        """Raise `Killed` at this thread's `kill_after`-th reading (None: never)."""
        self._kill_at, self._driver, self._readings = kill_after, threading.get_ident(), 0

    def disarm(self) -> None:
        self._kill_at = None

    def __call__(self) -> int:
        with self._lock:
            if self._kill_at is not None and threading.get_ident() == self._driver:
                self._readings += 1
                if self._readings >= self._kill_at:
                    self._kill_at = None
                    raise Killed(f"killed at clock reading {self._readings}")
            if self.jump_share and self._rng.random() < self.jump_share:
                self.offset_us += jump(self._rng)
                self.jumps += 1
            now = now_us() + self.offset_us
            self.furthest = max(self.furthest, now)
            return now


def jump(rng: random.Random) -> int:
    """A clock step: ±1-30 minutes or ±1-3 hours."""
    size = rng.randint(1, 30) * MINUTE_US if rng.random() < 0.6 else rng.randint(1, 3) * HOUR_US
    return size if rng.random() < 0.5 else -size


@dataclass(frozen=True, slots=True)
class InvocationPlan:
    """One invocation of a clock trial.

    Attributes:
        run: which run (index) it drives.
        skew_us: the clock's offset when it starts.
        jump_share: the chance that a clock reading jumps.
        kill_after: the runner's clock reading that kills it (None: runs to the end).
        cancel_skew_us: another writer, its clock skewed by this much, cancels the
            run while the invocation drives it (None: no cancel).
        cancel_delay_s: how long after the invocation's start the cancel is written.
        partner_skew_us: meanwhile another runner, its clock skewed by this much,
            drives the other run of the trial to its end (None: no partner).
    """

    run: int
    skew_us: int
    jump_share: float
    kill_after: int | None
    cancel_skew_us: int | None = None
    cancel_delay_s: float = 0.0
    partner_skew_us: int | None = None

    def __str__(self) -> str:
        kill = f"kill@{self.kill_after}" if self.kill_after is not None else "end"
        text = (
            f"run{self.run} skew{self.skew_us // MINUTE_US:+d}m jumps{self.jump_share:.2f} {kill}"
        )
        if self.cancel_skew_us is not None:
            text += f" cancel{self.cancel_skew_us // MINUTE_US:+d}m@{self.cancel_delay_s:.3f}s"
        if self.partner_skew_us is not None:
            text += f" partner{self.partner_skew_us // MINUTE_US:+d}m"
        return text


@dataclass(frozen=True, slots=True)
class ClockPlan:
    """Everything one seed decides about a clock trial."""

    seed: int
    trial: TrialPlan
    runs: int
    invocations: tuple[InvocationPlan, ...]

    @classmethod
    def from_seed(cls, seed: int) -> ClockPlan:
        rng = random.Random(seed)
        trial = TrialPlan.from_seed(seed, process_share=0.0)
        runs = rng.randint(1, 2)
        invocations = []
        for _ in range(rng.randint(2, 5)):
            skew = 0 if rng.random() < 0.2 else jump(rng)
            invocations.append(
                InvocationPlan(
                    run=rng.randrange(runs),
                    skew_us=skew,
                    jump_share=rng.choice((0.0, 0.02, 0.1)),
                    kill_after=rng.randint(3, 60) if rng.random() < 0.75 else None,
                    cancel_skew_us=jump(rng) if rng.random() < 0.1 else None,
                    cancel_delay_s=round(rng.uniform(0.0, 0.05), 3),
                    partner_skew_us=jump(rng) if runs == 2 and rng.random() < 0.3 else None,
                )
            )
        return cls(seed, trial, runs, tuple(invocations))

    def describe(self) -> str:
        return (f"seed={self.seed}: {self.trial.describe()}; {self.runs} run(s); "
                + " | ".join(map(str, self.invocations)))  # fmt: skip


@dataclass(slots=True)
class ClockOutcome:
    """What a clock trial did and found (see `FaultOutcome`)."""

    plan: ClockPlan
    invocations: list[str] = field(default_factory=list)
    jumps: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        status = "ok" if self.ok else "FAILED"
        outcomes = " ".join(self.invocations)
        line = (f"[clocks] {status} {self.plan.describe()} | outcomes {outcomes} | "
                f"{self.jumps} jumps | {self.seconds:.2f}s")  # fmt: skip
        if self.problems:
            line += "".join(f"\n    - {p}" for p in first(self.problems, 5))
            replay = f"--mode clocks --trials 1 --seed {self.plan.seed}"
            line += f"\n    replay: python -m tests.chaos.harness {replay}"
        return line


def drive(runner: EmbeddedRunner, clock: ChaosClock, key: str, kill_after: int | None) -> str:
    """One invocation: start or find the run of `key`, drive it, close the runner —
    or, when the clock kills it, drop the runner as a crash would."""
    timer = threading.Timer(INVOCATION_TIMEOUT_S, runner.request_stop, (0.0,))
    timer.daemon = True
    timer.start()
    clock.arm(kill_after)
    try:
        run_id = runner.start_run(idempotency_key=key).run_id
        row = runner.wait(run_id)
        clock.disarm()
        runner.close()
        return "interrupted" if runner.interrupted else row.status
    except Killed:
        runner.pool.hold()  # the crash took the pool's queue with it
        runner.pool.close(0.0)
        return "killed"
    except ServoError as exc:
        clock.disarm()
        runner.close()
        return type(exc).__name__
    finally:
        clock.disarm()
        timer.cancel()


def run_clock_trial(plan: ClockPlan) -> ClockOutcome:
    """Run one trial (see the module docstring)."""
    started = time.perf_counter()
    outcome = ClockOutcome(plan)
    rng = random.Random(plan.seed ^ 0x5EED)
    store = MemoryObjectStore()
    effects = Effects()
    defs = build_definitions(plan.trial, effects)
    options = replace(FAST, concurrency=plan.trial.concurrency)
    keys = [f"clock-trial-{n}" for n in range(plan.runs)]
    cancelled: set[str] = set()
    furthest = now_us()

    def check(label: str) -> bool:
        problems = check_recovered(store, defs)
        outcome.problems.extend(f"after invocation {len(outcome.invocations)} ({label}): {p}"
                                for p in problems)  # fmt: skip
        return not problems

    try:
        for step in plan.invocations:
            clock = ChaosClock(rng, step.skew_us, step.jump_share)
            key = keys[step.run]
            others = _others(store, defs, options, step, keys, cancelled, plan.seed)
            result = drive(EmbeddedRunner(store, defs, options, clock=clock), clock, key,
                           step.kill_after)  # fmt: skip
            for other in others:
                other.join(INVOCATION_TIMEOUT_S)
            outcome.invocations.append(result)
            outcome.jumps += clock.jumps
            furthest = max(furthest, clock.furthest)
            if not check(f"{step}: {result}"):
                break
        if outcome.ok:
            for key in keys:
                for _ in range(SETTLED_INVOCATIONS):
                    # the clock runs on from the latest time the chaos showed
                    settled = ChaosClock(rng, max(0, furthest - now_us()))
                    runner = EmbeddedRunner(store, defs, options, clock=settled)
                    result = drive(runner, settled, key, None)
                    outcome.invocations.append(f"settled:{result}")
                    if not check(f"settled: {result}") or result in _TERMINAL:
                        break
            outcome.problems.extend(_final(store, plan, effects, keys, cancelled))
    except Exception as exc:  # a crash of the trial itself is a finding, with its seed
        outcome.problems.append(f"trial raised {type(exc).__name__}: {exc}")
    outcome.seconds = time.perf_counter() - started
    return outcome


_TERMINAL = (s.RUN_SUCCEEDED, s.RUN_FAILED, s.RUN_CANCELLED)


def _others(
    store: MemoryObjectStore, defs: Definitions, options: RunnerOptions, step: InvocationPlan,
    keys: list[str], cancelled: set[str], seed: int,
) -> list[threading.Thread]:  # fmt: skip
    """Start the step's other writers: a canceller, a runner on the other run."""
    threads = []
    if step.cancel_skew_us is not None:
        run_id = run_id_for_key(TENANT, WORKSPACE, keys[step.run])
        skew, delay = step.cancel_skew_us, step.cancel_delay_s

        def cancel() -> None:
            time.sleep(delay)
            if replay_ledger(store, TENANT, WORKSPACE).state.run(run_id) is not None:
                writer = LedgerWriter(store, TENANT, WORKSPACE)
                request_cancel(writer, run_id, "clock chaos", now_us() + skew)
                cancelled.add(run_id)

        threads.append(threading.Thread(target=cancel, name="chaos-canceller"))
    if step.partner_skew_us is not None:
        clock = ChaosClock(random.Random(seed), step.partner_skew_us, step.jump_share)
        key = keys[1 - step.run]
        partner = EmbeddedRunner(store, defs, options, clock=clock)
        threads.append(threading.Thread(target=drive, args=(partner, clock, key, None),
                                        name="chaos-partner"))  # fmt: skip
    for thread in threads:
        thread.daemon = True
        thread.start()
    return threads


def _final(
    store: MemoryObjectStore, plan: ClockPlan, effects: Effects, keys: list[str],
    cancelled: set[str],
) -> list[str]:  # fmt: skip
    state = replay_ledger(store, TENANT, WORKSPACE).state
    problems = check_invariants(state)
    expected = plan.trial.expected_values()
    for key in keys:
        run_id = run_id_for_key(TENANT, WORKSPACE, key)
        run = state.run(run_id)
        if run is None:
            continue  # every invocation of it was killed before its request was written
        if run_id not in cancelled:
            problems.extend(check_run(store, run_id, plan.trial, effects))
            continue
        if run.status not in _TERMINAL:
            problems.append(f"cancelled run {run_id} is {run.status}")
        for task in state.tasks_of(run_id):
            if task.status not in (s.SUCCEEDED, s.FAILED, s.SKIPPED, s.CANCELLED):
                problems.append(f"task {task.task_key} of cancelled run {run_id} is {task.status}")
            value = effects.values.get((run_id, task.task_key))
            if task.status == s.SUCCEEDED and value != expected[task.task_key]:
                problems.append(f"effect of {task.task_key} in {run_id} is {value!r}")
    return problems


def run_clock_campaign(
    base: int, trials: int, report: Callable[[str], None] = print
) -> list[ClockOutcome]:
    """Trials ``base .. base + trials - 1``, each reported as it ends."""
    outcomes = []
    for seed in range(base, base + trials):
        found = run_clock_trial(ClockPlan.from_seed(seed))
        report(found.summary())
        outcomes.append(found)
    return outcomes
