"""The chaos harness: SIGKILL the embedded runner at random points, restart it, verify.

One seed decides a trial (`TrialPlan.from_seed`, `random.Random(seed)`):

1. **Definitions**: a layered random DAG of 8-15 assets, 1-3 parents each; each
   sleeps 0-40 ms, returns the sum of its parents plus its index, records its effect
   idempotently (create-if-absent of ``effects/{asset}``, the pattern for side effects
   under at-least-once execution) and appends ``done {asset}`` to ``runs.log``. Some
   trials have assets that fail once (retryable); some use ``--processes``.
2. **Kill and restart** (`ChaosTrial`): the real ``servo materialize
   --idempotency-key K --json`` is SIGKILLed 1-3 times, each time restarted, then run
   to completion (60 s at most). A kill comes 0-1.5 s after the start (start-up,
   recovery, or after the end: then nothing is killed), or within 1.5 times the run's
   estimated span after the invocation's first ledger write (among running assets).
   It hits the process group, or in ``--processes`` trials sometimes the runner
   alone: its orphaned workers finish stale attempts beside the restarted runner.
3. **Verification** (`verify`): the last invocation exits 0 with every asset
   succeeded in the run the key names; each effect exists once with the right value;
   stored outputs are right; each task's current attempt succeeded and no other ran
   the asset to success (another success only reports a recorded result), the others
   failed or abandoned; no recorded result is computed again; nothing is
   lost: the ledger holds the run's request, and folding every ledger object into a
   fresh `EngineState` gives the runs, tasks, attempts and edges that were published.

Executions beyond one are expected when a kill lands between an asset's work and its
result record: reported, not failed on. Where a kill lands also depends on the
machine, so each kill's point is recorded (`KILL_POINTS`). A longer campaign, from
the repository root (trial ``i`` uses seed ``base + i``; ``--trials 1 --seed S``
replays one trial)::

    python -m tests.chaos.harness --trials 200 --seed 1234

``--mode process`` runs the process-mode faults of `tests.chaos.process_chaos` (kills
anchored on `TaskStarted`, of worker processes, of the pool's manager) instead,
``--mode faults|torn|clocks|machine|inprocess`` the in-process modes of
`tests.chaos.modes`, and ``--soak MINUTES`` runs trials of a mode until the time is up.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servo.engine.fold import EngineState
from servo.engine.ids import run_id_for_key
from servo.engine.ledger import LedgerReader, ledger_prefix
from servo.engine.replay import ledger_paths
from servo.storage.local import LocalObjectStore
from tests.e2e._cli import COMMAND

TENANT = WORKSPACE = "default"
IDEMPOTENCY_KEY = "chaos-trial"  # of every trial's run (each trial has its own home)
INVOCATION_TIMEOUT_S = 60.0  # longest one invocation of servo materialize may take
MAX_KILL_DELAY_S = 1.5  # kill delays from the start: uniform in [0, this] seconds
WRITE_KILL_SPAN_FACTOR = 1.5  # delays from the first ledger write: [0, this x span]
TASK_OVERHEAD_S = 0.01  # estimated orchestration cost of one task (for `_span_s`)
POLL_S = 0.002  # how often the harness looks for that first write
STDERR_TAIL = 3000  # characters of an invocation's stderr kept for failure messages
CI_SEED = 20261122  # base seed in CI (CI set) when SERVO_CHAOS_SEED is not given
#: Where a kill landed, in the order of a run's life.
KILL_POINTS = (
    "startup",  # before the run request reached the ledger (imports, planning)
    "no-progress",  # the run exists, but no asset completed during this invocation
    "mid-run",  # some assets completed during this invocation, not all
    "after-work",  # every asset's work was done (recording, publishing, exiting)
    "exited",  # the command ended before the kill: nothing was killed
)
#: Projection tables compared between the published snapshot and a full replay.
REPLAYED_TABLES = ("runs", "tasks", "attempts", "dep_satisfaction")


# ---------------------------------------------------------------------- the plan
@dataclass(frozen=True, slots=True)
class AssetPlan:
    """One generated asset.

    Attributes:
        name: the asset's name (``a00``, ``a01``, ...).
        index: its position in topological order, added to its value.
        parents: the assets it reads (earlier layers), by name.
        pause_s: how long its work sleeps.
        flaky: fails once with a retryable error before its first success.
    """

    name: str
    index: int
    parents: tuple[str, ...]
    pause_s: float
    flaky: bool = False


@dataclass(frozen=True, slots=True)
class TrialPlan:
    """Everything one seed decides about a trial.

    Attributes:
        seed: the seed it was drawn from.
        assets: the DAG, in topological order.
        layers: how many layers the DAG has.
        kills: when to SIGKILL each killed invocation, in order.
        concurrency: ``--concurrency`` of every invocation.
        processes: whether every invocation runs with ``--processes``.
    """

    seed: int
    assets: tuple[AssetPlan, ...]
    layers: int
    kills: tuple[KillPlan, ...]
    concurrency: int
    processes: bool

    @classmethod
    def from_seed(
        cls,
        seed: int,
        *,
        process_share: float = 0.15,
        flaky_share: float = 0.3,
        orphan_share: float = 0.5,
    ) -> TrialPlan:
        """Draw a plan: `process_share` / `flaky_share` are the chances of a trial with
        ``--processes`` / with flaky assets; `orphan_share` the chance that a kill in
        a ``--processes`` trial hits the runner's process only, orphaning its workers."""
        rng = random.Random(seed)
        count = rng.randint(8, 15)
        layers: list[list[int]] = []
        while (placed := sum(map(len, layers))) < count:
            size = rng.randint(1, 3) if not layers else rng.randint(1, 4)
            layers.append(list(range(placed, min(count, placed + size))))
        parents: dict[int, set[int]] = {i: set() for i in layers[0]}
        for depth, layer in enumerate(layers[1:], start=1):
            for index in layer:  # one parent in the layer above, 0-2 from any earlier one
                chosen = parents[index] = {rng.choice(layers[depth - 1])}
                earlier = [i for i in range(layer[0]) if i not in chosen]
                chosen.update(rng.sample(earlier, min(rng.randint(0, 2), len(earlier))))
        n_flaky = rng.randint(1, 2) if rng.random() < flaky_share else 0
        flaky = set(rng.sample(range(count), n_flaky))
        assets = tuple(
            AssetPlan(_name(i), i, tuple(_name(p) for p in sorted(parents[i])),
                      pause_s=round(rng.uniform(0.0, 0.040), 3), flaky=i in flaky)
            for i in range(count)
        )  # fmt: skip
        concurrency = rng.randint(1, 4)
        processes = rng.random() < process_share
        span = _span_s(assets, concurrency)
        orphans = orphan_share if processes else 0.0
        return cls(
            seed=seed,
            assets=assets,
            layers=len(layers),
            kills=tuple(KillPlan.draw(rng, span, orphans) for _ in range(rng.randint(1, 3))),
            concurrency=concurrency,
            processes=processes,
        )

    @property
    def names(self) -> list[str]:
        """The asset names, in topological order."""
        return [a.name for a in self.assets]

    def expected_values(self) -> dict[str, int]:
        """Each asset's value: the sum of its parents' values plus its index."""
        values: dict[str, int] = {}
        for a in self.assets:
            values[a.name] = sum(values[p] for p in a.parents) + a.index
        return values

    def definitions(self, root: Path) -> str:
        """The definitions file's source; effects and logs go under `root`."""
        parts = [_DEFS_HEADER.format(seed=self.seed, root=str(root))]
        for a in self.assets:
            decorator = "@asset(retry=RETRY)" if a.flaky else "@asset"
            value = " + ".join([*a.parents, str(a.index)])
            body = f'    fail_once("{a.name}")\n' if a.flaky else ""
            body += f'    return effect("{a.name}", {value}, {a.pause_s})\n'
            parts.append(f"\n\n{decorator}\ndef {a.name}({', '.join(a.parents)}):\n{body}")
        return "".join(parts)

    def describe(self) -> str:
        """One line: size, pool, concurrency, flaky assets."""
        flaky = [a.name for a in self.assets if a.flaky]
        return (
            f"{len(self.assets)} assets in {self.layers} layers, "
            f"{'processes' if self.processes else 'threads'} x{self.concurrency}"
            + (f", flaky {'/'.join(flaky)}" if flaky else "")
        )


