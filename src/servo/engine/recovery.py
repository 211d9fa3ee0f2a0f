"""Finding ledger objects that were written but never folded.

Writers notify the compactor with the paths they wrote; a notification dies with
the process that held it. After a restart the runner looks for such objects here.
No clock is involved (ADR 0012):

- **Numbered batches.** The manifest's ``ledger_through`` says batches ``1..n`` are
  folded; batch numbers in use are always exactly ``1..N`` (`servo.engine.ledger`),
  so the unfolded ones are n+1, n+2, ... up to the first absent number, found with
  `head` (O(unfolded) calls, no listing). Numbers the caller acknowledged already
  (`skip`) are not returned.
- **Deterministic objects** (``runs/{run_id}/requested`` and ``.../cancel``) are found
  by listing ``runs/`` and keeping those whose run (or cancel) the state lacks. That
  listing is for liveness: each object is checked against the state, not a clock.
- **Batches named by ULID**, written before batches were numbered, are listed and
  returned while the manifest predates numbering (format 1); the first manifest
  published after they are folded no longer asks for them.

Folding an object twice is harmless, so returning too much costs time, never
correctness.
"""

from __future__ import annotations

from collections.abc import Callable, Container

from servo.engine.ledger import batch_path, batch_seq, ledger_prefix
from servo.engine.manifest import Manifest
from servo.observability import metrics
from servo.storage.base import ObjectStore

FINDINGS = metrics.counter(
    "servo_anti_entropy_findings_total", "Stuck or lost work found and re-driven.", ["kind"]
)


def unfolded_batches(
    store: ObjectStore, prefix: str, through: int, skip: Container[int] = frozenset()
) -> list[str]:
    """Numbered batches after `through` up to the first absent one, minus `skip`."""
    found = []
    seq = through + 1
    while store.head(path := batch_path(prefix, seq)) is not None:
        if seq not in skip:
            found.append(path)
        seq += 1
    return found


def unfolded_ledger_paths(
    store: ObjectStore,
    tenant_id: str,
    workspace_id: str,
    *,
    has_run: Callable[[str], bool],
    manifest: Manifest | None,
    has_cancel: Callable[[str], bool] = lambda _run_id: False,
    skip: Container[int] = frozenset(),
) -> list[str]:
    """Ledger paths that may hold events the state does not reflect yet.

    Args:
        store: the object store.
        tenant_id: the tenant.
        workspace_id: the workspace.
        has_run: whether the state holds a run (its request is folded).
        manifest: the manifest the state extends (None: nothing published yet).
        has_cancel: whether the state holds a run's cancel request.
        skip: numbered batches known to be folded beyond the manifest's.
    """
    prefix = ledger_prefix(tenant_id, workspace_id)
    through = 0 if manifest is None else manifest.ledger_through
    found = unfolded_batches(store, prefix, through, skip)
    for path in store.list_prefix(prefix + "runs/"):
        parts = path[len(prefix) :].split("/", 2)
        run_id, name = parts[1], parts[2] if len(parts) > 2 else ""
        folded = has_cancel(run_id) if name == "cancel" else has_run(run_id)
        if not folded:
            found.append(path)
    if manifest is None or manifest.format < 2:
        found.extend(_unnumbered(store, prefix))
    if found:
        FINDINGS.labels("unfolded_ledger_object").inc(len(found))
    return found


def _unnumbered(store: ObjectStore, prefix: str) -> list[str]:
    """Every ledger object outside ``runs/`` that is not a numbered batch."""
    return [
        path
        for path in store.list_prefix(prefix)
        if batch_seq(path) is None and not path.startswith(prefix + "runs/")
    ]
