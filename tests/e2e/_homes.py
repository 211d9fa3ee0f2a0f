"""Servo homes for the doctor, bad-home and gc tests: build once, copy, break."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from ._cli import QUICKSTART, run

LEDGER = Path("ledger/default/default")
PROJECTIONS = Path("projections/default/default")


def materialized(home: Path, runs: int = 2, *selections: str) -> list[str]:
    """Run the quickstart `runs` times (then once per selection); return the run ids."""
    made = []
    for selection in [None] * runs + list(selections):
        args = ["materialize", *([selection] if selection else []), "--defs", str(QUICKSTART)]
        result = run(*args, "--home", str(home), "--json")
        assert result.returncode == 0, result.stderr
        made.append(json.loads(result.stdout)["run_id"])
    return made


def copy_home(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def truncate(path: Path, size: int = 20) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:size])
    return path


def newest(folder: Path, pattern: str = "*") -> Path:
    return sorted(p for p in folder.glob(pattern) if p.is_file())[-1]


def break_home(home: Path, kind: str) -> Path:
    """Damage one kind of file of `home`; return the file damaged."""
    if kind == "ledger":
        return truncate(newest(home / LEDGER / "batches"))
    if kind == "manifest":
        return truncate(newest(home / PROJECTIONS / "manifest", "0*.json"))
    if kind == "parquet":
        return truncate(newest(home / PROJECTIONS / "tables" / "runs", "*.parquet"), 30)
    if kind == "catalog":
        for extra in ("catalog.db-wal", "catalog.db-shm"):
            (home / extra).unlink(missing_ok=True)
        (home / "catalog.db").write_bytes(b"this is not a database" * 20)
        return home / "catalog.db"
    raise AssertionError(kind)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The ``error:`` lines of a command's stderr (there must be no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line of a command that failed with exit 2."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    logged = [line for line in result.stderr.splitlines() if "[error" in line or "[warn" in line]
    assert logged == [], result.stderr  # the problem is said once, not logged again
    return lines[0]