def _name(index: int) -> str:
    return f"a{index:02d}"


def _span_s(assets: Sequence[AssetPlan], concurrency: int) -> float:
    """A rough estimate of how long the assets of one run take, start to end."""
    work = sum(a.pause_s + TASK_OVERHEAD_S for a in assets) / concurrency
    return round(work + 2 * TASK_OVERHEAD_S, 3)


_DEFS_HEADER = '''"""Generated by tests.chaos.harness (seed {seed}): a random layered DAG."""

import os
import time
from pathlib import Path

from servo import asset
from servo.resilience.retry import RetryPolicy

ROOT = Path({root!r})
EFFECTS, STAGING, FLAKY = ROOT / "effects", ROOT / "effects.staging", ROOT / "flaky"
LOG = ROOT / "runs.log"
RETRY = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.05, jitter=0.0)


def fail_once(name):  # a retryable error the first time `name` runs, never again
    try:
        os.close(os.open(FLAKY / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    raise ConnectionError(f"{{name}}: transient failure injected by the chaos harness")


def effect(name, value, pause):
    # Work, then create effects/NAME if absent: staged, then hard-linked into place
    # (like O_EXCL the link fails when the name exists; it never appears half written).
    time.sleep(pause)
    staged = STAGING / f"{{name}}-{{os.getpid()}}-{{time.monotonic_ns()}}"
    staged.write_text(str(value))
    try:
        os.link(staged, EFFECTS / name)
    except FileExistsError:
        pass  # an earlier execution recorded the effect: leave it
    finally:
        staged.unlink()
    with LOG.open("a") as log:
        log.write(f"done {{name}}\\n")
    return value
'''


