"""The manifest: which projection files make up each table, published by CAS.

Layout (per tenant and workspace)::

    projections/{tenant}/{workspace}/manifest/{generation:020d}.json   immutable
    projections/{tenant}/{workspace}/manifest/LATEST                   best-effort hint

Invariants:

- **CAS with fencing** (SPEC §4 invariant 4). Publishing generation N+1 is a
  create-only write (`put_if_absent`) of its own path. Exactly one writer can create
  it; every other gets `ManifestConflictError` and must reload and retry. The
  generation is the fencing token: a compactor that lost the race (or was paused)
  can never overwrite what the winner published.
- **Contiguous generations.** A writer publishes N+1 only after loading N, so the
  existing generations are exactly 1..latest; generation 0 means "no manifest yet"
  (every table empty).
- **No listing** (invariant 6). The newest generation is found from the ``LATEST``
  hint and forward probing with `head`: exponential steps, then binary search, so a
  hint that lags by k generations costs O(log k) heads. The hint is written after a
  successful publish with a conditional write; losing that race is ignored, so the
  hint may lag but never runs ahead of a published manifest.
- Manifests name every file by path: readers never discover files any other way.
- **An unreadable newest generation is survived** (a power loss with fsync off can
  truncate it). `ManifestStore.latest` falls back to the newest readable earlier
  generation (generation 0, empty, when none is). A writer's store (``repair=True``)
  then sets each unreadable generation aside (``quarantine/``) and replaces it, by a
  conditional write on the unreadable bytes' store generation, with the fallback
  stamped with its generation: the chain stays contiguous and the next publish takes
  N+1 instead of colliding with N forever. Only an object that fails to decode is
  touched, and a live writer never leaves one (writes are atomic), so the replace can
  lose only to another repair of the same bytes, after which the winner's manifest
  is read. A manifest of a newer format is not damage: reading it is an error that
  says to upgrade, and it is never passed over or set aside.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from servo.engine.damage import corrupt_object, set_aside, where
from servo.engine.ids import now_us
from servo.engine.ledger import validate_scope_id
from servo.errors import (
    CorruptObjectError,
    EngineError,
    ManifestConflictError,
    ObjectExistsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageError,
)
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.storage.base import ObjectStore

log = get_logger(__name__)

FALLBACKS = metrics.counter(
    "servo_manifest_fallbacks_total",
    "Unreadable newest manifests passed over for an earlier generation.",
    ["repaired"],
)

#: `Manifest.writer_id` of a generation that replaced an unreadable one.
REPAIR_WRITER = "servo-repair"
#: Rounds of `latest` lost to other repairs before giving up (each needs a new repair).
_REPAIR_ROUNDS = 8

#: Version of the manifest JSON document written; format 1 (no `ledger_through`,
#: ledger batches named by ULID) is still read.
MANIFEST_FORMAT = 2
_READABLE_FORMATS = (1, 2)


@dataclass(frozen=True, slots=True)
class TableFiles:
    """The files of one projection table.

    Attributes:
        base: path of the base file, or None when the table has no base yet.
        deltas: L0 delta files, oldest first; a later file's row wins per key.
    """

    base: str | None = None
    deltas: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of the table, base first."""
        return self.deltas if self.base is None else (self.base, *self.deltas)


EMPTY_TABLE = TableFiles()


