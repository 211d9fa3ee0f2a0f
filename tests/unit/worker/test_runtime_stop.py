"""The worker runtime: stopped attempts, per-attempt result records, reuse rules."""

from __future__ import annotations

import pytest

from servo import Definitions, asset
from servo.engine import events as ev
from servo.engine.request import TaskRequest
from servo.observability import metrics
from servo.sdk.context import AssetContext
from servo.storage.memory import MemoryObjectStore
from servo.worker.runtime import TaskReport, TaskRuntime, legacy_result_path, result_path

RUNS: list[str] = []


@asset
def stoppable(context: AssetContext) -> str:
    RUNS.append(context.attempt_id)
    if context.attempt_id.startswith("stop-"):
        RUNTIME[0].stop(context.attempt_id, context.attempt_id.split("-")[1])
    return "value"


RUNTIME: list[TaskRuntime] = []


class _Sink:
    def emit(self, event: ev.Event) -> str:
        return f"ledger/{event.event_id}"


@pytest.fixture
def runtime() -> TaskRuntime:
    RUNS.clear()
    runtime = TaskRuntime(MemoryObjectStore(), Definitions(assets=[stoppable]), sink=_Sink())
    RUNTIME[:] = [runtime]
    return runtime


def request(attempt: int, attempt_id: str, reusable: tuple[str, ...] = ()) -> TaskRequest:
    return TaskRequest(
        tenant_id="t",
        workspace_id="w",
        run_id="r",
        task_key="stoppable",
        asset_key="stoppable",
        partition_key=None,
        attempt=attempt,
        attempt_id=attempt_id,
        dispatch_id=f"d{attempt}",
        cloud_task_id=f"c{attempt}",
        reusable_attempt_ids=reusable,
    )


def finished(report: TaskReport) -> ev.TaskFinished:
    payload = report.events[-1].payload
    assert isinstance(payload, ev.TaskFinished)
    return payload


@pytest.mark.parametrize("reason", ["timeout", "cancelled"])
def test_an_attempt_that_returns_after_a_stop_fails_and_records_nothing(
    runtime: TaskRuntime, reason: str
) -> None:
    store = runtime._store
    before = metrics.sample("servo_stopped_results_discarded_total", {"reason": reason})
    req = request(1, f"stop-{reason}")
    end = finished(runtime.execute(req))
    assert (end.outcome, end.error_type, end.output) == ("failed", reason, None)
    assert "stopped by Servo" in (end.error_message or "")
    assert store.head(result_path(req)) is None
    assert metrics.sample("servo_stopped_results_discarded_total", {"reason": reason}) == before + 1


def test_redelivery_of_the_same_attempt_reuses_its_record(runtime: TaskRuntime) -> None:
    first = finished(runtime.execute(request(1, "a1")))
    again = runtime.execute(request(1, "a1"))
    assert again.reused and finished(again).output == first.output
    assert RUNS == ["a1"]


def test_a_new_attempt_reuses_only_the_records_it_is_told_to(runtime: TaskRuntime) -> None:
    first = finished(runtime.execute(request(1, "a1")))
    not_listed = runtime.execute(request(2, "a2"))
    assert not not_listed.reused and RUNS == ["a1", "a2"]
    listed = runtime.execute(request(3, "a3", reusable=("a1",)))
    assert listed.reused and finished(listed).output == first.output
    assert RUNS == ["a1", "a2"]


def test_an_unreadable_record_counts_as_absent(runtime: TaskRuntime) -> None:
    req = request(1, "a1")
    runtime._store.put_if_absent(result_path(req), b'{"location": "outputs/x", "form')
    report = runtime.execute(req)
    assert not report.reused and finished(report).outcome == "succeeded"
    assert RUNS == ["a1"]


def test_small_values_travel_inline_and_are_recorded(runtime: TaskRuntime) -> None:
    req = request(1, "a1")
    output = finished(runtime.execute(req)).output
    assert output is not None and output.location == 'inline:"value"'
    assert list(runtime._store.list_prefix("outputs/")) == []
    assert runtime._store.head(result_path(req)) is not None


