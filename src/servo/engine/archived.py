"""Which runs were archived out of the hot state (ADR 0022).

A run that is over leaves the hot projection tables for their history twins. Events
that still arrive for it (a late report, a cancel written after it ended) bring it
back: the compactor restores its rows from the history before folding them
(`servo.engine.working`), and the next publish archives it again, so the published
tables stay a fold of the whole ledger. Deciding that needs the ids of archived runs
(and whether their cancel request is recorded, so recovery does not read it again):
one short row per run, read from `history_runs` only when an event names a run the
hot state does not hold, so a state with only active runs never pays for the history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

#: (run_id, whether its cancel request is recorded)
ArchivedRun = tuple[str, bool]


class ArchivedRuns:
    """The archived runs, loaded by `load` on first use.

    Args:
        load: returns the runs archived as of the state's manifest; None: none.
    """

    __slots__ = ("_load", "_runs")

    def __init__(self, load: Callable[[], Iterable[ArchivedRun]] | None = None) -> None:
        self._load = load
        self._runs: dict[str, bool] | None = None if load is not None else {}

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._loaded()

    def has_cancel(self, run_id: str) -> bool:
        """Whether the archived run `run_id` has its cancel request recorded."""
        return self._loaded().get(run_id, False)

    def add(self, runs: Iterable[ArchivedRun]) -> None:
        """Record runs archived since the manifest `load` reads."""
        self._loaded().update(runs)

    def discard(self, run_ids: Iterable[str]) -> None:
        """Forget runs brought back to the hot state."""
        loaded = self._loaded()
        for run_id in run_ids:
            loaded.pop(run_id, None)

    def _loaded(self) -> dict[str, bool]:
        if self._runs is None:
            assert self._load is not None
            self._runs = dict(self._load())
        return self._runs
