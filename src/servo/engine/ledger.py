"""The ledger: append-only, create-only JSON objects of events, one per write.

Invariants (SPEC §4):

- **Append-only.** Every ledger object is written with `put_if_absent`; nothing in
  the ledger is ever overwritten or deleted by the engine.
- **Scoped paths.** Every object lives under ``ledger/{tenant}/{workspace}/``;
  tenant and workspace ids match ``^[A-Za-z0-9_-]{1,64}$`` so they can never escape
  their prefix.
- **Batches** (`LedgerWriter.append`) go to ``.../batches/{seq:020d}.json``: one
  object per call, numbered by a per-workspace sequence that no clock influences.
  A writer claims the next number with a create-only write, so the numbers in use
  are always exactly ``1..N`` (number n is created only by a writer that saw n-1)
  and a reader finds every batch past a known n by probing n+1, n+2, ... with
  `head` until one is absent — how recovery finds committed batches that were never
  folded (ADR 0012). Two writers that race for a number cost one retry each.
  Batches of older homes are named ``{ulid}.json``; `batch_seq` tells them apart.
- **Deterministic paths** (`LedgerWriter.append_at`) are for facts that must exist
  at most once, such as ``runs/{run_id}/requested``: the first writer wins and later
  writers read the winner with `LedgerReader.read`.
- **Notify, then forget.** After a successful write the writer hands the path to
  ``notify`` (the compactor's inbox in embedded mode, a queue message in scale-out).
  A lost notification delays folding but never loses the event: anti-entropy (the
  only code allowed to list the ledger) finds it.

Transient storage errors are retried a bounded number of times with exponential
backoff and jitter; every failure is logged with context and counted by type.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from servo.engine.damage import corrupt_object
from servo.engine.events import Event, decode_events, encode_events
from servo.errors import (
    EngineError,
    EventDecodeError,
    ObjectExistsError,
    StorageError,
    TransientStorageError,
)
from servo.observability import metrics
from servo.observability.logging import get_logger
from servo.storage.base import ObjectStore

log = get_logger(__name__)

#: Backoff jitter; private so Servo never perturbs the global `random` state of user code.
_JITTER = random.Random()

EVENTS_WRITTEN = metrics.counter(
    "servo_ledger_events_written_total", "Events appended to the ledger."
)
WRITE_DURATION = metrics.histogram(
    "servo_ledger_write_duration_seconds", "Duration of one ledger object write, retries included."
)
WRITE_ERRORS = metrics.counter(
    "servo_ledger_write_errors_total", "Failed ledger write attempts.", ["error_type"]
)
SEQ_CONFLICTS = metrics.counter(
    "servo_ledger_seq_conflicts_total",
    "Batch numbers another writer took first (each costs one retry).",
)
INBOX_DEPTH = metrics.gauge(
    "servo_compaction_inbox_depth", "Ledger paths waiting in the in-process compaction inbox."
)

_SCOPE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SUFFIX_SEGMENT = re.compile(r"^[A-Za-z0-9_.:=-]{1,200}$")
#: Digits of a batch sequence number in its object name.
_SEQ_DIGITS = 20

#: Attempts for one write when the store reports a transient error.
WRITE_ATTEMPTS = 3
#: First backoff delay in seconds; doubled on each retry, with up to 50 % jitter.
BACKOFF_S = 0.01

Notify = Callable[[Sequence[str]], None]


def validate_scope_id(kind: str, value: str) -> str:
    """Return `value` if it is a valid tenant or workspace id.

    Args:
        kind: "tenant_id" or "workspace_id", for the message.
        value: the id to check.

    Raises:
        EngineError: `value` does not match ``^[A-Za-z0-9_-]{1,64}$``.
    """
    if not isinstance(value, str) or not _SCOPE_ID.match(value):
        raise EngineError(
            f"invalid {kind} {value!r}: use 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'"
        )
    return value


def batch_path(prefix: str, seq: int) -> str:
    """The path of batch `seq` (>= 1) under the ledger `prefix`."""
    return f"{prefix}batches/{seq:0{_SEQ_DIGITS}d}.json"


def batch_seq(path: str) -> int | None:
    """The sequence number of a batch path, or None (not a numbered batch)."""
    name = path.rpartition("/")[2]
    digits = name.removesuffix(".json")
    if len(digits) != _SEQ_DIGITS or not digits.isdigit() or "/batches/" not in path:
        return None
    return int(digits)


#: Maps a function over batch numbers: `map` one by one, or an executor's `map` to
#: probe a window of numbers at once (a store whose calls take milliseconds).
ProbeMap = Callable[[Callable[[int], bool], Sequence[int]], Iterable[bool]]

#: Numbers probed at once by a concurrent `ProbeMap`.
PROBE_WIDTH = 8


def first_absent_seq(
    store: ObjectStore, prefix: str, known: int = 0, probe: ProbeMap | None = None
) -> int:
    """The first batch number absent under `prefix`, given that batches ``1..known``
    exist (numbers have no gaps: present ones, then absent ones).

    Exponential steps, then binary search: O(log n) `head` calls. With a concurrent
    `probe`, the first `PROBE_WIDTH` numbers are checked at once, which finds the few
    batches other writers appended meanwhile in one round trip; a longer run of taken
    numbers (a writer idle while others wrote) is then searched as above.
    """

    def exists(seq: int) -> bool:
        return store.head(batch_path(prefix, seq)) is not None

    if probe is not None:  # the common case: a few numbers taken since; else search
        window = range(known + 1, known + 1 + PROBE_WIDTH)
        for seq, present in zip(window, probe(exists, window), strict=True):
            if not present:
                return seq
        known += PROBE_WIDTH
    step = 1
    while exists(known + step):
        known += step
        step *= 2
    low, high = known, known + step  # `low` exists (or is 0); `high` does not
    while high - low > 1:
        middle = (low + high) // 2
        if exists(middle):
            low = middle
        else:
            high = middle
    return high


def ledger_prefix(tenant_id: str, workspace_id: str) -> str:
    """The ledger prefix of one (tenant, workspace), ending with '/'."""
    validate_scope_id("tenant_id", tenant_id)
    validate_scope_id("workspace_id", workspace_id)
    return f"ledger/{tenant_id}/{workspace_id}/"


class CompactionInbox:
    """A thread-safe FIFO of ledger paths waiting to be compacted (embedded mode).

    Writers call `put` (it is a valid `notify` target); the compactor loop calls
    `wait` then `drain`. Duplicated paths are harmless: the fold is idempotent.
    """

    def __init__(self) -> None:
        self._paths: deque[str] = deque()
        self._cond = threading.Condition()

    def put(self, paths: Sequence[str]) -> None:
        """Enqueue `paths` and wake one waiter."""
        with self._cond:
            self._paths.extend(paths)
            INBOX_DEPTH.set(len(self._paths))
            self._cond.notify_all()

    def drain(self, max_paths: int = 10_000) -> list[str]:
        """Remove and return up to `max_paths` paths, oldest first; never blocks."""
        with self._cond:
            count = min(max_paths, len(self._paths))
            taken = [self._paths.popleft() for _ in range(count)]
            INBOX_DEPTH.set(len(self._paths))
            return taken

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a path is queued or `timeout` seconds pass; True if any is queued."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._paths), timeout)

    def __len__(self) -> int:
        with self._cond:
            return len(self._paths)


class LedgerReader:
    """Reads ledger objects back into events."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def read(self, path: str) -> list[Event]:
        """The events of the ledger object at `path`.

        Raises:
            ObjectNotFoundError: nothing is stored at `path`.
            EventDecodeError: the object is not a valid event batch (names `path`).
        """
        data = self._store.get(path).data
        try:
            return decode_events(data, source=path)
        except EventDecodeError as exc:
            problem = str(exc).removeprefix(f"{path}: ")
            raise corrupt_object(self._store, path, problem, EventDecodeError) from exc

    def read_many(self, paths: Sequence[str]) -> list[Event]:
        """The events of several ledger objects, in the order given."""
        out: list[Event] = []
        for path in paths:
            out.extend(self.read(path))
        return out


