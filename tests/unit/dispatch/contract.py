"""The dispatcher contract: what every dispatcher does, whatever runs the attempts.

`DispatcherContract` is run against the local thread pool, the local process pool
and the in-memory queue dispatcher (`servo.testing.dispatchers`); the serverless
and Celery dispatchers join it by adding a harness. A harness builds a dispatcher
over a real `TaskRuntime` (real definitions, a real local store) and knows how to
wait until attempts have ended.

The contract:
- a request enqueued is CREATED and its attempt runs and ends, reported once; the
  events the attempt wrote reach the caller (with the end report, or streamed while
  it runs) and its `TaskFinished` carries its attempt_id;
- the same `cloud_task_id` enqueued again is ALREADY_EXISTS (success), and the asset
  does not run again;
- distinct requests all run;
- `stop` of an attempt it does not run is False, and changes nothing;
- `close` returns, and releases what the dispatcher holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from servo.dispatch.base import Dispatcher, EnqueueOutcome
from servo.engine import events as ev
from servo.engine.request import TaskRequest
from servo.worker.runtime import TaskReport

DEFINITIONS = """
from pathlib import Path

from servo import asset

LOG = Path(__file__).with_name("ran.log")


def _ran(name):
    with LOG.open("a") as log:
        log.write(name + "\\n")


@asset
def one():
    _ran("one")
    return 1


@asset
def two():
    _ran("two")
    return 2


@asset
def three():
    _ran("three")
    return 3
"""


def request(asset: str, n: int = 1) -> TaskRequest:
    """A request for `asset` (attempt `n`), ids derived from both."""
    return TaskRequest("default", "default", "r1", asset, asset, None, n,
                       f"A-{asset}-{n}", f"d-{asset}-{n}", f"c-{asset}-{n}")  # fmt: skip


@dataclass
class Ended:
    """What the dispatcher reported, in order (thread-safe)."""

    items: list[tuple[TaskRequest, TaskReport | BaseException]] = field(default_factory=list)
    #: Events handed over while attempts ran (worker processes stream theirs).
    streamed: list[ev.Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: TaskRequest, result: TaskReport | BaseException) -> None:
        with self.lock:
            self.items.append((request, result))

    def on_events(self, events: list[ev.Event], _paths: list[str]) -> None:
        with self.lock:
            self.streamed.extend(events)

    def events_of(self, attempt_id: str) -> list[ev.Event]:
        """Every event of `attempt_id` reported, streamed or with its end, once each."""
        with self.lock:
            reported = [e for _, r in self.items if isinstance(r, TaskReport) for e in r.events]
            seen = {e.event_id: e for e in [*self.streamed, *reported]}
        return [e for e in seen.values() if e.attempt_id == attempt_id]


class Harness(Protocol):
    """A dispatcher under test, with a way to let its attempts end."""

    dispatcher: object
    ended: Ended
    ran_log: Path

    def settle(self, count: int, timeout_s: float) -> None:
        """Return once `count` attempts ended (raise after `timeout_s`)."""
        ...

    def close(self) -> None: ...


def wait_for(ended: Ended, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(ended.items) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(ended.items)} of {count} attempts ended in {timeout_s}s")
        time.sleep(0.01)


class DispatcherContract:
    """Subclass with a `harness` fixture yielding a `Harness`."""

    TIMEOUT_S = 60.0

    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[Harness]:
        raise NotImplementedError

    def ran(self, harness: Harness) -> list[str]:
        log = harness.ran_log
        return log.read_text().split() if log.exists() else []

    def test_an_enqueued_request_runs_and_reports_its_events(self, harness: Harness) -> None:
        enqueue = _enqueue(harness)
        assert enqueue(request("one")) == EnqueueOutcome.CREATED
        harness.settle(1, self.TIMEOUT_S)
        ((req, result),) = harness.ended.items
        assert req.attempt_id == "A-one-1" and isinstance(result, TaskReport), result
        deadline = time.monotonic() + 10  # streamed events may trail the end report
        while True:
            events = harness.ended.events_of("A-one-1")
            finished = [e.payload for e in events if isinstance(e.payload, ev.TaskFinished)]
            if finished or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert [f.outcome for f in finished] == ["succeeded"]
        assert self.ran(harness) == ["one"]

    def test_the_same_id_again_is_already_exists_and_runs_once(self, harness: Harness) -> None:
        enqueue = _enqueue(harness)
        assert enqueue(request("two")) == EnqueueOutcome.CREATED
        assert enqueue(request("two")) == EnqueueOutcome.ALREADY_EXISTS
        harness.settle(1, self.TIMEOUT_S)
        assert enqueue(request("two")) == EnqueueOutcome.ALREADY_EXISTS  # after it ended too
        time.sleep(0.1)  # a second run, if any, would have ended by now
        harness.settle(1, self.TIMEOUT_S)
        assert len(harness.ended.items) == 1
        assert self.ran(harness) == ["two"]

    def test_distinct_requests_all_run(self, harness: Harness) -> None:
        enqueue = _enqueue(harness)
        outcomes = [enqueue(request(name)) for name in ("one", "two", "three")]
        assert outcomes == [EnqueueOutcome.CREATED] * 3
        harness.settle(3, self.TIMEOUT_S)
        assert sorted(req.attempt_id for req, _ in harness.ended.items) == [
            "A-one-1", "A-three-1", "A-two-1"
        ]  # fmt: skip
        assert sorted(self.ran(harness)) == ["one", "three", "two"]

    def test_stopping_an_attempt_it_does_not_run_is_false(self, harness: Harness) -> None:
        dispatcher: Dispatcher = harness.dispatcher  # type: ignore[assignment]
        assert dispatcher.stop("A-none-1", "cancelled") is False
        assert _enqueue(harness)(request("one")) == EnqueueOutcome.CREATED
        harness.settle(1, self.TIMEOUT_S)
        assert dispatcher.stop("A-one-1", "cancelled") is False, "it ended already"
        assert self.ran(harness) == ["one"]

    def test_close_returns(self, harness: Harness) -> None:
        started = time.monotonic()
        harness.close()
        assert time.monotonic() - started < 30


def _enqueue(harness: Harness) -> Callable[[TaskRequest], EnqueueOutcome]:
    enqueue: Callable[[TaskRequest], EnqueueOutcome] = harness.dispatcher.enqueue
    return enqueue
