"""The catalog projector on real runs: incremental, idempotent, resumable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servo import Definitions, asset, workflow
from servo.catalog import CatalogProjector, ProjectedFiles, ProjectionBatch, SqlCatalog
from servo.catalog.projector import new_files
from servo.catalog.registry import register_definitions
from servo.engine import schema as s
from servo.engine.snapshot import SnapshotReader
from servo.errors import CatalogUnavailableError, EngineError
from servo.runner import EmbeddedRunner, RunnerOptions
from servo.storage.local import LocalObjectStore


@asset(owner="team", tags={"layer": "raw"})
def a() -> int:
    return 2


@asset
def b(a: int) -> int:
    return a * 10


@asset
def c(a: int) -> list[int]:
    return [a, a + 1, a + 2]


@asset
def boom(a: int) -> int:
    raise ValueError("bad input")


@asset
def after_boom(boom: int) -> int:
    return boom


@workflow(name="nightly")
def nightly() -> None:
    b(c(a()))


DEFS = Definitions(assets=[a, b, c, boom, after_boom], workflows=[nightly])


class Recording:
    """Wraps a catalog's projection role: records batches, can simulate an outage."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[ProjectionBatch] = []
        self.down = False

    def checkpoint(self, tenant: str, workspace_id: str) -> Any:
        return self.inner.checkpoint(tenant, workspace_id)

    def apply(self, tenant: str, batch: ProjectionBatch) -> bool:
        if self.down:
            raise CatalogUnavailableError("catalog unavailable (projection.apply): simulated")
        self.batches.append(batch)
        return bool(self.inner.apply(tenant, batch))


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "home", fsync=False)


@pytest.fixture
def recording(sqlite_catalog: SqlCatalog) -> Iterator[Recording]:
    wrapper = Recording(sqlite_catalog.projection)
    sqlite_catalog.projection = wrapper  # type: ignore[assignment]
    yield wrapper


def run(
    store: LocalObjectStore,
    catalog: SqlCatalog,
    tenant: str = "default",
    *,
    max_l0_files: int | None = None,
) -> tuple[str, EmbeddedRunner]:
    with EmbeddedRunner(store, DEFS, RunnerOptions(tenant_id=tenant, concurrency=2)) as runner:
        if max_l0_files is not None:
            runner.compactor.max_l0_files = max_l0_files
        runner.add_publish_listener(CatalogProjector(catalog, store, tenant))
        run_id = runner.start_run().run_id
        runner.wait(run_id)
    return run_id, runner


def snapshot_rows(catalog: SqlCatalog, tenant: str = "default") -> tuple[Any, ...]:
    executions = catalog.executions.list(tenant, limit=1000).items
    tasks = tuple(t for e in executions for t in catalog.executions.tasks(tenant, e.execution_id))
    return executions, tasks, catalog.materializations.list(tenant, limit=1000).items


def test_a_run_is_projected_with_its_tasks_and_materializations(
    store: LocalObjectStore, sqlite_catalog: SqlCatalog
) -> None:
    register_definitions(sqlite_catalog, "default", DEFS)
    run_id, runner = run(store, sqlite_catalog)
    execution = sqlite_catalog.executions.get("default", run_id)
    assert execution is not None and execution.status == "FAILED"
    counts = (execution.n_tasks, execution.n_succeeded, execution.n_failed, execution.n_skipped)
    assert counts == (5, 3, 1, 1) and execution.completed_at is not None
    tasks = {t.task_key: t for t in sqlite_catalog.executions.tasks("default", run_id)}
    assert {k: t.status for k, t in tasks.items()} == {
        "a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED", "boom": "FAILED",
        "after_boom": "SKIPPED",
    }  # fmt: skip
    assert (tasks["boom"].error_type, tasks["boom"].error_message) == ("ValueError", "bad input")
    made = {m.asset_key: m for m in sqlite_catalog.materializations.list("default").items}
    engine_tasks = {t.task_key: t for t in runner.state.tasks_of(run_id)}
    assert set(made) == {"a", "b", "c"}
    for key, materialization in made.items():
        assert materialization.location == engine_tasks[key].output_location
        assert materialization.execution_id == run_id
        assert materialization.size_bytes == engine_tasks[key].output_size
    assert made["c"].row_count == engine_tasks["c"].output_rows
    registered = sqlite_catalog.assets.get("default", "a")
    assert registered is not None and registered.owner == "team"
    workflow_row = sqlite_catalog.workflows.get("default", "nightly")
    assert workflow_row is not None and workflow_row.assets == DEFS.workflows["nightly"].asset_names


