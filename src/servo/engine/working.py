"""The compactor's working state: the fold, ahead of the last published manifest.

`WorkingState` holds the `EngineState` as of a manifest plus everything folded since:
the events (so they can be folded again on top of another writer's state) and the rows
they changed (what the next publish writes as deltas). It only reads: the manifest
and the tables a manifest names, never the ledger.

Invariant: ``state == fold(hot tables of manifest) + fold(pending events)``; runs
archived by the manifest are not loaded (`servo.engine.history`). Whenever that
may not hold (a failed fold, a lost publish, an unknown error) the state is reset; the
next use reloads the latest published snapshot and re-folds the pending events, so
an event once folded is never lost before it is published.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from servo.engine.archived import ArchivedRuns
from servo.engine.events import Event
from servo.engine.fold import EngineState, FoldStats
from servo.engine.manifest import Manifest, ManifestStore
from servo.engine.schema import HISTORY_OF, LATEST, RUN_TABLES, TABLES, TableSpec
from servo.engine.snapshot import Snapshot
from servo.storage.base import ObjectStore


class WorkingState:
    """The state of one (tenant, workspace) as of `manifest` plus pending folds.

    Args:
        store: the object store holding the projections.
        manifests: the manifests of the (tenant, workspace).
    """

    def __init__(self, store: ObjectStore, manifests: ManifestStore) -> None:
        self._store = store
        self._manifests = manifests
        #: The manifest the state extends (None: generation 0, or not loaded yet).
        self.manifest: Manifest | None = None
        self._state: EngineState | None = None
        #: Events folded since `manifest`, in folding order.
        self.events: list[Event] = []
        #: Events among them that the fold rejected as stale.
        self.stale = 0
        self._rows: dict[str, list[list[Any]]] = {}
        #: Numbered ledger batches whose events are all folded and that `manifest`
        #: does not count yet (its `ledger_through` stops below them).
        self.acked: set[int] = set()
        #: Runs kept in the hot state after they end (`Compactor.retain`): restored
        #: on a reload if another writer archived them meanwhile.
        self.retained: set[str] = set()
        #: The snapshot of `manifest`, where archived runs are restored from.
        self._snapshot = Snapshot(store, None)

    @property
    def loaded(self) -> bool:
        """Whether the state is in memory (False after a reset)."""
        return self._state is not None

    @property
    def has_changes(self) -> bool:
        """Whether any row changed since `manifest`."""
        return bool(self._rows)

    def state(self) -> EngineState:
        """The state, reloading the latest snapshot and re-folding after a reset."""
        if self._state is not None:
            return self._state
        manifest = self._manifests.latest()
        snapshot = Snapshot(self._store, manifest)
        state = EngineState.from_rows(
            self._manifests.tenant_id,
            self._manifests.workspace_id,
            {spec.name: snapshot.hot_rows(spec.name) for spec in TABLES},
            latest=snapshot.hot_rows(LATEST.name),
            archived=ArchivedRuns(lambda: archived_runs(snapshot)),
        )
        self._rows = {}
        self._snapshot = snapshot
        self._apply(state, self.events)  # restores retained runs another writer archived
        self._collect(state)
        self.manifest, self._state = manifest, state
        return state

    def _apply(self, state: EngineState, events: Sequence[Event]) -> FoldStats:
        """Fold `events`, first restoring the archived runs they name (ADR 0022)."""
        hot = state.tables["runs"]
        named = {e.run_id for e in events if (e.run_id,) not in hot}
        named.update(run_id for run_id in self.retained if (run_id,) not in hot)
        back = [run_id for run_id in named if run_id in state.archived]
        if back:
            state.restore_runs(archived_rows(self._snapshot, back))
        return state.apply(events) if events else FoldStats()

    def restore(self, run_id: str) -> bool:
        """Bring the archived run `run_id` back to the hot state; False if it is not
        archived (hot already, or unknown)."""
        state = self.state()
        if (run_id,) in state.tables["runs"] or run_id not in state.archived:
            return False
        state.restore_runs(archived_rows(self._snapshot, [run_id]))
        self._collect(state)
        return True

    def reset(self) -> None:
        """Forget the state (keep the pending events): the next use reloads."""
        self._state = None

    def fold(self, events: Sequence[Event]) -> FoldStats:
        """Fold `events`; on any error the state is reset and `events` are dropped."""
        state = self.state()
        try:
            stats = self._apply(state, events)
        except BaseException:
            self.reset()
            raise
        self.events.extend(events)
        self.stale += stats.stale_rejected
        self._collect(state)
        return stats

    def forget(self, event_ids: set[str]) -> None:
        """Drop pending events that never became durable; the next use reloads and
        re-folds the others (so nothing that depends on the dropped ones survives)."""
        self.events = [e for e in self.events if e.event_id not in event_ids]
        self.reset()

    def ledger_through(self) -> int:
        """What the next manifest may claim: `manifest.ledger_through` advanced over
        the acknowledged batches that follow it without a gap."""
        through = 0 if self.manifest is None else self.manifest.ledger_through
        while through + 1 in self.acked:
            through += 1
        return through

    def newest_event_at(self) -> int:
        """The newest `emitted_at` among the pending events (0 when none)."""
        return max((e.emitted_at for e in self.events), default=0)

    def changed_rows(self, spec: TableSpec) -> list[Any]:
        """Rows of `spec` changed since `manifest`, one per key (the latest)."""
        chunks = self._rows.get(spec.name, [])
        if len(chunks) <= 1:
            return chunks[0] if chunks else []
        return list({spec.key_of(row): row for chunk in chunks for row in chunk}.values())

    def published(self, manifest: Manifest) -> None:
        """`manifest` now holds everything pending: start afresh from it."""
        self.manifest = manifest
        self._snapshot = Snapshot(self._store, manifest)
        self.events, self.stale, self._rows = [], 0, {}
        self.acked = {seq for seq in self.acked if seq > manifest.ledger_through}

    def replace(self, state: EngineState, manifest: Manifest) -> None:
        """Adopt `state`, whose content `manifest` holds (after a rebuild)."""
        self.published(manifest)
        self._state = state

    def _collect(self, state: EngineState) -> None:
        for name, rows in state.take_changes().items():
            if rows:
                self._rows.setdefault(name, []).append(rows)


def archived_runs(snapshot: Snapshot) -> list[tuple[str, bool]]:
    """(run_id, whether its cancel is recorded) of every run `snapshot` archived."""
    runs = snapshot.hot("history_runs")
    ids = runs.column("run_id").to_pylist()
    cancels = runs.column("cancel_requested_at").is_valid().to_pylist()
    return list(zip(ids, cancels, strict=True))


def archived_rows(snapshot: Snapshot, run_ids: Sequence[str]) -> dict[str, list[Any]]:
    """The rows of archived `run_ids` per run table, from `snapshot`'s history twins."""
    wanted = pa.array(list(run_ids), type=pa.string())
    rows: dict[str, list[Any]] = {}
    for spec in RUN_TABLES:
        history = snapshot.hot(HISTORY_OF[spec.name].name)
        found = history.filter(pc.is_in(history.column("run_id"), value_set=wanted))
        rows[spec.name] = spec.from_arrow(found)
    return rows
