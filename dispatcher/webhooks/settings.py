"""One webhook endpoint (an entry of `[[webhooks]]`): where to POST, the signing secret, which
events, and how long to keep trying. Pure: no I/O."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dispatcher.errors import ConfigError

__all__ = ["EVENTS", "MIN_SECRET_LENGTH", "WebhookSettings", "shown_url"]

# Every event a webhook can receive, in a message's usual order (README "Webhooks" says when
# each fires). The Postgres triggers of migration 0014 write exactly these names.
EVENTS: tuple[str, ...] = (
    "queued",
    "sent",
    "delivered",
    "bounced",
    "complained",
    "delayed",
    "failed",
    "in_doubt",
    "cancelled",
    "unsubscribed",
)
MIN_SECRET_LENGTH = 16  # a shorter HMAC key can be guessed; `openssl rand -hex 32` makes one


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """One endpoint; errors name the key as `webhooks.url` (the loader adds the index)."""

    url: str
    secret: str = field(repr=False)  # never in a repr or log
    events: tuple[str, ...] = EVENTS  # subscribed events; default: all
    timeout: float = 10.0  # seconds for one POST, connect to answer
    retry_base: float = 5.0  # seconds before the first retry, doubled per failed attempt
    retry_max: float = 600.0  # longest wait between two attempts of one event
    give_up_hours: float = 72.0  # an event not delivered by then is dropped (logged)

    def __post_init__(self) -> None:
        try:
            parts = urlsplit(self.url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            _ = parts.port  # ValueError for a port that is not a number in 0..65535
        except ValueError:
            valid = False
        if not valid:
            raise ConfigError(
                "webhooks.url must be an http:// or https:// URL such as "
                f"https://app.example.com/hooks/mail, got {shown_url(self.url)!r}"
            )
        if len(self.secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"webhooks.secret must be at least {MIN_SECRET_LENGTH} characters (a random "
                f"string, e.g. from `openssl rand -hex 32`), got {len(self.secret)}"
            )
        if not self.events:
            raise ConfigError(
                "webhooks.events must name at least one event; leave it out for all of: "
                + ", ".join(EVENTS)
            )
        for name in self.events:
            if name not in EVENTS:
                close = difflib.get_close_matches(name, EVENTS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(
                    f"webhooks.events: unknown event {name!r}; {hint}"
                    f"the events are: {', '.join(EVENTS)}"
                )
        if len(set(self.events)) != len(self.events):
            raise ConfigError(f"webhooks.events names an event twice: {list(self.events)}")
        for key, value in (
            ("timeout", self.timeout),
            ("retry_base", self.retry_base),
            ("retry_max", self.retry_max),
            ("give_up_hours", self.give_up_hours),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"webhooks.{key} must be a number > 0, got {value}")
        if self.retry_max < self.retry_base:
            raise ConfigError(
                f"webhooks.retry_max must be >= webhooks.retry_base={self.retry_base} seconds, "
                f"got {self.retry_max}"
            )


def shown_url(url: str) -> str:
    """The URL without user info, query or fragment (they may hold a token): for logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    if not parts.scheme or not host:
        return url if "@" not in url and "?" not in url else "<URL hidden>"
    hidden = "?***" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{hidden}"
