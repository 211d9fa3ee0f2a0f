"""How the embedded runner is configured and what its callers get back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from servo.dispatch.local import PoolMode, ProcessRuntimeSpec
from servo.engine import schema as s
from servo.engine.anti_entropy import SweepSettings
from servo.engine.ids import DEFAULT_TENANT, DEFAULT_WORKSPACE

#: Called with a run's row and how many of its tasks are in each status, whenever
#: those counts change (kept by the fold: no call scans the run's tasks).
Progress = Callable[[s.RunRow, Mapping[str, int]], None]


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """How the embedded runner runs.

    Attributes:
        tenant_id: tenant of the runs.
        workspace_id: workspace of the runs.
        concurrency: attempts running at once.
        pool: "thread" (default) or "process".
        publish_interval_s: longest time folded state stays unpublished.
        process_spec: how worker processes load definitions and open the store
            (required for the process pool).
        heartbeat_interval_s: seconds between heartbeats of a running attempt.
        heartbeat_timeout_s: an attempt silent for this long is given up (and redelivered).
        sweep_interval_s: seconds between anti-entropy sweeps and cancel checks.
        ledger_scan_interval_s: seconds between scans for unfolded ledger objects.
        sweep: deadlines of the anti-entropy sweep.
        max_l0_files: delta files of one projection table that trigger a merge into a
            new base (``engine.max_l0_files``).
        lock_dir: where the per-run locks live (usually ``{home}/locks``); None
            drives runs without a lock (see `servo.engine.run_lock`).
    """

    tenant_id: str = DEFAULT_TENANT
    workspace_id: str = DEFAULT_WORKSPACE
    concurrency: int = 4
    pool: PoolMode = "thread"
    publish_interval_s: float = 1.0
    process_spec: ProcessRuntimeSpec | None = None
    heartbeat_interval_s: float = 5.0
    heartbeat_timeout_s: float = 30.0
    sweep_interval_s: float = 1.0
    ledger_scan_interval_s: float = 60.0
    sweep: SweepSettings = field(default_factory=SweepSettings)
    max_l0_files: int = 16
    lock_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class RunStart:
    """The run `start_run` created or found.

    Attributes:
        run_id: the run.
        resumed: an existing run (same idempotency key) was found, nothing new created.
    """

    run_id: str
    resumed: bool
