"""Replay the whole ledger into a fresh state, and compare it with the projections.

The projections are a cache of the ledger: folding every ledger object of a (tenant,
workspace) into an empty `EngineState` must give, table by table, exactly the rows
the newest manifest publishes (the fold is idempotent and order-insensitive, so the
order of objects does not matter). `replay_ledger` does the fold, `compare` the
comparison, and `replay_and_compare` both; ``servo doctor`` uses them to check a
home and to decide whether the projections must be rebuilt.

This module lists the ledger (like recovery and anti-entropy): it is for admin
tools, never for the engine's correctness path.

Objects that cannot be read are not fatal here: they are returned, with the runs
they seem to touch (from their path, ``runs/{run_id}/...``, or from the ``run_id``
fields still legible in their bytes), so a caller can report and quarantine them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from servo.engine.damage import REPAIR_HINT
from servo.engine.events import Event
from servo.engine.fold import EngineState
from servo.engine.ids import DEFAULT_WORKSPACE
from servo.engine.ledger import LedgerReader, ledger_prefix
from servo.engine.projections import rows_to_table
from servo.engine.schema import TABLES, TableSpec
from servo.engine.snapshot import Snapshot, SnapshotReader
from servo.errors import CorruptObjectError, ObjectNotFoundError
from servo.storage.base import ObjectStore

#: Keys named per table in a `TableDiff` (the counts are always complete).
SAMPLE_KEYS = 5

_RUN_ID = re.compile(rb'"run_id"\s*:\s*"([A-Za-z0-9_.:=-]{1,200})"')


@dataclass(frozen=True, slots=True)
class UnreadableObject:
    """A ledger object that could not be decoded.

    Attributes:
        path: its store path.
        problem: why (the decoder's message).
        run_ids: runs it seems to touch (best effort: its path and legible bytes).
    """

    path: str
    problem: str
    run_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LedgerReplay:
    """The fold of every readable ledger object of one (tenant, workspace).

    Attributes:
        state: the folded state.
        paths: ledger objects folded, sorted.
        events: events folded.
        unreadable: objects skipped because they could not be decoded.
    """

    state: EngineState
    paths: tuple[str, ...]
    events: int
    unreadable: tuple[UnreadableObject, ...]


@dataclass(frozen=True, slots=True)
class TableDiff:
    """How one projection table differs from the replay.

    Attributes:
        table: the table name.
        missing: keys the replay has and the projections lack.
        extra: keys the projections have and the replay lacks.
        changed: keys in both whose rows differ.
        sample: up to `SAMPLE_KEYS` of those keys, for the report.
        run_ids: runs of the differing rows (tables keyed by run), sorted.
    """

    table: str
    missing: int
    extra: int
    changed: int
    sample: tuple[tuple[object, ...], ...]
    run_ids: tuple[str, ...]

    def describe(self) -> str:
        """One line: ``tasks: 2 missing, 0 extra, 1 changed``."""
        return f"{self.table}: {self.missing} missing, {self.extra} extra, {self.changed} changed"


@dataclass(frozen=True, slots=True)
class ReplayComparison:
    """A replay and how the published projections compare with it.

    Attributes:
        replay: the ledger replay.
        generation: the manifest generation compared (0: nothing published).
        diffs: the tables that differ (empty when the projections equal the replay).
    """

    replay: LedgerReplay
    generation: int
    diffs: tuple[TableDiff, ...]

    @property
    def equal(self) -> bool:
        """Whether every table of the projections equals the replay."""
        return not self.diffs


def run_ids_in(path: str, data: bytes, prefix: str = "") -> tuple[str, ...]:
    """Runs an (unreadable) ledger object seems to touch: its path, then its bytes."""
    found: set[str] = set()
    rest = path[len(prefix) :] if prefix and path.startswith(prefix) else path
    parts = rest.split("/")
    if len(parts) >= 2 and parts[0] == "runs":
        found.add(parts[1])
    found.update(match.decode("ascii") for match in _RUN_ID.findall(data))
    return tuple(sorted(found))


def ledger_paths(store: ObjectStore, tenant_id: str, workspace_id: str) -> list[str]:
    """Every ledger object of the (tenant, workspace), sorted (lists the store)."""
    return list(store.list_prefix(ledger_prefix(tenant_id, workspace_id)))


def replay_ledger(
    store: ObjectStore,
    tenant_id: str,
    workspace_id: str,
    paths: Sequence[str] | None = None,
) -> LedgerReplay:
    """Fold every readable ledger object into a fresh state.

    Args:
        store: the object store.
        tenant_id: the tenant.
        workspace_id: the workspace.
        paths: the ledger objects to fold; every object of the scope when None.

    Returns:
        The replay, with the objects that could not be decoded set aside.
    """
    prefix = ledger_prefix(tenant_id, workspace_id)
    chosen = ledger_paths(store, tenant_id, workspace_id) if paths is None else list(paths)
    reader = LedgerReader(store)
    events: list[Event] = []
    read: list[str] = []
    unreadable: list[UnreadableObject] = []
    for path in sorted(chosen):
        try:
            events.extend(reader.read(path))
        except ObjectNotFoundError:
            continue  # removed meanwhile (quarantined): nothing to fold
        except CorruptObjectError as exc:
            data = _raw(store, path)
            problem = str(exc).removesuffix(f"; {REPAIR_HINT}")
            unreadable.append(UnreadableObject(path, problem, run_ids_in(path, data, prefix)))
            continue
        read.append(path)
    state = EngineState(tenant_id, workspace_id)
    stats = state.apply(events)
    state.take_changes()
    return LedgerReplay(state, tuple(read), stats.events, tuple(unreadable))


def compare(snapshot: Snapshot, state: EngineState) -> tuple[TableDiff, ...]:
    """The tables in which `snapshot` differs from `state` (empty: all equal).

    Raises:
        CorruptObjectError: a projection file of the snapshot cannot be read.
    """
    diffs = []
    for spec in TABLES:
        expected = rows_to_table(spec, state.rows(spec.name))
        actual = snapshot.table(spec.name)
        if expected.equals(actual):
            continue
        diffs.append(_diff(spec, expected, actual))
    return tuple(diffs)


def replay_and_compare(
    store: ObjectStore, tenant_id: str, workspace_id: str = DEFAULT_WORKSPACE
) -> ReplayComparison:
    """Replay the ledger and compare the newest published projections with it.

    Raises:
        CorruptObjectError: the newest manifest or one of its files cannot be read.
    """
    replay = replay_ledger(store, tenant_id, workspace_id)
    snapshot = SnapshotReader(store, tenant_id, workspace_id).load()
    return ReplayComparison(replay, snapshot.generation, compare(snapshot, replay.state))


def _raw(store: ObjectStore, path: str) -> bytes:
    try:
        return store.get(path).data
    except ObjectNotFoundError:
        return b""


def _keyed(spec: TableSpec, table: pa.Table) -> dict[tuple[object, ...], object]:
    return {spec.key_of(row): row for row in spec.from_arrow(table)}


def _diff(spec: TableSpec, expected: pa.Table, actual: pa.Table) -> TableDiff:
    want, have = _keyed(spec, expected), _keyed(spec, actual)
    missing = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    changed = [k for k in want if k in have and want[k] != have[k]]
    keys: Iterable[tuple[object, ...]] = [*missing, *extra, *changed]
    keys = list(keys)
    run_ids: set[str] = set()
    if "run_id" in spec.key:
        position = spec.key.index("run_id")
        run_ids = {str(k[position]) for k in keys}
    return TableDiff(
        table=spec.name,
        missing=len(missing),
        extra=len(extra),
        changed=len(changed),
        sample=tuple(keys[:SAMPLE_KEYS]),
        run_ids=tuple(sorted(run_ids)),
    )
