"""``servo doctor [--repair | --rebuild]``: check a Servo home, and repair it.

``--rebuild`` rebuilds every scope's projections, and the catalog when there is one,
from the ledger alone even when the home is healthy (disaster recovery; what is
unreadable is quarantined first, as with ``--repair``). Both hold the home lock
(`servo.engine.home_lock`): another process driving runs makes them exit 75.

Exit codes: 0 when the home is healthy (after the repair, with ``--repair``), 1 when
problems were found (or remain), 2 for usage and configuration errors. ``--json``
prints ``{"home", "healthy", "findings": [...], ...}``; with ``--repair`` it adds
``"repair"`` (what was quarantined, rebuilt, and which runs were touched) and
``"after"`` (the check after the repair).

The checks and the repair are `servo.maintenance.doctor` and
`servo.maintenance.repair`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from servo.cli._session import configure, resolve_target
from servo.cli.options import ConfigOption, HomeOption, JsonOption, state_of

if TYPE_CHECKING:
    from servo.maintenance.doctor import DoctorReport
    from servo.maintenance.repair import RepairResult

#: Exit code when problems were found (or remain after a repair).
EXIT_PROBLEMS = 1


def doctor(
    ctx: typer.Context,
    home: HomeOption = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant", envvar="SERVO_TENANT", help="Only this tenant (default: every tenant)."
        ),
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Move unreadable objects to {home}/quarantine/ and rebuild the projections "
            "and the catalog from the ledger.",
        ),
    ] = False,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Rebuild the projections and the catalog from the ledger alone, even "
            "when the home is healthy (disaster recovery); implies --repair.",
        ),
    ] = False,
    defs: Annotated[
        str | None,
        typer.Option(
            "--defs",
            envvar="SERVO_DEFS",
            help="Definitions to register again in a rebuilt catalog (default: "
            "$SERVO_DEFS, else ./definitions.py when present).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check a Servo home (ledger, manifests, projections, catalog); --repair fixes it."""
    from servo.maintenance.doctor import diagnose_home
    from servo.storage.factory import open_store

    settings = configure(state_of(ctx))
    if home is not None:
        settings = settings.model_copy(update={"home": home})
    store = open_store(settings.storage, settings.home)
    writing = repair or rebuild
    lock: AbstractContextManager[object] = nullcontext()
    if writing and Path(settings.home).is_dir():  # a missing home is reported, not made
        from servo.engine.home_lock import HomeLock

        lock = HomeLock(settings.home, f"servo doctor --{'rebuild' if rebuild else 'repair'}")
    with lock:
        report = diagnose_home(settings, store, tenant)
        payload: dict[str, Any] = report.to_json()
        healthy = report.healthy
        if rebuild or (repair and not report.healthy):
            from servo.maintenance.repair import repair_home

            result = repair_home(settings, store, report, _definitions(defs), rebuild=rebuild)
            after = diagnose_home(settings, store, tenant)
            payload["repair"] = result.to_json()
            payload["after"] = after.to_json()
            healthy = after.healthy
            if not as_json:
                _print_report(report, repairing=True)
                _print_repair(result, after)
        elif not as_json:
            _print_report(report, repairing=False)
    if as_json:
        from servo.cli.render import write_json

        write_json(payload)
    if not healthy:
        raise typer.Exit(EXIT_PROBLEMS)


def _definitions(defs: str | None) -> Any:
    """The definitions to register, when named or found; None otherwise."""
    from servo.errors import DefinitionError
    from servo.sdk.loader import load_definitions

    try:
        target = resolve_target(defs)
    except DefinitionError:
        return None
    return load_definitions(target)


def _print_report(report: DoctorReport, *, repairing: bool) -> None:
    runs = report.to_json()["runs"]
    if report.healthy:
        typer.echo(f"home {report.home}: healthy ({len(report.scopes)} scope(s), {runs} run(s))")
        return
    typer.echo(f"home {report.home}: {len(report.findings)} problem(s)")
    for finding in report.findings:
        where = f" [{finding.path}]" if finding.path else ""
        runs_of = f" (runs: {', '.join(finding.run_ids)})" if finding.run_ids else ""
        typer.echo(f"  {finding.kind}: {finding.message}{where}{runs_of}")
    from servo.maintenance.doctor import FindingKind

    unrepairable = {
        FindingKind.HOME_MISSING,
        FindingKind.HOME_UNUSABLE,
        FindingKind.CATALOG_UNWRITABLE,
    }
    if not repairing and any(f.kind not in unrepairable for f in report.findings):
        typer.echo(f"run 'servo doctor --home {report.home} --repair' to repair it")


def _print_repair(result: RepairResult, after: DoctorReport) -> None:
    for moved in result.quarantined:
        runs = f" (runs touched: {', '.join(moved.run_ids)})" if moved.run_ids else ""
        typer.echo(f"quarantined {moved.kind} {moved.path} -> {moved.moved_to}{runs}")
    for tenant, workspace, generation in result.rebuilt_projections:
        typer.echo(
            f"rebuilt the projections of {tenant}/{workspace} from the ledger "
            f"(generation {generation})"
        )
    if result.rebuilt_catalog:
        typer.echo("rebuilt the catalog from the ledger")
    if result.reprojected_catalog:
        typer.echo("projected the rebuilt projections into the catalog")
    for note in result.notes:
        typer.echo(f"note: {note}")
    if result.runs_touched:
        typer.echo(
            "runs whose unreadable ledger objects were moved aside (their status may be "
            f"incomplete; 'servo runs show RUN_ID' shows it): {', '.join(result.runs_touched)}"
        )
    if after.healthy:
        typer.echo(f"home {after.home}: healthy after the repair")
    else:
        typer.echo(f"home {after.home}: {len(after.findings)} problem(s) remain")
        for finding in after.findings:
            typer.echo(f"  {finding.kind}: {finding.message}")