def test_a_second_execution_of_an_attempt_reports_the_first_record(
    runtime: TaskRuntime,
) -> None:
    """Two executions of one attempt at once: the record written first wins (an inline
    value has no create-only file to arbitrate)."""
    req = request(1, "a1")
    first = ev.OutputRef('inline:"first"', "json", 7)
    assert runtime._record_result(req, first) == first
    second = ev.OutputRef('inline:"second"', "json", 8)
    assert runtime._record_result(req, second) == first


def test_a_record_in_the_layout_of_earlier_versions_is_reused(runtime: TaskRuntime) -> None:
    """A run resumed across an upgrade reuses what a lost attempt recorded before it."""
    legacy = legacy_result_path(request(1, "a1"), "a1")
    assert legacy != result_path(request(1, "a1"))
    record = b'{"location": "outputs/x.json", "format": "json", "size_bytes": 1, "row_count": null}'
    runtime._store.put_if_absent(legacy, record)
    reused = runtime.execute(request(2, "a2", reusable=("a1",)))
    assert reused.reused and RUNS == []
    output = finished(reused).output
    assert output is not None and output.location == "outputs/x.json"


# -- records in the ledger (the embedded thread pool, ADR 0023) ----------------------


class _CountingStore(MemoryObjectStore):
    """Counts the store calls a runtime makes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def get(self, path: str):  # type: ignore[no-untyped-def]
        self.calls.append(("get", path))
        return super().get(path)

    def put_if_absent(self, path: str, data: bytes) -> int:
        self.calls.append(("put_if_absent", path))
        return super().put_if_absent(path, data)


@pytest.fixture
def in_ledger() -> TaskRuntime:
    RUNS.clear()
    runtime = TaskRuntime(
        _CountingStore(), Definitions(assets=[stoppable]), sink=_Sink(), records_in_ledger=True
    )
    RUNTIME[:] = [runtime]
    return runtime


def test_records_in_the_ledger_cost_no_store_call_for_a_small_value(
    in_ledger: TaskRuntime,
) -> None:
    store = in_ledger._store
    assert isinstance(store, _CountingStore)
    req = request(1, "a1")
    output = finished(in_ledger.execute(req)).output
    assert output is not None and output.location == 'inline:"value"'
    assert store.calls == [] and store.head(result_path(req)) is None


def test_records_in_the_ledger_still_serve_duplicates_and_listed_attempts(
    in_ledger: TaskRuntime,
) -> None:
    first = finished(in_ledger.execute(request(1, "a1")))
    again = in_ledger.execute(request(1, "a1"))
    assert again.reused and finished(again).output == first.output
    not_listed = in_ledger.execute(request(2, "a2"))
    assert not not_listed.reused
    listed = in_ledger.execute(request(3, "a3", reusable=("a1",)))
    assert listed.reused and finished(listed).output == first.output
    assert finished(listed).reused_attempt_id == "a1"
    assert RUNS == ["a1", "a2"]


def test_records_in_the_ledger_find_a_listed_attempts_file_but_not_their_own(
    in_ledger: TaskRuntime,
) -> None:
    """A lost attempt of a process or HTTP worker recorded a file: reused. A file
    under the request's own attempt cannot exist for the thread pool (it minted the
    attempt), so it is not looked for."""
    record = b'{"location": "outputs/x.json", "format": "json", "size_bytes": 1, "row_count": null}'
    in_ledger._store.put_if_absent(result_path(request(1, "a1")), record)
    in_ledger._store.put_if_absent(result_path(request(3, "a3")), record)
    reused = in_ledger.execute(request(2, "a2", reusable=("a1",)))
    assert reused.reused and finished(reused).reused_attempt_id == "a1" and RUNS == []
    own = in_ledger.execute(request(3, "a3"))
    assert not own.reused and RUNS == ["a3"]


def test_records_in_memory_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from servo.worker.runtime import _RecentResults

    monkeypatch.setattr(_RecentResults, "LIMIT", 3)
    recent = _RecentResults()
    outputs = [ev.OutputRef(f"inline:{i}", "json", 1) for i in range(5)]
    for i, output in enumerate(outputs):
        assert recent.remember("k", f"a{i}", output) == output
    assert recent.remember("k", "a4", outputs[0]) == outputs[4]  # the first record wins
    assert [recent.get("k", f"a{i}") for i in range(5)] == [None, None, *outputs[2:]]
