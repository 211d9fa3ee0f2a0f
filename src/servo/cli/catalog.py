"""``servo catalog migrate|status``, and ``servo assets`` / ``servo lineage`` over the catalog.

``servo catalog migrate`` brings the configured catalog (``database.url``, else
SQLite under the home) to this Servo's schema revision, as the login user. ``servo
catalog status`` shows which catalog is configured and its revision.

``servo assets`` and ``servo lineage`` read the definitions when they are named
explicitly (``--defs`` / ``SERVO_DEFS``) or when no catalog is configured, and the
catalog otherwise (`servo.cli._session` says when one is), for ``--tenant``
(``SERVO_TENANT``). The JSON shapes are the same either way; catalog answers add
``"source": "catalog"`` and ``"tenant"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from servo.cli._session import CliState, catalog_configured, configure, with_home

if TYPE_CHECKING:
    from servo.config.settings import Settings

catalog_app = typer.Typer(help="The metadata catalog.", no_args_is_help=True)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home", help="Servo home (default: $SERVO_HOME, else ./.servo).", show_default=False
    ),
]
TenantOption = Annotated[
    str, typer.Option("--tenant", help="Tenant to read the catalog as.", envvar="SERVO_TENANT")
]
DefsOption = Annotated[
    str | None,
    typer.Option(
        "--defs",
        envvar="SERVO_DEFS",
        help="Definitions: a .py file, a directory with definitions.py, or a module name. "
        "Given, they are read instead of the catalog. Default: the catalog when one is "
        "configured, else ./definitions.py.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _settings(ctx: typer.Context, home: Path | None) -> Settings:
    state = ctx.find_root().obj
    return with_home(configure(state if isinstance(state, CliState) else None), home)


def _where(settings: Settings) -> str:
    import sqlalchemy as sa

    from servo.catalog.catalog import catalog_url

    return sa.make_url(catalog_url(settings)).render_as_string(hide_password=True)


@catalog_app.command("migrate")
def migrate(
    ctx: typer.Context,
    home: HomeOption = None,
    revision: Annotated[str, typer.Option("--revision", help="Target revision.")] = "head",
    as_json: JsonOption = False,
) -> None:
    """Create or upgrade the catalog's tables (and, on PostgreSQL, the app role and RLS)."""
    from servo.catalog.catalog import migrate_catalog
    from servo.cli.render import write_json

    settings = _settings(ctx, home)
    before, after = migrate_catalog(settings, revision)
    if as_json:
        write_json({"catalog": _where(settings), "before": before, "after": after})
    else:
        typer.echo(f"catalog {_where(settings)}: {before or 'empty'} -> {after or 'empty'}")


@catalog_app.command("status")
def status(ctx: typer.Context, home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Show the configured catalog and its schema revision."""
    from servo.catalog.catalog import open_catalog
    from servo.catalog.migrate import HEAD_REVISION, stored_revision
    from servo.cli.render import write_json

    settings = _settings(ctx, home)
    with open_catalog(settings) as catalog:
        revision = catalog.db.run("catalog.revision", None, stored_revision)
        backend = catalog.backend
    payload = {
        "catalog": _where(settings),
        "backend": backend,
        "revision": revision,
        "head": HEAD_REVISION,
    }
    if as_json:
        write_json(payload)
    else:
        typer.echo(f"catalog {payload['catalog']} ({backend}): revision {revision}")


def assets(
    ctx: typer.Context,
    defs: DefsOption = None,
    home: HomeOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """List the assets with their dependencies, description, owner and tags."""
    settings = _settings(ctx, home)
    if defs or not catalog_configured(settings):
        from servo.cli.main import assets_from_definitions

        assets_from_definitions(ctx, defs, as_json)
        return
    from servo.catalog.catalog import open_catalog
    from servo.catalog.records import Asset
    from servo.cli import render

    found: list[Asset] = []
    with open_catalog(settings) as catalog:
        cursor = None
        while True:
            page = catalog.assets.list(tenant, limit=1000, cursor=cursor)
            found.extend(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    found = _topological(found)
    if as_json:
        payload = [_asset_payload(a) for a in found]
        render.write_json({"assets": payload, "source": "catalog", "tenant": tenant})
    else:
        # print_assets reads name, dependencies, owner, tags and description: Asset has them
        render.print_assets(cast(Any, {a.name: a for a in found}))


def _topological(found: list[Any]) -> list[Any]:
    """Assets in dependency order (names sorted within a layer), like the definitions."""
    from servo.catalog.lineage import topological
    from servo.graph.lineage import Edge

    edges = [Edge(d.name, a.name, d.type) for a in found for d in a.dependencies]
    position = {name: i for i, name in enumerate(topological([a.name for a in found], edges))}
    return sorted(found, key=lambda a: (position[a.name], a.tenant_id is None))


def _asset_payload(asset: Any) -> dict[str, Any]:
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
    home: HomeOption = None,
    tenant: TenantOption = "default",
    as_json: JsonOption = False,
) -> None:
    """Show what an asset depends on and what depends on it."""
    settings = _settings(ctx, home)
    if defs or not catalog_configured(settings):
        from servo.cli.main import lineage_from_definitions

        lineage_from_definitions(ctx, asset_name, defs, upstream, downstream, depth, as_json)
        return
    from servo.catalog.catalog import open_catalog
    from servo.cli import render
    from servo.errors import ServoError

    direction = render.direction_of(upstream, downstream)
    with open_catalog(settings) as catalog:
        found = catalog.lineage.lineage(tenant, asset_name, depth)
    if found is None:
        raise ServoError(
            f"no asset {asset_name!r} in the catalog for tenant {tenant!r}; "
            "'servo assets' lists them, or pass --defs to read the definitions"
        )
    if as_json:
        render.write_json(
            {**render.lineage_payload(found, direction), "source": "catalog", "tenant": tenant}
        )
    else:
        render.print_lineage(found, direction)
