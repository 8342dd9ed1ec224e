"""An email as the queue stores it and the SES adapter sends it."""

from __future__ import annotations

from dataclasses import dataclass, field

# The tag under which every message is sent with our id: feedback events carry it back.
DISPATCHER_ID_TAG = "dispatcher_id"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message ready to send; `id` is our own id, sent to SES as the `dispatcher_id` tag."""

    id: int
    from_addr: str
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    raw: bytes | None = None  # a full MIME message; when set, subject/text/html are unused
    reply_to: tuple[str, ...] = ()
    configuration_set: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()  # extra headers of a simple message
    template_name: str | None = None  # an SES template SES renders (with template_data)
    template_data: str | None = None
    # SES v2 list management (contact list, topic or None): SES adds its unsubscribe headers.
    list_management: tuple[str, str | None] | None = None

    @property
    def recipient_count(self) -> int:
        """SES quotas count recipients (To + Cc + Bcc), not calls."""
        return len(self.to) + len(self.cc) + len(self.bcc)
