"""``servo runs show RUN_ID [--errors] [--json]``: one run, asset by asset, every attempt.

Assets are listed in plan order; under each, every attempt with its status,
duration, and error type and message. The text fits 80 columns: long messages are
cut to one line, and ``--errors`` prints them whole with each failed attempt's
traceback. ``--json`` always holds everything, times as ISO 8601 UTC strings.
"""

from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING, Annotated, Any

import typer

from servo.cli.options import ConfigOption, HomeOption, JsonOption, TenantOption, state_of
from servo.cli.render import iso_time
from servo.cli.run_detail import RunDetail, load_detail
from servo.engine.vocabulary import AbandonReason, TaskStatus

if TYPE_CHECKING:
    from servo.engine.schema import AttemptRow, TaskRow

#: Columns the text output fits in.
WIDTH = 80
#: Lines of an error message shown without ``--errors``.
MESSAGE_LINES = 3
_ABANDONED: dict[str, str] = {
    AbandonReason.TIMEOUT: "timed out",
    AbandonReason.CANCELLED: "cancelled",
    AbandonReason.HEARTBEAT_MISSED: "lost",
    AbandonReason.WORKER_LOST: "lost",
    AbandonReason.POOL_LOST: "pool lost",
}


def attempt_status(attempt: AttemptRow) -> str:
    """What became of one attempt: running, succeeded, failed, timed out, ..."""
    if attempt.end_event_id is None:
        return "running" if attempt.started_at is not None else "dispatched"
    if attempt.outcome == "succeeded":
        return "succeeded"
    if attempt.end_kind == "abandoned":
        return _ABANDONED.get(attempt.error_type or "", "abandoned")
    return "failed"


def attempt_seconds(attempt: AttemptRow) -> float | None:
    """The attempt's duration: as its worker measured it, else from its events."""
    if attempt.duration_s is not None:
        return attempt.duration_s
    if attempt.end_at is not None and attempt.started_at is not None:
        return max(0, attempt.end_at - attempt.started_at) / 1e6
    return None


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.3f}s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}m{seconds:02d}s"


def _wrap(text: str, indent: int = 0, max_lines: int | None = None, first: str = "") -> list[str]:
    """`first` + `text` on lines of at most `WIDTH` columns, later lines indented."""
    lines = textwrap.wrap(
        " ".join(text.split()),
        WIDTH,
        initial_indent=first,
        subsequent_indent=" " * indent,
        break_on_hyphens=False,
    ) or [first.rstrip()]
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: WIDTH - 1] + "…"
    return lines


def _when(us: int) -> str:
    return (iso_time(us) or "")[:19].replace("T", " ") + " UTC"


def _error(attempt: AttemptRow) -> str:
    if attempt.error_type is None:
        return ""
    return (
        f"{attempt.error_type}: {attempt.error_message}"
        if attempt.error_message
        else (attempt.error_type)
    )


def _asset_lines(task: TaskRow, attempts: list[AttemptRow]) -> list[str]:
    status = task.status.lower().replace("_", " ")
    extras = []
    if len(attempts) > 1:
        extras.append(f"{len(attempts)} attempts")
    if task.status == TaskStatus.SUCCEEDED and task.output_rows is not None:
        extras.append(f"{task.output_rows} rows")
    if task.status == TaskStatus.SKIPPED:
        extras.append("an upstream asset did not succeed")
    suffix = f" ({', '.join(extras)})" if extras else ""
    return _wrap(f"{task.task_key}: {status}{suffix}", indent=2)


def _attempt_lines(attempt: AttemptRow, errors: bool) -> list[str]:
    head = f"  #{attempt.attempt:<3} {attempt_status(attempt):<10} "
    head += f"{_seconds(attempt_seconds(attempt)):>9}  "
    error = _error(attempt)
    if not error:
        return [head.rstrip()]
    if errors and attempt.error_traceback:  # the traceback ends with the whole message
        first = _wrap(error, len(head), max_lines=1, first=head)
        traceback = attempt.error_traceback.rstrip().splitlines()
        return first + [f"      {line}" for line in traceback]
    return _wrap(error, len(head), max_lines=None if errors else MESSAGE_LINES, first=head)


def render_text(detail: RunDetail, *, errors: bool) -> str:
    """The run as text (see the module docstring)."""
    run = detail.run
    lines = [f"run {run.run_id}: {run.status.lower()}"]
    times = f"requested {_when(run.requested_at)}"
    if run.completed_at is not None:
        seconds = max(0, run.completed_at - run.requested_at) / 1e6
        times += f", took {_seconds(seconds)}"
    lines += [times, ""]
    failed: list[str] = []
    for task in detail.tasks:
        attempts = detail.attempts.get(task.task_key, [])
        lines.extend(_asset_lines(task, attempts))
        for attempt in attempts:
            lines.extend(_attempt_lines(attempt, errors))
        if any(a.error_type and a.outcome != "succeeded" for a in attempts):
            failed.append(task.task_key)
    if failed:
        lines.append("")
        if not errors:
            lines.extend(_wrap(f"errors in full: servo runs show {run.run_id} --errors", 4))
        lines.extend(_wrap(f"their output:   servo runs logs {run.run_id} {failed[0]}", 4))
    return "\n".join(lines) + "\n"


def _attempt_payload(attempt: AttemptRow) -> dict[str, Any]:
    error = None
    if attempt.error_type is not None:
        error = {
            "type": attempt.error_type,
            "message": attempt.error_message,
            "traceback": attempt.error_traceback,
        }
    output = None
    if attempt.output_location is not None:
        output = {
            "location": attempt.output_location,
            "format": attempt.output_format,
            "size_bytes": attempt.output_size,
            "rows": attempt.output_rows,
        }
    return {
        "attempt": attempt.attempt,
        "attempt_id": attempt.attempt_id,
        "status": attempt_status(attempt),
        "worker_id": attempt.worker_id,
        "started_at": iso_time(attempt.started_at),
        "ended_at": iso_time(attempt.end_at),
        "duration_s": attempt_seconds(attempt),
        "error": error,
        "output": output,
    }


def assets_payload(detail: RunDetail) -> list[dict[str, Any]]:
    """``[{"asset", "status", "attempts": [...]}]`` in plan order, for ``--json``."""
    return [
        {
            "asset": task.task_key,
            "status": task.status.lower(),
            "attempts": [_attempt_payload(a) for a in detail.attempts.get(task.task_key, [])],
        }
        for task in detail.tasks
    ]


def show_run(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID")],
    home: HomeOption = None,
    tenant: TenantOption = "default",
    errors: Annotated[
        bool, typer.Option("--errors", help="Print whole error messages and tracebacks.")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one run: each asset in plan order with every attempt and its error."""
    from servo.cli import render, runs
    from servo.cli._session import catalog_configured, configure, with_home
    from servo.storage.factory import open_store

    settings = with_home(configure(state_of(ctx)), home)
    store = open_store(settings.storage, settings.home)
    if catalog_configured(settings):
        run, tasks = runs._catalog_run(settings, tenant, run_id)
        detail = load_detail(store, tenant, run_id, run, tasks)
    else:
        detail = load_detail(store, tenant, run_id)
    if as_json:
        payload = runs.run_payload(detail.run, detail.tasks)
        payload["assets"] = assets_payload(detail)
        render.write_json(payload)
    else:
        sys.stdout.write(render_text(detail, errors=errors))
