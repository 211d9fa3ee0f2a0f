"""Archiving ended runs: the hot state stays the size of the active work (ADR 0022).

Every table of runs (`servo.engine.schema.RUN_TABLES`) has a history twin
(``history_{table}``). At a publish, the compactor moves the runs that are over out
of the hot state and its tables into the twins:

- **Which runs.** A run whose status is final, that no dispatch still waits on (no
  outbox row PENDING or ENQUEUED), and that its caller does not retain (the embedded
  runner retains the runs it drove, so they stay readable from its state until it
  closes; the next runner archives them).
- **Final record.** Once archived, a run's rows never change: the fold ignores the
  events that still name it (`FoldStats.archived_ignored`).
- **History files** are written in tiers, never rewritten whole: each archive adds a
  tier-0 file; `fanout` consecutive files of one tier merge into one file of the next.
  A row is rewritten O(log_fanout(runs)) times over the life of a home and a manifest
  names at most ``fanout - 1`` files per tier.
- **Hot tables** that lost rows are written as a new base of what stays (deltas
  cannot delete), so their size follows the active work, not the history.
- **What later runs need** survives in `latest_materializations`: per asset and
  partition, the newest successful output among archived runs (an argmax over final
  rows, so the order of archiving does not matter). A new run's plan pins inputs from
  it and the hot tasks.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from servo.engine import schema as s
from servo.engine.fold import EngineState
from servo.engine.layout import GenerationWriter
from servo.engine.manifest import EMPTY_TABLE, TableFiles
from servo.observability import metrics

RUNS_ARCHIVED = metrics.counter(
    "servo_runs_archived_total", "Ended runs moved out of the hot state into history tables."
)

#: History file names end in ``-h{tier}.parquet``.
_TIER = re.compile(r"-h(\d+)\.parquet$")

_OPEN_OUTBOX = frozenset({s.OUTBOX_PENDING, s.OUTBOX_ENQUEUED})


def archivable(state: EngineState, retained: Collection[str]) -> list[str]:
    """The hot runs that may be archived now (see the module docstring)."""
    open_runs = {row.run_id for row in state.rows("dispatch_outbox") if row.status in _OPEN_OUTBOX}
    return sorted(
        run.run_id
        for run in state.rows("runs")
        if run.request_event_id
        and run.status != s.RUN_RUNNING
        and run.run_id not in retained
        and run.run_id not in open_runs
    )


def tier_of(path: str) -> int:
    """The tier of a history file (0 for any other name)."""
    found = _TIER.search(path)
    return 0 if found is None else int(found.group(1))


def newer_latest(state: EngineState, tasks: Iterable[s.TaskRow]) -> list[s.LatestRow]:
    """Fold the archived `tasks`' successful outputs into `state.latest`; returns the
    rows that changed."""
    changed: dict[tuple[str, str], s.LatestRow] = {}
    for task in tasks:
        if task.status != s.SUCCEEDED or not task.output_location or not task.output_format:
            continue
        key = (task.asset_key, task.partition_key or "")
        finished = task.finished_at or 0
        seen = state.latest.get(key)
        if seen is not None and (seen.finished_at, seen.run_id, seen.task_key) >= (
            finished,
            task.run_id,
            task.task_key,
        ):
            continue
        row = s.LatestRow(
            asset_key=key[0],
            partition_key=key[1],
            run_id=task.run_id,
            task_key=task.task_key,
            finished_at=finished,
            output_location=task.output_location,
            output_format=task.output_format,
        )
        state.latest[key] = changed[key] = row
    return list(changed.values())


class HistoryWriter:
    """What one publish writes to archive runs.

    Args:
        writer: the publish's file writer.
        fanout: files of one tier merged into one of the next (at least 2).
    """

    def __init__(self, writer: GenerationWriter, fanout: int) -> None:
        self._writer = writer
        self._fanout = max(2, fanout)  # one file per tier would merge forever

    def archive(
        self,
        state: EngineState,
        run_ids: Collection[str],
        tables: Mapping[str, TableFiles],
    ) -> dict[str, TableFiles]:
        """Remove `run_ids` from `state`; returns the files of every table this
        changed (hot bases, history tiers, latest materializations)."""
        removed = state.remove_runs(run_ids)
        files: dict[str, TableFiles] = {}
        for spec in s.RUN_TABLES:
            rows = removed[spec.name]
            if not rows:
                continue
            history = s.HISTORY_OF[spec.name]
            files[history.name] = self._add_tier(
                history, tables.get(history.name, EMPTY_TABLE), rows
            )
            files[spec.name] = self._writer.add_base(spec, list(state.rows(spec.name)))
        if newer_latest(state, removed["tasks"]):
            files[s.LATEST.name] = self._writer.add_base(s.LATEST, list(state.latest.values()))
        RUNS_ARCHIVED.inc(len(run_ids))
        return files

    def _add_tier(self, spec: s.TableSpec, files: TableFiles, rows: list[Any]) -> TableFiles:
        deltas = [*files.deltas, self._writer.add_rows(spec, "h0", rows)]
        tier = 0
        while True:
            tail = [p for p in deltas[-self._fanout :] if tier_of(p) == tier]
            if len(tail) < self._fanout:
                return TableFiles(files.base, tuple(deltas))
            merged = self._writer.add_merged(spec, f"h{tier + 1}", tail)
            deltas = [*deltas[: -self._fanout], merged]
            tier += 1
