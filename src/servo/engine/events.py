"""Engine events: small immutable records, the only thing written to the ledger.

Every event has the same envelope (`Event`) and a typed payload, one dataclass per
event type. Events are serialised as JSON; `schema_version` is on every event so the
decoder can refuse (or upgrade) what it does not understand.

Lifecycle of a run::

    RunRequested ─► DispatchRequested(attempt n, attempt_id) ─► DispatchEnqueued
                 ─► TaskStarted ─► TaskHeartbeat* ─► TaskFinished(outcome)
                                                  └► AttemptAbandoned(reason)   (engine)
    TimerRequested(kind) ─► TimerFired                                            (timers)
    RunCancelRequested

Derived facts (`TaskBecameReady`, `TaskSkipped`, `RunCompleted`) are never events:
they exist only as states in the projections (see `servo.engine.fold`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from servo.engine import vocabulary
from servo.engine.ids import new_ulid, now_us
from servo.errors import ConfigError, EventDecodeError
from servo.resilience.retry import RetryPolicy

SCHEMA_VERSION = 1

DependencyType = Literal["data", "metadata", "control"]
Outcome = Literal["succeeded", "failed"]
#: Payload field types, from `servo.engine.vocabulary` (decoded values become members).
TimerKind = vocabulary.TimerKind
AbandonReason = vocabulary.AbandonReason


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def _plain(value: Any) -> Any:
    """JSON-ready form of a payload value (dataclasses, tuples and mappings nested)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, RetryPolicy):
        return value.to_dict()
    names = _field_names(type(value))
    return {name: _plain(getattr(value, name)) for name in names}


@dataclass(frozen=True, slots=True)
class Payload:
    """Base of every payload; `type_name` is the event's `type`."""

    type_name: ClassVar[str] = ""
    #: Whether the event concerns one task (needs task_key).
    task_scoped: ClassVar[bool] = True
    #: Whether the event belongs to one attempt (needs attempt and attempt_id).
    attempt_scoped: ClassVar[bool] = True

    def to_dict(self) -> dict[str, Any]:
        return {name: _plain(getattr(self, name)) for name in _field_names(type(self))}


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """One task of a run's plan.

    Attributes:
        task_key: unique within the run (the asset key, plus the partition if any).
        asset_key: the asset this task materializes.
        partition_key: the partition, or None for unpartitioned assets.
        deps: (upstream task_key, dependency type) pairs.
        max_attempts: attempts allowed by the retry policy (>= 1).
        retry: the retry policy planned for the task (it decides retryability and
            backoff for every attempt, whatever the definitions say later), or None.
        timeout_s: the asset's timeout in seconds, or None.
        pinned_inputs: (dependency, location, format) of upstream values that come
            from earlier runs (dependencies outside this run), fixed at planning.
    """

    task_key: str
    asset_key: str
    partition_key: str | None = None
    deps: tuple[tuple[str, DependencyType], ...] = ()
    max_attempts: int = 1
    retry: RetryPolicy | None = None
    timeout_s: float | None = None
    pinned_inputs: tuple[tuple[str, str, str], ...] = ()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PlannedTask:
        retry = raw.get("retry")
        return cls(
            task_key=raw["task_key"],
            asset_key=raw["asset_key"],
            partition_key=raw.get("partition_key"),
            deps=tuple((d[0], d[1]) for d in raw.get("deps", ())),
            max_attempts=int(raw.get("max_attempts", 1)),
            retry=None if retry is None else RetryPolicy.from_dict(retry),
            timeout_s=raw.get("timeout_s"),
            pinned_inputs=tuple((p[0], p[1], p[2]) for p in raw.get("pinned_inputs", ())),
        )


@dataclass(frozen=True, slots=True)
class RunRequested(Payload):
    """A run was requested with its whole plan."""

    type_name: ClassVar[str] = "RunRequested"
    task_scoped: ClassVar[bool] = False
    attempt_scoped: ClassVar[bool] = False
    tasks: tuple[PlannedTask, ...] = ()
    idempotency_key: str | None = None
    selection: str | None = None
    #: Where the definitions come from, so any worker can load them again.
    defs_source: str | None = None
    #: The version of the definitions the run was planned from
    #: (`servo.sdk.code_version`); None for runs planned before it was recorded.
    code_version: str | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunRequested:
        return cls(
            tasks=tuple(PlannedTask.from_dict(t) for t in raw.get("tasks", ())),
            idempotency_key=raw.get("idempotency_key"),
            selection=raw.get("selection"),
            defs_source=raw.get("defs_source"),
            code_version=raw.get("code_version"),
        )

    def to_dict(self) -> dict[str, Any]:
        data = Payload.to_dict(self)
        if data["code_version"] is None:  # a ledger written before it keeps its bytes
            del data["code_version"]
        return data