@dataclass(frozen=True, slots=True)
class Manifest:
    """One published generation of the projections.

    Attributes:
        generation: the fencing token; generation N+1 is published only over N.
        tenant_id: tenant the projections belong to.
        workspace_id: workspace the projections belong to.
        tables: files per table name; a missing table is empty.
        last_processed_at: watermark (epoch µs): every event notified to the
            compactor before this instant is folded into this generation. It never
            passes the newest folded event's time nor the publisher's clock.
        ledger_through: every numbered ledger batch ``1..ledger_through`` is folded
            into this generation (recovery probes from the next one; ADR 0012).
        format: the document format it was read from (1: written before numbered
            batches, so recovery must also look for batches named by ULID).
        events_folded: events folded over the whole history (duplicates included).
        published_at: epoch µs when the writer published this generation.
        writer_id: id of the compactor that published it.
    """

    generation: int
    tenant_id: str
    workspace_id: str
    tables: Mapping[str, TableFiles] = field(default_factory=dict)
    last_processed_at: int = 0
    events_folded: int = 0
    published_at: int = 0
    writer_id: str = ""
    ledger_through: int = 0
    format: int = MANIFEST_FORMAT

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", MappingProxyType(dict(self.tables)))

    def files_of(self, table: str) -> TableFiles:
        """The files of `table` (empty when the manifest does not name it)."""
        return self.tables.get(table, EMPTY_TABLE)

    def to_json(self) -> bytes:
        """The manifest as canonical JSON bytes."""
        doc = {
            "format": MANIFEST_FORMAT,
            "generation": self.generation,
            "ledger_through": self.ledger_through,
            "tenant_id": self.tenant_id,
            "workspace_id": self.workspace_id,
            "last_processed_at": self.last_processed_at,
            "events_folded": self.events_folded,
            "published_at": self.published_at,
            "writer_id": self.writer_id,
            "tables": {
                name: {"base": files.base, "deltas": list(files.deltas)}
                for name, files in sorted(self.tables.items())
            },
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, source: str = "<bytes>") -> Manifest:
        """Decode a manifest written by `to_json`.

        Raises:
            EngineError: not a manifest of a known format; names `source`.
        """
        try:
            doc: dict[str, Any] = json.loads(data)
            if doc.get("format") not in _READABLE_FORMATS:
                raise EngineError(
                    f"{source}: manifest format {doc.get('format')!r} is not supported "
                    "(this Servo reads formats 1 and 2)"
                )
            tables = {
                name: TableFiles(base=t["base"], deltas=tuple(t["deltas"]))
                for name, t in doc["tables"].items()
            }
            return cls(
                generation=int(doc["generation"]),
                tenant_id=doc["tenant_id"],
                workspace_id=doc["workspace_id"],
                tables=tables,
                last_processed_at=int(doc["last_processed_at"]),
                events_folded=int(doc["events_folded"]),
                published_at=int(doc["published_at"]),
                writer_id=str(doc["writer_id"]),
                ledger_through=int(doc.get("ledger_through", 0)),
                format=int(doc["format"]),
            )
        except EngineError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EngineError(
                f"{source}: malformed manifest ({type(exc).__name__}: {exc})"
            ) from exc


def _newer_format(data: bytes) -> int | None:
    """The format of a manifest document newer than this Servo's, else None."""
    try:
        found = json.loads(data).get("format")
    except (ValueError, AttributeError):
        return None
    newer = isinstance(found, int) and not isinstance(found, bool) and found > MANIFEST_FORMAT
    return found if newer else None


