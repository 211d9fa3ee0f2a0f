"""Ledger writer/reader and the in-process compaction inbox."""

from __future__ import annotations

import threading

import pytest

from servo.engine.events import encode_events
from servo.engine.ledger import CompactionInbox, LedgerReader, LedgerWriter, ledger_prefix
from servo.errors import (
    EngineError,
    EventDecodeError,
    ObjectNotFoundError,
    StorageError,
    TransientStorageError,
)
from servo.observability import metrics
from servo.storage.memory import MemoryObjectStore
from servo.testing.lifecycles import lifecycle


class FlakyStore(MemoryObjectStore):
    """Fails the first `failures` creates with a transient error.

    With `land`, the failing create still stores the object (the error came after
    the write), as a network timeout can.
    """

    def __init__(self, failures: int, land: bool = False) -> None:
        super().__init__()
        self.failures = failures
        self.land = land
        self.calls = 0

    def put_if_absent(self, path: str, data: bytes) -> int:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            if self.land:
                super().put_if_absent(path, data)
            raise TransientStorageError("503 from the store")
        return super().put_if_absent(path, data)


def test_append_writes_one_scoped_batch_and_notifies() -> None:
    store = MemoryObjectStore()
    notified: list[str] = []
    writer = LedgerWriter(store, "t1", "w1", notify=notified.extend)
    events = lifecycle("r1", 2)
    before = metrics.sample("servo_ledger_events_written_total")

    path = writer.append(events)

    assert path.startswith("ledger/t1/w1/batches/") and path.endswith(".json")
    assert notified == [path]
    assert LedgerReader(store).read(path) == events
    assert metrics.sample("servo_ledger_events_written_total") - before == len(events)
    assert writer.append(events) != path  # a new object per call


def test_append_rejects_empty_and_foreign_events() -> None:
    writer = LedgerWriter(MemoryObjectStore(), "t1", "w1")
    with pytest.raises(EngineError, match="at least one"):
        writer.append([])
    with pytest.raises(EngineError, match="belongs to t2/w1"):
        writer.append(lifecycle("r1", 1, tenant="t2"))


@pytest.mark.parametrize("tenant", ["", "a/b", "x" * 65, "..", "ténant"])
def test_invalid_tenant_is_a_clear_error(tenant: str) -> None:
    with pytest.raises(EngineError, match="invalid tenant_id"):
        LedgerWriter(MemoryObjectStore(), tenant, "w1")
    with pytest.raises(EngineError, match="invalid workspace_id"):
        ledger_prefix("t1", tenant)


def test_append_at_is_create_only_and_idempotent() -> None:
    store = MemoryObjectStore()
    notified: list[str] = []
    writer = LedgerWriter(store, "t1", "w1", notify=notified.extend)
    first, other = lifecycle("r1", 1)[0], lifecycle("r1", 1)[0]
    path = writer.path_for("runs/r1/requested")

    assert writer.append_at("runs/r1/requested", first) is True
    assert writer.append_at("runs/r1/requested", first) is False  # redelivery
    assert notified == [path, path]  # re-notified in case the first notify was lost
    assert writer.append_at("runs/r1/requested", other) is False  # someone else won
    assert notified == [path, path]
    assert LedgerReader(store).read(path) == [first]
    assert path == "ledger/t1/w1/runs/r1/requested"


@pytest.mark.parametrize("suffix", ["", "a//b", "../x", "a/./b", "batches/x", "a b", "/abs"])
def test_append_at_rejects_bad_suffixes(suffix: str) -> None:
    writer = LedgerWriter(MemoryObjectStore(), "t1", "w1")
    with pytest.raises(EngineError, match="suffix"):
        writer.append_at(suffix, lifecycle("r1", 1)[0])


def test_transient_errors_are_retried_with_backoff() -> None:
    store = FlakyStore(failures=2)
    delays: list[float] = []
    writer = LedgerWriter(store, "t1", "w1", sleep=delays.append)
    before = metrics.sample(
        "servo_ledger_write_errors_total", {"error_type": "TransientStorageError"}
    )

    path = writer.append(lifecycle("r1", 1))

    assert store.head(path) is not None
    assert store.calls == 3
    assert len(delays) == 2 and delays[1] > delays[0] > 0
    after = metrics.sample(
        "servo_ledger_write_errors_total", {"error_type": "TransientStorageError"}
    )
    assert after - before == 2


def test_retries_are_bounded() -> None:
    store = FlakyStore(failures=10)
    writer = LedgerWriter(store, "t1", "w1", sleep=lambda _: None)
    with pytest.raises(TransientStorageError):
        writer.append(lifecycle("r1", 1))
    assert store.calls == 3


def test_a_write_that_landed_despite_the_error_is_a_success() -> None:
    store = FlakyStore(failures=1, land=True)
    notified: list[str] = []
    writer = LedgerWriter(store, "t1", "w1", notify=notified.extend, sleep=lambda _: None)
    events = lifecycle("r1", 1)

    path = writer.append(events)

    assert LedgerReader(store).read(path) == events
    assert notified == [path]


def test_permanent_storage_errors_fail_fast() -> None:
    class Broken(MemoryObjectStore):
        def put_if_absent(self, path: str, data: bytes) -> int:
            raise StorageError("permission denied")

    before = metrics.sample("servo_ledger_write_errors_total", {"error_type": "StorageError"})
    with pytest.raises(StorageError, match="permission"):
        LedgerWriter(Broken(), "t1", "w1").append(lifecycle("r1", 1))
    after = metrics.sample("servo_ledger_write_errors_total", {"error_type": "StorageError"})
    assert after - before == 1


def test_reader_names_the_path_of_a_bad_object() -> None:
    store = MemoryObjectStore()
    store.put_if_absent("ledger/t1/w1/batches/bad.json", b"{not json")
    reader = LedgerReader(store)
    with pytest.raises(EventDecodeError, match=r"ledger/t1/w1/batches/bad\.json"):
        reader.read("ledger/t1/w1/batches/bad.json")
    with pytest.raises(ObjectNotFoundError):
        reader.read("ledger/t1/w1/batches/missing.json")


def test_reader_reads_many_in_order() -> None:
    store = MemoryObjectStore()
    a, b = lifecycle("r1", 1), lifecycle("r2", 1)
    store.put_if_absent("ledger/t1/w1/batches/a.json", encode_events(a))
    store.put_if_absent("ledger/t1/w1/batches/b.json", encode_events(b))
    paths = ["ledger/t1/w1/batches/b.json", "ledger/t1/w1/batches/a.json"]
    assert LedgerReader(store).read_many(paths) == b + a


def test_inbox_drains_in_order_without_blocking() -> None:
    inbox = CompactionInbox()
    assert inbox.drain(10) == []
    assert inbox.wait(0) is False
    inbox.put(["a", "b"])
    inbox.put(["c"])
    assert len(inbox) == 3
    assert inbox.wait(0) is True
    assert inbox.drain(2) == ["a", "b"]
    assert inbox.drain(10) == ["c"]


def test_inbox_wait_wakes_on_put() -> None:
    inbox = CompactionInbox()
    woke = threading.Event()

    def waiter() -> None:
        if inbox.wait(5):
            woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    inbox.put(["p"])
    thread.join(5)
    assert woke.is_set()


def test_writer_notifies_the_inbox() -> None:
    inbox = CompactionInbox()
    writer = LedgerWriter(MemoryObjectStore(), "t1", "w1", notify=inbox.put)
    paths = [writer.append(lifecycle(f"r{i}", 1)) for i in range(3)]
    assert inbox.drain(100) == paths
