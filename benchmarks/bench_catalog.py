"""Catalog benchmarks on PostgreSQL (loopback): ``python -m benchmarks.bench_catalog``.

Targets (medians): 10,000 materializations upserted <= 2 s; one keyset page of 100
from 1,000,000 rows <= 5 ms; idempotent execution create <= 2 ms. Also measured:
lineage to depth 5 through the catalog on 100,000 assets, and the same upsert on
the embedded SQLite catalog for comparison.

The server is ``SERVO_BENCH_DATABASE_URL``, else ``SERVO_TEST_DATABASE_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``; a dedicated database is created
(migrated as the login user) and dropped at the end. Every call goes through the
catalog API as ``servo_app`` with row-level security on, like the application.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import sqlalchemy as sa

from benchmarks._timing import Timing, measure, report
from benchmarks.bench_graph import layered_dag
from servo.catalog import (
    AssetSpec,
    Dependency,
    ExecutionSpec,
    MaterializationSpec,
    SqlCatalog,
    migrate_catalog,
    open_catalog,
)
from servo.config.settings import DatabaseSettings, Settings
from servo.observability.logging import configure_logging

REPEAT = int(os.environ.get("SERVO_BENCH_REPEAT", "5"))
TENANT = "bench"


def _server_url() -> str:
    return (
        os.environ.get("SERVO_BENCH_DATABASE_URL")
        or os.environ.get("SERVO_TEST_DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres"
    )


@contextmanager
def bench_database() -> Iterator[str]:
    """A new, migrated database on the server; dropped afterwards."""
    server = _server_url()
    name = f"servo_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        migrate_catalog(Settings(database=DatabaseSettings(url=url)))
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _materializations(count: int, prefix: str) -> list[MaterializationSpec]:
    return [
        MaterializationSpec(
            execution_id=f"{prefix}-run-{i // 10}",
            asset_key=f"asset_{i % 10}",
            location=f"outputs/asset_{i % 10}/{prefix}-{i}.parquet",
            format="parquet",
            row_count=i,
            size_bytes=1024 + i,
            started_at=1_700_000_000_000_000 + i,
            finished_at=1_700_000_000_500_000 + i,
        )
        for i in range(count)
    ]


def bench_upsert(catalog: SqlCatalog, label: str) -> Timing:
    """10,000 materializations in one call (new rows each sample)."""
    batches = (_materializations(10_000, f"s{n}") for n in itertools.count())
    pending: list[list[MaterializationSpec]] = []
    return measure(
        f"upsert 10,000 materializations [{label}]",
        lambda: catalog.materializations.record_many(TENANT, pending.pop()),
        setup=lambda: pending.append(next(batches)),
        repeat=REPEAT,
        target=2.0,
    )


def _fill_million(url: str) -> None:
    """1,000,000 materializations of the tenant, written in SQL by the owner (ids: 26
    characters in insertion order, the width and order of ULIDs)."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute(
            """
            INSERT INTO materializations (id, tenant_id, execution_id, asset_key, location,
                format, row_count, size_bytes, started_at, finished_at, created_at)
            SELECT lpad(i::text, 26, '0'), %s, 'fill-' || (i / 10), 'asset_' || (i %% 100),
                   'outputs/fill/' || i,
                   'parquet', i, i, i, i, i
            FROM generate_series(1, 1000000) AS i
            """,
            (TENANT,),
        )
        owner.execute("ANALYZE materializations")
    print(f"  (filled 1,000,000 rows in {time.perf_counter() - started:.1f} s)")


def bench_page(catalog: SqlCatalog) -> Timing:
    """One keyset page of 100 from a tenant with 1,000,000+ rows, deep in the list."""
    first = catalog.materializations.list(TENANT, limit=100)
    cursors = [first.next_cursor]
    page = first
    for _ in range(50):  # walk 5,000 rows in, then time pages from there
        page = catalog.materializations.list(TENANT, limit=100, cursor=page.next_cursor)
        cursors.append(page.next_cursor)
    sample = itertools.cycle(cursors)
    return measure(
        "keyset page of 100 from 1,000,000 rows",
        lambda: catalog.materializations.list(TENANT, limit=100, cursor=next(sample)),
        repeat=200,
        target=5e-3,
    )


def bench_idempotent_create(catalog: SqlCatalog) -> tuple[Timing, Timing]:
    counter = itertools.count()
    new = measure(
        "execution create (new key)",
        lambda: catalog.executions.create(
            TENANT, ExecutionSpec(f"new-{next(counter)}", idempotency_key=f"k-{uuid.uuid4().hex}")
        ),
        repeat=300,
    )
    catalog.executions.create(TENANT, ExecutionSpec("fixed", idempotency_key="fixed-key"))
    repeat = measure(
        "execution create again (idempotent)",
        lambda: catalog.executions.create(
            TENANT, ExecutionSpec("other", idempotency_key="fixed-key")
        ),
        repeat=300,
        target=2e-3,
    )
    return new, repeat


def bench_lineage(catalog: SqlCatalog, url: str) -> None:
    spec, layers = layered_dag(100_000)
    specs = [
        AssetSpec(name, tuple(Dependency(dep, dep_type) for dep, dep_type in deps))
        for name, deps in spec
    ]
    for label in ("register 100,000 assets with edges", "register them again (unchanged)"):
        started = time.perf_counter()
        catalog.assets.upsert_many(TENANT, specs)
        elapsed = time.perf_counter() - started
        report(Timing(label, elapsed, elapsed, 1))
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute("ANALYZE")
    leaf, middle = layers[-1][-1], layers[len(layers) // 2][0]
    measure(
        "lineage depth 5 of a leaf [100,000 assets]",
        lambda: catalog.lineage.lineage(TENANT, leaf, depth=5),
        repeat=30,
    )
    found = catalog.lineage.lineage(TENANT, middle, depth=5)
    assert found is not None
    size = len(found.upstream) + len(found.downstream)
    measure(
        f"lineage depth 5 both ways [100,000 assets, {size} found]",
        lambda: catalog.lineage.lineage(TENANT, middle, depth=5),
        repeat=10,
    )


def bench_sqlite_upsert() -> None:
    with tempfile.TemporaryDirectory() as home, open_catalog(Settings(home=Path(home))) as catalog:
        bench_upsert(catalog, "sqlite")


def main() -> None:
    """Run every catalog benchmark and print one line each."""
    configure_logging("ERROR")  # a 10,000-row upsert is a "slow operation" by design
    try:
        psycopg.connect(_server_url(), connect_timeout=2).close()
    except psycopg.Error as exc:
        print(f"  skipped: no PostgreSQL at {_server_url()} ({exc})")
        return
    with bench_database() as url:
        settings = Settings(database=DatabaseSettings(url=url, pool_size=4))
        with open_catalog(settings) as catalog:
            bench_idempotent_create(catalog)
            bench_upsert(catalog, "postgresql")
            _fill_million(url)
            bench_page(catalog)
            bench_lineage(catalog, url)
    bench_sqlite_upsert()


if __name__ == "__main__":
    main()
