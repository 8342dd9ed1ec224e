"""Signed one-click unsubscribe tokens: which campaign mail a List-Unsubscribe URL came from.

Pure: no I/O. A token carries a version, the campaign id and the message id (the recipient's
own row), and a MAC over them: ``HMAC-SHA256(key, "unsubscribe" | version | campaign | message)``
truncated to 128 bits, all base64url (44 characters). It carries no address: the receiver looks
the address up by the message id, so a URL in a log or a proxy does not show who it is for. The
key is derived from the keys' master key (``MasterKey.derive``), kept outside Postgres.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "TOKEN_PURPOSE",
    "TOKEN_VARIABLE",
    "BadToken",
    "TokenTarget",
    "UnsubscribeTokens",
    "default_unsubscribe_url",
]

TOKEN_PURPOSE: Final = "unsubscribe-token-v1"
# The template variable the default URL uses; the campaign sender fills it per recipient.
TOKEN_VARIABLE: Final = "unsubscribe_token"
UNSUBSCRIBE_PATH: Final = "/unsubscribe/"
VERSION: Final = 1
MAC_BYTES: Final = 16  # 128 bits: forging one takes 2**128 tries on average
_HEAD = struct.Struct(">BQQ")  # version, campaign id, message id
_DOMAIN = b"dispatcher unsubscribe\x00"  # no other MAC under this key can mean the same
TOKEN_BYTES: Final = _HEAD.size + MAC_BYTES
MAX_TOKEN_CHARS: Final = 64  # anything longer is refused before decoding


class BadToken(Exception):
    """The token was not made with our key (forged, altered, truncated or another version)."""


@dataclass(frozen=True, slots=True)
class TokenTarget:
    """What a valid token names: one recipient's message of one campaign."""

    campaign_id: int
    message_id: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


class UnsubscribeTokens:
    """Makes and checks tokens with one key (32 bytes from the master key)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("an unsubscribe token key has at least 32 bytes")
        self._key = key

    def _mac(self, head: bytes) -> bytes:
        return hmac.new(self._key, _DOMAIN + head, hashlib.sha256).digest()[:MAC_BYTES]

    def sign(self, campaign_id: int, message_id: int) -> str:
        """The token for this recipient's message of this campaign."""
        head = _HEAD.pack(VERSION, campaign_id, message_id)
        return _b64(head + self._mac(head))

    def verify(self, token: str) -> TokenTarget:
        """What the token names; BadToken unless it is exactly one we signed."""
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise BadToken("not an unsubscribe token")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise BadToken("not an unsubscribe token") from None
        # A re-encoding must give the same text: otherwise two spellings of one token exist.
        if len(raw) != TOKEN_BYTES or _b64(raw) != token:
            raise BadToken("not an unsubscribe token")
        head, mac = raw[: _HEAD.size], raw[_HEAD.size :]
        # Constant time: the answer's timing says nothing about how much of the MAC was right.
        if not hmac.compare_digest(mac, self._mac(head)):
            raise BadToken("the token's signature does not match")
        version, campaign_id, message_id = _HEAD.unpack(head)
        if version != VERSION:  # signed by us, so only a future format reaches this
            raise BadToken(f"token version {version} is not known")
        return TokenTarget(campaign_id, message_id)


def default_unsubscribe_url(public_url: str) -> str:
    """The campaign's unsubscribe URL template that points at the daemon's own receiver."""
    return public_url.rstrip("/") + UNSUBSCRIBE_PATH + "{{ " + TOKEN_VARIABLE + " }}"
