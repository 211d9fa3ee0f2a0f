"""The CLI with the catalog, in process: materialize projects, reads use the catalog."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from servo.catalog.migrate import HEAD_REVISION
from servo.cli.main import main

DEFS = '''
from servo import asset


@asset(owner="data", tags={"layer": "raw"})
def source() -> list[int]:
    return [1, 2, 3]


@asset
def doubled(source: list[int]) -> list[int]:
    """Each value twice."""
    return [v * 2 for v in source]


@asset
def total(doubled: list[int]) -> int:
    return sum(doubled)
'''


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SERVO_DATABASE_URL", "SERVO_DEFS", "SERVO_TENANT", "SERVO_HOME", "SERVO_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def defs(tmp_path: Path) -> str:
    path = tmp_path / "project" / "pipeline.py"
    path.parent.mkdir()
    path.write_text(DEFS, encoding="utf-8")
    return str(path)


def servo(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    """Run the CLI in process; returns (exit code, parsed JSON or text, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except json.JSONDecodeError:
        return code, out, err


def test_runs_read_the_catalog_per_tenant(capsys: pytest.CaptureFixture[str], defs: str) -> None:
    code, acme, _ = servo(
        capsys, "materialize", "--defs", defs, "--home", "h", "--tenant", "acme", "--json"
    )
    assert code == 0 and acme["status"] == "succeeded"
    code, globex, _ = servo(
        capsys, "materialize", "--defs", defs, "--home", "h", "--tenant", "globex", "--json"
    )
    assert code == 0 and Path("h/catalog.db").is_file()
    code, listed, _ = servo(capsys, "runs", "list", "--home", "h", "--tenant", "acme", "--json")
    assert code == 0 and listed["source"] == "catalog"
    assert [r["run_id"] for r in listed["runs"]] == [acme["run_id"]]
    assert listed["runs"][0]["succeeded"] == 3 and listed["runs"][0]["status"] == "succeeded"
    code, shown, _ = servo(
        capsys, "runs", "show", acme["run_id"], "--home", "h", "--tenant", "acme", "--json"
    )
    assert code == 0 and shown["tasks"] == acme["tasks"] and shown["status"] == "succeeded"
    assert shown["requested_at"] == acme["requested_at"]
    code, _, err = servo(
        capsys, "runs", "show", globex["run_id"], "--home", "h", "--tenant", "acme"
    )
    assert code == 2 and f"no run '{globex['run_id']}'" in err
    code, table, _ = servo(capsys, "runs", "list", "--home", "h", "--tenant", "globex")
    assert code == 0 and globex["run_id"] in table and acme["run_id"] not in table


def test_runs_read_the_projections_when_no_catalog_exists(
    capsys: pytest.CaptureFixture[str], defs: str
) -> None:
    code, made, _ = servo(capsys, "materialize", "--defs", defs, "--home", "h", "--json")
    Path("h/catalog.db").unlink()
    code, listed, _ = servo(capsys, "runs", "list", "--home", "h", "--json")
    assert code == 0 and listed["source"] == "projections"
    assert [r["run_id"] for r in listed["runs"]] == [made["run_id"]]


def without_source(payload: dict[str, Any]) -> dict[str, Any]:
    keys = ("source", "definitions", "tenant", "as_of", "as_of_us")
    return {k: v for k, v in payload.items() if k not in keys}


def test_assets_and_lineage_read_the_definitions_when_found_else_the_catalog(
    capsys: pytest.CaptureFixture[str], defs: str
) -> None:
    code, _, err = servo(capsys, "assets", "--home", "h")
    assert code == 2 and "nothing to read" in err  # no catalog, no definitions.py
    assert "--defs PATH" in err and "servo materialize" in err
    servo(capsys, "materialize", "--defs", defs, "--home", "h", "--tenant", "acme", "--json")
    code, from_catalog, _ = servo(capsys, "assets", "--home", "h", "--tenant", "acme", "--json")
    code_defs, from_defs, _ = servo(capsys, "assets", "--defs", defs, "--json")
    assert code == code_defs == 0
    assert from_catalog["source"] == "catalog" and from_catalog["tenant"] == "acme"
    assert from_catalog["as_of"].endswith("Z") and from_catalog["as_of_us"] > 0
    assert from_defs["source"] == "definitions" and from_defs["definitions"] == defs
    assert without_source(from_catalog) == without_source(from_defs)
    code, other, _ = servo(capsys, "assets", "--home", "h", "--tenant", "globex", "--json")
    assert code == 0 and other["assets"] == [] and other["as_of"] is None
    code, lineage, _ = servo(
        capsys, "lineage", "total", "--home", "h", "--tenant", "acme", "--json"
    )
    code_defs, lineage_defs, _ = servo(capsys, "lineage", "total", "--defs", defs, "--json")
    assert code == code_defs == 0 and lineage["source"] == "catalog"
    assert without_source(lineage) == without_source(lineage_defs)
    code, _, err = servo(capsys, "lineage", "nope", "--home", "h", "--tenant", "acme")
    assert code == 2 and "no asset 'nope' in the catalog" in err
    code, table, err = servo(capsys, "assets", "--home", "h", "--tenant", "acme")
    assert code == 0 and "doubled" in table and err.startswith("from catalog sqlite:")
    Path("definitions.py").write_text(DEFS, encoding="utf-8")
    code, found, _ = servo(capsys, "assets", "--home", "h", "--json")
    assert code == 0 and found["source"] == "definitions"
    code, _, err = servo(capsys, "lineage", "total", "--home", "h")
    assert code == 0 and err == "from definitions: ./definitions.py\n"
    code, forced, _ = servo(capsys, "assets", "--home", "h", "--catalog", "--json")
    assert code == 0 and forced["source"] == "catalog"
    code, forced, _ = servo(capsys, "assets", "--home", "h", "--catalog", "--defs", defs, "--json")
    assert code == 0 and forced["source"] == "catalog"
    code, _, err = servo(capsys, "assets", "--home", "elsewhere", "--catalog")
    assert code == 2 and "no catalog in elsewhere" in err and "drop --catalog" in err


def test_catalog_migrate_and_status(capsys: pytest.CaptureFixture[str]) -> None:
    code, migrated, _ = servo(capsys, "catalog", "migrate", "--home", "h", "--json")
    assert code == 0 and (migrated["before"], migrated["after"]) == (None, HEAD_REVISION)
    code, text, _ = servo(capsys, "catalog", "migrate", "--home", "h")
    assert code == 0 and f"{HEAD_REVISION} -> {HEAD_REVISION}" in text
    code, status, _ = servo(capsys, "catalog", "status", "--home", "h", "--json")
    assert code == 0 and status["backend"] == "sqlite" and status["revision"] == status["head"]


def test_an_unreachable_catalog_does_not_stop_a_run(
    capsys: pytest.CaptureFixture[str], defs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVO_DATABASE_URL", "postgresql://servo@127.0.0.1:9/nowhere")
    monkeypatch.setenv("SERVO_DATABASE_CONNECTION_TIMEOUT", "1")
    code, made, err = servo(capsys, "materialize", "--defs", defs, "--home", "h", "--json")
    assert code == 0 and made["status"] == "succeeded"
    assert "catalog.unavailable_run_continues" in err
    code, _, err = servo(capsys, "runs", "list", "--home", "h")
    assert code == 2 and err.splitlines()[-1].startswith("error: catalog unavailable")


def test_a_bad_database_url_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], defs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVO_DATABASE_URL", "mysql://x@localhost/db")
    code, _, err = servo(capsys, "materialize", "--defs", defs, "--home", "h")
    assert code == 2 and "SERVO_DATABASE_URL" in err and "not supported" in err


def test_the_cli_and_servo_do_not_import_sqlalchemy_or_alembic() -> None:
    code = (
        "import sys, servo, servo.catalog, servo.cli.main; "
        "print(sorted(m for m in ('sqlalchemy', 'alembic', 'psycopg') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
