"""The catalog part of ``servo doctor``: it opens, is current, and agrees on runs.

A catalog whose disk is full (or otherwise refuses writes) is reported as
unwritable, not damaged: moving it aside would not help, freeing space does, and
the catalog catches up from the projections by itself afterwards.

A catalog is checked when one is configured: ``database.url``, or the SQLite file
``{home}/catalog.db`` when it exists (a home whose first run has not projected yet
has none, which is not a problem). The SQLite file is inspected without being
migrated (opening it the usual way would migrate it), so checking changes nothing.
Runs are compared with the replay of the ledger, the source of truth: the same run
ids, with the same statuses, for each scope checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from servo.catalog.catalog import catalog_url, open_catalog
from servo.catalog.migrate import HEAD_REVISION, stored_revision
from servo.catalog.sqlite import SqliteBackend, create_sqlite_engine
from servo.errors import CatalogDiskError, CatalogError
from servo.maintenance.doctor import (
    CATALOG_FILE,
    Finding,
    FindingKind,
    ScopeCheck,
    replayed_runs,
)

if TYPE_CHECKING:
    from servo.catalog.protocol import Catalog
    from servo.config.settings import Settings

#: Catalog runs read per page.
PAGE = 1000


def catalog_present(settings: Settings) -> bool:
    """Whether a catalog is configured or exists in the home."""
    return settings.database.url is not None or (Path(settings.home) / CATALOG_FILE).is_file()


def check_catalog(settings: Settings, scopes: Sequence[ScopeCheck]) -> list[Finding]:
    """The catalog's problems (see the module docstring)."""
    if not catalog_present(settings):
        return []
    url = catalog_url(settings)
    where = sa.make_url(url).render_as_string(hide_password=True)
    if settings.database.url is None:
        problem = _sqlite_problem(url, settings.database.connection_timeout)
        if problem is not None:
            return [problem]
    try:
        with open_catalog(settings) as catalog:
            return [f for check in scopes for f in _compare_runs(catalog, check, where)]
    except CatalogDiskError as exc:
        return [_unwritable(str(exc), where)]
    except CatalogError as exc:
        return [Finding(FindingKind.CATALOG_DAMAGED, f"the catalog cannot be read: {exc}", where)]


def _unwritable(detail: str, path: str) -> Finding:
    return Finding(
        FindingKind.CATALOG_UNWRITABLE,
        f"the catalog cannot be written ({detail}): the disk may be full; free space on "
        "it (nothing needs repair: the catalog catches up by itself)",
        path,
    )


def _sqlite_problem(url: str, timeout_s: float) -> Finding | None:
    path = sa.make_url(url).database or url
    engine = create_sqlite_engine(url, pool_size=1, timeout_s=timeout_s)
    try:
        with engine.connect() as connection:
            revision = stored_revision(connection)
            connection.exec_driver_sql("PRAGMA quick_check").all()
    except sa.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        if SqliteBackend().is_disk_error(exc):
            return _unwritable(detail, path)
        return Finding(FindingKind.CATALOG_DAMAGED, f"the catalog is damaged ({detail})", path)
    finally:
        engine.dispose()
    if revision != HEAD_REVISION:
        return Finding(
            FindingKind.CATALOG_OUTDATED,
            f"the catalog is at revision {revision or 'none'}, this Servo needs {HEAD_REVISION}",
            path,
        )
    return None


def catalog_runs(catalog: Catalog, tenant_id: str, workspace_id: str) -> dict[str, str]:
    """Run id -> status of the catalog's executions of one scope."""
    found: dict[str, str] = {}
    cursor = None
    while True:
        page = catalog.executions.list(tenant_id, limit=PAGE, cursor=cursor)
        found.update(
            (e.execution_id, e.status) for e in page.items if e.workspace_id == workspace_id
        )
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def _compare_runs(catalog: Catalog, check: ScopeCheck, where: str) -> Iterable[Finding]:
    tenant_id, workspace_id = check.scope
    have = catalog_runs(catalog, tenant_id, workspace_id)
    want = {r.run_id: r.status for r in replayed_runs(check.replay)}
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    changed = sorted(r for r in set(want) & set(have) if want[r] != have[r])
    if missing or extra or changed:
        yield Finding(
            FindingKind.CATALOG_DISAGREES,
            f"the catalog's runs differ from the ledger's: {len(missing)} missing, "
            f"{len(extra)} unknown to the ledger, {len(changed)} with another status",
            where,
            check.scope,
            tuple(sorted({*missing, *extra, *changed})),
        )
