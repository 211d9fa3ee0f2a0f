"""The change feed of the folded state: which rows changed since a reader last looked.

Every row the fold creates or changes is announced once, by table and key, to each
reader that follows the state (`EngineState.follow`). The publisher reads it to write
only changed rows as projection deltas; the reconcile step reads it to run the
controllers only on tasks that may need an action. One feed, many readers, each
with its own position: a reader that takes its changes does not take another's.
"""

from __future__ import annotations

from typing import Any

from servo.engine import schema as s

Key = tuple[Any, ...]


class ChangeFeed:
    """Keys of the rows changed since the last `take`, per table, for one reader."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: dict[str, dict[Key, None]] = {t.name: {} for t in s.TABLES}

    def add(self, table: str, key: Key) -> None:
        self._keys[table][key] = None

    def discard(self, table: str, keys: list[Key]) -> None:
        """Forget changes of rows that left the state (an archived run's)."""
        found = self._keys[table]
        for key in keys:
            found.pop(key, None)

    def take(self) -> dict[str, list[Key]]:
        """The changed keys per table (only tables with changes), first change first."""
        taken = {}
        for name, keys in self._keys.items():
            if keys:
                taken[name] = list(keys)
                keys.clear()
        return taken
