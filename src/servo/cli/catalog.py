"""``servo catalog migrate|status``: the metadata catalog's schema.

``servo catalog migrate`` brings the configured catalog (``database.url``, else
SQLite under the home) to this Servo's schema revision, as the login user. ``servo
catalog status`` shows which catalog is configured and its revision. (``servo
assets`` and ``servo lineage`` read the catalog too: `servo.cli.reads`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from servo.cli._session import configure, with_home
from servo.cli.options import ConfigOption, HomeOption, JsonOption, state_of

if TYPE_CHECKING:
    from servo.config.settings import Settings

catalog_app = typer.Typer(help="The metadata catalog.", no_args_is_help=True)


def _settings(ctx: typer.Context, home: Path | None) -> Settings:
    return with_home(configure(state_of(ctx)), home)


def where(settings: Settings) -> str:
    """The configured catalog's URL, password hidden."""
    import sqlalchemy as sa

    from servo.catalog.catalog import catalog_url

    return sa.make_url(catalog_url(settings)).render_as_string(hide_password=True)


@catalog_app.command("migrate")
def migrate(
    ctx: typer.Context,
    home: HomeOption = None,
    revision: Annotated[str, typer.Option("--revision", help="Target revision.")] = "head",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create or upgrade the catalog's tables (and, on PostgreSQL, the app role and RLS)."""
    from servo.catalog.catalog import migrate_catalog
    from servo.cli.render import write_json

    settings = _settings(ctx, home)
    before, after = migrate_catalog(settings, revision)
    if as_json:
        write_json({"catalog": where(settings), "before": before, "after": after})
    else:
        typer.echo(f"catalog {where(settings)}: {before or 'empty'} -> {after or 'empty'}")


@catalog_app.command("status")
def status(
    ctx: typer.Context,
    home: HomeOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the configured catalog and its schema revision."""
    from servo.catalog.catalog import open_catalog
    from servo.catalog.migrate import HEAD_REVISION, stored_revision
    from servo.cli.render import write_json

    settings = _settings(ctx, home)
    with open_catalog(settings) as catalog:
        revision = catalog.db.run("catalog.revision", None, stored_revision)
        backend = catalog.backend
    payload = {
        "catalog": where(settings),
        "backend": backend,
        "revision": revision,
        "head": HEAD_REVISION,
    }
    if as_json:
        write_json(payload)
    else:
        typer.echo(f"catalog {payload['catalog']} ({backend}): revision {revision}")
