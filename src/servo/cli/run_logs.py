"""``servo runs logs RUN_ID [ASSET] [--attempt N] [--follow]``: what attempts printed.

Shows the output captured per attempt (``context.log`` records, stdout, stderr; see
`servo.worker.capture`) from the home. Without ASSET, every asset's attempts in
plan order; each attempt under a ``==> asset (attempt N, status) <==`` header
(without the status when following).
``--attempt N`` prints that attempt's output alone, without a header. ``--follow``
keeps polling the home and prints output as attempts write it, until the run ends.
``--json`` prints ``{"run_id", "logs": [{"asset", "attempt", "status", "text"}]}``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from servo.cli.options import ConfigOption, HomeOption, JsonOption, TenantOption, state_of
from servo.cli.run_detail import RunDetail, load_detail
from servo.cli.run_show import attempt_status
from servo.engine.ids import DEFAULT_WORKSPACE
from servo.engine.vocabulary import RunStatus
from servo.errors import ServoError
from servo.worker.attempt_logs import AttemptLogKey, read_log

if TYPE_CHECKING:
    from servo.engine.schema import AttemptRow
    from servo.storage.base import ObjectStore

#: Seconds between polls of ``--follow``.
FOLLOW_POLL_S = 0.5


def _header(task_key: str, attempt: AttemptRow, *, status: bool = True) -> str:
    state = f", {attempt_status(attempt)}" if status else ""  # following: it changes
    return f"==> {task_key} (attempt {attempt.attempt}{state}) <==\n"


def _selected(
    detail: RunDetail, asset: str | None, attempt: int | None
) -> Iterator[tuple[str, AttemptRow]]:
    for task in detail.tasks:
        if asset is not None and task.task_key != asset:
            continue
        for row in detail.attempts.get(task.task_key, []):
            if attempt is None or row.attempt == attempt:
                yield task.task_key, row


def _check(detail: RunDetail, asset: str | None, attempt: int | None) -> None:
    from servo.graph.suggest import did_you_mean

    run_id = detail.run.run_id
    if asset is None:
        if attempt is not None:
            raise ServoError("--attempt needs an ASSET: servo runs logs RUN_ID ASSET --attempt N")
        return
    keys = [t.task_key for t in detail.tasks]
    if asset not in keys:
        hint = did_you_mean(asset, keys) or f"; its assets: {', '.join(keys)}"
        raise ServoError(f"run {run_id} has no asset {asset!r}{hint}")
    numbers = [a.attempt for a in detail.attempts.get(asset, [])]
    if attempt is not None and attempt not in numbers:
        made = f"attempts {', '.join(map(str, numbers))}" if numbers else "no attempt yet"
        raise ServoError(
            f"asset {asset!r} of run {run_id} has {made}; there is no attempt {attempt}"
        )


def _key(detail: RunDetail, tenant: str, task_key: str, attempt: int) -> AttemptLogKey:
    return AttemptLogKey(tenant, DEFAULT_WORKSPACE, detail.run.run_id, task_key, attempt)


def _print_all(
    store: ObjectStore, tenant: str, detail: RunDetail, asset: str | None, attempt: int | None
) -> None:
    for task_key, row in _selected(detail, asset, attempt):
        text = read_log(store, _key(detail, tenant, task_key, row.attempt)).text
        if attempt is None:
            sys.stdout.write(_header(task_key, row))
            text = text or "(no output)\n"
        sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _write_json(
    store: ObjectStore, tenant: str, detail: RunDetail, asset: str | None, attempt: int | None
) -> None:
    from servo.cli import render

    logs = [
        {
            "asset": task_key,
            "attempt": row.attempt,
            "status": attempt_status(row),
            "text": read_log(store, _key(detail, tenant, task_key, row.attempt)).text,
        }
        for task_key, row in _selected(detail, asset, attempt)
    ]
    render.write_json({"run_id": detail.run.run_id, "logs": logs})


def _follow(
    store: ObjectStore, tenant: str, run_id: str, asset: str | None, attempt: int | None
) -> None:
    next_seq: dict[tuple[str, int], int] = {}
    shown: tuple[str, int] | None = None
    at_line_start = True
    while True:
        detail = load_detail(store, tenant, run_id)
        ended = detail.run.status != RunStatus.RUNNING
        for task_key, row in _selected(detail, asset, attempt):
            where = (task_key, row.attempt)
            found = read_log(store, _key(detail, tenant, *where), next_seq.get(where, 0))
            next_seq[where] = found.next_seq
            if not found.text:
                continue
            if where != shown and attempt is None:
                head = _header(task_key, row, status=False)
                sys.stdout.write(("" if at_line_start else "\n") + head)
            shown = where
            sys.stdout.write(found.text)
            at_line_start = found.text.endswith("\n")
        sys.stdout.flush()
        if ended:  # attempts write their last chunk before they report their end
            if not at_line_start:
                sys.stdout.write("\n")
            return
        time.sleep(FOLLOW_POLL_S)


def show_logs(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID")],
    asset: Annotated[
        str | None, typer.Argument(metavar="[ASSET]", help="Only this asset (default: all).")
    ] = None,
    attempt: Annotated[
        int | None, typer.Option("--attempt", min=1, help="Only this attempt of ASSET.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print new output until the run ends.")
    ] = False,
    home: HomeOption = None,
    tenant: TenantOption = "default",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what a run's attempts logged and printed, per asset and attempt."""
    from servo.cli._session import configure, with_home
    from servo.storage.factory import open_store

    settings = with_home(configure(state_of(ctx)), home)
    store = open_store(settings.storage, settings.home)
    detail = load_detail(store, tenant, run_id)
    _check(detail, asset, attempt)
    if as_json:
        if follow:
            raise typer.BadParameter("--follow prints text as it comes; drop --json")
        _write_json(store, tenant, detail, asset, attempt)
    elif follow:
        _follow(store, tenant, run_id, asset, attempt)
    else:
        _print_all(store, tenant, detail, asset, attempt)
