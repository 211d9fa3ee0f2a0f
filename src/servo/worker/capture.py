"""Per-attempt capture of an asset's output: ``context.log``, stdout and stderr.

While an attempt runs (`attempt_capture`), its output goes to an `AttemptLog`
instead of the terminal:

- ``context.log`` is a structlog logger writing console lines (time, level, event,
  key=value pairs; every level, secrets redacted) to the attempt's log only.
- ``sys.stdout`` and ``sys.stderr`` are replaced, while any attempt runs in the
  process, by a `_Router` that sends what the *current attempt* writes to its log
  and passes every other write through unchanged. The current attempt is a context
  variable, so attempts running at once in threads of one process never mix, and
  asyncio tasks of an attempt count as that attempt; threads an asset starts itself
  are not attributed (their output passes through). Output written to the file
  descriptors directly (child processes, C code) is not captured.
- Records of the standard ``logging`` module emitted by an attempt are captured by
  a handler on the root logger (at the levels the user's logging configuration
  lets through); handlers the user configured still see them.

Captured output is not printed: the terminal keeps the progress bar, and
``servo runs logs`` shows the output.

Each attempt keeps at most ``limit_bytes`` (1 MiB): the first half and the last half
of its output; what lies between is dropped and a line marks the cut. The log is
written as create-only chunks (`servo.worker.attempt_logs`): a flusher thread writes
what is new every ``FLUSH_INTERVAL_S``, and the attempt's end writes the rest, so a
follower sees output while the attempt runs. A chunk that cannot be written is kept
and tried again at the next flush (a warning and a metric say so); what is still
unwritten when the attempt ends is lost from the log, never from the attempt.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO, cast

import structlog

from servo.engine.request import TaskRequest
from servo.errors import ObjectExistsError
from servo.observability import metrics
from servo.observability.logging import get_logger, redact_secrets
from servo.storage.base import ObjectStore
from servo.worker.attempt_logs import AttemptLogKey

log = get_logger(__name__)

#: Bytes of output kept per attempt (half from the start, half from the end).
LOG_LIMIT_BYTES = 1 << 20
#: Seconds between flushes of new output to the store.
FLUSH_INTERVAL_S = 0.5
#: Pending bytes that make the flusher write at once instead of at the next tick.
CHUNK_BYTES = 256 * 1024
#: Chunk numbers tried past ones another execution of the same attempt wrote.
_MAX_SKIPS = 10_000

LOG_FLUSH_ERRORS = metrics.counter(
    "servo_attempt_log_flush_errors_total",
    "Chunks of captured attempt output that could not be written.",
    ["error_type"],
)
LOG_BYTES_CUT = metrics.counter(
    "servo_attempt_log_bytes_cut_total", "Bytes of attempt output dropped by the size limit."
)

_current: contextvars.ContextVar[AttemptLog | None] = contextvars.ContextVar(
    "servo_attempt_log", default=None
)


class AttemptLog:
    """One attempt's captured output: bounded in size, stored as chunks.

    Args:
        store: where the chunks go.
        key: the attempt.
        limit_bytes: bytes kept at most (the first half and the last half).
    """

    def __init__(
        self, store: ObjectStore, key: AttemptLogKey, *, limit_bytes: int = LOG_LIMIT_BYTES
    ) -> None:
        self._store = store
        self.key = key
        self._head_limit = limit_bytes // 2
        self._tail_limit = limit_bytes - self._head_limit
        self._head_used = 0
        self._pending = bytearray()
        self._tail = bytearray()
        self._cut = 0
        self._seq = 0
        self._closed = False
        self._lock = threading.Lock()  # the buffers
        self._write_lock = threading.Lock()  # the chunk sequence

    @property
    def cut_bytes(self) -> int:
        """Bytes dropped so far between the kept head and tail."""
        return self._cut

    def write(self, text: str) -> int:
        """Keep `text` (file protocol: returns the characters taken)."""
        data = text.encode("utf-8", errors="replace")
        with self._lock:
            room = self._head_limit - self._head_used
            if room > 0:
                self._pending += data[:room]
                self._head_used += min(room, len(data))
                data = data[room:]
            if data:
                if not self._tail and not self._cut:
                    self._pending += (
                        f"\n[servo: output over {_size(self._head_limit)}: only its last "
                        f"{_size(self._tail_limit)} are kept, written when the attempt ends]\n"
                    ).encode()
                self._tail += data
                overflow = len(self._tail) - self._tail_limit
                if overflow > 0:
                    del self._tail[:overflow]
                    self._cut += overflow
                    LOG_BYTES_CUT.inc(overflow)
            urgent = len(self._pending) >= CHUNK_BYTES
        if urgent:
            _flusher.wake()
        return len(text)

    def flush(self) -> None:
        """File protocol; output reaches the store at the next tick (see `sync`)."""

    def sync(self) -> None:
        """Write what is pending as the next chunk; keep it for later if that fails."""
        with self._write_lock:
            with self._lock:
                data = bytes(self._pending)
                self._pending.clear()
            if data and not self._put(data):
                with self._lock:
                    self._pending[:0] = data

    def close(self) -> None:
        """Write the rest: pending output, then the mark of the cut and the tail."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._tail:
                if self._cut:
                    self._pending += f"\n[servo: {self._cut} bytes cut here]\n".encode()
                self._pending += self._tail
                self._tail.clear()
        self.sync()

    def _put(self, data: bytes) -> bool:
        key = self.key
        try:
            for _ in range(_MAX_SKIPS):
                path = key.chunk_path(self._seq)
                self._seq += 1
                try:
                    self._store.put_if_absent(path, data)
                except ObjectExistsError:  # another execution of this attempt wrote it
                    continue
                return True
            raise ObjectExistsError(f"{key.prefix}: no free chunk number")
        except Exception as exc:  # the store is down: keep the data, try at the next tick
            self._seq -= 1
            LOG_FLUSH_ERRORS.labels(type(exc).__name__).inc()
            log.warning(
                "task.log_flush_failed",
                tenant_id=key.tenant_id,
                run_id=key.run_id,
                task_key=key.task_key,
                attempt=key.attempt,
                error_type=type(exc).__name__,
                error=str(exc),
            )
            return False


