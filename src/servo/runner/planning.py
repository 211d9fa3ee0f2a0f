"""Planning a run: select the assets, pin their inputs, write the `RunRequested`.

The request is written under a name derived from the run id (create-only), so two
processes starting the same idempotency key agree on one run: the loser reads the
winner's request back instead of planning its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from servo.engine import events as ev
from servo.engine.compactor import Compactor
from servo.engine.controllers.run import Materialization, latest_materializations, plan_tasks
from servo.engine.ids import run_id_for_key
from servo.engine.ledger import LedgerReader, LedgerWriter
from servo.graph import select
from servo.runner.options import RunStart
from servo.storage.base import ObjectStore

if TYPE_CHECKING:
    from servo.sdk.definitions import Definitions


def start_run(
    store: ObjectStore,
    compactor: Compactor,
    defs: Definitions,
    *,
    selection: str | None,
    idempotency_key: str | None,
    upstream: Mapping[str, Materialization] | None,
    clock: Callable[[], int],
    new_id: Callable[[], str],
) -> RunStart:
    """Plan and request a run, or find the run of `idempotency_key`; see
    `EmbeddedRunner.start_run`."""
    tenant, workspace = compactor.tenant_id, compactor.workspace_id
    state = compactor.state
    if idempotency_key is None:
        run_id = new_id()
    else:
        run_id = run_id_for_key(tenant, workspace, idempotency_key)
        if state.run(run_id) is not None or run_id in state.archived:
            return RunStart(run_id, resumed=True)
    selected = select(defs.graph, selection or "*")
    latest = latest_materializations(state.rows("tasks"), state.latest.values())
    pinned = {**latest, **(upstream or {})}
    event = ev.Event(
        event_id=new_id(),
        tenant_id=tenant,
        workspace_id=workspace,
        run_id=run_id,
        payload=ev.RunRequested(
            tasks=plan_tasks(defs, selected, pinned),
            idempotency_key=idempotency_key,
            selection=selection,
            defs_source=defs.source,
            code_version=defs.code_version,
        ),
        emitted_at=clock(),
    )
    ledger = LedgerWriter(store, tenant, workspace)
    suffix = f"runs/{run_id}/requested"
    if ledger.append_at(suffix, event):
        compactor.fold([event])
        return RunStart(run_id, resumed=False)
    compactor.fold(LedgerReader(store).read(ledger.path_for(suffix)))
    return RunStart(run_id, resumed=True)
