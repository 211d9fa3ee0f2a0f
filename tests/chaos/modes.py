"""The in-process chaos modes of ``python -m tests.chaos.harness --mode MODE``.

Modes (each trial ``i`` of a campaign uses seed ``base + i``; a failing trial prints
the command that replays it):

- ``faults``: `tests.chaos.faults` — runs under a fault-injecting store, restarted
  after every failure; ``torn`` is the same with torn writes too (which a store that
  writes atomically never shows).
- ``clocks``: `tests.chaos.clocks` — a clock that jumps, crashes, skewed writers.
- ``machine``: `tests.chaos.machine` — the hypothesis state machine; ``--trials``
  is its number of examples, the seed fixes hypothesis' draw.
- ``powerloss``: `tests.chaos.power_loss` — writes not yet synced dropped or torn
  at a random cut, fsync on and off.
- ``inprocess``: faults, clocks, machine and powerloss, one after the other.

With ``--soak MINUTES`` the mode runs in rounds of `SOAK_ROUND` trials, seeds going
on from the base seed, until MINUTES have passed; it stops at the first failure.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .clocks import run_clock_campaign
from .faults import run_fault_campaign
from .machine import run_machine
from .power_loss import run_campaign as run_power_loss_campaign

Report = Callable[[str], None]
MODES = ("faults", "torn", "clocks", "machine", "powerloss", "inprocess")
#: What ``inprocess`` runs.
ALL = ("faults", "clocks", "machine", "powerloss")
#: Trials (examples for the machine) of each mode per soak round.
SOAK_ROUND = 20


def run_in_process(
    mode: str, seed: int, trials: int, soak_minutes: float | None, report: Report = print
) -> int:
    """``--mode MODE [--soak MINUTES]``: the process's exit code (1: a trial failed)."""
    modes = ALL if mode == "inprocess" else (mode,)
    if soak_minutes is not None:
        return int(bool(soak(soak_minutes, seed, report, modes)))
    return int(bool(sum(run_mode(m, seed, trials, report) for m in modes)))


def run_mode(mode: str, seed: int, trials: int, report: Report) -> int:
    """Run `trials` trials of `mode` from seed `seed`; the number that failed."""
    if mode == "machine":
        report(f"machine: {trials} examples, hypothesis seed {seed}")
    else:
        report(f"{mode}: {trials} trials, base seed {seed} (trial i uses seed {seed} + i)")
    started = time.perf_counter()
    if mode in ("faults", "torn"):
        outcomes = run_fault_campaign(seed, trials, report, torn=mode == "torn")
        failed = sum(not o.ok for o in outcomes)
    elif mode == "clocks":
        failed = sum(not o.ok for o in run_clock_campaign(seed, trials, report))
    elif mode == "powerloss":
        with tempfile.TemporaryDirectory() as tmp:
            results = run_power_loss_campaign(seed, trials, Path(tmp), report)
        failed = sum(not r.ok for r in results)
    elif mode == "machine":
        try:
            run_machine(trials, seed)
            failed = 0
        except Exception as exc:  # hypothesis raises with the shortest failing program
            notes = "\n".join(getattr(exc, "__notes__", []))
            report(f"machine: FAILED (seed {seed}): {exc}\n{notes}")
            failed = 1
    else:
        raise ValueError(f"unknown chaos mode {mode!r}; use one of {', '.join(MODES)}")
    seconds = time.perf_counter() - started
    report(f"{mode}: {trials} trials in {seconds:.1f}s, {failed} failed")
    return failed


def soak(minutes: float, seed: int, report: Report, modes: Sequence[str] = ALL) -> int:
    """Run `modes` in rounds until `minutes` pass; the number of failed trials."""
    deadline = time.monotonic() + minutes * 60
    trials: dict[str, int] = dict.fromkeys(modes, 0)
    failed = 0
    while time.monotonic() < deadline and not failed:
        for mode in modes:
            failed += run_mode(mode, seed, SOAK_ROUND, report)
            trials[mode] += SOAK_ROUND
            if failed or time.monotonic() >= deadline:
                break
        seed += SOAK_ROUND
    counts = ", ".join(f"{mode} {n}" for mode, n in trials.items())
    report(f"soak: {minutes:g} min, trials per mode: {counts}; {failed} failed")
    return failed
