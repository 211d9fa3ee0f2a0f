"""`servo values show`: a stored value with its location, format, size and rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ._cli import run, write

pytestmark = pytest.mark.e2e

DEFS = """
import os
import pyarrow as pa
from servo import asset

VERSION = int(os.environ.get("VERSION", "1"))

class Point:
    def __init__(self, x):
        self.x = x
    def __repr__(self):
        return f"Point(x={self.x})"

@asset
def table():
    n = 25
    return pa.table({"id": list(range(n)), "name": [f"row-{i}" for i in range(n)]})

@asset
def data():
    return {"version": VERSION, "items": ["a", "b"]}

@asset
def tags():
    return {"red", "green"} if VERSION == 1 else {"blue"}

@asset
def point():
    return Point(VERSION)

@asset
def broken():
    raise RuntimeError("no value")
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("values")
    defs = write(tmp / "defs.py", DEFS)
    home = str(tmp / "home")
    runs = []
    for version in ("1", "2"):
        made = run("materialize", "--defs", str(defs), "--home", home, "--json", VERSION=version)
        assert made.returncode == 1, made.stderr  # broken fails
        runs.append(json.loads(made.stdout)["run_id"])
    return {"home": home, "defs": str(defs), "first": runs[0], "second": runs[1]}


def test_a_table_shows_its_head_within_80_columns(home: dict[str, str]) -> None:
    shown = run("values", "show", "table", "--home", home["home"])
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines if not line.startswith("file  ")) <= 80
    assert f"run       {home['second']}" in shown.stdout
    assert "format    parquet:arrow" in lines and "rows      25" in lines
    assert any(line.startswith("location  outputs/table/__all__/") for line in lines)
    assert "row-9" in shown.stdout and "row-10" not in shown.stdout
    assert "(first 10 of 25 rows)" in shown.stdout

    payload = json.loads(run("values", "show", "table", "--home", home["home"], "--json").stdout)
    assert payload["kind"] == "table" and payload["columns"] == ["id", "name"]
    assert payload["head"][9] == {"id": 9, "name": "row-9"} and len(payload["head"]) == 10
    assert payload["rows"] == 25 and payload["size_bytes"] > 0
    assert payload["materialized_at"].endswith("Z")


def test_plain_data_is_pretty_json_and_run_picks_that_runs_value(home: dict[str, str]) -> None:
    latest = run("values", "show", "data", "--home", home["home"])
    assert latest.returncode == 0, latest.stderr
    assert '  "version": 2,' in latest.stdout and "format    json" in latest.stdout
    first = run("values", "show", "data", "--run", home["first"], "--home", home["home"], "--json")
    payload = json.loads(first.stdout)
    assert payload["value"] == {"version": 1, "items": ["a", "b"]}
    assert payload["run_id"] == home["first"] and payload["kind"] == "json"
    # Small JSON travels inline (ADR 0021): no file to point at.
    assert payload["location"].startswith("inline:") and payload["file"] is None


def test_other_values_show_a_repr(home: dict[str, str]) -> None:
    tags = run("values", "show", "tags", "--run", home["first"], "--home", home["home"])
    assert tags.returncode == 0, tags.stderr
    assert "format    pickle" in tags.stdout
    assert tags.stdout.rstrip().endswith(("{'red', 'green'}", "{'green', 'red'}"))
    point = run("values", "show", "point", "--home", home["home"], "--defs", home["defs"])
    assert point.returncode == 0, point.stderr
    assert point.stdout.rstrip().endswith("Point(x=2)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "error: no asset 'nope' was ever run in this home"),
        (["tabel"], "did you mean 'table'?"),
        (["broken"], "error: asset 'broken' was never materialized in this home"),
        (["data", "--run", "NOPE"], "error: no run 'NOPE' in this home"),
        (["point"], "cannot import (ModuleNotFoundError: No module named 'defs'); pass the"),
    ],
)
def test_unknown_or_missing_values_are_one_error_line(
    home: dict[str, str], args: list[str], message: str
) -> None:
    shown = run("values", "show", *args, "--home", home["home"])
    assert shown.returncode == 2
    assert message in shown.stderr and len(shown.stderr.splitlines()) == 1


def test_a_run_that_did_not_materialize_the_asset_says_so(home: dict[str, str]) -> None:
    shown = run("values", "show", "broken", "--run", home["first"], "--home", home["home"])
    assert shown.returncode == 2
    assert f"asset 'broken' was not materialized in run {home['first']} (it failed)" in (
        shown.stderr
    )


def test_no_home_at_all_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    shown = run("values", "show", "data", "--home", str(tmp_path / "empty"))
    assert shown.returncode == 2 and shown.stderr.startswith("error: no asset 'data'")