@dataclass(frozen=True, slots=True)
class KillPlan:
    """When to SIGKILL one invocation.

    Attributes:
        anchor: "start" (the delay counts from the process start) or "write" (from
            the invocation's first new ledger object; no kill if none appears).
        delay_s: seconds after the anchor.
        scope: "group" kills the runner with its worker processes; "runner" only the
            runner's process: its workers live on as orphans until the invocation
            after next starts, finishing stale attempts beside the restarted runner.
    """

    anchor: str
    delay_s: float
    scope: str = "group"

    @classmethod
    def draw(cls, rng: random.Random, span_s: float, orphan_share: float = 0.0) -> KillPlan:
        """Half from the start (0-1.5 s), half from the first write (0-1.5 x `span_s`);
        the runner alone with probability `orphan_share`."""
        scope = "runner" if rng.random() < orphan_share else "group"
        if rng.random() < 0.5:
            return cls("start", round(rng.uniform(0.0, MAX_KILL_DELAY_S), 3), scope)
        return cls("write", round(rng.uniform(0.0, WRITE_KILL_SPAN_FACTOR * span_s), 3), scope)

    def __str__(self) -> str:
        return f"{self.anchor}+{self.delay_s:.3f}s" + ("/runner" if self.scope == "runner" else "")


# ------------------------------------------------------------------ the results
@dataclass(slots=True)
class Invocation:
    """One run of ``servo materialize`` in a trial.

    Attributes:
        number: 1-based position in the trial.
        kill: when it was to be killed, or None for the final invocation.
        point: where the kill landed (`KILL_POINTS`), or "final".
        returncode: the exit code (negative: killed by that signal), None if it hung.
        stdout: what it printed.
        stderr: the end of what it printed on stderr (for failure messages).
        executions: asset executions that completed while it ran (``done`` lines,
            orphaned workers' included).
        recorded_before: assets whose result was recorded when it started.
    """

    number: int
    kill: KillPlan | None
    point: str
    returncode: int | None
    stdout: str
    stderr: str
    executions: Counter[str]
    recorded_before: frozenset[str]


