"""Fold then publish in one call, for tests that only need events published.

Servo's own callers fold and publish apart (the runner folds every step and
publishes on an interval; maintenance rebuilds), so the compactor offers no
one-call verb; tests that set up projections use these instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from servo.engine.compactor import CompactionResult, Compactor
from servo.engine.events import Event
from servo.engine.ledger import LedgerReader
from servo.storage.base import ObjectStore


def compact_events(
    compactor: Compactor,
    events: Iterable[Event],
    *,
    taken_at: int | None = None,
    paths: Sequence[str] = (),
) -> CompactionResult:
    """Fold `events` (the events of the ledger objects `paths`, if given) and publish."""
    compactor.fold(events, paths=paths)
    return compactor.publish(taken_at=taken_at)


def compact_paths(
    compactor: Compactor,
    store: ObjectStore,
    paths: Sequence[str],
    *,
    taken_at: int | None = None,
) -> CompactionResult:
    """Fold the events of the ledger objects `paths` (acknowledging them) and publish."""
    events = LedgerReader(store).read_many(paths)
    return compact_events(compactor, events, taken_at=taken_at, paths=paths)
