"""``servo doctor``: check a Servo home and report every problem found.

The checks, for each engine scope (tenant, workspace) of the home:

1. the home is a usable, writable directory (`servo.storage.home`);
2. every ledger object decodes (`servo.engine.replay.replay_ledger` sets aside those
   that do not);
3. every manifest of the chain decodes, and the newest readable one is the newest;
4. every file the newest readable manifest names decodes as Parquet of its table;
5. the published projections equal a full replay of the ledger
   (`servo.engine.replay.compare`);

and once for the home: the catalog opens, is at this Servo's schema revision (a
SQLite catalog is inspected without being migrated) and lists the same runs with
the same statuses as the replay.

Checking never writes. `servo.maintenance.repair` acts on the findings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servo.engine.damage import REPAIR_HINT
from servo.engine.manifest import Manifest, ManifestStore
from servo.engine.projections import read_table_file
from servo.engine.replay import LedgerReplay, compare, replay_ledger
from servo.engine.schema import TABLES_BY_NAME
from servo.engine.snapshot import Snapshot
from servo.errors import CorruptObjectError, ObjectNotFoundError, ServoError
from servo.maintenance.scopes import Scope, home_scopes
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.storage.home import home_problem

if TYPE_CHECKING:
    from servo.config.settings import Settings
    from servo.storage.base import ObjectStore

log = get_logger(__name__)

FINDINGS = metrics.counter(
    "servo_doctor_findings_total", "Problems servo doctor found in a home.", ["kind"]
)

#: The embedded catalog's file under the home.
CATALOG_FILE = "catalog.db"


class FindingKind(StrEnum):
    """What kind of problem a finding is."""

    HOME_UNUSABLE = "home_unusable"
    HOME_MISSING = "home_missing"
    LEDGER_UNREADABLE = "ledger_unreadable"
    MANIFEST_UNREADABLE = "manifest_unreadable"
    PROJECTION_UNREADABLE = "projection_unreadable"
    PROJECTIONS_DISAGREE = "projections_disagree"
    CATALOG_DAMAGED = "catalog_damaged"
    CATALOG_OUTDATED = "catalog_outdated"
    CATALOG_DISAGREES = "catalog_disagrees"
    #: The catalog cannot be written (full disk): nothing to repair, space to free.
    CATALOG_UNWRITABLE = "catalog_unwritable"


#: Findings about the catalog (repaired by rebuilding it).
CATALOG_KINDS = frozenset(
    {FindingKind.CATALOG_DAMAGED, FindingKind.CATALOG_OUTDATED, FindingKind.CATALOG_DISAGREES}
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found.

    Attributes:
        kind: what kind of problem.
        message: one line saying what is wrong.
        path: the object or file concerned, when there is one.
        scope: the (tenant, workspace) concerned, or None for the whole home.
        run_ids: runs concerned, as far as can be told.
    """

    kind: FindingKind
    message: str
    path: str | None = None
    scope: Scope | None = None
    run_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The finding as a JSON object."""
        return {
            "kind": str(self.kind),
            "message": self.message,
            "path": self.path,
            "tenant": None if self.scope is None else self.scope[0],
            "workspace": None if self.scope is None else self.scope[1],
            "run_ids": list(self.run_ids),
        }


@dataclass(slots=True)
class ScopeCheck:
    """What checking one scope found, kept for the repair.

    Attributes:
        scope: the (tenant, workspace).
        replay: the replay of its ledger.
        manifest: the newest readable manifest (None: none).
        findings: the problems.
    """

    scope: Scope
    replay: LedgerReplay
    manifest: Manifest | None
    findings: list[Finding] = field(default_factory=list)


@dataclass(slots=True)
class DoctorReport:
    """Everything one check found.

    Attributes:
        home: the home checked.
        scopes: per-scope results.
        findings: every problem, home-wide ones included.
    """

    home: Path
    scopes: list[ScopeCheck] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """Whether nothing was found."""
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object."""
        return {
            "home": str(self.home),
            "healthy": self.healthy,
            "scopes": [{"tenant": c.scope[0], "workspace": c.scope[1]} for c in self.scopes],
            "runs": sum(1 for c in self.scopes for _ in replayed_runs(c.replay)),
            "ledger_objects": sum(len(c.replay.paths) for c in self.scopes),
            "findings": [f.to_json() for f in self.findings],
        }


def replayed_runs(replay: LedgerReplay) -> Iterable[Any]:
    """The runs of a replay (placeholders of early cancels left out)."""
    return (r for r in replay.state.rows("runs") if r.request_event_id)