@dataclass(frozen=True, slots=True)
class RunCancelRequested(Payload):
    """Cancel a run: nothing new starts; running attempts are asked to stop."""

    type_name: ClassVar[str] = "RunCancelRequested"
    task_scoped: ClassVar[bool] = False
    attempt_scoped: ClassVar[bool] = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DispatchRequested(Payload):
    """The ready controller decided to run attempt `attempt` under `attempt_id`."""

    type_name: ClassVar[str] = "DispatchRequested"


@dataclass(frozen=True, slots=True)
class DispatchEnqueued(Payload):
    """The dispatcher handed the attempt to the queue (or the queue had it already)."""

    type_name: ClassVar[str] = "DispatchEnqueued"
    cloud_task_id: str = ""


@dataclass(frozen=True, slots=True)
class TaskStarted(Payload):
    """A worker began the attempt."""

    type_name: ClassVar[str] = "TaskStarted"
    worker_id: str = ""


@dataclass(frozen=True, slots=True)
class TaskHeartbeat(Payload):
    """A worker is still running the attempt."""

    type_name: ClassVar[str] = "TaskHeartbeat"


@dataclass(frozen=True, slots=True)
class OutputRef:
    """Where an asset value was written.

    Attributes:
        location: store path of the value.
        format: "parquet", "json" or "pickle".
        size_bytes: size of the stored object.
        row_count: rows for tabular values, else None.
    """

    location: str
    format: str
    size_bytes: int
    row_count: int | None = None


@dataclass(frozen=True, slots=True)
class TaskFinished(Payload):
    """A worker ended the attempt, successfully or not."""

    type_name: ClassVar[str] = "TaskFinished"
    outcome: Outcome = "succeeded"
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    #: Whether the retry policy classifies the error as retryable.
    retryable: bool = False
    output: OutputRef | None = None
    duration_s: float | None = None
    #: The earlier attempt whose recorded result this success reports (the asset did
    #: not run again); None when this attempt ran it.
    reused_attempt_id: str | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TaskFinished:
        output = raw.get("output")
        outcome = raw.get("outcome")
        if outcome not in ("succeeded", "failed"):
            raise ValueError(f"outcome must be 'succeeded' or 'failed', got {outcome!r}")
        return cls(
            outcome=outcome,
            error_type=raw.get("error_type"),
            error_message=raw.get("error_message"),
            error_traceback=raw.get("error_traceback"),
            retryable=bool(raw.get("retryable", False)),
            output=None if output is None else OutputRef(**output),
            duration_s=raw.get("duration_s"),
            reused_attempt_id=raw.get("reused_attempt_id"),
        )


@dataclass(frozen=True, slots=True)
class AttemptAbandoned(Payload):
    """The engine ended an attempt it gave up on.

    Reasons: ``timeout``, ``heartbeat_missed``, ``cancelled``, ``worker_lost`` (the
    process running it is gone, e.g. the embedded runner restarted after a crash, or
    the attempt's own worker process died), and ``pool_lost`` (its worker process
    was ended because the pool it shared broke: another attempt's worker died, or the
    pool's manager did; not the attempt's doing). A lost worker is redelivered
    without using the retry budget, up to `servo.engine.derive.MAX_REDELIVERIES`
    times; a lost pool is redelivered without using either budget, up to
    `servo.engine.derive.MAX_POOL_LOSSES` times (ADR 0016).
    """

    type_name: ClassVar[str] = "AttemptAbandoned"
    reason: AbandonReason = AbandonReason.TIMEOUT
    #: Whether the retry policy allows another attempt for this reason.
    retryable: bool = False
    #: What happened, for people (e.g. "worker process exited with code 1 while
    #: running a"); the attempt's error message. None: "attempt abandoned: REASON".
    detail: str | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AttemptAbandoned:
        return cls(
            reason=AbandonReason(raw.get("reason", AbandonReason.TIMEOUT)),
            retryable=bool(raw.get("retryable", False)),
            detail=raw.get("detail"),
        )


@dataclass(frozen=True, slots=True)
class TimerRequested(Payload):
    """A durable timer: act on the attempt at `due_at` (epoch µs)."""

    type_name: ClassVar[str] = "TimerRequested"
    #: Timers name the attempt number they act on; they carry no attempt_id.
    attempt_scoped: ClassVar[bool] = False
    timer_id: str = ""
    kind: TimerKind = TimerKind.RETRY
    due_at: int = 0

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TimerRequested:
        return cls(
            timer_id=raw.get("timer_id", ""),
            kind=TimerKind(raw.get("kind", TimerKind.RETRY)),
            due_at=int(raw.get("due_at", 0)),
        )


@dataclass(frozen=True, slots=True)
class TimerFired(Payload):
    """The timer was delivered and acted upon."""

    type_name: ClassVar[str] = "TimerFired"
    #: Timers name the attempt number they act on; they carry no attempt_id.
    attempt_scoped: ClassVar[bool] = False
    timer_id: str = ""


