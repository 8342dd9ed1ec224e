"""Logging setup: structlog to one stream, JSON lines or console, with stdlib warnings alongside.

structlog is configured without the stdlib (`WriteLoggerFactory` + a filtering bound logger), so
a log call below the level costs next to nothing. Libraries that log through `logging`
(asyncpg, botocore) are routed to the same stream at WARNING and above, rendered the same way.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("auto", "json", "console")
HEAD = ("timestamp", "level", "event")  # first in every JSON line, for a person reading them

# Structured tracebacks without frame locals: a local may hold a secret.
_TRACEBACKS = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))

# The stdlib handler we installed, so configuring again replaces it instead of adding a second.
_stdlib_handler: logging.Handler | None = None


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Send structlog (and stdlib WARNING+) to `stream` (default: stderr at call time).

    `fmt` "auto" picks the console renderer when the stream is a terminal, JSON lines otherwise.
    Safe to call again: the newest call wins (loggers are not cached, so tests can reconfigure).
    """
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {'|'.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {'|'.join(FORMATS)}, got {fmt!r}")
    out = sys.stderr if stream is None else stream
    console = fmt == "console" or (fmt == "auto" and _isatty(out))

    shared: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if console:
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(out))
        tail: list[Processor] = [structlog.processors.StackInfoRenderer()]
    else:
        renderer = structlog.processors.JSONRenderer()
        tail = [structlog.processors.StackInfoRenderer(), _TRACEBACKS, _head_first]

    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared, *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(out, max(LEVELS[level], logging.WARNING), shared, tail, renderer)


def _route_stdlib(
    out: TextIO, level: int, shared: list[Processor], tail: list[Processor], renderer: Processor
) -> None:
    """Render stdlib records from libraries with the same processors onto the same stream."""
    global _stdlib_handler
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.setLevel(level)
    root = logging.getLogger()
    if _stdlib_handler is not None:
        root.removeHandler(_stdlib_handler)
    root.addHandler(handler)
    root.setLevel(level)
    _stdlib_handler = handler


def _head_first(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """Reorder so timestamp, level and event lead the JSON line."""
    head = {k: event_dict.pop(k) for k in HEAD if k in event_dict}
    return {**head, **event_dict}


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
