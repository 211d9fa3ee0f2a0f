"""Run the real ``servo`` command in a subprocess (shared by the e2e tests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
SERVO = shutil.which("servo")
COMMAND = [SERVO] if SERVO else [sys.executable, "-m", "servo.cli"]


def run(
    *args: str, cwd: Path | None = None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVO_")}
    environ.update(env)
    return subprocess.run(
        [*COMMAND, *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_json(*args: str, **kw: Any) -> Any:
    result = run(*args, "--json", **kw)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
