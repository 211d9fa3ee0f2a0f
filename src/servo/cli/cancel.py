"""``servo runs cancel RUN_ID``: ask a run to stop.

The cancel request is a create-only ledger object (one per run), so any process
may write it and writing it twice is harmless. A runner driving the run notices it
within a sweep interval: attempts still running are asked to stop and ended, tasks
not started are cancelled. The command also folds the request into the published
projections, so ``servo runs show`` reflects it even when no runner is active; a
run whose attempts were left running by a dead runner finishes cancelling the next
time ``servo materialize`` resumes it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from servo.cli._session import configure, with_home
from servo.cli.options import ConfigOption, HomeOption, JsonOption, TenantOption, state_of


def cancel_run(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID")],
    home: HomeOption = None,
    tenant: TenantOption = "default",
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")] = "",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a run: stop its running assets and skip what has not started."""
    import json
    import sys

    from servo.engine.compactor import Compactor
    from servo.engine.ids import now_us
    from servo.engine.ledger import LedgerReader, LedgerWriter
    from servo.engine.runner import cancel_path, request_cancel
    from servo.errors import ServoError
    from servo.storage.factory import open_store

    settings = with_home(configure(state_of(ctx)), home)
    store = open_store(settings.storage, settings.home)
    ledger = LedgerWriter(store, tenant, "default")
    if store.head(ledger.path_for(f"runs/{run_id}/requested")) is None:
        raise ServoError(f"no run {run_id!r} in this home; 'servo runs list' shows the runs")
    written = request_cancel(ledger, run_id, reason, now_us())
    compactor = Compactor(store, tenant, "default")
    compactor.fold(LedgerReader(store).read(ledger.path_for(cancel_path(run_id))))
    compactor.publish()
    run = compactor.state.run(run_id)
    status = "unknown" if run is None else run.status.lower()
    outcome = "requested" if written else "already_requested"
    if as_json:
        payload = {"run_id": run_id, "cancel": outcome, "status": status}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        sys.stdout.write(f"run {run_id}: cancel {outcome.replace('_', ' ')} (status: {status})\n")
