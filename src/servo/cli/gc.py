"""``servo gc``: remove the stored values of old runs (`servo.maintenance.gc`).

``--keep-runs N`` keeps the newest N runs of each tenant, ``--older-than DAYS``
keeps runs requested in the last DAYS days (``--as-of`` moves "now"); a value
outside both is removed unless an unfinished or retained run pins it or it is the
latest materialization of its asset. ``--dry-run`` prints what would be removed
and removes nothing. Every collection writes ``gc/{id}.json`` in the home first.
It also removes temporary files that interrupted writes left in a home on disk
(those of dead processes, and any older than an hour).
Exit codes: 0, 2 for usage, configuration and home errors, 75 when another process
holds the home lock (`servo.engine.home_lock`; a dry run takes no lock).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from servo.cli._session import configure, with_home
from servo.cli.options import ConfigOption, HomeOption, JsonOption, state_of


def gc(
    ctx: typer.Context,
    home: HomeOption = None,
    keep_runs: Annotated[
        int | None,
        typer.Option("--keep-runs", min=0, help="Keep the values of the newest N runs."),
    ] = None,
    older_than: Annotated[
        float | None,
        typer.Option("--older-than", min=0, help="Remove values of runs older than DAYS days."),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Measure --older-than from this ISO 8601 time instead of now.",
            show_default=False,
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant", envvar="SERVO_TENANT", help="Only this tenant (default: every tenant)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be removed; remove nothing.")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove stored values of old runs that nothing needs any more."""
    from servo.engine.home_lock import HomeLock
    from servo.maintenance.gc import Retention, collect, plan_gc
    from servo.storage.factory import open_store
    from servo.storage.home import check_home
    from servo.storage.local import LocalObjectStore

    settings = with_home(configure(state_of(ctx)), home)
    if not dry_run:
        check_home(settings.home, write=True)
    options: dict[str, Any] = {"keep_runs": keep_runs, "older_than_days": older_than}
    if as_of is not None:
        options["as_of"] = _epoch_us(as_of)
    retention = Retention(**options)
    store = open_store(settings.storage, settings.home)
    temporary: list[str] = []
    if dry_run:
        plan, record = plan_gc(store, retention, tenant), None
    else:  # no run may pin a value between the plan and the removal
        with HomeLock(settings.home, "servo gc"):
            plan = plan_gc(store, retention, tenant)
            record = collect(store, plan)
            if isinstance(store, LocalObjectStore):
                temporary = store.collect_temporary_files()
    if as_json:
        from servo.cli.render import write_json

        write_json(
            {**plan.to_json(), "dry_run": dry_run, "record": record, "temporary_files": temporary}
        )
        return
    verb = "would remove" if dry_run else "removed"
    for value in plan.remove:
        typer.echo(f"{verb} {value.path} ({value.size} bytes, run {value.run_id})")
    kept = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in plan.kept.items())
    typer.echo(
        f"{verb} {len(plan.remove)} value(s), {plan.bytes} bytes, of {len(plan.runs)} run(s) "
        f"outside the retention; kept {sum(plan.kept.values())}" + (f" ({kept})" if kept else "")
    )
    if record is not None:
        typer.echo(f"record: {record}")
    if temporary:
        typer.echo(f"removed {len(temporary)} temporary file(s) left by interrupted writes")


def _epoch_us(text: str) -> int:
    from datetime import UTC

    from servo.errors import ConfigError

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(
            f"--as-of {text!r}: not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)
