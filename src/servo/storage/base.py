"""The object store protocol that every backend implements.

Paths are '/'-separated keys relative to the store's root, never starting with '/'.
Every object has a *generation*: a positive integer that changes on every write of
that path. Generations let a writer replace an object only if nobody else has
written it since it was read (compare-and-swap).

Correctness code uses only `put_if_absent`, `put_if_generation`, `get` and `head`.
`list_prefix` exists for anti-entropy and admin tools, never for correctness.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object's bytes with the generation they were read at.

    Attributes:
        data: the object's content.
        generation: the store's generation for this content (positive integer).
    """

    data: bytes
    generation: int


@runtime_checkable
class ObjectStore(Protocol):
    """Create-only and conditional writes, reads, and (admin-only) listing."""

    def put_if_absent(self, path: str, data: bytes) -> int:
        """Create `path` with `data`; return its generation.

        Raises:
            ObjectExistsError: an object is already at `path` (nothing is changed).
        """
        ...

    def put_if_generation(self, path: str, data: bytes, generation: int) -> int:
        """Replace `path` only if its current generation equals `generation`.

        Returns the new generation.

        Raises:
            PreconditionFailedError: the object changed since, or does not exist.
        """
        ...

    def get(self, path: str) -> StoredObject:
        """Read `path`.

        Raises:
            ObjectNotFoundError: nothing is stored at `path`.
        """
        ...

    def head(self, path: str) -> int | None:
        """Return the generation of `path`, or None when it does not exist."""
        ...

    def delete(self, path: str) -> None:
        """Remove `path` if present (garbage collection of unreferenced files only)."""
        ...

    def list_prefix(self, prefix: str) -> Iterator[str]:
        """Yield every path under `prefix`, sorted. Anti-entropy and admin only."""
        ...
