"""Logging: JSON lines a machine can parse, console on a terminal, library warnings not lost."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from dispatcher.obs.logging import configure_logging


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put structlog and the root logger back as they were: other tests rely on the defaults."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_timestamp_level_event_and_values() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    structlog.get_logger().info("message.sent", message_id=7, campaign_id="c-1")
    [record] = lines(out)
    assert record["event"] == "message.sent"
    assert record["level"] == "info"
    assert record["message_id"] == 7 and record["campaign_id"] == "c-1"
    stamp = datetime.fromisoformat(record["timestamp"])
    assert stamp.utcoffset() is not None and stamp.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert list(record)[:3] == ["timestamp", "level", "event"]


def test_level_filters_below_it() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", out)
    log = structlog.get_logger()
    log.debug("a.debug")
    log.info("a.info")
    log.warning("a.warning")
    log.error("a.error")
    assert [r["event"] for r in lines(out)] == ["a.warning", "a.error"]


def test_context_bound_through_contextvars_is_logged() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    with structlog.contextvars.bound_contextvars(campaign_id="spring"):
        structlog.get_logger().info("batch.claimed", count=3)
    assert lines(out)[0]["campaign_id"] == "spring"


def test_stdlib_warnings_go_to_the_same_stream_as_json() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", out)
    logging.getLogger("asyncpg.pool").warning("connection %s lost", "c1")
    logging.getLogger("botocore.credentials").info("Found credentials in environment")
    [record] = lines(out)
    assert record["event"] == "connection c1 lost"
    assert record["level"] == "warning"
    assert record["logger"] == "asyncpg.pool"
    assert "timestamp" in record


def test_reconfiguring_replaces_the_stdlib_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", first)
    configure_logging("info", "json", second)
    logging.getLogger("asyncpg").warning("once")
    structlog.get_logger().info("newest.stream")
    assert first.getvalue() == ""
    assert [r["event"] for r in lines(second)] == ["once", "newest.stream"]


def test_exception_is_structured_without_frame_locals() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    secret_access_key = "do-not-log-me"
    try:
        raise RuntimeError(f"boom {len(secret_access_key)}")
    except RuntimeError:
        structlog.get_logger().exception("send.crashed")
    [record] = lines(out)
    assert record["exception"][0]["exc_type"] == "RuntimeError"
    assert "do-not-log-me" not in out.getvalue()


def test_auto_is_json_off_a_terminal_and_console_on_one() -> None:
    piped, tty = io.StringIO(), Terminal()
    configure_logging("info", "auto", piped)
    structlog.get_logger().info("daemon.started", workers=2)
    configure_logging("info", "auto", tty)
    structlog.get_logger().info("daemon.started", workers=2)
    assert lines(piped)[0]["event"] == "daemon.started"
    text = tty.getvalue()
    assert "daemon.started" in text and "workers" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_console_format_off_a_terminal_has_no_colour_codes() -> None:
    out = io.StringIO()
    configure_logging("info", "console", out)
    structlog.get_logger().warning("quota.paused", until="12:00")
    text = out.getvalue()
    assert "quota.paused" in text and "until" in text
    assert "\x1b[" not in text


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "xml")])
def test_unknown_level_or_format_is_refused(level: str, fmt: str) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        configure_logging(level, fmt, io.StringIO())
