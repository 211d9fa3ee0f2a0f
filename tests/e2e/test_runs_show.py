"""`servo runs show`: every attempt, readable errors, and where the summary points."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ._cli import run, write

pytestmark = pytest.mark.e2e

DEFS = """
import os
from pathlib import Path
from servo import RetryPolicy, asset

COUNT = Path(os.environ["COUNT"])

@asset
def root():
    return [1, 2]

@asset(retry=RetryPolicy(max_attempts=3, initial_delay=0.05, jitter=0))
def flaky(root):
    n = int(COUNT.read_text()) + 1 if COUNT.exists() else 1
    COUNT.write_text(str(n))
    if n < 3:
        raise ConnectionError(f"upstream API timed out on call {n}")
    return root

@asset
def broken(root):
    raise ValueError("row 7 is bad: " + "x" * 150 + " END-OF-MESSAGE")

@asset
def after(broken, flaky):
    return 1

@asset
def events(root):
    return (n for n in root)
"""

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("show")
    defs = write(tmp / "defs.py", DEFS)
    home = str(tmp / "home")
    made = run("materialize", "--defs", str(defs), "--home", home, COUNT=str(tmp / "count"))
    assert made.returncode == 1, made.stderr
    run_id = re.search(r"run (\w+): failed", made.stdout)
    assert run_id is not None, made.stdout
    return {"home": home, "run_id": run_id.group(1), "summary": made.stdout}


def test_the_materialize_summary_says_where_to_look(failed_run: dict[str, Any]) -> None:
    run_id, home = failed_run["run_id"], failed_run["home"]
    summary = " ".join(failed_run["summary"].split())  # long lines wrap at 80 columns
    assert f"servo runs show {run_id} --errors --home {home}" in summary
    assert f"servo runs logs {run_id} broken --home {home}" in summary


def test_show_lists_every_attempt_in_plan_order_within_80_columns(
    failed_run: dict[str, Any],
) -> None:
    shown = run("runs", "show", failed_run["run_id"], "--home", failed_run["home"])
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    body = lines[3 : lines.index("", 3)]
    headers = [line.split(":")[0] for line in body if not line.startswith(" ")]
    assert headers == ["root", "broken", "events", "flaky", "after"]
    text = shown.stdout
    assert "flaky: succeeded (3 attempts, 2 rows)" in text
    assert re.search(
        r"#1 +failed +\d+\.\d{3}s  ConnectionError: upstream API timed out on call 1", text
    )
    assert re.search(r"#2 +failed .*on call 2", text)
    assert re.search(r"#3 +succeeded +\d+\.\d{3}s", text)
    assert "after: skipped" in text
    assert "ValueError: row 7 is bad" in text and "END-OF-MESSAGE" not in text
    assert "Traceback" not in text
    assert f"servo runs show {failed_run['run_id']} --errors" in text


def test_errors_prints_whole_messages_and_tracebacks(failed_run: dict[str, Any]) -> None:
    shown = run("runs", "show", failed_run["run_id"], "--errors", "--home", failed_run["home"])
    assert shown.returncode == 0, shown.stderr
    # flaky's two failures, broken, and events' storing error with the pickle error it wraps
    assert shown.stdout.count("Traceback (most recent call last):") == 5
    assert "TypeError: cannot pickle 'generator' object" in shown.stdout
    assert "END-OF-MESSAGE" in shown.stdout
    assert 'raise ConnectionError(f"upstream API timed out on call {n}")' in shown.stdout


def test_json_holds_every_attempt_with_tracebacks_and_iso_times(
    failed_run: dict[str, Any],
) -> None:
    shown = run("runs", "show", failed_run["run_id"], "--home", failed_run["home"], "--json")
    assert shown.returncode == 0, shown.stderr
    payload = json.loads(shown.stdout)
    assets = {a["asset"]: a for a in payload["assets"]}
    assert [a["asset"] for a in payload["assets"]] == ["root", "broken", "events", "flaky", "after"]
    flaky = assets["flaky"]["attempts"]
    assert [a["status"] for a in flaky] == ["failed", "failed", "succeeded"]
    assert [a["attempt"] for a in flaky] == [1, 2, 3]
    assert flaky[0]["error"]["type"] == "ConnectionError"
    assert "Traceback (most recent call last)" in flaky[0]["error"]["traceback"]
    assert flaky[2]["output"]["rows"] == 2 and flaky[2]["error"] is None
    for attempt in flaky:
        assert ISO.match(attempt["started_at"]) and ISO.match(attempt["ended_at"])
        assert attempt["duration_s"] >= 0
    assert assets["after"] == {"asset": "after", "status": "skipped", "attempts": []}


def test_a_value_that_cannot_be_stored_says_which_step_failed(failed_run: dict[str, Any]) -> None:
    shown = run("runs", "show", failed_run["run_id"], "--home", failed_run["home"], "--json")
    error = json.loads(shown.stdout)["errors"]["events"]
    assert error["type"] == "servo.sdk.io.UnstorableValueError"
    assert error["message"].startswith("storing the value of asset 'events' failed: a generator")
    assert "JSON-able data" in error["message"] and "picklable objects" in error["message"]


def test_a_corrupt_input_names_the_file_and_the_upstream(tmp_path: Path) -> None:
    defs = write(
        tmp_path / "defs.py",
        "from servo import asset\n\n"
        "@asset\ndef up():\n    return {'rows': list(range(200))}\n\n"  # > 256 bytes: a file
        "@asset\ndef down(up):\n    return len(up['rows'])\n",
    )
    home = tmp_path / "home"
    assert run("materialize", "up", "--defs", str(defs), "--home", str(home)).returncode == 0
    (stored,) = (home / "outputs" / "up").rglob("*.json")
    stored.write_bytes(stored.read_bytes()[:10])  # truncated
    made = run("materialize", "down", "--defs", str(defs), "--home", str(home), "--json")
    assert made.returncode == 1
    error = json.loads(made.stdout)["errors"]["down"]
    location = stored.relative_to(home).as_posix()
    assert error["type"] == "servo.sdk.io.CorruptValueError"
    assert f"the stored value of asset 'up' cannot be read: {location}" in error["message"]
    assert "re-materialize it: servo materialize up" in error["message"]