def test_replays_change_nothing_and_a_restarted_projector_resumes(
    store: LocalObjectStore, sqlite_catalog: SqlCatalog, recording: Recording
) -> None:
    run(store, sqlite_catalog)
    before = snapshot_rows(sqlite_catalog)
    applied = len(recording.batches)
    snapshot = SnapshotReader(store, "default", "default").load()
    for projector in (
        CatalogProjector(sqlite_catalog, store, "default"),
        CatalogProjector(sqlite_catalog, store, "default"),
    ):
        assert projector.project(snapshot) is False
        assert projector.project(snapshot) is False
    assert len(recording.batches) == applied
    assert snapshot_rows(sqlite_catalog) == before
    checkpoint = sqlite_catalog.projection.checkpoint("default", "default")
    assert checkpoint is not None and checkpoint.generation == snapshot.generation


def test_only_what_changed_is_read_and_upserted(
    store: LocalObjectStore, sqlite_catalog: SqlCatalog, recording: Recording
) -> None:
    first, _ = run(store, sqlite_catalog)
    old = snapshot_rows(sqlite_catalog)
    recording.batches.clear()
    second, _ = run(store, sqlite_catalog)
    assert recording.batches
    for batch in recording.batches:
        assert {e.execution_id for e in batch.executions} <= {first, second}
        assert {t.execution_id for t in batch.tasks} <= {first, second}
        assert {m.execution_id for m in batch.materializations} <= {first, second}
    # The first runner archived its run when it closed: the second one never reads it.
    again = [b for b in recording.batches if first in {e.execution_id for e in b.executions}]
    assert again == []
    runs = {e.execution_id for e in sqlite_catalog.executions.list("default").items}
    assert runs == {first, second}
    executions, tasks, _ = snapshot_rows(sqlite_catalog)
    assert [e for e in executions if e.execution_id == first] == [
        e for e in old[0] if e.execution_id == first
    ]
    assert [t for t in tasks if t.execution_id == first] == list(old[1])


def test_a_new_base_is_projected_in_full_and_upserts_stay_idempotent(
    store: LocalObjectStore, sqlite_catalog: SqlCatalog, recording: Recording
) -> None:
    first, _ = run(store, sqlite_catalog)
    old = sqlite_catalog.executions.get("default", first)
    recording.batches.clear()
    second, _ = run(store, sqlite_catalog, max_l0_files=1)  # every publish writes a new base
    assert any(first in {e.execution_id for e in b.executions} for b in recording.batches)
    assert sqlite_catalog.executions.get("default", first) == old  # re-upserted, unchanged
    assert sqlite_catalog.executions.get("default", second).status == "FAILED"  # type: ignore[union-attr]


def test_a_catalog_outage_is_caught_up_by_the_next_snapshot(
    store: LocalObjectStore, sqlite_catalog: SqlCatalog, recording: Recording
) -> None:
    recording.down = True
    first, runner = run(store, sqlite_catalog)  # the listener fails; the run does not
    assert runner.state.run(first).status == s.RUN_FAILED  # type: ignore[union-attr]
    assert sqlite_catalog.executions.get("default", first) is None
    recording.down = False
    second, _ = run(store, sqlite_catalog)
    projected = {e.execution_id: e.status for e in sqlite_catalog.executions.list("default").items}
    assert projected == {first: "FAILED", second: "FAILED"}


def test_tenants_are_projected_apart(store: LocalObjectStore, sqlite_catalog: SqlCatalog) -> None:
    mine, _ = run(store, sqlite_catalog, "acme")
    theirs, _ = run(store, sqlite_catalog, "globex")
    assert [e.execution_id for e in sqlite_catalog.executions.list("acme").items] == [mine]
    assert [e.execution_id for e in sqlite_catalog.executions.list("globex").items] == [theirs]
    assert sqlite_catalog.materializations.list("acme", execution_id=theirs).items == ()


def test_a_snapshot_of_another_scope_is_refused(
    store: LocalObjectStore, sqlite_catalog: SqlCatalog
) -> None:
    run(store, sqlite_catalog)
    snapshot = SnapshotReader(store, "default", "default").load()
    with pytest.raises(EngineError, match="snapshot of default/default"):
        CatalogProjector(sqlite_catalog, store, "acme").project(snapshot)
    assert (
        CatalogProjector(sqlite_catalog, store, "default").project(
            SnapshotReader(store, "nobody", "default").load()
        )
        is False
    )  # generation 0: nothing published


@pytest.mark.parametrize(
    ("current", "known", "expected"),
    [
        (ProjectedFiles("b1", ("d1", "d2", "d3")), ProjectedFiles("b1", ("d1",)), ("d2", "d3")),
        (ProjectedFiles("b1", ("d1",)), ProjectedFiles("b1", ("d1",)), ()),
        (ProjectedFiles(None, ("d1", "d2")), None, ("d1", "d2")),
        (ProjectedFiles("b2", ("d9",)), ProjectedFiles("b1", ("d1",)), ("b2", "d9")),
        (ProjectedFiles("b1", ("d2",)), ProjectedFiles("b1", ("d1",)), ("b1", "d2")),
    ],
)
def test_new_files(
    current: ProjectedFiles, known: ProjectedFiles | None, expected: tuple[str, ...]
) -> None:
    assert new_files(current, known) == expected
