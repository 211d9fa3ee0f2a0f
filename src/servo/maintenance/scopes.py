"""The engine scopes (tenant, workspace) whose ledger or projections a home holds."""

from __future__ import annotations

from servo.storage.base import ObjectStore

Scope = tuple[str, str]


def home_scopes(store: ObjectStore, tenant_id: str | None = None) -> list[Scope]:
    """Every (tenant, workspace) with a ledger or projections, sorted (lists the store).

    Args:
        store: the object store of the home.
        tenant_id: only this tenant's scopes (its ``default`` workspace at least).
    """
    found: set[Scope] = set()
    for root in ("ledger/", "projections/"):
        prefix = root if tenant_id is None else f"{root}{tenant_id}/"
        for path in store.list_prefix(prefix):
            parts = path.split("/")
            if len(parts) > 3:
                found.add((parts[1], parts[2]))
    if tenant_id is not None:
        found.add((tenant_id, "default"))
    return sorted(found)
