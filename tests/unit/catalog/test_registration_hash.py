"""Definitions are registered only when they changed, keyed by a hash in the catalog."""

from __future__ import annotations

from typing import Any

import pytest

from servo import Definitions, asset
from servo.catalog import SqlCatalog
from servo.catalog.registry import definitions_hash, register_if_changed


@asset(owner="team", tags={"layer": "raw"})
def a() -> int:
    return 1


@asset
def b(a: int) -> int:
    return a + 1


@asset(description="changed")
def b2(a: int) -> int:
    return a + 2


def test_the_hash_follows_the_specs_not_the_order() -> None:
    first = definitions_hash(Definitions(assets=[a, b]))
    assert first == definitions_hash(Definitions(assets=[b, a]))
    assert first != definitions_hash(Definitions(assets=[a]))
    assert len(first) == 64


def test_unchanged_definitions_are_not_registered_again(
    sqlite_catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    defs = Definitions(assets=[a, b])
    assert register_if_changed(sqlite_catalog, "acme", defs) is True
    assert sqlite_catalog.registrations.registered_hash("acme") == definitions_hash(defs)
    calls: list[Any] = []
    monkeypatch.setattr(
        "servo.catalog.registry.register_definitions", lambda *args: calls.append(args)
    )
    assert register_if_changed(sqlite_catalog, "acme", defs) is False
    assert calls == []
    assert register_if_changed(sqlite_catalog, "globex", defs) is True  # per tenant
    assert len(calls) == 1


def test_changed_definitions_are_registered_and_the_hash_moves(
    sqlite_catalog: SqlCatalog,
) -> None:
    register_if_changed(sqlite_catalog, "acme", Definitions(assets=[a, b]))
    changed = Definitions(assets=[a, b, b2])
    assert register_if_changed(sqlite_catalog, "acme", changed) is True
    names = {x.name for x in sqlite_catalog.assets.list("acme").items}
    assert names == {"a", "b", "b2"}
    assert sqlite_catalog.registrations.registered_hash("acme") == definitions_hash(changed)
    assert sqlite_catalog.registrations.registered_hash("globex") is None


def test_a_registration_cut_short_is_done_again(
    sqlite_catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("cut short")

    monkeypatch.setattr("servo.catalog.registry.register_definitions", broken)
    with pytest.raises(RuntimeError):
        register_if_changed(sqlite_catalog, "acme", Definitions(assets=[a, b]))
    assert sqlite_catalog.registrations.registered_hash("acme") is None
