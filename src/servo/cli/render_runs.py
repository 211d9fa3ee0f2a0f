"""Output of the run commands: progress bar, run summary tables, JSON."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from servo.engine.schema import TERMINAL_TASK_STATUSES, RunRow, TaskRow
from servo.engine.vocabulary import TaskStatus

if TYPE_CHECKING:  # rich is imported where something is drawn: not for --json
    from rich.progress import Progress as RichProgress


def write_json(payload: Mapping[str, Any]) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


def _when(us: int | None) -> str:
    if us is None:
        return "-"
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%m-%d %H:%M:%S")


class Progress:
    """A live bar on stderr: done / running / failed / skipped."""

    def __init__(self, *, enabled: bool, resumed: bool) -> None:
        self._enabled = enabled
        self._resumed = resumed
        self._bar: RichProgress | None = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self._enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.__enter__()
            label = "resuming" if self._resumed else "materializing"
            self._task = self._bar.add_task(label, total=None, detail="")
        return self

    def update(self, run: RunRow, counts: Mapping[str, int]) -> None:
        if self._bar is None:
            return
        count = Counter(counts)
        running = count[TaskStatus.RUNNING] + count[TaskStatus.DISPATCHED]
        retrying = count[TaskStatus.RETRY_WAIT]
        detail = (
            f"running {running}  "
            + (f"retrying {retrying}  " if retrying else "")
            + f"failed {count[TaskStatus.FAILED]}  skipped {count[TaskStatus.SKIPPED]}"
        )
        done = sum(count[st] for st in TERMINAL_TASK_STATUSES)
        total = sum(count.values())
        self._bar.update(self._task, total=total, completed=done, detail=detail)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def print_run(run: RunRow, tasks: list[TaskRow], where: str = "") -> None:
    """The run's header, one row per asset, and where to look when any failed.

    `where` is appended to the suggested commands (e.g. ``" --home DIR"``).
    """
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"run [bold]{run.run_id}[/bold]: {run.status.lower()}")
    table = Table("asset", "status", "attempts", "seconds", "rows")
    table.columns[0].overflow = "fold"  # a long asset name wraps, never loses its end
    for task in tasks:
        seconds = (
            f"{(task.finished_at - task.started_at) / 1e6:.3f}"
            if task.finished_at and task.started_at
            else "-"
        )
        rows = "-" if task.output_rows is None else str(task.output_rows)
        table.add_row(task.task_key, task.status.lower(), str(task.attempt), seconds, rows)
    console.print(table)
    for task in tasks:
        if task.error_type and task.status != TaskStatus.SUCCEEDED:
            console.print(
                f"{task.task_key} {task.status.lower()}: {task.error_type}: {task.error_message}",
                overflow="fold",
                markup=False,
                highlight=False,
            )
    failed = [task.task_key for task in tasks if task.status == TaskStatus.FAILED]
    if failed:
        for line in (
            f"errors in full: servo runs show {run.run_id} --errors{where}",
            f"their output:   servo runs logs {run.run_id} {failed[0]}{where}",
        ):
            console.print(line, overflow="fold", markup=False, highlight=False)


def run_summary(run: RunRow) -> dict[str, Any]:
    """One run for ``runs list --json``."""
    from servo.cli.render import time_fields

    return {
        "run_id": run.run_id,
        "status": run.status.lower(),
        "tasks": run.n_tasks,
        "succeeded": run.n_succeeded,
        "failed": run.n_failed,
        "skipped": run.n_skipped,
        **time_fields("requested_at", run.requested_at),
        **time_fields("completed_at", run.completed_at),
    }


def print_runs(runs: list[RunRow]) -> None:
    """A table of runs."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("run", no_wrap=True, min_width=26)
    for column in ("status", "tasks", "ok", "fail", "skip", "requested UTC"):
        table.add_column(column, no_wrap=True)
    for run in runs:
        table.add_row(run.run_id, run.status.lower(), str(run.n_tasks), str(run.n_succeeded),
                      str(run.n_failed), str(run.n_skipped), _when(run.requested_at))  # fmt: skip
    Console().print(table)
