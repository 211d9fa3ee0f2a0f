"""Chaos trials of the serverless mode: real processes, real faults, checked results.

One emulator (`servo.testing.emulator`: fake-gcs-server, the local Cloud Tasks
server, a reconciler and two workers as `servo serve` processes) serves a campaign.
Each trial submits a fan-out/fan-in run and injects one fault chosen by its seed:

- ``kill_worker``: SIGKILL a worker while an attempt runs on it, start it again;
- ``kill_reconciler``: SIGKILL the reconciler mid-run (mid-step, at a random
  moment), start it again;
- ``drop_duplicate``: the queue loses 10 % of pushes and sends 10 % twice;
- ``delay``: 30 % of pushes wait a second.

Every run must end, with the right values, and each succeeded asset's result must be
recorded exactly once: one winning attempt that succeeded, whose output is the task's.
Seeds are printed; ``python -m tests.chaos.serverless_chaos --trials 100 --seed S``
runs a longer campaign.
"""

from __future__ import annotations

import argparse
import random
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from servo.config.settings import load_settings
from servo.dispatch.cloud_tasks import CloudTasksReconcileQueue
from servo.engine import schema as s
from servo.engine.derive import current_attempts
from servo.engine.snapshot import SnapshotReader
from servo.runner.remote import RunFollower, submit_run
from servo.sdk.io import read_value
from servo.sdk.loader import load_definitions
from servo.storage.factory import open_store
from servo.testing.cloud_tasks.faults import Faults
from servo.testing.emulator import EmulatorOptions, GcpEmulator

MODES = ("kill_worker", "kill_reconciler", "drop_duplicate", "delay")
WIDTH = 6
#: Seconds a trial's run may take before the trial fails.
RUN_TIMEOUT_S = 90.0

DEFINITIONS = f"""
import random
import time

from servo import asset


@asset
def source() -> int:
    return 1


def _middle(index):
    def compute(source: int) -> int:
        time.sleep(random.uniform(0.05, 0.6))
        return source * 10 + index

    return asset(name=f"part_{{index}}")(compute)


{"".join(f"part_{i} = _middle({i}){chr(10)}" for i in range(WIDTH))}

@asset
def total({", ".join(f"part_{i}: int" for i in range(WIDTH))}) -> int:
    return {" + ".join(f"part_{i}" for i in range(WIDTH))}
"""

PARTS = {f"part_{i}": 10 + i for i in range(WIDTH)}
EXPECTED = {"source": 1, **PARTS, "total": sum(PARTS.values())}

