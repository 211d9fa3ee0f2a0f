"""The catalog projector: after each published snapshot, upsert what it changed.

Register it on the embedded runner (``runner.add_publish_listener(projector)``);
it is called with every snapshot the runner publishes. For the engine scope
(tenant, workspace) it keeps a checkpoint in the catalog (``projector_state``):
the manifest generation last projected and the projection files it had read.

**Cost follows change, not history.** The L0 delta files a manifest added since
the checkpoint hold exactly the rows that changed, so only those are read (from
the by-path cache when the compactor just wrote them in this process). When a
table's base changed — the compactor merged its deltas into a new base every
``engine.max_l0_files`` publishes, and that base also holds the rows of the
publish that triggered it — the whole table is read and upserted again: correct
because upserts are idempotent, and proportional to the table once per merge.

**Replays change nothing.** A snapshot at or below the checkpoint's generation
is skipped; rows are upserted with ``ON CONFLICT ... DO UPDATE ... WHERE <changed>``
and the checkpoint moves in the same transaction (`ProjectionCatalog.apply`), so
a crash between the two is impossible and a second projector of the same scope
can only find its batch stale and recompute it from the newer checkpoint.

Mapping: ``runs`` rows -> ``executions``; ``tasks`` rows -> ``execution_tasks``,
and a ``materializations`` row for every succeeded task with an output location.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from servo.catalog.run_records import (
    Checkpoint,
    ExecutionSpec,
    ExecutionStatus,
    MaterializationSpec,
    ProjectedFiles,
    ProjectionBatch,
    TaskSpec,
)
from servo.engine import schema as s
from servo.engine.ids import DEFAULT_WORKSPACE
from servo.engine.projections import read_table_file
from servo.errors import EngineError
from servo.observability import metrics
from servo.observability.logging import get_logger

if TYPE_CHECKING:
    from servo.catalog.protocol import Catalog
    from servo.engine.manifest import Manifest
    from servo.engine.snapshot import Snapshot
    from servo.storage.base import ObjectStore

log = get_logger(__name__)

#: Engine tables the projector reads.
SOURCE_TABLES = (s.RUNS, s.TASKS)
#: Recomputations after another projector moved the checkpoint first.
MAX_STALE_RETRIES = 3

PROJECTIONS = metrics.counter(
    "servo_catalog_projections_total",
    "Snapshots offered to the catalog projector, by outcome (applied, unchanged, stale).",
    ["outcome"],
)
PROJECTED_ROWS = metrics.counter(
    "servo_catalog_projected_rows_total", "Rows upserted by the catalog projector.", ["table"]
)
PROJECTION_SECONDS = metrics.histogram(
    "servo_catalog_projection_duration_seconds", "Catalog projections of one snapshot."
)


def new_files(current: ProjectedFiles, known: ProjectedFiles | None) -> tuple[str, ...]:
    """The files of `current` to read, given those read at the checkpoint: the new
    deltas, or every file when the base changed (or the history does not extend)."""
    if (
        known is not None
        and current.base == known.base
        and current.deltas[: len(known.deltas)] == known.deltas
    ):
        return current.deltas[len(known.deltas) :]
    return (current.base, *current.deltas) if current.base else current.deltas


def new_history_files(current: ProjectedFiles, known: ProjectedFiles | None) -> tuple[str, ...]:
    """The files of a history twin to read: every file not read at the checkpoint.

    History files hold final rows and are only ever merged into higher tiers
    (`servo.engine.history`), so a merged file holds rows already read or rows of
    files the checkpoint missed; never a row that a file read before would revert.
    """
    files = (current.base, *current.deltas) if current.base else current.deltas
    if known is None:
        return files
    seen = {known.base, *known.deltas}
    return tuple(path for path in files if path not in seen)


def execution_spec(run: s.RunRow) -> ExecutionSpec:
    """The catalog execution of an engine run."""
    return ExecutionSpec(
        execution_id=run.run_id,
        workspace_id=run.workspace_id,
        idempotency_key=run.idempotency_key,
        status=cast(ExecutionStatus, run.status),
        selection=run.selection,
        defs_source=run.defs_source,
        n_tasks=run.n_tasks,
        n_succeeded=run.n_succeeded,
        n_failed=run.n_failed,
        n_skipped=run.n_skipped,
        n_cancelled=run.n_cancelled,
        requested_at=run.requested_at,
        completed_at=run.completed_at,
        cancel_requested_at=run.cancel_requested_at,
    )


def task_spec(task: s.TaskRow) -> TaskSpec:
    """The catalog state of an engine task."""
    return TaskSpec(
        execution_id=task.run_id,
        task_key=task.task_key,
        asset_key=task.asset_key,
        partition_key=task.partition_key,
        status=task.status,
        attempt=task.attempt,
        max_attempts=task.max_attempts,
        started_at=task.started_at,
        finished_at=task.finished_at,
        error_type=task.error_type,
        error_message=task.error_message,
        output_rows=task.output_rows,
    )


def materialization_spec(task: s.TaskRow) -> MaterializationSpec | None:
    """The value a succeeded task wrote, or None."""
    if task.status != s.SUCCEEDED or not task.output_location:
        return None
    return MaterializationSpec(
        execution_id=task.run_id,
        asset_key=task.asset_key,
        location=task.output_location,
        partition_key=task.partition_key,
        format=task.output_format,
        row_count=task.output_rows,
        size_bytes=task.output_size,
        started_at=task.started_at,
        finished_at=task.finished_at,
    )


class CatalogProjector:
    """A publish listener projecting one engine scope into the catalog.

    Args:
        catalog: where to project.
        store: the object store holding the projection files.
        tenant_id: the engine scope's tenant (also the catalog tenant).
        workspace_id: the engine scope's workspace.
    """

    def __init__(
        self,
        catalog: Catalog,
        store: ObjectStore,
        tenant_id: str,
        workspace_id: str = DEFAULT_WORKSPACE,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self.tenant_id = tenant_id
        self.workspace_id = workspace_id
        self._checkpoint: Checkpoint | None = None
        self._loaded = False

    def __call__(self, snapshot: Snapshot) -> None:
        self.project(snapshot)

    def project(self, snapshot: Snapshot) -> bool:
        """Project what `snapshot` changed since the checkpoint.

        Returns:
            True when something was applied; False for a replayed, older or empty
            snapshot, or one another projector already applied.

        Raises:
            EngineError: the snapshot belongs to another engine scope.
            CatalogError: the catalog failed (the runner logs it; the next
                snapshot catches up from the checkpoint).
        """
        manifest = snapshot.manifest
        if manifest is None:
            return False
        if (manifest.tenant_id, manifest.workspace_id) != (self.tenant_id, self.workspace_id):
            raise EngineError(
                f"the catalog projector of {self.tenant_id}/{self.workspace_id} was given a "
                f"snapshot of {manifest.tenant_id}/{manifest.workspace_id}"
            )
        started = time.perf_counter()
        for _ in range(MAX_STALE_RETRIES):
            checkpoint = self._current()
            if checkpoint is not None and checkpoint.generation >= manifest.generation:
                PROJECTIONS.labels("unchanged").inc()
                return False
            batch = self._batch(manifest, checkpoint)
            if self._catalog.projection.apply(self.tenant_id, batch):
                self._remember(batch)
                PROJECTIONS.labels("applied").inc()
                PROJECTION_SECONDS.observe(time.perf_counter() - started)
                for table, count in (
                    ("executions", len(batch.executions)),
                    ("execution_tasks", len(batch.tasks)),
                    ("materializations", len(batch.materializations)),
                ):
                    PROJECTED_ROWS.labels(table).inc(count)
                log.debug(
                    "catalog.projected",
                    tenant_id=self.tenant_id,
                    workspace_id=self.workspace_id,
                    generation=batch.generation,
                    executions=len(batch.executions),
                    tasks=len(batch.tasks),
                    materializations=len(batch.materializations),
                )
                return True
            PROJECTIONS.labels("stale").inc()
            log.info(
                "catalog.projection_stale",
                tenant_id=self.tenant_id,
                workspace_id=self.workspace_id,
                generation=manifest.generation,
            )
            self._loaded = False  # another projector moved the checkpoint: reload it
        return False

    # ------------------------------------------------------------------ internals
    def _current(self) -> Checkpoint | None:
        if not self._loaded:
            self._checkpoint = self._catalog.projection.checkpoint(
                self.tenant_id, self.workspace_id
            )
            self._loaded = True
        return self._checkpoint

    def _remember(self, batch: ProjectionBatch) -> None:
        self._checkpoint = Checkpoint(
            self.tenant_id, self.workspace_id, batch.generation, dict(batch.files), 0
        )
        self._loaded = True

    def _batch(self, manifest: Manifest, checkpoint: Checkpoint | None) -> ProjectionBatch:
        files: dict[str, ProjectedFiles] = {}
        rows: dict[str, list[Any]] = {}
        for spec in SOURCE_TABLES:
            # An archived run's final rows are in the history twin (ADR 0022): read
            # first, so a hot row of the same key, if any, is the one kept.
            found: dict[tuple[Any, ...], Any] = {}
            history = s.HISTORY_OF[spec.name]
            for source, pick in ((history, new_history_files), (spec, new_files)):
                table_files = manifest.files_of(source.name)
                current = ProjectedFiles(table_files.base, table_files.deltas)
                known = None if checkpoint is None else checkpoint.files.get(source.name)
                for row in self._read(source, pick(current, known)):
                    found[spec.key_of(row)] = row
                files[source.name] = current
            rows[spec.name] = list(found.values())
        runs = [r for r in rows["runs"] if self._owned(r)]
        tasks: list[s.TaskRow] = rows["tasks"]
        return ProjectionBatch(
            workspace_id=self.workspace_id,
            after_generation=0 if checkpoint is None else checkpoint.generation,
            generation=manifest.generation,
            files=files,
            executions=tuple(execution_spec(r) for r in runs),
            tasks=tuple(task_spec(t) for t in tasks),
            materializations=tuple(m for t in tasks if (m := materialization_spec(t)) is not None),
        )

    def _read(self, spec: s.TableSpec, paths: Iterable[str]) -> list[Any]:
        """The rows of `paths` in order, the later file's row winning per key."""
        latest: dict[tuple[Any, ...], Any] = {}
        for path in paths:
            for row in spec.from_arrow(read_table_file(self._store, path, spec)):
                latest[spec.key_of(row)] = row
        return list(latest.values())

    def _owned(self, run: s.RunRow) -> bool:
        if run.tenant_id == self.tenant_id and run.workspace_id == self.workspace_id:
            return True
        log.warning(
            "catalog.projector_foreign_run",
            tenant_id=self.tenant_id,
            run_id=run.run_id,
            run_tenant_id=run.tenant_id,
        )
        return False
