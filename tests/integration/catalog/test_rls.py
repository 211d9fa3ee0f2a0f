"""Row-level security, checked with raw SQL as ``servo_app`` and through the catalog.

Raw SQL connects as the test superuser and runs ``SET ROLE servo_app``, exactly
what the catalog's engine does on every connection; from then on the superuser's
bypass no longer applies.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from servo.catalog import AssetSpec, ExecutionSpec, SqlCatalog, open_catalog
from servo.catalog.schema import TABLES
from servo.config.settings import DatabaseSettings, Settings
from servo.errors import CatalogError, TenantIsolationError

pytestmark = pytest.mark.integration

INSERT = """
    INSERT INTO executions (id, tenant_id, execution_id, workspace_id, status, n_tasks,
        n_succeeded, n_failed, n_skipped, n_cancelled, requested_at, created_at, updated_at)
    VALUES (md5(random()::text), %s, %s, 'default', 'RUNNING', 0, 0, 0, 0, 0, 1, 1, 1)
"""


@pytest.fixture
def app(postgres_url: str) -> Iterator[psycopg.Connection]:
    """A raw connection acting as servo_app (autocommit; set the tenant with `as_tenant`)."""
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("SET ROLE servo_app")
        yield connection


def as_tenant(connection: psycopg.Connection, tenant: str | None) -> None:
    """Bind the session to `tenant` (None: the system) for the following statements."""
    connection.execute("SELECT set_config('app.tenant_id', %s, false)", (tenant or "",))


def ids(connection: psycopg.Connection) -> list[str]:
    return [r[0] for r in connection.execute("SELECT execution_id FROM executions ORDER BY 1")]


def test_servo_app_is_an_unprivileged_role_and_every_table_forces_rls(
    app: psycopg.Connection,
) -> None:
    assert app.execute("SELECT current_user").fetchone() == ("servo_app",)
    flags = app.execute(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'servo_app'"
    ).fetchone()
    assert flags == (False, False)
    rows = app.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relkind = 'r' AND relrowsecurity AND relforcerowsecurity"
    ).fetchall()
    assert {r[0] for r in rows} == {t.name for t in TABLES}


def test_reads_see_own_and_global_rows_only(app: psycopg.Connection) -> None:
    as_tenant(app, None)
    app.execute(INSERT, (None, "global-run"))
    as_tenant(app, "acme")
    app.execute(INSERT, ("acme", "acme-run"))
    as_tenant(app, "globex")
    app.execute(INSERT, ("globex", "globex-run"))
    assert ids(app) == ["global-run", "globex-run"]
    as_tenant(app, "acme")
    assert ids(app) == ["acme-run", "global-run"]
    assert app.execute("SELECT count(*) FROM executions WHERE tenant_id = 'globex'").fetchone() == (
        0,
    )
    as_tenant(app, None)
    assert ids(app) == ["global-run"]  # the system sees global rows only
    app.execute("RESET app.tenant_id")
    assert ids(app) == ["global-run"]  # and so does a session that never set a tenant


def test_cross_tenant_writes_fail_or_touch_nothing(app: psycopg.Connection) -> None:
    as_tenant(app, "globex")
    app.execute(INSERT, ("globex", "globex-run"))
    as_tenant(app, None)
    app.execute(INSERT, (None, "global-run"))
    as_tenant(app, "acme")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        app.execute(INSERT, ("globex", "forged"))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        app.execute(INSERT, (None, "forged-global"))  # global rows are the system's
    assert app.execute("UPDATE executions SET status = 'FAILED'").rowcount == 0
    assert app.execute("DELETE FROM executions").rowcount == 0
    app.execute(INSERT, ("acme", "acme-run"))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        app.execute("UPDATE executions SET tenant_id = 'globex' WHERE execution_id = 'acme-run'")
    as_tenant(app, "globex")
    assert ids(app) == ["global-run", "globex-run"]
    assert app.execute("SELECT status FROM executions WHERE tenant_id IS NULL").fetchone() == (
        "RUNNING",
    )


def test_the_tenant_is_per_transaction(app: psycopg.Connection) -> None:
    with app.transaction():
        app.execute("SELECT set_config('app.tenant_id', 'acme', true)")
        app.execute(INSERT, ("acme", "acme-run"))
        assert ids(app) == ["acme-run"]
    assert ids(app) == []  # the setting ended with the transaction


@pytest.fixture
def catalog(postgres_url: str, tmp_path: Path) -> Iterator[SqlCatalog]:
    settings = Settings(home=tmp_path, database=DatabaseSettings(url=postgres_url, pool_size=1))
    with open_catalog(settings) as opened:
        yield opened


def test_the_catalog_acts_as_servo_app_and_never_leaks_a_tenant(catalog: SqlCatalog) -> None:
    user = catalog.db.run(
        "test.whoami", None, lambda c: c.exec_driver_sql("SELECT current_user").scalar()
    )
    assert user == "servo_app"
    catalog.executions.create("acme", ExecutionSpec("acme-run"))
    # one pooled connection: the next transaction, for another tenant, reuses it
    assert catalog.executions.list("globex").items == ()
    assert catalog.executions.list(None).items == ()
    assert [e.execution_id for e in catalog.executions.list("acme").items] == ["acme-run"]


def test_a_forged_cross_tenant_write_is_a_tenant_isolation_error(catalog: SqlCatalog) -> None:
    forge = sa.text(INSERT.replace("%s", ":tenant", 1).replace("%s", ":run", 1))
    with pytest.raises(TenantIsolationError):
        catalog.db.run(
            "test.forge",
            "acme",
            lambda c: c.execute(forge, {"tenant": "globex", "run": "x"}),
            write=True,
        )
    catalog.assets.upsert(None, AssetSpec("shared"))
    assert catalog.assets.delete("acme", "shared") is False  # global rows are read-only to tenants
    assert catalog.assets.get("acme", "shared") is not None


def test_a_login_user_that_cannot_act_as_servo_app_gets_a_clear_error(
    postgres_url: str, tmp_path: Path
) -> None:
    outsider = f"servo_test_outsider_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {outsider} LOGIN")
    try:
        url = sa.make_url(postgres_url).set(username=outsider)
        url = url.render_as_string(hide_password=False)  # trust auth, as the tests' servers use
        settings = Settings(home=tmp_path, database=DatabaseSettings(url=url))
        with pytest.raises(CatalogError, match=f"GRANT servo_app TO {outsider}"):
            open_catalog(settings)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP ROLE IF EXISTS {outsider}")
