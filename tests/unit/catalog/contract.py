"""The one contract every catalog backend must pass.

Subclass `CatalogContract` in a ``Test*`` class and provide a ``catalog`` fixture
yielding a fresh, migrated, empty catalog. SQLite runs it in ``tests/unit/catalog``;
PostgreSQL runs the very same cases against a real server in
``tests/integration/catalog`` (where row-level security is also checked with raw
SQL). Hypothesis examples use a fresh tenant each, so one database serves them all.
"""

from __future__ import annotations

import threading
import uuid
from functools import partial
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ulid import ULID

from servo.catalog import (
    AssetSpec,
    Dependency,
    ExecutionSpec,
    MaterializationSpec,
    ProjectedFiles,
    ProjectionBatch,
    SqlCatalog,
    TaskSpec,
    WorkflowSpec,
)
from servo.catalog.ids import execution_id_of, materialization_id_of
from servo.errors import CatalogIntegrityError
from servo.graph.lineage import Edge


def tenant() -> str:
    """A tenant no other test or example uses."""
    return f"t-{uuid.uuid4().hex[:12]}"


def pages(fetch: Any, limit: int) -> list[Any]:
    """Every item of a list, fetched page by page with keyset cursors."""
    items: list[Any] = []
    cursor = None
    while True:
        page = fetch(limit=limit, cursor=cursor)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


