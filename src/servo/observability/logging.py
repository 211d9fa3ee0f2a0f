"""Structured logging: structlog, JSON or console output, secrets never printed.

Call `configure_logging` once at an entry point (CLI, worker); libraries only call
`get_logger(__name__)` and pass context as keyword arguments
(``log.warning("compaction.retry", tenant_id=..., run_id=..., attempt=...)``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal


@contextmanager
def _without_rich() -> Iterator[None]:
    """Make ``import rich`` fail for the duration (unless rich is already loaded).

    structlog imports rich (and through it pygments) when it is installed, for
    pretty tracebacks, at a cost of 35-250 ms on every command's start. Servo does
    not use them: exceptions are rendered to text by ``format_exc_info`` before the
    renderer sees them, so structlog's fallbacks produce the same lines. The CLI
    imports rich itself, later, where it draws tables and progress bars.
    """
    if "rich" in sys.modules:
        yield
        return
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get("rich", 0) is None:
            del sys.modules["rich"]


with _without_rich():
    import structlog

LogFormat = Literal["json", "console"]

_SECRET_MARKERS = (
    "password", "passwd", "secret", "token", "authorization", "credential", "cookie",
    "api_key", "apikey", "private_key", "access_key", "signing_key", "hmac_key",
)  # fmt: skip
_REDACTED = "[redacted]"


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def redact_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: replace the value of any secret-looking key."""
    for key in list(event_dict):
        if key != "event" and _is_secret_key(key):
            event_dict[key] = _REDACTED
    return event_dict


class _Stderr:
    """Writes to whatever `sys.stderr` is at the time (tests and daemons swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", fmt: LogFormat = "console") -> None:
    """Route structlog to stderr at `level`, rendered as JSON lines or for a console."""
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to the component name.

    Before `configure_logging` runs, warnings and errors go to stderr as console
    lines, so library use never writes to stdout (which carries `--json` output).
    """
    if not structlog.is_configured():
        configure_logging("WARNING", "console")
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(component=name)
    return logger
