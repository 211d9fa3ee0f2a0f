"""``servo backup`` and ``servo restore``: a consistent copy of a home, through any store.

Everything goes through the `ObjectStore` protocol (`get`, `put_if_absent`, and the
admin-only `list_prefix`), so a home on local disk and a GCS prefix are backed up
and restored alike, to and from either.

**Consistent as of one manifest generation, while runs write.** For each scope
(tenant, workspace) the newest manifest generation N is chosen FIRST. Then, in this
order:

1. the projection files generation N names, and the manifests 1..N (the chain
   readers probe), then a ``LATEST`` hint naming N;
2. every ledger object, by listing ``ledger/`` (whatever the objects are named):
   listed after N was chosen, it holds every event N folded, and maybe later ones,
   which a restored home folds like a runner after a crash;
3. every other object (stored values, attempt result records and logs, gc
   records, the quarantine), by listing, after the ledger: a value is written
   before the event that names it;
4. last, ``servo-backup.json`` (the generations, the counts): a backup without it
   did not finish and is refused by restore.

Ledger objects, projection files, manifests, values and result records are
create-only and never change, so copying them while a run writes is safe; the
mutable ``LATEST`` hint is not copied but written. Not copied: projection files no
chosen manifest names (orphans of lost publishes), lock files, and the embedded
catalog (``catalog.db``; it is rebuilt from the projections on restore).

**Restore** copies a finished backup into an empty home (its lock directory aside),
then rebuilds every scope's projections from the restored ledger and the catalog from
them (`servo.maintenance.repair.repair_home` with ``rebuild``, as ``servo doctor
--rebuild``), so the restored home holds every event the backup holds. Its runs are
resumed with ``servo runs resume``; open attempts are given up and redelivered there,
and results recorded before the backup are reused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from servo.engine.ids import now_us
from servo.engine.manifest import Manifest, ManifestStore
from servo.errors import ConfigError, CorruptObjectError, ObjectNotFoundError
from servo.maintenance.scopes import Scope, home_scopes
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.storage.base import ObjectStore

log = get_logger(__name__)

#: The object that says a backup finished (written last).
MARKER = "servo-backup.json"
#: Version of the marker document.
BACKUP_FORMAT = 1
#: Top-level names of a home that are never copied: locks and the embedded catalog
#: (with SQLite's side files), which is rebuilt from the projections.
NOT_COPIED = ("locks/", "catalog.db", "catalog.db-wal", "catalog.db-shm", "catalog.db-journal")

COPIED = metrics.counter("servo_backup_objects_total", "Objects copied by backup/restore.", ["op"])
COPY_ERRORS = metrics.counter(
    "servo_backup_errors_total", "Backups or restores that stopped with an error.", ["op"]
)


@dataclass(slots=True)
class CopyReport:
    """What a backup or restore copied.

    Attributes:
        generations: the manifest generation copied per scope (0: none published).
        objects: objects copied.
        bytes: bytes copied.
        vanished: objects listed that were gone when read (removed meanwhile).
    """

    generations: dict[Scope, int] = field(default_factory=dict)
    objects: int = 0
    bytes: int = 0
    vanished: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object (the marker's body, too)."""
        return {
            "format": BACKUP_FORMAT,
            "scopes": [
                {"tenant": t, "workspace": w, "generation": g}
                for (t, w), g in sorted(self.generations.items())
            ],
            "objects": self.objects,
            "bytes": self.bytes,
        }


class BackupError(ConfigError):
    """A backup or restore that cannot be done as asked (the message says what to do)."""


def is_empty(store: ObjectStore, ignore: tuple[str, ...] = ()) -> bool:
    """Whether `store` holds no object (those under the prefixes `ignore` aside)."""
    return next((p for p in store.list_prefix("") if not p.startswith(ignore)), None) is None


def backup(source: ObjectStore, dest: ObjectStore, where: str) -> CopyReport:
    """Copy the home in `source` into the empty `dest` (see the module docstring).

    Args:
        source: the home's object store (runs may be writing to it).
        dest: where the backup goes; it must be empty.
        where: how the user named `dest`, for messages.

    Raises:
        BackupError: `dest` is not empty.
    """
    if not is_empty(dest):
        raise BackupError(
            f"the backup destination {where} is not empty: back up into a new, empty "
            "directory or bucket prefix"
        )
    report = CopyReport()
    chosen: dict[Scope, Manifest | None] = {
        scope: ManifestStore(source, *scope).latest() for scope in home_scopes(source)
    }
    for scope, manifest in chosen.items():  # 1. projections as of N
        report.generations[scope] = 0 if manifest is None else manifest.generation
        if manifest is not None:
            _copy_projections(source, dest, scope, manifest, report)
    _copy_all(source, dest, source.list_prefix("ledger/"), report, "backup")  # 2.
    rest = (p for p in source.list_prefix("") if not p.startswith(("ledger/", "projections/")))
    _copy_all(source, dest, (p for p in rest if not p.startswith(NOT_COPIED)), report, "backup")
    body = {**report.to_json(), "created_at_us": now_us()}
    dest.put_if_absent(MARKER, json.dumps(body, indent=2).encode("utf-8"))  # 4. last
    log.info("backup.done", dest=where, objects=report.objects, bytes=report.bytes,
             generations={f"{t}/{w}": g for (t, w), g in report.generations.items()})  # fmt: skip
    return report


