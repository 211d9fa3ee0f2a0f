"""The real ``servo`` in a subprocess: selections, workflows, shared options, -h, JSON.

Also where ``servo assets`` / ``servo lineage`` read from (definitions or catalog),
tables at 80 columns, ISO times and JSON errors.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import servo

from ._cli import run, write

pytestmark = pytest.mark.e2e

PROJECT = """
from servo import Definitions, asset, workflow


@asset
def a():
    return 1


@asset
def b(a):
    return a + 1


@asset
def c(b):
    return b + 1


@asset
def d():
    return 4


@workflow
def first_two():
    a()
    b()


defs = Definitions(assets=[a, b, c, d], workflows=[first_two])
"""

LONG = "an_asset_with_a_remarkably_long_name_that_keeps_going_and_going"
OTHER = "another_asset_whose_name_is_also_rather_long_for_a_table"
MESSAGE = "this failure message is long so that it cannot fit on one line of eighty columns"
WIDE = f'''
from servo import asset


@asset(owner="a-team-with-a-very-long-owner-name", tags={{"layer": "a-very-long-tag-value"}})
def {LONG}():
    """A description long enough to need wrapping at eighty columns, and some more words."""
    return 1


@asset
def {OTHER}({LONG}):
    raise ValueError("{MESSAGE}")


@asset
def short({LONG}):
    return 2
'''

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def json_of(result: subprocess.CompletedProcess[str], code: int = 0) -> Any:
    assert result.returncode == code, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def assert_iso(payload: dict[str, Any], name: str) -> None:
    """``name`` is ISO 8601 UTC and ``name_us`` the same instant in microseconds."""
    text, us = payload[name], payload[f"{name}_us"]
    assert ISO.fullmatch(text), text
    parsed = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    assert parsed == dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with definitions.py (a, b, c, d; workflow first_two) and a file README.md."""
    folder = tmp_path_factory.mktemp("project")
    write(folder / "definitions.py", PROJECT)
    write(folder / "README.md", "not an asset\n")
    return folder


@pytest.fixture(scope="module")
def made(project: Path) -> dict[str, Any]:
    """One run of every asset into ``project/home`` (its JSON payload)."""
    return json_of(run("materialize", "--home", "home", "--json", cwd=project))


# ---------------------------------------------------------------- selections
def test_several_selection_arguments_are_their_union_in_topological_order(
    project: Path, tmp_path: Path
) -> None:
    home = str(tmp_path / "home")
    payload = json_of(run("materialize", "d", "a+", "--home", home, "--json", cwd=project))
    assert list(payload["tasks"]) == ["a", "d", "b", "c"]
    assert payload["selection"] == "d, a+"
    again = json_of(run("materialize", "a,d", "--home", home, "--json", cwd=project))
    assert set(again["tasks"]) == {"a", "d"}


def test_a_shell_expanded_glob_gets_a_hint(project: Path) -> None:
    result = run("materialize", "definitions.py", "README.md", "--home", "h", cwd=project)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: 'definitions.py' is not an asset but a file in")
    assert line.endswith(
        "quote '*' ('servo materialize \"*\"') or omit the selection to run every asset"
    )
    unknown = run("materialize", "nothing_here", "--home", "h", cwd=project)
    assert unknown.returncode == 2 and "quote" not in unknown.stderr


