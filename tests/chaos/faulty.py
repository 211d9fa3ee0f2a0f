"""A fault-injecting object store: wraps any `ObjectStore` and breaks every N-th call.

`FaultyObjectStore(inner, rules)` counts the calls of each operation
(``put_if_absent``, ``put_if_generation``, ``get``, ``head``, ``delete``); a `FaultRule`
``(op, every, kind, offset)`` fires on the calls whose count ``c`` (1-based) has
``c % every == offset % every``. Kinds:

- ``fail``: `StorageError`, nothing changed.
- ``transient``: `TransientStorageError`, nothing changed (callers may retry).
- ``lost_ack``: the write lands, then `TransientStorageError` (the answer was lost).
- ``slow``: the call waits `FaultRule.slow_s`, then goes through.
- ``torn``: a write stores the first half of its bytes, then `StorageError` (a crash
  in the middle of a non-atomic write). On a read it is a plain ``fail``.
- ``enospc``: `DiskFullError`, and the disk *stays* full: every later write fails the
  same way until `free_space()` (reads still work, as on a real full disk).

`list_prefix` is never broken (it is for admin tools, not correctness). Every fault
is recorded in `injected`; `enabled = False` turns every rule off (the disk stays full
until freed). `arm(op, kind, after)` breaks one chosen call, rules on or off;
`disarm()` forgets such calls. The store is thread-safe: call counts are taken under
a lock.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from servo.errors import StorageError, TransientStorageError
from servo.storage.base import ObjectStore, StoredObject

Op = Literal["put_if_absent", "put_if_generation", "get", "head", "delete"]
FaultKind = Literal["fail", "transient", "lost_ack", "slow", "torn", "enospc"]
OPS: tuple[Op, ...] = ("put_if_absent", "put_if_generation", "get", "head", "delete")
WRITES: frozenset[Op] = frozenset({"put_if_absent", "put_if_generation", "delete"})
KINDS: tuple[FaultKind, ...] = ("fail", "transient", "lost_ack", "slow", "torn", "enospc")
#: The kinds an atomic store (write to a temporary file, then rename) can show.
ATOMIC_KINDS: tuple[FaultKind, ...] = ("fail", "transient", "lost_ack", "slow", "enospc")
#: How long a ``slow`` call waits unless its rule says otherwise.
SLOW_S = 0.005


class DiskFullError(StorageError):
    """The store's disk is full (ENOSPC): writes fail until space is freed."""


@dataclass(frozen=True, slots=True)
class FaultRule:
    """Break every `every`-th call of `op` (counting from 1, shifted by `offset`).

    Attributes:
        op: the operation.
        every: the period, >= 1 (1 breaks every call).
        kind: what happens (see the module docstring).
        offset: which call of each period breaks (``count % every == offset % every``).
        slow_s: how long a ``slow`` call waits.
    """

    op: Op
    every: int
    kind: FaultKind
    offset: int = 0
    slow_s: float = SLOW_S

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"FaultRule.every must be >= 1, got {self.every}")

    def hits(self, count: int) -> bool:
        """Whether the `count`-th call (1-based) of `op` breaks."""
        return count % self.every == self.offset % self.every

    def __str__(self) -> str:
        return f"{self.op}/{self.every}+{self.offset % self.every}:{self.kind}"

    @classmethod
    def draw(cls, rng: random.Random, *, kinds: Sequence[FaultKind] = KINDS) -> FaultRule:
        """A random rule: writes break every 3-12 calls, reads every 5-25."""
        kind = rng.choice(list(kinds))
        ops: list[Op] = ["put_if_absent", "put_if_generation"]
        if kind in ("fail", "transient", "slow"):
            ops += ["get", "head"]
        op = rng.choice(ops)
        every = rng.randint(3, 12) if op in WRITES else rng.randint(5, 25)
        return cls(op, every, kind, offset=rng.randrange(every))


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """One fault that fired: the operation, its path, its call count and kind."""

    op: Op
    path: str
    count: int
    kind: FaultKind

    def __str__(self) -> str:
        return f"{self.kind} on {self.op} #{self.count} {self.path}"