def read_marker(store: ObjectStore, where: str) -> dict[str, Any]:
    """The marker of a finished backup.

    Raises:
        BackupError: there is no backup at `where`, or it did not finish.
    """
    try:
        data = store.get(MARKER).data
    except ObjectNotFoundError:
        if is_empty(store):
            raise BackupError(f"there is no Servo backup at {where}: check the path") from None
        raise BackupError(
            f"{where} is not a finished Servo backup ({MARKER} is missing: the backup was "
            "interrupted, or this is not a backup); make a new one with 'servo backup'"
        ) from None
    try:
        marker = json.loads(data)
        if not isinstance(marker, dict) or marker.get("format") != BACKUP_FORMAT:
            raise ValueError(f"format {marker.get('format') if isinstance(marker, dict) else '?'}")
    except ValueError as exc:
        raise BackupError(
            f"the backup at {where} cannot be read ({MARKER}: {exc}); it was made by another "
            "Servo version or is damaged"
        ) from exc
    return marker


def restore(
    source: ObjectStore,
    target: ObjectStore,
    where: str,
    home: str,
    *,
    rebuild: Callable[[], None],
) -> CopyReport:
    """Copy the finished backup in `source` into the empty home `target`, then `rebuild`.

    Args:
        source: the backup's store.
        target: the new home's object store; empty (its lock directory aside).
        where: how the user named the backup, for messages.
        home: how the user named the home, for messages.
        rebuild: rebuilds projections and catalog from the restored ledger.

    Raises:
        BackupError: no finished backup at `source`, or `target` is not empty.
    """
    marker = read_marker(source, where)
    if not is_empty(target, ignore=("locks/",)):
        raise BackupError(
            f"the Servo home {home} is not empty: restore into a new home (--home NEW_DIR), "
            "or move this one away first"
        )
    report = CopyReport()
    for scope in marker.get("scopes", []):
        report.generations[(scope["tenant"], scope["workspace"])] = int(scope["generation"])
    paths = [p for p in source.list_prefix("") if p != MARKER]
    manifests = [p for p in paths if _is_manifest(p)]
    first = [p for p in paths if not _is_manifest(p)]
    _copy_all(source, target, [*first, *manifests], report, "restore")  # the chain last
    for scope, generation in report.generations.items():
        if generation:
            _write_hint(target, scope, generation)
    if report.objects < int(marker.get("objects", 0)):
        COPY_ERRORS.labels("restore").inc()
        raise BackupError(
            f"the backup at {where} is incomplete: {report.objects} of "
            f"{marker.get('objects')} objects found; restore from another backup"
        )
    rebuild()
    log.info("restore.done", source=where, home=home, objects=report.objects)
    return report


def _copy_projections(
    source: ObjectStore, dest: ObjectStore, scope: Scope, manifest: Manifest, report: CopyReport
) -> None:
    files = [path for table in manifest.tables.values() for path in table.files]
    manifests = ManifestStore(source, *scope)
    chain = [manifests.path(g) for g in range(1, manifest.generation + 1)]
    _copy_all(source, dest, [*files, *chain], report, "backup", required=True)
    _write_hint(dest, scope, manifest.generation)


def _write_hint(store: ObjectStore, scope: Scope, generation: int) -> None:
    """The ``LATEST`` hint naming `generation` (created; never copied, it is mutable)."""
    manifests = ManifestStore(store, *scope)
    data = json.dumps({"generation": generation}).encode("utf-8")
    if store.head(manifests.hint_path) is None:
        store.put_if_absent(manifests.hint_path, data)


def _is_manifest(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 5 and parts[0] == "projections" and parts[3] == "manifest"


def _is_hint(path: str) -> bool:
    return _is_manifest(path) and path.endswith("/LATEST")


def _copy_all(
    source: ObjectStore,
    dest: ObjectStore,
    paths: Iterable[str],
    report: CopyReport,
    op: str,
    *,
    required: bool = False,
) -> None:
    """Copy `paths` create-only; one gone meanwhile is noted (an error if `required`)."""
    for path in paths:
        if _is_hint(path):
            continue  # the mutable hint: written, never copied
        try:
            data = source.get(path).data
        except ObjectNotFoundError:
            if required:
                COPY_ERRORS.labels(op).inc()
                raise CorruptObjectError(
                    f"{path} is named by a manifest but missing; run 'servo doctor --repair' "
                    "on the home, then back it up again"
                ) from None
            report.vanished.append(path)
            log.info(f"{op}.object_vanished", path=path)  # removed after listing (gc)
            continue
        dest.put_if_absent(path, data)
        report.objects += 1
        report.bytes += len(data)
        COPIED.labels(op).inc()
