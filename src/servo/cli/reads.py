"""``servo assets`` and ``servo lineage``: read the definitions, or the catalog, and say which.

Where they read from:

1. ``--catalog``: the catalog (an error when none is configured), even when
   definitions are found or named (``SERVO_DEFS`` may be exported for other commands).
2. Definitions found as ``servo plan`` finds them (``--defs``, ``SERVO_DEFS``, else
   ./definitions.py): the definitions, because the code is the source of truth for
   what is defined.
3. Otherwise the catalog, when one is configured (`servo.cli._session`): what was
   registered by the last ``servo materialize``.
4. Neither: one ``error:`` line naming both ways out (exit 2).

Text output says where it came from on stderr (``from definitions: ./definitions.py``,
or ``from catalog ... as of <time>``); JSON adds ``"source": "definitions"`` with
``"definitions"`` (the target), or ``"source": "catalog"`` with ``"tenant"``,
``"as_of"`` (ISO 8601 UTC) and ``"as_of_us"``: the latest time the catalog
registered an asset or projected a run for the tenant, None when it holds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from servo.cli._session import DEFAULT_DEFS, catalog_configured, configure, find_target, with_home
from servo.cli.options import (
    ConfigOption,
    DefsOption,
    HomeOption,
    JsonOption,
    TenantOption,
    state_of,
)
from servo.engine.ids import DEFAULT_WORKSPACE
from servo.errors import ServoError

if TYPE_CHECKING:
    from servo.catalog.protocol import Catalog
    from servo.catalog.records import Asset
    from servo.config.settings import Settings

CatalogOption = Annotated[
    bool,
    typer.Option(
        "--catalog",
        help="Read the catalog (what the last materialize registered), not the definitions.",
    ),
]


@dataclass(frozen=True, slots=True)
class Source:
    """Where a read comes from.

    Attributes:
        target: the definitions target, or None to read the catalog.
        settings: the settings (home applied).
    """

    target: str | None
    settings: Settings


def choose_source(
    ctx: typer.Context, defs: str | None, home: Path | None, use_catalog: bool
) -> Source:
    """Decide what to read (see the module docstring).

    Raises:
        ServoError: ``--catalog`` without a catalog, or neither definitions nor a catalog.
    """
    settings = with_home(configure(state_of(ctx)), home)
    if use_catalog:
        if not catalog_configured(settings):
            raise ServoError(
                f"no catalog in {settings.home}: run 'servo materialize' to create one, set "
                "SERVO_DATABASE_URL, or drop --catalog to read the definitions"
            )
        return Source(None, settings)
    target = find_target(defs)
    if target is not None or catalog_configured(settings):
        return Source(target, settings)
    raise ServoError(
        f"nothing to read: no definitions (pass --defs PATH, set SERVO_DEFS, or run where "
        f"{DEFAULT_DEFS} is) and no catalog in {settings.home} (run 'servo materialize' to "
        "create one, or set SERVO_DATABASE_URL)"
    )


def _shown(target: str) -> str:
    """A definitions target as people read it: ./definitions.py when under the cwd."""
    path = Path(target)
    if not path.is_absolute():
        return target
    try:
        return f"./{path.relative_to(Path.cwd())}"
    except ValueError:
        return target


def _definitions_note(target: str, as_json: bool) -> dict[str, Any]:
    from servo.cli import render

    if not as_json:
        render.note(f"from definitions: {_shown(target)}")
    return {"source": "definitions", "definitions": target}


def _catalog_note(
    settings: Settings, catalog: Catalog, tenant: str, found: list[Asset], as_json: bool
) -> dict[str, Any]:
    """Say that the answer is the catalog's, and as of when."""
    from servo.cli import render
    from servo.cli.catalog import where

    checkpoint = catalog.projection.checkpoint(tenant, DEFAULT_WORKSPACE)
    times = [a.updated_at for a in found]
    if checkpoint is not None:
        times.append(checkpoint.updated_at)
    as_of = max(times, default=None)
    if not as_json:
        when = render.iso_time(as_of) or "never (empty)"
        render.note(f"from catalog {where(settings)} (tenant {tenant}) as of {when}")
    return {"source": "catalog", "tenant": tenant, **render.time_fields("as_of", as_of)}