@dataclass(slots=True)
class TrialResult:
    """What one trial did and found.

    Attributes:
        index: the trial's position in its campaign.
        plan: what the seed decided.
        run_id: the run the idempotency key names.
        workdir: the trial's directory (removed after a passing trial).
        invocations: every invocation, in order.
        problems: every broken guarantee; empty when the trial passed.
        seconds: wall time of the whole trial, verification included.
        ledger_events: events in the ledger at the end.
        stale_rejected: events the full replay rejected as stale.
        orphan_facts: stale attempt rows a full replay sees but the projections do
            not, written by orphaned workers (see `_check_ledger`).
    """

    index: int
    plan: TrialPlan
    run_id: str
    workdir: Path
    invocations: list[Invocation] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    ledger_events: int = 0
    stale_rejected: int = 0
    orphan_facts: int = 0

    @property
    def seed(self) -> int:
        """The trial's seed."""
        return self.plan.seed

    @property
    def ok(self) -> bool:
        """Whether every guarantee held."""
        return not self.problems

    @property
    def kill_points(self) -> list[str]:
        """Where each kill landed (final invocation excluded)."""
        return [i.point for i in self.invocations if i.kill is not None]

    @property
    def extra_executions(self) -> dict[str, int]:
        """Assets whose work completed more than once, with their execution counts."""
        total = sum((i.executions for i in self.invocations), Counter[str]())
        return {name: n for name, n in sorted(total.items()) if n > 1}

    def summary(self) -> str:
        """One line for the log (seed, verdict, time, plan, kill points), then problems."""
        kills = ", ".join(f"{i.kill}->{i.point}" for i in self.invocations if i.kill is not None)
        extra = ", ".join(f"{k} x{n}" for k, n in self.extra_executions.items())
        orphans = f" | {self.orphan_facts} stale attempt rows only in the ledger"
        return (
            f"chaos trial {self.index}: seed={self.seed} {'ok' if self.ok else 'FAILED'} in "
            f"{self.seconds:.2f}s | {self.plan.describe()} | kills: {kills or 'none'} "
            f"| ledger {self.ledger_events} events, {self.stale_rejected} stale"
            + (orphans if self.orphan_facts else "")
            + (f" | executed more than once: {extra}" if extra else "")
            + (f" | kept in {self.workdir}" if not self.ok else "")
            + "".join(f"\n    - {p}" for p in self.problems)
        )


