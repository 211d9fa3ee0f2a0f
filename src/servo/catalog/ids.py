"""Public ids of catalog rows: ULIDs, never a database sequence.

An id that leaves the catalog (a record's ``id``, a keyset cursor) must say nothing
about other tenants. A sequence shared by every tenant's rows does: the gaps in one
tenant's ids count another's inserts. So public ids are ULIDs (26 Crockford base32
characters: 48 bits of millisecond time, 80 bits of entropy), made by the writer:

- rows registered from definitions (assets, workflow versions) get a fresh ULID
  (`new_id`) when first inserted; an upsert keeps the stored one;
- rows that derive from an engine fact (executions, materializations) get a
  *derived* ULID (`derived_id`): the time of the fact, and entropy from a hash of
  the row's natural key *including its tenant*, so projecting the same fact again —
  into this catalog or into one rebuilt from the ledger — gives the same id, and
  two tenants' rows never share one.

Ids sort by time (to the millisecond), then by their entropy: a total, stable order
for keyset pages, in which ties are broken arbitrarily but always alike.
Internal surrogate keys (``asset_dependencies.id``, ``execution_tasks.id``) stay
database identities: they are never returned by the catalog.
"""

from __future__ import annotations

import hashlib
from typing import Final

from servo.engine.ids import new_ulid

_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: The largest millisecond time a ULID holds (48 bits).
_MAX_MS: Final = (1 << 48) - 1


def new_id() -> str:
    """A fresh ULID for a row that derives from no engine fact."""
    return new_ulid()


def derived_id(at_us: int, kind: str, tenant_key: str, *key: str) -> str:
    """The ULID of the row of `kind` with natural `key` in tenant `tenant_key`.

    Args:
        at_us: the time of the fact (epoch µs); its millisecond is the id's time.
        kind: the table (rows of different tables never share an id).
        tenant_key: the tenant ('' for global rows).
        key: the rest of the row's natural key.
    """
    millis = min(max(at_us // 1000, 0), _MAX_MS)
    material = "\x00".join((kind, tenant_key, *key)).encode("utf-8")
    entropy = int.from_bytes(hashlib.sha256(material).digest()[:10], "big")
    return encode(millis << 80 | entropy)


def execution_id_of(tenant: str | None, execution_id: str, requested_at: int) -> str:
    """The public id of execution `execution_id` of `tenant`, requested at `requested_at`."""
    return derived_id(requested_at, "executions", tenant or "", execution_id)


def materialization_id_of(
    tenant: str | None, execution_id: str, asset_key: str, partition_key: str | None, at: int
) -> str:
    """The public id of the value written by `execution_id` for an asset (partition).

    `at` is when the value was made (the attempt's end), else when it was recorded.
    """
    return derived_id(
        at, "materializations", tenant or "", execution_id, asset_key, partition_key or ""
    )


def encode(value: int) -> str:
    """A 128-bit integer as a 26-character ULID string."""
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))
