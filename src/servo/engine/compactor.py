"""The compactor: folds ledger events into projection files and publishes a manifest.

Invariants (SPEC §4; design in docs/adr/0004-manifest-cas-and-compaction.md):

- **Sole writer of projections.** Only this module writes files under
  ``projections/{tenant}/{ws}/tables/{table}/``, each created once, never changed:
  ``{generation:020d}-{ulid}-d.parquet`` (L0 delta: the rows one publish changed) and
  ``...-b.parquet`` (base: base + deltas merged once a table has `max_l0_files`
  deltas). The ULID is fresh per publish attempt, so retries never collide.
- **Idempotent.** The fold is idempotent and order-insensitive: compacting the same
  events again (redelivery, retry after a lost race, restart after a crash) yields
  the same tables.
- **CAS with fencing.** Generation N+1 is a create-only write. The loser of a race
  drops its state, reloads the winner's manifest and tables, re-folds its events
  (harmless for events the winner already had), rewrites its files under the next
  generation and tries again, a bounded number of times with jittered backoff.
- **No listing.** It reads the ledger paths it is given and the files a manifest names.
- **Orphans.** Files of an attempt that lost or crashed before publishing are named
  by no manifest: invisible to readers, collectable by an admin tool.
- **Watermark.** ``last_processed_at = max(previous, min(taken_at, newest))``:
  `taken_at` is when the batch left the inbox (every event notified before it is
  folded) and `newest` the newest folded event's time, so it never passes the
  newest folded event. A previous watermark ahead of this compactor's clock was set
  by a clock that ran ahead: it is not kept (the watermark comes back as soon as
  the clock is right; a lower watermark only makes timers wait).
- **Acknowledged batches.** A caller names the numbered ledger batches whose events
  it folded (`fold(..., paths=)`, `acknowledge`); a manifest's ``ledger_through`` is
  the longest gap-free run of them, which is where recovery starts probing
  (ADR 0012). Acknowledging a batch whose events are not folded would lose them.

`fold` applies events to the in-memory `EngineState` (the embedded runner may read it,
ahead of the projections) and remembers them with the rows they changed; `publish`
writes those rows and publishes. There is no verb doing both: the runner folds every
step and publishes on an interval. Between calls nothing is read before folding (the
fast path). A lost race or any error drops the state; the
next call reloads the latest snapshot and re-folds the unpublished events.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from servo.engine.events import Event
from servo.engine.fold import EngineState, FoldStats
from servo.engine.history import HistoryWriter, archivable
from servo.engine.ids import new_ulid, now_us
from servo.engine.layout import GenerationWriter
from servo.engine.ledger import LedgerReader, batch_seq
from servo.engine.manifest import EMPTY_TABLE, Manifest, ManifestStore, TableFiles
from servo.engine.recovery import unfolded_ledger_paths
from servo.engine.schema import TABLES, TABLES_BY_NAME, RunRow, TaskRow
from servo.engine.snapshot import Snapshot
from servo.engine.working import WorkingState
from servo.errors import CorruptObjectError, ManifestConflictError
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.storage.base import ObjectStore

log = get_logger(__name__)

#: Backoff jitter; private so Servo never perturbs the global `random` state of user code.
_JITTER = random.Random()

COMPACTION_DURATION = metrics.histogram(
    "servo_compaction_duration_seconds", "Duration of one compaction, retries included."
)
EVENTS_FOLDED = metrics.counter("servo_events_folded_total", "Events folded by the compactor.")
STALE_REJECTED = metrics.counter(
    "servo_stale_events_rejected_total", "Events of a stale attempt ignored by the fold."
)
COMPACTION_ERRORS = metrics.counter(
    "servo_compaction_errors_total", "Compactions that failed.", ["error_type"]
)
CAS_CONFLICTS = metrics.counter(
    "servo_compaction_cas_conflicts_total", "Manifest publishes lost to another compactor."
)
L0_FILES = metrics.gauge(
    "servo_projection_l0_files", "L0 delta files of a table in the last manifest.", ["table"]
)

Clock = Callable[[], int]


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """What one compaction published.

    Attributes:
        manifest: the manifest published (or the current one for a no-op).
        events: events given to this compaction.
        stale_rejected: events of stale attempts the fold ignored.
        files_written: projection files referenced by the new manifest.
        bytes_written: Parquet bytes of those files.
        conflicts: publishes lost to other compactors before this one won.
        published: False when nothing changed and no manifest was written.
    """

    manifest: Manifest
    events: int
    stale_rejected: int
    files_written: tuple[str, ...]
    bytes_written: int
    conflicts: int
    published: bool = True

    @property
    def generation(self) -> int:
        """The generation of `manifest`."""
        return self.manifest.generation


class Compactor:
    """Folds events of one (tenant, workspace) and publishes projections.

    Calls are serialised by a lock; run one compactor per (tenant, workspace) per
    process.

    Args:
        store: object store holding ledger and projections.
        tenant_id: the tenant compacted.
        workspace_id: the workspace compacted.
        max_l0_files: deltas of one table that trigger a merge into a new base.
        writer_id: recorded in manifests; a fresh ULID when None.
        clock: epoch-µs clock for `taken_at` defaults and `published_at`.
        max_conflict_retries: lost publishes tolerated in one call before giving up.
        archive: move ended runs out of the hot state at each publish
            (`servo.engine.history`), except those named by `retain`.
        backoff_s: first backoff after a lost publish (doubled, jittered, capped x64).
        sleep: replaced in tests.
    """

    def __init__(
        self,
        store: ObjectStore,
        tenant_id: str,
        workspace_id: str,
        *,
        max_l0_files: int = 16,
        writer_id: str | None = None,
        clock: Clock = now_us,
        max_conflict_retries: int = 16,
        backoff_s: float = 0.002,
        sleep: Callable[[float], None] = time.sleep,
        archive: bool = False,
    ) -> None:
        if max_l0_files < 1:
            raise ValueError(f"max_l0_files must be >= 1, got {max_l0_files}")
        self._store = store
        self.tenant_id = tenant_id
        self.workspace_id = workspace_id
        # The writer's store: it sets an unreadable newest generation aside.
        self.manifests = ManifestStore(store, tenant_id, workspace_id, repair=True)
        self._tables_prefix = f"{self.manifests.prefix}tables/"
        self._ledger = LedgerReader(store)
        self.max_l0_files = max_l0_files
        self.writer_id = writer_id or new_ulid()
        self._clock = clock
        self.max_conflict_retries = max_conflict_retries
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._lock = threading.RLock()
        self._work = WorkingState(store, self.manifests)
        self.archive = archive

    # ------------------------------------------------------------------ public
    @property
    def manifest(self) -> Manifest | None:
        """The manifest this compactor last published or loaded (None: none yet)."""
        return self._work.manifest

    @property
    def state(self) -> EngineState:
        """The folded state, including events folded but not yet published."""
        with self._lock:
            return self._work.state()

    def snapshot(self) -> Snapshot:
        """A snapshot of what this compactor last published, without re-reading files.

        The files it wrote sit in the process-wide by-path cache, so loading the
        snapshot's tables only merges Arrow tables in memory. Events folded but not
        yet published are not in it.
        """
        with self._lock:
            self._work.state()
            return Snapshot(self._store, self._work.manifest)

    def fold(self, events: Iterable[Event], *, paths: Sequence[str] = ()) -> FoldStats:
        """Fold `events` into the in-memory state; `publish` makes them visible.

        Args:
            events: the events.
            paths: ledger objects whose events are all among `events` (acknowledged
                once the fold succeeds).

        Raises:
            EngineError: an event of another tenant/workspace (the batch is dropped).
        """
        batch = list(events)
        with self._lock:
            try:
                stats = self._work.fold(batch)
            except BaseException as exc:
                self._abandon(exc)
                raise
            self._acknowledge(paths)
            EVENTS_FOLDED.inc(stats.events)
            STALE_REJECTED.inc(stats.stale_rejected)
            return stats

    def retain(self, run_id: str) -> None:
        """Keep `run_id` in the hot state after it ends (this compactor's caller reads
        it), bringing it back if it was archived; the next compactor of the scope
        archives it (again)."""
        with self._lock:
            self._work.retained.add(run_id)
            self._work.restore(run_id)

    def release(self) -> set[str]:
        """Keep no run hot for this compactor's caller any longer: the next publish
        archives every retained run that has ended (a runner closing). Returns the
        runs that were retained."""
        with self._lock:
            released, self._work.retained = self._work.retained, set()
        return released

    def run_record(self, run_id: str) -> tuple[RunRow, list[TaskRow]] | None:
        """A run and its tasks, from the hot state or, once archived, from the history
        of the last published snapshot; None when neither knows the run."""
        with self._lock:
            state = self._work.state()
            run = state.run(run_id)
            if run is not None:
                return run, state.tasks_of(run_id)
            if run_id not in state.archived:
                return None
            snapshot = Snapshot(self._store, self._work.manifest)
        found = snapshot.run(run_id)
        return None if found is None else (found, snapshot.tasks_of(run_id))

    def unfolded_paths(self) -> list[str]:
        """Ledger objects the folded state may lack (`servo.engine.recovery`): fold
        them with ``fold(events, paths=...)`` so they count as acknowledged."""
        with self._lock:
            state = self._work.state()
            return unfolded_ledger_paths(
                self._store,
                self.tenant_id,
                self.workspace_id,
                # An archived run's request (and recorded cancel) are folded already.
                has_run=lambda run_id: state.run(run_id) is not None or run_id in state.archived,
                has_cancel=lambda run_id: (
                    ((run := state.run(run_id)) is not None and run.cancel_requested_at is not None)
                    or state.archived.has_cancel(run_id)
                ),
                manifest=self._work.manifest,
                skip=frozenset(self._work.acked),
            )

    def folded(self, path: str) -> bool:
        """Whether the ledger object `path` is known folded (a numbered batch the
        manifest covers or this state acknowledged); False when not known."""
        seq = batch_seq(path)
        if seq is None:
            return False
        with self._lock:
            return seq <= self._work.ledger_through() or seq in self._work.acked

    def batches_folded(self) -> tuple[int, frozenset[int]]:
        """Which numbered ledger batches this state holds: every number up to the
        first (the manifest's and the acknowledged ones without a gap), and the
        acknowledged numbers beyond it."""
        with self._lock:
            through = self._work.ledger_through()
            return through, frozenset(seq for seq in self._work.acked if seq > through)

    def acknowledge(self, paths: Sequence[str]) -> None:
        """Record that the events of the ledger objects `paths` are folded already
        (a writer that folds its events before writing them names the batch after)."""
        with self._lock:
            self._acknowledge(paths)

    def forget(self, events: Sequence[Event]) -> None:
        """Drop folded events that could not be written to the ledger.

        The state is reloaded from the last manifest and the other pending events are
        folded again, so nothing derived from the dropped events is published.
        """
        with self._lock:
            self._work.forget({e.event_id for e in events})

    def publish(self, *, taken_at: int | None = None) -> CompactionResult:
        """Publish what was folded since the last publish as the next generation.

        Args:
            taken_at: when the folded batch was taken from the inbox (epoch µs): the new
                watermark is ``max(previous, taken_at)``. Now if None.

        Raises:
            ManifestConflictError: lost the race more than `max_conflict_retries` times
                (the folded events stay pending for the next call).
        """
        taken = self._clock() if taken_at is None else taken_at
        return self._timed(lambda: self._with_retries(lambda c: self._publish_pending(taken, c)))

    def rebuild(self, paths: Sequence[str], *, taken_at: int | None = None) -> CompactionResult:
        """Fold the events of `paths` from scratch and publish them as new base files.

        The result replaces every table: `paths` must name the whole ledger. Events
        folded but not yet published are folded in as well.
        """
        taken = self._clock() if taken_at is None else taken_at
        batch = self._read(paths)
        with self._lock:
            self._acknowledge(paths)
        return self.rebuild_events(batch, taken_at=taken)

    def rebuild_events(
        self, events: Iterable[Event], *, taken_at: int | None = None
    ) -> CompactionResult:
        """Like `rebuild`, for events the caller already holds."""
        batch = list(events)
        taken = self._clock() if taken_at is None else taken_at
        return self._timed(lambda: self._with_retries(lambda c: self._rebuild(batch, taken, c)))

    # ----------------------------------------------------------------- internals
    def _timed(self, run: Callable[[], CompactionResult]) -> CompactionResult:
        with self._lock:
            started = time.perf_counter()
            try:
                return run()
            finally:
                COMPACTION_DURATION.observe(time.perf_counter() - started)

    def _read(self, paths: Sequence[str]) -> list[Event]:
        try:
            return self._ledger.read_many(paths)
        except Exception as exc:
            self._failed(exc)
            raise

    def _acknowledge(self, paths: Sequence[str]) -> None:
        self._work.acked.update(seq for path in paths if (seq := batch_seq(path)) is not None)

    def _watermark(self, previous: Manifest | None, taken_at: int) -> int:
        """The next watermark: monotonic, but never past the newest folded event, nor
        trusting a previous watermark that is ahead of this compactor's clock."""
        kept = 0 if previous is None else previous.last_processed_at
        if kept > self._clock():
            kept = 0  # set by a clock that ran ahead: start again from the events
        newest = max(self._work.newest_event_at(), kept)
        return max(kept, min(taken_at, newest))

    def _failed(self, exc: Exception) -> None:
        COMPACTION_ERRORS.labels(error_type=type(exc).__name__).inc()
        # A damaged object is reported to the user by whoever catches the error (one
        # `error:` line naming the file and `servo doctor --repair`); logging it at
        # error level too would print it twice.
        emit = log.info if isinstance(exc, CorruptObjectError) else log.error
        emit(
            "compaction.failed",
            tenant_id=self.tenant_id,
            workspace_id=self.workspace_id,
            generation=self._next_generation(),
            error_type=type(exc).__name__,
            error=str(exc),
        )

    def _abandon(self, exc: BaseException) -> None:
        """Drop the in-memory state after a failure (it may hold unpublished folds)."""
        self._work.reset()
        if isinstance(exc, Exception):
            self._failed(exc)

    def _with_retries(self, attempt: Callable[[int], CompactionResult]) -> CompactionResult:
        conflicts = 0
        try:
            while True:
                try:
                    return attempt(conflicts)
                except ManifestConflictError:
                    lost = self._next_generation()
                    self._work.reset()  # reload the winner's state, then re-fold
                    conflicts += 1
                    CAS_CONFLICTS.inc()
                    # Expected when two writers publish at once; the retry resolves it
                    # (and raises, loudly, when it cannot).
                    log.info(
                        "compaction.cas_conflict",
                        tenant_id=self.tenant_id,
                        workspace_id=self.workspace_id,
                        generation=lost,
                        conflicts=conflicts,
                        writer_id=self.writer_id,
                    )
                    if conflicts > self.max_conflict_retries:
                        raise
                    delay = self._backoff_s * 2 ** min(conflicts - 1, 6)
                    self._sleep(delay * _JITTER.uniform(0.5, 1.5))
        except BaseException as exc:
            self._abandon(exc)
            raise

    def _next_generation(self) -> int:
        manifest = self._work.manifest
        return 1 if manifest is None else manifest.generation + 1

    def _publish_pending(self, taken_at: int, conflicts: int) -> CompactionResult:
        work = self._work
        work.state()
        previous = work.manifest
        watermark = self._watermark(previous, taken_at)
        through = work.ledger_through()
        events, stale = len(work.events), work.stale
        moved = previous is None or (watermark, through) != (
            previous.last_processed_at,
            previous.ledger_through,
        )
        state = work.state()
        ended = archivable(state, work.retained) if self.archive else []
        if previous is not None and not (moved or work.has_changes or ended):  # a redelivery
            work.published(previous)
            return CompactionResult(previous, events, stale, (), 0, conflicts, published=False)
        writer = GenerationWriter(self._store, self._tables_prefix, self._next_generation())
        tables = {} if previous is None else dict(previous.tables)
        rebased: dict[str, TableFiles] = {}
        if ended:
            rebased = HistoryWriter(writer, self.max_l0_files).archive(state, ended, tables)
            tables.update(rebased)
            log.info(
                "compaction.runs_archived",
                tenant_id=self.tenant_id,
                workspace_id=self.workspace_id,
                runs=len(ended),
            )
        for spec in TABLES:
            if spec.name in rebased:
                continue  # written whole, without the archived runs
            rows = work.changed_rows(spec)
            if rows:
                current = tables.get(spec.name, EMPTY_TABLE)
                tables[spec.name] = writer.add_delta(spec, current, rows, self.max_l0_files)
        folded = (0 if previous is None else previous.events_folded) + events
        work.published(self._commit(tables, watermark, folded, through))
        return self._result(events, stale, writer, conflicts)

    def _rebuild(self, batch: list[Event], taken_at: int, conflicts: int) -> CompactionResult:
        work = self._work
        if not work.loaded:
            work.manifest = self.manifests.latest()  # the generation to extend
        state = EngineState(self.tenant_id, self.workspace_id)
        folded = [*work.events, *batch]
        stats = state.apply(folded)
        writer = GenerationWriter(self._store, self._tables_prefix, self._next_generation())
        tables = {
            name: writer.add_base(TABLES_BY_NAME[name], rows)
            for name, rows in state.take_changes().items()
            if rows
        }
        newest = max((e.emitted_at for e in folded), default=0)
        watermark = min(taken_at, newest)
        through = 0  # a rebuild claims only the batches it was given
        while through + 1 in work.acked:
            through += 1
        work.replace(state, self._commit(tables, watermark, stats.events, through))
        EVENTS_FOLDED.inc(len(batch))
        STALE_REJECTED.inc(stats.stale_rejected)
        return self._result(len(batch), stats.stale_rejected, writer, conflicts)

    def _commit(
        self, tables: dict[str, TableFiles], watermark: int, folded: int, through: int
    ) -> Manifest:
        """Publish the next generation naming `tables`."""
        manifest = Manifest(
            generation=self._next_generation(),
            tenant_id=self.tenant_id,
            workspace_id=self.workspace_id,
            tables=tables,
            last_processed_at=watermark,
            events_folded=folded,
            published_at=self._clock(),
            writer_id=self.writer_id,
            ledger_through=through,
        )
        self._publish(manifest)
        for name, files in manifest.tables.items():
            L0_FILES.labels(table=name).set(len(files.deltas))
        return manifest

    def _result(
        self, events: int, stale: int, writer: GenerationWriter, conflicts: int
    ) -> CompactionResult:
        manifest = self._work.manifest
        assert manifest is not None  # just published
        written = tuple(writer.written)
        return CompactionResult(manifest, events, stale, written, writer.bytes_written, conflicts)

    def _publish(self, manifest: Manifest) -> None:
        """Publish `manifest` (a seam for tests that simulate a crash before it)."""
        self.manifests.publish(manifest)
