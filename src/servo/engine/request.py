"""`TaskRequest`: everything a worker needs to run one attempt of one task.

It is the dispatch payload for every backend (in-process pool, Cloud Tasks HTTP
body, Celery message), so it serialises to plain JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from servo.engine.schema import OutboxRow, TaskRow
from servo.errors import EngineError
from servo.resilience.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class InputRef:
    """Where one upstream value is stored.

    Attributes:
        name: the upstream asset (the parameter it is passed to).
        location: store path of the value.
        format: its format (see `servo.sdk.io`).
    """

    name: str
    location: str
    format: str


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """One attempt to run, as dispatched.

    Attributes:
        tenant_id: tenant of the run.
        workspace_id: workspace of the run.
        run_id: the run.
        task_key: the task within the run.
        asset_key: the asset to materialize.
        partition_key: the partition, or None.
        attempt: attempt number (1-based).
        attempt_id: ULID the worker must echo on every event.
        dispatch_id: internal dispatch id.
        cloud_task_id: API-safe queue task name.
        inputs: upstream values of data dependencies.
        timeout_s: seconds the attempt may run, or None.
        defs_source: where to load the definitions from.
        reusable_attempt_ids: earlier attempts of the task that the engine gave up
            because their worker was lost; a result one of them recorded may be
            reported instead of running again. Attempts the engine ended for a
            timeout or a cancel are never listed: their results must not count.
        retry: the retry policy planned with the run, or None (one attempt). It, not
            the definitions the worker loads, decides whether an error is retryable,
            so every attempt of a run is judged by the same policy.
        code_version: the version of the definitions the run was planned from; a
            worker with other definitions fails the attempt (`code_version_mismatch`).
        executor: the spec of the executor the asset's workflow runs on
            (`servo.executor`); None for the configured default.
    """

    tenant_id: str
    workspace_id: str
    run_id: str
    task_key: str
    asset_key: str
    partition_key: str | None
    attempt: int
    attempt_id: str
    dispatch_id: str
    cloud_task_id: str
    inputs: tuple[InputRef, ...] = ()
    timeout_s: float | None = None
    defs_source: str | None = None
    reusable_attempt_ids: tuple[str, ...] = ()
    retry: RetryPolicy | None = None
    code_version: str | None = None
    executor: str | None = None

    @property
    def idempotency_key(self) -> str:
        """sha256 of run id + asset key + input locations: equal keys, equal result."""
        locations = "\x00".join(sorted(i.location for i in self.inputs))
        text = f"{self.run_id}\x00{self.asset_key}\x00{self.partition_key or ''}\x00{locations}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields (the retry policy as `RetryPolicy.to_dict`)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["inputs"] = [asdict(i) for i in self.inputs]
        data["reusable_attempt_ids"] = list(self.reusable_attempt_ids)
        data["retry"] = None if self.retry is None else self.retry.to_dict()
        return data

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode("utf-8")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TaskRequest:
        data = dict(raw)
        data["inputs"] = tuple(InputRef(**i) for i in data.get("inputs", ()))
        data["reusable_attempt_ids"] = tuple(data.get("reusable_attempt_ids", ()))
        retry = data.get("retry")
        data["retry"] = None if retry is None else RetryPolicy.from_dict(retry)
        return cls(**data)

    @classmethod
    def from_json(cls, body: bytes) -> TaskRequest:
        return cls.from_dict(json.loads(body))


def build_request(
    tenant_id: str,
    workspace_id: str,
    outbox: OutboxRow,
    task: TaskRow,
    upstream: Mapping[str, TaskRow],
    data_deps: tuple[str, ...],
    defs_source: str | None,
    reusable_attempt_ids: tuple[str, ...] = (),
    code_version: str | None = None,
    executor: str | None = None,
) -> TaskRequest:
    """The request for an outbox row, with inputs from upstream tasks and pinned values,
    and the retry policy planned for the task.

    Args:
        upstream: the run's upstream task rows by task key.
        data_deps: the task's data dependencies (in-run and pinned).
        reusable_attempt_ids: see `TaskRequest.reusable_attempt_ids`.
        code_version: the run's, see `TaskRequest.code_version`.
        executor: see `TaskRequest.executor`.

    Raises:
        EngineError: an in-run upstream has no recorded output (it has not succeeded).
    """
    pinned = {p[0]: (p[1], p[2]) for p in json.loads(task.pinned_inputs or "[]")}
    inputs = []
    for name in data_deps:
        if name in pinned:
            location, fmt = pinned[name]
        else:
            row = upstream.get(name)
            if row is None or row.output_location is None or row.output_format is None:
                raise EngineError(
                    f"run {task.run_id}: task {task.task_key} is dispatched but upstream "
                    f"{name} has no recorded output"
                )
            location, fmt = row.output_location, row.output_format
        inputs.append(InputRef(name, location, fmt))
    return TaskRequest(
        tenant_id=tenant_id,
        workspace_id=workspace_id,
        run_id=outbox.run_id,
        task_key=outbox.task_key,
        asset_key=outbox.asset_key,
        partition_key=outbox.partition_key,
        attempt=outbox.attempt,
        attempt_id=outbox.attempt_id,
        dispatch_id=outbox.dispatch_id,
        cloud_task_id=outbox.cloud_task_id,
        inputs=tuple(inputs),
        timeout_s=task.timeout_s,
        defs_source=defs_source,
        reusable_attempt_ids=reusable_attempt_ids,
        retry=None if task.retry is None else RetryPolicy.from_json(task.retry),
        code_version=code_version,
        executor=executor,
    )
