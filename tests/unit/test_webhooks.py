"""Webhooks, the pure parts: the signature, the body, the retry decision, and `[[webhooks]]`."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatcher.config import ConfigError, build_config, config_to_dict
from dispatcher.webhooks.retry import judge, retry_delay
from dispatcher.webhooks.settings import EVENTS, WebhookSettings
from dispatcher.webhooks.signing import Event, body_of, headers, signature

SECRET = "whsec-0123456789abcdef"
URL = "https://app.example.com/hooks/mail"
FILE = Path("/etc/dispatcher/config.toml")
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def settings(**kw: Any) -> WebhookSettings:
    return WebhookSettings(url=URL, secret=SECRET, **kw)


def event() -> Event:
    return Event(42, "bounced", T0, 7, {"recipients": [{"address": "x@example.com"}]})


# --- signing -----------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":1}'
    expected = hmac.new(SECRET.encode(), b'1700000000.{"id":1}', hashlib.sha256).hexdigest()
    assert signature(SECRET, 1700000000, body) == expected
    assert signature(SECRET, 1700000001, body) != expected
    assert signature(SECRET + "x", 1700000000, body) != expected


def test_headers_name_the_event_and_carry_the_signature() -> None:
    body = body_of(event())
    sent = headers(SECRET, 1700000000, event(), body)
    assert sent["Dispatcher-Event-Id"] == "42"
    assert sent["Dispatcher-Event-Type"] == "bounced"
    assert sent["Content-Type"] == "application/json"
    assert sent["Dispatcher-Signature"] == f"t=1700000000,v1={signature(SECRET, 1700000000, body)}"


def test_body_is_the_documented_json() -> None:
    doc = json.loads(body_of(event()))
    assert doc == {
        "id": 42,
        "type": "bounced",
        "created_at": "2026-12-06T12:00:00Z",
        "message_id": 7,
        "data": {"recipients": [{"address": "x@example.com"}]},
    }


# --- retry ---------------------------------------------------------------------------------------


def test_retry_delay_doubles_with_jitter_and_is_capped() -> None:
    s = settings(retry_base=5.0, retry_max=600.0)
    assert [retry_delay(n, s, 0.0) for n in (1, 2, 3)] == [2.5, 5.0, 10.0]
    assert [retry_delay(n, s, 0.999999) for n in (1, 2, 3)] == pytest.approx([5.0, 10.0, 20.0])
    assert retry_delay(40, s, 0.0) == 300.0 and retry_delay(40, s, 1.0) == 600.0


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_a_2xx_answer_delivers(status: int) -> None:
    verdict = judge(status, None, attempts=1, created_at=T0, now=T0, settings=settings(), rand=0.5)
    assert verdict.state == "delivered"


@pytest.mark.parametrize(
    ("status", "error", "shown"),
    [
        (500, "oops", "HTTP 500: oops"),
        (301, None, "HTTP 301"),
        (410, "", "HTTP 410"),
        (None, "ClientConnectorError: refused", "ClientConnectorError: refused"),
        (None, None, "no answer"),
    ],
)
def test_anything_else_is_retried_with_backoff(
    status: int | None, error: str | None, shown: str
) -> None:
    verdict = judge(status, error, attempts=3, created_at=T0, now=T0, settings=settings(), rand=0)
    assert (verdict.state, verdict.delay, verdict.error) == ("pending", 10.0, shown)


def test_a_receiver_down_for_an_hour_loses_nothing_and_72_hours_is_the_end() -> None:
    s = settings()
    now, attempts = T0, 0
    while now < T0 + timedelta(hours=1):  # one attempt after another, all refused
        attempts += 1
        verdict = judge(
            None, "refused", attempts=attempts, created_at=T0, now=now, settings=s, rand=1
        )
        assert verdict.state == "pending"
        now += timedelta(seconds=verdict.delay)
    assert attempts < 20  # backoff: not thousands of knocks on a dead door
    # The last attempt falls on the deadline, then it is given up.
    deadline = T0 + timedelta(hours=72)
    last = judge(
        None,
        "x",
        attempts=99,
        created_at=T0,
        now=deadline - timedelta(seconds=30),
        settings=s,
        rand=1,
    )
    assert (last.state, last.delay) == ("pending", 30.0)
    gone = judge(None, "x", attempts=100, created_at=T0, now=deadline, settings=s, rand=1)
    assert (gone.state, gone.error) == ("given_up", "x")


# --- configuration -----------------------------------------------------------------------------


def build(*hooks: dict[str, Any], env: dict[str, str] | None = None) -> tuple[WebhookSettings, ...]:
    return build_config({"webhooks": list(hooks)}, env or {}, path=FILE).webhooks


def error_of(*hooks: Any, env: dict[str, str] | None = None, raw: Any = None) -> str:
    data = {"webhooks": raw if raw is not None else list(hooks)}
    with pytest.raises(ConfigError) as info:
        build_config(data, env or {}, path=FILE)
    message = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in message
    return message


def test_webhooks_build_with_defaults_and_all_events() -> None:
    (hook,) = build({"url": URL, "secret": SECRET})
    assert hook == WebhookSettings(URL, SECRET)
    assert hook.events == EVENTS and hook.give_up_hours == 72.0
    two = build(
        {"url": URL, "secret": SECRET, "events": ["bounced", "complained"], "timeout": 3},
        {"url": "http://127.0.0.1:8080/h", "secret": SECRET, "retry_base": 0.5, "retry_max": 2},
    )
    assert two[0].events == ("bounced", "complained") and two[0].timeout == 3.0
    assert (two[1].retry_base, two[1].retry_max) == (0.5, 2.0)


@pytest.mark.parametrize(
    ("hooks", "expected"),
    [
        ([{"secret": SECRET}], "webhooks[0].url is required in /etc/dispatcher/config.toml: "),
        ([{"url": URL}], "webhooks[0].secret is required in /etc/dispatcher/config.toml: "),
        (
            [{"url": URL, "secret": SECRET}, {"url": "ftp://x.example/h", "secret": SECRET}],
            "webhooks[1].url must be an http:// or https:// URL such as "
            "https://app.example.com/hooks/mail, got 'ftp://x.example/h' (in /etc/",
        ),
        ([{"url": "http://:80/x", "secret": SECRET}], "webhooks[0].url must be an http://"),
        ([{"url": "http://h:99999/x", "secret": SECRET}], "webhooks[0].url must be an http://"),
        ([{"url": URL, "secret": "short"}], "webhooks[0].secret must be at least 16 characters"),
        (
            [{"url": URL, "secret": SECRET, "events": ["bounce"]}],
            "webhooks[0].events: unknown event 'bounce'; did you mean 'bounced'? the events "
            "are: queued, sent, delivered, bounced, complained, delayed, failed, in_doubt, "
            "cancelled, unsubscribed (in /etc/dispatcher/config.toml)",
        ),
        ([{"url": URL, "secret": SECRET, "events": "bounced"}], "webhooks[0].events must be an "),
        ([{"url": URL, "secret": SECRET, "events": []}], "webhooks[0].events must name at least"),
        ([{"url": URL, "secret": SECRET, "timeout": "5"}], "webhooks[0].timeout must be a number"),
        (
            [{"url": URL, "secret": SECRET, "timeout": 0}],
            "webhooks[0].timeout must be a number > 0",
        ),
        (
            [{"url": URL, "secret": SECRET, "retry_base": 10, "retry_max": 5}],
            "webhooks[0].retry_max must be >= webhooks[0].retry_base=10.0 seconds, got 5.0",
        ),
        ([{"url": URL, "secret": SECRET, "secrte": 1}], "unknown key webhooks[0].secrte in "),
        (
            [{"url": URL, "secret": SECRET}, {"url": URL, "secret": SECRET}],
            "webhooks[1].url repeats webhooks[0].url",
        ),
        (["x"], "webhooks[0] in /etc/dispatcher/config.toml must be a table of settings"),
    ],
)
def test_webhook_errors_name_the_entry_and_key(hooks: list[Any], expected: str) -> None:
    assert expected in error_of(*hooks)


def test_webhooks_must_be_an_array_of_tables() -> None:
    message = error_of(raw={"url": URL, "secret": SECRET})
    assert message.startswith("webhooks in /etc/dispatcher/config.toml must be an array of tables")


def test_webhooks_are_not_set_from_the_environment() -> None:
    message = error_of(env={"DISPATCHER_WEBHOOKS__URL": URL})
    assert "webhooks are set in the config file only" in message


def test_the_secret_never_shows() -> None:
    (hook,) = build({"url": "https://u:pw@app.example.com/h?password=p", "secret": SECRET})
    shown = config_to_dict(build_config({"webhooks": [{"url": hook.url, "secret": SECRET}]}, {}))
    assert shown["webhooks"][0]["secret"] == "***"
    assert SECRET not in repr(shown) and SECRET not in repr(hook)
    assert shown["webhooks"][0]["url"] == "https://u:***@app.example.com/h?password=***"
    assert shown["webhooks"][0]["events"] == list(EVENTS)
