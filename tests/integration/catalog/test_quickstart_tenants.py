"""Done-when of the catalog: the quickstart materialized for two tenants into PostgreSQL.

Each tenant sees only its own runs through the real ``servo`` command, and through
raw SQL as ``servo_app`` with the tenant set as the application sets it.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.e2e._cli import QUICKSTART, run

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def servo_json(*args: str, **env: str) -> dict[str, object]:
    result = run(*args, "--json", **env)
    assert result.returncode == 0, result.stderr
    payload: dict[str, object] = json.loads(result.stdout)
    return payload


def test_two_tenants_see_only_their_own_runs(postgres_url: str, tmp_path: Path) -> None:
    env = {"SERVO_DATABASE_URL": postgres_url}
    home = str(tmp_path / "home")
    made = {
        tenant: servo_json("materialize", "--defs", str(QUICKSTART), "--home", home,
                           "--tenant", tenant, **env)["run_id"]
        for tenant in ("acme", "globex")
    }  # fmt: skip

    # by the CLI
    for tenant in ("acme", "globex"):
        listed = servo_json("runs", "list", "--home", home, "--tenant", tenant, **env)
        assert listed["source"] == "catalog"
        assert [r["run_id"] for r in listed["runs"]] == [made[tenant]]  # type: ignore[attr-defined]
        assert listed["runs"][0]["succeeded"] == 5  # type: ignore[index]
    foreign = run("runs", "show", made["acme"], "--home", home, "--tenant", "globex", **env)
    assert foreign.returncode == 2 and "no run" in foreign.stderr
    lineage = servo_json(
        "lineage", "sales_report", "--upstream", "--home", home, "--tenant", "acme", **env
    )
    assert lineage["assets"] == ["raw_orders", "clean_orders", "revenue_by_region", "top_customers"]

    # by raw SQL as servo_app, the tenant set per transaction as the catalog sets it
    with psycopg.connect(postgres_url) as connection:
        connection.execute("SET ROLE servo_app")
        seen = {}
        for tenant in ("acme", "globex", "nobody"):
            with connection.transaction():
                connection.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant,))
                seen[tenant] = sorted(
                    r[0] for r in connection.execute("SELECT execution_id FROM executions")
                )
                values = connection.execute(
                    "SELECT count(*), count(DISTINCT tenant_id) FROM materializations"
                ).fetchone()
            assert values is not None and values[1] == (1 if values[0] else 0)
        assert seen == {"acme": [made["acme"]], "globex": [made["globex"]], "nobody": []}
        connection.execute("RESET ROLE")
        everything = connection.execute("SELECT count(*) FROM executions").fetchone()
        assert everything == (2,)  # the superuser (owner) sees all: the isolation is RLS's
