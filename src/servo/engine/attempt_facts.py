"""How facts merge into rows: the total order of facts, and an attempt's end.

Every merge of facts breaks ties by a total order, `(emitted_at, event_id)`
(`Event.order_key`): the fact that sorts first wins, whatever order facts arrive
in, so the fold is order-insensitive. An attempt ends with its terminal fact that
sorts first; `set_end` writes that fact's columns into the attempt's row.
"""

from __future__ import annotations

from servo.engine import events as ev
from servo.engine.schema import AttemptRow


def earlier(a: tuple[int, str], b: tuple[int | None, str | None]) -> bool:
    """Whether the fact ordered `a` sorts before `b` (an absent `b` sorts last)."""
    return b[0] is None or b[1] is None or a < (b[0], b[1])


def set_end(
    row: AttemptRow, event: ev.Event, payload: ev.TaskFinished | ev.AttemptAbandoned
) -> None:
    """Make `event` (a terminal fact) the end of the attempt `row`."""
    row.end_event_id, row.end_at = event.event_id, event.emitted_at
    if isinstance(payload, ev.TaskFinished):
        out = payload.output
        row.end_kind, row.outcome = "finished", payload.outcome
        row.error_type, row.error_message = payload.error_type, payload.error_message
        row.error_traceback, row.retryable = payload.error_traceback, payload.retryable
        row.output_location = None if out is None else out.location
        row.output_format = None if out is None else out.format
        row.output_size = None if out is None else out.size_bytes
        row.output_rows = None if out is None else out.row_count
        row.duration_s = payload.duration_s
        row.reused_attempt_id = payload.reused_attempt_id
    else:
        row.end_kind, row.outcome = "abandoned", "failed"
        row.error_type = payload.reason
        row.error_message = payload.detail or f"attempt abandoned: {payload.reason}"
        row.error_traceback, row.retryable = None, payload.retryable
        row.output_location = row.output_format = None
        row.output_size = row.output_rows = None
        row.reused_attempt_id = None
        row.duration_s = None
