"""Finding ledger objects that were written but never folded (liveness only).

Writers notify the compactor with the paths they wrote; a notification dies with
the process that held it. After a restart the runner looks for such objects here.
This is the one place (with the anti-entropy sweeper) that lists the ledger, and
only to find work: folding an object twice is harmless, so listing too much costs
time, never correctness.

Batch objects are named by ULID, so their creation time is known without reading
them: only batches newer than the manifest's watermark minus a margin (for writes
in flight when the watermark was taken, and for clock skew) are returned. A run's
request object is returned when its run is not in the state yet.
"""

from __future__ import annotations

from collections.abc import Callable

from ulid import ULID

from servo.engine.ledger import ledger_prefix
from servo.observability import metrics
from servo.storage.base import ObjectStore

FINDINGS = metrics.counter(
    "servo_anti_entropy_findings_total", "Stuck or lost work found and re-driven.", ["kind"]
)

#: Default margin before the watermark, in microseconds (5 minutes).
DEFAULT_MARGIN_US = 300_000_000


def unfolded_ledger_paths(
    store: ObjectStore,
    tenant_id: str,
    workspace_id: str,
    *,
    has_run: Callable[[str], bool],
    watermark: int | None,
    has_cancel: Callable[[str], bool] = lambda _run_id: False,
    margin_us: int = DEFAULT_MARGIN_US,
) -> list[str]:
    """Ledger paths that may hold events the projections do not reflect yet."""
    prefix = ledger_prefix(tenant_id, workspace_id)
    since = None if watermark is None else watermark - margin_us
    found = []
    for path in store.list_prefix(prefix):
        rest = path[len(prefix) :]
        if rest.startswith("batches/"):
            name = rest.removeprefix("batches/").removesuffix(".json")
            try:
                written_us = ULID.from_str(name).milliseconds * 1000
            except ValueError:
                written_us = None  # not ours to judge: fold it
            if since is None or written_us is None or written_us >= since:
                found.append(path)
        elif rest.startswith("runs/"):
            parts = rest.split("/", 2)
            run_id, name = parts[1], parts[2] if len(parts) > 2 else ""
            folded = has_cancel(run_id) if name == "cancel" else has_run(run_id)
            if not folded:
                found.append(path)
        else:
            found.append(path)
    if found:
        FINDINGS.labels("unfolded_ledger_object").inc(len(found))
    return found
