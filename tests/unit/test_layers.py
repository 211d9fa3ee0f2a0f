"""The package layers hold: import-linter checks the contracts in pyproject.toml
(ADR 0019), and a module importing upwards fails this test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    return subprocess.run(
        [command, "--no-cache", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_every_layer_contract_is_kept() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout, result.stdout


def test_an_upward_import_from_the_engine_breaks_a_contract(tmp_path: Path) -> None:
    """The check itself works: a copy of the package with one upward import fails."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "src", copy / "src")
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    compactor = copy / "src" / "servo" / "engine" / "compactor.py"
    source = compactor.read_text()
    compactor.write_text(source.replace(
        "from servo.engine.events import Event\n",
        "from servo.engine.events import Event\nfrom servo.runner import loop as _loop\n",
        1,
    ))  # fmt: skip
    command = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run(
        [command, "--no-cache"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(copy / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0, result.stdout
    assert "servo.engine.compactor -> servo.runner" in result.stdout, result.stdout
