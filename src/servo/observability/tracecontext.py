"""W3C trace context (``traceparent``) carried from a dispatch to the worker.

The dispatcher puts the current trace context in every task (`current`); the worker
reads it back (`from_headers`: ``X-Servo-Traceparent`` first, because Cloud Run may
replace ``traceparent`` on the way in) and binds its ids to the attempt's structured
logs, so one trace id follows a task from the reconciler's enqueue to the worker's
events. OpenTelemetry is used when installed; nothing here requires it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

#: Headers read, most trusted first.
HEADERS = ("x-servo-traceparent", "traceparent")

_FORMAT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """One W3C trace context: the trace, the sender's span, and the flags."""

    trace_id: str
    parent_id: str
    flags: str

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"


def parse(value: str | None) -> TraceContext | None:
    """The trace context of a ``traceparent`` value (version 00), or None when it is
    absent or malformed (a bad header never fails a request: it starts a new trace)."""
    if not value:
        return None
    match = _FORMAT.fullmatch(value.strip().lower())
    if match is None:
        return None
    trace_id, parent_id, flags = match.groups()
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return TraceContext(trace_id, parent_id, flags)


def from_headers(headers: Mapping[str, str]) -> TraceContext | None:
    """The first valid trace context among `HEADERS` (case-insensitive mapping)."""
    for name in HEADERS:
        found = parse(headers.get(name))
        if found is not None:
            return found
    return None


def current() -> str:
    """The ``traceparent`` of the current OpenTelemetry span, else a fresh one
    (sampled, so the receiver's spans share one trace id with the sender)."""
    try:
        from opentelemetry import trace
    except ImportError:  # tracing is optional
        pass
    else:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            flags = int(context.trace_flags)
            return f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"
    trace_id, span_id = secrets.randbits(128) or 1, secrets.randbits(64) or 1
    return f"00-{trace_id:032x}-{span_id:016x}-01"
