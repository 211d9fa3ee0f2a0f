"""Servo's exception hierarchy: every error Servo raises derives from `ServoError`.

```
ServoError
├── ConfigError                 settings that cannot be used (names the key)
├── DefinitionError             user definitions that cannot be planned (names the asset)
│   └── CycleError              a dependency cycle (names one cycle path)
├── SelectionError              an asset selection that matches nothing or does not parse
├── StorageError                object store failures, backend-neutral
│   ├── ObjectExistsError       a create-only write found the object already there
│   ├── PreconditionFailedError a conditional write lost (generation mismatch)
│   ├── ObjectNotFoundError     a read of an object that does not exist
│   └── TransientStorageError   a failure worth retrying (network, 5xx, throttling)
└── EngineError                 engine invariants and ledger/projection problems
    ├── EventDecodeError        a ledger object that is not a valid event
    └── ManifestConflictError   a manifest publish lost the compare-and-swap race
```

Driver errors are translated at the boundary (`raise ... from exc`) so callers only
ever see these classes. Only `TransientStorageError` (and subclasses introduced for
the same purpose) are retried.
"""

from __future__ import annotations


class ServoError(Exception):
    """Root of every error Servo raises on purpose."""


class ConfigError(ServoError):
    """Settings that cannot be used; the message names the key and the fix."""


class DefinitionError(ServoError):
    """Asset or workflow definitions that cannot be planned; names the asset."""


class CycleError(DefinitionError):
    """The dependency graph has a cycle.

    Attributes:
        cycle: the assets on one cycle, first repeated last (``a -> b -> a``).
    """

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(f"dependency cycle: {' -> '.join(cycle)}")


class SelectionError(ServoError):
    """An asset selection that does not parse or names an unknown asset."""


class StorageError(ServoError):
    """An object store operation failed."""


class ObjectExistsError(StorageError):
    """A create-only write found an object already at the path."""


class PreconditionFailedError(StorageError):
    """A conditional write's expected generation did not match."""


class ObjectNotFoundError(StorageError):
    """A read of an object that does not exist."""


class TransientStorageError(StorageError):
    """A storage failure that may succeed when retried."""


class EngineError(ServoError):
    """An engine invariant or ledger/projection problem."""


class EventDecodeError(EngineError):
    """A ledger object could not be decoded into events."""


class ManifestConflictError(EngineError):
    """Another compactor published the manifest generation first."""
