"""The registry's records: assets, dependencies, workflows; and the `Page` of any list.

Records come back from reads (they carry the row's public id — a ULID, see
`servo.catalog.ids` — the tenant and the times);
specs go into writes. Times are epoch microseconds, like the engine's projections.
A ``tenant_id`` of None marks a global row: written by the system (a call with no
tenant), readable by every tenant. The run history's records are in
`servo.catalog.run_records`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Generic, TypeVar

from servo.graph.lineage import DepType

T = TypeVar("T")

DEPENDENCY_TYPES: Final[tuple[str, ...]] = ("data", "metadata", "control")

_NO_TAGS: Mapping[str, str] = MappingProxyType({})


def _frozen_tags(tags: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(tags))


@dataclass(frozen=True, slots=True)
class Dependency:
    """One dependency of an asset.

    Attributes:
        name: the upstream asset.
        type: ``data``, ``metadata`` or ``control``.
    """

    name: str
    type: DepType = "data"


@dataclass(frozen=True, slots=True)
class AssetSpec:
    """An asset definition to register (its dependency edges are replaced with it).

    Attributes:
        name: the asset's name, unique per tenant.
        dependencies: its upstream edges.
        description: one line for people.
        owner: the team or person responsible.
        asset_type: free-form kind (``table``, ``report``, ...).
        tags: free-form labels.
        timeout_s: the per-attempt timeout, seconds.
    """

    name: str
    dependencies: tuple[Dependency, ...] = ()
    description: str | None = None
    owner: str | None = None
    asset_type: str | None = None
    tags: Mapping[str, str] = field(default_factory=lambda: _NO_TAGS, hash=False)
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", _frozen_tags(self.tags))


@dataclass(frozen=True, slots=True)
class Asset:
    """A registered asset.

    Attributes:
        id: public id (a ULID, kept across updates).
        tenant_id: owning tenant; None for a global asset.
        name: the asset's name.
        dependencies: its upstream edges, sorted by name.
        description: one line for people.
        owner: the team or person responsible.
        asset_type: free-form kind.
        tags: free-form labels.
        timeout_s: the per-attempt timeout, seconds.
        created_at: first registration (epoch µs).
        updated_at: last change (epoch µs).
    """

    id: str
    tenant_id: str | None
    name: str
    dependencies: tuple[Dependency, ...]
    description: str | None
    owner: str | None
    asset_type: str | None
    tags: Mapping[str, str] = field(hash=False)
    timeout_s: float | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    """A workflow definition to register; a changed definition becomes a new version.

    Attributes:
        name: the workflow's name, unique per tenant.
        assets: the assets it groups, in discovery order.
        executor: the executor it asks for, or None for the default.
        description: one line for people.
    """

    name: str
    assets: tuple[str, ...] = ()
    executor: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Workflow:
    """One version of a workflow definition.

    Attributes:
        id: public id of this version (a ULID).
        tenant_id: owning tenant; None for a global workflow.
        name: the workflow's name.
        version: 1 for the first definition, +1 for each changed one.
        assets: the assets it groups.
        executor: the executor it asks for.
        description: one line for people.
        definition_hash: sha256 of the definition, identifies identical versions.
        created_at: when this version was registered (epoch µs).
    """

    id: str
    tenant_id: str | None
    name: str
    version: int
    assets: tuple[str, ...]
    executor: str | None
    description: str | None
    definition_hash: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list.

    Attributes:
        items: the rows of this page, in the list's order.
        next_cursor: pass it as ``cursor`` for the next page (keyset); None at the end.
    """

    items: tuple[T, ...]
    next_cursor: str | None
