"""``servo doctor --repair``: act on what the checks found, losing no recorded data.

For each scope, in this order:

1. **Quarantine** every unreadable ledger object, manifest and projection file
   (`servo.maintenance.quarantine`: moved aside, never deleted), noting the runs a
   ledger object touched.
2. **Fall back** to the newest readable manifest: with the unreadable newest ones
   moved aside, `ManifestStore.latest` finds it (the hint is only a hint).
3. **Rebuild the projections** from the ledger when anything was quarantined or they
   disagreed with the replay: `Compactor.rebuild` folds every readable ledger object
   from scratch and publishes the result as base files of the next generation.

With ``rebuild`` (``servo doctor --rebuild``, disaster recovery) every scope's
projections are rebuilt from the ledger alone, whatever was found, and so is the
catalog when there is one: the result equals what the runs published incrementally,
row by row (a full replay of the ledger, which the incremental publishes must equal).

Then, when the catalog had a problem, **rebuild the catalog** from the ledger: the
SQLite file (and its WAL files) is moved aside, a fresh catalog is created and every
scope's projections are projected into it (`servo.catalog.projector.CatalogProjector`);
the definitions, when given, are registered again (the next ``servo materialize``
registers them anyway). A PostgreSQL catalog is never moved: its projector
checkpoint is reset and every run is projected again. A healthy catalog is kept (with
its registered definitions) and only rebuilt projections are projected into it.

The ledger is the record: projections and catalog are derived from it, so rebuilding
them loses nothing the ledger holds, and the objects that could not be read are kept
in the quarantine folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servo.engine.compactor import Compactor
from servo.engine.ids import now_us
from servo.engine.manifest import Manifest, ManifestStore
from servo.engine.snapshot import SnapshotReader
from servo.errors import CorruptObjectError, ObjectNotFoundError
from servo.maintenance.doctor import (
    CATALOG_FILE,
    CATALOG_KINDS,
    DoctorReport,
    FindingKind,
    ScopeCheck,
    generations,
)
from servo.maintenance.quarantine import Quarantine, Quarantined
from servo.observability.logging import get_logger

if TYPE_CHECKING:
    from servo.config.settings import Settings
    from servo.sdk.definitions import Definitions
    from servo.storage.base import ObjectStore

log = get_logger(__name__)

_QUARANTINED_KINDS = {
    FindingKind.LEDGER_UNREADABLE: "ledger",
    FindingKind.MANIFEST_UNREADABLE: "manifest",
    FindingKind.PROJECTION_UNREADABLE: "projection",
}
#: Findings after which a scope's projections are rebuilt from the ledger.
_REBUILD_KINDS = frozenset({*_QUARANTINED_KINDS, FindingKind.PROJECTIONS_DISAGREE})


@dataclass(slots=True)
class RepairResult:
    """What a repair did.

    Attributes:
        quarantine: where unreadable objects were moved (``quarantine/{stamp}/``).
        quarantined: the objects moved aside.
        rebuilt_projections: scopes whose projections were rebuilt, with the generation.
        rebuilt_catalog: whether the catalog was rebuilt from the ledger.
        reprojected_catalog: whether rebuilt projections were projected into the
            (healthy) catalog.
        notes: anything the repair could not do, one line each.
    """

    quarantine: str
    quarantined: list[Quarantined] = field(default_factory=list)
    rebuilt_projections: list[tuple[str, str, int]] = field(default_factory=list)
    rebuilt_catalog: bool = False
    reprojected_catalog: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def runs_touched(self) -> tuple[str, ...]:
        """Runs whose quarantined ledger objects may have held some of their events."""
        return tuple(sorted({r for q in self.quarantined for r in q.run_ids}))

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object."""
        return {
            "quarantine": self.quarantine,
            "quarantined": [
                {"path": q.path, "moved_to": q.moved_to, "kind": q.kind, "run_ids": list(q.run_ids)}
                for q in self.quarantined
            ],
            "runs_touched": list(self.runs_touched),
            "rebuilt_projections": [
                {"tenant": t, "workspace": w, "generation": g}
                for t, w, g in self.rebuilt_projections
            ],
            "rebuilt_catalog": self.rebuilt_catalog,
            "reprojected_catalog": self.reprojected_catalog,
            "notes": list(self.notes),
        }


