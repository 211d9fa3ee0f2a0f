"""Startup salvage: a torn file does not stop ``servo materialize`` (nor resume, retry).

A power loss with ``storage.fsync`` off can leave a truncated ledger object,
manifest or Parquet file. Before a runner starts on a home, `salvage_scope` checks
what that runner is about to read, and sets aside what cannot be read, so that the
run goes on instead of exiting with an error:

1. the newest manifest: `ManifestStore.latest` of a writer falls back to the newest
   readable generation and sets the unreadable ones aside (it logs its own warning);
2. every projection file that manifest names (they are read by the runner anyway,
   and decoded tables are cached by path, so a healthy home pays nothing twice);
3. the ledger objects recovery will fold (`servo.engine.recovery`).

It also removes temporary files that killed writes left in the scope's ledger and
projection folders (`LocalObjectStore.collect_temporary_files`).

Each object that cannot be decoded is moved to ``quarantine/{stamp}/`` (never
deleted; `servo.maintenance.quarantine`) and named in one warning line with where it
went. A ledger batch is not removed but replaced, by a conditional write on the torn
bytes' store generation, with a batch of no events: batch names stay taken, so a
writer never reuses one and a reader that walks batches in order meets no hole (as
for manifests, `servo.engine.manifest`). Run objects (``runs/{run_id}/...``) are
removed, which frees their create-only path for the run's next request.
After a ledger object or a projection file was moved, the projections are
rebuilt from the readable ledger (`Compactor.rebuild`, as ``servo doctor --repair``
does), since they may hold rows of the lost object or miss those of the lost file.

What is lost is exactly the events in an unreadable ledger object: the record is the
ledger, and a write that was not fsynced was never acknowledged durable.

Safety: only an object that fails to decode is moved, and writers publish objects
atomically (a temporary file renamed into place, or a single-request upload), so a
live writer's object is never mistaken for a torn one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servo.engine.compactor import Compactor
from servo.engine.damage import set_aside, where
from servo.engine.events import decode_events, encode_events
from servo.engine.ledger import LedgerReader, ledger_prefix
from servo.engine.manifest import Manifest
from servo.engine.projections import read_table_file
from servo.engine.recovery import unfolded_ledger_paths
from servo.engine.replay import replay_ledger, run_ids_in
from servo.engine.schema import TABLES_BY_NAME
from servo.engine.snapshot import Snapshot
from servo.errors import (
    CorruptObjectError,
    EventDecodeError,
    ObjectNotFoundError,
    PreconditionFailedError,
)
from servo.maintenance.quarantine import Quarantine, Quarantined
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.storage.base import ObjectStore
from servo.storage.local import LocalObjectStore

log = get_logger(__name__)

SALVAGED = metrics.counter(
    "servo_startup_salvaged_total",
    "Unreadable objects moved aside when a runner started on a home.",
    ["kind"],
)

#: An object found unreadable: its path, its kind and its bytes (ledger objects).
_Damaged = tuple[str, str, bytes]

#: What each kind of object set aside costs, for the warning line.
_LOST = {
    "ledger": (
        "the events in this object only (a torn write was never fsynced, so never "
        "acknowledged durable); projections rebuilt from the rest of the ledger"
    ),
    "projection": "nothing: projections rebuilt from the ledger",
}


@dataclass(slots=True)
class SalvageReport:
    """What `salvage_scope` did.

    Attributes:
        quarantined: ledger objects and projection files moved aside (manifests are
            counted by `servo.engine.manifest` and logged there).
        rebuilt_generation: the generation of rebuilt projections (None: no rebuild).
    """

    quarantined: list[Quarantined] = field(default_factory=list)
    rebuilt_generation: int | None = None


def salvage_scope(store: ObjectStore, tenant_id: str, workspace_id: str) -> SalvageReport:
    """Set aside what a runner of (tenant, workspace) could not read; rebuild if needed.

    Args:
        store: the home's object store.
        tenant_id: the runner's tenant.
        workspace_id: the runner's workspace.
    """
    if isinstance(store, LocalObjectStore):
        projections = f"projections/{tenant_id}/{workspace_id}/"
        for prefix in (ledger_prefix(tenant_id, workspace_id), projections):
            store.collect_temporary_files(prefix)
    quarantine = Quarantine(store)
    compactor = Compactor(store, tenant_id, workspace_id, writer_id="servo-salvage")
    manifest = compactor.manifests.latest()  # unreadable generations are set aside
    report = SalvageReport()
    damaged = _unreadable_files(store, manifest)
    if not damaged:
        damaged = _unreadable_unfolded(store, manifest, tenant_id, workspace_id)
    if not damaged:
        return report
    prefix = ledger_prefix(tenant_id, workspace_id)
    for path, kind, data in damaged:
        _move(store, quarantine, path, kind, run_ids_in(path, data, prefix))
    # Anything else unreadable in the ledger would be skipped by the rebuild: move it too.
    replay = replay_ledger(store, tenant_id, workspace_id)
    for unreadable in replay.unreadable:
        _move(store, quarantine, unreadable.path, "ledger", unreadable.run_ids)
    rebuilt = compactor.rebuild(list(replay.paths))
    report.quarantined = list(quarantine.moved)
    report.rebuilt_generation = rebuilt.generation
    log.info(
        "salvage.projections_rebuilt",
        tenant_id=tenant_id,
        workspace_id=workspace_id,
        generation=rebuilt.generation,
        ledger_objects=len(replay.paths),
        quarantined=len(report.quarantined),
    )
    return report


def _unreadable_files(store: ObjectStore, manifest: Manifest | None) -> list[_Damaged]:
    """Projection files of `manifest` that cannot be decoded."""
    found: list[_Damaged] = []
    if manifest is None:
        return found
    for name, files in sorted(manifest.tables.items()):
        for path in files.files:
            try:
                read_table_file(store, path, TABLES_BY_NAME[name])
            except CorruptObjectError:
                found.append((path, "projection", b""))
    return found


def _unreadable_unfolded(
    store: ObjectStore, manifest: Manifest | None, tenant_id: str, workspace_id: str
) -> list[_Damaged]:
    """Ledger objects recovery will fold that cannot be decoded."""
    runs = {run.run_id: run for run in Snapshot(store, manifest).runs()}
    paths = unfolded_ledger_paths(
        store,
        tenant_id,
        workspace_id,
        has_run=lambda run_id: run_id in runs,
        has_cancel=lambda run_id: (
            (run := runs.get(run_id)) is not None and run.cancel_requested_at is not None
        ),
        manifest=manifest,
    )
    reader = LedgerReader(store)
    found: list[_Damaged] = []
    for path in paths:
        try:
            reader.read(path)
        except ObjectNotFoundError:
            continue
        except CorruptObjectError:
            found.append((path, "ledger", _raw(store, path)))
    return found


def _move(
    store: ObjectStore, quarantine: Quarantine, path: str, kind: str, run_ids: tuple[str, ...]
) -> None:
    if kind == "ledger" and "/batches/" in path:
        moved = _blank(store, quarantine, path, run_ids)
    else:
        moved = quarantine.move(path, kind, run_ids)
    if moved is None:
        return  # repaired meanwhile by another process
    SALVAGED.labels(kind).inc()
    log.warning(
        "salvage.unreadable_set_aside",
        path=where(store, path),
        moved_to=where(store, moved.moved_to),
        kind=kind,
        lost=_LOST[kind],
        run_ids=list(run_ids),
    )


def _blank(
    store: ObjectStore, quarantine: Quarantine, path: str, run_ids: tuple[str, ...]
) -> Quarantined | None:
    """Copy the torn batch at `path` aside and replace it with a batch of no events."""
    try:
        torn = store.get(path)
        decode_events(torn.data, source=path)
    except ObjectNotFoundError:
        return None
    except EventDecodeError:
        pass  # still torn: ours to repair
    else:
        return None  # replaced meanwhile
    moved_to = set_aside(store, path, torn.data, quarantine.stamp)
    try:
        store.put_if_generation(path, encode_events([]), torn.generation)
    except PreconditionFailedError:
        return None  # another process repaired it first
    moved = Quarantined(path, moved_to, "ledger", run_ids)
    quarantine.moved.append(moved)
    return moved


def _raw(store: ObjectStore, path: str) -> bytes:
    try:
        return store.get(path).data
    except ObjectNotFoundError:
        return b""