PAYLOAD_TYPES: dict[str, type[Payload]] = {
    cls.type_name: cls
    for cls in (
        RunRequested,
        RunCancelRequested,
        DispatchRequested,
        DispatchEnqueued,
        TaskStarted,
        TaskHeartbeat,
        TaskFinished,
        AttemptAbandoned,
        TimerRequested,
        TimerFired,
    )
}


@dataclass(frozen=True, slots=True)
class Event:
    """One immutable engine event.

    Attributes:
        event_id: ULID, unique per event; a redelivered event keeps its id.
        tenant_id: tenant scope of the event.
        workspace_id: workspace scope within the tenant.
        run_id: the run the event belongs to.
        payload: the typed payload; its class gives the event `type`.
        task_key: the task, for task-scoped payloads.
        attempt: attempt number (1-based), for attempt-scoped payloads.
        attempt_id: ULID of the attempt, echoed by workers.
        emitted_at: epoch microseconds when the writer created the event.
        schema_version: event schema version.
    """

    event_id: str
    tenant_id: str
    workspace_id: str
    run_id: str
    payload: Payload
    task_key: str | None = None
    attempt: int | None = None
    attempt_id: str | None = None
    emitted_at: int = 0
    schema_version: int = SCHEMA_VERSION
    #: The event's type name (derived from the payload class).
    type: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", self.payload.type_name)
        if self.payload.task_scoped and not self.task_key:
            raise ValueError(f"{self.type} needs a task_key")
        if self.payload.attempt_scoped and (not self.attempt or not self.attempt_id):
            raise ValueError(f"{self.type} needs attempt (>= 1) and attempt_id")

    @classmethod
    def new(
        cls,
        payload: Payload,
        *,
        tenant_id: str,
        workspace_id: str,
        run_id: str,
        task_key: str | None = None,
        attempt: int | None = None,
        attempt_id: str | None = None,
        emitted_at: int | None = None,
    ) -> Event:
        """A new event with a fresh ULID, stamped now unless `emitted_at` is given."""
        return cls(
            event_id=new_ulid(),
            tenant_id=tenant_id,
            workspace_id=workspace_id,
            run_id=run_id,
            payload=payload,
            task_key=task_key,
            attempt=attempt,
            attempt_id=attempt_id,
            emitted_at=now_us() if emitted_at is None else emitted_at,
        )

    @property
    def order_key(self) -> tuple[int, str]:
        """Deterministic precedence between conflicting facts: earliest first."""
        return (self.emitted_at, self.event_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "event_id": self.event_id,
            "type": self.type,
            "tenant_id": self.tenant_id,
            "workspace_id": self.workspace_id,
            "run_id": self.run_id,
            "task_key": self.task_key,
            "attempt": self.attempt,
            "attempt_id": self.attempt_id,
            "emitted_at": self.emitted_at,
            "payload": self.payload.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Event:
        """Decode one event.

        Raises:
            EventDecodeError: unknown type or version, or a malformed field.
        """
        try:
            version = raw["schema_version"]
            if version != SCHEMA_VERSION:
                raise EventDecodeError(
                    f"event {raw.get('event_id')}: schema_version {version} is not supported "
                    f"(this Servo reads version {SCHEMA_VERSION}); upgrade Servo"
                )
            kind = PAYLOAD_TYPES.get(raw["type"])
            if kind is None:
                raise EventDecodeError(f"event {raw.get('event_id')}: unknown type {raw['type']!r}")
            body = raw.get("payload") or {}
            from_dict = getattr(kind, "from_dict", None)
            if from_dict is not None:
                payload = from_dict(body)
            else:
                names = {f.name for f in fields(kind)}
                payload = kind(**{k: v for k, v in body.items() if k in names})
            return cls(
                event_id=raw["event_id"],
                tenant_id=raw["tenant_id"],
                workspace_id=raw["workspace_id"],
                run_id=raw["run_id"],
                payload=payload,
                task_key=raw.get("task_key"),
                attempt=raw.get("attempt"),
                attempt_id=raw.get("attempt_id"),
                emitted_at=int(raw["emitted_at"]),
            )
        except EventDecodeError:
            raise
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise EventDecodeError(
                f"event {raw.get('event_id') if isinstance(raw, Mapping) else raw!r}: "
                f"malformed ({type(exc).__name__}: {exc})"
            ) from exc


def encode_events(events: Iterable[Event]) -> bytes:
    """Serialise a batch of events as one JSON document (a ledger object)."""
    return json.dumps(
        {"events": [e.to_dict() for e in events]}, separators=(",", ":"), sort_keys=True
    ).encode("utf-8")


def decode_events(data: bytes, source: str = "<bytes>") -> list[Event]:
    """Decode a ledger object written by `encode_events`.

    Raises:
        EventDecodeError: the object is not a valid event batch; names `source`.
    """
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise EventDecodeError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        raise EventDecodeError(f"{source}: expected an object with an 'events' list")
    try:
        return [Event.from_dict(raw) for raw in doc["events"]]
    except EventDecodeError as exc:
        raise EventDecodeError(f"{source}: {exc}") from exc
