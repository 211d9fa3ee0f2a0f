"""The real ``servo`` command in a subprocess: plan, lineage, assets, errors, version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import servo

from ._cli import QUICKSTART, run, run_json, write

pytestmark = pytest.mark.e2e


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"servo {servo.__version__}"


def test_python_dash_m_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "servo.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, f"servo {servo.__version__}")


def test_cli_import_stays_light() -> None:
    heavy = ("pyarrow", "pydantic", "yaml", "structlog", "prometheus_client")
    code = f"import sys, servo.cli.main; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("plan", "lineage", "assets"):
        assert command in result.stdout


def test_plan_json_on_quickstart() -> None:
    assert run_json("plan", "--defs", str(QUICKSTART)) == {
        "assets": 5,
        "levels": [
            ["raw_orders"],
            ["clean_orders"],
            ["revenue_by_region", "top_customers"],
            ["sales_report"],
        ],
    }


def test_plan_table_uses_definitions_py_in_the_working_directory() -> None:
    result = run("plan", cwd=QUICKSTART)
    assert result.returncode == 0, result.stderr
    assert "revenue_by_region, top_customers" in result.stdout


def test_defs_from_environment(tmp_path: Path) -> None:
    payload = run_json("plan", cwd=tmp_path, SERVO_DEFS=str(QUICKSTART / "definitions.py"))
    assert payload["assets"] == 5


def test_lineage_json_directions() -> None:
    defs = ("--defs", str(QUICKSTART))
    up = run_json("lineage", "sales_report", *defs, "--upstream")
    assert up["asset"] == "sales_report"
    assert up["direction"] == "upstream"
    assert up["depth"] is None
    assert up["assets"] == ["raw_orders", "clean_orders", "revenue_by_region", "top_customers"]
    down = run_json("lineage", "clean_orders", *defs, "--downstream", "--depth", "1")
    assert (down["direction"], down["depth"]) == ("downstream", 1)
    assert down["assets"] == ["revenue_by_region", "top_customers"]
    both = run_json("lineage", "clean_orders", *defs)
    assert both["direction"] == "both"
    assert both["assets"] == ["raw_orders", "revenue_by_region", "top_customers", "sales_report"]
    assert {"upstream": "raw_orders", "downstream": "clean_orders", "type": "data"} in both["edges"]


def test_lineage_table() -> None:
    result = run("lineage", "clean_orders", "--defs", str(QUICKSTART))
    assert result.returncode == 0, result.stderr
    assert "raw_orders" in result.stdout and "sales_report" in result.stdout


def test_assets_json() -> None:
    payload = run_json("assets", "--defs", str(QUICKSTART))
    by_name = {a["name"]: a for a in payload["assets"]}
    assert list(by_name) == [
        "raw_orders",
        "clean_orders",
        "revenue_by_region",
        "top_customers",
        "sales_report",
    ]
    report = by_name["sales_report"]
    assert report["dependencies"] == [
        {"name": "revenue_by_region", "type": "data"},
        {"name": "top_customers", "type": "data"},
    ]
    assert report["owner"] == "sales"
    assert report["tags"] == {"layer": "report"}
    assert report["description"].startswith("A markdown report")


def test_assets_table() -> None:
    result = run("assets", "--defs", str(QUICKSTART), COLUMNS="200")
    assert result.returncode == 0, result.stderr
    assert "data-platform" in result.stdout


def test_cycle_exits_2_with_one_line(tmp_path: Path) -> None:
    defs = write(
        tmp_path / "cyclic.py",
        "from servo import asset\n\n@asset\ndef a(b):\n    pass\n\n@asset\ndef b(a):\n    pass\n",
    )
    line = assert_one_line_error(run("plan", "--defs", str(defs)))
    assert line == "error: dependency cycle: a -> b -> a"


def test_unknown_dependency_exits_2(tmp_path: Path) -> None:
    defs = write(
        tmp_path / "unknown.py",
        "from servo import asset\n\n@asset\ndef orders():\n    pass\n\n"
        "@asset\ndef report(order):\n    pass\n",
    )
    line = assert_one_line_error(run("assets", "--defs", str(defs)))
    assert line == (
        "error: asset 'report' depends on 'order', which is not defined; did you mean 'orders'?"
    )


def test_import_error_exits_2(tmp_path: Path) -> None:
    defs = write(tmp_path / "broken.py", "import no_such_module_anywhere\n")
    assert_one_line_error(run("plan", "--defs", str(defs)), "ModuleNotFoundError", "broken.py:1")


def test_missing_defs_file_exits_2(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.py")
    line = assert_one_line_error(run("plan", "--defs", missing))
    assert line == f"error: definitions file not found: {missing}"


def test_no_defs_anywhere_exits_2(tmp_path: Path) -> None:
    assert_one_line_error(run("plan", cwd=tmp_path), "pass --defs PATH")


def test_unknown_asset_exits_2() -> None:
    assert_one_line_error(
        run("lineage", "clean_order", "--defs", str(QUICKSTART)),
        "unknown asset 'clean_order'; did you mean 'clean_orders'?",
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("plan", "--bogus"), "No such option: --bogus"),
        (("nope",), "No such command 'nope'"),
        (("lineage", "x", "--depth", "0"), "--depth"),
        (("lineage", "x", "--depth", "many"), "--depth"),
        (("lineage", "x", "--upstream", "--downstream"), "exclude each other"),
        (("lineage",), "ASSET"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], fragment: str) -> None:
    assert_one_line_error(run(*args, "--defs", str(QUICKSTART)), fragment)


def test_bad_config_file_exits_2(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", "log:\n  level: LOUD\n")
    assert_one_line_error(
        run("--config", str(config), "plan", "--defs", str(QUICKSTART)), "log.level"
    )


def test_config_sets_logging(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", "log:\n  level: DEBUG\n  format: json\n")
    result = run("--config", str(config), "plan", "--json", "--defs", str(QUICKSTART))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["assets"] == 5


def test_the_script_flushes_its_output_and_keeps_the_exit_code(tmp_path: Path) -> None:
    """`servo` ends with os._exit after flushing (Arrow threads may abort a normal
    interpreter teardown): piped output must be complete and the code unchanged."""
    code = "import sys; sys.argv[0] = 'servo'; from servo.cli.main import run; run()"
    cases = ((["runs", "show", "NOPE", "--home", str(tmp_path), "--json"], 2), (["--version"], 0))
    for args, expected in cases:
        result = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
        )
        assert result.returncode == expected, result.stderr
        assert result.stdout.rstrip().endswith(("}", servo.__version__))