def test_workflow_runs_its_assets_and_intersects_a_selection(project: Path, tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    ran = json_of(
        run("materialize", "--workflow", "first_two", "--home", home, "--json", cwd=project)
    )
    assert list(ran["tasks"]) == ["a", "b"]
    both = run(
        "materialize", "--workflow", "first_two", "b+", "--home", home, "--json", cwd=project
    )
    assert list(json_of(both)["tasks"]) == ["b"]
    none = run("materialize", "--workflow", "first_two", "d", "--home", home, cwd=project)
    assert none.returncode == 2
    assert "selects none of the assets of workflow 'first_two' (a, b)" in none.stderr
    typo = run("materialize", "--workflow", "first_tw", "--home", home, cwd=project)
    assert typo.returncode == 2
    assert typo.stderr.startswith("error: unknown workflow 'first_tw'; did you mean 'first_two'?")


# ------------------------------------------------------------- help, -m, options
@pytest.mark.parametrize(
    "command",
    [(), ("materialize",), ("runs",), ("runs", "list"), ("catalog", "status"), ("assets",)],
)
def test_dash_h_is_help_everywhere(command: tuple[str, ...]) -> None:
    result = run(*command, "-h")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: servo {' '.join(command)}".rstrip())
    assert "-h, --help" in result.stdout


def test_python_dash_m_servo(project: Path) -> None:
    def python_m(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "servo", *args],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        )

    assert python_m("--version").stdout.strip() == f"servo {servo.__version__}"
    assert python_m("plan", "--json").returncode == 0
    assert python_m("plan", "--defs", "missing.py").returncode == 2


@pytest.mark.parametrize(
    "command",
    [
        ("plan", "--defs", "definitions.py"),
        ("assets", "--home", "h", "--tenant", "t", "--defs", "definitions.py"),
        ("lineage", "a", "--home", "h", "--tenant", "t", "--defs", "definitions.py"),
        ("materialize", "--home", "h", "--tenant", "t", "--defs", "definitions.py"),
        ("runs", "list", "--home", "h", "--tenant", "t"),
        ("runs", "show", "RUN", "--home", "h", "--tenant", "t"),
        ("runs", "cancel", "RUN", "--home", "h", "--tenant", "t"),
        ("runs", "logs", "RUN", "--home", "h", "--tenant", "t"),
        ("values", "show", "a", "--home", "h", "--tenant", "t", "--defs", "definitions.py"),
        ("catalog", "status", "--home", "h"),
        ("catalog", "migrate", "--home", "h"),
    ],
)
def test_shared_options_are_accepted_after_every_subcommand(
    command: tuple[str, ...], project: Path, tmp_path: Path
) -> None:
    """--config after the subcommand is read (a bad one fails), with --json errors too."""
    bad = write(tmp_path / "config.yaml", "log:\n  level: LOUD\n")
    result = run(*command, "--config", str(bad), "--json", cwd=project)
    assert result.returncode == 2, result.stderr
    payload = json.loads(result.stdout)
    assert payload["error"] == "config" and "log.level" in payload["message"]


def test_home_json_and_tenant_after_the_subcommand(project: Path, made: dict[str, Any]) -> None:
    listed = json_of(
        run("runs", "list", "--home", "home", "--tenant", "default", "--json", cwd=project)
    )
    assert [r["run_id"] for r in listed["runs"]] == [made["run_id"]]
    status = json_of(run("catalog", "status", "--home", "home", "--json", cwd=project))
    assert status["backend"] == "sqlite"


# ------------------------------------------------------------------- output
def test_json_times_are_iso_with_the_microseconds_kept(project: Path, made: dict[str, Any]) -> None:
    assert_iso(made, "requested_at")
    assert_iso(made, "completed_at")
    shown = json_of(run("runs", "show", made["run_id"], "--home", "home", "--json", cwd=project))
    assert (shown["requested_at"], shown["requested_at_us"]) == (
        made["requested_at"],
        made["requested_at_us"],
    )
    [summary] = json_of(run("runs", "list", "--home", "home", "--json", cwd=project))["runs"]
    assert_iso(summary, "requested_at")
    assert_iso(summary, "completed_at")


