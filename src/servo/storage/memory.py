"""In-memory object store: the reference semantics, used by tests and benchmarks."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from servo.errors import ObjectExistsError, ObjectNotFoundError, PreconditionFailedError
from servo.storage.base import StoredObject


class MemoryObjectStore:
    """A thread-safe dict of path -> (bytes, generation)."""

    def __init__(self) -> None:
        self._objects: dict[str, StoredObject] = {}
        self._next_generation = 1
        self._lock = threading.Lock()

    def _bump(self) -> int:
        generation = self._next_generation
        self._next_generation += 1
        return generation

    def put_if_absent(self, path: str, data: bytes) -> int:
        with self._lock:
            if path in self._objects:
                raise ObjectExistsError(f"object already exists: {path}")
            generation = self._bump()
            self._objects[path] = StoredObject(bytes(data), generation)
            return generation

    def put_if_generation(self, path: str, data: bytes, generation: int) -> int:
        with self._lock:
            current = self._objects.get(path)
            if current is None or current.generation != generation:
                found = None if current is None else current.generation
                raise PreconditionFailedError(
                    f"generation mismatch on {path}: expected {generation}, found {found}"
                )
            new_generation = self._bump()
            self._objects[path] = StoredObject(bytes(data), new_generation)
            return new_generation

    def get(self, path: str) -> StoredObject:
        try:
            return self._objects[path]
        except KeyError:
            raise ObjectNotFoundError(f"no object at {path}") from None

    def head(self, path: str) -> int | None:
        found = self._objects.get(path)
        return None if found is None else found.generation

    def delete(self, path: str) -> None:
        with self._lock:
            self._objects.pop(path, None)

    def list_prefix(self, prefix: str) -> Iterator[str]:
        with self._lock:
            paths = sorted(p for p in self._objects if p.startswith(prefix))
        yield from paths
