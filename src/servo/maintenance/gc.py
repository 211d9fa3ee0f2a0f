"""``servo gc``: remove stored values of old runs, never one that is still needed.

Values live at ``outputs/{asset}/{partition}/{run_id}[-{attempt}].{ext}``
(`servo.sdk.io`). A value is removed only when all of these hold:

- its run is known (in the published projections of a scope collected) and
  finished: an unfinished run's values are never removed;
- its run is outside the retention: not among the newest ``keep_runs`` runs of its
  scope, or requested before ``as_of - older_than_days`` (either option suffices;
  with neither, nothing is outside);
- no later run pins it (``TaskRow.pinned_inputs``: values a run reads from earlier
  runs, e.g. a dependency outside its selection, or the values a retry reuses),
  whether that run is retained or not: retrying it must still find them;
- it is not the latest successful materialization of its asset and partition.

`plan_gc` decides (it reads, never writes); `collect` writes the record
(`servo.storage.gc_records`) first and then removes, so a value is never gone
without a record saying why.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from servo.engine import schema as s
from servo.engine.ids import new_ulid, now_us
from servo.engine.snapshot import SnapshotReader
from servo.errors import ConfigError, ObjectNotFoundError
from servo.maintenance.scopes import home_scopes
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.sdk.io import NO_PARTITION
from servo.storage.base import ObjectStore
from servo.storage.gc_records import write_record

log = get_logger(__name__)

REMOVED = metrics.counter("servo_gc_values_removed_total", "Stored values removed by servo gc.")
REMOVED_BYTES = metrics.counter("servo_gc_bytes_removed_total", "Bytes of values removed by gc.")

#: Where values live.
OUTPUTS = "outputs/"
_US_PER_DAY = 86_400 * 1_000_000
_ATTEMPT_SUFFIX = re.compile(r"^(?P<run>.+)-(?P<attempt>\d+)$")


class KeptBecause:
    """Why a value was kept (the keys of `GcPlan.kept`)."""

    UNKNOWN_RUN = "unknown_run"
    UNFINISHED = "unfinished_run"
    RETAINED = "retained_run"
    PINNED = "pinned"
    LATEST = "latest"


@dataclass(frozen=True, slots=True)
class Retention:
    """Which runs to keep.

    Attributes:
        keep_runs: keep the newest N runs of each scope (None: no count limit).
        older_than_days: runs requested more than this many days before `as_of`
            are outside the retention (None: no age limit).
        as_of: the time ages are measured from (epoch µs).
    """

    keep_runs: int | None = None
    older_than_days: float | None = None
    as_of: int = field(default_factory=now_us)

    def __post_init__(self) -> None:
        if self.keep_runs is None and self.older_than_days is None:
            raise ConfigError("servo gc: pass --keep-runs N, --older-than DAYS, or both")
        if self.keep_runs is not None and self.keep_runs < 0:
            raise ConfigError(f"--keep-runs must be 0 or more, got {self.keep_runs}")
        if self.older_than_days is not None and self.older_than_days < 0:
            raise ConfigError(f"--older-than must be 0 or more days, got {self.older_than_days}")

    def outside(self, rank: int, requested_at: int) -> bool:
        """Whether the run at `rank` (0 = newest of its scope) falls outside."""
        if self.keep_runs is not None and rank >= self.keep_runs:
            return True
        if self.older_than_days is not None:
            cutoff = self.as_of - int(self.older_than_days * _US_PER_DAY)
            return requested_at < cutoff
        return False

    def to_json(self) -> dict[str, Any]:
        """The options as a JSON object (for the record)."""
        return {
            "keep_runs": self.keep_runs,
            "older_than_days": self.older_than_days,
            "as_of": self.as_of,
        }


@dataclass(frozen=True, slots=True)
class StoredValue:
    """A value file under ``outputs/``.

    Attributes:
        path: its store path.
        asset_key: its asset.
        partition_key: its partition (None: unpartitioned).
        run_id: the run that wrote it.
        size: its size in bytes.
    """

    path: str
    asset_key: str
    partition_key: str | None
    run_id: str
    size: int

    def to_json(self) -> dict[str, Any]:
        """The value as a JSON object."""
        return {
            "path": self.path,
            "asset_key": self.asset_key,
            "partition_key": self.partition_key,
            "run_id": self.run_id,
            "size": self.size,
        }


@dataclass(frozen=True, slots=True)
class GcPlan:
    """What a collection would remove and why the rest is kept.

    Attributes:
        retention: the options.
        remove: values to remove.
        kept: values kept, by reason (`KeptBecause`).
        runs: runs outside the retention whose values are considered.
    """

    retention: Retention
    remove: tuple[StoredValue, ...]
    kept: dict[str, int]
    runs: tuple[str, ...]

    @property
    def bytes(self) -> int:
        """Bytes of the values to remove."""
        return sum(v.size for v in self.remove)

    def to_json(self) -> dict[str, Any]:
        """The plan as a JSON object."""
        return {
            "options": self.retention.to_json(),
            "removed": [v.to_json() for v in self.remove],
            "bytes": self.bytes,
            "kept": dict(self.kept),
            "runs": list(self.runs),
        }


@dataclass(slots=True)
class _Runs:
    """What the projections say about runs, across the scopes collected."""

    status: dict[str, str] = field(default_factory=dict)
    outside: set[str] = field(default_factory=set)
    pinned: set[str] = field(default_factory=set)
    latest: set[str] = field(default_factory=set)
    sizes: dict[str, int] = field(default_factory=dict)


def plan_gc(store: ObjectStore, retention: Retention, tenant_id: str | None = None) -> GcPlan:
    """Decide what to remove (see the module docstring); reads, never writes.

    Args:
        store: the home's object store.
        retention: which runs to keep.
        tenant_id: collect only this tenant's runs; every tenant when None.

    Raises:
        CorruptObjectError: projections that cannot be read (``servo doctor`` fixes them).
    """
    runs = _runs(store, retention, tenant_id)
    remove: list[StoredValue] = []
    kept: Counter[str] = Counter()
    for value in _values(store, runs.sizes):
        reason = _kept_because(value, runs)
        if reason is None:
            remove.append(value)
        else:
            kept[reason] += 1
    return GcPlan(retention, tuple(remove), dict(sorted(kept.items())), tuple(sorted(runs.outside)))


def collect(store: ObjectStore, plan: GcPlan, *, clock: Any = now_us) -> str | None:
    """Record, then remove, the values of `plan`; the record's path (None: nothing to do)."""
    if not plan.remove:
        return None
    gc_id = new_ulid()
    document = {"created_at": clock(), **plan.to_json()}
    record = write_record(store, gc_id, document)
    for value in plan.remove:
        store.delete(value.path)
        REMOVED.inc()
        REMOVED_BYTES.inc(value.size)
    log.info(
        "gc.collected",
        gc_id=gc_id,
        record=record,
        values=len(plan.remove),
        bytes=plan.bytes,
        runs=len(plan.runs),
    )
    return record