#: The reconciler judges quickly here: a lost push is redriven within seconds.
RECONCILER = {
    "report_lag_s": 0.3,
    "heartbeat_timeout_s": 5.0,
    "start_deadline_s": 3.0,
    "ready_deadline_s": 1.0,
    "timer_grace_s": 0.5,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """One trial's result."""

    seed: int
    mode: str
    run_id: str
    seconds: float
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED: " + "; ".join(self.problems)
        return f"serverless chaos seed={self.seed} mode={self.mode} run={self.run_id} " \
               f"{self.seconds:.1f}s {verdict}"  # fmt: skip


@contextmanager
def campaign_cloud(folder: Path) -> Iterator[Campaign]:
    """An emulator and a client for a campaign in `folder`."""
    defs = folder / "chaos_defs.py"
    defs.write_text(DEFINITIONS, encoding="utf-8")
    options = EmulatorOptions(
        defs=defs,
        workers=2,
        worker_concurrency=4,
        database=False,
        sweep_interval_s=0.5,
        settings={"reconciler": RECONCILER},
    )
    with GcpEmulator(options) as emulator:
        campaign = Campaign(emulator, defs)
        try:
            yield campaign
        finally:
            campaign.queue.close()


class Campaign:
    """Runs trials against one emulator."""

    def __init__(self, emulator: GcpEmulator, defs: Path) -> None:
        self.emulator = emulator
        settings = load_settings(emulator.config_path, environ={})
        self.store = open_store(settings.storage, Path(settings.home))
        self.defs = load_definitions(str(defs))
        self.queue = CloudTasksReconcileQueue.from_settings(settings)

    def trial(self, seed: int) -> Outcome:
        rng = random.Random(seed)
        mode = MODES[seed % len(MODES)]
        started = time.monotonic()
        faults = {
            "drop_duplicate": Faults(drop=0.1, duplicate=0.1, seed=seed),
            "delay": Faults(delay=0.3, delay_s=1.0, seed=seed),
        }.get(mode, Faults())
        self.emulator.tasks.set_faults(faults)
        run_id = "-"
        try:
            run_id = submit_run(
                self.store, self.defs, self.queue.notify, tenant_id="default",
                workspace_id="default",
            ).run_id  # fmt: skip
            follower = RunFollower(self.store, "default", "default", run_id)
            if mode == "kill_worker":
                victim = self._running_worker(first=rng.randrange(2))
                self.emulator.kill_worker(victim)
                time.sleep(rng.uniform(0.1, 0.8))
                self.emulator.start_worker(victim)
            elif mode == "kill_reconciler":
                time.sleep(rng.uniform(0.05, 0.8))
                self.emulator.kill_reconciler()
                time.sleep(rng.uniform(0.1, 0.5))
                self.emulator.start_reconciler()
            run = follower.wait(timeout_s=RUN_TIMEOUT_S, poll_s=0.05)
            problems = self._check(run_id) if run is not None else ["not followed"]
        except Exception as exc:  # a trial that raises is a failed trial, with why
            problems = [f"{type(exc).__name__}: {exc}"]
        finally:
            self.emulator.tasks.set_faults(Faults())
        if problems:
            problems.append("logs:\n" + self.emulator.logs())
        return Outcome(seed, mode, run_id, time.monotonic() - started, tuple(problems))

    def _running_worker(self, first: int, timeout_s: float = 30.0) -> int:
        """A worker that runs an attempt now (its ``servo_active_executions``),
        asking worker `first` first: the kill then lands mid-task, whatever the
        projections show yet."""
        order = [first, 1 - first]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for worker in order:
                url = self.emulator.worker_url(worker) + "/metrics"
                with urllib.request.urlopen(url, timeout=5) as answer:
                    text = answer.read().decode()
                active = re.search(r"^servo_active_executions (\S+)$", text, re.MULTILINE)
                if active is not None and float(active.group(1)) > 0:
                    return worker
            time.sleep(0.01)
        raise AssertionError(f"no worker ran an attempt within {timeout_s} s")

    def _check(self, run_id: str) -> list[str]:
        snapshot = SnapshotReader(self.store, "default", "default").load()
        run = snapshot.run(run_id)
        if run is None or run.status != s.RUN_SUCCEEDED:
            return [f"run ended {None if run is None else run.status}"]
        problems = []
        attempts: dict[str, list[s.AttemptRow]] = {}
        for row in snapshot.rows("attempts"):
            if row.run_id == run_id:
                attempts.setdefault(row.task_key, []).append(row)
        for task in snapshot.tasks_of(run_id):
            key = task.asset_key
            if task.output_location is None or task.output_format is None:
                problems.append(f"{key}: no recorded output")
                continue
            value = read_value(self.store, task.output_location, task.output_format)
            if value != EXPECTED[key]:
                problems.append(f"{key}: value {value!r}, expected {EXPECTED[key]!r}")
            winners = current_attempts(attempts.get(task.task_key, []))
            succeeded = [a for a in winners.values() if a.outcome == "succeeded"]
            if len(succeeded) != 1:
                problems.append(f"{key}: {len(succeeded)} succeeded attempts recorded")
            elif succeeded[0].output_location != task.output_location:
                problems.append(f"{key}: the task's output is not its winning attempt's")
        if {t.asset_key for t in snapshot.tasks_of(run_id)} != set(EXPECTED):
            problems.append("the run's tasks are not the expected assets")
        return problems


def run_campaign(
    seed: int, trials: int, folder: Path, *, report: Callable[[str], None] = print
) -> list[Outcome]:
    """`trials` trials with seeds `seed`, `seed + 1`, ... on one emulator."""
    outcomes = []
    with campaign_cloud(folder) as campaign:
        for offset in range(trials):
            outcome = campaign.trial(seed + offset)
            report(outcome.line().split("\nlogs:")[0])
            outcomes.append(outcome)
    return outcomes


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        outcomes = run_campaign(args.seed, args.trials, Path(folder))
    failed = [o for o in outcomes if not o.ok]
    print(f"{len(outcomes) - len(failed)}/{len(outcomes)} trials ok (seed {args.seed})")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