def _size(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} bytes"


class _Flusher:
    """One daemon thread per process syncing the open attempt logs periodically."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._open: set[AttemptLog] = set()
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, attempt_log: AttemptLog) -> None:
        with self._lock:
            self._open.add(attempt_log)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="servo-log-flusher", daemon=True
                )
                self._thread.start()

    def remove(self, attempt_log: AttemptLog) -> None:
        with self._lock:
            self._open.discard(attempt_log)

    def wake(self) -> None:
        self._wakeup.set()

    def _loop(self) -> None:
        while True:
            self._wakeup.wait(self.interval_s)
            self._wakeup.clear()
            with self._lock:
                open_logs = list(self._open)
            for attempt_log in open_logs:
                attempt_log.sync()


_flusher = _Flusher(FLUSH_INTERVAL_S)


class _Router:
    """A stand-in for ``sys.stdout``/``sys.stderr``: the current attempt's writes go to
    its log, every other write to the stream it replaced."""

    def __init__(self, target: TextIO) -> None:
        self.target = target

    def write(self, text: str) -> int:
        sink = _current.get()
        if sink is None:
            return self.target.write(text)
        return sink.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _current.get() is None:
            self.target.flush()

    def isatty(self) -> bool:
        return _current.get() is None and self.target.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


class _CaptureHandler(logging.Handler):
    """Root-logger handler: records emitted by an attempt go to its log."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        sink = _current.get()
        if sink is not None:
            sink.write(self.format(record) + "\n")
            return
        root = logging.getLogger()
        alone = all(handler is self for handler in root.handlers)
        last_resort = logging.lastResort
        if alone and last_resort is not None and record.levelno >= last_resort.level:
            last_resort.handle(record)  # what logging does when no handler is configured


class _Routing:
    """Installs the routers and the handler while at least one attempt runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._installed: list[tuple[str, _Router]] = []
        self._handler = _CaptureHandler()

    def acquire(self) -> None:
        with self._lock:
            self._running += 1
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                if not isinstance(stream, _Router):  # someone replaced it since: wrap again
                    router = _Router(stream)
                    setattr(sys, name, cast(TextIO, router))
                    self._installed.append((name, router))
            if self._running == 1:
                logging.getLogger().addHandler(self._handler)

    def release(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running:
                return
            logging.getLogger().removeHandler(self._handler)
            while self._installed:
                name, router = self._installed.pop()
                if getattr(sys, name) is router:  # else someone replaced it: leave theirs
                    setattr(sys, name, router.target)


_routing = _Routing()


@functools.cache
def _processors() -> list[Any]:
    """The console processors of attempt loggers: stateless, so built once per process
    (building a console renderer per attempt cost more than a small asset's body)."""
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        structlog.processors.format_exc_info,
        structlog.dev.ConsoleRenderer(
            colors=False, pad_event_to=0, exception_formatter=structlog.dev.plain_traceback
        ),
    ]


def attempt_logger(sink: AttemptLog) -> Any:
    """A structlog logger writing every record, as a console line, to `sink`."""
    return structlog.wrap_logger(
        structlog.PrintLogger(file=cast(TextIO, sink)),
        processors=_processors(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        context_class=dict,
        cache_logger_on_first_use=True,
    )


class CapturedAttempt:
    """What `attempt_capture` yields.

    Attributes:
        output: the attempt's log.
        log: the logger to give the asset as ``context.log``.
    """

    def __init__(self, output: AttemptLog) -> None:
        self.output = output
        self.log = attempt_logger(output)


@contextlib.contextmanager
def attempt_capture(
    store: ObjectStore, key: AttemptLogKey, *, limit_bytes: int = LOG_LIMIT_BYTES
) -> Iterator[CapturedAttempt]:
    """Capture the output of the code run in this block as attempt `key`'s log."""
    output = AttemptLog(store, key, limit_bytes=limit_bytes)
    _flusher.add(output)
    _routing.acquire()
    token = _current.set(output)
    try:
        yield CapturedAttempt(output)
    finally:
        _current.reset(token)
        _routing.release()
        _flusher.remove(output)
        output.close()


def capture_output(
    store: ObjectStore, request: TaskRequest
) -> contextlib.AbstractContextManager[CapturedAttempt]:
    """`attempt_capture` for the attempt `request` runs."""
    key = AttemptLogKey(
        request.tenant_id, request.workspace_id, request.run_id, request.task_key, request.attempt
    )
    return attempt_capture(store, key)
