"""Timed-out attempts through the real `servo materialize`: late values never count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ._cli import run, write

pytestmark = pytest.mark.e2e

ALWAYS_SLOW = """
import time
from servo import RetryPolicy, asset

@asset(timeout=0.5, retry=RetryPolicy(max_attempts=3, initial_delay=0.1))
def always_slow():
    time.sleep(0.8)
    return "late"
"""


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_an_asset_that_always_times_out_fails_with_timeout_after_its_attempts(
    tmp_path: Path, pool: str
) -> None:
    defs = write(tmp_path / "defs.py", ALWAYS_SLOW)
    extra = ["--processes"] if pool == "processes" else []
    result = run(
        "materialize", "--defs", str(defs), "--home", str(tmp_path / "home"), "--json", *extra
    )
    assert result.returncode == 1, result.stderr
    payload = json.loads(result.stdout)
    assert payload["status"] == "failed"
    assert payload["tasks"] == {"always_slow": "failed"}
    assert payload["errors"]["always_slow"]["type"] == "timeout"
