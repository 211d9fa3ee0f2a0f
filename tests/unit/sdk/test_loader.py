"""`load_definitions`: files, directories, modules, and one-line errors."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from servo.errors import CycleError, DefinitionError
from servo.sdk.loader import load_definitions

QUICKSTART = Path(__file__).resolve().parents[3] / "examples" / "quickstart"

ASSETS = """
from servo import asset

@asset
def first():
    return 1

@asset
def second(first):
    return first + 1
"""


@pytest.fixture(autouse=True)
def _isolated_imports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Undo the loader's sys.path changes and forget the modules it loaded from tmp_path."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_load_a_file(tmp_path: Path) -> None:
    file = write(tmp_path / "pipeline.py", ASSETS)
    defs = load_definitions(str(file))
    assert list(defs.assets) == ["first", "second"]
    assert defs.source == str(file.resolve())


def test_load_a_directory_with_sibling_imports(tmp_path: Path) -> None:
    write(tmp_path / "helpers_for_dir_test.py", "FACTOR = 3\n")
    write(
        tmp_path / "definitions.py",
        ASSETS + "\nfrom helpers_for_dir_test import FACTOR\n\n@asset\ndef third(second):\n"
        "    return second * FACTOR\n",
    )
    defs = load_definitions(tmp_path)
    assert list(defs.assets) == ["first", "second", "third"]
    assert defs.source == str((tmp_path / "definitions.py").resolve())


def test_load_a_module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "loader_pkg_test" / "__init__.py", "")
    write(tmp_path / "loader_pkg_test" / "assets.py", ASSETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    defs = load_definitions("loader_pkg_test.assets")
    assert list(defs.assets) == ["first", "second"]
    assert defs.source == "loader_pkg_test.assets"


def test_source_can_be_loaded_again(tmp_path: Path) -> None:
    defs = load_definitions(write(tmp_path / "definitions.py", ASSETS))
    assert defs.source is not None
    again = load_definitions(defs.source)
    assert list(again.assets) == list(defs.assets)


def test_module_level_definitions_object_wins(tmp_path: Path) -> None:
    write(
        tmp_path / "definitions.py",
        "from servo import Definitions\n"
        + ASSETS
        + "\n@asset\ndef unused():\n    return 0\n\ndefs = Definitions(assets=[first, second])\n",
    )
    defs = load_definitions(tmp_path)
    assert list(defs.assets) == ["first", "second"]
    assert defs.source == str((tmp_path / "definitions.py").resolve())


def test_two_definitions_objects_are_an_error(tmp_path: Path) -> None:
    file = write(
        tmp_path / "two.py",
        "from servo import Definitions\n" + ASSETS + "\none = Definitions(assets=[first])\n"
        "two = Definitions(assets=[first, second])\nalias = one\n",
    )
    with pytest.raises(DefinitionError) as info:
        load_definitions(file)
    assert str(info.value) == f"{file}: 2 Definitions objects found (one, two); keep exactly one"


def test_workflows_and_their_assets_are_gathered(tmp_path: Path) -> None:
    write(tmp_path / "wf_assets_for_test.py", ASSETS)
    file = write(
        tmp_path / "flows.py",
        """
        import wf_assets_for_test as lib
        from servo import workflow

        @workflow(executor="local")
        def flow():
            lib.second(lib.first())
        """,
    )
    defs = load_definitions(file)
    assert list(defs.workflows) == ["flow"]
    assert list(defs.assets) == ["first", "second"]


def test_missing_file(tmp_path: Path) -> None:
    target = str(tmp_path / "nope.py")
    with pytest.raises(DefinitionError, match=f"^definitions file not found: {target}$"):
        load_definitions(target)


def test_directory_without_definitions_py(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match=r"^no definitions\.py in directory "):
        load_definitions(tmp_path)


def test_unknown_module() -> None:
    with pytest.raises(DefinitionError) as info:
        load_definitions("no_such_module_for_servo_tests")
    assert str(info.value) == (
        "cannot load no_such_module_for_servo_tests: no such file, directory or module"
    )


def test_import_error_gives_summary_and_location(tmp_path: Path) -> None:
    file = write(tmp_path / "broken.py", "from servo import asset\n\nx = 1\nundefined_name + 1\n")
    with pytest.raises(DefinitionError) as info:
        load_definitions(file)
    message = str(info.value)
    assert message == (
        f"cannot load {file}: NameError: name 'undefined_name' is not defined ({file.resolve()}:4)"
    )
    assert "\n" not in message


def test_syntax_error_gives_location(tmp_path: Path) -> None:
    file = write(tmp_path / "syntax.py", "x = 1\ndef broken(:\n")
    with pytest.raises(DefinitionError, match=r"SyntaxError: .*syntax\.py:2\)$"):
        load_definitions(file)


def test_definition_errors_raised_at_import_pass_through(tmp_path: Path) -> None:
    file = write(
        tmp_path / "cyclic.py",
        """
        from servo import Definitions, asset

        @asset
        def ping(pong):
            pass

        @asset
        def pong(ping):
            pass

        defs = Definitions(assets=[ping, pong])
        """,
    )
    with pytest.raises(CycleError, match=r"dependency cycle: ping -> pong -> ping"):
        load_definitions(file)


def test_cycle_among_module_level_assets(tmp_path: Path) -> None:
    file = write(
        tmp_path / "loop.py",
        "from servo import asset\n\n@asset\ndef x(y):\n    pass\n\n@asset\ndef y(x):\n    pass\n",
    )
    with pytest.raises(CycleError) as info:
        load_definitions(file)
    assert info.value.cycle == ["x", "y", "x"]


def test_no_assets(tmp_path: Path) -> None:
    file = write(tmp_path / "empty.py", "VALUE = 1\n")
    with pytest.raises(DefinitionError) as info:
        load_definitions(file)
    assert str(info.value) == (
        f"{file}: no assets found; decorate functions with @asset or define a Definitions object"
    )


def test_empty_target() -> None:
    with pytest.raises(DefinitionError, match="no definitions target given"):
        load_definitions("  ")


def test_quickstart_loads_and_runs() -> None:
    defs = load_definitions(QUICKSTART)
    assert list(defs.assets) == [
        "raw_orders",
        "clean_orders",
        "revenue_by_region",
        "top_customers",
        "sales_report",
    ]
    values: dict[str, object] = {}
    for name, definition in defs.assets.items():
        values[name] = definition.call(values)
    raw, clean = values["raw_orders"], values["clean_orders"]
    assert isinstance(raw, list) and isinstance(clean, list)
    assert len(raw) == 200
    ids = [row["order_id"] for row in clean]
    assert len(ids) == len(set(ids))
    assert all(row["customer"] and row["quantity"] > 0 for row in clean)
    assert len(clean) < len(raw)
    report = values["sales_report"]
    assert isinstance(report, str) and report.startswith("# Sales report")