def diagnose_home(
    settings: Settings, store: ObjectStore, tenant_id: str | None = None
) -> DoctorReport:
    """Check the home of `settings` (see the module docstring); never writes.

    Args:
        settings: the settings (home, catalog).
        store: the home's object store.
        tenant_id: check only this tenant's scopes; every scope when None.
    """
    home = Path(settings.home)
    report = DoctorReport(home)
    problem = home_problem(home, write=True)
    if problem is not None:
        _add(report.findings, Finding(FindingKind.HOME_UNUSABLE, problem, str(home)))
        return report
    if settings.storage.backend == "local" and not home.is_dir():
        message = (
            f"there is no Servo home at {home.absolute()}: nothing to check; pass the home "
            "with --home (or SERVO_HOME), or run 'servo materialize' to create this one"
        )
        _add(report.findings, Finding(FindingKind.HOME_MISSING, message, str(home)))
        return report
    for scope in home_scopes(store, tenant_id):
        checked = check_scope(store, scope)
        report.scopes.append(checked)
        for finding in checked.findings:
            _add(report.findings, finding)
    from servo.maintenance.catalog_check import check_catalog

    for finding in check_catalog(settings, report.scopes):
        _add(report.findings, finding)
    return report


def check_scope(store: ObjectStore, scope: Scope) -> ScopeCheck:
    """Check the ledger, manifests and projections of one scope."""
    tenant_id, workspace_id = scope
    replay = replay_ledger(store, tenant_id, workspace_id)
    findings = [
        Finding(FindingKind.LEDGER_UNREADABLE, u.problem, u.path, scope, u.run_ids)
        for u in replay.unreadable
    ]
    manifests = ManifestStore(store, tenant_id, workspace_id)
    manifest: Manifest | None = None
    for generation in reversed(generations(store, manifests)):
        try:
            loaded = manifests.load(generation)
        except CorruptObjectError as exc:
            message = _first(exc)
            path = manifests.path(generation)
            findings.append(Finding(FindingKind.MANIFEST_UNREADABLE, message, path, scope))
            continue
        except ObjectNotFoundError:
            continue
        manifest = loaded if manifest is None else manifest
    unreadable_files = False
    if manifest is not None:
        for name, files in sorted(manifest.tables.items()):
            for path in files.files:
                try:
                    read_table_file(store, path, TABLES_BY_NAME[name])
                except CorruptObjectError as exc:
                    unreadable_files = True
                    findings.append(
                        Finding(FindingKind.PROJECTION_UNREADABLE, _first(exc), path, scope)
                    )
    if not unreadable_files:
        for diff in compare(Snapshot(store, manifest), replay.state):
            message = (
                f"the projections (generation {0 if manifest is None else manifest.generation})"
                f" differ from a replay of the ledger in {diff.describe()}"
            )
            findings.append(
                Finding(FindingKind.PROJECTIONS_DISAGREE, message, None, scope, diff.run_ids)
            )
    return ScopeCheck(scope, replay, manifest, _with_touched_runs(findings))


def _with_touched_runs(findings: list[Finding]) -> list[Finding]:
    """Unreadable ledger objects touched the runs in which the projections, which
    folded them, differ from the replay, which could not: name those runs too."""
    differing = {
        r for f in findings if f.kind == FindingKind.PROJECTIONS_DISAGREE for r in f.run_ids
    }
    if not differing:
        return findings
    return [
        replace(f, run_ids=tuple(sorted({*f.run_ids, *differing})))
        if f.kind == FindingKind.LEDGER_UNREADABLE
        else f
        for f in findings
    ]


def generations(store: ObjectStore, manifests: ManifestStore) -> list[int]:
    """Manifest generations present, ascending (lists the manifest folder)."""
    found = []
    for path in store.list_prefix(f"{manifests.prefix}manifest/"):
        name = path.rpartition("/")[2]
        if name.endswith(".json") and name[:-5].isdigit():
            found.append(int(name[:-5]))
    return sorted(found)


def _first(exc: ServoError) -> str:
    """The error's message without the repair hint (the report gives its own)."""
    return str(exc).removesuffix(f"; {REPAIR_HINT}")


def _add(findings: list[Finding], finding: Finding) -> None:
    findings.append(finding)
    FINDINGS.labels(str(finding.kind)).inc()
    log.info(
        "doctor.finding",
        kind=str(finding.kind),
        path=finding.path,
        tenant_id=None if finding.scope is None else finding.scope[0],
        run_ids=finding.run_ids,
        message=finding.message,
    )