def _catalog_assets(catalog: Catalog, tenant: str) -> list[Asset]:
    found: list[Asset] = []
    cursor = None
    while True:
        page = catalog.assets.list(tenant, limit=1000, cursor=cursor)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def assets(
    ctx: typer.Context,
    defs: DefsOption = None,
    use_catalog: CatalogOption = False,
    home: HomeOption = None,
    tenant: TenantOption = "default",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the assets with their dependencies, description, owner and tags."""
    from servo.cli import render

    source = choose_source(ctx, defs, home, use_catalog)
    if source.target is not None:
        from servo.sdk.loader import load_definitions

        definitions = load_definitions(source.target).assets
        origin = _definitions_note(source.target, as_json)
        if as_json:
            payload = [render.asset_payload(d) for d in definitions.values()]
            render.write_json({"assets": payload, **origin})
        else:
            render.print_assets(definitions)
        return
    from servo.catalog.catalog import open_catalog

    with open_catalog(source.settings) as catalog:
        found = _topological(_catalog_assets(catalog, tenant))
        origin = _catalog_note(source.settings, catalog, tenant, found, as_json)
    if as_json:
        render.write_json({"assets": [_asset_payload(a) for a in found], **origin})
    else:
        # print_assets reads name, dependencies, owner, tags and description: Asset has them
        render.print_assets(cast(Any, {a.name: a for a in found}))


def _topological(found: list[Asset]) -> list[Asset]:
    """Assets in dependency order (names sorted within a layer), like the definitions."""
    from servo.catalog.lineage import topological
    from servo.graph.lineage import Edge

    edges = [Edge(d.name, a.name, d.type) for a in found for d in a.dependencies]
    position = {name: i for i, name in enumerate(topological([a.name for a in found], edges))}
    return sorted(found, key=lambda a: (position[a.name], a.tenant_id is None))


def _asset_payload(asset: Asset) -> dict[str, Any]:
    return {
        "name": asset.name,
        "dependencies": [{"name": d.name, "type": d.type} for d in asset.dependencies],
        "description": asset.description,
        "owner": asset.owner,
        "tags": dict(asset.tags),
        "asset_type": asset.asset_type,
        "timeout": asset.timeout_s,
    }


def lineage(
    ctx: typer.Context,
    asset_name: Annotated[str, typer.Argument(metavar="ASSET", help="The asset to trace.")],
    defs: DefsOption = None,
    upstream: Annotated[bool, typer.Option("--upstream", help="Only upstream.")] = False,
    downstream: Annotated[bool, typer.Option("--downstream", help="Only downstream.")] = False,
    depth: Annotated[
        int | None,
        typer.Option("--depth", min=1, help="Edges to follow (default: unlimited)."),
    ] = None,
    use_catalog: CatalogOption = False,
    home: HomeOption = None,
    tenant: TenantOption = "default",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what an asset depends on and what depends on it."""
    from servo.cli import render

    direction = render.direction_of(upstream, downstream)
    source = choose_source(ctx, defs, home, use_catalog)
    if source.target is not None:
        from servo.sdk.loader import load_definitions

        found = load_definitions(source.target).graph.lineage(asset_name, depth)
        origin = _definitions_note(source.target, as_json)
    else:
        from servo.catalog.catalog import open_catalog

        with open_catalog(source.settings) as catalog:
            traced = catalog.lineage.lineage(tenant, asset_name, depth)
            if traced is None:
                raise ServoError(
                    f"no asset {asset_name!r} in the catalog for tenant {tenant!r}; "
                    "'servo assets --catalog' lists them, or pass --defs to read the definitions"
                )
            registered = _catalog_assets(catalog, tenant)
            origin = _catalog_note(source.settings, catalog, tenant, registered, as_json)
        found = traced
    if as_json:
        render.write_json({**render.lineage_payload(found, direction), **origin})
    else:
        render.print_lineage(found, direction)
