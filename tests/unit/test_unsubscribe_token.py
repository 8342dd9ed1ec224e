"""One-click unsubscribe tokens: what one signs names exactly one recipient and campaign, and
anything else (altered, forged, another key, another campaign) is refused."""

from __future__ import annotations

import base64
import hmac
from pathlib import Path

import pytest

from dispatcher.campaigns import unsubscribe
from dispatcher.campaigns.render import CampaignContent, CompiledCampaign
from dispatcher.campaigns.unsubscribe import (
    TOKEN_PURPOSE,
    BadToken,
    TokenTarget,
    UnsubscribeTokens,
    default_unsubscribe_url,
)
from dispatcher.config.settings import FeedbackSettings
from dispatcher.doors.keys import MasterKey
from dispatcher.errors import ConfigError

KEY = bytes(range(32))


def _flip(token: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_a_signed_token_names_its_campaign_and_message() -> None:
    tokens = UnsubscribeTokens(KEY)
    token = tokens.sign(7, 123456789)
    assert tokens.verify(token) == TokenTarget(7, 123456789)
    assert len(token) == 44 and all(c.isalnum() or c in "-_" for c in token)  # URL-path safe
    assert tokens.sign(7, 123456789) == token  # stable: a resent header is the same URL


def test_the_token_shows_no_address() -> None:
    token = UnsubscribeTokens(KEY).sign(1, 2)
    raw = base64.urlsafe_b64decode(token + "=")
    assert b"@" not in raw and "@" not in token


@pytest.mark.parametrize("index", range(33))
def test_any_altered_byte_is_refused(index: int) -> None:
    tokens = UnsubscribeTokens(KEY)
    with pytest.raises(BadToken):
        tokens.verify(_flip(tokens.sign(7, 42), index))


def test_another_campaign_or_recipient_is_refused() -> None:
    tokens = UnsubscribeTokens(KEY)
    mac = base64.urlsafe_b64decode(tokens.sign(7, 42) + "=")[17:]
    for campaign, message in ((8, 42), (7, 43)):
        head = unsubscribe._HEAD.pack(1, campaign, message)
        forged = base64.urlsafe_b64encode(head + mac).decode().rstrip("=")
        with pytest.raises(BadToken, match="signature"):
            tokens.verify(forged)


def test_a_token_of_another_key_is_refused() -> None:
    other = UnsubscribeTokens(bytes(32))
    with pytest.raises(BadToken):
        UnsubscribeTokens(KEY).verify(other.sign(7, 42))


@pytest.mark.parametrize(
    "token",
    ["", "x", "A" * 44, "A" * 200, "é" * 44, "!!!!", UnsubscribeTokens(KEY).sign(1, 1) + "A"],
)
def test_junk_is_refused(token: str) -> None:
    with pytest.raises(BadToken):
        UnsubscribeTokens(KEY).verify(token)


def test_the_mac_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module calls hmac.compare_digest
    tokens = UnsubscribeTokens(KEY)
    tokens.verify(tokens.sign(3, 4))
    with pytest.raises(BadToken):
        tokens.verify(_flip(tokens.sign(3, 4), 20))
    assert len(calls) == 2 and all(len(a) == len(b) == 16 for a, b in calls)


def test_the_key_comes_from_the_master_key(tmp_path: Path) -> None:
    master = MasterKey.load(tmp_path / "keys.master", create=True)
    again = MasterKey.load(tmp_path / "keys.master", create=False)
    token = UnsubscribeTokens(master.derive(TOKEN_PURPOSE)).sign(5, 6)
    assert UnsubscribeTokens(again.derive(TOKEN_PURPOSE)).verify(token) == TokenTarget(5, 6)
    assert master.derive(TOKEN_PURPOSE) != master.derive("something-else")


def test_the_default_url_renders_one_token_per_recipient() -> None:
    url = default_unsubscribe_url("https://mail.example.com/")
    assert url == "https://mail.example.com/unsubscribe/{{ unsubscribe_token }}"
    compiled = CompiledCampaign(
        CampaignContent("Hi", '<a href="{{ unsubscribe_url }}">x</a>', None, url)
    )
    compiled.check_variables(["email"])  # the token is the dispatcher's, not a column
    rendered = compiled.render(
        {"unsubscribe_token": "TOKEN"}, email="a@example.com", campaign_id=1, message_id=2
    )
    assert ("List-Unsubscribe", "<https://mail.example.com/unsubscribe/TOKEN>") in rendered.headers
    assert ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click") in rendered.headers


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        (
            {"enabled": True, "allowed_topics": "arn:t", "public_url": "http://x.example"},
            "https://",
        ),
        ({"enabled": True, "allowed_topics": "arn:t", "public_url": "https://x/?a=1"}, "https://"),
        ({"public_url": "https://x.example"}, "feedback.enabled"),
    ],
)
def test_public_url_is_checked(fields: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        FeedbackSettings(**fields)  # type: ignore[arg-type]