def repair_home(
    settings: Settings,
    store: ObjectStore,
    report: DoctorReport,
    definitions: Definitions | None = None,
    *,
    rebuild: bool = False,
    create_catalog: bool = False,
) -> RepairResult:
    """Repair what `report` found (see the module docstring).

    Args:
        settings: the settings (home, catalog).
        store: the home's object store.
        report: a fresh `diagnose_home` report of this home.
        definitions: registered in a rebuilt catalog when given.
        rebuild: rebuild every scope's projections, and the catalog when there is
            one, from the ledger alone, whatever the report found (disaster recovery,
            ``servo doctor --rebuild``); what is unreadable is quarantined first.
        create_catalog: with `rebuild`, create the catalog when there is none yet
            (``servo restore`` into a new home).
    """
    quarantine = Quarantine(store)
    result = RepairResult(quarantine=quarantine.prefix)
    if any(f.kind == FindingKind.HOME_UNUSABLE for f in report.findings):
        result.notes.append("the home itself cannot be used: fix it first (see the finding)")
        return result
    if any(f.kind == FindingKind.HOME_MISSING for f in report.findings):
        result.notes.append("there is no home to repair (see the finding)")
        return result
    if any(f.kind == FindingKind.CATALOG_UNWRITABLE for f in report.findings):
        result.notes.append("the catalog's disk is full: free space on it (nothing was moved)")
        return result  # a rebuild would fail on the same disk, after moving it aside
    for check in report.scopes:
        if _repair_scope(store, check, quarantine, result, rebuild=rebuild):
            log.info("doctor.projections_rebuilt", tenant_id=check.scope[0], scope=check.scope)
    from servo.maintenance.catalog_check import catalog_present

    catalog_broken = any(f.kind in CATALOG_KINDS for f in report.findings)
    if catalog_broken or (rebuild and (create_catalog or catalog_present(settings))):
        _rebuild_catalog(settings, store, report, quarantine, definitions, result)
    elif result.rebuilt_projections and catalog_present(settings):
        _reproject(settings, store, result)
    result.quarantined = list(quarantine.moved)
    return result


def _repair_scope(
    store: ObjectStore,
    check: ScopeCheck,
    quarantine: Quarantine,
    result: RepairResult,
    *,
    rebuild: bool,
) -> bool:
    for finding in check.findings:
        kind = _QUARANTINED_KINDS.get(finding.kind)
        if kind is not None and finding.path is not None:
            quarantine.move(finding.path, kind, finding.run_ids)  # None: it was missing
    _fill_manifest_holes(store, check)
    # Anything wrong with the ledger or the projections: they must be folded afresh.
    if not rebuild and not any(f.kind in _REBUILD_KINDS for f in check.findings):
        return False
    tenant_id, workspace_id = check.scope
    compactor = Compactor(store, tenant_id, workspace_id)
    rebuilt = compactor.rebuild(list(check.replay.paths))
    result.rebuilt_projections.append((tenant_id, workspace_id, rebuilt.generation))
    return True