class LedgerWriter:
    """Appends events of one (tenant, workspace) to the ledger and notifies.

    Args:
        store: the object store holding the ledger.
        tenant_id: tenant of every event written.
        workspace_id: workspace of every event written.
        notify: called with the paths written after each successful write, or None.
        sleep: replaced in tests to avoid real backoff delays.
        probe: how batch numbers are probed after a lost race for one (see
            `first_absent_seq`; an executor's `map` probes a window at once).
    """

    def __init__(
        self,
        store: ObjectStore,
        tenant_id: str,
        workspace_id: str,
        notify: Notify | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        probe: ProbeMap | None = None,
    ) -> None:
        self._store = store
        self._probe = probe
        self.tenant_id = tenant_id
        self.workspace_id = workspace_id
        self.prefix = ledger_prefix(tenant_id, workspace_id)
        self._notify = notify
        self._sleep = sleep
        self._reader = LedgerReader(store)
        # Batch numbers below this one are known to exist; 0 until the first append.
        self._next_seq = 0
        self._seq_lock = threading.Lock()

    def path_for(self, path_suffix: str) -> str:
        """The full ledger path of a deterministic suffix such as ``runs/r_1/requested``.

        Raises:
            EngineError: the suffix is empty or has a segment outside
                ``[A-Za-z0-9_.:=-]`` (or ``.``/``..``).
        """
        segments = path_suffix.split("/")
        for segment in segments:
            if segment in (".", "..") or not _SUFFIX_SEGMENT.match(segment):
                raise EngineError(
                    f"invalid ledger path suffix {path_suffix!r}: segments are 1-200 characters "
                    "from A-Z, a-z, 0-9 and '_.:=-'"
                )
        if segments[0] == "batches":
            raise EngineError(f"ledger path suffix {path_suffix!r}: 'batches/' is reserved")
        return self.prefix + path_suffix

    def skip_to(self, seq: int) -> None:
        """The next batch will be tried at number `seq` or later: the caller knows
        every number below it is taken (it probed them), so the write does not probe
        them again one by one."""
        with self._seq_lock:
            self._next_seq = max(self._next_seq, seq)

    def append(self, events: Sequence[Event]) -> str:
        """Write `events` as one new batch object and notify its path.

        Returns:
            The ledger path written.

        Raises:
            EngineError: no events, or an event of another tenant/workspace.
            TransientStorageError: the store kept failing after retries.
        """
        if not events:
            raise EngineError("append needs at least one event")
        self._check_scope(events)
        data = encode_events(events)
        with self._seq_lock:  # one batch at a time per writer: its numbers have no gaps
            seq = self._next_seq or self._first_absent(0, events)
            while True:
                path = batch_path(self.prefix, seq)
                try:
                    self._write(path, data, events)
                    break
                except ObjectExistsError:  # another writer took this number
                    SEQ_CONFLICTS.inc()
                    seq = self._first_absent(seq, events)
            self._next_seq = seq + 1
        if self._notify is not None:
            self._notify([path])
        return path

    def append_at(self, path_suffix: str, event: Event) -> bool:
        """Write `event` alone at a deterministic, create-only path.

        Returns:
            True if this call wrote it. False if an object was already there: either the
            same event (idempotent redelivery; the path is notified again in case the
            first writer died before notifying) or another event, which the caller reads
            with `LedgerReader.read(writer.path_for(path_suffix))`.

        Raises:
            EngineError: invalid suffix, or an event of another tenant/workspace.
            EventDecodeError: the existing object is not a valid event batch.
            TransientStorageError: the store kept failing after retries.
        """
        path = self.path_for(path_suffix)
        self._check_scope([event])
        try:
            self._write(path, encode_events([event]), [event])
        except ObjectExistsError:
            existing = self._reader.read(path)
            if any(e.event_id == event.event_id for e in existing):
                if self._notify is not None:
                    self._notify([path])
            else:
                log.info(
                    "ledger.append_at_exists",
                    tenant_id=self.tenant_id,
                    run_id=event.run_id,
                    path=path,
                    event_id=event.event_id,
                )
            return False
        if self._notify is not None:
            self._notify([path])
        return True

    def _first_absent(self, known: int, events: Sequence[Event]) -> int:
        """`first_absent_seq`, retrying transient store errors like a write does."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return first_absent_seq(self._store, self.prefix, known, self._probe)
            except TransientStorageError as exc:
                WRITE_ERRORS.labels(error_type=type(exc).__name__).inc()
                if attempt >= WRITE_ATTEMPTS:
                    self._log_failed(events[0].run_id, f"{self.prefix}batches/", attempt, exc)
                    raise
                self._sleep(BACKOFF_S * 2 ** (attempt - 1) * (1 + _JITTER.random() / 2))
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_scope(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.tenant_id != self.tenant_id or event.workspace_id != self.workspace_id:
                raise EngineError(
                    f"event {event.event_id} belongs to {event.tenant_id}/{event.workspace_id}, "
                    f"not to this writer's {self.tenant_id}/{self.workspace_id}"
                )

    def _write(self, path: str, data: bytes, events: Sequence[Event]) -> None:
        """`put_if_absent` with bounded retries of transient errors.

        A retry that finds the object already there with our exact bytes means an
        earlier attempt did land (the error was reported after the write): success.
        """
        started = time.perf_counter()
        run_id = events[0].run_id
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    self._store.put_if_absent(path, data)
                    break
                except ObjectExistsError:
                    if attempt > 1 and self._store.get(path).data == data:
                        break
                    raise
                except TransientStorageError as exc:
                    WRITE_ERRORS.labels(error_type=type(exc).__name__).inc()
                    if attempt >= WRITE_ATTEMPTS:
                        self._log_failed(run_id, path, attempt, exc)
                        raise
                    delay = BACKOFF_S * 2 ** (attempt - 1) * (1 + _JITTER.random() / 2)
                    log.warning(
                        "ledger.write_retry",
                        tenant_id=self.tenant_id,
                        run_id=run_id,
                        path=path,
                        attempt=attempt,
                        delay_s=round(delay, 4),
                        error=str(exc),
                    )
                    self._sleep(delay)
                except StorageError as exc:
                    WRITE_ERRORS.labels(error_type=type(exc).__name__).inc()
                    self._log_failed(run_id, path, attempt, exc)
                    raise
        finally:
            WRITE_DURATION.observe(time.perf_counter() - started)
        EVENTS_WRITTEN.inc(len(events))

    def _log_failed(self, run_id: str | None, path: str, attempts: int, exc: Exception) -> None:
        log.error(
            "ledger.write_failed",
            tenant_id=self.tenant_id,
            run_id=run_id,
            path=path,
            attempts=attempts,
            error=str(exc),
        )