def test_tables_fit_80_columns(tmp_path: Path) -> None:
    write(tmp_path / "definitions.py", WIDE)
    home = str(tmp_path / "home")
    outputs = {
        "plan": run("plan", cwd=tmp_path, COLUMNS="80"),
        "lineage": run("lineage", "short", cwd=tmp_path, COLUMNS="80"),
        "assets": run("assets", cwd=tmp_path, COLUMNS="80"),
        "materialize": run("materialize", "--home", home, cwd=tmp_path, COLUMNS="80"),
    }
    run_id = re.findall(r"run (\w{26}): failed", outputs["materialize"].stdout)[0]
    outputs["runs list"] = run("runs", "list", "--home", home, cwd=tmp_path, COLUMNS="80")
    outputs["runs show"] = run("runs", "show", run_id, "--home", home, cwd=tmp_path, COLUMNS="80")
    for command, result in outputs.items():
        assert result.returncode == (1 if command == "materialize" else 0), result.stderr
        widths = [len(line) for line in result.stdout.splitlines()]
        assert max(widths) <= 80, (command, result.stdout)
    for command in ("plan", "lineage", "assets", "materialize", "runs show"):
        text = outputs[command].stdout
        assert "short" in text and LONG[:20] in text, (command, text)
    for command in ("materialize", "runs show"):
        flowing = " ".join(outputs[command].stdout.split())
        assert f"ValueError: {MESSAGE}" in flowing
        assert "failed" in flowing and "succeeded" in flowing
    assert "a-team-with-a-v…" in outputs["assets"].stdout
    assert run_id in outputs["runs list"].stdout


# ------------------------------------------------------------------ JSON errors
@pytest.mark.parametrize(
    ("args", "kind", "fragment"),
    [
        (("plan", "--bogus"), "usage", "No such option: --bogus"),
        (("nope",), "usage", "No such command 'nope'"),
        (("lineage",), "usage", "Missing argument 'ASSET'"),
        (("plan", "--defs", "missing.py"), "definition", "definitions file not found"),
        (("materialize", "zzz", "--home", "h"), "selection", "unknown asset 'zzz'"),
        (("runs", "show", "NOPE", "--home", "home"), "run_not_found", "no run 'NOPE'"),
    ],
)
def test_json_errors_are_json_on_stdout_with_the_same_exit_code(
    args: tuple[str, ...], kind: str, fragment: str, project: Path, made: dict[str, Any]
) -> None:
    result = run(*args, "--json", cwd=project)
    assert result.returncode == 2
    payload = json.loads(result.stdout)
    assert payload["error"] == kind and fragment in payload["message"]
    assert "\n" not in payload["message"] and result.stderr == ""
    text = run(*args, cwd=project)
    assert text.returncode == 2 and text.stderr.startswith("error: ")


# ------------------------------------------------------- assets/lineage source
def test_assets_and_lineage_say_where_they_read_from(
    project: Path, made: dict[str, Any], tmp_path: Path
) -> None:
    home = str(project / "home")
    from_defs = run("assets", "--home", home, cwd=project)
    assert from_defs.returncode == 0 and from_defs.stderr == "from definitions: ./definitions.py\n"
    payload = json_of(run("lineage", "b", "--home", home, "--json", cwd=project))
    assert payload["source"] == "definitions" and payload["assets"] == ["a", "c"]
    forced = run("assets", "--home", home, "--catalog", cwd=project)
    assert forced.returncode == 0, forced.stderr
    assert re.fullmatch(
        r"from catalog sqlite:///\S+ \(tenant default\) as of \S+Z\n", forced.stderr
    )
    elsewhere = json_of(run("assets", "--home", home, "--json", cwd=tmp_path))
    assert elsewhere["source"] == "catalog" and [a["name"] for a in elsewhere["assets"]] == [
        "a",
        "d",
        "b",
        "c",
    ]
    assert elsewhere["as_of_us"] >= made["requested_at_us"]
    assert_iso(elsewhere, "as_of")
    lineage = json_of(run("lineage", "b", "--home", home, "--json", cwd=tmp_path))
    assert lineage["source"] == "catalog" and lineage["assets"] == ["a", "c"]
    nothing = run("lineage", "b", "--home", str(tmp_path / "empty"), cwd=tmp_path)
    assert nothing.returncode == 2
    [line] = nothing.stderr.splitlines()
    assert line.startswith("error: nothing to read: no definitions (pass --defs PATH")
    assert "run 'servo materialize' to create one" in line
