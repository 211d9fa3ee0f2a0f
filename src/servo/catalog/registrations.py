"""Which definitions a tenant last registered (`RegistrationCatalog` over SQL).

One row per tenant in ``definitions_state``: the hash `servo.catalog.registry`
computes over every asset and workflow spec. Registering again with the same hash
is skipped, so an unchanged project costs one indexed read per run.
"""

from __future__ import annotations

import sqlalchemy as sa

from servo.catalog import queries as q
from servo.catalog.database import Database


class SqlRegistrationCatalog:
    """`servo.catalog.protocol.RegistrationCatalog` over a `Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def registered_hash(self, tenant: str) -> str | None:
        query = q.registered_hash(tenant)

        def work(connection: sa.Connection) -> str | None:
            value = connection.execute(query).scalar()
            return None if value is None else str(value)

        return self._db.run("registrations.get", tenant, work)

    def record_hash(self, tenant: str, definitions_hash: str) -> None:
        if not tenant:
            raise ValueError("a registration hash belongs to a tenant, never to the system")
        row = {
            "tenant_id": tenant,
            "definitions_hash": definitions_hash,
            "updated_at": self._db.now(),
        }
        statement = q.save_registered_hash(self._db.insert)
        self._db.run(
            "registrations.record",
            tenant,
            lambda connection: connection.execute(statement, row),
            write=True,
        )