def _fill_manifest_holes(store: ObjectStore, check: ScopeCheck) -> None:
    """Keep the manifest chain contiguous after older generations were moved aside.

    Readers find the newest generation by probing (`ManifestStore`), which assumes
    generations 1..latest all exist. A quarantined generation below the newest is
    replaced by a copy of the nearest older readable one (or an empty one), stamped
    with its generation: nobody reads old generations, and the chain holds.
    """
    tenant_id, workspace_id = check.scope
    manifests = ManifestStore(store, tenant_id, workspace_id)
    newest = max(generations(store, manifests), default=0)
    holes = sorted(
        int(f.path.rpartition("/")[2].removesuffix(".json"))
        for f in check.findings
        if f.kind == FindingKind.MANIFEST_UNREADABLE and f.path is not None
    )
    for generation in holes:
        if generation >= newest or store.head(manifests.path(generation)) is not None:
            continue
        older = _readable_below(manifests, generation)
        filler = Manifest(
            generation=generation,
            tenant_id=tenant_id,
            workspace_id=workspace_id,
            tables={} if older is None else dict(older.tables),
            last_processed_at=0 if older is None else older.last_processed_at,
            events_folded=0 if older is None else older.events_folded,
            published_at=now_us(),
            writer_id="servo-doctor",
        )
        manifests.publish(filler)  # create-only; the hint never moves back
        log.info("doctor.manifest_hole_filled", tenant_id=tenant_id, generation=generation)


def _readable_below(manifests: ManifestStore, generation: int) -> Manifest | None:
    for older in range(generation - 1, 0, -1):
        try:
            return manifests.load(older)
        except (CorruptObjectError, ObjectNotFoundError):
            continue
    return None


def _rebuild_catalog(
    settings: Settings,
    store: ObjectStore,
    report: DoctorReport,
    quarantine: Quarantine,
    definitions: Definitions | None,
    result: RepairResult,
) -> None:
    from servo.catalog.catalog import open_catalog
    from servo.catalog.projector import CatalogProjector
    from servo.catalog.registry import register_definitions

    if settings.database.url is None:
        home = Path(settings.home)
        for suffix in ("", "-wal", "-shm"):
            quarantine.move_file(home, CATALOG_FILE + suffix, "catalog")
    else:
        result.notes.append(
            "the configured catalog (database.url) is not moved aside: its runs were "
            "projected again from the rebuilt projections"
        )
    with open_catalog(settings) as catalog:
        for check in report.scopes:
            tenant_id, workspace_id = check.scope
            snapshot = SnapshotReader(store, tenant_id, workspace_id).load()
            if settings.database.url is not None:
                _forget_checkpoint(catalog, tenant_id, workspace_id)
            CatalogProjector(catalog, store, tenant_id, workspace_id).project(snapshot)
            if definitions is not None:
                register_definitions(catalog, tenant_id, definitions)
    if definitions is None:
        result.notes.append(
            "asset definitions are registered in the catalog again by the next "
            "'servo materialize' (or pass --defs to servo doctor)"
        )
    result.rebuilt_catalog = True


def _reproject(settings: Settings, store: ObjectStore, result: RepairResult) -> None:
    """Project rebuilt projections into a healthy catalog (upserts; definitions stay)."""
    from servo.catalog.catalog import open_catalog
    from servo.catalog.projector import CatalogProjector

    with open_catalog(settings) as catalog:
        for tenant_id, workspace_id, _ in result.rebuilt_projections:
            snapshot = SnapshotReader(store, tenant_id, workspace_id).load()
            # The rebuild may reuse the generation of a quarantined manifest: start over.
            _forget_checkpoint(catalog, tenant_id, workspace_id)
            CatalogProjector(catalog, store, tenant_id, workspace_id).project(snapshot)
    result.reprojected_catalog = True


def _forget_checkpoint(catalog: Any, tenant_id: str, workspace_id: str) -> None:
    """Reset the projector's checkpoint of a scope so that everything is projected again."""
    import sqlalchemy as sa

    from servo.catalog.schema import projector_state

    def work(connection: sa.Connection) -> None:
        connection.execute(
            sa.delete(projector_state).where(
                projector_state.c.tenant_id == tenant_id,
                projector_state.c.workspace_id == workspace_id,
            )
        )

    catalog.db.run("doctor.reset_checkpoint", tenant_id, work, write=True)