# -------------------------------------------------------------------- the trial
class ChaosTrial:
    """Runs one trial in `workdir` (see the module docstring).

    Args:
        plan: what to run and when to kill (``TrialPlan.from_seed(seed)``).
        workdir: a directory for this trial only (created; removed if it passes,
            unless `keep`).
        index: the trial's position in its campaign (for the report).
        timeout_s: longest one invocation may take.
        keep: keep `workdir` even when the trial passes.
    """

    def __init__(
        self,
        plan: TrialPlan,
        workdir: Path,
        *,
        index: int = 0,
        timeout_s: float = INVOCATION_TIMEOUT_S,
        keep: bool = False,
    ) -> None:
        self.plan = plan
        self.workdir = workdir
        self.home = workdir / "home"
        self.index = index
        self.timeout_s = timeout_s
        self.keep = keep
        self.run_id = run_id_for_key(TENANT, WORKSPACE, IDEMPOTENCY_KEY)
        self.request_path = ledger_prefix(TENANT, WORKSPACE) + f"runs/{self.run_id}/requested"
        self.store = LocalObjectStore(self.home, fsync=False)
        self._orphaned: list[tuple[int, int]] = []  # (invocation, process group): runner-only
        self._accounted = 0  # runs.log "done" lines attributed to invocations so far

    def run(self) -> TrialResult:
        """Run the trial; never raises for a broken guarantee (see `TrialResult.problems`)."""
        started = time.monotonic()
        result = TrialResult(self.index, self.plan, self.run_id, self.workdir)
        try:
            defs = self._prepare()
            for number, kill in enumerate([*self.plan.kills, None], start=1):
                self._sweep_orphans(before=number - 1)  # they overlap the next invocation only
                recorded = self.recorded_assets()
                self._account(result)
                result.invocations.append(self._invoke(defs, number, kill, recorded))
            self._sweep_orphans()
            self._account(result)
            from tests.chaos.verification import verify  # it imports this module

            result.problems.extend(verify(self, result))
        except Exception:  # a harness or servo error is a finding too: name the seed
            result.problems.append("the trial raised:\n" + traceback.format_exc())
        finally:
            self._sweep_orphans()
        result.seconds = time.monotonic() - started
        if result.ok and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return result

    # ------------------------------------------------------------ invocations
    def _prepare(self) -> Path:
        for sub in ("effects", "effects.staging", "flaky", "logs"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        (self.workdir / "runs.log").touch()
        defs = self.workdir / "definitions.py"
        defs.write_text(self.plan.definitions(self.workdir), encoding="utf-8")
        return defs

    def command(self, defs: Path) -> list[str]:
        """The ``servo materialize`` command line every invocation of the trial runs."""
        args = [*COMMAND, "materialize", "--defs", str(defs), "--home", str(self.home),
                "--json", "--idempotency-key", IDEMPOTENCY_KEY,
                "--concurrency", str(self.plan.concurrency)]  # fmt: skip
        return [*args, "--processes"] if self.plan.processes else args

    def _invoke(
        self, defs: Path, number: int, kill: KillPlan | None, recorded: frozenset[str]
    ) -> Invocation:
        """Start the command; SIGKILL it as `kill` says, or wait for it when None."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVO_")}
        written = self.ledger_objects()
        out_path = self.workdir / "logs" / f"{number}.out"
        err_path = self.workdir / "logs" / f"{number}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(  # its own process group, so workers can die with it
                self.command(defs), cwd=self.workdir, env=environ, stdout=out, stderr=err,
                start_new_session=True,
            )  # fmt: skip
            try:
                if kill is None:
                    process.wait(timeout=self.timeout_s)
                elif kill.anchor == "start" or self._wait_for_write(process, written):
                    process.wait(timeout=kill.delay_s)
                point = "final" if kill is None else "exited"
            except subprocess.TimeoutExpired:
                point = "hung" if kill is None else ""
            finally:
                if kill is not None and kill.scope == "runner":
                    with contextlib.suppress(ProcessLookupError):  # it exited already
                        os.kill(process.pid, signal.SIGKILL)
                    self._orphaned.append((number, process.pid))
                else:  # the whole group; also sweeps leftovers of a command that exited
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if not point:
            done = self.done_lines()
            point = self._kill_point(bool(done[self._accounted :]), set(done))
        out_text, err_text = (p.read_text(errors="replace") for p in (out_path, err_path))
        return Invocation(number, kill, point, process.returncode, out_text,
                          err_text[-STDERR_TAIL:], Counter(), recorded)  # fmt: skip

    def _wait_for_write(self, process: subprocess.Popen[bytes], before: int) -> bool:
        """Wait until the ledger holds more than `before` objects: False if the command
        ended first; raises TimeoutExpired after `timeout_s`."""
        deadline = time.monotonic() + self.timeout_s
        while self.ledger_objects() <= before:
            if process.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(process.args, self.timeout_s)
            time.sleep(POLL_S)
        return True

    def _account(self, result: TrialResult) -> None:
        """Attribute the ``done`` lines written since the last call to the latest
        invocation (orphaned workers may write after their runner died)."""
        lines = self.done_lines()
        if result.invocations:
            result.invocations[-1].executions.update(lines[self._accounted :])
        self._accounted = len(lines)

    def _sweep_orphans(self, before: int | None = None) -> None:
        """SIGKILL what is left of runner-only kills of invocations before `before`
        (all when None)."""
        for number, group in list(self._orphaned):
            if before is None or number < before:
                self._orphaned.remove((number, group))
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)

    def _kill_point(self, progressed: bool, done: set[str]) -> str:
        if self.store.head(self.request_path) is None:
            return "startup"
        if done >= set(self.plan.names):
            return "after-work"
        return "mid-run" if progressed else "no-progress"

    # ------------------------------------------------------------- inspection
    def done_lines(self) -> list[str]:
        """Assets named by ``runs.log``'s ``done`` lines, in order (one per execution)."""
        lines = (self.workdir / "runs.log").read_text(encoding="utf-8").splitlines()
        words = (line.split() for line in lines)
        return [w[1] for w in words if len(w) == 2 and w[0] == "done"]

    def ledger_objects(self) -> int:
        """How many objects the ledger holds."""
        return sum(1 for _ in self.store.list_prefix(ledger_prefix(TENANT, WORKSPACE)))

    def recorded_assets(self) -> frozenset[str]:
        """Assets whose result is recorded under their idempotency key (never rerun)."""
        found = set()
        for path in self.store.list_prefix(f"results/{TENANT}/{WORKSPACE}/"):
            record = json.loads(self.store.get(path).data)
            # An inline value's location names no asset; the record does (ADR 0021).
            found.add(record["asset_key"])
        return frozenset(found)

    def replay(self) -> tuple[EngineState, int, int]:
        """Fold EVERY ledger object into a fresh state: (state, events, stale rejected)."""
        paths = ledger_paths(self.store, TENANT, WORKSPACE)
        events = LedgerReader(self.store).read_many(paths)
        state = EngineState(TENANT, WORKSPACE)
        return state, len(events), state.apply(events).stale_rejected


# ------------------------------------------------------------------ campaigns
def base_seed(environ: dict[str, str] | None = None) -> int:
    """``SERVO_CHAOS_SEED``; else `CI_SEED` in CI (``CI`` set); else one from the clock."""
    env = os.environ if environ is None else environ
    if env.get("SERVO_CHAOS_SEED"):
        return int(env["SERVO_CHAOS_SEED"])
    if env.get("CI"):
        return CI_SEED
    return time.time_ns() // 1000 % 1_000_000_000


def run_campaign(
    seed: int,
    trials: int,
    workdir: Path,
    *,
    report: Callable[[str], None] = print,
    keep: bool = False,
    **shares: float,
) -> list[TrialResult]:
    """Run trials with seeds ``seed``, ``seed + 1``, ...; report each as it ends.

    `shares` go to `TrialPlan.from_seed` (``process_share``, ``flaky_share``, ...).
    """
    report(f"chaos: {trials} trials, base seed {seed} (trial i uses seed {seed} + i)")
    results = []
    for i in range(trials):
        plan = TrialPlan.from_seed(seed + i, **shares)
        result = ChaosTrial(plan, workdir / f"trial-{i}-seed-{seed + i}", index=i, keep=keep).run()
        report(result.summary())
        results.append(result)
    report(campaign_summary(results))
    return results


def campaign_summary(results: Sequence[TrialResult]) -> str:
    """Totals: trials, time, kill points, extra executions, failing seeds."""
    points = Counter(p for r in results for p in r.kill_points)
    extra = [(r.seed, name, n) for r in results for name, n in r.extra_executions.items()]
    failed = [r.seed for r in results if not r.ok]
    orphaning = sum(k.scope == "runner" for r in results for k in r.plan.kills)
    return "\n".join(
        [
            f"chaos: {len(results)} trials in {sum(r.seconds for r in results):.1f}s, "
            f"{sum(len(r.kill_points) for r in results)} kill points: "
            + ", ".join(f"{p} {points[p]}" for p in KILL_POINTS if points[p])
            + f"; {orphaning} runner-only (orphaning), "
            f"{sum(r.orphan_facts for r in results)} stale attempt rows only in the ledger",
            f"chaos: seeds {[r.seed for r in results]}",
            "chaos: executed more than once (a kill between work and result record): "
            + (", ".join(f"seed {s} {name} x{n}" for s, name, n in extra) or "none"),
            f"chaos: failing seeds {failed}" if failed else "chaos: every trial passed",
        ]
    )


def failure_message(results: Sequence[TrialResult]) -> str:
    """Every failing trial with its seed and problems, every seed, and how to replay."""
    failed = [r for r in results if not r.ok]
    return (
        f"{len(failed)} of {len(results)} chaos trials failed, seeds {[r.seed for r in failed]} "
        "(replay one: python -m tests.chaos.harness --trials 1 --seed SEED); "
        f"all seeds {[r.seed for r in results]}:\n" + "\n".join(r.summary() for r in failed)
    )


def soak(
    minutes: float, seed: int, workdir: Path, campaign: Callable[..., Sequence[Any]], **kw: Any
) -> list[Any]:
    """Run `campaign` one trial at a time (seeds ``seed``, ``seed + 1``, ...) until
    `minutes` have passed; every trial's result, in order."""
    deadline = time.monotonic() + minutes * 60
    results: list[Any] = []
    while time.monotonic() < deadline:
        results.extend(campaign(seed + len(results), 1, workdir, **kw))
    print(f"soak: {len(results)} trials in {minutes:g} min, "
          f"{sum(not r.ok for r in results)} failed")  # fmt: skip
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.chaos.harness``: a campaign; exit 1 if any trial failed."""
    from .modes import MODES, run_in_process  # not at the top: it imports this module

    parser = argparse.ArgumentParser(
        "python -m tests.chaos.harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--trials", type=int, default=20, help="trials to run (default 20)")
    add("--seed", type=int, default=None, help="base seed (default: from the clock)")
    add("--process-share", type=float, default=0.15, help="chance of a --processes trial")
    add("--flaky-share", type=float, default=0.3, help="chance of a trial with flaky assets")
    add("--orphan-share", type=float, default=0.5, help="chance a --processes kill orphans")
    add("--workdir", type=Path, default=None, help="where trials run (default: a temp dir)")
    add("--keep", action="store_true", help="keep the directories of passing trials")
    add("--mode", choices=("sigkill", "process", *MODES), default="sigkill",
        help="sigkill: kill the runner at random points (default); process: process-mode "
             "faults (tests.chaos.process_chaos); in-process: see tests.chaos.modes")  # fmt: skip
    add("--soak", type=float, default=None, metavar="MINUTES",
        help="run trials until MINUTES have passed (--trials is then ignored)")  # fmt: skip
    args = parser.parse_args(argv)
    seed = base_seed() if args.seed is None else args.seed
    if args.mode in MODES:
        return run_in_process(args.mode, seed, args.trials, args.soak)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="servo-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.mode == "process":
        from .process_chaos import run_process_campaign as campaign
    else:
        campaign = functools.partial(
            run_campaign, process_share=args.process_share, flaky_share=args.flaky_share,
            orphan_share=args.orphan_share,
        )  # fmt: skip
    if args.soak is not None:
        results: Sequence[Any] = soak(args.soak, seed, workdir, campaign, keep=args.keep)
    else:
        results = campaign(seed, args.trials, workdir, keep=args.keep)
    if any(not r.ok for r in results):
        if args.mode == "process":
            from .process_chaos import process_failure_message as message
        else:
            message = failure_message
        print(message(results), file=sys.stderr)
        return 1
    if args.workdir is None and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
