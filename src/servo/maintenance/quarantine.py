"""Quarantine: unreadable objects are moved aside, never deleted.

An object at ``path`` moves to ``quarantine/{stamp}/{path}`` in the same store (so
``{home}/quarantine/{stamp}/ledger/...`` for the local store): its bytes are
copied create-only, then the original is removed. ``stamp`` is the UTC time of
the repair (``20261203T104512123456Z``), one folder per repair. Nothing in the
engine reads under ``quarantine/``, so what was moved stays there for a person to
inspect, or to put back by hand.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from servo.engine.damage import QUARANTINE, new_stamp, set_aside
from servo.engine.events import encode_events
from servo.engine.ledger import batch_seq
from servo.errors import ObjectExistsError, ObjectNotFoundError
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.storage.base import ObjectStore

log = get_logger(__name__)

QUARANTINED = metrics.counter(
    "servo_doctor_quarantined_total", "Unreadable objects servo doctor moved aside.", ["kind"]
)

__all__ = ["QUARANTINE", "Quarantine", "Quarantined", "new_stamp"]


@dataclass(frozen=True, slots=True)
class Quarantined:
    """One object moved aside.

    Attributes:
        path: where it was.
        moved_to: where it is now.
        kind: ``ledger``, ``manifest``, ``projection`` or ``catalog``.
        run_ids: runs it touched (ledger objects), as far as can be told.
    """

    path: str
    moved_to: str
    kind: str
    run_ids: tuple[str, ...] = ()


class Quarantine:
    """Moves objects of one repair to ``quarantine/{stamp}/``.

    Args:
        store: the home's object store.
        stamp: the folder name; a fresh time stamp when None.
    """

    def __init__(self, store: ObjectStore, stamp: str | None = None) -> None:
        self._store = store
        self.stamp = stamp or new_stamp()
        self.moved: list[Quarantined] = []

    @property
    def prefix(self) -> str:
        """``quarantine/{stamp}/``."""
        return f"{QUARANTINE}/{self.stamp}/"

    def move(self, path: str, kind: str, run_ids: tuple[str, ...] = ()) -> Quarantined | None:
        """Move the object at `path` aside; None when it is already gone."""
        try:
            data = self._store.get(path).data
        except ObjectNotFoundError:
            return None
        target = set_aside(self._store, path, data, self.stamp)
        self._store.delete(path)
        if batch_seq(path) is not None:
            # Keep the batch number taken: numbers in use must stay 1..N, or recovery
            # would stop probing here and a writer could reuse the number.
            with contextlib.suppress(ObjectExistsError):
                self._store.put_if_absent(path, encode_events([]))
        moved = Quarantined(path, target, kind, run_ids)
        self.moved.append(moved)
        QUARANTINED.labels(kind).inc()
        log.info("doctor.quarantined", path=path, moved_to=target, kind=kind, run_ids=run_ids)
        return moved

    def move_file(self, home: Path, name: str, kind: str) -> Quarantined | None:
        """Move the file ``home/name`` (outside the store, e.g. the catalog) aside."""
        source = home / name
        if not source.exists():
            return None
        target = home / QUARANTINE / self.stamp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        moved = Quarantined(name, str(target.relative_to(home)), kind)
        self.moved.append(moved)
        QUARANTINED.labels(kind).inc()
        log.info("doctor.quarantined", path=str(source), moved_to=str(target), kind=kind)
        return moved
