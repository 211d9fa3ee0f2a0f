"""Commands that need no catalog and no data never import the heavy libraries.

Each command runs in a fresh interpreter (imports are process-wide), which then
reports which of the heavy top-level packages it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("sqlalchemy", "alembic", "pyarrow", "psycopg", "rich", "pygments")
_PROBE = f"""
import json, sys
from servo.cli.main import main
code = main(sys.argv[1:])
loaded = sorted({{m.partition('.')[0] for m, v in sys.modules.items() if v is not None}}
                & set({HEAVY!r}))
print(json.dumps({{"code": code, "loaded": loaded}}), file=sys.stderr)
"""

DEFS = """
from servo import asset

@asset
def a() -> int:
    return 1

@asset
def b(a: int) -> int:
    return a + 1
"""


def loaded_by(*args: str, cwd: Path) -> list[str]:
    """The heavy packages `servo args` imported (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], cwd=cwd, capture_output=True, text=True, check=True
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, done.stderr
    return list(report["loaded"])


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (("--help",), ()),
        (("materialize", "--help"), ()),
        (("plan", "--defs", "defs.py", "--json"), ()),
        (("plan", "--defs", "defs.py"), ("rich",)),  # the table is drawn with rich
    ],
)
def test_help_and_plan_import_no_database_or_arrow(
    tmp_path: Path, args: tuple[str, ...], allowed: tuple[str, ...]
) -> None:
    (tmp_path / "defs.py").write_text(DEFS, encoding="utf-8")
    assert set(loaded_by(*args, cwd=tmp_path)) <= set(allowed)