class ManifestStore:
    """Reads and publishes the manifests of one (tenant, workspace).

    Args:
        store: the object store.
        tenant_id: the tenant.
        workspace_id: the workspace.
        repair: a writer's store: `latest` sets unreadable newest generations aside
            and replaces them (see the module docstring). Readers leave them alone.
    """

    def __init__(
        self, store: ObjectStore, tenant_id: str, workspace_id: str, *, repair: bool = False
    ) -> None:
        validate_scope_id("tenant_id", tenant_id)
        validate_scope_id("workspace_id", workspace_id)
        self._store = store
        self.repair = repair
        self.tenant_id = tenant_id
        self.workspace_id = workspace_id
        self.prefix = f"projections/{tenant_id}/{workspace_id}/"
        self.hint_path = f"{self.prefix}manifest/LATEST"
        # Store generation of the hint object as last seen by us, for a blind CAS.
        self._hint_generation: int | None = None

    def path(self, generation: int) -> str:
        """The path of manifest `generation`."""
        return f"{self.prefix}manifest/{generation:020d}.json"

    def load(self, generation: int) -> Manifest:
        """Read manifest `generation`.

        Raises:
            ObjectNotFoundError: that generation was never published.
            CorruptObjectError: the object is not a manifest of this tenant and workspace.
            EngineError: a manifest of a newer format than this Servo's.
        """
        return self._decode(generation, self._store.get(self.path(generation)).data)

    def _decode(self, generation: int, data: bytes) -> Manifest:
        """`data` as manifest `generation` of this scope (see `load`).

        Raises:
            EngineError: a manifest of a newer format (not damage: never passed over).
        """
        path = self.path(generation)
        newer = _newer_format(data)
        if newer is not None:
            raise EngineError(
                f"{where(self._store, path)}: manifest format {newer} was written by a newer "
                f"Servo (this one writes {MANIFEST_FORMAT}); upgrade Servo to use this home"
            )
        try:
            manifest = Manifest.from_json(data, source=path)
        except EngineError as exc:
            problem = str(exc).removeprefix(f"{path}: ")
            raise corrupt_object(self._store, path, problem) from exc
        if (manifest.generation, manifest.tenant_id, manifest.workspace_id) != (
            generation,
            self.tenant_id,
            self.workspace_id,
        ):
            raise corrupt_object(
                self._store,
                path,
                f"holds generation {manifest.generation} of "
                f"{manifest.tenant_id}/{manifest.workspace_id}",
            )
        return manifest

    def latest_generation(self) -> int:
        """The newest published generation (0 when none), by hint and probing."""
        start = self._read_hint()
        if start > 0 and self._store.head(self.path(start)) is None:
            start = 0  # a hint naming an absent manifest is ignored (never written so)
        return self._probe(start)

    def latest(self) -> Manifest | None:
        """The newest published manifest, or None when nothing was published yet.

        The hint is trusted to name a published generation (it is only written after
        the publish), which saves a `head`; reading that manifest double-checks it.
        An unreadable newest generation is passed over for the newest readable
        earlier one; with `repair` it is also set aside and replaced (module docstring).

        Raises:
            CorruptObjectError: with `repair`, other repairs kept replacing the same
                generations (names the path).
        """
        generation = self._probe(self._read_hint())
        for _ in range(_REPAIR_ROUNDS):
            if generation == 0:
                return None
            try:
                return self._newest_readable(generation)
            except ObjectNotFoundError:
                # The hint named a generation that does not exist (damaged or
                # hand-edited), or a repair moved it meanwhile: probe from scratch.
                generation = self._probe(0)
            except PreconditionFailedError:
                generation = self._probe(generation)  # another repair won: read its result
        raise corrupt_object(
            self._store, self.path(generation), "keeps being replaced while it is repaired"
        )

    def _newest_readable(self, generation: int) -> Manifest | None:
        """Generation `generation`, else the newest readable one below it (see `latest`).

        Raises:
            ObjectNotFoundError: `generation` does not exist.
            PreconditionFailedError: with `repair`, another process replaced an
                unreadable generation first.
        """
        unreadable: list[tuple[int, CorruptObjectError]] = []
        fallback: Manifest | None = None
        for candidate in range(generation, 0, -1):
            try:
                fallback = self.load(candidate)
                break
            except CorruptObjectError as exc:
                unreadable.append((candidate, exc))
            except ObjectNotFoundError:
                if candidate == generation:
                    raise
                # A hole below the newest (moved aside by hand): keep looking down.
        if not unreadable:
            return fallback
        FALLBACKS.labels(repaired=str(self.repair).lower()).inc(len(unreadable))
        if not self.repair:
            for candidate, problem in unreadable:
                log.warning(
                    "manifest.unreadable_passed_over",
                    tenant_id=self.tenant_id,
                    workspace_id=self.workspace_id,
                    generation=candidate,
                    using=0 if fallback is None else fallback.generation,
                    error=str(problem),
                )
            return fallback
        for candidate, problem in reversed(unreadable):  # oldest first: the chain stays whole
            fallback = self._replace_unreadable(candidate, fallback, problem)
        return fallback

    def _replace_unreadable(
        self, generation: int, fallback: Manifest | None, problem: CorruptObjectError
    ) -> Manifest:
        """Set the unreadable `generation` aside; replace it with `fallback` restamped.

        Raises:
            PreconditionFailedError: the object changed since it was read.
            ObjectNotFoundError: the object was removed since it was read.
        """
        path = self.path(generation)
        torn = self._store.get(path)
        try:
            self._decode(generation, torn.data)
        except CorruptObjectError:
            pass  # still unreadable: ours to repair
        else:
            raise PreconditionFailedError(f"{path} was replaced meanwhile")
        moved_to = set_aside(self._store, path, torn.data)
        base = fallback or Manifest(generation, self.tenant_id, self.workspace_id)
        filler = replace(
            base, generation=generation, published_at=now_us(), writer_id=REPAIR_WRITER
        )
        self._store.put_if_generation(path, filler.to_json(), torn.generation)
        log.warning(
            "manifest.unreadable_set_aside",
            tenant_id=self.tenant_id,
            workspace_id=self.workspace_id,
            generation=generation,
            path=where(self._store, path),
            moved_to=where(self._store, moved_to),
            content_of=0 if fallback is None else fallback.generation,
            error=str(problem),
        )
        return filler

    def publish(self, manifest: Manifest) -> None:
        """Create `manifest` as its generation, then advance the hint (best effort).

        Raises:
            ManifestConflictError: that generation exists already (another writer won).
        """
        if manifest.generation < 1:
            raise EngineError(f"cannot publish generation {manifest.generation}: must be >= 1")
        if (manifest.tenant_id, manifest.workspace_id) != (self.tenant_id, self.workspace_id):
            raise EngineError("manifest of another tenant/workspace given to this ManifestStore")
        path = self.path(manifest.generation)
        try:
            self._store.put_if_absent(path, manifest.to_json())
        except ObjectExistsError as exc:
            raise ManifestConflictError(
                f"generation {manifest.generation} of {self.tenant_id}/{self.workspace_id} "
                "was published by another writer"
            ) from exc
        self._write_hint(manifest.generation)

    def _probe(self, known: int) -> int:
        """The largest existing generation, given that `known` exists (or is 0)."""
        step = 1
        while self._store.head(self.path(known + step)) is not None:
            known += step
            step *= 2
        # Invariant: `known` exists (or is 0) and `known + step` does not.
        low, high = known, known + step
        while high - low > 1:
            middle = (low + high) // 2
            if self._store.head(self.path(middle)) is not None:
                low = middle
            else:
                high = middle
        return low

    def _read_hint(self) -> int:
        try:
            stored = self._store.get(self.hint_path)
        except ObjectNotFoundError:
            self._hint_generation = None
            return 0
        self._hint_generation = stored.generation
        try:
            return max(0, int(json.loads(stored.data)["generation"]))
        except (ValueError, KeyError, TypeError):
            return 0  # a damaged hint only costs probing

    def _write_hint(self, generation: int) -> None:
        """Point the hint at `generation`; a lost race leaves it lagging, never ahead."""
        data = json.dumps({"generation": generation}).encode("utf-8")
        try:
            try:
                if self._hint_generation is None:
                    self._hint_generation = self._store.put_if_absent(self.hint_path, data)
                else:
                    self._hint_generation = self._store.put_if_generation(
                        self.hint_path, data, self._hint_generation
                    )
                return
            except (ObjectExistsError, PreconditionFailedError):
                pass
            # Someone else moved it: re-read, and write only if the hint is behind us
            # (conditionally on what we read, so it never moves backwards).
            if self._read_hint() < generation and self._hint_generation is not None:
                self._hint_generation = self._store.put_if_generation(
                    self.hint_path, data, self._hint_generation
                )
        except StorageError as exc:
            # The manifest is published; the hint only speeds up `latest`.
            self._hint_generation = None
            log.debug(
                "manifest.hint_not_updated",
                tenant_id=self.tenant_id,
                generation=generation,
                error=str(exc),
            )
