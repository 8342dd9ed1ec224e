"""One table of hostile messages, fed through every door (unit: the validator; integration:
`send`, `enqueue`, Queue.enqueue, outbox.enqueue, SQL dispatcher.enqueue(), `campaign create`).

Each row is a good message with some fields replaced, in the JSONL vocabulary of
`dispatcher enqueue`. Every door must refuse every row it can express, and queue nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dispatcher.domain.validate import MAX_MESSAGE_BYTES

GOOD: dict[str, Any] = {
    "from": "app@example.com",
    "to": ["jo@example.com"],
    "subject": "Hello",
    "text": "Hi there",
}

# The fields a campaign's options carry (the rest comes from its template and list); its
# subject is a template, checked for line breaks and control characters at create.
CAMPAIGN_FIELDS = frozenset(
    {"from", "reply_to", "configuration_set", "tags", "priority", "subject"}
)


@dataclass(frozen=True, slots=True)
class Hostile:
    """One hostile input: what it is, and the fields it replaces in GOOD."""

    what: str
    changes: dict[str, Any]
    not_through: frozenset[str] = field(default_factory=frozenset)  # doors that cannot carry it

    @property
    def fields(self) -> dict[str, Any]:
        return {**GOOD, **self.changes}

    def through(self, door: str) -> bool:
        """Whether this door can carry the row (campaign create: its options only)."""
        if door in self.not_through:
            return False
        if door == "campaign":
            return set(self.changes) <= CAMPAIGN_FIELDS
        return True


HOSTILE: tuple[Hostile, ...] = (
    # Header injection (item 6)
    Hostile("CRLF + Bcc in the subject", {"subject": "Hi\r\nBcc: victim@evil.com"}),
    Hostile("LF in the subject", {"subject": "Hi\nX-Injected: 1"}),
    Hostile("U+2028 in the subject", {"subject": "Hi\u2028Bcc: victim@evil.com"}),
    Hostile("ESC in the subject", {"subject": "Hi\x1b[2J"}),
    Hostile("U+2028 in from", {"from": "app\u2028@example.com"}),
    Hostile("U+2029 in from's display name", {"from": "App\u2029Bcc: x <app@example.com>"}),
    Hostile("CRLF in from", {"from": "app@example.com\r\nBcc: victim@evil.com"}),
    Hostile("U+2028 in reply_to", {"reply_to": ["r\u2028@example.com"]}),
    Hostile("CR in a recipient", {"to": ["jo@example.com\rBcc: victim@evil.com"]}),
    Hostile("CRLF in the configuration set", {"configuration_set": "cs\r\nX-Injected: 1"}),
    Hostile("U+2028 in the configuration set", {"configuration_set": "cs\u2028x"}),
    Hostile("a space in a tag value", {"tags": {"a": "b c"}}),
    Hostile("CRLF in a tag value", {"tags": {"a": "b\r\nX-Injected: 1"}}),
    Hostile("the reserved tag dispatcher_id", {"tags": {"dispatcher_id": "5"}}),
    # Addresses (item 7)
    Hostile("a lone '@' as recipient", {"to": ["@"]}),
    Hostile("a@b@c as recipient", {"to": ["a@b@c"]}),
    Hostile("two addresses in one", {"to": ["b@example.com, c@example.com"]}),
    Hostile("two named addresses in one", {"to": ["B <b@example.com>, C <c@example.com>"]}),
    Hostile("a sender without '@'", {"from": "bad"}),
    Hostile("a sender that is only a display name", {"from": "App <>"}),
    Hostile("a reply-to without '@'", {"reply_to": ["bad"]}),
    Hostile("a cc with a space in its domain", {"cc": ["c@exa mple.com"]}),
    # SES limits (item 4)
    Hostile("51 recipients", {"to": [f"r{i}@example.com" for i in range(51)]}),
    Hostile("priority 99999", {"priority": 99999}),
    Hostile(
        "a subject longer than a header line",
        {"subject": "s" * 1200},
        not_through=frozenset({"campaign"}),  # a template: its length is known once rendered
    ),
    Hostile(
        "a body over SES's 40 MiB",
        {"text": "x" * (MAX_MESSAGE_BYTES + 1)},
        not_through=frozenset({"send"}),  # no command line holds 40 MiB
    ),
)
