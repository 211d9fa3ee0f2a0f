"""Object stores: the ledger, projections, manifests and asset values live here.

`ObjectStore` is the protocol; `MemoryObjectStore` (tests), `LocalObjectStore`
(embedded default) and `GcsObjectStore` (scale-out, in `servo.storage.gcs`, imported
on demand so that this package stays cheap to import) implement it. `open_store`
(in `servo.storage.factory`) builds the one the settings ask for.
"""

from __future__ import annotations

from servo.storage.base import ObjectStore, StoredObject
from servo.storage.local import LocalObjectStore
from servo.storage.memory import MemoryObjectStore

__all__ = ["LocalObjectStore", "MemoryObjectStore", "ObjectStore", "StoredObject"]