def _kept_because(value: StoredValue, runs: _Runs) -> str | None:
    status = runs.status.get(value.run_id)
    if status is None:
        return KeptBecause.UNKNOWN_RUN
    if status == s.RUN_RUNNING:
        return KeptBecause.UNFINISHED
    if value.run_id not in runs.outside:
        return KeptBecause.RETAINED
    if value.path in runs.pinned:
        return KeptBecause.PINNED
    if value.path in runs.latest:
        return KeptBecause.LATEST
    return None


def _runs(store: ObjectStore, retention: Retention, tenant_id: str | None) -> _Runs:
    found = _Runs()
    for tenant, workspace in home_scopes(store, tenant_id):
        snapshot = SnapshotReader(store, tenant, workspace).load()
        rows = sorted(
            (r for r in snapshot.runs() if r.request_event_id),
            key=lambda r: (r.requested_at, r.run_id),
            reverse=True,
        )
        for rank, run in enumerate(rows):
            found.status[run.run_id] = run.status
            if retention.outside(rank, run.requested_at) and run.status != s.RUN_RUNNING:
                found.outside.add(run.run_id)
        tasks: list[s.TaskRow] = snapshot.rows("tasks")
        for task in tasks:
            found.pinned.update(_pinned(task.pinned_inputs))
            if task.output_location and task.output_size is not None:
                found.sizes[task.output_location] = task.output_size
        found.latest.update(_latest(tasks))
        attempts: list[s.AttemptRow] = snapshot.rows("attempts")
        for attempt in attempts:
            if attempt.output_location and attempt.output_size is not None:
                found.sizes.setdefault(attempt.output_location, attempt.output_size)
    return found


def _pinned(document: str | None) -> Iterable[str]:
    if not document:
        return ()
    try:
        return [str(item[1]) for item in json.loads(document) if len(item) >= 2]
    except (ValueError, TypeError):
        return ()


def _latest(tasks: Iterable[s.TaskRow]) -> set[str]:
    """The location of the latest successful materialization of each asset partition."""
    latest: dict[tuple[str, str | None], tuple[int, str]] = {}
    for task in tasks:
        if task.status != s.SUCCEEDED or not task.output_location:
            continue
        key = (task.asset_key, task.partition_key)
        finished = task.finished_at or 0
        seen = latest.get(key)
        if seen is None or (finished, task.output_location) > seen:
            latest[key] = (finished, task.output_location)
    return {location for _, location in latest.values()}


def _values(store: ObjectStore, sizes: dict[str, int]) -> Iterable[StoredValue]:
    for path in store.list_prefix(OUTPUTS):
        parts = path.split("/")
        if len(parts) != 4:
            continue
        _, asset_key, partition, name = parts
        stem = name.rsplit(".", 1)[0]
        match = _ATTEMPT_SUFFIX.match(stem)
        run_id = match.group("run") if match else stem
        size = sizes.get(path)
        if size is None:
            try:
                size = len(store.get(path).data)
            except ObjectNotFoundError:
                continue
        partition_key = None if partition == NO_PARTITION else partition
        yield StoredValue(path, asset_key, partition_key, run_id, size)