class CatalogContract:
    """Behaviour shared by every backend; subclasses provide the ``catalog`` fixture."""

    keyset_examples: ClassVar[int] = 40

    # ------------------------------------------------------------------ assets
    def test_asset_upsert_get_and_update(self, catalog: SqlCatalog) -> None:
        t = tenant()
        spec = AssetSpec(
            "orders",
            (Dependency("raw", "data"), Dependency("config", "metadata")),
            description="Orders",
            owner="sales",
            asset_type="table",
            tags={"layer": "clean"},
            timeout_s=30.0,
        )
        created = catalog.assets.upsert(t, spec)
        assert created.tenant_id == t and created.name == "orders"
        assert created.dependencies == (
            Dependency("config", "metadata"),
            Dependency("raw", "data"),
        )
        assert dict(created.tags) == {"layer": "clean"} and created.timeout_s == 30.0
        assert catalog.assets.get(t, "orders") == created
        again = catalog.assets.upsert(t, spec)
        assert again == created  # nothing changed: not even updated_at
        changed = catalog.assets.upsert(t, AssetSpec("orders", (Dependency("raw", "control"),)))
        assert changed.id == created.id and changed.created_at == created.created_at
        assert changed.dependencies == (Dependency("raw", "control"),)
        assert changed.owner is None and dict(changed.tags) == {}

    def test_asset_delete_removes_its_edges(self, catalog: SqlCatalog) -> None:
        t = tenant()
        catalog.assets.upsert(t, AssetSpec("b", (Dependency("a"),)))
        assert catalog.assets.delete(t, "b") is True
        assert catalog.assets.delete(t, "b") is False
        assert catalog.assets.get(t, "b") is None
        assert catalog.lineage.downstream_edges(t, "a") == ()

    def test_register_many_replaces_edges_and_is_idempotent(self, catalog: SqlCatalog) -> None:
        t = tenant()
        first = [
            AssetSpec("a"),
            AssetSpec("b", (Dependency("a"),)),
            AssetSpec("c", (Dependency("b"),)),
        ]
        catalog.assets.upsert_many(t, first)
        before = {a.name: a for a in catalog.assets.list(t).items}
        catalog.assets.upsert_many(t, first)
        assert {a.name: a for a in catalog.assets.list(t).items} == before
        catalog.assets.upsert_many(t, [AssetSpec("c", (Dependency("a", "control"),))])
        assert catalog.assets.get(t, "c").dependencies == (Dependency("a", "control"),)  # type: ignore[union-attr]
        assert catalog.lineage.downstream_edges(t, "b") == ()

    def test_invalid_arguments_are_value_errors(self, catalog: SqlCatalog) -> None:
        with pytest.raises(ValueError, match="tenant"):
            catalog.assets.get("", "x")
        with pytest.raises(ValueError, match="limit"):
            catalog.assets.list(None, limit=0)
        with pytest.raises(ValueError, match="either an offset or a cursor"):
            catalog.assets.list(None, offset=1, cursor="abc")
        with pytest.raises(ValueError, match="invalid cursor"):
            catalog.executions.list(None, cursor="not-a-cursor")
        with pytest.raises(ValueError, match="status"):
            catalog.executions.create(None, ExecutionSpec("e", status="DONE"))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="dependency type"):
            catalog.assets.upsert(None, AssetSpec("x", (Dependency("y", "strong"),)))  # type: ignore[arg-type]

    def test_asset_pages_by_offset_and_by_cursor_agree(self, catalog: SqlCatalog) -> None:
        t = tenant()
        catalog.assets.upsert_many(t, [AssetSpec(f"asset_{i:03d}") for i in range(25)])
        everything = catalog.assets.list(t, limit=1000).items
        assert [a.name for a in everything] == [f"asset_{i:03d}" for i in range(25)]
        by_cursor = pages(lambda **kw: catalog.assets.list(t, **kw), 7)
        by_offset = [
            a for o in range(0, 25, 7) for a in catalog.assets.list(t, limit=7, offset=o).items
        ]
        assert by_cursor == by_offset == list(everything)
        assert catalog.assets.list(t, limit=25).next_cursor is None

    # ------------------------------------------------------------------ tenancy
    def test_tenants_see_their_own_rows_and_the_global_ones(self, catalog: SqlCatalog) -> None:
        a, b = tenant(), tenant()
        shared = f"shared-{uuid.uuid4().hex[:6]}"
        catalog.assets.upsert(None, AssetSpec(shared, owner="platform"))
        catalog.assets.upsert(a, AssetSpec("mine", owner="a"))
        assert catalog.assets.get(b, "mine") is None
        assert catalog.assets.get(b, shared) is not None  # global rows are read by all
        assert catalog.assets.get(None, "mine") is None  # the system sees global rows only
        names_b = {x.name for x in pages(lambda **kw: catalog.assets.list(b, **kw), 100)}
        assert "mine" not in names_b and shared in names_b
        # a tenant's row of the same name shadows the global one, for that tenant only
        own = catalog.assets.upsert(a, AssetSpec(shared, owner="a"))
        assert own.tenant_id == a and catalog.assets.get(a, shared) == own
        assert catalog.assets.get(b, shared).owner == "platform"  # type: ignore[union-attr]
        # writes never reach another tenant's (or the global) rows
        assert catalog.assets.delete(b, "mine") is False
        assert catalog.assets.delete(a, shared) is True
        assert catalog.assets.get(a, shared).tenant_id is None  # type: ignore[union-attr]
        assert catalog.assets.delete(None, shared) is True

    def test_executions_are_isolated_by_tenant(self, catalog: SqlCatalog) -> None:
        a, b = tenant(), tenant()
        catalog.executions.create(a, ExecutionSpec("run-1", idempotency_key="k"))
        created, new = catalog.executions.create(b, ExecutionSpec("run-1", idempotency_key="k"))
        assert new and created.tenant_id == b  # the same id and key in another tenant
        assert [e.tenant_id for e in catalog.executions.list(a).items] == [a]
        assert catalog.executions.update_status(b, "run-2", "FAILED") is None
        assert catalog.executions.delete(a, "run-2") is False
        assert catalog.executions.get(a, "run-1").tenant_id == a  # type: ignore[union-attr]

    # ---------------------------------------------------------------- workflows
    def test_workflow_versions(self, catalog: SqlCatalog) -> None:
        t = tenant()
        v1 = catalog.workflows.register(t, WorkflowSpec("daily", ("a", "b"), "local", "Daily"))
        assert (v1.version, v1.assets, v1.executor) == (1, ("a", "b"), "local")
        assert (
            catalog.workflows.register(t, WorkflowSpec("daily", ("a", "b"), "local", "Daily")) == v1
        )
        v2 = catalog.workflows.register(t, WorkflowSpec("daily", ("a",), "local", "Daily"))
        v3 = catalog.workflows.register(t, WorkflowSpec("daily", ("a", "b"), "local", "Daily"))
        assert (v2.version, v3.version) == (2, 3) and v3.definition_hash == v1.definition_hash
        assert catalog.workflows.get(t, "daily") == v3
        assert catalog.workflows.get(t, "daily", version=2) == v2
        assert [w.version for w in catalog.workflows.versions(t, "daily")] == [1, 2, 3]
        catalog.workflows.register(t, WorkflowSpec("hourly"))
        assert [(w.name, w.version) for w in catalog.workflows.list(t).items] == [
            ("daily", 3),
            ("hourly", 1),
        ]
        assert catalog.workflows.delete(t, "daily") == 3
        assert catalog.workflows.get(t, "daily") is None

    # --------------------------------------------------------------- executions
    def test_create_execution_is_idempotent(self, catalog: SqlCatalog) -> None:
        t = tenant()
        first, created = catalog.executions.create(
            t, ExecutionSpec("e1", idempotency_key="key-1", status="RUNNING", selection="*")
        )
        assert created and first.status == "RUNNING" and first.requested_at > 0
        again, created_again = catalog.executions.create(
            t, ExecutionSpec("e2", idempotency_key="key-1")
        )
        assert not created_again and again == first
        same_id, created_same = catalog.executions.create(t, ExecutionSpec("e1"))
        assert not created_same and same_id == first
        other_ws, created_ws = catalog.executions.create(
            t, ExecutionSpec("e3", workspace_id="ws2", idempotency_key="key-1")
        )
        assert created_ws and other_ws.workspace_id == "ws2"

    def test_concurrent_creates_with_one_key_make_one_execution(self, catalog: SqlCatalog) -> None:
        t = tenant()
        barrier = threading.Barrier(4)
        results: list[Any] = []

        def create(index: int) -> None:
            barrier.wait(timeout=30)
            results.append(
                catalog.executions.create(t, ExecutionSpec(f"e{index}", idempotency_key="k"))
            )

        threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(results) == 4
        assert sum(created for _, created in results) == 1
        assert len({execution.id for execution, _ in results}) == 1

    def test_execution_list_status_update_and_delete(self, catalog: SqlCatalog) -> None:
        t = tenant()
        for index, requested in enumerate([300, 100, 200, 200]):
            catalog.executions.create(
                t, ExecutionSpec(f"e{index}", status="RUNNING", requested_at=requested)
            )
        executions = catalog.executions.list(t).items
        tied = sorted((e for e in executions if e.requested_at == 200), key=lambda e: e.id)
        listed = [e.execution_id for e in executions]
        # newest first, ties by id descending (ULIDs: a stable, arbitrary tiebreak)
        assert listed == ["e0", *(e.execution_id for e in reversed(tied)), "e1"]
        assert pages(lambda **kw: catalog.executions.list(t, **kw), 1) == list(
            catalog.executions.list(t).items
        )
        done = catalog.executions.update_status(t, "e1", "SUCCEEDED", at=999)
        assert done is not None and (done.status, done.completed_at) == ("SUCCEEDED", 999)
        assert [e.execution_id for e in catalog.executions.list(t, status="SUCCEEDED").items] == [
            "e1"
        ]
        catalog.projection.apply(
            t,
            ProjectionBatch(
                "default", 0, 1, {},
                tasks=(TaskSpec("e1", "a", "a", status="SUCCEEDED"),),
                materializations=(MaterializationSpec("e1", "a", "loc"),),
            ),
        )  # fmt: skip
        assert catalog.executions.delete(t, "e1") is True
        assert catalog.executions.get(t, "e1") is None
        assert catalog.executions.tasks(t, "e1") == ()
        assert catalog.materializations.list(t, execution_id="e1").items == ()

    # ---------------------------------------------------------- materializations
    def test_materializations_record_list_latest_delete(self, catalog: SqlCatalog) -> None:
        t = tenant()
        spec = MaterializationSpec(
            "e1", "orders", "outputs/orders/e1.json", format="json", row_count=3, finished_at=1000
        )
        first = catalog.materializations.record(t, spec)
        assert catalog.materializations.record(t, spec) == first
        moved = catalog.materializations.record(
            t, MaterializationSpec("e1", "orders", "elsewhere", finished_at=1000)
        )
        assert moved.id == first.id and moved.location == "elsewhere"
        catalog.materializations.record_many(
            t,
            [
                MaterializationSpec(
                    f"e{i}", "orders" if i % 2 else "report", f"loc-{i}", finished_at=i * 1000
                )
                for i in range(2, 12)
            ]
            + [MaterializationSpec("e2", "orders", "p-2024", "2024", finished_at=12_000)],
        )
        orders = catalog.materializations.list(t, asset_key="orders").items
        # newest first: by the time the value was made (the id's time), to the ms
        assert [m.execution_id for m in orders][:2] == ["e2", "e11"]
        assert all(m.asset_key == "orders" for m in orders) and len(orders) == 7
        latest = catalog.materializations.latest(t, "orders", partition_key="2024")
        assert latest is not None and latest.location == "p-2024"
        assert catalog.materializations.latest(t, "report").execution_id == "e10"  # type: ignore[union-attr]
        everything = catalog.materializations.list(t, limit=1000).items
        assert pages(partial(catalog.materializations.list, t), 4) == list(everything)
        assert catalog.materializations.delete(t, first.id) is True
        assert catalog.materializations.delete(tenant(), everything[0].id) is False

    # -------------------------------------------------------------------- lineage
    def test_lineage_depth_directions_and_edge_types(self, catalog: SqlCatalog) -> None:
        t = tenant()
        catalog.assets.upsert_many(
            t,
            [
                AssetSpec("raw"),
                AssetSpec("clean", (Dependency("raw"),)),
                AssetSpec("config"),
                AssetSpec("mart", (Dependency("clean"), Dependency("config", "metadata"))),
                AssetSpec("report", (Dependency("mart"), Dependency("clean", "control"))),
            ],
        )
        full = catalog.lineage.lineage(t, "mart")
        assert full is not None
        assert full.upstream == ("config", "raw", "clean") and full.downstream == ("report",)
        assert set(full.edges) == {
            Edge("raw", "clean", "data"),
            Edge("clean", "mart", "data"),
            Edge("config", "mart", "metadata"),
            Edge("mart", "report", "data"),
            Edge("clean", "report", "control"),
        }
        near = catalog.lineage.lineage(t, "report", depth=1)
        assert near is not None and near.upstream == ("clean", "mart") and near.downstream == ()
        assert catalog.lineage.lineage(t, "raw", depth=2).downstream == ("clean", "mart", "report")  # type: ignore[union-attr]
        assert catalog.lineage.upstream_edges(t, "report") == (
            Edge("clean", "report", "control"),
            Edge("mart", "report", "data"),
        )
        assert catalog.lineage.lineage(t, "missing") is None
        assert catalog.lineage.lineage(tenant(), "mart") is None

    def test_lineage_includes_global_edges(self, catalog: SqlCatalog) -> None:
        t = tenant()
        base = f"base-{uuid.uuid4().hex[:6]}"
        catalog.assets.upsert(None, AssetSpec(base))
        catalog.assets.upsert(t, AssetSpec("mine", (Dependency(base),)))
        found = catalog.lineage.lineage(t, base)
        assert found is not None and found.downstream == ("mine",)
        assert catalog.lineage.lineage(tenant(), base).downstream == ()  # type: ignore[union-attr]

    # ----------------------------------------------------------------- projection
    def test_projection_batches_apply_once_with_their_checkpoint(self, catalog: SqlCatalog) -> None:
        t = tenant()
        files = {"runs": ProjectedFiles("b.parquet", ("d1.parquet",))}
        batch = ProjectionBatch(
            "default", 0, 3, files,
            executions=(ExecutionSpec("r1", status="RUNNING", n_tasks=1, requested_at=5),),
            tasks=(TaskSpec("r1", "a", "a", status="RUNNING", attempt=1),),
        )  # fmt: skip
        assert catalog.projection.checkpoint(t, "default") is None
        assert catalog.projection.apply(t, batch) is True
        checkpoint = catalog.projection.checkpoint(t, "default")
        assert checkpoint is not None and (checkpoint.generation, dict(checkpoint.files)) == (
            3,
            files,
        )
        assert catalog.projection.apply(t, batch) is False  # a replay changes nothing
        later = ProjectionBatch(
            "default", 3, 4, files,
            executions=(ExecutionSpec("r1", status="SUCCEEDED", n_tasks=1, n_succeeded=1,
                                      requested_at=5, completed_at=9),),
            tasks=(TaskSpec("r1", "a", "a", status="SUCCEEDED", attempt=1, finished_at=9),),
            materializations=(MaterializationSpec("r1", "a", "loc", finished_at=9),),
        )  # fmt: skip
        assert catalog.projection.apply(t, later) is True
        run = catalog.executions.get(t, "r1")
        assert run is not None and (run.status, run.completed_at, run.n_succeeded) == (
            "SUCCEEDED",
            9,
            1,
        )
        assert [x.status for x in catalog.executions.tasks(t, "r1")] == ["SUCCEEDED"]
        stale = ProjectionBatch(
            "default", 3, 5, files, executions=(ExecutionSpec("r1", status="FAILED"),)
        )
        assert catalog.projection.apply(t, stale) is False
        assert catalog.executions.get(t, "r1").status == "SUCCEEDED"  # type: ignore[union-attr]

    def test_projected_execution_conflicting_with_a_created_key_is_an_integrity_error(
        self, catalog: SqlCatalog
    ) -> None:
        t = tenant()
        catalog.executions.create(t, ExecutionSpec("api-id", idempotency_key="k"))
        batch = ProjectionBatch(
            "default", 0, 1, {}, executions=(ExecutionSpec("engine-id", idempotency_key="k"),)
        )
        with pytest.raises(CatalogIntegrityError):
            catalog.projection.apply(t, batch)
        assert catalog.projection.checkpoint(t, "default") is None  # all or nothing

    # ---------------------------------------------------------------- public ids
    def test_tenants_inserting_interleaved_share_no_id_sequence(self, catalog: SqlCatalog) -> None:
        a, b = tenant(), tenant()
        for index in range(6):
            for t in (a, b) if index % 2 else (b, a):
                catalog.assets.upsert(t, AssetSpec(f"asset{index}"))
                catalog.workflows.register(t, WorkflowSpec(f"wf{index}"))
                catalog.executions.create(t, ExecutionSpec(f"run{index}", requested_at=index + 1))
                catalog.materializations.record(
                    t, MaterializationSpec(f"run{index}", "x", "loc", finished_at=index * 1000)
                )
        seen: set[str] = set()
        for t in (a, b):
            lists = {
                "assets": pages(partial(catalog.assets.list, t), 4),
                "workflows": pages(partial(catalog.workflows.list, t), 4),
                "executions": pages(partial(catalog.executions.list, t), 4),
                "values": pages(partial(catalog.materializations.list, t), 4),
            }
            for name, records in lists.items():  # pages hold exactly the tenant's rows
                own = [r for r in records if r.tenant_id == t]
                assert len(own) == 6, name
                for record in own:
                    assert isinstance(record.id, str) and len(record.id) == 26, record
                    ULID.from_str(record.id)
                    assert record.id not in seen
                    seen.add(record.id)
            runs = [e for e in lists["executions"] if e.tenant_id == t]
            assert [e.execution_id for e in runs] == [f"run{i}" for i in reversed(range(6))]
            # derived from the tenant's own facts: nothing in them depends on the other
            assert [e.id for e in runs] == [
                execution_id_of(t, e.execution_id, e.requested_at) for e in runs
            ]
            values = [m for m in lists["values"] if m.tenant_id == t]
            assert [m.execution_id for m in values] == [f"run{i}" for i in reversed(range(6))]
            assert [m.id for m in values] == [
                materialization_id_of(t, m.execution_id, "x", None, m.finished_at or 0)
                for m in values
            ]

    # -------------------------------------------------------------------- keyset
    def test_keyset_pages_miss_and_repeat_nothing_while_rows_are_inserted(
        self, catalog: SqlCatalog
    ) -> None:
        @settings(
            max_examples=self.keyset_examples,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(
            initial=st.lists(st.integers(0, 20), max_size=25),
            limit=st.integers(1, 6),
            inserts=st.lists(st.lists(st.integers(0, 25), max_size=4), max_size=8),
        )
        def check(initial: list[int], limit: int, inserts: list[list[int]]) -> None:
            t = tenant()
            counter = iter(range(10_000))

            def add(times: list[int]) -> set[str]:
                made = set()
                for requested in times:
                    execution_id = f"e{next(counter)}"
                    catalog.executions.create(
                        t, ExecutionSpec(execution_id, requested_at=requested + 1)
                    )
                    made.add(execution_id)
                return made

            existing = add(initial)
            seen: list[str] = []
            cursor = None
            batches = iter(inserts)
            while True:
                page = catalog.executions.list(t, limit=limit, cursor=cursor)
                seen.extend(e.execution_id for e in page.items)
                add(next(batches, []))  # rows arrive between pages, anywhere in the order
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert len(seen) == len(set(seen)), "a row was repeated"
            assert existing <= set(seen), f"rows missed: {existing - set(seen)}"

        check()

    def test_keyset_pages_with_a_concurrent_writer(self, catalog: SqlCatalog) -> None:
        t = tenant()
        specs = [MaterializationSpec(f"e{i}", "a", f"loc{i}") for i in range(60)]
        catalog.materializations.record_many(t, specs)
        existing = {m.id for m in catalog.materializations.list(t, limit=1000).items}
        stop = threading.Event()

        def write() -> None:
            index = 1000
            while not stop.is_set():
                catalog.materializations.record(t, MaterializationSpec(f"e{index}", "a", "x"))
                index += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            seen = [m.id for m in pages(lambda **kw: catalog.materializations.list(t, **kw), 5)]
        finally:
            stop.set()
            writer.join(timeout=30)
        assert len(seen) == len(set(seen)) and existing <= set(seen)
