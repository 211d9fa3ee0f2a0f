"""The one contract every `ObjectStore` backend must pass.

Subclass `ObjectStoreContract` in a ``Test*`` class and override the
`store_factory` fixture to return a callable that builds a fresh, empty store.
The memory and local backends run it in ``tests/unit/storage``; GCS runs the very
same cases against fake-gcs-server in ``tests/integration``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from servo.errors import ObjectExistsError, ObjectNotFoundError, PreconditionFailedError
from servo.storage import ObjectStore

StoreFactory = Callable[[], ObjectStore]
T = TypeVar("T")


def race(workers: int, action: Callable[[int], T]) -> list[T | BaseException]:
    """Run `action(i)` in `workers` threads released together; return results or errors."""
    barrier = threading.Barrier(workers)
    results: list[T | BaseException] = [RuntimeError("did not run")] * workers

    def run(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[index] = action(index)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a racing thread hung"
    return results


def single_winner(results: list[Any], loser: type[Exception]) -> int:
    """Assert exactly one result is a success and all others are `loser`; return it."""
    unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, loser)]
    assert not unexpected, f"unexpected errors: {unexpected!r}"
    winners = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    assert len(winners) == 1, f"expected one winner, got {len(winners)}: {results!r}"
    return winners[0]


class ObjectStoreContract:
    """Behaviour shared by every backend; subclasses provide `store_factory`."""

    #: Threads racing on one path; rounds of each race.
    race_threads: ClassVar[int] = 8
    race_rounds: ClassVar[int] = 5
    #: Random operation sequences compared with the model.
    model_examples: ClassVar[int] = 40

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        raise NotImplementedError("override the store_factory fixture")

    @pytest.fixture
    def store(self, store_factory: StoreFactory) -> ObjectStore:
        return store_factory()

    # -- create-only ----------------------------------------------------------------

    def test_put_if_absent_then_get_round_trips(self, store: ObjectStore) -> None:
        generation = store.put_if_absent("ledger/e1.json", b'{"type": "RunRequested"}')
        assert isinstance(generation, int) and not isinstance(generation, bool)
        assert generation > 0
        assert store.head("ledger/e1.json") == generation
        found = store.get("ledger/e1.json")
        assert found.data == b'{"type": "RunRequested"}'
        assert found.generation == generation

    def test_put_if_absent_is_create_only(self, store: ObjectStore) -> None:
        generation = store.put_if_absent("manifest/2", b"first")
        with pytest.raises(ObjectExistsError, match="manifest/2"):
            store.put_if_absent("manifest/2", b"second")
        with pytest.raises(ObjectExistsError):
            store.put_if_absent("manifest/2", b"first")  # even with the same bytes
        assert store.get("manifest/2").data == b"first"
        assert store.head("manifest/2") == generation

    def test_missing_object(self, store: ObjectStore) -> None:
        assert store.head("nothing/here") is None
        with pytest.raises(ObjectNotFoundError, match="nothing/here"):
            store.get("nothing/here")

    def test_binary_and_empty_content_round_trip(self, store: ObjectStore) -> None:
        blob = bytes(range(256)) * 4096 + b"\x00\r\n\xff"
        store.put_if_absent("values/blob.bin", blob)
        store.put_if_absent("values/empty.bin", b"")
        assert store.get("values/blob.bin").data == blob
        assert store.get("values/empty.bin").data == b""

    def test_unicode_paths(self, store: ObjectStore) -> None:
        path = "outputs/caf\u00e9/\u65e5\u672c.json"
        generation = store.put_if_absent(path, b"{}")
        assert store.get(path).generation == generation
        assert list(store.list_prefix("outputs/caf\u00e9/")) == [path]

    # -- compare-and-swap -------------------------------------------------------------

    def test_put_if_generation_replaces_current(self, store: ObjectStore) -> None:
        first = store.put_if_absent("hint", b"1")
        second = store.put_if_generation("hint", b"2", first)
        assert second != first
        assert second > 0
        assert store.get("hint").data == b"2"
        assert store.get("hint").generation == second
        assert store.head("hint") == second

    def test_put_if_generation_with_stale_generation_fails(self, store: ObjectStore) -> None:
        first = store.put_if_absent("hint", b"1")
        second = store.put_if_generation("hint", b"2", first)
        with pytest.raises(PreconditionFailedError, match="hint"):
            store.put_if_generation("hint", b"3", first)
        assert store.get("hint").data == b"2"
        assert store.head("hint") == second

    def test_put_if_generation_on_missing_object_fails(self, store: ObjectStore) -> None:
        for generation in (0, 1, 12345):
            with pytest.raises(PreconditionFailedError, match="absent"):
                store.put_if_generation("absent", b"x", generation)
        assert store.head("absent") is None

    def test_generation_changes_on_every_write(self, store: ObjectStore) -> None:
        seen = [store.put_if_absent("hint", b"0")]
        for i in range(1, 10):
            seen.append(store.put_if_generation("hint", str(i).encode(), seen[-1]))
        store.delete("hint")
        seen.append(store.put_if_absent("hint", b"again"))
        assert len(set(seen)) == len(seen), seen
        assert store.head("hint") == seen[-1]
        for stale in seen[:-1]:
            with pytest.raises(PreconditionFailedError):
                store.put_if_generation("hint", b"stale", stale)

    # -- delete and list --------------------------------------------------------------

    def test_delete_is_idempotent(self, store: ObjectStore) -> None:
        store.put_if_absent("gc/old.parquet", b"x")
        store.delete("gc/old.parquet")
        store.delete("gc/old.parquet")
        store.delete("gc/never-written")
        assert store.head("gc/old.parquet") is None
        with pytest.raises(ObjectNotFoundError):
            store.get("gc/old.parquet")
        assert list(store.list_prefix("gc/")) == []
        store.put_if_absent("gc/old.parquet", b"y")
        assert store.get("gc/old.parquet").data == b"y"

    def test_list_prefix_is_sorted_and_literal(self, store: ObjectStore) -> None:
        paths = ["a/b/2", "a/bc/1", "a/b/1", "a/b-x", "a/a/9", "b/1", "a/b/c/d", "a.txt"]
        for path in paths:
            store.put_if_absent(path, path.encode())
        assert list(store.list_prefix("")) == sorted(paths)
        assert list(store.list_prefix("a/b/")) == ["a/b/1", "a/b/2", "a/b/c/d"]
        assert list(store.list_prefix("a/b")) == ["a/b-x", "a/b/1", "a/b/2", "a/b/c/d", "a/bc/1"]
        assert list(store.list_prefix("a/bc")) == ["a/bc/1"]
        assert list(store.list_prefix("a")) == sorted(p for p in paths if p.startswith("a"))
        assert list(store.list_prefix("zzz/")) == []
        assert list(store.list_prefix("a/b/c/d")) == ["a/b/c/d"]

    # -- concurrency ------------------------------------------------------------------

    def test_concurrent_put_if_absent_has_one_winner(self, store: ObjectStore) -> None:
        for round_ in range(self.race_rounds):
            path = f"manifest/{round_}"
            results = race(
                self.race_threads, lambda i, p=path: store.put_if_absent(p, f"writer {i}".encode())
            )
            winner = single_winner(results, ObjectExistsError)
            found = store.get(path)
            assert found.data == f"writer {winner}".encode()
            assert found.generation == results[winner]

    def test_concurrent_put_if_generation_has_one_winner(self, store: ObjectStore) -> None:
        for round_ in range(self.race_rounds):
            path = f"hint/{round_}"
            base = store.put_if_absent(path, b"base")
            results = race(
                self.race_threads,
                lambda i, p=path, g=base: store.put_if_generation(p, f"writer {i}".encode(), g),
            )
            winner = single_winner(results, PreconditionFailedError)
            found = store.get(path)
            assert found.data == f"writer {winner}".encode()
            assert found.generation == results[winner]

    def test_readers_see_whole_objects_with_their_generation(self, store: ObjectStore) -> None:
        size = 256 * 1024
        written: dict[int, int] = {store.put_if_absent("big", bytes([0]) * size): 0}
        seen: list[tuple[int, bytes]] = []
        done = threading.Event()

        def read() -> None:
            while not done.is_set():
                found = store.get("big")
                seen.append((found.generation, found.data))

        reader = threading.Thread(target=read)
        reader.start()
        try:
            generation = next(iter(written))
            for value in range(1, 16):
                generation = store.put_if_generation("big", bytes([value]) * size, generation)
                written[generation] = value
        finally:
            done.set()
            reader.join(timeout=60)
        assert seen
        for generation, data in seen:
            assert data == bytes([written[generation]]) * size

    # -- against a model --------------------------------------------------------------

    def test_random_operations_match_a_model(self, store_factory: StoreFactory) -> None:
        machine = type("Machine", (StoreModelMachine,), {"factory": staticmethod(store_factory)})
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=self.model_examples,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )


_PATHS = st.sampled_from(["a", "b/c", "b/d", "b/cd/e", "f/g/h"])
_PREFIXES = st.sampled_from(["", "b", "b/", "b/c", "f/g/", "a", "x/"])
_DATA = st.binary(max_size=48)


class StoreModelMachine(RuleBasedStateMachine):
    """Random operation sequences checked against a dict of path -> bytes."""

    factory: ClassVar[StoreFactory]

    def __init__(self) -> None:
        super().__init__()
        self.store = self.factory()
        self.model: dict[str, bytes] = {}
        self.current: dict[str, int] = {}
        self.seen: defaultdict[str, set[int]] = defaultdict(set)

    def _record(self, path: str, data: bytes, generation: int) -> None:
        assert isinstance(generation, int) and generation > 0
        assert generation not in self.seen[path], "a generation was reused for this path"
        self.seen[path].add(generation)
        self.model[path] = data
        self.current[path] = generation

    @rule(path=_PATHS, data=_DATA)
    def put_if_absent(self, path: str, data: bytes) -> None:
        if path in self.model:
            with pytest.raises(ObjectExistsError):
                self.store.put_if_absent(path, data)
        else:
            self._record(path, data, self.store.put_if_absent(path, data))

    @rule(path=_PATHS, data=_DATA)
    def put_if_generation_current(self, path: str, data: bytes) -> None:
        if path in self.model:
            generation = self.store.put_if_generation(path, data, self.current[path])
            self._record(path, data, generation)
        else:
            with pytest.raises(PreconditionFailedError):
                self.store.put_if_generation(path, data, max(self.seen[path], default=1))

    @rule(path=_PATHS, data=_DATA, pick=st.integers(min_value=0))
    def put_if_generation_stale(self, path: str, data: bytes, pick: int) -> None:
        stale = sorted(self.seen[path] - {self.current.get(path, 0)})
        generation = stale[pick % len(stale)] if stale else pick + 1
        if generation == self.current.get(path):
            return
        with pytest.raises(PreconditionFailedError):
            self.store.put_if_generation(path, data, generation)

    @rule(path=_PATHS)
    def read(self, path: str) -> None:
        if path in self.model:
            found = self.store.get(path)
            assert (found.data, found.generation) == (self.model[path], self.current[path])
            assert self.store.head(path) == self.current[path]
        else:
            with pytest.raises(ObjectNotFoundError):
                self.store.get(path)
            assert self.store.head(path) is None

    @rule(path=_PATHS)
    def delete(self, path: str) -> None:
        self.store.delete(path)
        self.model.pop(path, None)
        self.current.pop(path, None)

    @rule(prefix=_PREFIXES)
    def list_prefix(self, prefix: str) -> None:
        expected = sorted(p for p in self.model if p.startswith(prefix))
        assert list(self.store.list_prefix(prefix)) == expected