class FaultyObjectStore:
    """An `ObjectStore` that breaks calls of `inner` according to `rules`."""

    def __init__(
        self,
        inner: ObjectStore,
        rules: Sequence[FaultRule] = (),
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self.rules = tuple(rules)
        self.enabled = True
        self.injected: list[InjectedFault] = []
        self.calls: Counter[str] = Counter()
        self._disk_full = False
        self._armed: list[tuple[Op, int, FaultKind]] = []
        self._sleep = sleep
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- control
    @property
    def disk_full(self) -> bool:
        """Whether writes fail with `DiskFullError` until `free_space()`."""
        return self._disk_full

    def free_space(self) -> None:
        """End an ENOSPC condition: writes work again."""
        self._disk_full = False

    def arm(self, op: Op, kind: FaultKind, after: int = 0) -> None:
        """Break the call of `op` after the next `after` ones, once (even when the
        rules are disabled)."""
        with self._lock:
            self._armed.append((op, self.calls[op] + after + 1, kind))

    def disarm(self) -> None:
        """Forget the calls `arm` chose."""
        with self._lock:
            self._armed.clear()

    def _fault(self, op: Op, path: str) -> FaultKind | None:
        with self._lock:
            self.calls[op] += 1
            count = self.calls[op]
            if self._disk_full and op in WRITES and op != "delete":
                self.injected.append(InjectedFault(op, path, count, "enospc"))
                return "enospc"
            armed = [a for a in self._armed if a[0] == op and a[1] == count]
            for found in armed:
                self._armed.remove(found)
            fired = [(kind, SLOW_S) for _, _, kind in armed]
            if self.enabled:
                fired += [(r.kind, r.slow_s) for r in self.rules if r.op == op and r.hits(count)]
            for drawn, slow_s in fired:
                kind: FaultKind = drawn
                if op not in WRITES and kind in ("torn", "lost_ack", "enospc"):
                    kind = "fail"  # a read cannot be torn or fill a disk
                if kind == "enospc":
                    self._disk_full = True
                self.injected.append(InjectedFault(op, path, count, kind))
                if kind == "slow":
                    self._sleep(slow_s)
                    continue
                return kind
        return None

    @staticmethod
    def _raise(kind: FaultKind, op: Op, path: str) -> None:
        message = f"injected {kind} fault on {op} {path}"
        if kind == "transient" or kind == "lost_ack":
            raise TransientStorageError(message)
        if kind == "enospc":
            raise DiskFullError(f"[Errno 28] No space left on device: {path} ({message})")
        raise StorageError(message)

    # ------------------------------------------------------------- protocol
    def put_if_absent(self, path: str, data: bytes) -> int:
        kind = self._fault("put_if_absent", path)
        if kind == "torn":
            self.inner.put_if_absent(path, data[: len(data) // 2])
        elif kind == "lost_ack":
            self.inner.put_if_absent(path, data)
        if kind is not None:
            self._raise(kind, "put_if_absent", path)
        return self.inner.put_if_absent(path, data)

    def put_if_generation(self, path: str, data: bytes, generation: int) -> int:
        kind = self._fault("put_if_generation", path)
        if kind == "torn":
            self.inner.put_if_generation(path, data[: len(data) // 2], generation)
        elif kind == "lost_ack":
            self.inner.put_if_generation(path, data, generation)
        if kind is not None:
            self._raise(kind, "put_if_generation", path)
        return self.inner.put_if_generation(path, data, generation)

    def get(self, path: str) -> StoredObject:
        kind = self._fault("get", path)
        if kind is not None:
            self._raise(kind, "get", path)
        return self.inner.get(path)

    def head(self, path: str) -> int | None:
        kind = self._fault("head", path)
        if kind is not None:
            self._raise(kind, "head", path)
        return self.inner.head(path)

    def delete(self, path: str) -> None:
        kind = self._fault("delete", path)
        if kind == "lost_ack":
            self.inner.delete(path)
        if kind is not None and kind != "torn":
            self._raise(kind, "delete", path)
        self.inner.delete(path)  # a torn delete is a delete

    def list_prefix(self, prefix: str) -> Iterator[str]:
        return self.inner.list_prefix(prefix)
