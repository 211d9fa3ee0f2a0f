"""``servo materialize`` when tasks run elsewhere (``cloud.provider: gcp``).

The command is the same; only where the run is driven changes. It plans the run
here, writes its request to the ledger in the configured store, hands it to the
reconciler through the reconcile queue, and follows the run from the published
projections with the same progress bar and summary as an embedded run. With
``--no-wait`` it prints the run id and returns at once. Ctrl-C stops following, not
the run: it goes on, and the message says how to look at it again.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer

from servo.cli import lifecycle
from servo.engine.ids import DEFAULT_WORKSPACE

if TYPE_CHECKING:
    from servo.config.settings import Settings
    from servo.sdk.definitions import Definitions

#: Seconds between two reads of the published projections while following a run.
POLL_S = 0.1


def materialize_remote(
    definitions: Definitions,
    settings: Settings,
    *,
    selection: str | None,
    idempotency_key: str | None,
    tenant: str,
    as_json: bool,
    wait: bool,
) -> None:
    """Submit the run to the remote reconciler and follow it (see the module docstring).

    Raises:
        typer.Exit: with the run's exit code (`lifecycle.finish`).
    """
    from servo.cli import render_runs
    from servo.executor import check_servable
    from servo.runner.remote import RunFollower, submit_run
    from servo.storage.factory import open_store

    check_servable(_placed(definitions, selection), settings.cloud.provider)
    store = open_store(settings.storage, Path(settings.home))
    queue = reconcile_queue(settings)
    try:
        submitted = submit_run(
            store,
            definitions,
            queue.notify,
            tenant_id=tenant,
            workspace_id=DEFAULT_WORKSPACE,
            selection=selection,
            idempotency_key=idempotency_key,
        )
    finally:
        queue.close()
    if not wait:
        if as_json:
            render_runs.write_json({"run_id": submitted.run_id, "resumed": submitted.resumed})
        else:
            verb = "found" if submitted.resumed else "submitted"
            sys.stdout.write(f"{verb} run {submitted.run_id}\n")
        return
    follower = RunFollower(store, tenant, DEFAULT_WORKSPACE, submitted.run_id)
    stop = threading.Event()
    with (
        _stop_following_on_signals(stop),
        render_runs.Progress(enabled=not as_json, resumed=submitted.resumed) as progress,
    ):
        run = follower.wait(
            poll_s=POLL_S, on_progress=progress.update, sleep=stop.wait, stopped=stop.is_set
        )
    if run is None:
        sys.stderr.write(
            f"stopped following run {submitted.run_id}; it goes on: look at it with "
            f"'servo runs show {submitted.run_id}' (same SERVO_CONFIG)\n"
        )
        raise typer.Exit(lifecycle.EXIT_INTERRUPTED)
    _, tasks = follower.poll()
    lifecycle.finish(run, tasks, as_json=as_json)


@contextmanager
def _stop_following_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set `stop` instead of ending the process (restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _placed(definitions: Definitions, selection: str | None) -> list[tuple[str, str | None]]:
    """(workflow, executor spec) of the selected assets that a workflow places."""
    from servo.graph import select

    found = (definitions.executor_of(a) for a in select(definitions.graph, selection or "*"))
    return sorted({placed for placed in found if placed is not None})


def reconcile_queue(settings: Settings) -> Any:
    """The queue that carries submissions and cancels to the configured reconciler
    (Cloud Tasks or Celery): it has ``notify`` and ``close``."""
    if settings.cloud.provider == "celery":
        from servo.dispatch.celery_edge import CeleryReconcileQueue, app_for

        celery = settings.cloud.celery
        return CeleryReconcileQueue(app_for(celery), celery)
    from servo.dispatch.cloud_tasks import CloudTasksReconcileQueue

    return CloudTasksReconcileQueue.from_settings(settings)
