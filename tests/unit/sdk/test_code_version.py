"""The code version a run records and a worker checks (`servo.sdk.code_version`)."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from servo import Definitions
from servo.engine import events as ev
from servo.engine.request import TaskRequest
from servo.observability import metrics
from servo.sdk.loader import load_definitions
from servo.storage.memory import MemoryObjectStore
from servo.worker.runtime import TaskRuntime

SOURCE = textwrap.dedent(
    """
    from servo import asset

    def helper() -> int:
        return 1

    @asset
    def root() -> int:
        return helper()

    @asset
    def child(root: int) -> int:
        return root + 1
    """
)


def _load(folder: Path, source: str = SOURCE) -> Definitions:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "defs.py"
    path.write_text(source, encoding="utf-8")
    return load_definitions(str(path))


def test_the_same_code_in_another_folder_has_the_same_version(tmp_path: Path) -> None:
    here, there = _load(tmp_path / "laptop"), _load(tmp_path / "container")
    assert here.code_version == there.code_version
    assert len(here.code_version) == 16


def test_any_change_to_a_file_that_defines_assets_changes_the_version(tmp_path: Path) -> None:
    before = _load(tmp_path / "a")
    helper_changed = _load(tmp_path / "b", SOURCE.replace("return 1", "return 2"))
    assert helper_changed.code_version != before.code_version


def test_functions_without_a_source_file_count_by_their_compiled_code() -> None:
    namespace: dict[str, object] = {}
    exec("from servo import asset\n@asset\ndef made() -> int:\n    return 1\n", namespace)
    other: dict[str, object] = {}
    exec("from servo import asset\n@asset\ndef made() -> int:\n    return 2\n", other)
    first = Definitions(assets=[namespace["made"]])
    assert first.code_version == Definitions(assets=[namespace["made"]]).code_version
    assert first.code_version != Definitions(assets=[other["made"]]).code_version


def _request(code_version: str | None) -> TaskRequest:
    return TaskRequest("t", "w", "r", "root", "root", None, 1, "a1", "d1", "c1",
                       code_version=code_version)  # fmt: skip


class _Sink:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []

    def emit(self, event: ev.Event) -> str:
        self.events.append(event)
        return f"ledger/{event.event_id}"


@pytest.mark.parametrize(
    ("check", "planned", "ran"),
    [(True, "other-version", False), (False, "other-version", True), (True, None, True)],
)
def test_a_worker_with_other_code_fails_the_attempt_unless_it_accepts_it(
    tmp_path: Path, check: bool, planned: str | None, ran: bool
) -> None:
    defs, sink = _load(tmp_path), _Sink()
    runtime = TaskRuntime(MemoryObjectStore(), defs, sink=sink, check_code_version=check)
    before = metrics.sample("servo_code_version_mismatches_total")
    runtime.execute(_request(planned))
    kinds = [type(e.payload) for e in sink.events]
    finished = sink.events[-1].payload
    assert isinstance(finished, ev.TaskFinished)
    if ran:
        assert kinds == [ev.TaskStarted, ev.TaskFinished] and finished.outcome == "succeeded"
        assert metrics.sample("servo_code_version_mismatches_total") == before
        return
    assert kinds == [ev.TaskFinished], "the asset never started"
    assert finished.outcome == "failed" and not finished.retryable
    assert finished.error_type == "code_version_mismatch"
    assert defs.code_version in (finished.error_message or "")
    assert metrics.sample("servo_code_version_mismatches_total") == before + 1


def test_a_worker_with_the_planned_code_runs_the_attempt(tmp_path: Path) -> None:
    defs, sink = _load(tmp_path), _Sink()
    runtime = TaskRuntime(MemoryObjectStore(), defs, sink=sink, check_code_version=True)
    runtime.execute(dataclasses.replace(_request(None), code_version=defs.code_version))
    finished = sink.events[-1].payload
    assert isinstance(finished, ev.TaskFinished) and finished.outcome == "succeeded"
