"""Alembic environment: migrate over the connection `servo.catalog.migrate` passes in.

There is no alembic.ini: the script location and the connection come from code,
so migrations run the same from the CLI (``servo catalog migrate``), tests and
services.
"""

from __future__ import annotations

from alembic import context

from servo.catalog.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
