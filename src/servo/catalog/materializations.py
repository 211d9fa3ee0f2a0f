"""Values written by executions (`MaterializationCatalog` over SQL).

A materialization is keyed by (tenant, execution, asset, partition): recording it
again is an upsert that changes nothing when the values are the same. Its public id
is derived from that key and the time the value was made (`servo.catalog.ids`), so
lists are newest first by id, with keyset cursors on that id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import sqlalchemy as sa

from servo.catalog import queries as q
from servo.catalog.assets import chunks
from servo.catalog.database import Database
from servo.catalog.ids import materialization_id_of
from servo.catalog.pagination import check_page, decode_cursor, to_page
from servo.catalog.records import Page
from servo.catalog.run_records import Materialization, MaterializationSpec, flat_dict
from servo.catalog.schema import materializations

#: Rows per ``executemany`` (psycopg pipelines them; a multi-row VALUES statement
#: built with SQLAlchemy measured several times slower).
BATCH = 1000

#: The columns of `Materialization`, in its field order (rows become records positionally).
COLUMNS = tuple(materializations.c[f.name] for f in fields(Materialization))
_ORDER = (materializations.c.id,)


def materialization_record(row: Any) -> Materialization:
    """A `Materialization` from a ``materializations`` row."""
    values = dict(row._mapping)
    del values["tenant_key"]
    return Materialization(**values)


def materialization_rows(
    tenant: str | None, specs: Sequence[MaterializationSpec], now: int
) -> list[dict[str, Any]]:
    """Parameters for upserting `specs`, one per key (the last spec of a key wins)."""
    latest = {(s.execution_id, s.asset_key, s.partition_key or ""): s for s in specs}
    for spec in latest.values():
        if not spec.execution_id or not spec.asset_key or not spec.location:
            raise ValueError(
                f"a materialization needs an execution, an asset and a location: {spec}"
            )
    return [
        {
            **flat_dict(s),
            "id": materialization_id_of(
                tenant,
                s.execution_id,
                s.asset_key,
                s.partition_key,
                now if s.finished_at is None else s.finished_at,
            ),
            "tenant_id": tenant,
            "created_at": now,
        }
        for s in latest.values()
    ]


def upsert(db: Database, connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert prepared rows in the caller's transaction, `BATCH` rows per statement."""
    statement = q.upsert_materializations(db.insert)
    for batch in chunks(rows, BATCH):
        connection.execute(statement, list(batch))


class SqlMaterializationCatalog:
    """`servo.catalog.protocol.MaterializationCatalog` over a `Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, tenant: str | None, spec: MaterializationSpec) -> Materialization:
        rows = materialization_rows(tenant, [spec], self._db.now())
        key = q.materialization_by_key(
            tenant, spec.execution_id, spec.asset_key, spec.partition_key
        )

        def work(connection: sa.Connection) -> Materialization:
            upsert(self._db, connection, rows)
            return materialization_record(connection.execute(key).one())

        return self._db.run("materializations.record", tenant, work, write=True)

    def record_many(self, tenant: str | None, specs: Sequence[MaterializationSpec]) -> None:
        rows = materialization_rows(tenant, specs, self._db.now())
        if rows:
            self._db.run(
                "materializations.record_many",
                tenant,
                lambda connection: upsert(self._db, connection, rows),
                write=True,
            )

    def list(
        self,
        tenant: str | None,
        *,
        asset_key: str | None = None,
        execution_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
        cursor: str | None = None,
    ) -> Page[Materialization]:
        check_page(limit, offset, cursor)
        after = None if cursor is None else decode_cursor(cursor, (str,))
        equal = {
            name: value
            for name, value in (("asset_key", asset_key), ("execution_id", execution_id))
            if value is not None
        }
        shape = q.PageQuery(materializations, _ORDER, True, COLUMNS, equal=tuple(equal))
        query = q.page(shape, system=tenant is None, keyset=after is not None)
        params = q.page_params(tenant, limit=limit + 1, offset=offset, after=after, equal=equal)

        def work(connection: sa.Connection) -> Page[Materialization]:
            rows = connection.execute(query, params).all()
            return to_page(rows, limit, lambda r: (r.id,), lambda row: Materialization(*row))

        return self._db.run("materializations.list", tenant, work)

    def latest(
        self, tenant: str | None, asset_key: str, partition_key: str | None = None
    ) -> Materialization | None:
        query = q.latest_materialization(tenant, asset_key, partition_key)

        def work(connection: sa.Connection) -> Materialization | None:
            row = connection.execute(query).first()
            return None if row is None else materialization_record(row)

        return self._db.run("materializations.latest", tenant, work)

    def delete(self, tenant: str | None, materialization_id: str) -> bool:
        def work(connection: sa.Connection) -> bool:
            return (
                connection.execute(q.delete_materialization(tenant, materialization_id)).rowcount
                > 0
            )

        return self._db.run("materializations.delete", tenant, work, write=True)
