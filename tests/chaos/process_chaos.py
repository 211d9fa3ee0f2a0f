"""Process-mode chaos: kills anchored on `TaskStarted`, of worker processes, of the pool's manager.

Every trial runs the harness's random DAG with ``--processes`` (`TrialPlan`) and is
checked by the harness's `verify` (every asset succeeded once, effects once, stored
outputs right, a full replay of the ledger equals the published projections). One
seed decides a trial; its mode is ``MODES[seed % 3]``, so consecutive seeds cycle:

- ``started``: the runner is SIGKILLed 1-3 times (with its workers, or alone: its
  workers are orphaned) 0-50 ms after an attempt *started*: the harness watches the
  ledger for a new `TaskStarted` event. Then a final invocation runs to the end.
- ``worker``: one invocation; 1-3 times, 0-50 ms after a new `TaskStarted`, the worker
  process that reported it (its ``worker_id`` names its pid) is SIGKILLed. The pool
  breaks; the runner must blame that attempt alone and redeliver the others free.
- ``manager``: one invocation; 1-2 times, 0-50 ms after a new `TaskStarted`, the pool's
  manager process (``servo-manager``) is SIGKILLed. The pool must be replaced.

Processes are found by name (``/proc/PID/comm``) and by working directory (the trial's
own), so nothing outside the trial is ever killed. Run a campaign with::

    python -m tests.chaos.harness --mode process --trials 30 --seed 1234
    python -m tests.chaos.process_chaos --trials 30 --seed 1234   # the same
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from servo.engine import events as ev
from servo.engine.ledger import LedgerReader, ledger_prefix

from .harness import (
    TENANT,
    WORKSPACE,
    ChaosTrial,
    Invocation,
    KillPlan,
    TrialPlan,
    TrialResult,
)

MODES = ("started", "worker", "manager")
MAX_STARTED_DELAY_S = 0.05  # kills come 0-50 ms after the TaskStarted they wait for
STARTED_WAIT_S = 30.0  # longest wait for a new TaskStarted during one invocation
START_POLL_S = 0.01  # how often the ledger is read for new TaskStarted events
POOL_LOST_LOG = "dispatch.worker_pool_lost"


@dataclass(frozen=True, slots=True)
class Fault:
    """One kill inside a running invocation.

    Attributes:
        target: "worker" (the process that reported the TaskStarted) or "manager".
        delay_s: seconds after a new TaskStarted event.
    """

    target: str
    delay_s: float

    def __str__(self) -> str:
        return f"{self.target}@started+{self.delay_s:.3f}s"


@dataclass(frozen=True, slots=True)
class ProcessTrialPlan:
    """What one seed decides: the mode, the harness plan (``--processes``), the faults."""

    mode: str
    base: TrialPlan
    faults: tuple[Fault, ...] = ()

    @classmethod
    def from_seed(cls, seed: int, mode: str | None = None) -> ProcessTrialPlan:
        """Draw the plan; `mode` overrides ``MODES[seed % 3]``."""
        mode = mode or MODES[seed % len(MODES)]
        if mode not in MODES:
            raise ValueError(f"unknown process chaos mode {mode!r}; use one of {MODES}")
        rng = random.Random(f"process-chaos-{seed}")
        orphans = 0.5 if mode == "started" else 0.0
        base = TrialPlan.from_seed(seed, process_share=1.0, orphan_share=orphans)
        delay = lambda: round(rng.uniform(0.0, MAX_STARTED_DELAY_S), 3)  # noqa: E731
        if mode == "started":
            kills = tuple(KillPlan("started", delay(), k.scope) for k in base.kills)
            return cls(mode, replace(base, kills=kills))
        count = rng.randint(1, 3) if mode == "worker" else rng.randint(1, 2)
        faults = tuple(Fault(mode, delay()) for _ in range(count))
        return cls(mode, replace(base, kills=()), faults)

    def describe(self) -> str:
        faults = ", ".join(map(str, self.faults))
        return f"mode {self.mode}" + (f", faults {faults}" if faults else "")


@dataclass(slots=True)
class ProcessTrialResult:
    """A harness `TrialResult` plus what the process faults did."""

    mode: str
    result: TrialResult
    faults: list[str] = field(default_factory=list)
    pool_losses: int = 0

    @property
    def ok(self) -> bool:
        return self.result.ok

    def summary(self) -> str:
        head, *rest = self.result.summary().split("\n")
        faults = "; ".join(self.faults) or "none"
        return "\n".join(
            [f"{head} | [{self.mode}] faults: {faults} | pool losses {self.pool_losses}", *rest]
        )


class _StartWatcher:
    """Yields the `TaskStarted` events the ledger gains from now on."""

    def __init__(self, trial: ChaosTrial) -> None:
        self._store = trial.store
        self._prefix = ledger_prefix(TENANT, WORKSPACE)
        self._seen = set(self._store.list_prefix(self._prefix))

    def new_starts(self) -> Iterator[ev.Event]:
        for path in sorted(set(self._store.list_prefix(self._prefix)) - self._seen):
            try:
                events = LedgerReader(self._store).read(path)
            except Exception:  # read it again on the next poll
                continue
            self._seen.add(path)
            yield from (e for e in events if isinstance(e.payload, ev.TaskStarted))

    def skip_backlog(self) -> None:
        """Forget what the ledger holds now: the next start waited for is a fresh one."""
        self._seen.update(self._store.list_prefix(self._prefix))

    def wait(self, alive: Callable[[], bool], timeout: float) -> ev.Event | None:
        """The next new TaskStarted; None once `alive()` is False or after `timeout`."""
        deadline = time.monotonic() + timeout
        while alive() and time.monotonic() < deadline:
            for event in self.new_starts():
                return event
            time.sleep(START_POLL_S)
        return None


class ProcessChaosTrial(ChaosTrial):
    """A harness trial with process-mode faults (see the module docstring)."""

    def __init__(self, plan: ProcessTrialPlan, workdir: Path, **kwargs: object) -> None:
        super().__init__(plan.base, workdir, **kwargs)  # type: ignore[arg-type]
        self.process_plan = plan
        self.outcome = ProcessTrialResult(plan.mode, TrialResult(0, plan.base, "", workdir))
        self._kill: KillPlan | None = None
        self._watcher: _StartWatcher | None = None

    def run(self) -> TrialResult:
        result = super().run()
        self.outcome.result = result
        return result

    def _invoke(
        self, defs: Path, number: int, kill: KillPlan | None, recorded: frozenset[str]
    ) -> Invocation:
        self._kill, self._watcher = kill, _StartWatcher(self)
        injector = None
        if kill is None and self.process_plan.faults:
            done = threading.Event()
            injector = threading.Thread(target=self._inject, args=(done,), daemon=True)
            injector.start()
        try:
            invocation = super()._invoke(defs, number, kill, recorded)
        finally:
            if injector is not None:
                done.set()
                injector.join(STARTED_WAIT_S)
        err = self.workdir / "logs" / f"{number}.err"
        self.outcome.pool_losses += err.read_text(errors="replace").count(POOL_LOST_LOG)
        return invocation

    def _wait_for_write(self, process: subprocess.Popen[bytes], before: int) -> bool:
        """For a kill anchored on "started": wait for a new TaskStarted instead."""
        if self._kill is None or self._kill.anchor != "started":
            return super()._wait_for_write(process, before)
        assert self._watcher is not None
        found = self._watcher.wait(lambda: process.poll() is None, self.timeout_s)
        if found is None and process.poll() is None:
            raise subprocess.TimeoutExpired(process.args, self.timeout_s)
        return found is not None

    def _inject(self, done: threading.Event) -> None:
        assert self._watcher is not None
        for fault in self.process_plan.faults:
            started = self._watcher.wait(lambda: not done.is_set(), STARTED_WAIT_S)
            while started is not None and self._worker_pid(started) is None:
                # reported by a worker that is gone (its pool was lost): not a live anchor
                started = self._watcher.wait(lambda: not done.is_set(), STARTED_WAIT_S)
            if started is None:
                self.outcome.faults.append(f"{fault} -> no new TaskStarted")
                return
            time.sleep(fault.delay_s)
            self.outcome.faults.append(f"{fault} -> {self._kill_target(fault, started)}")
            self._watcher.skip_backlog()  # starts reported before the kill are stale anchors

    def _kill_target(self, fault: Fault, started: ev.Event) -> str:
        if fault.target == "worker":
            pid = self._worker_pid(started)
            pids = [] if pid is None else [pid]
        else:
            pids = [p for p in _pids() if self._ours(p, "servo-manager")]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        what = f"{fault.target} pid {pids[0]}" if pids else f"no live {fault.target}"
        return f"killed {what} ({started.task_key} attempt {started.attempt} started)"

    def _worker_pid(self, started: ev.Event) -> int | None:
        """The live worker process of this trial that reported `started`, if any."""
        assert isinstance(started.payload, ev.TaskStarted)
        worker = started.payload.worker_id
        pid = int(worker.removeprefix("process-")) if worker.startswith("process-") else -1
        return pid if self._ours(pid, "servo-worker") else None

    def _ours(self, pid: int, name: str) -> bool:
        """Whether `pid` is a live process called `name` working in this trial."""
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            return False
        return comm == name and Path(cwd) == self.workdir


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def run_process_campaign(
    seed: int,
    trials: int,
    workdir: Path,
    *,
    report: Callable[[str], None] = print,
    keep: bool = False,
    mode: str | None = None,
) -> list[ProcessTrialResult]:
    """Trials with seeds ``seed``, ``seed + 1``, ...; report each as it ends."""
    report(f"process chaos: {trials} trials, base seed {seed} (trial i uses seed {seed} + i)")
    outcomes = []
    for i in range(trials):
        plan = ProcessTrialPlan.from_seed(seed + i, mode)
        where = workdir / f"process-trial-{i}-seed-{seed + i}"
        trial = ProcessChaosTrial(plan, where, index=i, keep=keep)
        trial.run()
        report(trial.outcome.summary())
        outcomes.append(trial.outcome)
    report(process_campaign_summary(outcomes))
    return outcomes


def process_campaign_summary(outcomes: Sequence[ProcessTrialResult]) -> str:
    """Trials, passes, kills and pool losses per mode; failing seeds."""
    lines = []
    for mode in MODES:
        mine = [o for o in outcomes if o.mode == mode]
        if not mine:
            continue
        kills = sum(len(o.result.kill_points) for o in mine)
        faults = Counter(f.split(" -> ")[1].split(" (")[0].split(" pid")[0] for o in mine
                         for f in o.faults)  # fmt: skip
        lines.append(
            f"process chaos [{mode}]: {len(mine)} trials, {sum(o.ok for o in mine)} passed, "
            f"{kills} runner kills, faults {dict(faults) or 'none'}, "
            f"{sum(o.pool_losses for o in mine)} pool losses, "
            f"{sum(o.result.seconds for o in mine):.1f}s"
        )
    failed = [o.result.seed for o in outcomes if not o.ok]
    lines.append(f"process chaos: seeds {[o.result.seed for o in outcomes]}")
    lines.append(
        f"process chaos: failing seeds {failed}" if failed else "process chaos: every trial passed"
    )
    return "\n".join(lines)


def process_failure_message(outcomes: Sequence[ProcessTrialResult]) -> str:
    """Every failing trial with its seed, mode, faults and problems; how to replay."""
    failed = [o for o in outcomes if not o.ok]
    return (
        f"{len(failed)} of {len(outcomes)} process chaos trials failed, seeds "
        f"{[o.result.seed for o in failed]} (replay one: python -m tests.chaos.harness "
        f"--mode process --trials 1 --seed SEED); all seeds "
        f"{[o.result.seed for o in outcomes]}:\n" + "\n".join(o.summary() for o in failed)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.chaos.process_chaos``: same as ``harness --mode process``."""
    from .harness import main as harness_main

    return harness_main(["--mode", "process", *(argv or [])])


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
