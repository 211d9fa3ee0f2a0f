"""How the embedded runner is configured and what its callers get back.

Also the run's cancel request, written at a create-only ledger path by whoever
cancels (the runner, or ``servo runs cancel`` in another process).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from servo.dispatch.local import PoolMode, ProcessRuntimeSpec
from servo.engine import events as ev
from servo.engine import schema as s
from servo.engine.anti_entropy import SweepSettings
from servo.engine.ledger import LedgerWriter
from servo.engine.snapshot import Snapshot

#: Called with a run's row and its tasks whenever their counts change.
Progress = Callable[[s.RunRow, list[s.TaskRow]], None]
#: Called with each snapshot the runner publishes (e.g. the catalog projector).
PublishListener = Callable[[Snapshot], None]


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
        lock_dir: where the per-run locks live (usually ``{home}/locks``); None
            drives runs without a lock (see `servo.engine.run_lock`).
    """

    tenant_id: str = "default"
    workspace_id: str = "default"
    concurrency: int = 4
    pool: PoolMode = "thread"
    publish_interval_s: float = 1.0
    process_spec: ProcessRuntimeSpec | None = None
    heartbeat_interval_s: float = 5.0
    heartbeat_timeout_s: float = 30.0
    sweep_interval_s: float = 1.0
    ledger_scan_interval_s: float = 60.0
    sweep: SweepSettings = field(default_factory=SweepSettings)
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


def cancel_path(run_id: str) -> str:
    """The ledger suffix of a run's cancel request (create-only: one per run)."""
    return f"runs/{run_id}/cancel"


def request_cancel(ledger: LedgerWriter, run_id: str, reason: str, now: int) -> bool:
    """Write the run's cancel request at its create-only path; False if one exists."""
    event = ev.Event.new(
        ev.RunCancelRequested(reason=reason),
        tenant_id=ledger.tenant_id,
        workspace_id=ledger.workspace_id,
        run_id=run_id,
        emitted_at=now,
    )
    return ledger.append_at(cancel_path(run_id), event)
