"""Versioned workflow definitions (`WorkflowCatalog` over SQL).

A definition is identified by the sha256 of its canonical JSON (assets, executor,
description). Registering the definition the latest version already has returns
that version; anything else becomes version latest + 1, even a return to an older
definition (versions record history; they are never reused). Two processes
registering at once cannot create the same version twice: ``(tenant, name,
version)`` is unique, and the loser re-reads and tries the next number.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa

from servo.catalog import queries as q
from servo.catalog.database import Database
from servo.catalog.ids import new_id
from servo.catalog.pagination import check_page, decode_cursor, to_page
from servo.catalog.records import Page, Workflow, WorkflowSpec
from servo.catalog.schema import workflows
from servo.errors import CatalogError

#: Attempts at taking the next version number under concurrent registrations.
_MAX_VERSION_RACES = 5

_PAGE = q.PageQuery(
    workflows,
    (workflows.c.name, workflows.c.id),
    False,
    tuple(workflows.c),
    extra=(q.NEWEST_VERSIONS_ONLY,),
)


def definition_of(spec: WorkflowSpec) -> tuple[dict[str, Any], str]:
    """The stored definition document and its hash."""
    document = {
        "assets": list(spec.assets),
        "executor": spec.executor,
        "description": spec.description,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return document, hashlib.sha256(canonical.encode()).hexdigest()


def _record(row: Any) -> Workflow:
    definition = row.definition or {}
    return Workflow(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        version=row.version,
        assets=tuple(definition.get("assets", ())),
        executor=definition.get("executor"),
        description=row.description,
        definition_hash=row.definition_hash,
        created_at=row.created_at,
    )


class SqlWorkflowCatalog:
    """`servo.catalog.protocol.WorkflowCatalog` over a `Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def register(self, tenant: str | None, spec: WorkflowSpec) -> Workflow:
        if not spec.name:
            raise ValueError("a workflow needs a non-empty name")
        document, digest = definition_of(spec)

        def work(connection: sa.Connection) -> Workflow:
            for _ in range(_MAX_VERSION_RACES):
                latest = connection.execute(q.owned_workflow_versions(tenant, spec.name)).first()
                if latest is not None and latest.definition_hash == digest:
                    return _record(latest)
                version = 1 if latest is None else latest.version + 1
                inserted = connection.execute(
                    q.insert_workflow_version(self._db.insert).returning(*workflows.c),
                    {
                        "id": new_id(),
                        "tenant_id": tenant,
                        "name": spec.name,
                        "version": version,
                        "definition": document,
                        "definition_hash": digest,
                        "description": spec.description,
                        "created_at": self._db.now(),
                    },
                ).first()
                if inserted is not None:
                    return _record(inserted)
            raise CatalogError(
                f"workflow {spec.name!r}: lost the race for a version number "
                f"{_MAX_VERSION_RACES} times"
            )

        return self._db.run("workflows.register", tenant, work, write=True)

    def get(self, tenant: str | None, name: str, version: int | None = None) -> Workflow | None:
        def work(connection: sa.Connection) -> Workflow | None:
            row = connection.execute(q.workflow_version(tenant, name, version)).first()
            return None if row is None else _record(row)

        return self._db.run("workflows.get", tenant, work)

    def versions(self, tenant: str | None, name: str) -> tuple[Workflow, ...]:
        def work(connection: sa.Connection) -> tuple[Workflow, ...]:
            return tuple(_record(r) for r in connection.execute(q.workflow_versions(tenant, name)))

        return self._db.run("workflows.versions", tenant, work)

    def list(
        self, tenant: str | None, *, limit: int = 100, offset: int = 0, cursor: str | None = None
    ) -> Page[Workflow]:
        check_page(limit, offset, cursor)
        after = None if cursor is None else decode_cursor(cursor, (str, str))
        query = q.page(_PAGE, system=tenant is None, keyset=after is not None)
        params = q.page_params(tenant, limit=limit + 1, offset=offset, after=after)

        def work(connection: sa.Connection) -> Page[Workflow]:
            rows = connection.execute(query, params).all()
            return to_page(rows, limit, lambda r: (r.name, r.id), _record)

        return self._db.run("workflows.list", tenant, work)

    def delete(self, tenant: str | None, name: str) -> int:
        def work(connection: sa.Connection) -> int:
            return connection.execute(q.delete_workflow(tenant, name)).rowcount

        return self._db.run("workflows.delete", tenant, work, write=True)
